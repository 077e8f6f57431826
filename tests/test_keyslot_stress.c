/* tests/test_keyslot_stress.c - concurrency stress of the keyslot manager
 * (crypto/profile.c, after Linux block/blk-crypto-profile.c) driven through
 * the emulated engine (crypto/engine.c).
 *
 * T worker threads run requests on K keys through an engine of S keyslots,
 * as the block layer would: enter the engine's gate, get a keyslot,
 * encrypt one or two data units, check the ciphertext against the one a
 * private cipher of the key computed beforehand, decrypt back, put the
 * keyslot, leave the gate.  A chaos thread meanwhile evicts keys, resets
 * the engine and injects programming faults and delays.  A watchdog fails
 * the test if no request completes for WATCHDOG_SECONDS.
 *
 * The engine's ll_ops are wrapped (the public part of the profile, set by
 * the driver) to watch the hardware side: a slot is never programmed or
 * evicted while a worker holds it, the key a worker's slot was last
 * programmed with is the worker's key, and every call is counted by who
 * made it (a get or a reset), so that the profile's counters can be checked
 * against exact identities at the end:
 *
 *   hits + misses              == gets (successful + failed)
 *   misses                     == programs by gets + their failures
 *   programs                   == programs by gets + by resets
 *   program_failures           == failed gets (each the injected errno)
 *   reprograms                 == resets
 *   evict_busy                 == EBUSY returned to the chaos thread
 *   evictions - evict_busy     == keyslot_evict calls == engine hw_evictions
 *   waits                      == 0 when S >= T; == the wait histogram count
 *   key_mismatches             == 0
 *
 * What is decidable about evictions is checked as it happens: EBUSY only
 * when a request on the key was in flight (its started and finished
 * counts tell), and a busy eviction still unlinks the key (evicting it
 * again finds nothing unless a get programmed it meanwhile).  A reset
 * reprograms only while no request is inside the engine's gate.  At the
 * end every slot is idle and every key still en/decrypts correctly.
 *
 * Every worker holds at most one slot at a time, as profile.h requires.
 * Faults are never active during a reset (the chaos thread does one thing
 * at a time), so a reset never leaves a slot that the profile believes
 * holds a key empty in the hardware.
 *
 * IC_STRESS_ITERATIONS overrides the requests per worker (a longer soak).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "cipher.h"
#include "crypt-ctx.h"
#include "engine.h"
#include "error.h"
#include "histogram.h"
#include "key.h"
#include "profile.h"
#include "secmem.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

#define N_THREADS 8
#define N_KEYS 12
#define N_DUNS 3
#define DATA_UNIT 512
#define MAX_UNITS 2
#define ITERATIONS 40000        /* requests per worker */
#define INJECTED_ERRNO ETIMEDOUT
#define WATCHDOG_SECONDS 10

/* The engines under test: keyslots per engine. */
static const unsigned int slot_counts[] = { 1, 3, 8, 16 };

/* One key and what requests on it must produce. */
struct stress_key {
  struct ic_crypto_key *key;
  enum ic_crypto_mode_num mode;
  uint64_t duns[N_DUNS];
  uint8_t ptext[N_DUNS][MAX_UNITS * DATA_UNIT];
  uint8_t ctext[N_DUNS][MAX_UNITS * DATA_UNIT];
  /* Requests on this key that started (before their get) and that
   * finished (after their put): the key is quiescent when they are equal.
   */
  atomic_uint_least64_t started;
  atomic_uint_least64_t finished;
  /* Successful keyslot_program and keyslot_evict calls for this key. */
  atomic_uint_least64_t programs;
  atomic_uint_least64_t hw_evicts;
};

/* What a worker counted; summed after the join. */
struct worker_counts {
  uint64_t gets_ok;
  uint64_t gets_failed;         /* with INJECTED_ERRNO, then retried */
  uint64_t requests[IC_ENCRYPTION_MODE_MAX];
  uint64_t bytes[IC_ENCRYPTION_MODE_MAX];
};

struct worker {
  pthread_t thread;
  struct stress *s;
  unsigned int id;
  uint64_t rng;
  struct worker_counts counts;
};

struct stress {
  struct ic_engine *engine;
  struct ic_crypto_profile *profile;
  unsigned int num_slots;
  unsigned int iterations;
  /* The engine's own ll_ops, which ours wrap. */
  struct ic_crypto_ll_ops engine_ops;
  struct stress_key keys[N_KEYS];

  /* Per slot index: workers holding the slot (between the return of their
   * get and their put), and the key its last successful keyslot_program
   * wrote (NULL after keyslot_evict).
   */
  atomic_uint *held;
  const struct ic_crypto_key *_Atomic *programmed;

  /* Workers between the return of ic_engine_enter() and their call of
   * ic_engine_exit(): none while a reset reprograms.
   */
  atomic_uint inside_gate;

  /* ll_ops calls, by who made them. */
  atomic_uint_least64_t get_programs;
  atomic_uint_least64_t get_program_failures;
  atomic_uint_least64_t reset_programs;
  atomic_uint_least64_t reset_program_failures;
  atomic_uint_least64_t hw_evict_calls;

  /* Requests completed: what the watchdog watches. */
  atomic_uint_least64_t progress;
  atomic_bool workers_done;
  atomic_bool stop;             /* a failure was recorded */
  pthread_mutex_t failure_lock;
  char failure[IC_ERROR_MAX];   /* protected by failure_lock */

  /* The chaos thread's own counts; read after it is joined. */
  uint64_t evict_calls;
  uint64_t evict_busy;
  uint64_t evict_quiescent;
  uint64_t resets;
  uint64_t reset_failed;
  uint64_t fault_windows;
  uint64_t evict_max_ns;        /* the longest ic_crypto_evict_key() */
  uint64_t reset_max_ns;        /* the longest ic_engine_reset() */
};

/* The run in progress, for the ll_ops wrappers (one run at a time). */
static struct stress *stress;

/* Set by the chaos thread around ic_engine_reset(): the programs it sees
 * come from ic_crypto_reprogram_all_keys().
 */
static __thread bool in_reset;

/* xorshift64*: cheap, per thread, reproducible from its seed. */
static uint64_t
rng_next (uint64_t *state)
{
  uint64_t x = *state;

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static unsigned int
rng_below (uint64_t *state, unsigned int n)
{
  return (rng_next (state) >> 32) % n;
}

static void
fill_random (uint64_t *state, uint8_t *buf, size_t len)
{
  size_t i;

  for (i = 0; i < len; i++)
    buf[i] = rng_next (state) >> 56;
}

static void
sleep_us (unsigned int us)
{
  struct timespec ts = { us / 1000000, (us % 1000000) * 1000L };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* Record the first failure and make every thread stop. */
static void __attribute__ ((format (printf, 2, 3)))
stress_fail (struct stress *s, const char *fmt, ...)
{
  va_list ap;

  pthread_mutex_lock (&s->failure_lock);
  if (s->failure[0] == '\0') {
    va_start (ap, fmt);
    vsnprintf (s->failure, sizeof s->failure, fmt, ap);
    va_end (ap);
  }
  pthread_mutex_unlock (&s->failure_lock);
  atomic_store (&s->stop, true);
}

static struct stress_key *
find_key (struct stress *s, const struct ic_crypto_key *key)
{
  unsigned int i;

  for (i = 0; i < N_KEYS; i++)
    if (s->keys[i].key == key)
      return &s->keys[i];
  abort ();
}

/* ll_ops.keyslot_program around the engine's: the slot must be held by
 * nobody, and the model records what the hardware now holds.
 */
static int
wrap_keyslot_program (struct ic_crypto_profile *profile,
                      const struct ic_crypto_key *key, unsigned int slot)
{
  struct stress *s = stress;
  unsigned int held = atomic_load (&s->held[slot]);
  int err;

  if (held != 0)
    stress_fail (s, "keyslot %u programmed with %s while %u request(s) "
                 "hold it", slot, key->name, held);
  if (in_reset && atomic_load (&s->inside_gate) != 0)
    stress_fail (s, "reset reprograms keyslot %u while %u request(s) are "
                 "inside the engine", slot, atomic_load (&s->inside_gate));
  err = s->engine_ops.keyslot_program (profile, key, slot);
  if (err == 0) {
    atomic_store (&s->programmed[slot], key);
    atomic_fetch_add (&find_key (s, key)->programs, 1);
  }
  else if (err != -INJECTED_ERRNO)
    stress_fail (s, "keyslot %u: program %s: %s, not the injected %s",
                 slot, key->name, ic_errno_name (-err),
                 ic_errno_name (INJECTED_ERRNO));
  if (in_reset)
    atomic_fetch_add (err ? &s->reset_program_failures : &s->reset_programs,
                      1);
  else
    atomic_fetch_add (err ? &s->get_program_failures : &s->get_programs, 1);
  return err;
}

/* ll_ops.keyslot_evict around the engine's: the slot must be idle. */
static int
wrap_keyslot_evict (struct ic_crypto_profile *profile,
                    const struct ic_crypto_key *key, int slot)
{
  struct stress *s = stress;
  unsigned int held;
  int err;

  if (slot < 0 || (unsigned int) slot >= s->num_slots) {
    stress_fail (s, "keyslot_evict of %s called with slot %d", key->name,
                 slot);
    return -EINVAL;
  }
  held = atomic_load (&s->held[slot]);
  if (held != 0)
    stress_fail (s, "keyslot %d: %s evicted while %u request(s) hold it",
                 slot, key->name, held);
  if (atomic_load (&s->programmed[slot]) != key)
    stress_fail (s, "keyslot %d: evict %s, but the slot was last "
                 "programmed with another key", slot, key->name);
  err = s->engine_ops.keyslot_evict (profile, key, slot);
  if (err)
    stress_fail (s, "keyslot %d: evict %s: %s", slot, key->name,
                 ic_errno_name (-err));
  atomic_store (&s->programmed[slot], NULL);
  atomic_fetch_add (&s->hw_evict_calls, 1);
  atomic_fetch_add (&find_key (s, key)->hw_evicts, 1);
  return err;
}

/* Keys: mostly AES-256-XTS, two Adiantum, two AES-128-CBC-ESSIV, and one
 * key object with the same bytes as key 0 (a different key to the
 * profile, as upstream: keys are identified by the object).
 */
static enum ic_crypto_mode_num
key_mode (unsigned int i)
{
  switch (i) {
  case 3: case 9: return IC_ENCRYPTION_MODE_ADIANTUM;
  case 5: case 10: return IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV;
  default: return IC_ENCRYPTION_MODE_AES_256_XTS;
  }
}
#define TWIN_KEY 7              /* same bytes as key 0 */

static void
setup_keys (struct stress *s)
{
  uint8_t bytes[N_KEYS][IC_CRYPTO_MAX_RAW_KEY_SIZE];
  uint64_t rng = 0x6b657973u;   /* "keys" */
  unsigned int i;
  unsigned int d;

  for (i = 0; i < N_KEYS; i++) {
    struct stress_key *sk = &s->keys[i];
    const unsigned int size = ic_crypto_modes[key_mode (i)].keysize;
    struct ic_cipher *cipher;
    char name[16];

    sk->mode = key_mode (i);
    fill_random (&rng, bytes[i], sizeof bytes[i]);
    if (i == TWIN_KEY)
      memcpy (bytes[i], bytes[0], sizeof bytes[i]);
    snprintf (name, sizeof name, "k%u", i);
    sk->key = ic_crypto_key_new (name, bytes[i], size,
                                 IC_CRYPTO_KEY_TYPE_RAW, sk->mode, 8,
                                 DATA_UNIT);
    ck_assert_msg (sk->key != NULL, "%s: %s", name, ic_last_error ());

    /* A DUN of 0, an ordinary one, and the largest 8 bytes allow for a
     * two-unit request.
     */
    sk->duns[0] = 0;
    sk->duns[1] = 1000 * i + 17;
    sk->duns[2] = UINT64_MAX - 1;

    cipher = ic_cipher_new (sk->mode);
    ck_assert_msg (cipher != NULL, "%s", ic_last_error ());
    ck_assert_int_eq (ic_cipher_setkey (cipher, bytes[i], size), 0);
    for (d = 0; d < N_DUNS; d++) {
      uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];

      fill_random (&rng, sk->ptext[d], sizeof sk->ptext[d]);
      ic_crypt_dun_set_u64 (dun, sk->duns[d]);
      ck_assert_int_eq (ic_cipher_encrypt (cipher, sk->ctext[d],
                                           sk->ptext[d],
                                           sizeof sk->ptext[d], DATA_UNIT,
                                           dun), 0);
    }
    ic_cipher_free (cipher);
    atomic_init (&sk->started, 0);
    atomic_init (&sk->finished, 0);
    atomic_init (&sk->programs, 0);
    atomic_init (&sk->hw_evicts, 0);
  }
  ic_memzero_explicit (bytes, sizeof bytes);
}

/* One request: the whole life of a bio on a device with inline crypto.
 *
 * Return: true if it completed, false if the run stops.
 */
static bool
do_request (struct worker *w, unsigned int k, unsigned int d,
            unsigned int units)
{
  struct stress *s = w->s;
  struct stress_key *sk = &s->keys[k];
  const size_t len = units * DATA_UNIT;
  struct ic_crypto_keyslot *slot;
  const struct ic_crypto_key *in_slot;
  struct ic_crypt_ctx ctx;
  uint8_t buf[MAX_UNITS * DATA_UNIT];
  unsigned int idx;
  int r;

  ctx.key = sk->key;
  ic_crypt_dun_set_u64 (ctx.dun, sk->duns[d]);

  atomic_fetch_add (&sk->started, 1);
  for (;;) {
    ic_engine_enter (s->engine);
    atomic_fetch_add (&s->inside_gate, 1);
    r = ic_crypto_get_keyslot (s->profile, sk->key, &slot);
    if (r == 0)
      break;
    atomic_fetch_sub (&s->inside_gate, 1);
    ic_engine_exit (s->engine);
    w->counts.gets_failed++;
    if (r != -INJECTED_ERRNO) {
      stress_fail (s, "get keyslot for %s: %s (%s), not the injected %s",
                   sk->key->name, ic_errno_name (-r), ic_last_error (),
                   ic_errno_name (INJECTED_ERRNO));
      atomic_fetch_add (&sk->finished, 1);
      return false;
    }
    /* The fault window closes; retry as a block driver would requeue. */
    if (atomic_load (&s->stop)) {
      atomic_fetch_add (&sk->finished, 1);
      return false;
    }
    sched_yield ();
  }
  w->counts.gets_ok++;
  if (slot == NULL) {
    stress_fail (s, "get keyslot for %s: 0 but no slot", sk->key->name);
    atomic_fetch_sub (&s->inside_gate, 1);
    ic_engine_exit (s->engine);
    atomic_fetch_add (&sk->finished, 1);
    return false;
  }
  idx = ic_crypto_keyslot_index (slot);
  if (idx >= s->num_slots) {
    stress_fail (s, "get keyslot for %s: index %u of %u slots",
                 sk->key->name, idx, s->num_slots);
    goto out_put;
  }
  atomic_fetch_add (&s->held[idx], 1);

  /* The hardware slot holds our key: its last program was ours, and the
   * profile agrees (or has just unlinked it in a busy eviction).
   */
  if (atomic_load (&s->programmed[idx]) != sk->key)
    stress_fail (s, "keyslot %u given to %s was last programmed with %s",
                 idx, sk->key->name,
                 atomic_load (&s->programmed[idx])
                 ? atomic_load (&s->programmed[idx])->name : "nothing");
  in_slot = ic_crypto_keyslot_key (slot);
  if (in_slot != sk->key && in_slot != NULL)
    stress_fail (s, "keyslot %u given to %s holds %s in the profile",
                 idx, sk->key->name, in_slot->name);

  r = ic_engine_encrypt (s->engine, slot, &ctx, buf, sk->ptext[d], len);
  if (r < 0)
    stress_fail (s, "encrypt %s in keyslot %u: %s (%s)", sk->key->name, idx,
                 ic_errno_name (-r), ic_last_error ());
  else if (memcmp (buf, sk->ctext[d], len) != 0)
    stress_fail (s, "encrypt %s in keyslot %u, DUN %" PRIu64 ", %u "
                 "unit(s): wrong ciphertext", sk->key->name, idx,
                 sk->duns[d], units);
  else {
    r = ic_engine_decrypt (s->engine, slot, &ctx, buf, buf, len);
    if (r < 0)
      stress_fail (s, "decrypt %s in keyslot %u: %s (%s)", sk->key->name,
                   idx, ic_errno_name (-r), ic_last_error ());
    else if (memcmp (buf, sk->ptext[d], len) != 0)
      stress_fail (s, "decrypt %s in keyslot %u: wrong plaintext",
                   sk->key->name, idx);
    else {
      w->counts.requests[sk->mode] += 2;
      w->counts.bytes[sk->mode] += 2 * len;
    }
  }

  atomic_fetch_sub (&s->held[idx], 1);
out_put:
  ic_crypto_put_keyslot (slot);
  atomic_fetch_sub (&s->inside_gate, 1);
  ic_engine_exit (s->engine);
  atomic_fetch_add (&sk->finished, 1);
  atomic_fetch_add (&s->progress, 1);
  return !atomic_load (&s->stop);
}

static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  unsigned int k = rng_below (&w->rng, N_KEYS);
  unsigned int i;

  for (i = 0; i < w->s->iterations; i++) {
    /* Some locality: half the time the previous key again. */
    if (rng_below (&w->rng, 2))
      k = rng_below (&w->rng, N_KEYS);
    if (!do_request (w, k, rng_below (&w->rng, N_DUNS),
                     1 + rng_below (&w->rng, MAX_UNITS)))
      break;
  }
  return NULL;
}

/* Evict a random key.  EBUSY says a request held the key's slot during
 * the eviction; when none can have (no request on the key was in flight
 * before, none started during), it must be 0.  An EBUSY eviction unlinks
 * the key all the same: unless a get programmed the key again meanwhile,
 * evicting it once more finds it in no slot.
 */
static void
chaos_evict (struct stress *s, uint64_t *rng)
{
  struct stress_key *sk = &s->keys[rng_below (rng, N_KEYS)];
  uint64_t finished0 = atomic_load (&sk->finished);
  uint64_t started0 = atomic_load (&sk->started);
  uint64_t programs0 = atomic_load (&sk->programs);
  uint64_t started1;
  uint64_t hw_evicts0;
  uint64_t t0 = ic_now_ns ();
  bool quiescent;
  int r;

  r = ic_crypto_evict_key (s->profile, sk->key);
  if (ic_now_ns () - t0 > s->evict_max_ns)
    s->evict_max_ns = ic_now_ns () - t0;
  started1 = atomic_load (&sk->started);
  quiescent = started0 == finished0 && started1 == started0;
  s->evict_calls++;
  s->evict_quiescent += quiescent;
  if (r == -EBUSY) {
    s->evict_busy++;
    if (quiescent)
      stress_fail (s, "evict %s: EBUSY, but no request on it was in "
                   "flight (started %" PRIu64 ", finished %" PRIu64 ")",
                   sk->key->name, started0, finished0);
    if (strstr (ic_last_error (), "still in use") == NULL)
      stress_fail (s, "evict %s: EBUSY with message \"%s\"",
                   sk->key->name, ic_last_error ());

    hw_evicts0 = atomic_load (&sk->hw_evicts);
    r = ic_crypto_evict_key (s->profile, sk->key);
    s->evict_calls++;
    if (r == -EBUSY)
      s->evict_busy++;
    if (atomic_load (&sk->programs) == programs0 &&
        (r != 0 || atomic_load (&sk->hw_evicts) != hw_evicts0))
      stress_fail (s, "evict %s after EBUSY: %s%s: the key was not "
                   "unlinked by the busy eviction", sk->key->name,
                   ic_errno_name (-r),
                   atomic_load (&sk->hw_evicts) != hw_evicts0
                   ? ", and evicted from the hardware" : "");
  }
  else if (r != 0)
    stress_fail (s, "evict %s: %s (%s)", sk->key->name, ic_errno_name (-r),
                 ic_last_error ());
}

static void
chaos_reset (struct stress *s)
{
  uint64_t t0 = ic_now_ns ();
  unsigned int failed;

  in_reset = true;
  failed = ic_engine_reset (s->engine);
  in_reset = false;
  if (ic_now_ns () - t0 > s->reset_max_ns)
    s->reset_max_ns = ic_now_ns () - t0;
  s->resets++;
  s->reset_failed += failed;
  if (failed)
    stress_fail (s, "reset with no faults: %u slot(s) failed: %s", failed,
                 ic_last_error ());
}

/* Faults for a short while, then none: failed programs (counted or with a
 * probability), or slow ones that make the others wait on the lock.
 */
static void
chaos_faults (struct stress *s, uint64_t *rng)
{
  struct ic_engine_faults f = { 0 };

  switch (rng_below (rng, 3)) {
  case 0:
    f.program_fail_count = 1 + rng_below (rng, 5);
    break;
  case 1:
    f.program_fail_prob = 0.5;
    break;
  case 2:
    f.program_delay_us = 50 + rng_below (rng, 200);
    break;
  }
  f.program_errno = INJECTED_ERRNO;
  ic_engine_set_faults (s->engine, &f);
  s->fault_windows++;
  sleep_us (500 + rng_below (rng, 2000));
  memset (&f, 0, sizeof f);
  ic_engine_set_faults (s->engine, &f);
}

static void *
chaos_main (void *arg)
{
  struct stress *s = arg;
  uint64_t rng = 0x6368616f73ull ^ s->num_slots; /* "chaos" */

  while (!atomic_load (&s->workers_done) && !atomic_load (&s->stop)) {
    unsigned int action = rng_below (&rng, 100);

    if (action < 80)
      chaos_evict (s, &rng);
    else if (action < 90)
      chaos_reset (s);
    else
      chaos_faults (s, &rng);
    sleep_us (100 + rng_below (&rng, 400));
  }
  return NULL;
}

/* Fail if no request completes for WATCHDOG_SECONDS: a request waits
 * forever.  The workers cannot be joined then, so this ends the test from
 * here (Check's fork mode takes a failure from any thread; without a fork
 * there is nothing to return to).
 */
static void *
watchdog_main (void *arg)
{
  struct stress *s = arg;
  uint64_t last = atomic_load (&s->progress);
  uint64_t since = ic_now_ns ();

  while (!atomic_load (&s->workers_done)) {
    uint64_t now = ic_now_ns ();
    uint64_t progress = atomic_load (&s->progress);
    struct ic_engine_stats st;
    unsigned int i;
    const char *fork_env;

    if (progress != last) {
      last = progress;
      since = now;
    }
    else if (now - since > WATCHDOG_SECONDS * UINT64_C (1000000000)) {
      ic_engine_read_stats (s->engine, &st, false);
      fprintf (stderr, "keyslot_stress: no progress for %d s with %u "
               "slot(s): %" PRIu64 " requests done; hits %" PRIu64
               " misses %" PRIu64 " waits %" PRIu64 "\n", WATCHDOG_SECONDS,
               s->num_slots, progress, st.slots.hits, st.slots.misses,
               st.slots.waits);
      for (i = 0; i < s->num_slots; i++)
        fprintf (stderr, "  slot %u: held by %u\n", i,
                 atomic_load (&s->held[i]));
      for (i = 0; i < N_KEYS; i++)
        fprintf (stderr, "  %s: %" PRIu64 " started, %" PRIu64
                 " finished\n", s->keys[i].key->name,
                 atomic_load (&s->keys[i].started),
                 atomic_load (&s->keys[i].finished));
      fork_env = getenv ("CK_FORK");
      if (fork_env && strcmp (fork_env, "no") == 0)
        abort ();
      ck_abort_msg ("no request completed for %d s with %u keyslot(s)",
                    WATCHDOG_SECONDS, s->num_slots);
    }
    sleep_us (50000);
  }
  return NULL;
}

/* Count the profile's idle slots. */
static unsigned int
count_idle_slots (struct ic_crypto_profile *profile, unsigned int *waiters)
{
  return ic_crypto_profile_idle_slots (profile, waiters);
}

/* After the run: every key once more in every DUN, on a quiet engine. */
static void
check_every_key (struct stress *s, struct worker_counts *extra)
{
  unsigned int k;
  unsigned int d;

  for (k = 0; k < N_KEYS; k++) {
    struct stress_key *sk = &s->keys[k];
    struct ic_crypto_keyslot *slot;
    struct ic_crypt_ctx ctx;
    uint8_t buf[MAX_UNITS * DATA_UNIT];
    unsigned int idx;

    ic_engine_enter (s->engine);
    ck_assert_int_eq (ic_crypto_get_keyslot (s->profile, sk->key, &slot), 0);
    extra->gets_ok++;
    idx = ic_crypto_keyslot_index (slot);
    ck_assert_ptr_eq (ic_crypto_keyslot_key (slot), sk->key);
    ck_assert_ptr_eq (atomic_load (&s->programmed[idx]), sk->key);
    ctx.key = sk->key;
    for (d = 0; d < N_DUNS; d++) {
      ic_crypt_dun_set_u64 (ctx.dun, sk->duns[d]);
      ck_assert_int_eq (ic_engine_encrypt (s->engine, slot, &ctx, buf,
                                           sk->ptext[d], sizeof buf), 0);
      ck_assert_mem_eq (buf, sk->ctext[d], sizeof buf);
      ck_assert_int_eq (ic_engine_decrypt (s->engine, slot, &ctx, buf, buf,
                                           sizeof buf), 0);
      ck_assert_mem_eq (buf, sk->ptext[d], sizeof buf);
      extra->requests[sk->mode] += 2;
      extra->bytes[sk->mode] += 2 * sizeof buf;
    }
    ic_crypto_put_keyslot (slot);
    ic_engine_exit (s->engine);
  }
}

START_TEST (test_stress)
{
  struct stress s;
  struct worker workers[N_THREADS];
  struct worker_counts total = { 0 };
  struct ic_engine_config cfg;
  struct ic_engine_stats st;
  pthread_t chaos;
  pthread_t watchdog;
  const char *env = getenv ("IC_STRESS_ITERATIONS");
  uint64_t gets;
  uint64_t start_ns;
  double seconds;
  unsigned int waiters;
  unsigned int i;
  int m;

  memset (&s, 0, sizeof s);
  s.num_slots = slot_counts[_i];
  s.iterations = env ? (unsigned int) atoi (env) : ITERATIONS;
  pthread_mutex_init (&s.failure_lock, NULL);
  setup_keys (&s);

  ic_engine_config_default (&cfg, "stress");
  cfg.num_slots = s.num_slots;
  s.engine = ic_engine_new (&cfg);
  ck_assert_msg (s.engine != NULL, "%s", ic_last_error ());
  s.profile = ic_engine_profile (s.engine);
  ck_assert_uint_eq (ic_crypto_profile_num_slots (s.profile), s.num_slots);
  s.held = calloc (s.num_slots, sizeof s.held[0]);
  s.programmed = calloc (s.num_slots, sizeof s.programmed[0]);
  ck_assert (s.held && s.programmed);

  /* Wrap the driver's ops before any request: the profile's public part. */
  s.engine_ops = s.profile->ll_ops;
  s.profile->ll_ops.keyslot_program = wrap_keyslot_program;
  s.profile->ll_ops.keyslot_evict = wrap_keyslot_evict;
  stress = &s;

  start_ns = ic_now_ns ();
  for (i = 0; i < N_THREADS; i++) {
    workers[i].s = &s;
    workers[i].id = i;
    workers[i].rng = 0x9e3779b97f4a7c15ull * (i + 1) + s.num_slots;
    memset (&workers[i].counts, 0, sizeof workers[i].counts);
    ck_assert_int_eq (pthread_create (&workers[i].thread, NULL, worker_main,
                                      &workers[i]), 0);
  }
  ck_assert_int_eq (pthread_create (&chaos, NULL, chaos_main, &s), 0);
  ck_assert_int_eq (pthread_create (&watchdog, NULL, watchdog_main, &s), 0);

  for (i = 0; i < N_THREADS; i++) {
    pthread_join (workers[i].thread, NULL);
    total.gets_ok += workers[i].counts.gets_ok;
    total.gets_failed += workers[i].counts.gets_failed;
    for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++) {
      total.requests[m] += workers[i].counts.requests[m];
      total.bytes[m] += workers[i].counts.bytes[m];
    }
  }
  atomic_store (&s.workers_done, true);
  pthread_join (chaos, NULL);
  pthread_join (watchdog, NULL);
  seconds = (ic_now_ns () - start_ns) / 1e9;
  ck_assert_msg (s.failure[0] == '\0', "%u slot(s): %s", s.num_slots,
                 s.failure);

  /* Every request completed, and nobody holds a slot. */
  ck_assert_uint_eq (total.gets_ok, (uint64_t) N_THREADS * s.iterations);
  for (i = 0; i < N_KEYS; i++)
    ck_assert_uint_eq (atomic_load (&s.keys[i].started),
                       atomic_load (&s.keys[i].finished));
  for (i = 0; i < s.num_slots; i++)
    ck_assert_uint_eq (atomic_load (&s.held[i]), 0);
  ck_assert_uint_eq (count_idle_slots (s.profile, &waiters), s.num_slots);
  ck_assert_uint_eq (waiters, 0);

  /* The counters add up. */
  ic_engine_read_stats (s.engine, &st, false);
  printf ("keyslot_stress: %2u slot(s): %" PRIu64 " requests in %.2f s; "
          "hits %" PRIu64 " misses %" PRIu64 " waits %" PRIu64 " (p99 %"
          PRIu64 " us, max %" PRIu64 " us); %" PRIu64 " evictions (%"
          PRIu64 " busy, %" PRIu64 " quiescent, max %" PRIu64 " us), %"
          PRIu64 " resets (max %" PRIu64 " us), %" PRIu64 " fault windows, %"
          PRIu64 " failed gets\n",
          s.num_slots, total.gets_ok, seconds, st.slots.hits,
          st.slots.misses, st.slots.waits,
          ic_histogram_percentile (&st.slots.wait, 99) / 1000,
          st.slots.wait.max_ns / 1000,
          s.evict_calls, s.evict_busy, s.evict_quiescent,
          s.evict_max_ns / 1000, s.resets, s.reset_max_ns / 1000,
          s.fault_windows, total.gets_failed);
  gets = total.gets_ok + total.gets_failed;
  ck_assert_uint_eq (st.slots.hits + st.slots.misses, gets);
  ck_assert_uint_eq (st.slots.misses,
                     s.get_programs + s.get_program_failures);
  ck_assert_uint_eq (st.slots.hits + s.get_programs, total.gets_ok);
  ck_assert_uint_eq (s.get_program_failures, total.gets_failed);
  ck_assert_uint_eq (st.slots.programs, s.get_programs + s.reset_programs);
  ck_assert_uint_eq (st.slots.program_failures,
                     s.get_program_failures + s.reset_program_failures);
  ck_assert_uint_eq (s.reset_program_failures, 0);
  ck_assert_uint_le (s.reset_programs, s.resets * s.num_slots);
  ck_assert_uint_eq (st.slots.reprograms, s.resets);
  ck_assert_uint_eq (st.resets, s.resets);
  ck_assert_uint_eq (st.slots.evict_busy, s.evict_busy);
  ck_assert_uint_le (st.slots.evictions, s.evict_calls);
  ck_assert_uint_eq (st.slots.evictions - st.slots.evict_busy,
                     s.hw_evict_calls);
  ck_assert_uint_eq (st.hw_evictions, s.hw_evict_calls);
  ck_assert_uint_eq (st.slots.wait.count, st.slots.waits);
  if (s.num_slots >= N_THREADS)
    /* At most T - 1 others hold a slot while a get looks for one. */
    ck_assert_uint_eq (st.slots.waits, 0);
  ck_assert_uint_eq (st.key_mismatches, 0);
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++) {
    ck_assert_uint_eq (st.requests[m], total.requests[m]);
    ck_assert_uint_eq (st.bytes[m], total.bytes[m]);
  }
  ck_assert_uint_gt (st.slots.misses, 0);

  /* Every key still works, through every slot it lands in. */
  memset (&total, 0, sizeof total);
  ic_engine_read_stats (s.engine, &st, true);
  check_every_key (&s, &total);
  ic_engine_read_stats (s.engine, &st, true);
  ck_assert_uint_eq (st.slots.hits + st.slots.misses, total.gets_ok);
  ck_assert_uint_eq (st.slots.program_failures, 0);
  ck_assert_uint_eq (st.key_mismatches, 0);
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (st.requests[m], total.requests[m]);

  /* Evicting every key on a quiet engine succeeds, each from the slot its
   * last program put it in; a reset then has nothing to reprogram.
   */
  for (i = 0; i < N_KEYS; i++)
    ck_assert_int_eq (ic_crypto_evict_key (s.profile, s.keys[i].key), 0);
  ic_engine_read_stats (s.engine, &st, true);
  ck_assert_uint_eq (st.slots.evict_busy, 0);
  ck_assert_uint_eq (st.slots.evictions, st.hw_evictions);
  ck_assert_uint_le (st.slots.evictions, s.num_slots);
  ck_assert_uint_eq (st.slots.evictions, s.num_slots < N_KEYS
                     ? s.num_slots : N_KEYS);
  ck_assert_uint_eq (ic_engine_reset (s.engine), 0);
  ic_engine_read_stats (s.engine, &st, true);
  ck_assert_uint_eq (st.slots.programs, 0);
  ck_assert_uint_eq (st.slots.program_failures, 0);
  ck_assert_uint_eq (count_idle_slots (s.profile, &waiters), s.num_slots);

  stress = NULL;
  ic_engine_free (s.engine);
  for (i = 0; i < N_KEYS; i++)
    ic_crypto_key_free (s.keys[i].key);
  free (s.held);
  free ((void *) s.programmed);
  pthread_mutex_destroy (&s.failure_lock);
}
END_TEST

static Suite *
keyslot_stress_suite (void)
{
  Suite *s = suite_create ("keyslot_stress");
  TCase *tc;

  /* 1 slot: every other request reprograms and waits; 3 and 8: LRU
   * churn, with 8 = T no get ever waits; 16: more slots than keys.
   */
  tc = tcase_create ("stress");
  tcase_set_timeout (tc, 120);
  tcase_add_loop_test (tc, test_stress, 0, ARRAY_SIZE (slot_counts));
  suite_add_tcase (s, tc);

  return s;
}

int
main (void)
{
  SRunner *sr;
  int failed;
  int r;

  r = ic_crypto_init ();
  if (r < 0) {
    fprintf (stderr, "test_keyslot_stress: %s\n", ic_last_error ());
    return EXIT_FAILURE;
  }
  sr = srunner_create (keyslot_stress_suite ());
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

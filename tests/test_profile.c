/* tests/test_profile.c - unit tests of crypto/profile.c, the keyslot
 * manager that mirrors Linux block/blk-crypto-profile.c.
 *
 * The profile is driven by a fake driver (struct fake): its ll_ops record
 * every call (which key into which slot), keep what each "hardware" slot
 * holds, can be told to fail with an errno (for every key or one key), and
 * can hold a program in progress until the test lets it go.  Each op also
 * checks that it runs with profile->lock held for writing, as upstream
 * serialises the ll_ops.  The rules tested are those of
 * reference/upstream-blk-crypto.md section 1, one TCase each.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <check.h>

#include "error.h"
#include "histogram.h"
#include "key.h"
#include "profile.h"
#include "secmem.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

/* The OOM cases cap the address space so that an allocation fails: the
 * sanitizers must then return NULL as libc does instead of aborting.
 */
const char *__asan_default_options (void);
const char *__tsan_default_options (void);

const char *
__asan_default_options (void)
{
  return "allocator_may_return_null=1";
}

const char *
__tsan_default_options (void)
{
  return "allocator_may_return_null=1";
}

/* ---- the fake driver ---- */

#define FAKE_MAX_SLOTS 16
#define FAKE_MAX_CALLS 256

enum fake_op { FAKE_PROGRAM, FAKE_EVICT };

struct fake_call {
  enum fake_op op;
  const struct ic_crypto_key *key;
  int slot;
};

struct fake {
  struct ic_crypto_profile profile;     /* first: profile->priv is us */

  /* Covers everything below except the atomics. */
  pthread_mutex_t lock;
  pthread_cond_t cond;                  /* hold / holding changes */
  struct fake_call calls[FAKE_MAX_CALLS];
  unsigned int ncalls;
  int program_err;                      /* returned by failing programs */
  unsigned int program_fail_count;      /* programs left to fail */
  const struct ic_crypto_key *fail_key; /* if set, only this key fails */
  int evict_err;                        /* returned by every evict */
  bool hold;                            /* programs wait while set */
  unsigned int holding;                 /* programs waiting now */

  /* What each slot of the "hardware" holds. */
  _Atomic (const struct ic_crypto_key *) hw[FAKE_MAX_SLOTS];
  /* Requests using each slot now (the stress test). */
  atomic_uint in_use[FAKE_MAX_SLOTS];
  /* Set if an ll_op ran without profile->lock held for writing, or
   * programmed another key into a slot that a request was using.
   */
  atomic_bool unlocked_op;
  atomic_bool reprogrammed_in_use;
};

/* True if profile->lock is held for writing (by us, since the op runs). */
static bool
lock_is_held (struct ic_crypto_profile *p)
{
  return ic_crypto_hw_entered (p);
}

static void
fake_record (struct fake *f, enum fake_op op,
             const struct ic_crypto_key *key, int slot)
{
  if (f->ncalls < FAKE_MAX_CALLS) {
    f->calls[f->ncalls].op = op;
    f->calls[f->ncalls].key = key;
    f->calls[f->ncalls].slot = slot;
  }
  f->ncalls++;
}

static int
fake_keyslot_program (struct ic_crypto_profile *p,
                      const struct ic_crypto_key *key, unsigned int slot)
{
  struct fake *f = p->priv;
  int err = 0;

  if (!lock_is_held (p))
    atomic_store (&f->unlocked_op, true);
  /* A slot in use may only be programmed again with its own key (after
   * a reset).
   */
  if (atomic_load (&f->in_use[slot]) != 0 &&
      atomic_load (&f->hw[slot]) != key)
    atomic_store (&f->reprogrammed_in_use, true);

  pthread_mutex_lock (&f->lock);
  fake_record (f, FAKE_PROGRAM, key, slot);
  f->holding++;
  pthread_cond_broadcast (&f->cond);
  while (f->hold)
    pthread_cond_wait (&f->cond, &f->lock);
  f->holding--;
  if (f->program_fail_count > 0 && (!f->fail_key || f->fail_key == key)) {
    f->program_fail_count--;
    err = f->program_err;
  }
  pthread_mutex_unlock (&f->lock);

  if (err == 0)
    atomic_store (&f->hw[slot], key);
  return err;
}

static int
fake_keyslot_evict (struct ic_crypto_profile *p,
                    const struct ic_crypto_key *key, int slot)
{
  struct fake *f = p->priv;
  int err;

  if (!lock_is_held (p))
    atomic_store (&f->unlocked_op, true);
  pthread_mutex_lock (&f->lock);
  fake_record (f, FAKE_EVICT, key, slot);
  err = f->evict_err;
  pthread_mutex_unlock (&f->lock);
  if (slot >= 0)
    atomic_store (&f->hw[slot], NULL);
  return err;
}

static struct fake *
fake_new (unsigned int num_slots)
{
  struct fake *f = calloc (1, sizeof *f);

  ck_assert_ptr_nonnull (f);
  ck_assert_uint_le (num_slots, FAKE_MAX_SLOTS);
  ck_assert_int_eq (ic_crypto_profile_init (&f->profile, num_slots), 0);
  f->profile.ll_ops.keyslot_program = fake_keyslot_program;
  f->profile.ll_ops.keyslot_evict = fake_keyslot_evict;
  f->profile.max_dun_bytes_supported = 8;
  f->profile.key_types_supported = IC_CRYPTO_KEY_TYPE_RAW;
  f->profile.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x1000;
  f->profile.priv = f;
  snprintf (f->profile.name, sizeof f->profile.name, "fake");
  pthread_mutex_init (&f->lock, NULL);
  pthread_cond_init (&f->cond, NULL);
  return f;
}

static void
fake_free (struct fake *f)
{
  ck_assert (!atomic_load (&f->unlocked_op));
  ic_crypto_profile_destroy (&f->profile);
  pthread_mutex_destroy (&f->lock);
  pthread_cond_destroy (&f->cond);
  free (f);
}

static unsigned int
fake_ncalls (struct fake *f)
{
  unsigned int n;

  pthread_mutex_lock (&f->lock);
  n = f->ncalls;
  pthread_mutex_unlock (&f->lock);
  return n;
}

static struct fake_call
fake_call (struct fake *f, unsigned int i)
{
  struct fake_call c;

  pthread_mutex_lock (&f->lock);
  ck_assert_uint_lt (i, f->ncalls);
  c = f->calls[i];
  pthread_mutex_unlock (&f->lock);
  return c;
}

/* Fail the next @count programs (of @key only, if not NULL) with @err. */
static void
fake_fail_programs (struct fake *f, unsigned int count, int err,
                    const struct ic_crypto_key *key)
{
  pthread_mutex_lock (&f->lock);
  f->program_fail_count = count;
  f->program_err = err;
  f->fail_key = key;
  pthread_mutex_unlock (&f->lock);
}

static void
fake_set_hold (struct fake *f, bool hold)
{
  pthread_mutex_lock (&f->lock);
  f->hold = hold;
  pthread_cond_broadcast (&f->cond);
  pthread_mutex_unlock (&f->lock);
}

/* Wait until @n programs are held in the driver. */
static void
fake_wait_holding (struct fake *f, unsigned int n)
{
  pthread_mutex_lock (&f->lock);
  while (f->holding < n)
    pthread_cond_wait (&f->cond, &f->lock);
  pthread_mutex_unlock (&f->lock);
}

static void
assert_call (struct fake *f, unsigned int i, enum fake_op op,
             const struct ic_crypto_key *key, int slot)
{
  struct fake_call c = fake_call (f, i);

  ck_assert_int_eq (c.op, op);
  ck_assert_ptr_eq (c.key, key);
  ck_assert_int_eq (c.slot, slot);
}

/* ---- helpers ---- */

#define NKEYS 8

static struct ic_crypto_key *keys[NKEYS];

/* Keys k0..k7, all AES-256-XTS/4096.  k0 and k1 have the same bytes: a
 * key is its object, not its bytes.
 */
static void
keys_setup (void)
{
  uint8_t raw[64];
  char name[8];
  unsigned int i;
  unsigned int b;

  ck_assert_int_eq (ic_crypto_init (), 0);
  for (i = 0; i < NKEYS; i++) {
    for (b = 0; b < sizeof raw; b++)
      raw[b] = (i == 1 ? 0 : i) * 16 + b;
    snprintf (name, sizeof name, "k%u", i);
    keys[i] = ic_crypto_key_new (name, raw, sizeof raw,
                                 IC_CRYPTO_KEY_TYPE_RAW,
                                 IC_ENCRYPTION_MODE_AES_256_XTS, 8, 4096);
    ck_assert_ptr_nonnull (keys[i]);
  }
}

static void
keys_teardown (void)
{
  unsigned int i;

  for (i = 0; i < NKEYS; i++) {
    ic_crypto_key_free (keys[i]);
    keys[i] = NULL;
  }
}

/* Get a slot for @key, which must succeed; return its index. */
static unsigned int
get_ok (struct fake *f, const struct ic_crypto_key *key,
        struct ic_crypto_keyslot **slotp)
{
  ck_assert_int_eq (ic_crypto_get_keyslot (&f->profile, key, slotp), 0);
  ck_assert_ptr_nonnull (*slotp);
  ck_assert_ptr_eq (ic_crypto_keyslot_key (*slotp), key);
  ck_assert_ptr_eq (atomic_load (&f->hw[ic_crypto_keyslot_index (*slotp)]),
                    key);
  return ic_crypto_keyslot_index (*slotp);
}

/* Get and put at once; return the slot index. */
static unsigned int
use_key (struct fake *f, const struct ic_crypto_key *key)
{
  struct ic_crypto_keyslot *slot;
  unsigned int idx = get_ok (f, key, &slot);

  ic_crypto_put_keyslot (slot);
  return idx;
}

static struct ic_keyslot_stats
stats (struct fake *f)
{
  struct ic_keyslot_stats s;

  ic_crypto_profile_read_stats (&f->profile, &s, false);
  return s;
}

static void
sleep_ms (unsigned int ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* Poll @flag for up to @ms milliseconds. */
static bool
wait_flag (atomic_bool *flag, unsigned int ms)
{
  unsigned int i;

  for (i = 0; i < ms; i++) {
    if (atomic_load (flag))
      return true;
    sleep_ms (1);
  }
  return atomic_load (flag);
}

/* Wait (up to 10 s) until @n gets have waited for an idle slot. */
static void
wait_for_waits (struct fake *f, uint64_t n)
{
  struct ic_keyslot_stats st;
  unsigned int i;

  for (i = 0; i < 10000; i++) {
    ic_crypto_profile_read_stats (&f->profile, &st, false);
    if (st.waits >= n)
      return;
    sleep_ms (1);
  }
  ck_abort_msg ("no %" PRIu64 " waiting gets after 10 s", n);
}

/* A thread that gets a slot for a key, then puts it when told to. */
struct getter {
  pthread_t thread;
  struct fake *f;
  const struct ic_crypto_key *key;
  struct ic_crypto_keyslot *slot;
  int err;
  atomic_bool done;             /* ic_crypto_get_keyslot returned */
  atomic_bool put_now;          /* put the slot and exit */
  bool put_at_once;             /* do not wait for put_now */
};

static void *
getter_run (void *arg)
{
  struct getter *g = arg;

  g->err = ic_crypto_get_keyslot (&g->f->profile, g->key, &g->slot);
  atomic_store (&g->done, true);
  if (g->err == 0) {
    while (!g->put_at_once && !atomic_load (&g->put_now))
      sleep_ms (1);
    ic_crypto_put_keyslot (g->slot);
  }
  return NULL;
}

static void
getter_start (struct getter *g, struct fake *f,
              const struct ic_crypto_key *key, bool put_at_once)
{
  memset (g, 0, sizeof *g);
  g->f = f;
  g->key = key;
  g->put_at_once = put_at_once;
  ck_assert_int_eq (pthread_create (&g->thread, NULL, getter_run, g), 0);
}

static void
getter_join (struct getter *g)
{
  atomic_store (&g->put_now, true);
  ck_assert_int_eq (pthread_join (g->thread, NULL), 0);
}

/* Cap the address space a little above what is mapped now, so that an
 * allocation of more than @headroom bytes fails.  Undone by
 * address_space_restore().
 */
static void
address_space_limit (struct rlimit *saved, size_t headroom)
{
  FILE *fp = fopen ("/proc/self/status", "re");
  char line[256];
  unsigned long long kib = 0;
  struct rlimit rl;

  ck_assert_ptr_nonnull (fp);
  while (fgets (line, sizeof line, fp))
    if (sscanf (line, "VmSize: %llu kB", &kib) == 1)
      break;
  fclose (fp);
  ck_assert_uint_gt (kib, 0);
  ck_assert_int_eq (getrlimit (RLIMIT_AS, saved), 0);
  rl = *saved;
  rl.rlim_cur = kib * 1024 + headroom;
  ck_assert_int_eq (setrlimit (RLIMIT_AS, &rl), 0);
}

static void
address_space_restore (const struct rlimit *saved)
{
  ck_assert_int_eq (setrlimit (RLIMIT_AS, saved), 0);
}

static SRunner *runner;

/* Capping the address space fails an allocation only in a process whose
 * heap holds no memory freed by earlier tests: each test must have its
 * own process (Check's default).
 */
static bool
own_process (void)
{
  if (srunner_fork_status (runner) != CK_NOFORK)
    return true;
  fprintf (stderr, "out of memory cases need CK_FORK=yes: skipped\n");
  return false;
}

/* ---- init ---- */

/* Every slot starts idle, in index order: fresh keys take slots 0, 1, ...
 * and nothing is programmed before a get.
 */
START_TEST (test_init_idle_in_order)
{
  struct fake *f = fake_new (5);
  unsigned int i;

  ck_assert_uint_eq (ic_crypto_profile_num_slots (&f->profile), 5);
  ck_assert_uint_eq (fake_ncalls (f), 0);
  for (i = 0; i < 5; i++)
    ck_assert_uint_eq (use_key (f, keys[i]), i);
  for (i = 0; i < 5; i++)
    assert_call (f, i, FAKE_PROGRAM, keys[i], i);
  fake_free (f);
}
END_TEST

/* The key hash has roundup_pow_of_two(num_slots) buckets, at least 2. */
static const struct {
  unsigned int num_slots;
  unsigned int log_ht_size;
} ht_sizes[] = {
  { 1, 1 }, { 2, 1 }, { 3, 2 }, { 4, 2 }, { 5, 3 }, { 8, 3 }, { 9, 4 },
  { 100, 7 }, { 128, 7 }, { 129, 8 }, { 1024, 10 }, { 65536, 16 },
};

START_TEST (test_init_hash_size)
{
  struct ic_crypto_profile p;
  unsigned int n = ht_sizes[_i].num_slots;
  unsigned int i;

  ck_assert_int_eq (ic_crypto_profile_init (&p, n), 0);
  ck_assert_uint_eq (ic_crypto_profile_num_slots (&p), n);
  ck_assert_uint_eq (p.log_slot_ht_size, ht_sizes[_i].log_ht_size);
  ck_assert_ptr_nonnull (p.slot_hashtable);
  for (i = 0; i < (1u << p.log_slot_ht_size); i++)
    ck_assert_ptr_null (p.slot_hashtable[i].first);
  /* Capabilities start empty. */
  ck_assert (ic_crypto_profile_is_empty (&p));
  ck_assert_uint_eq (p.max_dun_bytes_supported, 0);
  ck_assert_uint_eq (p.key_types_supported, 0);
  ic_crypto_profile_destroy (&p);
}
END_TEST

/* num_slots 0: a passthrough profile owns nothing. */
START_TEST (test_init_no_slots)
{
  struct ic_crypto_profile p;

  memset (&p, 0xa5, sizeof p);
  ck_assert_int_eq (ic_crypto_profile_init (&p, 0), 0);
  ck_assert_uint_eq (ic_crypto_profile_num_slots (&p), 0);
  ck_assert_ptr_null (p.slots);
  ck_assert_ptr_null (p.slot_hashtable);
  ck_assert_ptr_null (p.ll_ops.keyslot_program);
  ck_assert (ic_crypto_profile_is_empty (&p));
  ic_crypto_profile_destroy (&p);
}
END_TEST

/* Out of memory for the slots, then for the hash: -ENOMEM, a message, and
 * a wiped profile.
 */
static const struct {
  unsigned int num_slots;
  size_t headroom;
} init_nomem[] = {
  /* 16M slots do not fit in 64 MiB. */
  { 1u << 24, 64u << 20 },
  /* 1M + 1 slots (about 60 MiB) fit; their 2M-bucket hash (16 MiB) does
   * not.
   */
  { (1u << 20) + 1, 72u << 20 },
};

START_TEST (test_init_nomem)
{
  struct ic_crypto_profile p;
  struct rlimit saved;
  char msg[128];
  unsigned int n = init_nomem[_i].num_slots;
  int r;

  if (!own_process ())
    return;
  memset (&p, 0xa5, sizeof p);
  address_space_limit (&saved, init_nomem[_i].headroom);
  r = ic_crypto_profile_init (&p, n);
  address_space_restore (&saved);
  ck_assert_int_eq (r, -ENOMEM);
  snprintf (msg, sizeof msg, "profile: init: out of memory for %u keyslots",
            n);
  ck_assert_str_eq (ic_last_error (), msg);
  ck_assert_ptr_null (p.slots);
  ck_assert_ptr_null (p.slot_hashtable);
  ck_assert_uint_eq (p.num_slots, 0);
}
END_TEST

/* ---- get: a resident key is reused without programming ---- */

START_TEST (test_get_hit)
{
  struct fake *f = fake_new (2);
  struct ic_crypto_keyslot *s1;
  struct ic_crypto_keyslot *s2;
  struct ic_keyslot_stats st;

  /* A miss programs slot 0. */
  ck_assert_uint_eq (get_ok (f, keys[2], &s1), 0);
  ck_assert_uint_eq (fake_ncalls (f), 1);
  /* While held, the same key shares the slot (two references). */
  ck_assert_uint_eq (get_ok (f, keys[2], &s2), 0);
  ck_assert_ptr_eq (s1, s2);
  ck_assert_uint_eq (fake_ncalls (f), 1);
  ic_crypto_put_keyslot (s1);
  ic_crypto_put_keyslot (s2);
  /* Idle, it is found again without programming. */
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 1);
  st = stats (f);
  ck_assert_uint_eq (st.misses, 1);
  ck_assert_uint_eq (st.programs, 1);
  ck_assert_uint_eq (st.hits, 2);
  /* A put of NULL (a passthrough "slot") is nothing. */
  ic_crypto_put_keyslot (NULL);
  fake_free (f);
}
END_TEST

/* Keys are identified by their object: k0 and k1 have the same bytes and
 * take two slots.
 */
START_TEST (test_get_key_identity)
{
  struct fake *f = fake_new (2);
  struct ic_crypto_keyslot *s0;
  struct ic_crypto_keyslot *s1;

  ck_assert_mem_eq (keys[0]->bytes, keys[1]->bytes, keys[0]->size);
  ck_assert_uint_eq (get_ok (f, keys[0], &s0), 0);
  ck_assert_uint_eq (get_ok (f, keys[1], &s1), 1);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  ic_crypto_put_keyslot (s0);
  ic_crypto_put_keyslot (s1);
  fake_free (f);
}
END_TEST

/* ---- idle slots keep their key ---- */

START_TEST (test_idle_keeps_key)
{
  struct fake *f = fake_new (3);
  unsigned int i;

  for (i = 0; i < 3; i++)
    ck_assert_uint_eq (use_key (f, keys[i + 2]), i);
  ck_assert_uint_eq (fake_ncalls (f), 3);
  /* All idle, all still programmed: each key comes back to its slot. */
  for (i = 0; i < 3; i++) {
    ck_assert_ptr_eq (atomic_load (&f->hw[i]), keys[i + 2]);
    ck_assert_uint_eq (use_key (f, keys[i + 2]), i);
  }
  ck_assert_uint_eq (use_key (f, keys[3]), 1);
  ck_assert_uint_eq (fake_ncalls (f), 3);
  ck_assert_uint_eq (stats (f).hits, 4);
  fake_free (f);
}
END_TEST

/* ---- LRU: the least recently released idle slot is replaced ---- */

START_TEST (test_lru)
{
  struct fake *f = fake_new (3);
  struct ic_crypto_keyslot *a;
  struct ic_crypto_keyslot *b;
  struct ic_crypto_keyslot *c;
  struct ic_crypto_keyslot *d;

  /* A, B, C in slots 0, 1, 2; released B, A, C. */
  ck_assert_uint_eq (get_ok (f, keys[2], &a), 0);
  ck_assert_uint_eq (get_ok (f, keys[3], &b), 1);
  ck_assert_uint_eq (get_ok (f, keys[4], &c), 2);
  ic_crypto_put_keyslot (b);
  ic_crypto_put_keyslot (a);
  ic_crypto_put_keyslot (c);

  /* D takes B's slot, then E takes A's, F takes C's. */
  ck_assert_uint_eq (get_ok (f, keys[5], &d), 1);
  assert_call (f, 3, FAKE_PROGRAM, keys[5], 1);
  ck_assert_uint_eq (use_key (f, keys[6]), 0);
  assert_call (f, 4, FAKE_PROGRAM, keys[6], 0);
  /* Released after E, D is younger than F's victim C. */
  ic_crypto_put_keyslot (d);
  ck_assert_uint_eq (use_key (f, keys[7]), 2);
  assert_call (f, 5, FAKE_PROGRAM, keys[7], 2);

  /* B was replaced: it is programmed again, into the LRU slot 0 (E). */
  ck_assert_uint_eq (use_key (f, keys[3]), 0);
  assert_call (f, 6, FAKE_PROGRAM, keys[3], 0);
  ck_assert_uint_eq (fake_ncalls (f), 7);
  fake_free (f);
}
END_TEST

/* A hit takes the slot off the LRU list; its release puts it at the tail,
 * making it the most recently used.
 */
START_TEST (test_lru_hit_requeues)
{
  struct fake *f = fake_new (2);

  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (use_key (f, keys[3]), 1);
  /* LRU order now 0, 1; a hit on slot 0 makes it 1, 0. */
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (use_key (f, keys[4]), 1);
  ck_assert_uint_eq (use_key (f, keys[5]), 0);
  fake_free (f);
}
END_TEST

/* References are counted per thread group (brlock shard): a slot taken
 * on one thread and released on another is idle once every reference is
 * dropped, whichever threads took and dropped them, and the LRU order
 * follows the last release.
 */
struct cross_put {
  struct ic_crypto_keyslot *slot;
};

static void *
put_on_other_thread (void *arg)
{
  struct cross_put *cp = arg;

  ic_crypto_put_keyslot (cp->slot);
  return NULL;
}

static void
put_elsewhere (struct ic_crypto_keyslot *slot)
{
  struct cross_put cp = { slot };
  pthread_t t;

  ck_assert_int_eq (pthread_create (&t, NULL, put_on_other_thread, &cp), 0);
  ck_assert_int_eq (pthread_join (t, NULL), 0);
}

START_TEST (test_put_other_thread)
{
  struct fake *f = fake_new (2);
  struct ic_crypto_keyslot *a1;
  struct ic_crypto_keyslot *a2;
  struct ic_crypto_keyslot *b;
  unsigned int i;

  ck_assert_uint_eq (get_ok (f, keys[2], &a1), 0);
  ck_assert_uint_eq (get_ok (f, keys[2], &a2), 0);
  ck_assert_uint_eq (get_ok (f, keys[3], &b), 1);
  put_elsewhere (a1);
  /* One reference left: still busy. */
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), -EBUSY);
  put_elsewhere (a2);
  put_elsewhere (b);
  /* Both idle; slot 0 was released first: k4 takes it. */
  ck_assert_uint_eq (use_key (f, keys[4]), 0);
  /* Many rounds of get here, put there: the count never drifts. */
  for (i = 0; i < 1000; i++) {
    ck_assert_uint_eq (get_ok (f, keys[3], &b), 1);
    put_elsewhere (b);
  }
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[3]), 0);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[4]), 0);
  fake_free (f);
}
END_TEST

/* ---- waiting: unbounded while no slot is idle ---- */

START_TEST (test_wait)
{
  struct fake *f = fake_new (1);
  struct ic_crypto_keyslot *a;
  struct getter g;
  struct ic_keyslot_stats st;

  ck_assert_uint_eq (get_ok (f, keys[2], &a), 0);
  getter_start (&g, f, keys[3], false);
  /* Blocked while slot 0 is held by A. */
  wait_for_waits (f, 1);
  sleep_ms (200);
  ck_assert (!atomic_load (&g.done));
  ck_assert_uint_eq (fake_ncalls (f), 1);
  ck_assert_uint_eq (stats (f).waits, 1);
  /* The key still resident is shared meanwhile, without waiting. */
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  /* Released, it gets the slot. */
  ic_crypto_put_keyslot (a);
  ck_assert (wait_flag (&g.done, 10000));
  ck_assert_int_eq (g.err, 0);
  ck_assert_uint_eq (ic_crypto_keyslot_index (g.slot), 0);
  ck_assert_ptr_eq (atomic_load (&f->hw[0]), keys[3]);
  getter_join (&g);
  assert_call (f, 1, FAKE_PROGRAM, keys[3], 0);

  st = stats (f);
  ck_assert_uint_eq (st.waits, 1);
  ck_assert_uint_eq (st.wait.count, 1);
  ck_assert_uint_ge (st.wait.max_ns, 150 * 1000000ull);
  fake_free (f);
}
END_TEST

/* Two gets wait for one slot: one programs it, the other waits on until
 * that one releases it.  Each waiting get counts once.
 */
START_TEST (test_wait_two)
{
  struct fake *f = fake_new (1);
  struct ic_crypto_keyslot *a;
  struct getter g1;
  struct getter g2;
  struct ic_keyslot_stats st;
  struct getter *first;
  struct getter *second;

  ck_assert_uint_eq (get_ok (f, keys[2], &a), 0);
  getter_start (&g1, f, keys[3], false);
  getter_start (&g2, f, keys[4], false);
  wait_for_waits (f, 2);
  /* Hold the next program long enough for both waiters to be woken. */
  fake_set_hold (f, true);
  ic_crypto_put_keyslot (a);
  fake_wait_holding (f, 1);
  sleep_ms (100);
  fake_set_hold (f, false);

  while (!atomic_load (&g1.done) && !atomic_load (&g2.done))
    sleep_ms (1);
  first = atomic_load (&g1.done) ? &g1 : &g2;
  second = first == &g1 ? &g2 : &g1;
  ck_assert_int_eq (first->err, 0);
  sleep_ms (100);
  ck_assert (!atomic_load (&second->done));
  atomic_store (&first->put_now, true);
  ck_assert (wait_flag (&second->done, 10000));
  ck_assert_int_eq (second->err, 0);
  getter_join (&g1);
  getter_join (&g2);

  st = stats (f);
  ck_assert_uint_eq (st.waits, 2);
  ck_assert_uint_eq (st.wait.count, 2);
  ck_assert_uint_eq (st.misses, 3);
  ck_assert_uint_eq (st.programs, 3);
  fake_free (f);
}
END_TEST

/* ---- program failure ---- */

/* The driver's -errno fails the get; the slot stays idle and keeps its
 * old key.
 */
START_TEST (test_program_failure)
{
  struct fake *f = fake_new (1);
  struct ic_crypto_keyslot *slot = (void *) 1;
  struct ic_keyslot_stats st;

  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  fake_fail_programs (f, 1, -ENOSPC, NULL);
  ck_assert_int_eq (ic_crypto_get_keyslot (&f->profile, keys[3], &slot),
                    -ENOSPC);
  ck_assert_ptr_null (slot);
  assert_call (f, 1, FAKE_PROGRAM, keys[3], 0);
  /* Slot 0 still holds A (a hit, nothing programmed) ... */
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  /* ... and is idle: B can have it now. */
  ck_assert_uint_eq (use_key (f, keys[3]), 0);
  assert_call (f, 2, FAKE_PROGRAM, keys[3], 0);

  st = stats (f);
  ck_assert_uint_eq (st.misses, 3);
  ck_assert_uint_eq (st.programs, 2);
  ck_assert_uint_eq (st.program_failures, 1);
  ck_assert_uint_eq (st.hits, 1);
  fake_free (f);
}
END_TEST

/* A driver that breaks the rule and returns a positive number: -EIO. */
START_TEST (test_program_failure_positive)
{
  struct fake *f = fake_new (1);
  struct ic_crypto_keyslot *slot;

  fake_fail_programs (f, 1, 1, NULL);
  ck_assert_int_eq (ic_crypto_get_keyslot (&f->profile, keys[2], &slot),
                    -EIO);
  ck_assert_ptr_null (slot);
  ck_assert_uint_eq (stats (f).program_failures, 1);
  fake_free (f);
}
END_TEST

/* A get blocked while a program fails goes on and gets the slot. */
START_TEST (test_program_failure_wakes)
{
  struct fake *f = fake_new (1);
  struct getter gb;
  struct getter gc;

  fake_fail_programs (f, 1, -EKEYREJECTED, keys[3]);
  fake_set_hold (f, true);
  getter_start (&gb, f, keys[3], true);
  fake_wait_holding (f, 1);
  getter_start (&gc, f, keys[4], false);
  sleep_ms (100);
  ck_assert (!atomic_load (&gc.done));
  fake_set_hold (f, false);
  ck_assert (wait_flag (&gb.done, 10000));
  ck_assert_int_eq (gb.err, -EKEYREJECTED);
  ck_assert (wait_flag (&gc.done, 10000));
  ck_assert_int_eq (gc.err, 0);
  ck_assert_uint_eq (ic_crypto_keyslot_index (gc.slot), 0);
  getter_join (&gb);
  getter_join (&gc);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  fake_free (f);
}
END_TEST

/* Gets waiting for an idle slot when it comes back: whichever programs
 * first, the failing key fails and the other gets the slot.
 */
START_TEST (test_program_failure_waiters)
{
  struct fake *f = fake_new (1);
  struct ic_crypto_keyslot *a;
  struct getter gb;
  struct getter gc;

  ck_assert_uint_eq (get_ok (f, keys[2], &a), 0);
  fake_fail_programs (f, 1, -EKEYREJECTED, keys[3]);
  getter_start (&gb, f, keys[3], true);
  getter_start (&gc, f, keys[4], true);
  wait_for_waits (f, 2);
  ck_assert (!atomic_load (&gb.done));
  ck_assert (!atomic_load (&gc.done));
  ic_crypto_put_keyslot (a);
  ck_assert (wait_flag (&gb.done, 10000));
  ck_assert (wait_flag (&gc.done, 10000));
  getter_join (&gb);
  getter_join (&gc);
  ck_assert_int_eq (gb.err, -EKEYREJECTED);
  ck_assert_int_eq (gc.err, 0);
  ck_assert_uint_eq (stats (f).program_failures, 1);
  fake_free (f);
}
END_TEST

/* ---- passthrough (num_slots 0) ---- */

START_TEST (test_passthrough)
{
  struct fake *f = fake_new (0);
  struct ic_crypto_keyslot *slot = (void *) 1;

  ck_assert_int_eq (ic_crypto_get_keyslot (&f->profile, keys[2], &slot), 0);
  ck_assert_ptr_null (slot);
  ic_crypto_put_keyslot (slot);
  ck_assert_uint_eq (fake_ncalls (f), 0);

  /* Evict forwards to keyslot_evict with slot -1 and returns its result. */
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), 0);
  assert_call (f, 0, FAKE_EVICT, keys[2], -1);
  f->evict_err = -ENODEV;
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[3]), -ENODEV);
  assert_call (f, 1, FAKE_EVICT, keys[3], -1);
  /* No evict op: 0. */
  f->profile.ll_ops.keyslot_evict = NULL;
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[3]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  /* Nothing to reprogram. */
  ck_assert_uint_eq (ic_crypto_reprogram_all_keys (&f->profile), 0);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  ck_assert_uint_eq (stats (f).evictions, 0);
  ck_assert_uint_eq (stats (f).reprograms, 0);
  fake_free (f);
}
END_TEST

/* ---- eviction ---- */

/* A key in no slot: 0, and the driver is not called. */
START_TEST (test_evict_not_resident)
{
  struct fake *f = fake_new (2);

  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), 0);
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[3]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 1);
  ck_assert_uint_eq (stats (f).evictions, 0);
  fake_free (f);
}
END_TEST

/* An idle key: the driver evicts it from its slot; the key is gone. */
START_TEST (test_evict_idle)
{
  struct fake *f = fake_new (2);

  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (use_key (f, keys[3]), 1);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[3]), 0);
  assert_call (f, 2, FAKE_EVICT, keys[3], 1);
  ck_assert_ptr_null (atomic_load (&f->hw[1]));
  /* A second eviction finds nothing. */
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[3]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 3);
  /* A is still there. */
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 3);
  ck_assert_uint_eq (stats (f).evictions, 1);
  ck_assert_uint_eq (stats (f).evict_busy, 0);
  fake_free (f);
}
END_TEST

/* The slot of an evicted key stays idle where it was in the LRU order: it
 * is neither taken off the list nor moved to its head.
 */
START_TEST (test_evict_slot_stays_idle)
{
  struct fake *f = fake_new (2);

  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (use_key (f, keys[3]), 1);
  /* LRU order 0, 1; evicting B leaves slot 1 empty but second. */
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[3]), 0);
  ck_assert_uint_eq (use_key (f, keys[4]), 0);
  ck_assert_uint_eq (use_key (f, keys[5]), 1);
  /* Evicting the only idle slot's key does not make it busy either. */
  {
    struct ic_crypto_keyslot *c;

    ck_assert_uint_eq (get_ok (f, keys[4], &c), 0);
    ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[5]), 0);
    ck_assert_uint_eq (use_key (f, keys[6]), 1);
    ic_crypto_put_keyslot (c);
  }
  fake_free (f);
}
END_TEST

/* A key still in use: -EBUSY with a message, no driver call, and the key
 * is unlinked all the same; the holder keeps its slot.
 */
START_TEST (test_evict_busy)
{
  struct fake *f = fake_new (2);
  struct ic_crypto_keyslot *a;
  struct ic_keyslot_stats st;

  ck_assert_uint_eq (get_ok (f, keys[2], &a), 0);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), -EBUSY);
  ck_assert_str_eq (ic_last_error (),
                    "fake: evict k2: key is still in use by I/O in keyslot 0");
  ck_assert_uint_eq (fake_ncalls (f), 1);
  ck_assert_ptr_null (ic_crypto_keyslot_key (a));
  /* The hardware still has it: the request in flight goes on. */
  ck_assert_ptr_eq (atomic_load (&f->hw[0]), keys[2]);
  /* Unlinked: a new get of A programs it again, into another slot. */
  ck_assert_uint_eq (use_key (f, keys[2]), 1);
  assert_call (f, 1, FAKE_PROGRAM, keys[2], 1);
  ic_crypto_put_keyslot (a);
  /* Evicting it again evicts the new copy. */
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), 0);
  assert_call (f, 2, FAKE_EVICT, keys[2], 1);
  st = stats (f);
  ck_assert_uint_eq (st.evictions, 2);
  ck_assert_uint_eq (st.evict_busy, 1);
  /* Slot 0, released after slot 1, holds no key; it is reused in LRU
   * order like any idle slot.
   */
  ck_assert_uint_eq (use_key (f, keys[3]), 1);
  ck_assert_uint_eq (use_key (f, keys[4]), 0);
  assert_call (f, 4, FAKE_PROGRAM, keys[4], 0);
  fake_free (f);
}
END_TEST

/* A key about to be freed after an eviction found it busy: the slot it
 * was unlinked from still holds it in the hardware; ic_crypto_purge_key
 * evicts it from there once, and leaves every other slot alone.
 */
START_TEST (test_purge_after_busy)
{
  struct fake *f = fake_new (3);
  struct ic_crypto_keyslot *a;

  ck_assert_uint_eq (get_ok (f, keys[2], &a), 0);
  ck_assert_uint_eq (use_key (f, keys[3]), 1);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), -EBUSY);
  /* Still in use: nothing to purge yet. */
  ic_crypto_purge_key (&f->profile, keys[2]);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  ic_crypto_put_keyslot (a);
  ck_assert_ptr_eq (atomic_load (&f->hw[0]), keys[2]);
  /* The evict of a key-remove finds it in no slot ... */
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  /* ... the purge evicts it from the hardware of slot 0, once. */
  ic_crypto_purge_key (&f->profile, keys[2]);
  assert_call (f, 2, FAKE_EVICT, keys[2], 0);
  ck_assert_ptr_null (atomic_load (&f->hw[0]));
  ic_crypto_purge_key (&f->profile, keys[2]);
  ic_crypto_purge_key (&f->profile, keys[3]);
  ck_assert_uint_eq (fake_ncalls (f), 3);
  ck_assert_ptr_eq (atomic_load (&f->hw[1]), keys[3]);
  /* A slot programmed with another key since is not touched. */
  ck_assert_uint_eq (get_ok (f, keys[4], &a), 2);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[4]), -EBUSY);
  ic_crypto_put_keyslot (a);
  ck_assert_uint_eq (use_key (f, keys[5]), 1);
  ck_assert_uint_eq (use_key (f, keys[6]), 0);
  ck_assert_uint_eq (use_key (f, keys[7]), 2);
  ic_crypto_purge_key (&f->profile, keys[4]);
  ck_assert_uint_eq (fake_ncalls (f), 7);
  ck_assert_ptr_eq (atomic_load (&f->hw[2]), keys[7]);
  fake_free (f);
}
END_TEST

/* A driver error is returned, and the key is unlinked anyway. */
START_TEST (test_evict_driver_error)
{
  struct fake *f = fake_new (1);

  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  f->evict_err = -EIO;
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), -EIO);
  assert_call (f, 1, FAKE_EVICT, keys[2], 0);
  f->evict_err = 0;
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  assert_call (f, 2, FAKE_PROGRAM, keys[2], 0);
  ck_assert_uint_eq (stats (f).evictions, 1);
  fake_free (f);
}
END_TEST

/* No evict op on a profile with slots: the key is unlinked, 0. */
START_TEST (test_evict_no_op)
{
  struct fake *f = fake_new (1);

  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  f->profile.ll_ops.keyslot_evict = NULL;
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[2]), 0);
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (fake_ncalls (f), 2);
  fake_free (f);
}
END_TEST

/* ---- reprogram_all_keys ---- */

START_TEST (test_reprogram)
{
  struct fake *f = fake_new (5);
  struct ic_crypto_keyslot *held;
  struct ic_keyslot_stats st;
  unsigned int n;

  /* Slots: 0 A, 1 B (held), 2 C evicted, 3 D, 4 never used. */
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ck_assert_uint_eq (get_ok (f, keys[3], &held), 1);
  ck_assert_uint_eq (use_key (f, keys[4]), 2);
  ck_assert_uint_eq (use_key (f, keys[5]), 3);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[4]), 0);
  n = fake_ncalls (f);

  ck_assert_uint_eq (ic_crypto_reprogram_all_keys (&f->profile), 0);
  ck_assert_uint_eq (fake_ncalls (f), n + 3);
  assert_call (f, n, FAKE_PROGRAM, keys[2], 0);
  assert_call (f, n + 1, FAKE_PROGRAM, keys[3], 1);
  assert_call (f, n + 2, FAKE_PROGRAM, keys[5], 3);

  /* Failures are counted, and the other slots are still done. */
  fake_fail_programs (f, 2, -EIO, NULL);
  ck_assert_uint_eq (ic_crypto_reprogram_all_keys (&f->profile), 2);
  ck_assert_uint_eq (fake_ncalls (f), n + 6);
  assert_call (f, n + 5, FAKE_PROGRAM, keys[5], 3);

  st = stats (f);
  ck_assert_uint_eq (st.reprograms, 2);
  ck_assert_uint_eq (st.programs, 4 + 3 + 1);
  ck_assert_uint_eq (st.program_failures, 2);
  /* The profile still maps every key to its slot. */
  ic_crypto_put_keyslot (held);
  ck_assert_uint_eq (use_key (f, keys[3]), 1);
  ck_assert_uint_eq (fake_ncalls (f), n + 6);
  fake_free (f);
}
END_TEST


/* ---- stats ---- */

/* Every counter, exactly, over a scripted run; reading with reset zeroes
 * them.
 */
START_TEST (test_stats)
{
  struct fake *f = fake_new (2);
  struct ic_crypto_keyslot *a;
  struct ic_crypto_keyslot *b;
  struct ic_crypto_keyslot *x;
  struct ic_keyslot_stats st;
  struct getter g;
  unsigned int i;

  use_key (f, keys[2]);                 /* miss: slot 0 */
  use_key (f, keys[2]);                 /* hit */
  get_ok (f, keys[3], &a);              /* miss: slot 1, held */
  get_ok (f, keys[3], &x);              /* hit */
  ic_crypto_put_keyslot (x);
  fake_fail_programs (f, 1, -EIO, NULL);
  ck_assert_int_eq (ic_crypto_get_keyslot (&f->profile, keys[4], &x),
                    -EIO);              /* miss, failed: slot 0 */
  get_ok (f, keys[4], &b);              /* miss: slot 0, held */
  /* Both slots held: keys[5] waits, then takes slot 0. */
  getter_start (&g, f, keys[5], true);
  wait_for_waits (f, 1);
  sleep_ms (50);
  ck_assert (!atomic_load (&g.done));
  ic_crypto_put_keyslot (b);
  getter_join (&g);                     /* miss */
  ck_assert_int_eq (g.err, 0);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[6]), 0);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[3]), -EBUSY);
  ic_crypto_put_keyslot (a);
  ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[5]), 0);
  use_key (f, keys[2]);                 /* miss: keys[4] replaced it */
  /* One program: slot 0 holds keys[2], slot 1 nothing. */
  ck_assert_uint_eq (ic_crypto_reprogram_all_keys (&f->profile), 0);

  ic_crypto_profile_read_stats (&f->profile, &st, true);
  ck_assert_uint_eq (st.hits, 2);
  ck_assert_uint_eq (st.misses, 6);
  ck_assert_uint_eq (st.programs, 5 + 1);
  ck_assert_uint_eq (st.program_failures, 1);
  ck_assert_uint_eq (st.evictions, 2);
  ck_assert_uint_eq (st.evict_busy, 1);
  ck_assert_uint_eq (st.reprograms, 1);
  ck_assert_uint_eq (st.waits, 1);
  ck_assert_uint_eq (st.wait.count, 1);
  ck_assert_uint_ge (st.wait.total_ns, 40 * 1000000ull);
  ck_assert_uint_eq (st.wait.max_ns, st.wait.total_ns);

  /* Reset: all zero, the histogram too. */
  ic_crypto_profile_read_stats (&f->profile, &st, false);
  ck_assert_uint_eq (st.hits, 0);
  ck_assert_uint_eq (st.misses, 0);
  ck_assert_uint_eq (st.programs, 0);
  ck_assert_uint_eq (st.program_failures, 0);
  ck_assert_uint_eq (st.evictions, 0);
  ck_assert_uint_eq (st.evict_busy, 0);
  ck_assert_uint_eq (st.reprograms, 0);
  ck_assert_uint_eq (st.waits, 0);
  ck_assert_uint_eq (st.wait.count, 0);
  ck_assert_uint_eq (st.wait.total_ns, 0);
  ck_assert_uint_eq (st.wait.max_ns, 0);
  for (i = 0; i < IC_HISTOGRAM_BUCKETS; i++)
    ck_assert_uint_eq (st.wait.buckets[i], 0);

  /* Without reset, reading twice gives the same. */
  use_key (f, keys[2]);
  ic_crypto_profile_read_stats (&f->profile, &st, false);
  ck_assert_uint_eq (st.hits, 1);
  ic_crypto_profile_read_stats (&f->profile, &st, false);
  ck_assert_uint_eq (st.hits, 1);
  fake_free (f);
}
END_TEST

/* ---- capabilities ---- */

/* A profile with AES-256-XTS at 512 and 4096, Adiantum at 4096, 8 DUN
 * bytes, raw keys.
 */
static void
caps_example (struct ic_crypto_profile *p)
{
  ck_assert_int_eq (ic_crypto_profile_init (p, 0), 0);
  p->modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x1000 | 0x200;
  p->modes_supported[IC_ENCRYPTION_MODE_ADIANTUM] = 0x1000;
  p->max_dun_bytes_supported = 8;
  p->key_types_supported = IC_CRYPTO_KEY_TYPE_RAW;
}

static const struct {
  int mode;
  unsigned int data_unit_size;
  unsigned int dun_bytes;
  enum ic_crypto_key_type key_type;
  bool supported;
} cfgs[] = {
  { IC_ENCRYPTION_MODE_AES_256_XTS, 4096, 8, IC_CRYPTO_KEY_TYPE_RAW, true },
  { IC_ENCRYPTION_MODE_AES_256_XTS, 512, 1, IC_CRYPTO_KEY_TYPE_RAW, true },
  { IC_ENCRYPTION_MODE_ADIANTUM, 4096, 8, IC_CRYPTO_KEY_TYPE_RAW, true },
  /* Data unit size. */
  { IC_ENCRYPTION_MODE_AES_256_XTS, 1024, 8, IC_CRYPTO_KEY_TYPE_RAW, false },
  { IC_ENCRYPTION_MODE_ADIANTUM, 512, 8, IC_CRYPTO_KEY_TYPE_RAW, false },
  /* Mode. */
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 4096, 8, IC_CRYPTO_KEY_TYPE_RAW,
    false },
  { IC_ENCRYPTION_MODE_SM4_XTS, 4096, 8, IC_CRYPTO_KEY_TYPE_RAW, false },
  { IC_ENCRYPTION_MODE_INVALID, 4096, 8, IC_CRYPTO_KEY_TYPE_RAW, false },
  { IC_ENCRYPTION_MODE_MAX, 4096, 8, IC_CRYPTO_KEY_TYPE_RAW, false },
  /* DUN bytes. */
  { IC_ENCRYPTION_MODE_AES_256_XTS, 4096, 9, IC_CRYPTO_KEY_TYPE_RAW, false },
  { IC_ENCRYPTION_MODE_ADIANTUM, 4096, 32, IC_CRYPTO_KEY_TYPE_RAW, false },
  /* Key type. */
  { IC_ENCRYPTION_MODE_AES_256_XTS, 4096, 8, IC_CRYPTO_KEY_TYPE_HW_WRAPPED,
    false },
};

/* "stats --reset" while gets record waits: every wait is in exactly one
 * read (a read followed by a reset lost those recorded in between).
 */
#define RESET_RACE_SAMPLES 1000000

struct wait_recorder {
  struct ic_crypto_profile *p;
  atomic_bool go;                       /* the reader is reading */
  atomic_bool done;
};

static void *
record_waits (void *arg)
{
  struct wait_recorder *w = arg;
  unsigned int i;

  while (!atomic_load (&w->go))
    sched_yield ();
  for (i = 0; i < RESET_RACE_SAMPLES; i++)
    ic_histogram_add (&w->p->stats.wait, 1000 + (i & 1023));
  atomic_store (&w->done, true);
  return NULL;
}

static void
add_read (const struct ic_keyslot_stats *st, uint64_t *count,
          uint64_t *buckets)
{
  unsigned int b;

  *count += st->wait.count;
  for (b = 0; b < IC_HISTOGRAM_BUCKETS; b++)
    *buckets += st->wait.buckets[b];
}

START_TEST (test_stats_reset_race)
{
  struct ic_crypto_profile p;
  struct wait_recorder w = { .p = &p };
  struct ic_keyslot_stats st;
  uint64_t count = 0;
  uint64_t buckets = 0;
  pthread_t t;

  ck_assert_int_eq (ic_crypto_profile_init (&p, 2), 0);
  ck_assert_int_eq (pthread_create (&t, NULL, record_waits, &w), 0);
  while (!atomic_load (&w.done)) {
    ic_crypto_profile_read_stats (&p, &st, true);
    add_read (&st, &count, &buckets);
    atomic_store (&w.go, true);
  }
  ck_assert_int_eq (pthread_join (t, NULL), 0);
  ic_crypto_profile_read_stats (&p, &st, true);
  add_read (&st, &count, &buckets);
  ck_assert_uint_eq (count, RESET_RACE_SAMPLES);
  ck_assert_uint_eq (buckets, RESET_RACE_SAMPLES);
  ic_crypto_profile_destroy (&p);
}
END_TEST

START_TEST (test_cfg_supported)
{
  struct ic_crypto_profile p;
  struct ic_crypto_config cfg;

  caps_example (&p);
  cfg.crypto_mode = cfgs[_i].mode;
  cfg.data_unit_size = cfgs[_i].data_unit_size;
  cfg.dun_bytes = cfgs[_i].dun_bytes;
  cfg.key_type = cfgs[_i].key_type;
  ck_assert_int_eq (ic_crypto_cfg_supported (&p, &cfg), cfgs[_i].supported);
  /* No profile supports nothing. */
  ck_assert (!ic_crypto_cfg_supported (NULL, &cfg));
  /* Wrapped keys too, once the profile takes them. */
  if (cfgs[_i].key_type == IC_CRYPTO_KEY_TYPE_HW_WRAPPED) {
    p.key_types_supported |= IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
    ck_assert (ic_crypto_cfg_supported (&p, &cfg));
  }
  ic_crypto_profile_destroy (&p);
}
END_TEST

static void
assert_caps (const struct ic_crypto_profile *p, unsigned int max_dun,
             unsigned int key_types, const unsigned int *modes)
{
  unsigned int m;

  ck_assert_uint_eq (p->max_dun_bytes_supported, max_dun);
  ck_assert_uint_eq (p->key_types_supported, key_types);
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (p->modes_supported[m], modes[m]);
}

START_TEST (test_intersect)
{
  struct ic_crypto_profile parent;
  struct ic_crypto_profile child;
  const unsigned int all[IC_ENCRYPTION_MODE_MAX] = {
    UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX,
  };
  unsigned int want[IC_ENCRYPTION_MODE_MAX] = { 0 };
  const unsigned int none[IC_ENCRYPTION_MODE_MAX] = { 0 };

  ck_assert_int_eq (ic_crypto_profile_init (&parent, 0), 0);
  ic_crypto_set_all_capabilities (&parent);
  assert_caps (&parent, UINT32_MAX, UINT32_MAX, all);

  /* From everything, the first child's capabilities. */
  caps_example (&child);
  ic_crypto_intersect_capabilities (&parent, &child);
  want[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x1200;
  want[IC_ENCRYPTION_MODE_ADIANTUM] = 0x1000;
  assert_caps (&parent, 8, IC_CRYPTO_KEY_TYPE_RAW, want);

  /* A second child: per field, what both have; DUN bytes the minimum. */
  child.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x1000 | 0x400;
  child.modes_supported[IC_ENCRYPTION_MODE_ADIANTUM] = 0;
  child.modes_supported[IC_ENCRYPTION_MODE_SM4_XTS] = 0x1000;
  child.max_dun_bytes_supported = 4;
  child.key_types_supported = IC_CRYPTO_KEY_TYPE_RAW |
    IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  ic_crypto_intersect_capabilities (&parent, &child);
  want[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x1000;
  want[IC_ENCRYPTION_MODE_ADIANTUM] = 0;
  assert_caps (&parent, 4, IC_CRYPTO_KEY_TYPE_RAW, want);
  /* A child with more DUN bytes does not raise the minimum. */
  child.max_dun_bytes_supported = 32;
  ic_crypto_intersect_capabilities (&parent, &child);
  ck_assert_uint_eq (parent.max_dun_bytes_supported, 4);
  /* A child with other key types only clears them all. */
  child.key_types_supported = IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  ic_crypto_intersect_capabilities (&parent, &child);
  assert_caps (&parent, 4, 0, want);
  ck_assert (!ic_crypto_profile_is_empty (&parent));

  /* A NULL child (no profile) wipes everything. */
  ic_crypto_set_all_capabilities (&parent);
  ic_crypto_intersect_capabilities (&parent, NULL);
  assert_caps (&parent, 0, 0, none);
  ck_assert (ic_crypto_profile_is_empty (&parent));
  ic_crypto_profile_destroy (&parent);
  ic_crypto_profile_destroy (&child);
}
END_TEST

START_TEST (test_union)
{
  struct ic_crypto_profile parent;
  struct ic_crypto_profile child;
  unsigned int want[IC_ENCRYPTION_MODE_MAX] = { 0 };

  ck_assert_int_eq (ic_crypto_profile_init (&parent, 0), 0);
  caps_example (&child);
  /* From nothing, the child's capabilities. */
  ic_crypto_union_capabilities (&parent, &child);
  want[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x1200;
  want[IC_ENCRYPTION_MODE_ADIANTUM] = 0x1000;
  assert_caps (&parent, 8, IC_CRYPTO_KEY_TYPE_RAW, want);

  /* Per field, what either has; DUN bytes the maximum. */
  memset (child.modes_supported, 0, sizeof child.modes_supported);
  child.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x400;
  child.modes_supported[IC_ENCRYPTION_MODE_SM4_XTS] = 0x1000;
  child.max_dun_bytes_supported = 4;
  child.key_types_supported = IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  ic_crypto_union_capabilities (&parent, &child);
  want[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x1600;
  want[IC_ENCRYPTION_MODE_SM4_XTS] = 0x1000;
  assert_caps (&parent, 8,
               IC_CRYPTO_KEY_TYPE_RAW | IC_CRYPTO_KEY_TYPE_HW_WRAPPED, want);
  child.max_dun_bytes_supported = 16;
  ic_crypto_union_capabilities (&parent, &child);
  ck_assert_uint_eq (parent.max_dun_bytes_supported, 16);

  /* A NULL child adds nothing. */
  ic_crypto_union_capabilities (&parent, NULL);
  assert_caps (&parent, 16,
               IC_CRYPTO_KEY_TYPE_RAW | IC_CRYPTO_KEY_TYPE_HW_WRAPPED, want);
  ic_crypto_profile_destroy (&parent);
  ic_crypto_profile_destroy (&child);
}
END_TEST

/* has_capabilities (target, reference): each field of the reference that
 * the target lacks makes it false.
 */
enum has_case {
  HAS_EQUAL,
  HAS_TARGET_MORE,
  HAS_REF_MORE_DU,
  HAS_REF_MORE_MODE,
  HAS_REF_MORE_DUN,
  HAS_REF_MORE_KEY_TYPE,
  HAS_REF_EMPTY,
  HAS_CASES
};

START_TEST (test_has_capabilities)
{
  struct ic_crypto_profile target;
  struct ic_crypto_profile ref;
  bool want = true;

  caps_example (&target);
  caps_example (&ref);
  switch ((enum has_case) _i) {
  case HAS_EQUAL:
    break;
  case HAS_TARGET_MORE:
    target.modes_supported[IC_ENCRYPTION_MODE_SM4_XTS] = 0x1000;
    target.max_dun_bytes_supported = 16;
    target.key_types_supported |= IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
    break;
  case HAS_REF_MORE_DU:
    ref.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] |= 0x400;
    want = false;
    break;
  case HAS_REF_MORE_MODE:
    ref.modes_supported[IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV] = 0x1000;
    want = false;
    break;
  case HAS_REF_MORE_DUN:
    ref.max_dun_bytes_supported = 9;
    want = false;
    break;
  case HAS_REF_MORE_KEY_TYPE:
    ref.key_types_supported |= IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
    want = false;
    break;
  case HAS_REF_EMPTY:
    ic_crypto_intersect_capabilities (&ref, NULL);
    break;
  case HAS_CASES:
    abort ();
  }
  ck_assert_int_eq (ic_crypto_has_capabilities (&target, &ref), want);
  /* NULL reference: true, whatever the target; NULL target: false. */
  ck_assert (ic_crypto_has_capabilities (&target, NULL));
  ck_assert (ic_crypto_has_capabilities (NULL, NULL));
  ck_assert (!ic_crypto_has_capabilities (NULL, &ref));
  ic_crypto_profile_destroy (&target);
  ic_crypto_profile_destroy (&ref);
}
END_TEST

/* Capabilities are copied, not the ops, the driver's object or the name;
 * they may grow or shrink (the caller decides when that is safe).
 */
START_TEST (test_update_capabilities)
{
  struct fake *f = fake_new (1);
  struct ic_crypto_profile src;
  unsigned int want[IC_ENCRYPTION_MODE_MAX] = { 0 };

  caps_example (&src);
  src.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 0;
  src.modes_supported[IC_ENCRYPTION_MODE_SM4_XTS] = 0x10000;
  src.max_dun_bytes_supported = 12;
  src.key_types_supported = IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  snprintf (src.name, sizeof src.name, "src");
  ic_crypto_update_capabilities (&f->profile, &src);
  want[IC_ENCRYPTION_MODE_ADIANTUM] = 0x1000;
  want[IC_ENCRYPTION_MODE_SM4_XTS] = 0x10000;
  assert_caps (&f->profile, 12, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, want);
  ck_assert_ptr_eq (f->profile.ll_ops.keyslot_program, fake_keyslot_program);
  ck_assert_ptr_eq (f->profile.ll_ops.keyslot_evict, fake_keyslot_evict);
  ck_assert_ptr_eq (f->profile.priv, f);
  ck_assert_str_eq (f->profile.name, "fake");
  ck_assert_uint_eq (ic_crypto_profile_num_slots (&f->profile), 1);
  /* The slots still work. */
  ck_assert_uint_eq (use_key (f, keys[2]), 0);
  ic_crypto_profile_destroy (&src);
  fake_free (f);
}
END_TEST

START_TEST (test_is_empty)
{
  struct ic_crypto_profile p;
  int m;

  ck_assert_int_eq (ic_crypto_profile_init (&p, 0), 0);
  ck_assert (ic_crypto_profile_is_empty (&p));
  /* Only modes count. */
  p.max_dun_bytes_supported = 32;
  p.key_types_supported = IC_CRYPTO_KEY_TYPE_RAW;
  ck_assert (ic_crypto_profile_is_empty (&p));
  for (m = IC_ENCRYPTION_MODE_INVALID; m < IC_ENCRYPTION_MODE_MAX; m++) {
    p.modes_supported[m] = 0x10000;
    ck_assert (!ic_crypto_profile_is_empty (&p));
    p.modes_supported[m] = 0;
    ck_assert (ic_crypto_profile_is_empty (&p));
  }
  ic_crypto_set_all_capabilities (&p);
  ck_assert (!ic_crypto_profile_is_empty (&p));
  ic_crypto_profile_destroy (&p);
}
END_TEST

/* ---- hardware-wrapped key operations ---- */

/* What the fake wrapped-key ops saw. */
static struct {
  unsigned int calls;
  struct ic_crypto_profile *profile;
  const uint8_t *in;
  size_t in_size;
  uint8_t *out;
  bool locked;
} wk;

static int
fake_derive_sw_secret (struct ic_crypto_profile *p, const uint8_t *eph_key,
                       size_t eph_key_size,
                       uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE])
{
  wk.calls++;
  wk.profile = p;
  wk.in = eph_key;
  wk.in_size = eph_key_size;
  wk.out = sw_secret;
  wk.locked = lock_is_held (p);
  return -EBADMSG;
}

static int
fake_import_key (struct ic_crypto_profile *p, const uint8_t *raw_key,
                 size_t raw_key_size,
                 uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  wk.calls++;
  wk.profile = p;
  wk.in = raw_key;
  wk.in_size = raw_key_size;
  wk.out = lt_key;
  wk.locked = lock_is_held (p);
  return 100;
}

static int
fake_generate_key (struct ic_crypto_profile *p,
                   uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  wk.calls++;
  wk.profile = p;
  wk.in = NULL;
  wk.in_size = 0;
  wk.out = lt_key;
  wk.locked = lock_is_held (p);
  return 101;
}

static int
fake_prepare_key (struct ic_crypto_profile *p, const uint8_t *lt_key,
                  size_t lt_key_size,
                  uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  wk.calls++;
  wk.profile = p;
  wk.in = lt_key;
  wk.in_size = lt_key_size;
  wk.out = eph_key;
  wk.locked = lock_is_held (p);
  return 102;
}

enum wk_op { WK_DERIVE, WK_IMPORT, WK_GENERATE, WK_PREPARE, WK_OPS };

static int
call_wk_op (enum wk_op op, struct ic_crypto_profile *p, const uint8_t *in,
            size_t in_size, uint8_t *out)
{
  switch (op) {
  case WK_DERIVE: return ic_crypto_derive_sw_secret (p, in, in_size, out);
  case WK_IMPORT: return ic_crypto_import_key (p, in, in_size, out);
  case WK_GENERATE: return ic_crypto_generate_key (p, out);
  case WK_PREPARE: return ic_crypto_prepare_key (p, in, in_size, out);
  case WK_OPS: break;
  }
  abort ();
}

/* Loop over the four operations. */
START_TEST (test_wrapped_key_ops)
{
  enum wk_op op = _i;
  static const int results[WK_OPS] = { -EBADMSG, 100, 101, 102 };
  struct ic_crypto_profile p;
  uint8_t in[64] = { 1, 2, 3 };
  uint8_t out[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE];

  ck_assert_int_eq (ic_crypto_profile_init (&p, 0), 0);
  p.ll_ops.derive_sw_secret = fake_derive_sw_secret;
  p.ll_ops.import_key = fake_import_key;
  p.ll_ops.generate_key = fake_generate_key;
  p.ll_ops.prepare_key = fake_prepare_key;
  memset (&wk, 0, sizeof wk);

  /* No profile. */
  ck_assert_int_eq (call_wk_op (op, NULL, in, 48, out), -EOPNOTSUPP);
  /* No HW_WRAPPED key type, even with the op. */
  p.key_types_supported = IC_CRYPTO_KEY_TYPE_RAW;
  ck_assert_int_eq (call_wk_op (op, &p, in, 48, out), -EOPNOTSUPP);
  ck_assert_uint_eq (wk.calls, 0);

  /* HW_WRAPPED: the op is called under the lock with our arguments. */
  p.key_types_supported = IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  ck_assert_int_eq (call_wk_op (op, &p, in, 48, out), results[op]);
  ck_assert_uint_eq (wk.calls, 1);
  ck_assert_ptr_eq (wk.profile, &p);
  ck_assert_ptr_eq (wk.out, out);
  if (op != WK_GENERATE) {
    ck_assert_ptr_eq (wk.in, in);
    ck_assert_uint_eq (wk.in_size, 48);
  }
  ck_assert (wk.locked);
  /* The lock was released. */
  ck_assert (!ic_crypto_hw_entered (&p));

  /* HW_WRAPPED without the op. */
  memset (&p.ll_ops, 0, sizeof p.ll_ops);
  ck_assert_int_eq (call_wk_op (op, &p, in, 48, out), -EOPNOTSUPP);
  ck_assert_uint_eq (wk.calls, 1);
  ic_crypto_profile_destroy (&p);
}
END_TEST

/* ---- destroy ---- */

/* Destroy wipes the profile, key references and all; NULL is ignored. */
START_TEST (test_destroy)
{
  struct fake *f = fake_new (4);
  const unsigned char *b = (const unsigned char *) &f->profile;
  size_t i;

  use_key (f, keys[2]);
  use_key (f, keys[3]);
  ic_crypto_profile_destroy (&f->profile);
  for (i = 0; i < sizeof f->profile; i++)
    ck_assert_uint_eq (b[i], 0);
  ic_crypto_profile_destroy (NULL);
  pthread_mutex_destroy (&f->lock);
  pthread_cond_destroy (&f->cond);
  free (f);
}
END_TEST

/* ---- concurrency ---- */

#define STRESS_THREADS 8
#define STRESS_ITERATIONS 3000

struct stresser {
  pthread_t thread;
  struct fake *f;
  unsigned int seed;
  bool evictor;
  atomic_bool *stop;
  unsigned int errors;
};

static void *
stress_run (void *arg)
{
  struct stresser *s = arg;
  struct fake *f = s->f;
  unsigned int i;

  for (i = 0; i < STRESS_ITERATIONS; i++) {
    const struct ic_crypto_key *key = keys[rand_r (&s->seed) % NKEYS];
    struct ic_crypto_keyslot *slot;
    unsigned int idx;

    if (ic_crypto_get_keyslot (&f->profile, key, &slot) != 0 || !slot) {
      s->errors++;
      continue;
    }
    idx = ic_crypto_keyslot_index (slot);
    atomic_fetch_add (&f->in_use[idx], 1);
    /* The hardware holds our key for as long as we hold the slot. */
    if (atomic_load (&f->hw[idx]) != key)
      s->errors++;
    if (rand_r (&s->seed) % 4 == 0)
      sched_yield ();
    if (atomic_load (&f->hw[idx]) != key)
      s->errors++;
    atomic_fetch_sub (&f->in_use[idx], 1);
    ic_crypto_put_keyslot (slot);
  }
  return NULL;
}

/* Evicts random keys and reprograms everything until told to stop. */
static void *
evict_run (void *arg)
{
  struct stresser *s = arg;
  struct fake *f = s->f;

  while (!atomic_load (s->stop)) {
    int r = ic_crypto_evict_key (&f->profile,
                                 keys[rand_r (&s->seed) % NKEYS]);

    if (r != 0 && r != -EBUSY)
      s->errors++;
    if (rand_r (&s->seed) % 8 == 0)
      ic_crypto_reprogram_all_keys (&f->profile);
    sched_yield ();
  }
  return NULL;
}

/* Many threads, more keys than slots, evictions and reprogramming: a slot
 * in use is never given another key, and every get succeeds.
 */
START_TEST (test_stress)
{
  struct fake *f = fake_new (3);
  struct stresser s[STRESS_THREADS + 1];
  atomic_bool stop = false;
  struct ic_keyslot_stats st;
  unsigned int i;

  for (i = 0; i <= STRESS_THREADS; i++) {
    s[i].f = f;
    s[i].seed = i + 1;
    s[i].evictor = i == STRESS_THREADS;
    s[i].stop = &stop;
    s[i].errors = 0;
    ck_assert_int_eq (pthread_create (&s[i].thread, NULL,
                                      s[i].evictor ? evict_run : stress_run,
                                      &s[i]), 0);
  }
  for (i = 0; i < STRESS_THREADS; i++)
    ck_assert_int_eq (pthread_join (s[i].thread, NULL), 0);
  atomic_store (&stop, true);
  ck_assert_int_eq (pthread_join (s[STRESS_THREADS].thread, NULL), 0);
  for (i = 0; i <= STRESS_THREADS; i++)
    ck_assert_uint_eq (s[i].errors, 0);
  ck_assert (!atomic_load (&f->reprogrammed_in_use));
  st = stats (f);
  ck_assert_uint_eq (st.hits + st.misses,
                     STRESS_THREADS * STRESS_ITERATIONS);
  ck_assert_uint_eq (st.program_failures, 0);
  /* Every slot is idle again: three new keys take all three. */
  for (i = 0; i < 3; i++)
    ck_assert_int_eq (ic_crypto_evict_key (&f->profile, keys[i]), 0);
  fake_free (f);
}
END_TEST

/* The lock behind profile->lock (crypto/brlock.h).  Readers that find a
 * writer in for long spin, then sleep: the writer wakes them when it
 * leaves, though it takes wait_lock only when it sees a sleeper.  A lost
 * wake-up hangs the test (the tcase's timeout).
 */
#define BRLOCK_READERS 4

struct brlock_reader {
  struct ic_brlock *l;
  atomic_uint *entered;
  unsigned int rounds;
};

static void *
brlock_reader_main (void *arg)
{
  struct brlock_reader *r = arg;
  unsigned int i;

  for (i = 0; i < r->rounds; i++) {
    ic_brlock_read_lock (r->l);
    atomic_fetch_add (r->entered, 1);
    ic_brlock_read_unlock (r->l);
  }
  return NULL;
}

static unsigned int
brlock_sleepers (struct ic_brlock *l)
{
  return __atomic_load_n (&l->sleepers, __ATOMIC_SEQ_CST);
}

START_TEST (test_brlock_sleepers_woken)
{
  struct ic_brlock *l = malloc (sizeof *l);
  struct brlock_reader r[BRLOCK_READERS];
  pthread_t t[BRLOCK_READERS];
  atomic_uint entered = 0;
  struct timespec ms = { 0, 1000 * 1000 };
  unsigned int i;
  unsigned int n;

  ck_assert_ptr_nonnull (l);
  ic_brlock_init (l);
  /* All asleep behind a writer: none gets in; all do once it leaves. */
  ic_brlock_write_lock (l);
  for (i = 0; i < BRLOCK_READERS; i++) {
    r[i] = (struct brlock_reader) { l, &entered, 1 };
    ck_assert_int_eq (pthread_create (&t[i], NULL, brlock_reader_main,
                                      &r[i]), 0);
  }
  for (n = 0; n < 10000 && brlock_sleepers (l) < BRLOCK_READERS; n++)
    nanosleep (&ms, NULL);
  ck_assert_uint_eq (brlock_sleepers (l), BRLOCK_READERS);
  ck_assert_uint_eq (atomic_load (&entered), 0);
  ic_brlock_write_unlock (l);
  for (i = 0; i < BRLOCK_READERS; i++)
    ck_assert_int_eq (pthread_join (t[i], NULL), 0);
  ck_assert_uint_eq (atomic_load (&entered), BRLOCK_READERS);
  ck_assert_uint_eq (brlock_sleepers (l), 0);

  /* Readers and short writers at once: every reader gets through. */
  atomic_store (&entered, 0);
  for (i = 0; i < BRLOCK_READERS; i++) {
    r[i] = (struct brlock_reader) { l, &entered, 20000 };
    ck_assert_int_eq (pthread_create (&t[i], NULL, brlock_reader_main,
                                      &r[i]), 0);
  }
  for (n = 0; n < 2000; n++) {
    struct timespec hold = { 0, (n % 7) * 10 * 1000 };

    ic_brlock_write_lock (l);
    if (hold.tv_nsec)
      nanosleep (&hold, NULL);
    ic_brlock_write_unlock (l);
  }
  for (i = 0; i < BRLOCK_READERS; i++)
    ck_assert_int_eq (pthread_join (t[i], NULL), 0);
  ck_assert_uint_eq (atomic_load (&entered), BRLOCK_READERS * 20000);
  ic_brlock_destroy (l);
  free (l);
}
END_TEST

/* A thread that takes its shard while a writer is in (the writer waits
 * only for the shards taken before it came) does not get in.
 */
static void *
brlock_new_thread_reader (void *arg)
{
  struct brlock_reader *r = arg;

  ic_brlock_read_lock (r->l);
  atomic_store (r->entered, 1);
  ic_brlock_read_unlock (r->l);
  return NULL;
}

START_TEST (test_brlock_new_shard_waits)
{
  struct ic_brlock *l = malloc (sizeof *l);
  atomic_uint entered = 0;
  struct brlock_reader r = { l, &entered, 1 };
  struct timespec wait = { 0, 20 * 1000 * 1000 };
  unsigned int before;
  pthread_t t;

  ck_assert_ptr_nonnull (l);
  ic_brlock_init (l);
  ic_brlock_write_lock (l);
  before = ic_brlock_shards_used ();
  ck_assert_int_eq (pthread_create (&t, NULL, brlock_new_thread_reader, &r),
                    0);
  nanosleep (&wait, NULL);
  ck_assert_uint_eq (atomic_load (&entered), 0);
  ck_assert_uint_ge (ic_brlock_shards_used (), before);
  ic_brlock_write_unlock (l);
  ck_assert_int_eq (pthread_join (t, NULL), 0);
  ck_assert_uint_eq (atomic_load (&entered), 1);
  ic_brlock_destroy (l);
  free (l);
}
END_TEST

Suite *
profile_suite (void)
{
  Suite *s = suite_create ("profile");
  TCase *tc;

  tc = tcase_create ("init");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_init_idle_in_order);
  tcase_add_loop_test (tc, test_init_hash_size, 0, ARRAY_SIZE (ht_sizes));
  tcase_add_test (tc, test_init_no_slots);
  tcase_add_loop_test (tc, test_init_nomem, 0, ARRAY_SIZE (init_nomem));
  suite_add_tcase (s, tc);

  tc = tcase_create ("get_hit");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_get_hit);
  tcase_add_test (tc, test_get_key_identity);
  suite_add_tcase (s, tc);

  tc = tcase_create ("idle_keeps_key");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_idle_keeps_key);
  suite_add_tcase (s, tc);

  tc = tcase_create ("lru");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_lru);
  tcase_add_test (tc, test_lru_hit_requeues);
  tcase_add_test (tc, test_put_other_thread);
  suite_add_tcase (s, tc);

  tc = tcase_create ("brlock");
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_brlock_sleepers_woken);
  tcase_add_test (tc, test_brlock_new_shard_waits);
  suite_add_tcase (s, tc);

  tc = tcase_create ("wait");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_wait);
  tcase_add_test (tc, test_wait_two);
  suite_add_tcase (s, tc);

  tc = tcase_create ("program_failure");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_program_failure);
  tcase_add_test (tc, test_program_failure_positive);
  tcase_add_test (tc, test_program_failure_wakes);
  tcase_add_test (tc, test_program_failure_waiters);
  suite_add_tcase (s, tc);

  tc = tcase_create ("passthrough");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_passthrough);
  suite_add_tcase (s, tc);

  tc = tcase_create ("evict");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_evict_not_resident);
  tcase_add_test (tc, test_evict_idle);
  tcase_add_test (tc, test_evict_slot_stays_idle);
  tcase_add_test (tc, test_evict_busy);
  tcase_add_test (tc, test_purge_after_busy);
  tcase_add_test (tc, test_evict_driver_error);
  tcase_add_test (tc, test_evict_no_op);
  suite_add_tcase (s, tc);

  tc = tcase_create ("reprogram");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_reprogram);
  suite_add_tcase (s, tc);

  tc = tcase_create ("stats");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_stats);
  tcase_add_test (tc, test_stats_reset_race);
  suite_add_tcase (s, tc);

  tc = tcase_create ("cfg_supported");
  tcase_add_loop_test (tc, test_cfg_supported, 0, ARRAY_SIZE (cfgs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("intersect");
  tcase_add_test (tc, test_intersect);
  suite_add_tcase (s, tc);

  tc = tcase_create ("union");
  tcase_add_test (tc, test_union);
  suite_add_tcase (s, tc);

  tc = tcase_create ("has_capabilities");
  tcase_add_loop_test (tc, test_has_capabilities, 0, HAS_CASES);
  suite_add_tcase (s, tc);

  tc = tcase_create ("update_capabilities");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_update_capabilities);
  suite_add_tcase (s, tc);

  tc = tcase_create ("is_empty");
  tcase_add_test (tc, test_is_empty);
  suite_add_tcase (s, tc);

  tc = tcase_create ("wrapped_keys");
  tcase_add_loop_test (tc, test_wrapped_key_ops, 0, WK_OPS);
  suite_add_tcase (s, tc);

  tc = tcase_create ("destroy");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_add_test (tc, test_destroy);
  suite_add_tcase (s, tc);

  tc = tcase_create ("stress");
  tcase_add_checked_fixture (tc, keys_setup, keys_teardown);
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_stress);
  suite_add_tcase (s, tc);

  return s;
}

int
main (void)
{
  SRunner *sr;
  int failed;

  sr = srunner_create (profile_suite ());
  runner = sr;
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

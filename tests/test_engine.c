/* tests/test_engine.c - unit tests of crypto/engine.c, the emulated
 * inline-encryption hardware: config validation, capabilities, en/decryption
 * through a keyslot against crypto/cipher.c directly, the per-slot
 * "hardware" key check, the DUN limit, injected faults, programming cost,
 * reset (gate, drain, reprogramming) and counters.
 */
#include <config.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <check.h>

#include "cipher.h"
#include "crypt-ctx.h"
#include "engine.h"
#include "error.h"
#include "key.h"
#include "profile.h"
#include "secmem.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

#define DU 4096
#define NDU 3
#define LEN (NDU * DU)

static const int modes[] = {
  IC_ENCRYPTION_MODE_AES_256_XTS,
  IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV,
  IC_ENCRYPTION_MODE_ADIANTUM,
  IC_ENCRYPTION_MODE_SM4_XTS,
};

/* ---- helpers ---- */

static void
setup (void)
{
  ck_assert_int_eq (ic_crypto_init (), 0);
  ic_clear_error ();
}

static void
sleep_ms (unsigned int ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* A key of @mode whose bytes derive from @seed (XTS halves differ). */
static struct ic_crypto_key *
make_key (const char *name, int mode, unsigned int seed,
          unsigned int dun_bytes, unsigned int du)
{
  uint8_t raw[IC_CRYPTO_MAX_RAW_KEY_SIZE];
  struct ic_crypto_key *key;
  unsigned int i;

  for (i = 0; i < sizeof raw; i++)
    raw[i] = seed * 31 + i * 7 + 1;
  key = ic_crypto_key_new (name, raw, ic_crypto_modes[mode].keysize,
                           IC_CRYPTO_KEY_TYPE_RAW, mode, dun_bytes, du);
  ck_assert_ptr_nonnull (key);
  return key;
}

static void
fill (uint8_t *buf, size_t len, unsigned int seed)
{
  size_t i;

  for (i = 0; i < len; i++)
    buf[i] = (i * 13 + seed * 101) >> 2;
}

/* What ic_cipher gives for @key at @dun. */
static void
reference_encrypt (const struct ic_crypto_key *key, uint8_t *dst,
                   const uint8_t *src, size_t len,
                   const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  struct ic_cipher *c = ic_cipher_new (key->crypto_cfg.crypto_mode);

  ck_assert_ptr_nonnull (c);
  ck_assert_int_eq (ic_cipher_setkey (c, key->bytes, key->size), 0);
  ck_assert_int_eq (ic_cipher_encrypt (c, dst, src, len,
                                       key->crypto_cfg.data_unit_size, dun),
                    0);
  ic_cipher_free (c);
}

static struct ic_engine *
engine_new_slots (unsigned int num_slots)
{
  struct ic_engine_config cfg;
  struct ic_engine *e;

  ic_engine_config_default (&cfg, "eng");
  cfg.num_slots = num_slots;
  e = ic_engine_new (&cfg);
  ck_assert_ptr_nonnull (e);
  return e;
}

static unsigned int
get_ok (struct ic_engine *e, const struct ic_crypto_key *key,
        struct ic_crypto_keyslot **slotp)
{
  ck_assert_int_eq (ic_crypto_get_keyslot (ic_engine_profile (e), key,
                                           slotp), 0);
  ck_assert_ptr_nonnull (*slotp);
  return ic_crypto_keyslot_index (*slotp);
}

static struct ic_engine_stats
stats (struct ic_engine *e)
{
  struct ic_engine_stats st;

  ic_engine_read_stats (e, &st, false);
  return st;
}

/* Encrypt @LEN bytes with @key at DUN 0 through @e and compare with the
 * reference; return 0 or the engine's error.
 */
static int
engine_roundtrip (struct ic_engine *e, const struct ic_crypto_key *key)
{
  static uint8_t pt[LEN];
  static uint8_t ct[LEN];
  static uint8_t want[LEN];
  struct ic_crypt_ctx ctx = { .key = key };
  struct ic_crypto_keyslot *slot;
  int r;

  fill (pt, LEN, 7);
  reference_encrypt (key, want, pt, LEN, ctx.dun);
  ic_engine_enter (e);
  r = ic_crypto_get_keyslot (ic_engine_profile (e), key, &slot);
  if (r == 0) {
    r = ic_engine_encrypt (e, slot, &ctx, ct, pt, LEN);
    if (r == 0) {
      ck_assert_mem_eq (ct, want, LEN);
      r = ic_engine_decrypt (e, slot, &ctx, ct, ct, LEN);
      if (r == 0)
        ck_assert_mem_eq (ct, pt, LEN);
    }
    ic_crypto_put_keyslot (slot);
  }
  ic_engine_exit (e);
  return r;
}

static SRunner *runner;

/* The sanitizers' runtimes, if linked in. */
extern void __asan_init (void) __attribute__ ((weak));
extern void __tsan_init (void) __attribute__ ((weak));

/* Whether an allocation can be made to fail by capping the address space:
 * only with libc's malloc (the sanitizers' allocators serve small blocks
 * from memory reserved at start), and only in a process of the test's own
 * (Check's default), whose heap holds nothing freed by earlier tests.
 */
static bool
can_fail_allocations (void)
{
  if (__asan_init || __tsan_init) {
    fprintf (stderr, "out of memory cases need libc's malloc: skipped\n");
    return false;
  }
  if (srunner_fork_status (runner) == CK_NOFORK) {
    fprintf (stderr, "out of memory cases need CK_FORK=yes: skipped\n");
    return false;
  }
  return true;
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

/* ---- config ---- */

static const struct {
  unsigned int num_slots;
  unsigned int max_dun_bytes;
  int bad_mode;                 /* 0: none */
  unsigned int bad_mask;
  const char *msg;
} bad_configs[] = {
  { 0, 8, 0, 0, "eng: keyslots=0 out of range: 1 to 1024" },
  { 1025, 8, 0, 0, "eng: keyslots=1025 out of range: 1 to 1024" },
  { 32, 0, 0, 0, "eng: max-dun-bytes=0 out of range: 1 to 32" },
  { 32, 33, 0, 0, "eng: max-dun-bytes=33 out of range: 1 to 32" },
  { 32, 8, IC_ENCRYPTION_MODE_AES_256_XTS, 0x100,
    "eng: AES-256-XTS: data unit sizes must be 512 to 65536" },
  { 32, 8, IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 0x20000,
    "eng: AES-128-CBC-ESSIV: data unit sizes must be 512 to 65536" },
  { 32, 8, IC_ENCRYPTION_MODE_ADIANTUM, 0x1,
    "eng: Adiantum: data unit sizes must be 512 to 65536" },
  { 32, 8, IC_ENCRYPTION_MODE_SM4_XTS, 0x80000000,
    "eng: SM4-XTS: data unit sizes must be 512 to 65536" },
};

START_TEST (test_config_invalid)
{
  struct ic_engine_config cfg;

  ic_engine_config_default (&cfg, "eng");
  cfg.num_slots = bad_configs[_i].num_slots;
  cfg.max_dun_bytes = bad_configs[_i].max_dun_bytes;
  if (bad_configs[_i].bad_mode)
    cfg.modes_supported[bad_configs[_i].bad_mode] |=
      bad_configs[_i].bad_mask;
  errno = 0;
  ck_assert_ptr_null (ic_engine_new (&cfg));
  ck_assert_int_eq (errno, EINVAL);
  ck_assert_str_eq (ic_last_error (), bad_configs[_i].msg);
}
END_TEST

/* The limits themselves are valid. */
static const struct {
  unsigned int num_slots;
  unsigned int max_dun_bytes;
} edge_configs[] = {
  { 1, 1 }, { 1024, 32 }, { 1, 32 }, { 1024, 1 },
};

START_TEST (test_config_edges)
{
  struct ic_engine_config cfg;
  struct ic_engine *e;

  ic_engine_config_default (&cfg, "eng");
  cfg.num_slots = edge_configs[_i].num_slots;
  cfg.max_dun_bytes = edge_configs[_i].max_dun_bytes;
  e = ic_engine_new (&cfg);
  ck_assert_ptr_nonnull (e);
  ck_assert_uint_eq (ic_crypto_profile_num_slots (ic_engine_profile (e)),
                     cfg.num_slots);
  ic_engine_free (e);
  ic_engine_free (NULL);
}
END_TEST

/* Out of memory: the allocations of an engine with 1024 keyslots (about
 * 155 KiB) cannot fit in 16 KiB more address space.  NULL, ENOMEM.
 */
START_TEST (test_new_nomem)
{
  struct ic_engine_config cfg;
  struct ic_engine *e;
  struct rlimit saved;
  int err;

  if (!can_fail_allocations ())
    return;
  /* Blocks of 16 KiB and more are mapped, the heap grows by no more than
   * asked and keeps no free memory at its top, so that the cap applies.
   */
  ck_assert_int_eq (mallopt (M_MMAP_THRESHOLD, 16 << 10), 1);
  ck_assert_int_eq (mallopt (M_TOP_PAD, 0), 1);
  malloc_trim (0);
  ic_engine_config_default (&cfg, "eng");
  cfg.num_slots = IC_ENGINE_MAX_SLOTS;
  address_space_limit (&saved, 16u << 10);
  errno = 0;
  e = ic_engine_new (&cfg);
  err = errno;
  address_space_restore (&saved);
  ck_assert_ptr_null (e);
  ck_assert_int_eq (err, ENOMEM);
  ck_assert_str_eq (ic_last_error (), "eng: out of memory");
  e = ic_engine_new (&cfg);
  ck_assert_ptr_nonnull (e);
  ic_engine_free (e);
}
END_TEST

START_TEST (test_config_default)
{
  struct ic_engine_config cfg;
  int m;

  memset (&cfg, 0xff, sizeof cfg);
  ic_engine_config_default (&cfg, NULL);
  ck_assert_str_eq (cfg.name, "engine");
  ck_assert_uint_eq (cfg.num_slots, 32);
  ck_assert_uint_eq (cfg.max_dun_bytes, 8);
  ck_assert_uint_eq (cfg.key_types, IC_CRYPTO_KEY_TYPE_RAW);
  ck_assert_uint_eq (cfg.program_us, 0);
  ck_assert_uint_eq (cfg.modes_supported[IC_ENCRYPTION_MODE_INVALID], 0);
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (cfg.modes_supported[m], IC_ALL_DATA_UNIT_SIZES);
}
END_TEST

/* ---- capabilities ---- */

/* The profile advertises exactly the config. */
START_TEST (test_capabilities)
{
  struct ic_engine_config cfg;
  struct ic_crypto_profile *p;
  struct ic_engine *e;
  int m;

  memset (&cfg, 0, sizeof cfg);
  snprintf (cfg.name, sizeof cfg.name, "ufs0");
  cfg.num_slots = 7;
  cfg.modes_supported[IC_ENCRYPTION_MODE_INVALID] = 0x1000;
  cfg.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 0x1000 | 0x200;
  cfg.modes_supported[IC_ENCRYPTION_MODE_SM4_XTS] = 0x10000;
  cfg.max_dun_bytes = 4;
  cfg.key_types = IC_CRYPTO_KEY_TYPE_RAW | IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  e = ic_engine_new (&cfg);
  ck_assert_ptr_nonnull (e);
  p = ic_engine_profile (e);

  ck_assert_str_eq (ic_engine_name (e), "ufs0");
  ck_assert_str_eq (p->name, "ufs0");
  ck_assert_mem_eq (ic_engine_config (e), &cfg, sizeof cfg);
  ck_assert_uint_eq (ic_crypto_profile_num_slots (p), 7);
  ck_assert_uint_eq (p->max_dun_bytes_supported, 4);
  ck_assert_uint_eq (p->key_types_supported, cfg.key_types);
  /* INVALID never has a data unit size. */
  ck_assert_uint_eq (p->modes_supported[IC_ENCRYPTION_MODE_INVALID], 0);
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (p->modes_supported[m], cfg.modes_supported[m]);
  ic_engine_free (e);
}
END_TEST

/* ---- en/decryption ---- */

/* Through a keyslot, the engine gives the bytes of ic_cipher, for each mode
 * (loop), several data units, a DUN with a carry into the second limb.
 */
START_TEST (test_crypt_matches_cipher)
{
  int mode = modes[_i];
  struct ic_engine_config cfg;
  struct ic_engine *e;
  struct ic_crypto_key *key;
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx;
  struct ic_engine_stats st;
  static uint8_t pt[LEN];
  static uint8_t ct[LEN];
  static uint8_t want[LEN];

  ic_engine_config_default (&cfg, "eng");
  cfg.max_dun_bytes = 16;
  e = ic_engine_new (&cfg);
  ck_assert_ptr_nonnull (e);
  key = make_key ("k1", mode, 1, 16, DU);
  memset (&ctx, 0, sizeof ctx);
  ctx.key = key;
  ctx.dun[0] = UINT64_MAX - 1;  /* DUNs ...fe, ...ff, then 2^64 */
  ctx.dun[1] = 5;
  fill (pt, LEN, mode);
  reference_encrypt (key, want, pt, LEN, ctx.dun);

  ic_engine_enter (e);
  get_ok (e, key, &slot);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, ct, pt, LEN), 0);
  ck_assert_mem_eq (ct, want, LEN);
  ck_assert_mem_ne (ct, pt, LEN);
  ck_assert_int_eq (ic_engine_decrypt (e, slot, &ctx, ct, ct, LEN), 0);
  ck_assert_mem_eq (ct, pt, LEN);
  /* In place too. */
  memcpy (ct, pt, LEN);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, ct, ct, LEN), 0);
  ck_assert_mem_eq (ct, want, LEN);
  ic_crypto_put_keyslot (slot);
  ic_engine_exit (e);

  st = stats (e);
  ck_assert_uint_eq (st.requests[mode], 3);
  ck_assert_uint_eq (st.bytes[mode], 3 * LEN);
  ck_assert_uint_eq (st.slots.programs, 1);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* Decryption leaves all-zero data units (holes) alone. */
START_TEST (test_decrypt_holes)
{
  struct ic_engine *e = engine_new_slots (1);
  struct ic_crypto_key *key = make_key ("k1", modes[_i], 1, 8, DU);
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx = { .key = key, .dun = { 9 } };
  static uint8_t pt[LEN];
  static uint8_t buf[LEN];

  fill (pt, LEN, 3);
  ic_engine_enter (e);
  get_ok (e, key, &slot);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, pt, LEN), 0);
  memset (buf + DU, 0, DU);
  ck_assert_int_eq (ic_engine_decrypt (e, slot, &ctx, buf, buf, LEN), 0);
  ck_assert_mem_eq (buf, pt, DU);
  ck_assert (ic_is_zero (buf + DU, DU));
  ck_assert_mem_eq (buf + 2 * DU, pt + 2 * DU, DU);
  ic_crypto_put_keyslot (slot);
  ic_engine_exit (e);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* A bad length is the cipher's -EINVAL, and counts no request. */
START_TEST (test_crypt_bad_length)
{
  struct ic_engine *e = engine_new_slots (1);
  struct ic_crypto_key *key = make_key ("k1", modes[0], 1, 8, DU);
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx = { .key = key };
  static uint8_t buf[LEN];

  get_ok (e, key, &slot);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, buf, DU + 16),
                    -EINVAL);
  ck_assert_int_eq (ic_engine_decrypt (e, slot, &ctx, buf, buf, 0), -EINVAL);
  ck_assert_uint_eq (stats (e).requests[modes[0]], 0);
  ic_crypto_put_keyslot (slot);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* ---- the hardware key check ---- */

/* A slot that lost its key (a buggy driver): -EIO naming the slot, for as
 * long as nothing reprograms it.
 */
START_TEST (test_key_lost)
{
  struct ic_engine *e = engine_new_slots (2);
  struct ic_crypto_key *k1 = make_key ("k1", modes[0], 1, 8, DU);
  struct ic_crypto_key *k2 = make_key ("k2", modes[0], 2, 8, DU);
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx = { .key = k2 };
  static uint8_t buf[LEN];

  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ck_assert_int_eq (engine_roundtrip (e, k2), 0);
  ic_engine_lose_keys (e);

  ck_assert_uint_eq (get_ok (e, k2, &slot), 1);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, buf, LEN), -EIO);
  ck_assert_str_eq (ic_last_error (),
                    "eng: keyslot 1 does not hold key k2: the request would "
                    "be encrypted with another key");
  ck_assert_int_eq (ic_engine_decrypt (e, slot, &ctx, buf, buf, LEN), -EIO);
  ck_assert_str_eq (ic_last_error (),
                    "eng: keyslot 1 does not hold key k2: the request would "
                    "be decrypted with another key");
  ic_crypto_put_keyslot (slot);
  /* The profile still believes it: the next get hits and fails too. */
  ck_assert_int_eq (engine_roundtrip (e, k1), -EIO);
  ck_assert_uint_eq (stats (e).key_mismatches, 3);
  ck_assert_uint_eq (stats (e).requests[modes[0]], 4);
  /* A reset reprograms both. */
  ck_assert_uint_eq (ic_engine_reset (e), 0);
  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ck_assert_int_eq (engine_roundtrip (e, k2), 0);
  ic_crypto_key_free (k1);
  ic_crypto_key_free (k2);
  ic_engine_free (e);
}
END_TEST

/* A request whose key is not the one of its slot: -EIO. */
START_TEST (test_key_wrong_slot)
{
  struct ic_engine *e = engine_new_slots (2);
  struct ic_crypto_key *k1 = make_key ("", modes[0], 1, 8, DU);
  struct ic_crypto_key *k2 = make_key ("k2", modes[0], 2, 8, DU);
  struct ic_crypto_keyslot *s1;
  struct ic_crypto_keyslot *s2;
  struct ic_crypt_ctx ctx = { .key = k1 };
  static uint8_t buf[LEN];

  get_ok (e, k1, &s1);
  get_ok (e, k2, &s2);
  ck_assert_int_eq (ic_engine_encrypt (e, s2, &ctx, buf, buf, LEN), -EIO);
  ck_assert_str_eq (ic_last_error (),
                    "eng: keyslot 1 does not hold key (unnamed): the request "
                    "would be encrypted with another key");
  ck_assert_int_eq (ic_engine_encrypt (e, s1, &ctx, buf, buf, LEN), 0);
  ic_crypto_put_keyslot (s1);
  ic_crypto_put_keyslot (s2);
  ic_crypto_key_free (k1);
  ic_crypto_key_free (k2);
  ic_engine_free (e);
}
END_TEST

/* Evicting a key whose slot is held: -EBUSY, the key is unlinked, but the
 * hardware keeps it, so the request in flight finishes; a later request
 * programs the key again.
 */
START_TEST (test_evict_busy)
{
  struct ic_engine *e = engine_new_slots (2);
  struct ic_crypto_profile *p = ic_engine_profile (e);
  struct ic_crypto_key *k1 = make_key ("k1", modes[2], 1, 8, DU);
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx = { .key = k1, .dun = { 77 } };
  struct ic_engine_stats st;
  static uint8_t pt[LEN];
  static uint8_t ct[LEN];
  static uint8_t want[LEN];

  fill (pt, LEN, 1);
  reference_encrypt (k1, want, pt, LEN, ctx.dun);
  ic_engine_enter (e);
  ck_assert_uint_eq (get_ok (e, k1, &slot), 0);
  ck_assert_int_eq (ic_crypto_evict_key (p, k1), -EBUSY);
  ck_assert_str_eq (ic_last_error (),
                    "eng: evict k1: key is still in use by I/O in keyslot 0");
  ck_assert_ptr_null (ic_crypto_keyslot_key (slot));
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, ct, pt, LEN), 0);
  ck_assert_mem_eq (ct, want, LEN);
  ck_assert_int_eq (ic_engine_decrypt (e, slot, &ctx, ct, ct, LEN), 0);
  ck_assert_mem_eq (ct, pt, LEN);
  ic_crypto_put_keyslot (slot);
  ic_engine_exit (e);

  st = stats (e);
  ck_assert_uint_eq (st.hw_evictions, 0);
  ck_assert_uint_eq (st.slots.evict_busy, 1);
  /* Programmed again (into the other idle slot, the LRU one). */
  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  st = stats (e);
  ck_assert_uint_eq (st.slots.programs, 2);
  /* An idle key is evicted from the hardware. */
  ck_assert_int_eq (ic_crypto_evict_key (p, k1), 0);
  ck_assert_uint_eq (stats (e).hw_evictions, 1);
  ic_crypto_key_free (k1);
  ic_engine_free (e);
}
END_TEST

/* After an eviction the hardware slot is empty: a request that still
 * used the slot (a caller bug) would fail instead of using a stale key.
 */
START_TEST (test_evict_clears_hw)
{
  struct ic_engine *e = engine_new_slots (1);
  struct ic_crypto_profile *p = ic_engine_profile (e);
  struct ic_crypto_key *k1 = make_key ("k1", modes[1], 1, 8, DU);
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx = { .key = k1 };
  static uint8_t buf[LEN];

  ck_assert_uint_eq (get_ok (e, k1, &slot), 0);
  ic_crypto_put_keyslot (slot);
  ck_assert_int_eq (ic_crypto_evict_key (p, k1), 0);
  ck_assert_uint_eq (stats (e).hw_evictions, 1);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, buf, LEN), -EIO);
  ck_assert_str_eq (ic_last_error (),
                    "eng: keyslot 0 does not hold key k1: the request would "
                    "be encrypted with another key");

  /* The driver refuses a slot it does not have (called as the profile
   * calls it, under its lock).
   */
  ic_crypto_hw_enter (p);
  ck_assert_int_eq (p->ll_ops.keyslot_evict (p, k1, -1), -EINVAL);
  ck_assert_int_eq (p->ll_ops.keyslot_evict (p, k1, 1), -EINVAL);
  ic_crypto_hw_exit (p);
  ck_assert_uint_eq (stats (e).hw_evictions, 1);
  ic_crypto_key_free (k1);
  ic_engine_free (e);
}
END_TEST

/* ---- DUN limit ---- */

/* With n DUN bytes, 2^(8n) - 1 is the last DUN; every data unit of a
 * request must be within it.
 */
static const unsigned int dun_limits[] = { 1, 4, 8, 9, 16, 24, 31 };

static void
dun_set_pow2 (uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE], unsigned int bits)
{
  memset (dun, 0, IC_CRYPTO_DUN_ARRAY_SIZE * sizeof dun[0]);
  dun[bits / 64] = 1ull << (bits % 64);
}

/* dun -= @v, borrowing across limbs. */
static void
dun_sub (uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE], uint64_t v)
{
  unsigned int i;

  for (i = 0; v && i < IC_CRYPTO_DUN_ARRAY_SIZE; i++) {
    uint64_t old = dun[i];

    dun[i] -= v;
    v = dun[i] > old;
  }
}

START_TEST (test_dun_limit)
{
  unsigned int n = dun_limits[_i];
  struct ic_engine_config cfg;
  struct ic_engine *e;
  struct ic_crypto_key *key;
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx;
  char msg[64];
  static uint8_t buf[LEN];

  ic_engine_config_default (&cfg, "eng");
  cfg.max_dun_bytes = n;
  e = ic_engine_new (&cfg);
  ck_assert_ptr_nonnull (e);
  key = make_key ("k1", IC_ENCRYPTION_MODE_ADIANTUM, 1, n, DU);
  memset (&ctx, 0, sizeof ctx);
  ctx.key = key;
  snprintf (msg, sizeof msg, "eng: DUN exceeds the engine's %u bytes", n);
  fill (buf, LEN, 1);
  get_ok (e, key, &slot);

  /* 2^(8n): beyond. */
  dun_set_pow2 (ctx.dun, 8 * n);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, buf, DU), -EIO);
  ck_assert_str_eq (ic_last_error (), msg);
  ck_assert_int_eq (ic_engine_decrypt (e, slot, &ctx, buf, buf, DU), -EIO);
  /* 2^(8n) - NDU: the whole request fits. */
  dun_sub (ctx.dun, NDU);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, buf, LEN), 0);
  ck_assert_int_eq (ic_engine_decrypt (e, slot, &ctx, buf, buf, LEN), 0);
  /* One more: the last data unit is at 2^(8n). */
  ic_crypt_dun_increment (ctx.dun, 1);
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, buf, LEN), -EIO);
  ck_assert_str_eq (ic_last_error (), msg);
  ck_assert_int_eq (ic_engine_decrypt (e, slot, &ctx, buf, buf, LEN), -EIO);
  /* Its first data units alone are fine. */
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, buf, LEN - DU), 0);
  ic_crypto_put_keyslot (slot);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* ---- faults ---- */

static const unsigned int fail_counts[] = { 1, 2, 5 };

/* program_fail_count N: exactly N programs fail with the chosen errno. */
START_TEST (test_fault_count)
{
  unsigned int n = fail_counts[_i];
  struct ic_engine *e = engine_new_slots (1);
  struct ic_engine_faults faults = { 0 };
  struct ic_crypto_key *key = make_key ("k1", modes[0], 1, 8, DU);
  struct ic_crypto_keyslot *slot;
  unsigned int i;

  faults.program_fail_count = n;
  faults.program_errno = ENOSPC;
  ic_engine_set_faults (e, &faults);
  for (i = 0; i < n; i++) {
    ck_assert_int_eq (ic_crypto_get_keyslot (ic_engine_profile (e), key,
                                             &slot), -ENOSPC);
    ck_assert_str_eq (ic_last_error (),
                      "eng: program keyslot 0: injected fault: "
                      "No space left on device");
    ic_engine_get_faults (e, &faults);
    ck_assert_uint_eq (faults.program_fail_count, n - i - 1);
  }
  ck_assert_int_eq (engine_roundtrip (e, key), 0);
  ck_assert_uint_eq (stats (e).slots.program_failures, n);
  ck_assert_uint_eq (stats (e).slots.programs, 1);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* program_fail_prob 1: always; 0: never; 1/2: sometimes.  No errno
 * given: EIO.
 */
START_TEST (test_fault_prob)
{
  struct ic_engine *e = engine_new_slots (1);
  struct ic_engine_faults faults = { 0 };
  struct ic_crypto_key *key = make_key ("k1", modes[0], 1, 8, DU);
  struct ic_crypto_keyslot *slot;
  struct ic_engine_stats st;
  unsigned int i;

  faults.program_fail_prob = 1.0;
  ic_engine_set_faults (e, &faults);
  ic_engine_get_faults (e, &faults);
  ck_assert_int_eq (faults.program_errno, EIO);
  for (i = 0; i < 50; i++)
    ck_assert_int_eq (ic_crypto_get_keyslot (ic_engine_profile (e), key,
                                             &slot), -EIO);
  ck_assert_str_eq (ic_last_error (),
                    "eng: program keyslot 0: injected fault: "
                    "Input/output error");

  faults.program_fail_prob = 0;
  ic_engine_set_faults (e, &faults);
  for (i = 0; i < 50; i++) {
    ck_assert_int_eq (engine_roundtrip (e, key), 0);
    ck_assert_int_eq (ic_crypto_evict_key (ic_engine_profile (e), key), 0);
  }
  ck_assert_uint_eq (stats (e).slots.program_failures, 50);
  ck_assert_uint_eq (stats (e).slots.programs, 50);

  /* In between: some of each (400 tries at 1/2: 200 +- 10 per sd). */
  faults.program_fail_prob = 0.5;
  ic_engine_set_faults (e, &faults);
  ic_engine_read_stats (e, &st, true);
  for (i = 0; i < 400; i++)
    if (ic_crypto_get_keyslot (ic_engine_profile (e), key, &slot) == 0) {
      ic_crypto_put_keyslot (slot);
      ck_assert_int_eq (ic_crypto_evict_key (ic_engine_profile (e), key), 0);
    }
  st = stats (e);
  ck_assert_uint_eq (st.slots.program_failures + st.slots.programs, 400);
  ck_assert_uint_gt (st.slots.program_failures, 100);
  ck_assert_uint_gt (st.slots.programs, 100);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* A key the engine does not advertise: -EOPNOTSUPP. */
START_TEST (test_program_unsupported)
{
  struct ic_engine_config cfg;
  struct ic_engine *e;
  struct ic_crypto_key *key = make_key ("k1", modes[2], 1, 8, DU);
  struct ic_crypto_keyslot *slot;

  ic_engine_config_default (&cfg, "eng");
  cfg.modes_supported[IC_ENCRYPTION_MODE_ADIANTUM] = 0x200;
  e = ic_engine_new (&cfg);
  ck_assert_ptr_nonnull (e);
  ck_assert_int_eq (ic_crypto_get_keyslot (ic_engine_profile (e), key,
                                           &slot), -EOPNOTSUPP);
  ck_assert_str_eq (ic_last_error (),
                    "eng: program keyslot 0: Adiantum/4096 is not supported");
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* A key the cipher refuses (XTS with equal halves): its -EINVAL, and the
 * slot keeps the key it had.
 */
START_TEST (test_program_refused)
{
  struct ic_engine *e = engine_new_slots (1);
  struct ic_crypto_key *good = make_key ("good", modes[0], 1, 8, DU);
  struct ic_crypto_key *weak;
  struct ic_crypto_keyslot *slot;
  uint8_t raw[64];

  memset (raw, 0x42, sizeof raw);
  weak = ic_crypto_key_new ("weak", raw, sizeof raw, IC_CRYPTO_KEY_TYPE_RAW,
                            IC_ENCRYPTION_MODE_AES_256_XTS, 8, DU);
  ck_assert_ptr_nonnull (weak);
  ck_assert_int_eq (engine_roundtrip (e, good), 0);
  ck_assert_int_eq (ic_crypto_get_keyslot (ic_engine_profile (e), weak,
                                           &slot), -EINVAL);
  ck_assert_str_eq (ic_last_error (),
                    "cipher: AES-256-XTS: set key: the two halves of the key "
                    "are equal, which XTS forbids");
  ck_assert_int_eq (engine_roundtrip (e, good), 0);
  ck_assert_uint_eq (stats (e).slots.programs, 1);
  ic_crypto_key_free (good);
  ic_crypto_key_free (weak);
  ic_engine_free (e);
}
END_TEST

/* ic_cipher_setkey, wrapped (-Wl,--wrap): fails once with -ENOMEM when
 * armed, as it does when libgcrypt runs out of secure memory for the
 * ESSIV salt's SHA-256.
 */
int __real_ic_cipher_setkey (struct ic_cipher *c, const uint8_t *key,
                             size_t size);
int __wrap_ic_cipher_setkey (struct ic_cipher *c, const uint8_t *key,
                             size_t size);
static atomic_bool setkey_fail_next;

int
__wrap_ic_cipher_setkey (struct ic_cipher *c, const uint8_t *key,
                         size_t size)
{
  if (atomic_exchange (&setkey_fail_next, false))
    return -ENOMEM;
  return __real_ic_cipher_setkey (c, key, size);
}

/* A program that fails while keying the slot's ciphers (a valid key, but
 * the cipher library fails) fails the get with its errno, and the slot
 * keeps the key it had: that key's next request is a hit that works.
 */
START_TEST (test_program_setkey_fails)
{
  struct ic_engine *e = engine_new_slots (1);
  struct ic_crypto_key *k1 = make_key ("k1", modes[1], 1, 8, DU);
  struct ic_crypto_key *k2 = make_key ("k2", modes[1], 2, 8, DU);
  struct ic_crypto_keyslot *slot;

  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  atomic_store (&setkey_fail_next, true);
  ic_engine_enter (e);
  ck_assert_int_eq (ic_crypto_get_keyslot (ic_engine_profile (e), k2,
                                           &slot), -ENOMEM);
  ic_engine_exit (e);
  ck_assert (!atomic_load (&setkey_fail_next));
  ic_engine_read_stats (e, &(struct ic_engine_stats) { 0 }, true);
  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ck_assert_uint_eq (stats (e).slots.hits, 1);
  ck_assert_int_eq (engine_roundtrip (e, k2), 0);
  ck_assert_uint_eq (stats (e).slots.programs, 1);
  ic_crypto_key_free (k1);
  ic_crypto_key_free (k2);
  ic_engine_free (e);
}
END_TEST

/* ---- programming cost ---- */

static const struct {
  unsigned int program_us;
  unsigned int delay_us;
  bool fail;
} costs[] = {
  { 30000, 0, false },
  { 0, 40000, false },
  { 20000, 30000, false },
  { 20000, 30000, true },       /* a failed program takes its time too */
};

START_TEST (test_program_cost)
{
  struct ic_engine_config cfg;
  struct ic_engine_faults faults = { 0 };
  struct ic_engine *e;
  struct ic_crypto_key *key = make_key ("k1", modes[0], 1, 8, DU);
  struct ic_crypto_keyslot *slot;
  uint64_t start;
  uint64_t took;
  uint64_t want = (costs[_i].program_us + costs[_i].delay_us) * 1000ull;

  ic_engine_config_default (&cfg, "eng");
  cfg.program_us = costs[_i].program_us;
  e = ic_engine_new (&cfg);
  ck_assert_ptr_nonnull (e);
  faults.program_delay_us = costs[_i].delay_us;
  faults.program_fail_count = costs[_i].fail;
  ic_engine_set_faults (e, &faults);

  start = ic_now_ns ();
  ck_assert_int_eq (ic_crypto_get_keyslot (ic_engine_profile (e), key,
                                           &slot),
                    costs[_i].fail ? -EIO : 0);
  took = ic_now_ns () - start;
  ck_assert_uint_ge (took, want);
  if (!costs[_i].fail) {
    ic_crypto_put_keyslot (slot);
    /* A hit programs nothing, so costs nothing. */
    get_ok (e, key, &slot);
    ic_crypto_put_keyslot (slot);
    ck_assert_uint_eq (stats (e).slots.programs, 1);
    ck_assert_uint_eq (stats (e).slots.hits, 1);
  }
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* ---- reset ---- */

/* Every resident key is programmed again, and en/decryption goes on. */
START_TEST (test_reset)
{
  struct ic_engine *e = engine_new_slots (4);
  struct ic_crypto_key *k[3];
  struct ic_engine_stats st;
  unsigned int i;

  for (i = 0; i < 3; i++) {
    k[i] = make_key (i == 0 ? "k0" : i == 1 ? "k1" : "k2", modes[i], i, 8,
                     DU);
    ck_assert_int_eq (engine_roundtrip (e, k[i]), 0);
  }
  ic_engine_read_stats (e, &st, true);
  ck_assert_uint_eq (ic_engine_reset (e), 0);
  st = stats (e);
  ck_assert_uint_eq (st.slots.programs, 3);
  ck_assert_uint_eq (st.slots.reprograms, 1);
  ck_assert_uint_eq (st.resets, 1);
  for (i = 0; i < 3; i++)
    ck_assert_int_eq (engine_roundtrip (e, k[i]), 0);
  st = stats (e);
  ck_assert_uint_eq (st.slots.programs, 3);
  ck_assert_uint_eq (st.slots.hits, 3);
  ck_assert_uint_eq (st.key_mismatches, 0);
  for (i = 0; i < 3; i++)
    ic_crypto_key_free (k[i]);
  ic_engine_free (e);
}
END_TEST

/* A slot that fails to be reprogrammed: counted and reported, and (beyond
 * upstream, which leaves the key linked to the empty slot) unlinked, so
 * the key's next request programs it again.
 */
START_TEST (test_reset_failure)
{
  struct ic_engine *e = engine_new_slots (2);
  struct ic_engine_faults faults = { 0 };
  struct ic_crypto_key *k1 = make_key ("k1", modes[0], 1, 8, DU);
  struct ic_crypto_key *k2 = make_key ("k2", modes[3], 2, 8, DU);

  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ck_assert_int_eq (engine_roundtrip (e, k2), 0);
  faults.program_fail_count = 1;
  ic_engine_set_faults (e, &faults);
  ck_assert_uint_eq (ic_engine_reset (e), 1);
  ck_assert_str_eq (ic_last_error (),
                    "eng: reset: 1 keyslot(s) could not be reprogrammed");
  /* Slot 0 (k1) came back empty and unlinked: k1 is programmed again
   * (a miss), k2 is still in its slot (a hit).
   */
  ic_engine_read_stats (e, &(struct ic_engine_stats) { 0 }, true);
  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ck_assert_int_eq (engine_roundtrip (e, k2), 0);
  {
    struct ic_engine_stats st = stats (e);

    ck_assert_uint_eq (st.slots.misses, 1);
    ck_assert_uint_eq (st.slots.hits, 1);
    ck_assert_uint_eq (st.key_mismatches, 0);
  }
  ck_assert_uint_eq (ic_engine_reset (e), 0);
  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ck_assert_uint_eq (stats (e).resets, 1);
  ic_crypto_key_free (k1);
  ic_crypto_key_free (k2);
  ic_engine_free (e);
}
END_TEST

struct resetter {
  struct ic_engine *e;
  atomic_bool done;
  unsigned int failed;
};

static void *
reset_run (void *arg)
{
  struct resetter *r = arg;

  r->failed = ic_engine_reset (r->e);
  atomic_store (&r->done, true);
  return NULL;
}

struct enterer {
  struct ic_engine *e;
  atomic_bool entered;
  uint64_t resets_seen;         /* resets done when it got in */
};

static void *
enter_run (void *arg)
{
  struct enterer *n = arg;

  ic_engine_enter (n->e);
  n->resets_seen = stats (n->e).resets;
  atomic_store (&n->entered, true);
  ic_engine_exit (n->e);
  return NULL;
}

/* A request inside the gate delays the reset; a new request waits at the
 * gate until the reset is done.
 */
START_TEST (test_reset_gate)
{
  struct ic_engine *e = engine_new_slots (1);
  struct ic_crypto_key *k1 = make_key ("k1", modes[0], 1, 8, DU);
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx = { .key = k1 };
  struct resetter r = { .e = e };
  struct enterer n = { .e = e };
  pthread_t rt;
  pthread_t nt;
  static uint8_t buf[LEN];

  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  /* A request in flight. */
  ic_engine_enter (e);
  get_ok (e, k1, &slot);
  ck_assert_int_eq (pthread_create (&rt, NULL, reset_run, &r), 0);
  sleep_ms (200);
  ck_assert (!atomic_load (&r.done));
  ck_assert_uint_eq (stats (e).resets, 0);
  /* It still works meanwhile: the keys are not lost yet. */
  ck_assert_int_eq (ic_engine_encrypt (e, slot, &ctx, buf, buf, LEN), 0);

  /* A new request is held at the gate. */
  ck_assert_int_eq (pthread_create (&nt, NULL, enter_run, &n), 0);
  sleep_ms (200);
  ck_assert (!atomic_load (&n.entered));

  /* The request completes: the reset runs, then the gate opens. */
  ic_crypto_put_keyslot (slot);
  ic_engine_exit (e);
  ck_assert_int_eq (pthread_join (rt, NULL), 0);
  ck_assert_int_eq (pthread_join (nt, NULL), 0);
  ck_assert (atomic_load (&r.done));
  ck_assert_uint_eq (r.failed, 0);
  ck_assert (atomic_load (&n.entered));
  ck_assert_uint_eq (n.resets_seen, 1);
  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ic_crypto_key_free (k1);
  ic_engine_free (e);
}
END_TEST

/* ---- stats ---- */

START_TEST (test_stats)
{
  struct ic_engine *e = engine_new_slots (1);
  struct ic_crypto_key *k1 = make_key ("k1", modes[1], 1, 8, DU);
  struct ic_crypto_key *k2 = make_key ("k2", modes[3], 2, 8, DU);
  struct ic_engine_stats st;
  int m;

  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ck_assert_int_eq (engine_roundtrip (e, k2), 0);
  ic_engine_lose_keys (e);
  ck_assert_int_eq (engine_roundtrip (e, k2), -EIO);
  ck_assert_int_eq (ic_crypto_evict_key (ic_engine_profile (e), k2), 0);
  ck_assert_uint_eq (ic_engine_reset (e), 0);

  ic_engine_read_stats (e, &st, true);
  ck_assert_uint_eq (st.requests[modes[1]], 4);
  ck_assert_uint_eq (st.bytes[modes[1]], 4 * LEN);
  ck_assert_uint_eq (st.requests[modes[3]], 2);
  ck_assert_uint_eq (st.bytes[modes[3]], 2 * LEN);
  ck_assert_uint_eq (st.requests[modes[0]], 0);
  ck_assert_uint_eq (st.key_mismatches, 1);
  ck_assert_uint_eq (st.hw_evictions, 1);
  ck_assert_uint_eq (st.resets, 1);
  ck_assert_uint_eq (st.slots.misses, 2);
  ck_assert_uint_eq (st.slots.hits, 2);
  ck_assert_uint_eq (st.slots.programs, 2);
  ck_assert_uint_eq (st.slots.evictions, 1);
  ck_assert_uint_eq (st.slots.reprograms, 1);

  /* Read with reset: everything is zero after. */
  ic_engine_read_stats (e, &st, false);
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++) {
    ck_assert_uint_eq (st.requests[m], 0);
    ck_assert_uint_eq (st.bytes[m], 0);
  }
  ck_assert_uint_eq (st.key_mismatches, 0);
  ck_assert_uint_eq (st.hw_evictions, 0);
  ck_assert_uint_eq (st.resets, 0);
  ck_assert_uint_eq (st.slots.misses, 0);
  ck_assert_uint_eq (st.slots.hits, 0);
  ck_assert_uint_eq (st.slots.programs, 0);
  ck_assert_uint_eq (st.slots.evictions, 0);
  ck_assert_uint_eq (st.slots.reprograms, 0);
  /* And counting starts again. */
  ck_assert_int_eq (engine_roundtrip (e, k1), 0);
  ic_engine_read_stats (e, &st, false);
  ck_assert_uint_eq (st.requests[modes[1]], 2);
  ic_engine_read_stats (e, &st, false);
  ck_assert_uint_eq (st.requests[modes[1]], 2);
  ic_crypto_key_free (k1);
  ic_crypto_key_free (k2);
  ic_engine_free (e);
}
END_TEST

/* ---- concurrency ---- */

#define STRESS_THREADS 6
#define STRESS_ITERATIONS 150
#define STRESS_KEYS 5
#define STRESS_LEN (2 * 512)

static struct ic_crypto_key *stress_keys[STRESS_KEYS];
static uint8_t stress_pt[STRESS_LEN];
static uint8_t stress_ct[STRESS_KEYS][STRESS_LEN];

struct stresser {
  pthread_t thread;
  struct ic_engine *e;
  unsigned int seed;
  unsigned int errors;
  atomic_bool *stop;
};

static void *
stress_run (void *arg)
{
  struct stresser *s = arg;
  uint8_t buf[STRESS_LEN];
  unsigned int i;

  for (i = 0; i < STRESS_ITERATIONS; i++) {
    unsigned int k = rand_r (&s->seed) % STRESS_KEYS;
    struct ic_crypt_ctx ctx = { .key = stress_keys[k], .dun = { 5 } };
    struct ic_crypto_keyslot *slot;

    ic_engine_enter (s->e);
    if (ic_crypto_get_keyslot (ic_engine_profile (s->e), ctx.key,
                               &slot) != 0) {
      s->errors++;
      ic_engine_exit (s->e);
      continue;
    }
    if (ic_engine_encrypt (s->e, slot, &ctx, buf, stress_pt,
                           STRESS_LEN) != 0 ||
        memcmp (buf, stress_ct[k], STRESS_LEN) != 0)
      s->errors++;
    if (ic_engine_decrypt (s->e, slot, &ctx, buf, buf, STRESS_LEN) != 0 ||
        memcmp (buf, stress_pt, STRESS_LEN) != 0)
      s->errors++;
    ic_crypto_put_keyslot (slot);
    ic_engine_exit (s->e);
  }
  return NULL;
}

static void *
stress_reset_run (void *arg)
{
  struct stresser *s = arg;

  while (!atomic_load (s->stop)) {
    if (ic_engine_reset (s->e) != 0)
      s->errors++;
    sleep_ms (2);
  }
  return NULL;
}

/* Many requests on more keys than slots, with resets: every one gets the
 * right bytes, and nothing is lost at the gate.
 */
START_TEST (test_stress)
{
  struct ic_engine *e = engine_new_slots (2);
  struct stresser s[STRESS_THREADS + 1];
  atomic_bool stop = false;
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 5 };
  struct ic_engine_stats st;
  unsigned int i;

  fill (stress_pt, STRESS_LEN, 9);
  for (i = 0; i < STRESS_KEYS; i++) {
    stress_keys[i] = make_key ("k", modes[i % ARRAY_SIZE (modes)], i, 8,
                               512);
    reference_encrypt (stress_keys[i], stress_ct[i], stress_pt, STRESS_LEN,
                       dun);
  }
  for (i = 0; i <= STRESS_THREADS; i++) {
    s[i].e = e;
    s[i].seed = i + 1;
    s[i].errors = 0;
    s[i].stop = &stop;
    ck_assert_int_eq (pthread_create (&s[i].thread, NULL,
                                      i == STRESS_THREADS ? stress_reset_run
                                                          : stress_run,
                                      &s[i]), 0);
  }
  for (i = 0; i < STRESS_THREADS; i++)
    ck_assert_int_eq (pthread_join (s[i].thread, NULL), 0);
  atomic_store (&stop, true);
  ck_assert_int_eq (pthread_join (s[STRESS_THREADS].thread, NULL), 0);
  for (i = 0; i <= STRESS_THREADS; i++)
    ck_assert_uint_eq (s[i].errors, 0);
  st = stats (e);
  ck_assert_uint_eq (st.key_mismatches, 0);
  ck_assert_uint_eq (st.slots.hits + st.slots.misses,
                     STRESS_THREADS * STRESS_ITERATIONS);
  for (i = 0; i < STRESS_KEYS; i++)
    ic_crypto_key_free (stress_keys[i]);
  ic_engine_free (e);
}
END_TEST

Suite *
engine_suite (void)
{
  Suite *s = suite_create ("engine");
  TCase *tc;

  tc = tcase_create ("config");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_loop_test (tc, test_config_invalid, 0, ARRAY_SIZE (bad_configs));
  tcase_add_loop_test (tc, test_config_edges, 0, ARRAY_SIZE (edge_configs));
  tcase_add_test (tc, test_config_default);
  tcase_add_test (tc, test_new_nomem);
  suite_add_tcase (s, tc);

  tc = tcase_create ("capabilities");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_test (tc, test_capabilities);
  suite_add_tcase (s, tc);

  tc = tcase_create ("crypt");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_loop_test (tc, test_crypt_matches_cipher, 0, ARRAY_SIZE (modes));
  tcase_add_loop_test (tc, test_decrypt_holes, 0, ARRAY_SIZE (modes));
  tcase_add_test (tc, test_crypt_bad_length);
  suite_add_tcase (s, tc);

  tc = tcase_create ("key_check");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_test (tc, test_key_lost);
  tcase_add_test (tc, test_key_wrong_slot);
  tcase_add_test (tc, test_evict_busy);
  tcase_add_test (tc, test_evict_clears_hw);
  suite_add_tcase (s, tc);

  tc = tcase_create ("dun_limit");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_loop_test (tc, test_dun_limit, 0, ARRAY_SIZE (dun_limits));
  suite_add_tcase (s, tc);

  tc = tcase_create ("faults");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_loop_test (tc, test_fault_count, 0, ARRAY_SIZE (fail_counts));
  tcase_add_test (tc, test_fault_prob);
  tcase_add_test (tc, test_program_unsupported);
  tcase_add_test (tc, test_program_refused);
  tcase_add_test (tc, test_program_setkey_fails);
  suite_add_tcase (s, tc);

  tc = tcase_create ("program_cost");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_loop_test (tc, test_program_cost, 0, ARRAY_SIZE (costs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("reset");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_reset);
  tcase_add_test (tc, test_reset_failure);
  tcase_add_test (tc, test_reset_gate);
  suite_add_tcase (s, tc);

  tc = tcase_create ("stats");
  tcase_add_checked_fixture (tc, setup, NULL);
  tcase_add_test (tc, test_stats);
  suite_add_tcase (s, tc);

  tc = tcase_create ("stress");
  tcase_add_checked_fixture (tc, setup, NULL);
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

  sr = srunner_create (engine_suite ());
  runner = sr;
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

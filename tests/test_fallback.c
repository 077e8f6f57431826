/* tests/test_fallback.c - unit tests of crypto/fallback.c, the software
 * fallback that mirrors Linux block/blk-crypto-fallback.c: its process-wide
 * profile and number of keyslots, raw keys only, en/decryption equal to
 * crypto/cipher.c (and to known answers), holes, one active mode per slot,
 * eviction, waiting for a slot, counters.
 *
 * The fallback is global to the process.  Check forks each test, and the
 * fixture also destroys the fallback and zeroes its counters first, so each
 * test starts from a fallback never used, with CK_FORK=no too.
 */
#include <config.h>

#include <errno.h>
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
#include "error.h"
#include "fallback.h"
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

/* A fallback never used, with the default number of keyslots and zeroed
 * counters.
 */
static void
setup (void)
{
  struct ic_fallback_stats st;

  ck_assert_int_eq (ic_crypto_init (), 0);
  ic_crypto_fallback_destroy ();
  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots
                    (IC_FALLBACK_DEFAULT_KEYSLOTS), 0);
  ic_crypto_fallback_read_stats (&st, true);
  ic_clear_error ();
}

static void
teardown (void)
{
  ic_crypto_fallback_destroy ();
}

static void
sleep_ms (unsigned int ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

static uint8_t *
unhex (const char *hex, size_t *len)
{
  size_t n = strlen (hex) / 2;
  uint8_t *out = malloc (n ? n : 1);

  ck_assert_ptr_nonnull (out);
  ck_assert_int_eq (n ? ic_hex_decode ("test", hex, out, n) : 0, (int) n);
  *len = n;
  return out;
}

/* A raw key of @mode whose bytes derive from @seed (XTS halves differ). */
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

/* Evict @key from the fallback, then free it: a key freed while still in
 * a slot would be found there by the next key allocated at its address
 * (keys are identified by their address, as upstream).
 */
static void
key_free (struct ic_crypto_key *key)
{
  ck_assert_int_eq (ic_crypto_fallback_evict_key (key), 0);
  ic_crypto_key_free (key);
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

/* Encrypt @len bytes with @key at @dun through the fallback, check them
 * against the reference, decrypt them back.
 */
static void
roundtrip (const struct ic_crypto_key *key, size_t len,
           const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  struct ic_crypt_ctx ctx = { .key = key };
  uint8_t *pt = malloc (len);
  uint8_t *copy = malloc (len);
  uint8_t *ct = malloc (len);
  uint8_t *want = malloc (len);

  ck_assert (pt && copy && ct && want);
  memcpy (ctx.dun, dun, sizeof ctx.dun);
  fill (pt, len, key->crypto_cfg.crypto_mode);
  memcpy (copy, pt, len);
  reference_encrypt (key, want, pt, len, dun);
  /* Into a bounce buffer: the source stays plaintext. */
  ck_assert_int_eq (ic_crypto_fallback_encrypt (&ctx, ct, pt, len), 0);
  ck_assert_mem_eq (pt, copy, len);
  ck_assert_mem_eq (ct, want, len);
  ck_assert_mem_ne (ct, pt, len);
  /* In place. */
  ck_assert_int_eq (ic_crypto_fallback_decrypt (&ctx, ct, ct, len), 0);
  ck_assert_mem_eq (ct, pt, len);
  free (want);
  free (ct);
  free (copy);
  free (pt);
}

static struct ic_fallback_stats
stats (void)
{
  struct ic_fallback_stats st;

  ic_crypto_fallback_read_stats (&st, false);
  return st;
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

/* ---- number of keyslots ---- */

/* 100 keyslots unless told otherwise; the profile of blk-crypto-fallback:
 * every mode at every data unit size, 32 DUN bytes, raw keys.
 */
START_TEST (test_default)
{
  struct ic_crypto_profile *p;
  int m;

  ck_assert_uint_eq (ic_crypto_fallback_num_keyslots (), 100);
  ck_assert_ptr_null (ic_crypto_fallback_profile ());
  ck_assert_int_eq (ic_crypto_fallback_init (), 0);
  p = ic_crypto_fallback_profile ();
  ck_assert_ptr_nonnull (p);
  ck_assert_uint_eq (ic_crypto_profile_num_slots (p), 100);
  ck_assert_str_eq (p->name, "fallback");
  ck_assert_uint_eq (p->max_dun_bytes_supported, 32);
  ck_assert_uint_eq (p->key_types_supported, IC_CRYPTO_KEY_TYPE_RAW);
  ck_assert_uint_eq (p->modes_supported[IC_ENCRYPTION_MODE_INVALID], 0);
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (p->modes_supported[m], 0xffffffff);
  /* Once. */
  ck_assert_int_eq (ic_crypto_fallback_init (), 0);
  ck_assert_ptr_eq (ic_crypto_fallback_profile (), p);
}
END_TEST

static const struct {
  unsigned int n;
  int r;
} num_keyslots[] = {
  { 0, -EINVAL },
  { 65537, -EINVAL },
  { 4294967295u, -EINVAL },
  { 1, 0 },
  { 2, 0 },
  { 65536, 0 },
};

/* Before first use: 1 to 65536. */
START_TEST (test_set_num_keyslots)
{
  unsigned int n = num_keyslots[_i].n;
  char msg[128];

  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (n),
                    num_keyslots[_i].r);
  if (num_keyslots[_i].r) {
    snprintf (msg, sizeof msg,
              "fallback: keyslots=%u out of range: 1 to 65536", n);
    ck_assert_str_eq (ic_last_error (), msg);
    n = IC_FALLBACK_DEFAULT_KEYSLOTS;
  }
  ck_assert_uint_eq (ic_crypto_fallback_num_keyslots (), n);
  ck_assert_int_eq (ic_crypto_fallback_init (), 0);
  ck_assert_uint_eq (ic_crypto_profile_num_slots
                     (ic_crypto_fallback_profile ()), n);
}
END_TEST

/* After first use (here, a first encryption): the same count is fine,
 * another one -EBUSY; out of range is still -EINVAL.
 */
START_TEST (test_set_num_keyslots_busy)
{
  struct ic_crypto_key *key = make_key ("k1", modes[0], 1, 8, DU);
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 0 };

  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (7), 0);
  roundtrip (key, DU, dun);
  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (7), 0);
  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (100), -EBUSY);
  ck_assert_str_eq (ic_last_error (),
                    "fallback: keyslots: the fallback is already in use with "
                    "7 keyslots");
  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (0), -EINVAL);
  ck_assert_uint_eq (ic_crypto_fallback_num_keyslots (), 7);
  ck_assert_uint_eq (ic_crypto_profile_num_slots
                     (ic_crypto_fallback_profile ()), 7);
  /* Destroyed (at unload), it can be set again. */
  ic_crypto_fallback_destroy ();
  ck_assert_ptr_null (ic_crypto_fallback_profile ());
  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (3), 0);
  roundtrip (key, DU, dun);
  ck_assert_uint_eq (ic_crypto_profile_num_slots
                     (ic_crypto_fallback_profile ()), 3);
  key_free (key);
}
END_TEST

/* Out of memory at init: -ENOMEM, a message, no fallback; it can be
 * initialised later.
 */
static const size_t init_nomem[] = {
  /* 65536 fallback slots (about 6 MiB) do not fit in 1 MiB ... */
  1u << 20,
  /* ... fit in 7 MiB, but their profile's 65536 keyslots do not. */
  7u << 20,
};

START_TEST (test_init_nomem)
{
  struct rlimit saved;
  int r;

  if (!own_process ())
    return;
  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (65536), 0);
  address_space_limit (&saved, init_nomem[_i]);
  r = ic_crypto_fallback_init ();
  address_space_restore (&saved);
  ck_assert_int_eq (r, -ENOMEM);
  ck_assert_str_eq (ic_last_error (),
                    "fallback: out of memory for 65536 keyslots");
  ck_assert_ptr_null (ic_crypto_fallback_profile ());
  ck_assert_int_eq (ic_crypto_fallback_init (), 0);
  ck_assert_uint_eq (ic_crypto_profile_num_slots
                     (ic_crypto_fallback_profile ()), 65536);
}
END_TEST

/* ---- key types ---- */

/* Raw keys of every mode; never wrapped keys, nor invalid modes. */
START_TEST (test_supports)
{
  struct ic_crypto_config cfg = {
    .crypto_mode = modes[_i],
    .data_unit_size = DU,
    .dun_bytes = 8,
    .key_type = IC_CRYPTO_KEY_TYPE_RAW,
  };

  ck_assert (ic_crypto_fallback_supports (&cfg));
  ck_assert_int_eq (ic_crypto_fallback_init (), 0);
  ck_assert (ic_crypto_cfg_supported (ic_crypto_fallback_profile (), &cfg));
  cfg.dun_bytes = 32;
  cfg.data_unit_size = 65536;
  ck_assert (ic_crypto_fallback_supports (&cfg));
  ck_assert (ic_crypto_cfg_supported (ic_crypto_fallback_profile (), &cfg));
  cfg.key_type = IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  ck_assert (!ic_crypto_fallback_supports (&cfg));
  ck_assert (!ic_crypto_cfg_supported (ic_crypto_fallback_profile (), &cfg));
  cfg.key_type = IC_CRYPTO_KEY_TYPE_RAW;
  cfg.crypto_mode = IC_ENCRYPTION_MODE_INVALID;
  ck_assert (!ic_crypto_fallback_supports (&cfg));
  cfg.crypto_mode = IC_ENCRYPTION_MODE_MAX;
  ck_assert (!ic_crypto_fallback_supports (&cfg));
}
END_TEST

/* A hardware-wrapped key: -EOPNOTSUPP with a message, before the fallback
 * is even set up.
 */
START_TEST (test_wrapped_refused)
{
  int mode = modes[_i];
  uint8_t wrapped[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE];
  struct ic_crypto_key *key;
  struct ic_crypt_ctx ctx = { 0 };
  struct ic_fallback_stats st;
  static uint8_t buf[DU];

  memset (wrapped, 0x5a, sizeof wrapped);
  key = ic_crypto_key_new ("kw", wrapped, sizeof wrapped,
                           IC_CRYPTO_KEY_TYPE_HW_WRAPPED, mode, 8, DU);
  ck_assert_ptr_nonnull (key);
  ctx.key = key;
  ck_assert_int_eq (ic_crypto_fallback_encrypt (&ctx, buf, buf, DU),
                    -EOPNOTSUPP);
  ck_assert_str_eq (ic_last_error (),
                    "fallback: kw: hardware-wrapped keys can only be used "
                    "with inline encryption hardware");
  ic_clear_error ();
  ck_assert_int_eq (ic_crypto_fallback_decrypt (&ctx, buf, buf, DU),
                    -EOPNOTSUPP);
  ck_assert_str_eq (ic_last_error (),
                    "fallback: kw: hardware-wrapped keys can only be used "
                    "with inline encryption hardware");
  ck_assert_ptr_null (ic_crypto_fallback_profile ());
  st = stats ();
  ck_assert_uint_eq (st.encrypt_requests[mode], 0);
  ck_assert_uint_eq (st.decrypt_requests[mode], 0);
  key_free (key);
}
END_TEST

/* ---- en/decryption ---- */

/* Every mode at DUNs that carry from limb to limb within a request. */
static const struct {
  unsigned int du;
  unsigned int dun_bytes;       /* 32 is more than XTS and ESSIV take */
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
} duns[] = {
  { 4096, 8, { 0, 0, 0, 0 } },
  { 4096, 8, { 1, 0, 0, 0 } },
  { 512, 4, { 0xfffffffe, 0, 0, 0 } },
  { 4096, 16, { UINT64_MAX - 1, 0, 0, 0 } },
  { 65536, 16, { UINT64_MAX, 7, 0, 0 } },
  { 1024, 32, { UINT64_MAX, UINT64_MAX, 0, 0 } },
  { 4096, 32, { 1, 2, 3, 4 } },
  { 8192, 32, { UINT64_MAX - 1, UINT64_MAX, UINT64_MAX, UINT64_MAX } },
};

START_TEST (test_crypt)
{
  unsigned int m;

  for (m = 0; m < ARRAY_SIZE (modes); m++) {
    unsigned int dun_bytes = duns[_i].dun_bytes;
    struct ic_crypto_key *key;
    struct ic_fallback_stats st;

    if (dun_bytes > ic_crypto_modes[modes[m]].ivsize)
      dun_bytes = ic_crypto_modes[modes[m]].ivsize;
    key = make_key ("k", modes[m], m + 1, dun_bytes, duns[_i].du);
    roundtrip (key, NDU * duns[_i].du, duns[_i].dun);
    /* A single data unit too. */
    roundtrip (key, duns[_i].du, duns[_i].dun);
    st = stats ();
    ck_assert_uint_eq (st.encrypt_requests[modes[m]], 2);
    ck_assert_uint_eq (st.encrypt_bytes[modes[m]], (NDU + 1) * duns[_i].du);
    ck_assert_uint_eq (st.decrypt_requests[modes[m]], 2);
    ck_assert_uint_eq (st.decrypt_bytes[modes[m]], (NDU + 1) * duns[_i].du);
    key_free (key);
  }
}
END_TEST

/* Known answers, one per mode, in a 512-byte data unit (reference
 * section 9).  XTS and CBC blocks do not depend on later plaintext, so a
 * vector shorter than the data unit checks its first bytes; the rest of
 * the data unit is filled with bytes i & 0xff.
 */
static const struct {
  int mode;
  const char *key;
  const char *iv;               /* the DUN as little-endian bytes */
  const char *pt;               /* a prefix of the data unit */
  size_t ct_offset;
  const char *ct;               /* the ciphertext at ct_offset */
} kats[] = {
  /* IEEE 1619 vector 10, first 32 bytes. */
  { IC_ENCRYPTION_MODE_AES_256_XTS,
    "2718281828459045235360287471352662497757247093699959574966967627"
    "3141592653589793238462643383279502884197169399375105820974944592",
    "ff", "", 0,
    "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b" },
  /* ... and its last 16 bytes. */
  { IC_ENCRYPTION_MODE_AES_256_XTS,
    "2718281828459045235360287471352662497757247093699959574966967627"
    "3141592653589793238462643383279502884197169399375105820974944592",
    "ff", "", 496, "c4f36ffda9fcea70b9c6e693e148c151" },
  /* essiv_aes_cbc_tv_template[0]. */
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV,
    "06a9214036b8a15b512e03d534120006", "3dafba429d9eb430",
    "53696e676c6520626c6f636b206d7367", 0,
    "fa59e75f415665c336ca6b72109f8cd4" },
  /* sm4_xts_tv_template (IEEE 1619 vector 2 pattern). */
  { IC_ENCRYPTION_MODE_SM4_XTS,
    "1111111111111111111111111111111122222222222222222222222222222222",
    "3333333333",
    "4444444444444444444444444444444444444444444444444444444444444444", 0,
    "a74d726c11196a32be04e001ff29d0c7932f9f3ec29bfcb64dd17f63cbd3ea31" },
  /* adiantum_xchacha12_aes_tv_template, the 512-byte vector. */
  { IC_ENCRYPTION_MODE_ADIANTUM,
    "d381721823ff6f4a2574290d518a0e13c1535d308dee750d14d669c915a90c60",
    "659bd4a87d291df4c4d69b6a28ab64e2628197c581aaf944c1725982af16c82c",
      "c76b526a10f0cc09c1121d6d21a678f505a3696091369857ba0c14ccf32d7303"
      "c6b25fc81627375dd00b87b250947b5804f4e07f6e578ec94184c1b17e4b9112"
      "3a8b5d50827bcbd99ad94e1806239ed4a52098efb5dae5c08a6a837715841eae"
      "78949ddfb7d1ea67aab01415fa672184d3412aceba4b4ae89562a955f080adbd"
      "abafdd4fa57c1336ed5e4f72ad4bf1d0884eec2c88105eea12c0160129a3a055"
      "aa68f3e99d3b0d3b6decf8a02df0908d1ce288d42471f9b3c19fc5d67670c52e"
      "9cacdb90bd8372ba6eb5a55383a9a5bf7d060e3c2ad204b51e19380916d2821f"
      "751856b8960ba6f9cf62d9325da9d71dece4df1bbef136eee37bb52feef8533d"
      "6ab770a9fc9c5725f28910d3b8a88c30ae234f0e13664fe1b6c0e4f8ef93bd6e"
      "15856be360811d68d731878909abd5961df36d6780ca07315da7e4fb3ef29b33"
      "5218c830fe2dca1e79927a605cb65887a436a267928ba4b7f186dfdcc07e8f63"
      "d2a2dc78eb4fd89647cab891f9f794215f9a9f5bb840414b66696a72d0cb70b7"
      "93b5379605374fe58ca75a4e8bb784eac7fc196e1f5aa1ac187d523bb3346299"
      "e49e31043fc08d84177c25485267112767bb5a85ca56b25ce6ecd5963d15fcfb"
      "2225f413e5934b9a77f15218fa165e490345a808fab34192795033cad0d74255"
      "c39a0c4ed9a43c86809f53d1a42ed1bcf1546e93a465998edf29c0646307bbea", 0,
      "1597d08618039c51c51136621392e6732979dea1003e0864171abcd5fe330e0c"
      "7c94a7c63cbeaca289e6bcdf0c33274246732fba4ea6468fe4ee39634265a388"
      "7aad3323a9a7207f0be66ac360da9eb4d6078a7726d1ab449955035eed8d7bbd"
      "c821b721303fc0b5c8ec6c23a6a36df1300ad0a6a92869ae2ae654ac829d6a95"
      "6f0644c55a776eecf8f863b2e6aabd8e0e8a620003c884dd474ac355bab7e7df"
      "08bf62f5e8bcb611e4cbd0667432cfd4f8518039140512db8793e226309c3a21"
      "e5d038578015e4085805497de6927770fb1e2d6a8400c868f71addf07b381ed8"
      "2c787861cfe3de691fd503d51ab4cf03c87a706835b4f6be9062b2289986f544"
      "99eb31cfcadfd021d660f70f40b480b7abe19b45ba66daeedd04124098e169e5"
      "2b9c5980e77bcc63a6c03aa9fe8af9621134619435fef299fdee19ea95b612bf"
      "1bdf021acc3e7e6578741050296328ea6babd4064d152431c70ac916b648f0bf"
      "49db6871318f87e2130564d6220cf83684243e695eb89e16736c831ee09f9eba"
      "e55921331ba926c2c7d93073b6a6738219fa444d408b69049474ea6eb3094701"
      "2ab978344311edd68c95651b8567a540ac9c054b574aa9960fdd4fa1e0cf6ec7"
      "1beda2b4568c096ea665d75581b7ed119b4075a86b56af168b3df4cbfed51d3d"
      "85c2c0de43394a96ba8897c0d6000e2721b02152baa737aaccbf95a8f4d091f6" },
};

START_TEST (test_kat)
{
  struct ic_crypt_ctx ctx = { 0 };
  struct ic_crypto_key *key;
  uint8_t *raw;
  uint8_t *iv;
  uint8_t *pt;
  uint8_t *ct;
  size_t raw_len;
  size_t iv_len;
  size_t pt_len;
  size_t ct_len;
  uint8_t buf[512];
  uint8_t plain[512];
  size_t i;

  raw = unhex (kats[_i].key, &raw_len);
  iv = unhex (kats[_i].iv, &iv_len);
  pt = unhex (kats[_i].pt, &pt_len);
  ct = unhex (kats[_i].ct, &ct_len);
  key = ic_crypto_key_new ("kat", raw, raw_len, IC_CRYPTO_KEY_TYPE_RAW,
                           kats[_i].mode,
                           ic_crypto_modes[kats[_i].mode].ivsize, 512);
  ck_assert_ptr_nonnull (key);
  ctx.key = key;
  for (i = 0; i < iv_len; i++)
    ctx.dun[i / 8] |= (uint64_t) iv[i] << (8 * (i % 8));
  for (i = 0; i < sizeof plain; i++)
    plain[i] = i & 0xff;
  memcpy (plain, pt, pt_len);

  ck_assert_int_eq (ic_crypto_fallback_encrypt (&ctx, buf, plain,
                                                sizeof buf), 0);
  ck_assert_mem_eq (buf + kats[_i].ct_offset, ct, ct_len);
  ck_assert_int_eq (ic_crypto_fallback_decrypt (&ctx, buf, buf,
                                                sizeof buf), 0);
  ck_assert_mem_eq (buf, plain, sizeof buf);
  key_free (key);
  free (ct);
  free (pt);
  free (iv);
  free (raw);
}
END_TEST

/* Decryption leaves all-zero data units (holes) as zeros. */
START_TEST (test_holes)
{
  struct ic_crypto_key *key = make_key ("k", modes[_i], 3, 8, DU);
  struct ic_crypt_ctx ctx = { .key = key, .dun = { 42 } };
  static uint8_t pt[4 * DU];
  static uint8_t buf[4 * DU];

  fill (pt, sizeof pt, 5);
  ck_assert_int_eq (ic_crypto_fallback_encrypt (&ctx, buf, pt, sizeof buf),
                    0);
  /* Holes first, in the middle and last. */
  memset (buf, 0, DU);
  memset (buf + 2 * DU, 0, DU);
  memset (buf + 3 * DU, 0, DU);
  ck_assert_int_eq (ic_crypto_fallback_decrypt (&ctx, buf, buf,
                                                sizeof buf), 0);
  ck_assert (ic_is_zero (buf, DU));
  ck_assert_mem_eq (buf + DU, pt + DU, DU);
  ck_assert (ic_is_zero (buf + 2 * DU, 2 * DU));
  /* All holes. */
  memset (buf, 0, sizeof buf);
  ck_assert_int_eq (ic_crypto_fallback_decrypt (&ctx, buf, buf,
                                                sizeof buf), 0);
  ck_assert (ic_is_zero (buf, sizeof buf));
  key_free (key);
}
END_TEST

/* A bad length: the cipher's -EINVAL; the slot is released (the next
 * request gets it) and nothing is counted.
 */
START_TEST (test_bad_length)
{
  struct ic_crypto_key *key = make_key ("k", modes[0], 3, 8, DU);
  struct ic_crypt_ctx ctx = { .key = key };
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 0 };
  static uint8_t buf[2 * DU];

  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (1), 0);
  ck_assert_int_eq (ic_crypto_fallback_encrypt (&ctx, buf, buf, DU + 512),
                    -EINVAL);
  ck_assert_int_eq (ic_crypto_fallback_decrypt (&ctx, buf, buf, 0), -EINVAL);
  ck_assert_uint_eq (stats ().encrypt_requests[modes[0]], 0);
  ck_assert_uint_eq (stats ().decrypt_requests[modes[0]], 0);
  roundtrip (key, DU, dun);
  key_free (key);
}
END_TEST

/* A key the cipher refuses (XTS, equal halves): the program fails with its
 * -EINVAL and the slot keeps what it had.
 */
START_TEST (test_program_refused)
{
  struct ic_crypto_key *good = make_key ("good", modes[0], 1, 8, DU);
  struct ic_crypto_key *weak;
  struct ic_crypt_ctx ctx = { 0 };
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 0 };
  struct ic_fallback_stats st;
  uint8_t raw[64];
  static uint8_t buf[DU];

  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (1), 0);
  memset (raw, 0x42, sizeof raw);
  weak = ic_crypto_key_new ("weak", raw, sizeof raw, IC_CRYPTO_KEY_TYPE_RAW,
                            IC_ENCRYPTION_MODE_AES_256_XTS, 8, DU);
  ck_assert_ptr_nonnull (weak);
  roundtrip (good, DU, dun);
  ctx.key = weak;
  ck_assert_int_eq (ic_crypto_fallback_encrypt (&ctx, buf, buf, DU),
                    -EINVAL);
  ck_assert_str_eq (ic_last_error (),
                    "cipher: AES-256-XTS: set key: the two halves of the key "
                    "are equal, which XTS forbids");
  roundtrip (good, DU, dun);
  st = stats ();
  ck_assert_uint_eq (st.slots.programs, 1);
  ck_assert_uint_eq (st.slots.program_failures, 1);
  ck_assert_uint_eq (st.slots.hits, 3);  /* two per round trip */
  key_free (good);
  key_free (weak);
}
END_TEST

/* ---- keyslots ---- */

/* One slot, one active mode at a time: each key of another mode programs
 * the slot with that mode, and each comes out right.
 */
START_TEST (test_slot_modes)
{
  static const int order[] = {
    IC_ENCRYPTION_MODE_AES_256_XTS,
    IC_ENCRYPTION_MODE_ADIANTUM,
    IC_ENCRYPTION_MODE_AES_256_XTS,
    IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV,
    IC_ENCRYPTION_MODE_SM4_XTS,
    IC_ENCRYPTION_MODE_ADIANTUM,
    IC_ENCRYPTION_MODE_SM4_XTS,
  };
  struct ic_crypto_key *k[IC_ENCRYPTION_MODE_MAX] = { NULL };
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 99 };
  struct ic_fallback_stats st;
  unsigned int i;

  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (1), 0);
  for (i = 0; i < ARRAY_SIZE (modes); i++)
    k[modes[i]] = make_key ("k", modes[i], i + 1, 8, DU);
  for (i = 0; i < ARRAY_SIZE (order); i++) {
    roundtrip (k[order[i]], LEN, dun);
    /* The same key again: a hit on the slot. */
    roundtrip (k[order[i]], DU, dun);
  }
  st = stats ();
  ck_assert_uint_eq (ic_crypto_profile_num_slots
                     (ic_crypto_fallback_profile ()), 1);
  ck_assert_uint_eq (st.slots.misses, ARRAY_SIZE (order));
  ck_assert_uint_eq (st.slots.programs, ARRAY_SIZE (order));
  ck_assert_uint_eq (st.slots.hits, 4 * ARRAY_SIZE (order) - ARRAY_SIZE
                     (order));
  for (i = 0; i < ARRAY_SIZE (modes); i++)
    key_free (k[modes[i]]);
}
END_TEST

/* Keys stay in their slots while there are enough: no reprogramming. */
START_TEST (test_slot_reuse)
{
  struct ic_crypto_key *k[4];
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 0 };
  unsigned int round;
  unsigned int i;

  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (4), 0);
  for (i = 0; i < 4; i++)
    k[i] = make_key ("k", modes[i], i, 8, DU);
  for (round = 0; round < 3; round++)
    for (i = 0; i < 4; i++)
      roundtrip (k[i], DU, dun);
  ck_assert_uint_eq (stats ().slots.programs, 4);
  for (i = 0; i < 4; i++)
    key_free (k[i]);
}
END_TEST

/* With its only slot held, a request waits until it is released. */
struct crypter {
  const struct ic_crypto_key *key;
  int err;
  atomic_bool done;
};

static void *
crypt_run (void *arg)
{
  struct crypter *c = arg;
  struct ic_crypt_ctx ctx = { .key = c->key };
  static uint8_t buf[DU];

  c->err = ic_crypto_fallback_encrypt (&ctx, buf, buf, DU);
  atomic_store (&c->done, true);
  return NULL;
}

START_TEST (test_wait)
{
  struct ic_crypto_key *k1 = make_key ("k1", modes[0], 1, 8, DU);
  struct ic_crypto_key *k2 = make_key ("k2", modes[2], 2, 8, DU);
  struct ic_crypto_keyslot *slot;
  struct crypter c = { .key = k2 };
  pthread_t t;

  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (1), 0);
  ck_assert_int_eq (ic_crypto_fallback_init (), 0);
  ck_assert_int_eq (ic_crypto_get_keyslot (ic_crypto_fallback_profile (), k1,
                                           &slot), 0);
  ck_assert_int_eq (pthread_create (&t, NULL, crypt_run, &c), 0);
  sleep_ms (200);
  ck_assert (!atomic_load (&c.done));
  ic_crypto_put_keyslot (slot);
  ck_assert_int_eq (pthread_join (t, NULL), 0);
  ck_assert_int_eq (c.err, 0);
  ck_assert_uint_eq (stats ().slots.waits, 1);
  ck_assert_uint_eq (stats ().encrypt_requests[modes[2]], 1);
  key_free (k1);
  key_free (k2);
}
END_TEST

/* ---- eviction ---- */

START_TEST (test_evict)
{
  struct ic_crypto_key *k1 = make_key ("k1", modes[1], 1, 8, DU);
  struct ic_crypto_key *k2 = make_key ("k2", modes[3], 2, 8, DU);
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 0 };
  struct ic_crypto_keyslot *slot;
  struct ic_fallback_stats st;

  /* Never used: nothing to do, and nothing is set up. */
  ck_assert_int_eq (ic_crypto_fallback_evict_key (k1), 0);
  ck_assert_ptr_null (ic_crypto_fallback_profile ());

  roundtrip (k1, DU, dun);
  /* A key in no slot. */
  ck_assert_int_eq (ic_crypto_fallback_evict_key (k2), 0);
  /* A resident key; then it is in none. */
  ck_assert_int_eq (ic_crypto_fallback_evict_key (k1), 0);
  ck_assert_int_eq (ic_crypto_fallback_evict_key (k1), 0);
  st = stats ();
  ck_assert_uint_eq (st.slots.evictions, 1);
  /* Used again, it is programmed again. */
  roundtrip (k1, DU, dun);
  ck_assert_uint_eq (stats ().slots.programs, 2);

  /* In use: -EBUSY, unlinked all the same.  (Slot 1: slot 0, emptied
   * by the eviction, stayed last in LRU order.)
   */
  ck_assert_int_eq (ic_crypto_get_keyslot (ic_crypto_fallback_profile (), k1,
                                           &slot), 0);
  ck_assert_uint_eq (ic_crypto_keyslot_index (slot), 1);
  ck_assert_int_eq (ic_crypto_fallback_evict_key (k1), -EBUSY);
  ck_assert_str_eq (ic_last_error (),
                    "fallback: evict k1: key is still in use by I/O in "
                    "keyslot 1");
  ic_crypto_put_keyslot (slot);
  roundtrip (k1, DU, dun);
  st = stats ();
  ck_assert_uint_eq (st.slots.programs, 3);
  ck_assert_uint_eq (st.slots.evictions, 2);
  ck_assert_uint_eq (st.slots.evict_busy, 1);
  key_free (k1);
  key_free (k2);
}
END_TEST

/* ---- counters ---- */

START_TEST (test_counters)
{
  struct ic_crypto_key *k[ARRAY_SIZE (modes)];
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 0 };
  struct ic_fallback_stats st;
  unsigned int i;
  int m;

  /* Before first use: all zero. */
  st = stats ();
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (st.encrypt_requests[m], 0);
  ck_assert_uint_eq (st.slots.misses, 0);

  for (i = 0; i < ARRAY_SIZE (modes); i++) {
    k[i] = make_key ("k", modes[i], i, 8, DU);
    /* Mode i: i + 1 round trips of i + 1 data units. */
    for (m = 0; m <= (int) i; m++)
      roundtrip (k[i], (i + 1) * DU, dun);
  }
  ic_crypto_fallback_read_stats (&st, true);
  for (i = 0; i < ARRAY_SIZE (modes); i++) {
    ck_assert_uint_eq (st.encrypt_requests[modes[i]], i + 1);
    ck_assert_uint_eq (st.encrypt_bytes[modes[i]], (i + 1) * (i + 1) * DU);
    ck_assert_uint_eq (st.decrypt_requests[modes[i]], i + 1);
    ck_assert_uint_eq (st.decrypt_bytes[modes[i]], (i + 1) * (i + 1) * DU);
  }
  ck_assert_uint_eq (st.encrypt_requests[IC_ENCRYPTION_MODE_INVALID], 0);
  ck_assert_uint_eq (st.slots.misses, ARRAY_SIZE (modes));
  ck_assert_uint_eq (st.slots.hits, 2 * (1 + 2 + 3 + 4) - 4);

  /* Reset: zero, per mode and per slot. */
  st = stats ();
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++) {
    ck_assert_uint_eq (st.encrypt_requests[m], 0);
    ck_assert_uint_eq (st.encrypt_bytes[m], 0);
    ck_assert_uint_eq (st.decrypt_requests[m], 0);
    ck_assert_uint_eq (st.decrypt_bytes[m], 0);
  }
  ck_assert_uint_eq (st.slots.misses, 0);
  ck_assert_uint_eq (st.slots.hits, 0);
  ck_assert_uint_eq (st.slots.programs, 0);
  for (i = 0; i < ARRAY_SIZE (modes); i++)
    key_free (k[i]);
}
END_TEST

/* ---- concurrency ---- */

#define STRESS_THREADS 6
#define STRESS_ITERATIONS 150
#define STRESS_KEYS 6
#define STRESS_LEN (2 * 512)

static struct ic_crypto_key *stress_keys[STRESS_KEYS];
static uint8_t stress_pt[STRESS_LEN];
static uint8_t stress_ct[STRESS_KEYS][STRESS_LEN];

struct stresser {
  pthread_t thread;
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

    if (ic_crypto_fallback_encrypt (&ctx, buf, stress_pt, STRESS_LEN) != 0 ||
        memcmp (buf, stress_ct[k], STRESS_LEN) != 0)
      s->errors++;
    if (ic_crypto_fallback_decrypt (&ctx, buf, buf, STRESS_LEN) != 0 ||
        memcmp (buf, stress_pt, STRESS_LEN) != 0)
      s->errors++;
  }
  return NULL;
}

static void *
stress_evict_run (void *arg)
{
  struct stresser *s = arg;

  while (!atomic_load (s->stop)) {
    int r = ic_crypto_fallback_evict_key
      (stress_keys[rand_r (&s->seed) % STRESS_KEYS]);

    if (r != 0 && r != -EBUSY)
      s->errors++;
    sleep_ms (1);
  }
  return NULL;
}

/* Many threads, more keys (of every mode) than slots, evictions: every
 * request gets the right bytes.
 */
START_TEST (test_stress)
{
  struct stresser s[STRESS_THREADS + 1];
  atomic_bool stop = false;
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 5 };
  struct ic_fallback_stats st;
  unsigned int i;

  ck_assert_int_eq (ic_crypto_fallback_set_num_keyslots (2), 0);
  ck_assert_int_eq (ic_crypto_fallback_init (), 0);
  fill (stress_pt, STRESS_LEN, 9);
  for (i = 0; i < STRESS_KEYS; i++) {
    stress_keys[i] = make_key ("k", modes[i % ARRAY_SIZE (modes)], i, 8,
                               512);
    reference_encrypt (stress_keys[i], stress_ct[i], stress_pt, STRESS_LEN,
                       dun);
  }
  for (i = 0; i <= STRESS_THREADS; i++) {
    s[i].seed = i + 1;
    s[i].errors = 0;
    s[i].stop = &stop;
    ck_assert_int_eq (pthread_create (&s[i].thread, NULL,
                                      i == STRESS_THREADS ? stress_evict_run
                                                          : stress_run,
                                      &s[i]), 0);
  }
  for (i = 0; i < STRESS_THREADS; i++)
    ck_assert_int_eq (pthread_join (s[i].thread, NULL), 0);
  atomic_store (&stop, true);
  ck_assert_int_eq (pthread_join (s[STRESS_THREADS].thread, NULL), 0);
  for (i = 0; i <= STRESS_THREADS; i++)
    ck_assert_uint_eq (s[i].errors, 0);
  st = stats ();
  ck_assert_uint_eq (st.slots.hits + st.slots.misses,
                     2 * STRESS_THREADS * STRESS_ITERATIONS);
  for (i = 0; i < STRESS_KEYS; i++)
    key_free (stress_keys[i]);
}
END_TEST

Suite *
fallback_suite (void)
{
  Suite *s = suite_create ("fallback");
  TCase *tc;

  tc = tcase_create ("num_keyslots");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_default);
  tcase_add_loop_test (tc, test_set_num_keyslots, 0,
                       ARRAY_SIZE (num_keyslots));
  tcase_add_test (tc, test_set_num_keyslots_busy);
  tcase_add_loop_test (tc, test_init_nomem, 0, ARRAY_SIZE (init_nomem));
  suite_add_tcase (s, tc);

  tc = tcase_create ("key_types");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_supports, 0, ARRAY_SIZE (modes));
  tcase_add_loop_test (tc, test_wrapped_refused, 0, ARRAY_SIZE (modes));
  suite_add_tcase (s, tc);

  tc = tcase_create ("crypt");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_crypt, 0, ARRAY_SIZE (duns));
  tcase_add_loop_test (tc, test_kat, 0, ARRAY_SIZE (kats));
  tcase_add_test (tc, test_bad_length);
  tcase_add_test (tc, test_program_refused);
  suite_add_tcase (s, tc);

  tc = tcase_create ("holes");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_holes, 0, ARRAY_SIZE (modes));
  suite_add_tcase (s, tc);

  tc = tcase_create ("keyslots");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_slot_modes);
  tcase_add_test (tc, test_slot_reuse);
  tcase_add_test (tc, test_wait);
  suite_add_tcase (s, tc);

  tc = tcase_create ("evict");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_evict);
  suite_add_tcase (s, tc);

  tc = tcase_create ("counters");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_counters);
  suite_add_tcase (s, tc);

  tc = tcase_create ("stress");
  tcase_add_checked_fixture (tc, setup, teardown);
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

  sr = srunner_create (fallback_suite ());
  runner = sr;
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

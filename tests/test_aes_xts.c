/* tests/test_aes_xts.c - unit tests of crypto/aes-xts.c, AES-256-XTS over
 * whole data units, and of its VAES and AES-NI versions
 * (crypto/aes-xts-vaes.c, crypto/aes-xts-aesni.c).
 *
 * The known answers (IEEE Std 1619 Annex B, Vectors 10 to 14) run through
 * ic_cipher on every implementation in tests/test_cipher.c.  Here every
 * implementation this CPU has ("libgcrypt" always, "vaes-avx512" and
 * "aesni" when usable) is checked against libgcrypt's XTS, one call per data unit, for
 * random keys, IVs and numbers of data units, at data unit sizes of 1 to
 * 4096 blocks (so that runs of 16 blocks, the 1 to 3 blocks after them,
 * groups of 8 blocks, batches of 16 or 8 data units, and data units that
 * are or are not whole groups all end everywhere they can), in both
 * directions, in place and out of place, aligned and not.  Buffers are
 * allocated at their exact sizes so that ASan catches a vector load or
 * store past a short run.  Then: the IV as a 128-bit counter (carry from
 * the low to the high half, wrap at 2^128), implementation selection, and
 * every error return.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <gcrypt.h>

#include "aes-xts.h"
#include "error.h"
#include "secmem.h"
#include "testutil.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

/* Every implementation, usable here or not. */
static const char *const impls[] = { "vaes-avx512", "aesni", "libgcrypt" };

/* The implementation chosen when SIMD is allowed. */
static const char *
best_impl (void)
{
  return ic_aes_xts_vaes_avx512_usable () ? "vaes-avx512"
       : ic_aes_xts_aesni_usable () ? "aesni" : "libgcrypt";
}

/* Data unit sizes: 1 to 5, 7, 15 to 17, 31 to 33 blocks, then blk-crypto's. */
static const unsigned int du_sizes[] = {
  16, 32, 48, 64, 80, 112, 240, 256, 272, 496, 512, 528,
  1024, 4096, 65536,
};

/* Select implementation @name.  Return: false if this CPU or build cannot
 * run it (the caller skips it).
 */
static bool
use_impl (const char *name)
{
  int r = ic_aes_xts_use_impl (name);

  if (r == -ENOTSUP)
    return false;
  ck_assert_msg (r == 0, "ic_aes_xts_use_impl (%s): %d", name, r);
  ck_assert_str_eq (ic_aes_xts_impl_name (), name);
  return true;
}

static struct ic_aes_xts_ctx *
new_keyed_ctx (const uint8_t key[IC_AES_XTS_KEY_SIZE])
{
  struct ic_aes_xts_ctx *ctx = ic_aes_xts_new ();

  ck_assert_msg (ctx != NULL, "ic_aes_xts_new: %s", ic_last_error ());
  ck_assert_int_eq (ic_aes_xts_setkey (ctx, key), 0);
  ck_assert_str_eq (ic_aes_xts_ctx_impl_name (ctx), ic_aes_xts_impl_name ());
  return ctx;
}

/* libgcrypt AES-256-XTS of @len bytes as data units of @du from IV @iv:
 * one setiv, then one call per data unit (each advances the IV by one).
 */
static void
gcry_xts (const uint8_t key[IC_AES_XTS_KEY_SIZE], const uint8_t iv[16],
          unsigned int du, uint8_t *dst, const uint8_t *src, size_t len,
          bool enc)
{
  gcry_cipher_hd_t hd;
  size_t off;

  ck_assert_int_eq (gcry_cipher_open (&hd, GCRY_CIPHER_AES256,
                                      GCRY_CIPHER_MODE_XTS, 0), 0);
  ck_assert_int_eq (gcry_cipher_setkey (hd, key, IC_AES_XTS_KEY_SIZE), 0);
  ck_assert_int_eq (gcry_cipher_setiv (hd, iv, 16), 0);
  for (off = 0; off < len; off += du)
    ck_assert_int_eq (enc ? gcry_cipher_encrypt (hd, dst + off, du,
                                                 src + off, du)
                          : gcry_cipher_decrypt (hd, dst + off, du,
                                                 src + off, du), 0);
  gcry_cipher_close (hd);
}

static int
crypt (struct ic_aes_xts_ctx *ctx, bool enc, uint8_t *dst,
       const uint8_t *src, size_t len, unsigned int du, const uint8_t *iv)
{
  return enc ? ic_aes_xts_encrypt (ctx, dst, src, len, du, iv)
             : ic_aes_xts_decrypt (ctx, dst, src, len, du, iv);
}

/* Against libgcrypt: implementation and data unit size from _i; random
 * keys, IVs (some whose low half carries, some about to wrap 2^128) and
 * numbers of data units, both directions, out of place and in place, the
 * buffers aligned or one byte off.
 */
START_TEST (test_vs_libgcrypt)
{
  const char *name = impls[_i / ARRAY_SIZE (du_sizes)];
  unsigned int du = du_sizes[_i % ARRAY_SIZE (du_sizes)];
  uint8_t key[IC_AES_XTS_KEY_SIZE];
  uint8_t iv[IC_AES_XTS_IV_SIZE];
  struct ic_aes_xts_ctx *ctx;
  int trial;

  if (!use_impl (name))
    return;
  rng_seed (0xae5c7e57 + _i);
  for (trial = 0; trial < 12; trial++) {
    size_t units = 1 + rng_next () % (du >= 4096 ? 5 : du >= 512 ? 40 : 70);
    size_t len = units * du;
    size_t skew = trial % 2;
    uint8_t *src_buf = rng_alloc (len + skew);
    uint8_t *got_buf = xmalloc (len + skew);
    uint8_t *src = src_buf + skew;
    uint8_t *got = got_buf + skew;
    uint8_t *want = xmalloc (len);
    int dir;

    rng_fill (key, sizeof key);
    rng_fill (iv, sizeof iv);
    if (trial % 4 == 1)         /* the low half carries into the high */
      memset (iv + 1, 0xff, 7);
    if (trial % 4 == 2)         /* wraps within the request */
      memset (iv + 1, 0xff, sizeof iv - 1);
    ctx = new_keyed_ctx (key);
    for (dir = 0; dir <= 1; dir++) {
      gcry_xts (key, iv, du, want, src, len, dir);
      memset (got, 0, len);
      ck_assert_int_eq (crypt (ctx, dir, got, src, len, du, iv), 0);
      ck_assert_msg (memcmp (got, want, len) == 0,
                     "%s: du %u, %zu units, trial %d, %s: mismatch", name, du,
                     units, trial, dir ? "encrypt" : "decrypt");
      memcpy (got, src, len);
      ck_assert_int_eq (crypt (ctx, dir, got, got, len, du, iv), 0);
      ck_assert_msg (memcmp (got, want, len) == 0,
                     "%s: du %u, %zu units, trial %d, %s: in-place mismatch",
                     name, du, units, trial, dir ? "encrypt" : "decrypt");
      /* And back. */
      ck_assert_int_eq (crypt (ctx, !dir, got, got, len, du, iv), 0);
      ck_assert_msg (memcmp (got, src, len) == 0,
                     "%s: du %u, %zu units, trial %d: no round trip", name,
                     du, units, trial);
    }
    ic_aes_xts_free (ctx);
    free (want);
    free (got_buf);
    free (src_buf);
  }
  ic_aes_xts_use_simd (true);
}
END_TEST

/* A request of n data units is n one-unit requests with IVs iv, iv + 1,
 * ..., the IV a 128-bit little-endian number: the low half carries into
 * the high one, and 2^128 - 1 wraps to 0.  Checked without libgcrypt, on
 * more data units than one batch of first tweaks.
 */
static const struct {
  const char *what;
  uint64_t lo;
  uint64_t hi;
} iv_tvs[] = {
  { "carry", UINT64_MAX - 20, 7 },
  { "wrap", UINT64_MAX - 20, UINT64_MAX },
};

START_TEST (test_iv_counter)
{
  static const unsigned int du = 64;
  static const size_t units = 40;
  uint8_t key[IC_AES_XTS_KEY_SIZE];
  uint8_t iv[IC_AES_XTS_IV_SIZE];
  uint8_t unit_iv[IC_AES_XTS_IV_SIZE];
  uint8_t *src;
  uint8_t *whole;
  uint8_t *parts;
  struct ic_aes_xts_ctx *ctx;
  uint64_t lo;
  uint64_t hi;
  size_t u;
  size_t i;

  rng_seed (0xfff0);
  rng_fill (key, sizeof key);
  src = rng_alloc (units * du);
  whole = xmalloc (units * du);
  parts = xmalloc (units * du);
  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    if (!use_impl (impls[i]))
      continue;
    ctx = new_keyed_ctx (key);
    memcpy (iv, &iv_tvs[_i].lo, 8);
    memcpy (iv + 8, &iv_tvs[_i].hi, 8);
    ck_assert_int_eq (ic_aes_xts_encrypt (ctx, whole, src, units * du, du,
                                          iv), 0);
    lo = iv_tvs[_i].lo;
    hi = iv_tvs[_i].hi;
    for (u = 0; u < units; u++) {
      memcpy (unit_iv, &lo, 8);
      memcpy (unit_iv + 8, &hi, 8);
      ck_assert_int_eq (ic_aes_xts_encrypt (ctx, parts + u * du,
                                            src + u * du, du, du, unit_iv),
                        0);
      hi += ++lo == 0;
    }
    ck_assert_msg (memcmp (whole, parts, units * du) == 0,
                   "%s: %s: the IV does not count like one-unit requests",
                   impls[i], iv_tvs[_i].what);
    ic_aes_xts_free (ctx);
  }
  ic_aes_xts_use_simd (true);
  free (parts);
  free (whole);
  free (src);
}
END_TEST

/* IC_NO_SIMD=1 selects libgcrypt; otherwise the best usable. */
START_TEST (test_no_simd_env)
{
  const char *best = best_impl ();

  ck_assert_int_eq (setenv ("IC_NO_SIMD", "1", 1), 0);
  ic_aes_xts_use_simd (true);
  ck_assert_str_eq (ic_aes_xts_impl_name (), "libgcrypt");
  ck_assert_int_eq (setenv ("IC_NO_SIMD", "0", 1), 0);
  ic_aes_xts_use_simd (true);
  ck_assert_str_eq (ic_aes_xts_impl_name (), best);
  ck_assert_int_eq (unsetenv ("IC_NO_SIMD"), 0);
  ic_aes_xts_use_simd (false);
  ck_assert_str_eq (ic_aes_xts_impl_name (), "libgcrypt");
  ic_aes_xts_use_simd (true);
  ck_assert_str_eq (ic_aes_xts_impl_name (), best);
}
END_TEST

/* ic_aes_xts_use_impl: unknown names and unusable implementations leave
 * the selection alone.
 */
START_TEST (test_use_impl)
{
  bool usable[ARRAY_SIZE (impls)] = {
    ic_aes_xts_vaes_avx512_usable (), ic_aes_xts_aesni_usable (), true,
  };
  size_t i;

  ck_assert_int_eq (ic_aes_xts_use_impl ("libgcrypt"), 0);
  ck_assert_int_eq (ic_aes_xts_use_impl ("aes-ce"), -ENOENT);
  ck_assert_str_eq (ic_aes_xts_impl_name (), "libgcrypt");
  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    ck_assert_int_eq (ic_aes_xts_use_impl ("libgcrypt"), 0);
    if (usable[i]) {
      ck_assert_int_eq (ic_aes_xts_use_impl (impls[i]), 0);
      ck_assert_str_eq (ic_aes_xts_impl_name (), impls[i]);
    } else {
      ck_assert_int_eq (ic_aes_xts_use_impl (impls[i]), -ENOTSUP);
      ck_assert_str_eq (ic_aes_xts_impl_name (), "libgcrypt");
    }
  }
  ic_aes_xts_use_simd (true);
}
END_TEST

/* A context keeps the implementation it was keyed for when the selection
 * changes, and takes the new one when keyed again; both give the same
 * bytes.
 */
START_TEST (test_ctx_keeps_impl)
{
  static const size_t len = 4 * 512;
  uint8_t key[IC_AES_XTS_KEY_SIZE];
  uint8_t iv[IC_AES_XTS_IV_SIZE] = { 0 };
  uint8_t *src;
  uint8_t *a;
  uint8_t *b;
  struct ic_aes_xts_ctx *ctx;
  const char *simd = best_impl ();

  if (strcmp (simd, "libgcrypt") == 0 || !use_impl (simd))
    return;
  rng_seed (0x6ee9);
  rng_fill (key, sizeof key);
  src = rng_alloc (len);
  a = xmalloc (len);
  b = xmalloc (len);
  ctx = new_keyed_ctx (key);
  ck_assert_int_eq (ic_aes_xts_encrypt (ctx, a, src, len, 512, iv), 0);
  ck_assert (use_impl ("libgcrypt"));
  ck_assert_str_eq (ic_aes_xts_ctx_impl_name (ctx), simd);
  ck_assert_int_eq (ic_aes_xts_encrypt (ctx, b, src, len, 512, iv), 0);
  ck_assert_mem_eq (a, b, len);
  ck_assert_int_eq (ic_aes_xts_setkey (ctx, key), 0);
  ck_assert_str_eq (ic_aes_xts_ctx_impl_name (ctx), "libgcrypt");
  memset (b, 0, len);
  ck_assert_int_eq (ic_aes_xts_encrypt (ctx, b, src, len, 512, iv), 0);
  ck_assert_mem_eq (a, b, len);
  /* And back to the vectors, with the libgcrypt handle still open. */
  ck_assert (use_impl (simd));
  ck_assert_int_eq (ic_aes_xts_setkey (ctx, key), 0);
  ck_assert_str_eq (ic_aes_xts_ctx_impl_name (ctx), simd);
  ck_assert_int_eq (ic_aes_xts_decrypt (ctx, b, a, len, 512, iv), 0);
  ck_assert_mem_eq (b, src, len);
  ic_aes_xts_use_simd (true);
  ic_aes_xts_free (ctx);
  free (b);
  free (a);
  free (src);
}
END_TEST

/* A data unit size that is not a non-zero multiple of 16 bytes, or a
 * length that is not a non-zero multiple of it, is refused before any byte
 * is written.
 */
static const struct {
  size_t len;
  unsigned int du;
} bad_length_tvs[] = {
  { 512, 0 },
  { 512, 8 },
  { 48, 24 },
  { 500, 500 },
  { 0, 512 },
  { 520, 512 },
  { 4096 + 16, 4096 },
};

static void
check_untouched (const uint8_t *buf, size_t len, uint8_t fill)
{
  size_t i;

  for (i = 0; i < len; i++)
    ck_assert_uint_eq (buf[i], fill);
}

START_TEST (test_bad_length)
{
  size_t len = bad_length_tvs[_i].len;
  unsigned int du = bad_length_tvs[_i].du;
  uint8_t key[IC_AES_XTS_KEY_SIZE] = { 1 };
  uint8_t iv[IC_AES_XTS_IV_SIZE] = { 0 };
  uint8_t *src = xmalloc (len);
  uint8_t *dst = xmalloc (len);
  struct ic_aes_xts_ctx *ctx = new_keyed_ctx (key);
  char want[128];

  memset (src, 0x11, len);
  memset (dst, 0x22, len);
  snprintf (want, sizeof want, "aes-xts: %zu bytes is not a whole number "
            "of %u-byte data units of 16-byte blocks", len, du);
  ic_clear_error ();
  ck_assert_int_eq (ic_aes_xts_encrypt (ctx, dst, src, len, du, iv),
                    -EINVAL);
  ck_assert_str_eq (ic_last_error (), want);
  ic_clear_error ();
  ck_assert_int_eq (ic_aes_xts_decrypt (ctx, dst, src, len, du, iv),
                    -EINVAL);
  ck_assert_str_eq (ic_last_error (), want);
  check_untouched (dst, len, 0x22);
  ic_aes_xts_free (ctx);
  free (dst);
  free (src);
}
END_TEST

/* A context that was never keyed refuses to work, on every
 * implementation; freeing NULL is a no-op.
 */
START_TEST (test_unkeyed)
{
  uint8_t iv[IC_AES_XTS_IV_SIZE] = { 0 };
  uint8_t src[512];
  uint8_t dst[512];
  struct ic_aes_xts_ctx *ctx;
  size_t i;

  memset (src, 0x11, sizeof src);
  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    if (!use_impl (impls[i]))
      continue;
    ctx = ic_aes_xts_new ();
    ck_assert_ptr_nonnull (ctx);
    ck_assert_ptr_null (ic_aes_xts_ctx_impl_name (ctx));
    memset (dst, 0x22, sizeof dst);
    ic_clear_error ();
    ck_assert_int_eq (ic_aes_xts_encrypt (ctx, dst, src, 512, 512, iv),
                      -EINVAL);
    ck_assert_str_eq (ic_last_error (), "aes-xts: no key set");
    ck_assert_int_eq (ic_aes_xts_decrypt (ctx, dst, src, 512, 512, iv),
                      -EINVAL);
    check_untouched (dst, sizeof dst, 0x22);
    ic_aes_xts_free (ctx);
  }
  ic_aes_xts_free (NULL);
  ic_aes_xts_use_simd (true);
}
END_TEST

/* Setting a new key replaces both halves, on every implementation. */
START_TEST (test_rekey)
{
  static const size_t len = 512;
  uint8_t k1[IC_AES_XTS_KEY_SIZE];
  uint8_t k2[IC_AES_XTS_KEY_SIZE];
  uint8_t iv[IC_AES_XTS_IV_SIZE] = { 3 };
  uint8_t *src;
  uint8_t *want;
  uint8_t *got;
  struct ic_aes_xts_ctx *ctx;
  size_t i;
  int half;

  rng_seed (0x2e4e7);
  src = rng_alloc (len);
  want = xmalloc (len);
  got = xmalloc (len);
  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    if (!use_impl (impls[i]))
      continue;
    for (half = 0; half <= 1; half++) {
      rng_fill (k1, sizeof k1);
      memcpy (k2, k1, sizeof k2);
      k2[half * IC_AES_256_KEY_SIZE + 5] ^= 0x40;
      ctx = new_keyed_ctx (k1);
      ck_assert_int_eq (ic_aes_xts_encrypt (ctx, got, src, len, len, iv), 0);
      ck_assert_int_eq (ic_aes_xts_setkey (ctx, k2), 0);
      ck_assert_int_eq (ic_aes_xts_encrypt (ctx, got, src, len, len, iv), 0);
      gcry_xts (k2, iv, len, want, src, len, true);
      ck_assert_msg (memcmp (got, want, len) == 0,
                     "%s: a new %s key is not used", impls[i],
                     half ? "tweak" : "data");
      ic_aes_xts_free (ctx);
    }
  }
  ic_aes_xts_use_simd (true);
  free (got);
  free (want);
  free (src);
}
END_TEST

static Suite *
aes_xts_suite (void)
{
  Suite *s = suite_create ("aes_xts");
  TCase *tc;

  tc = tcase_create ("libgcrypt");
  tcase_set_timeout (tc, 120);
  tcase_add_loop_test (tc, test_vs_libgcrypt, 0,
                       ARRAY_SIZE (impls) * ARRAY_SIZE (du_sizes));
  suite_add_tcase (s, tc);

  tc = tcase_create ("iv");
  tcase_add_loop_test (tc, test_iv_counter, 0, ARRAY_SIZE (iv_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("impl");
  tcase_add_test (tc, test_no_simd_env);
  tcase_add_test (tc, test_use_impl);
  tcase_add_test (tc, test_ctx_keeps_impl);
  suite_add_tcase (s, tc);

  tc = tcase_create ("errors");
  tcase_add_loop_test (tc, test_bad_length, 0, ARRAY_SIZE (bad_length_tvs));
  tcase_add_test (tc, test_unkeyed);
  suite_add_tcase (s, tc);

  tc = tcase_create ("rekey");
  tcase_add_test (tc, test_rekey);
  suite_add_tcase (s, tc);

  return s;
}

int
main (void)
{
  if (!crypto_test_init ("test_aes_xts"))
    return EXIT_FAILURE;
  printf ("test_aes_xts: using %s; vaes-avx512 %s; aesni %s\n",
          ic_aes_xts_impl_name (),
          ic_aes_xts_vaes_avx512_usable () ? "usable" : "not usable (skipped)",
          ic_aes_xts_aesni_usable () ? "usable" : "not usable (skipped)");
  return run_suite (aes_xts_suite ());
}

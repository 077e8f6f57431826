/* tests/test_sm4.c - unit tests of crypto/sm4.c, the SM4 block cipher and
 * SM4-XTS, and of its SIMD versions (crypto/sm4-aesni.c, sm4-gfni.c).
 *
 * Known answers:
 *
 *   GB/T 32907-2016 Appendix A.1   one block, and all 32 round keys
 *   GB/T 32907-2016 Appendix A.2   the same block encrypted 1,000,000 times
 *   Linux crypto/testmgr.h         sm4_xts_tv_template[1] to [3] (as in
 *                                  tests/test_cipher.c, which runs them
 *                                  through ic_cipher; [0] has an all-zero
 *                                  key and [4] needs ciphertext stealing)
 *
 * Every vector runs on every implementation this CPU has ("generic" always;
 * "aesni-avx2" and "gfni-avx512" when usable).  libgcrypt's SM4 (ECB, and
 * XTS with one call per data unit) is the reference for random keys, IVs,
 * run lengths and data unit sizes, in both directions, in place and out of
 * place; buffers are allocated at their exact sizes so that ASan catches a
 * SIMD path reading or writing past a short run.
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

#include "error.h"
#include "secmem.h"
#include "sm4.h"
#include "testutil.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

/* Every implementation, usable here or not. */
static const char *const impls[] = { "generic", "aesni-avx2", "gfni-avx512" };

struct xts_tv {
  const char *source;
  const char *key;              /* all hex */
  const char *iv;
  const char *ptext;
  const char *ctext;
  size_t len;
};

/* GB/T 32907-2016 Appendix A: key = plaintext for both examples. */
#define GBT_KEY "0123456789abcdeffedcba9876543210"
#define GBT_CTEXT_1 "681edf34d206965e86b3e94f536e4246"
#define GBT_CTEXT_1000000 "595298c7c6fd271f0402f804c33d3f66"

/* Appendix A.1: rk[0] to rk[31] of GBT_KEY. */
static const uint32_t gbt_round_keys[IC_SM4_ROUNDS] = {
  0xf12186f9, 0x41662b61, 0x5a6ab19a, 0x7ba92077,
  0x367360f4, 0x776a0c61, 0xb6bb89b3, 0x24763151,
  0xa520307c, 0xb7584dbd, 0xc30753ed, 0x7ee55b57,
  0x6988608c, 0x30d895b7, 0x44ba14af, 0x104495a1,
  0xd120b428, 0x73b55fa3, 0xcc874966, 0x92244439,
  0xe89e641f, 0x98ca015a, 0xc7159060, 0x99e1fd2e,
  0xb79bd80c, 0x1d2115b0, 0x0e228aeb, 0xf1780c81,
  0x428d3654, 0x62293496, 0x01cf72e5, 0x9124a012,
};

#define PTEXT_00_FF_TWICE \
  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" \
  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" \
  "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" \
  "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f" \
  "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f" \
  "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf" \
  "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf" \
  "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff" \
  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" \
  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" \
  "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" \
  "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f" \
  "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f" \
  "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf" \
  "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf" \
  "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"

/* Linux crypto/testmgr.h sm4_xts_tv_template[1] to [3]. */
static const struct xts_tv xts_tvs[] = {
  {
    .source = "sm4_xts_tv_template[1]",
    .key =
      "1111111111111111111111111111111122222222222222222222222222222222",
    .iv = "33333333330000000000000000000000",
    .ptext =
      "4444444444444444444444444444444444444444444444444444444444444444",
    .ctext =
      "a74d726c11196a32be04e001ff29d0c7932f9f3ec29bfcb64dd17f63cbd3ea31",
    .len = 32,
  },
  {
    .source = "sm4_xts_tv_template[2]",
    .key =
      "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f022222222222222222222222222222222",
    .iv = "33333333330000000000000000000000",
    .ptext =
      "4444444444444444444444444444444444444444444444444444444444444444",
    .ctext =
      "7f76088effadf70c02ea9f95da0628d351bfcb9eac0563bcf17b710dab0a9826",
    .len = 32,
  },
  {
    .source = "sm4_xts_tv_template[3]",
    .key =
      "2718281828459045235360287471352631415926535897932384626433832795",
    .iv = "00000000000000000000000000000000",
    .ptext = PTEXT_00_FF_TWICE,
    .ctext =
      "54dd65b6326faea8fad1a83c63614af39f721d8dfe177a30b66abf6a449980e1"
      "cdbe06afb73336f37a4d39de964a30d7d04a3799169c60258f6b748a61861aa5"
      "ec92a2c15b2b7c615a42aba499bbd6b71db9c789b2182089a25dd3df800ed186"
      "4d19f7ed45fd17a9480b0fb82d9b7fc3ed57e9a1140eaa778dd2dd679e3edc3d"
      "c4d55c950ebc531d9592f7c4638256d56518292a20af98fdd3a63600350a70ab"
      "5a40f4c285037ca01f251f19ecae0329ff77ad88cd5a4cdea2aeabc22148ffbd"
      "239bd10515bde1131dec8404e443dc763140d5f22bf33e0c6872d6b81d630f6f"
      "00cdd058fe80f9cbfb77707f93cee2ca92b915b8304027c190a84e2d65e018cc"
      "6a387d3766acdb28253284e8db9acf8f52280ddc6d0033d2ccaaa4f9aeff1236"
      "69bc024fd6768edf8bc1f8d622c19c609ef97f609190cd110241e7fb084ed894"
      "2da1f9b9cf1b514b61a388b30ea61a4a745b381ee7ad6c4db1275453b8413f98"
      "df6e4a40986ee4b59af5dfaecd301265179067a00d7ca35ab95abd617adea28e"
      "c1c26a97de28b8bfe30120d6aefbd258c59e42d161e8065a78106bdca5cd90fb"
      "3aac4e93866c8a7f9676860a79145bd92e02e819a90be0b97cc522b32106856f"
      "df0e54d88e4624155a2f1c14eaeaa163f858e99a806e791acd82f1b0e29f0028"
      "a4c38e976f571a93f4fd57d787c24db0e01ca304e5a5c4dd50cf8bdbf491e57c",
    .len = 512,
  },
};

/* Data unit sizes for the libgcrypt comparisons: one block, around the
 * SIMD batch sizes (8, 16, 32 blocks), and the sizes blk-crypto uses.
 */
static const unsigned int du_sizes[] = {
  16, 32, 48, 112, 128, 240, 256, 496, 512, 1024, 4096,
};

/* Run lengths in blocks for ic_sm4_crypt_blocks: every tail of every batch
 * size, and a few long runs.
 */
#define MAX_RUN_BLOCKS 130

/* Select implementation @name.  Return: false if this CPU or build cannot
 * run it (the caller skips it).
 */
static bool
use_impl (const char *name)
{
  int r = ic_sm4_use_impl (name);

  if (r == -ENOTSUP)
    return false;
  ck_assert_msg (r == 0, "ic_sm4_use_impl (%s): %d", name, r);
  ck_assert_str_eq (ic_sm4_impl_name (), name);
  return true;
}

static struct ic_sm4_xts_ctx *
new_keyed_ctx (const uint8_t key[IC_SM4_XTS_KEY_SIZE])
{
  struct ic_sm4_xts_ctx *ctx = ic_sm4_xts_new ();

  ck_assert_msg (ctx != NULL, "ic_sm4_xts_new: %s", ic_last_error ());
  ic_sm4_xts_setkey (ctx, key);
  return ctx;
}

static gcry_cipher_hd_t
gcry_open_keyed (int gmode, const uint8_t *key, size_t size)
{
  gcry_cipher_hd_t hd;

  ck_assert_int_eq (gcry_cipher_open (&hd, GCRY_CIPHER_SM4, gmode, 0), 0);
  ck_assert_int_eq (gcry_cipher_setkey (hd, key, size), 0);
  return hd;
}

/* libgcrypt SM4-XTS of @len bytes as data units of @du from IV @iv: one
 * setiv, then one call per data unit (each advances the IV by one).
 */
static void
gcry_xts (const uint8_t key[IC_SM4_XTS_KEY_SIZE], const uint8_t iv[16],
          unsigned int du, uint8_t *dst, const uint8_t *src, size_t len,
          bool enc)
{
  gcry_cipher_hd_t hd = gcry_open_keyed (GCRY_CIPHER_MODE_XTS, key,
                                         IC_SM4_XTS_KEY_SIZE);
  size_t off;

  ck_assert_int_eq (gcry_cipher_setiv (hd, iv, 16), 0);
  for (off = 0; off < len; off += du)
    ck_assert_int_eq (enc ? gcry_cipher_encrypt (hd, dst + off, du,
                                                 src + off, du)
                          : gcry_cipher_decrypt (hd, dst + off, du,
                                                 src + off, du), 0);
  gcry_cipher_close (hd);
}

/* Appendix A.1: the key schedule, and one block each way on every
 * implementation, alone and among other blocks.
 */
START_TEST (test_block_kat)
{
  uint8_t *key = unhex (GBT_KEY, IC_SM4_KEY_SIZE);
  uint8_t *ctext = unhex (GBT_CTEXT_1, IC_SM4_BLOCK_SIZE);
  const size_t counts[] = { 1, 5, 8, 16, 17, 32, 33, 64 };
  struct ic_sm4_key enc;
  struct ic_sm4_key dec;
  uint8_t out[IC_SM4_BLOCK_SIZE];
  uint8_t *buf;
  size_t i;
  size_t j;
  size_t b;
  int r;

  ic_sm4_expand_key (&enc, &dec, key);
  for (r = 0; r < IC_SM4_ROUNDS; r++) {
    ck_assert_msg (enc.rk[r] == gbt_round_keys[r],
                   "rk[%d] = %08x, expected %08x", r, enc.rk[r],
                   gbt_round_keys[r]);
    ck_assert_uint_eq (dec.rk[IC_SM4_ROUNDS - 1 - r], gbt_round_keys[r]);
  }
  ic_sm4_expand_key (&dec, NULL, key);  /* NULL @dec is allowed */
  ck_assert_mem_eq (dec.rk, enc.rk, sizeof enc.rk);
  ic_sm4_expand_key (&enc, &dec, key);

  ic_sm4_crypt_block (&enc, out, key);  /* plaintext = key */
  ck_assert_mem_eq (out, ctext, IC_SM4_BLOCK_SIZE);
  ic_sm4_crypt_block (&dec, out, out);
  ck_assert_mem_eq (out, key, IC_SM4_BLOCK_SIZE);

  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    if (!use_impl (impls[i]))
      continue;
    for (j = 0; j < ARRAY_SIZE (counts); j++) {
      buf = xmalloc (counts[j] * IC_SM4_BLOCK_SIZE);
      for (b = 0; b < counts[j]; b++)
        memcpy (buf + 16 * b, key, 16);
      ic_sm4_crypt_blocks (&enc, buf, buf, NULL, counts[j]);
      for (b = 0; b < counts[j]; b++)
        ck_assert_msg (memcmp (buf + 16 * b, ctext, 16) == 0,
                       "%s: block %zu of %zu: encrypt mismatch", impls[i], b,
                       counts[j]);
      ic_sm4_crypt_blocks (&dec, buf, buf, NULL, counts[j]);
      for (b = 0; b < counts[j]; b++)
        ck_assert_msg (memcmp (buf + 16 * b, key, 16) == 0,
                       "%s: block %zu of %zu: decrypt mismatch", impls[i], b,
                       counts[j]);
      free (buf);
    }
  }
  ic_sm4_use_simd (true);
  free (ctext);
  free (key);
}
END_TEST

/* Appendix A.2: 1,000,000 encryptions of the block with the same key, on
 * the one-block function and, 16 lanes at once, on every implementation.
 */
START_TEST (test_million)
{
  uint8_t *key = unhex (GBT_KEY, IC_SM4_KEY_SIZE);
  uint8_t *ctext = unhex (GBT_CTEXT_1000000, IC_SM4_BLOCK_SIZE);
  struct ic_sm4_key enc;
  uint8_t block[IC_SM4_BLOCK_SIZE];
  uint8_t lanes[16][IC_SM4_BLOCK_SIZE];
  size_t i;
  size_t b;
  long n;

  ic_sm4_expand_key (&enc, NULL, key);
  memcpy (block, key, sizeof block);
  for (n = 0; n < 1000000; n++)
    ic_sm4_crypt_block (&enc, block, block);
  ck_assert_mem_eq (block, ctext, sizeof block);

  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    if (!use_impl (impls[i]))
      continue;
    for (b = 0; b < ARRAY_SIZE (lanes); b++)
      memcpy (lanes[b], key, IC_SM4_BLOCK_SIZE);
    for (n = 0; n < 1000000; n++)
      ic_sm4_crypt_blocks (&enc, lanes[0], lanes[0], NULL,
                           ARRAY_SIZE (lanes));
    for (b = 0; b < ARRAY_SIZE (lanes); b++)
      ck_assert_msg (memcmp (lanes[b], ctext, IC_SM4_BLOCK_SIZE) == 0,
                     "%s: lane %zu differs", impls[i], b);
  }
  ic_sm4_use_simd (true);
  free (ctext);
  free (key);
}
END_TEST

/* sm4_xts_tv_template: encrypt and decrypt, out of place and in place, on
 * every implementation.
 */
START_TEST (test_xts_kat)
{
  const struct xts_tv *tv = &xts_tvs[_i];
  uint8_t *key = unhex (tv->key, IC_SM4_XTS_KEY_SIZE);
  uint8_t *iv = unhex (tv->iv, IC_SM4_XTS_IV_SIZE);
  uint8_t *ptext = unhex (tv->ptext, tv->len);
  uint8_t *ctext = unhex (tv->ctext, tv->len);
  uint8_t *buf = xmalloc (tv->len);
  struct ic_sm4_xts_ctx *ctx = new_keyed_ctx (key);
  size_t i;

  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    if (!use_impl (impls[i]))
      continue;
    ck_assert_int_eq (ic_sm4_xts_encrypt (ctx, buf, ptext, tv->len, tv->len,
                                          iv), 0);
    ck_assert_msg (memcmp (buf, ctext, tv->len) == 0,
                   "%s (%s): encrypt mismatch", tv->source, impls[i]);
    ck_assert_int_eq (ic_sm4_xts_decrypt (ctx, buf, ctext, tv->len, tv->len,
                                          iv), 0);
    ck_assert_msg (memcmp (buf, ptext, tv->len) == 0,
                   "%s (%s): decrypt mismatch", tv->source, impls[i]);

    memcpy (buf, ptext, tv->len);
    ck_assert_int_eq (ic_sm4_xts_encrypt (ctx, buf, buf, tv->len, tv->len,
                                          iv), 0);
    ck_assert_msg (memcmp (buf, ctext, tv->len) == 0,
                   "%s (%s): in-place encrypt mismatch", tv->source,
                   impls[i]);
    ck_assert_int_eq (ic_sm4_xts_decrypt (ctx, buf, buf, tv->len, tv->len,
                                          iv), 0);
    ck_assert_msg (memcmp (buf, ptext, tv->len) == 0,
                   "%s (%s): in-place decrypt mismatch", tv->source,
                   impls[i]);
  }
  ic_sm4_use_simd (true);
  ic_sm4_xts_free (ctx);
  free (buf);
  free (ctext);
  free (ptext);
  free (iv);
  free (key);
}
END_TEST

/* Runs of 1 to MAX_RUN_BLOCKS blocks, with and without tweaks, against
 * libgcrypt's SM4-ECB (the tweaks XORed around it here), both directions,
 * in place and out of place, on implementation _i.
 */
START_TEST (test_blocks_vs_libgcrypt)
{
  const char *name = impls[_i];
  struct ic_sm4_key enc;
  struct ic_sm4_key dec;
  gcry_cipher_hd_t hd;
  uint8_t key[IC_SM4_KEY_SIZE];
  size_t n;
  size_t len;
  size_t j;
  int tweaked;
  int dir;

  if (!use_impl (name))
    return;
  rng_seed (0x5e4b10c5 + _i);
  for (n = 1; n <= MAX_RUN_BLOCKS; n++)
    for (tweaked = 0; tweaked <= 1; tweaked++)
      for (dir = 0; dir <= 1; dir++) {
        uint8_t *src;
        uint8_t *tw;
        uint8_t *want;
        uint8_t *got;

        len = n * IC_SM4_BLOCK_SIZE;
        rng_fill (key, sizeof key);
        ic_sm4_expand_key (&enc, &dec, key);
        src = rng_alloc (len);
        tw = tweaked ? rng_alloc (len) : NULL;
        want = xmalloc (len);
        got = xmalloc (len);

        /* want = E(src ^ tw) ^ tw with libgcrypt. */
        for (j = 0; j < len; j++)
          want[j] = src[j] ^ (tw ? tw[j] : 0);
        hd = gcry_open_keyed (GCRY_CIPHER_MODE_ECB, key, sizeof key);
        ck_assert_int_eq (dir ? gcry_cipher_encrypt (hd, want, len, NULL, 0)
                              : gcry_cipher_decrypt (hd, want, len, NULL, 0),
                          0);
        gcry_cipher_close (hd);
        for (j = 0; j < len; j++)
          want[j] ^= tw ? tw[j] : 0;

        ic_sm4_crypt_blocks (dir ? &enc : &dec, got, src, tw, n);
        ck_assert_msg (memcmp (got, want, len) == 0,
                       "%s: %zu blocks, %s, %s: mismatch", name, n,
                       tweaked ? "tweaked" : "plain",
                       dir ? "encrypt" : "decrypt");
        ic_sm4_crypt_blocks (dir ? &enc : &dec, src, src, tw, n);
        ck_assert_msg (memcmp (src, want, len) == 0,
                       "%s: %zu blocks, %s, %s: in-place mismatch", name, n,
                       tweaked ? "tweaked" : "plain",
                       dir ? "encrypt" : "decrypt");
        free (got);
        free (want);
        free (tw);
        free (src);
      }
  ic_sm4_use_simd (true);
}
END_TEST

/* SM4-XTS against libgcrypt: implementation and data unit size from _i;
 * random keys, IVs (some about to wrap 2^128) and numbers of data units,
 * both directions, out of place and in place.
 */
START_TEST (test_xts_vs_libgcrypt)
{
  const char *name = impls[_i / ARRAY_SIZE (du_sizes)];
  unsigned int du = du_sizes[_i % ARRAY_SIZE (du_sizes)];
  uint8_t key[IC_SM4_XTS_KEY_SIZE];
  uint8_t iv[IC_SM4_XTS_IV_SIZE];
  struct ic_sm4_xts_ctx *ctx;
  int trial;

  if (!use_impl (name))
    return;
  rng_seed (0x1ee71619 + _i);
  for (trial = 0; trial < 12; trial++) {
    size_t units = 1 + rng_next () % (du >= 1024 ? 12 : 40);
    size_t len = units * du;
    uint8_t *src = rng_alloc (len);
    uint8_t *want = xmalloc (len);
    uint8_t *got = xmalloc (len);
    int dir;

    rng_fill (key, sizeof key);
    rng_fill (iv, sizeof iv);
    if (trial % 3 == 0)         /* wraps within the request */
      memset (iv + 1, 0xff, sizeof iv - 1);
    ctx = new_keyed_ctx (key);
    for (dir = 0; dir <= 1; dir++) {
      gcry_xts (key, iv, du, want, src, len, dir);
      memset (got, 0, len);
      ck_assert_int_eq (dir ? ic_sm4_xts_encrypt (ctx, got, src, len, du, iv)
                            : ic_sm4_xts_decrypt (ctx, got, src, len, du, iv),
                        0);
      ck_assert_msg (memcmp (got, want, len) == 0,
                     "%s: du %u, %zu units, trial %d, %s: mismatch", name, du,
                     units, trial, dir ? "encrypt" : "decrypt");
      memcpy (got, src, len);
      ck_assert_int_eq (dir ? ic_sm4_xts_encrypt (ctx, got, got, len, du, iv)
                            : ic_sm4_xts_decrypt (ctx, got, got, len, du, iv),
                        0);
      ck_assert_msg (memcmp (got, want, len) == 0,
                     "%s: du %u, %zu units, trial %d, %s: in-place mismatch",
                     name, du, units, trial, dir ? "encrypt" : "decrypt");
      /* And back. */
      ck_assert_int_eq (dir ? ic_sm4_xts_decrypt (ctx, got, got, len, du, iv)
                            : ic_sm4_xts_encrypt (ctx, got, got, len, du, iv),
                        0);
      ck_assert_msg (memcmp (got, src, len) == 0,
                     "%s: du %u, %zu units, trial %d: no round trip", name,
                     du, units, trial);
    }
    ic_sm4_xts_free (ctx);
    free (got);
    free (want);
    free (src);
  }
  ic_sm4_use_simd (true);
}
END_TEST

/* A request of n data units is n one-unit requests with IVs iv, iv + 1,
 * ..., the IV a 128-bit little-endian number wrapping from 2^128 - 1 to 0;
 * checked without libgcrypt.
 */
START_TEST (test_xts_iv_wrap)
{
  static const unsigned int du = 64;
  static const size_t units = 4;
  uint8_t key[IC_SM4_XTS_KEY_SIZE];
  uint8_t iv[IC_SM4_XTS_IV_SIZE];
  uint8_t unit_iv[IC_SM4_XTS_IV_SIZE];
  uint8_t *src;
  uint8_t *whole;
  uint8_t *parts;
  struct ic_sm4_xts_ctx *ctx;
  size_t u;
  size_t i;

  rng_seed (0xfff0);
  rng_fill (key, sizeof key);
  src = rng_alloc (units * du);
  whole = xmalloc (units * du);
  parts = xmalloc (units * du);
  ctx = new_keyed_ctx (key);
  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    if (!use_impl (impls[i]))
      continue;
    memset (iv, 0xff, sizeof iv);
    iv[0] = 0xfe;                       /* 2^128 - 2 */
    ck_assert_int_eq (ic_sm4_xts_encrypt (ctx, whole, src, units * du, du,
                                          iv), 0);
    /* Units 0..3 have IVs 2^128 - 2, 2^128 - 1, 0, 1. */
    for (u = 0; u < units; u++) {
      memset (unit_iv, u < 2 ? 0xff : 0, sizeof unit_iv);
      unit_iv[0] = u == 0 ? 0xfe : u == 1 ? 0xff : u - 2;
      ck_assert_int_eq (ic_sm4_xts_encrypt (ctx, parts + u * du,
                                            src + u * du, du, du, unit_iv),
                        0);
    }
    ck_assert_msg (memcmp (whole, parts, units * du) == 0,
                   "%s: IV does not wrap like one-unit requests", impls[i]);
  }
  ic_sm4_use_simd (true);
  ic_sm4_xts_free (ctx);
  free (parts);
  free (whole);
  free (src);
}
END_TEST

/* IC_NO_SIMD=1 selects the portable code; otherwise the best usable. */
START_TEST (test_no_simd_env)
{
  const char *best = ic_sm4_gfni_avx512_usable () ? "gfni-avx512"
    : ic_sm4_aesni_avx2_usable () ? "aesni-avx2" : "generic";

  ck_assert_int_eq (setenv ("IC_NO_SIMD", "1", 1), 0);
  ic_sm4_use_simd (true);
  ck_assert_str_eq (ic_sm4_impl_name (), "generic");
  ck_assert_int_eq (setenv ("IC_NO_SIMD", "0", 1), 0);
  ic_sm4_use_simd (true);
  ck_assert_str_eq (ic_sm4_impl_name (), best);
  ck_assert_int_eq (unsetenv ("IC_NO_SIMD"), 0);
  ic_sm4_use_simd (false);
  ck_assert_str_eq (ic_sm4_impl_name (), "generic");
  ic_sm4_use_simd (true);
  ck_assert_str_eq (ic_sm4_impl_name (), best);
}
END_TEST

/* ic_sm4_use_impl: unknown names and unusable implementations leave the
 * selection alone.
 */
START_TEST (test_use_impl)
{
  bool usable[ARRAY_SIZE (impls)] = {
    true, ic_sm4_aesni_avx2_usable (), ic_sm4_gfni_avx512_usable (),
  };
  size_t i;

  ck_assert_int_eq (ic_sm4_use_impl ("generic"), 0);
  ck_assert_int_eq (ic_sm4_use_impl ("sm4-ce"), -ENOENT);
  ck_assert_str_eq (ic_sm4_impl_name (), "generic");
  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    ck_assert_int_eq (ic_sm4_use_impl ("generic"), 0);
    if (usable[i]) {
      ck_assert_int_eq (ic_sm4_use_impl (impls[i]), 0);
      ck_assert_str_eq (ic_sm4_impl_name (), impls[i]);
    } else {
      ck_assert_int_eq (ic_sm4_use_impl (impls[i]), -ENOTSUP);
      ck_assert_str_eq (ic_sm4_impl_name (), "generic");
    }
  }
  ic_sm4_use_simd (true);
}
END_TEST

/* A data unit size that is not a non-zero multiple of 16 bytes, or a length
 * that is not a non-zero multiple of it, is refused before any byte is
 * written.
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

START_TEST (test_bad_length)
{
  size_t len = bad_length_tvs[_i].len;
  unsigned int du = bad_length_tvs[_i].du;
  uint8_t key[IC_SM4_XTS_KEY_SIZE] = { 1 };
  uint8_t iv[IC_SM4_XTS_IV_SIZE] = { 0 };
  uint8_t *src = xmalloc (len);
  uint8_t *dst = xmalloc (len);
  struct ic_sm4_xts_ctx *ctx = new_keyed_ctx (key);
  char want[128];
  size_t i;

  memset (src, 0x11, len);
  memset (dst, 0x22, len);
  snprintf (want, sizeof want, "sm4: xts: %zu bytes is not a whole number "
            "of %u-byte data units of 16-byte blocks", len, du);
  ic_clear_error ();
  ck_assert_int_eq (ic_sm4_xts_encrypt (ctx, dst, src, len, du, iv), -EINVAL);
  ck_assert_str_eq (ic_last_error (), want);
  ic_clear_error ();
  ck_assert_int_eq (ic_sm4_xts_decrypt (ctx, dst, src, len, du, iv), -EINVAL);
  ck_assert_str_eq (ic_last_error (), want);
  for (i = 0; i < len; i++)
    ck_assert_uint_eq (dst[i], 0x22);
  ic_sm4_xts_free (ctx);
  free (dst);
  free (src);
}
END_TEST

/* Setting a new key replaces both halves; freeing NULL is a no-op. */
START_TEST (test_rekey)
{
  const struct xts_tv *tv = &xts_tvs[2];
  uint8_t *key = unhex (tv->key, IC_SM4_XTS_KEY_SIZE);
  uint8_t *iv = unhex (tv->iv, IC_SM4_XTS_IV_SIZE);
  uint8_t *ptext = unhex (tv->ptext, tv->len);
  uint8_t *ctext = unhex (tv->ctext, tv->len);
  uint8_t *buf = xmalloc (tv->len);
  uint8_t other[IC_SM4_XTS_KEY_SIZE];
  struct ic_sm4_xts_ctx *ctx;

  memset (other, 0x5a, sizeof other);
  other[IC_SM4_KEY_SIZE] = 0xa5;
  ctx = new_keyed_ctx (other);
  ck_assert_int_eq (ic_sm4_xts_encrypt (ctx, buf, ptext, tv->len, tv->len,
                                        iv), 0);
  ck_assert (memcmp (buf, ctext, tv->len) != 0);
  ic_sm4_xts_setkey (ctx, key);
  ck_assert_int_eq (ic_sm4_xts_encrypt (ctx, buf, ptext, tv->len, tv->len,
                                        iv), 0);
  ck_assert_mem_eq (buf, ctext, tv->len);
  ic_sm4_xts_free (ctx);
  ic_sm4_xts_free (NULL);
  free (buf);
  free (ctext);
  free (ptext);
  free (iv);
  free (key);
}
END_TEST

static Suite *
sm4_suite (void)
{
  Suite *s = suite_create ("sm4");
  TCase *tc;

  tc = tcase_create ("kat");
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_block_kat);
  tcase_add_test (tc, test_million);
  tcase_add_loop_test (tc, test_xts_kat, 0, ARRAY_SIZE (xts_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("libgcrypt");
  tcase_set_timeout (tc, 120);
  tcase_add_loop_test (tc, test_blocks_vs_libgcrypt, 0, ARRAY_SIZE (impls));
  tcase_add_loop_test (tc, test_xts_vs_libgcrypt, 0,
                       ARRAY_SIZE (impls) * ARRAY_SIZE (du_sizes));
  suite_add_tcase (s, tc);

  tc = tcase_create ("iv");
  tcase_add_test (tc, test_xts_iv_wrap);
  suite_add_tcase (s, tc);

  tc = tcase_create ("impl");
  tcase_add_test (tc, test_no_simd_env);
  tcase_add_test (tc, test_use_impl);
  suite_add_tcase (s, tc);

  tc = tcase_create ("errors");
  tcase_add_loop_test (tc, test_bad_length, 0, ARRAY_SIZE (bad_length_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("rekey");
  tcase_add_test (tc, test_rekey);
  suite_add_tcase (s, tc);

  return s;
}

int
main (void)
{
  if (!crypto_test_init ("test_sm4"))
    return EXIT_FAILURE;
  printf ("test_sm4: using %s; aesni-avx2 %s, gfni-avx512 %s\n",
          ic_sm4_impl_name (),
          ic_sm4_aesni_avx2_usable () ? "usable" : "not usable (skipped)",
          ic_sm4_gfni_avx512_usable () ? "usable" : "not usable (skipped)");
  return run_suite (sm4_suite ());
}

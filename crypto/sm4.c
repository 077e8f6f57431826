/* crypto/sm4.c - see sm4.h.  Written from GB/T 32907-2016 (the SM4 block
 * cipher; also draft-ribose-cfrg-sm4) and IEEE Std 1619-2018 (XTS), with
 * the conventions of Linux lib/crypto/sm4.c and crypto/xts.c.
 *
 * The XTS layer here is shared by every implementation: it writes the
 * tweaks of up to XTS_CHUNK_BLOCKS consecutive blocks, data unit after data
 * unit, into a buffer and hands them with the data to the implementation's
 * crypt_blocks, so the SIMD code sees long runs of blocks even for small
 * data units.  The first tweaks of up to XTS_BATCH_UNITS data units are
 * likewise encrypted together.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "secmem.h"
#include "simd.h"
#include "sm4.h"

#define XTS_BATCH_UNITS 16      /* first tweaks encrypted per call */
#define XTS_CHUNK_BLOCKS 64     /* tweaks written ahead per call */

struct ic_sm4_xts_ctx {
  struct ic_sm4_key data_enc;           /* K1 */
  struct ic_sm4_key data_dec;           /* K1, round keys reversed */
  struct ic_sm4_key tweak_enc;          /* K2 */
};

struct sm4_impl {
  struct ic_impl impl;
  void (*crypt_blocks) (const struct ic_sm4_key *rk, uint8_t *dst,
                        const uint8_t *src, const uint8_t *tweaks,
                        size_t nblocks);
};

static const struct sm4_impl gfni_impl = {
  { "gfni-avx512", ic_sm4_gfni_avx512_usable },
  ic_sm4_crypt_blocks_gfni_avx512,
};
static const struct sm4_impl aesni_impl = {
  { "aesni-avx2", ic_sm4_aesni_avx2_usable }, ic_sm4_crypt_blocks_aesni_avx2,
};
static const struct sm4_impl generic_impl = {
  { "generic", ic_impl_always }, ic_sm4_crypt_blocks_generic,
};

/* Best first. */
static const struct ic_impl *const impls[] = {
  &gfni_impl.impl, &aesni_impl.impl, &generic_impl.impl,
};
static struct ic_impl_choice choice = {
  "sm4", impls, sizeof impls / sizeof impls[0], NULL,
};

/* GB/T 32907-2016 section 6.2: the S-box. */
static const uint8_t sbox[256] = {
  0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7,
  0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05,
  0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3,
  0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
  0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a,
  0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62,
  0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95,
  0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6,
  0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba,
  0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8,
  0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b,
  0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35,
  0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2,
  0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87,
  0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52,
  0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e,
  0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5,
  0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1,
  0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55,
  0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3,
  0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60,
  0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f,
  0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f,
  0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51,
  0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f,
  0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8,
  0x0a, 0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd,
  0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0,
  0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e,
  0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
  0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20,
  0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
};

/* L(S(b)) for each byte b: T of a word whose only non-zero byte is the low
 * one.  L commutes with rotations by whole bytes, so T(x) is the XOR of
 * rol(lt[byte k of x], 8 k) (generated from sbox and L; any wrong entry
 * fails the known answers and libgcrypt comparisons of tests/test_sm4.c).
 * The portable code is not constant-time; the SIMD code uses no tables.
 */
static const uint32_t lt[256] = {
  0xd55b5b8e, 0x924242d0, 0xeaa7a74d, 0xfdfbfb06,
  0xcf3333fc, 0xe2878765, 0x3df4f4c9, 0xb5dede6b,
  0x1658584e, 0xb4dada6e, 0x14505044, 0xc10b0bca,
  0x28a0a088, 0xf8efef17, 0x2cb0b09c, 0x05141411,
  0x2bacac87, 0x669d9dfb, 0x986a6af2, 0x77d9d9ae,
  0x2aa8a882, 0xbcfafa46, 0x04101014, 0xc00f0fcf,
  0xa8aaaa02, 0x45111154, 0x134c4c5f, 0x269898be,
  0x4825256d, 0x841a1a9e, 0x0618181e, 0x9b6666fd,
  0x9e7272ec, 0x4309094a, 0x51414110, 0xf7d3d324,
  0x934646d5, 0xecbfbf53, 0x9a6262f8, 0x7be9e992,
  0x33ccccff, 0x55515104, 0x0b2c2c27, 0x420d0d4f,
  0xeeb7b759, 0xcc3f3ff3, 0xaeb2b21c, 0x638989ea,
  0xe7939374, 0xb1cece7f, 0x1c70706c, 0xaba6a60d,
  0xca2727ed, 0x08202028, 0xeba3a348, 0x975656c1,
  0x82020280, 0xdc7f7fa3, 0x965252c4, 0xf9ebeb12,
  0x74d5d5a1, 0x8d3e3eb3, 0x3ffcfcc3, 0xa49a9a3e,
  0x461d1d5b, 0x071c1c1b, 0xa59e9e3b, 0xfff3f30c,
  0xf0cfcf3f, 0x72cdcdbf, 0x175c5c4b, 0xb8eaea52,
  0x810e0e8f, 0x5865653d, 0x3cf0f0cc, 0x1964647d,
  0xe59b9b7e, 0x87161691, 0x4e3d3d73, 0xaaa2a208,
  0x69a1a1c8, 0x6aadadc7, 0x83060685, 0xb0caca7a,
  0x70c5c5b5, 0x659191f4, 0xd96b6bb2, 0x892e2ea7,
  0xfbe3e318, 0xe8afaf47, 0x0f3c3c33, 0x4a2d2d67,
  0x71c1c1b0, 0x5759590e, 0x9f7676e9, 0x35d4d4e1,
  0x1e787866, 0x249090b4, 0x0e383836, 0x5f797926,
  0x628d8def, 0x59616138, 0xd2474795, 0xa08a8a2a,
  0x259494b1, 0x228888aa, 0x7df1f18c, 0x3bececd7,
  0x01040405, 0x218484a5, 0x79e1e198, 0x851e1e9b,
  0xd7535384, 0x00000000, 0x4719195e, 0x565d5d0b,
  0x9d7e7ee3, 0xd04f4f9f, 0x279c9cbb, 0x5349491a,
  0x4d31317c, 0x36d8d8ee, 0x0208080a, 0xe49f9f7b,
  0xa2828220, 0xc71313d4, 0xcb2323e8, 0x9c7a7ae6,
  0xe9abab42, 0xbdfefe43, 0x882a2aa2, 0xd14b4b9a,
  0x41010140, 0xc41f1fdb, 0x38e0e0d8, 0xb7d6d661,
  0xa18e8e2f, 0xf4dfdf2b, 0xf1cbcb3a, 0xcd3b3bf6,
  0xfae7e71d, 0x608585e5, 0x15545441, 0xa3868625,
  0xe3838360, 0xacbaba16, 0x5c757529, 0xa6929234,
  0x996e6ef7, 0x34d0d0e4, 0x1a686872, 0x54555501,
  0xafb6b619, 0x914e4edf, 0x32c8c8fa, 0x30c0c0f0,
  0xf6d7d721, 0x8e3232bc, 0xb3c6c675, 0xe08f8f6f,
  0x1d747469, 0xf5dbdb2e, 0xe18b8b6a, 0x2eb8b896,
  0x800a0a8a, 0x679999fe, 0xc92b2be2, 0x618181e0,
  0xc30303c0, 0x29a4a48d, 0x238c8caf, 0xa9aeae07,
  0x0d343439, 0x524d4d1f, 0x4f393976, 0x6ebdbdd3,
  0xd6575781, 0xd86f6fb7, 0x37dcdceb, 0x44151551,
  0xdd7b7ba6, 0xfef7f709, 0x8c3a3ab6, 0x2fbcbc93,
  0x030c0c0f, 0xfcffff03, 0x6ba9a9c2, 0x73c9c9ba,
  0x6cb5b5d9, 0x6db1b1dc, 0x5a6d6d37, 0x50454515,
  0x8f3636b9, 0x1b6c6c77, 0xadbebe13, 0x904a4ada,
  0xb9eeee57, 0xde7777a9, 0xbef2f24c, 0x7efdfd83,
  0x11444455, 0xda6767bd, 0x5d71712c, 0x40050545,
  0x1f7c7c63, 0x10404050, 0x5b696932, 0xdb6363b8,
  0x0a282822, 0xc20707c5, 0x31c4c4f5, 0x8a2222a8,
  0xa7969631, 0xce3737f9, 0x7aeded97, 0xbff6f649,
  0x2db4b499, 0x75d1d1a4, 0xd3434390, 0x1248485a,
  0xbae2e258, 0xe6979771, 0xb6d2d264, 0xb2c2c270,
  0x8b2626ad, 0x68a5a5cd, 0x955e5ecb, 0x4b292962,
  0x0c30303c, 0x945a5ace, 0x76ddddab, 0x7ff9f986,
  0x649595f1, 0xbbe6e65d, 0xf2c7c735, 0x0924242d,
  0xc61717d1, 0x6fb9b9d6, 0xc51b1bde, 0x86121294,
  0x18606078, 0xf3c3c330, 0x7cf5f589, 0xefb3b35c,
  0x3ae8e8d2, 0xdf7373ac, 0x4c353579, 0x208080a0,
  0x78e5e59d, 0xedbbbb56, 0x5e7d7d23, 0x3ef8f8c6,
  0xd45f5f8b, 0xc82f2fe7, 0x39e4e4dd, 0x49212168,
};

/* Section 7.3: the system parameter FK. */
static const uint32_t fk[4] = {
  0xa3b1bac6, 0x56aa3350, 0x677d9197, 0xb27022dc,
};

static inline uint32_t
get_be32 (const uint8_t *p)
{
  uint32_t v;

  memcpy (&v, p, sizeof v);
  return be32toh (v);
}

static inline void
put_be32 (uint8_t *p, uint32_t v)
{
  v = htobe32 (v);
  memcpy (p, &v, sizeof v);
}

static inline uint64_t
get_le64 (const uint8_t *p)
{
  uint64_t v;

  memcpy (&v, p, sizeof v);
  return le64toh (v);
}

static inline void
put_le64 (uint8_t *p, uint64_t v)
{
  v = htole64 (v);
  memcpy (p, &v, sizeof v);
}

static inline uint32_t
rol32 (uint32_t v, int n)
{
  return v << n | v >> (32 - n);
}

/* tau: the S-box on each byte of a word. */
static inline uint32_t
tau (uint32_t x)
{
  return (uint32_t) sbox[x >> 24] << 24 |
    (uint32_t) sbox[(x >> 16) & 0xff] << 16 |
    (uint32_t) sbox[(x >> 8) & 0xff] << 8 |
    (uint32_t) sbox[x & 0xff];
}

/* T of the round function: L after tau, a table look-up per byte. */
static inline uint32_t
t_enc (uint32_t x)
{
  return lt[x & 0xff] ^ rol32 (lt[(x >> 8) & 0xff], 8) ^
    rol32 (lt[(x >> 16) & 0xff], 16) ^ rol32 (lt[x >> 24], 24);
}

/* T' of the key schedule: L' after tau. */
static inline uint32_t
t_key (uint32_t x)
{
  uint32_t b = tau (x);

  return b ^ rol32 (b, 13) ^ rol32 (b, 23);
}

void
ic_sm4_expand_key (struct ic_sm4_key *enc, struct ic_sm4_key *dec,
                   const uint8_t key[IC_SM4_KEY_SIZE])
{
  uint32_t k[4];
  uint32_t ck;
  int i;
  int j;

  for (i = 0; i < 4; i++)
    k[i] = get_be32 (key + 4 * i) ^ fk[i];
  for (i = 0; i < IC_SM4_ROUNDS; i++) {
    /* CK_i: byte j is (4i + j) * 7 mod 256 (section 7.3). */
    ck = 0;
    for (j = 0; j < 4; j++)
      ck = ck << 8 | (uint8_t) ((4 * i + j) * 7);
    k[i % 4] ^= t_key (k[(i + 1) % 4] ^ k[(i + 2) % 4] ^ k[(i + 3) % 4] ^ ck);
    enc->rk[i] = k[i % 4];
    if (dec)
      dec->rk[IC_SM4_ROUNDS - 1 - i] = k[i % 4];
  }
  ic_memzero_explicit (k, sizeof k);
}

void
ic_sm4_crypt_block (const struct ic_sm4_key *rk,
                    uint8_t out[IC_SM4_BLOCK_SIZE],
                    const uint8_t in[IC_SM4_BLOCK_SIZE])
{
  uint32_t x0 = get_be32 (in);
  uint32_t x1 = get_be32 (in + 4);
  uint32_t x2 = get_be32 (in + 8);
  uint32_t x3 = get_be32 (in + 12);
  int i;

  for (i = 0; i < IC_SM4_ROUNDS; i += 4) {
    x0 ^= t_enc (x1 ^ x2 ^ x3 ^ rk->rk[i]);
    x1 ^= t_enc (x2 ^ x3 ^ x0 ^ rk->rk[i + 1]);
    x2 ^= t_enc (x3 ^ x0 ^ x1 ^ rk->rk[i + 2]);
    x3 ^= t_enc (x0 ^ x1 ^ x2 ^ rk->rk[i + 3]);
  }
  /* The reverse transformation R: (X35, X34, X33, X32). */
  put_be32 (out, x3);
  put_be32 (out + 4, x2);
  put_be32 (out + 8, x1);
  put_be32 (out + 12, x0);
}

static inline void
xor_block (uint8_t *dst, const uint8_t *a, const uint8_t *b)
{
  uint64_t x[2];
  uint64_t y[2];

  memcpy (x, a, sizeof x);
  memcpy (y, b, sizeof y);
  x[0] ^= y[0];
  x[1] ^= y[1];
  memcpy (dst, x, sizeof x);
}

void
ic_sm4_crypt_blocks_generic (const struct ic_sm4_key *rk, uint8_t *dst,
                             const uint8_t *src, const uint8_t *tweaks,
                             size_t nblocks)
{
  uint8_t buf[IC_SM4_BLOCK_SIZE];
  size_t i;

  for (i = 0; i < nblocks; i++, dst += 16, src += 16) {
    if (!tweaks) {
      ic_sm4_crypt_block (rk, dst, src);
      continue;
    }
    xor_block (buf, src, tweaks + 16 * i);
    ic_sm4_crypt_block (rk, buf, buf);
    xor_block (dst, buf, tweaks + 16 * i);
  }
  ic_memzero_explicit (buf, sizeof buf);
}

static const struct sm4_impl *
current_impl (void)
{
  return (const struct sm4_impl *) ic_impl_current (&choice);
}

void
ic_sm4_use_simd (bool enable)
{
  ic_impl_use_simd (&choice, enable);
}

int
ic_sm4_use_impl (const char *name)
{
  return ic_impl_use (&choice, name);
}

const char *
ic_sm4_impl_name (void)
{
  return current_impl ()->impl.name;
}

void
ic_sm4_crypt_blocks (const struct ic_sm4_key *rk, uint8_t *dst,
                     const uint8_t *src, const uint8_t *tweaks,
                     size_t nblocks)
{
  current_impl ()->crypt_blocks (rk, dst, src, tweaks, nblocks);
}

struct ic_sm4_xts_ctx *
ic_sm4_xts_new (void)
{
  struct ic_sm4_xts_ctx *ctx = ic_secure_alloc (sizeof *ctx);

  if (!ctx)
    ic_error ("sm4: allocate XTS context: out of locked memory");
  return ctx;
}

void
ic_sm4_xts_free (struct ic_sm4_xts_ctx *ctx)
{
  ic_secure_free (ctx, sizeof *ctx);
}

void
ic_sm4_xts_setkey (struct ic_sm4_xts_ctx *ctx,
                   const uint8_t key[IC_SM4_XTS_KEY_SIZE])
{
  ic_sm4_expand_key (&ctx->data_enc, &ctx->data_dec, key);
  ic_sm4_expand_key (&ctx->tweak_enc, NULL, key + IC_SM4_KEY_SIZE);
}

/* T *= x in GF(2^128), T little-endian as two 64-bit halves
 * (gf128mul_x_ble).
 */
static inline void
gf128_mul_x (uint64_t *lo, uint64_t *hi)
{
  uint64_t carry = *hi >> 63;

  *hi = *hi << 1 | *lo >> 63;
  *lo = *lo << 1 ^ (-carry & 0x87);
}

static int
xts_crypt (struct ic_sm4_xts_ctx *ctx, uint8_t *dst, const uint8_t *src,
           size_t len, unsigned int du, const uint8_t iv[IC_SM4_XTS_IV_SIZE],
           bool enc)
{
  const struct sm4_impl *im = current_impl ();
  const struct ic_sm4_key *rk = enc ? &ctx->data_enc : &ctx->data_dec;
  uint8_t first[XTS_BATCH_UNITS][IC_SM4_BLOCK_SIZE];
  uint8_t tweaks[XTS_CHUNK_BLOCKS][IC_SM4_BLOCK_SIZE];
  uint64_t seq_lo = get_le64 (iv);      /* IV of the next data unit */
  uint64_t seq_hi = get_le64 (iv + 8);
  uint64_t t_lo = 0;                    /* tweak of the next block */
  uint64_t t_hi = 0;
  size_t unit_blocks = du / IC_SM4_BLOCK_SIZE;
  size_t nunits;
  size_t unit;
  size_t n;
  size_t i;
  size_t b;
  size_t m;
  size_t k;
  size_t left;                          /* blocks left in the data unit */

  if (du == 0 || du % IC_SM4_BLOCK_SIZE != 0 || len == 0 || len % du != 0) {
    ic_error ("sm4: xts: %zu bytes is not a whole number of %u-byte data "
              "units of 16-byte blocks", len, du);
    return -EINVAL;
  }
  nunits = len / du;
  for (unit = 0; unit < nunits; unit += n) {
    n = nunits - unit < XTS_BATCH_UNITS ? nunits - unit : XTS_BATCH_UNITS;
    /* T_0 = SM4_K2(IV) of each data unit of the batch. */
    for (i = 0; i < n; i++) {
      put_le64 (first[i], seq_lo);
      put_le64 (first[i] + 8, seq_hi);
      seq_hi += ++seq_lo == 0;
    }
    im->crypt_blocks (&ctx->tweak_enc, first[0], first[0], NULL, n);

    /* The blocks of these data units in runs of up to XTS_CHUNK_BLOCKS,
     * a run crossing from one data unit into the next.
     */
    i = 0;
    left = 0;
    for (b = 0; b < n * unit_blocks; b += m) {
      m = n * unit_blocks - b;
      if (m > XTS_CHUNK_BLOCKS)
        m = XTS_CHUNK_BLOCKS;
      for (k = 0; k < m; k++) {
        if (left == 0) {
          t_lo = get_le64 (first[i]);
          t_hi = get_le64 (first[i] + 8);
          i++;
          left = unit_blocks;
        }
        put_le64 (tweaks[k], t_lo);
        put_le64 (tweaks[k] + 8, t_hi);
        gf128_mul_x (&t_lo, &t_hi);
        left--;
      }
      im->crypt_blocks (rk, dst, src, tweaks[0], m);
      dst += m * IC_SM4_BLOCK_SIZE;
      src += m * IC_SM4_BLOCK_SIZE;
    }
  }
  ic_memzero_explicit (first, sizeof first);
  ic_memzero_explicit (tweaks, sizeof tweaks);
  return 0;
}

int
ic_sm4_xts_encrypt (struct ic_sm4_xts_ctx *ctx, uint8_t *dst,
                    const uint8_t *src, size_t len,
                    unsigned int data_unit_size,
                    const uint8_t iv[IC_SM4_XTS_IV_SIZE])
{
  return xts_crypt (ctx, dst, src, len, data_unit_size, iv, true);
}

int
ic_sm4_xts_decrypt (struct ic_sm4_xts_ctx *ctx, uint8_t *dst,
                    const uint8_t *src, size_t len,
                    unsigned int data_unit_size,
                    const uint8_t iv[IC_SM4_XTS_IV_SIZE])
{
  return xts_crypt (ctx, dst, src, len, data_unit_size, iv, false);
}

/* crypto/sm4-gfni.c - ic_sm4_crypt_blocks with GFNI and AVX-512, see
 * sm4.h.  The layout of crypto/sm4-aesni.c on 512-bit vectors, with the
 * S-box as two GF(2^8) affine instructions instead of AESENCLAST between
 * nibble tables.
 *
 * Blocks are sliced by word: vector w of a set holds word w of 16 blocks
 * (after a byte swap of each big-endian word and a 4 x 4 transpose of
 * 32-bit words inside each 128-bit lane).  Up to four independent sets (64
 * blocks) run side by side to hide latencies; a partial set goes through a
 * padded copy.
 *
 * The SM4 S-box is S(x) = A2 inv(A1 x + c1) + c2, inv the inverse in
 * GF(2^8) modulo AES's polynomial x^8 + x^4 + x^3 + x + 1 (0 to 0):
 * GF2P8AFFINEQB computes A1 x + c1 and GF2P8AFFINEINVQB A2 inv(y) + c2.
 * A1, c1 are the "pre" map of sm4ni (crypto/sm4-aesni.c) and A2, c2 its
 * "post" map composed with the affine part of the AES S-box; they were
 * derived from those tables and checked against the SM4 S-box for all 256
 * inputs (tests/test_sm4.c checks this code against known answers and
 * libgcrypt).  A
 * matrix's byte 7 - i is row i: output bit i is the parity of that byte
 * ANDed with the input.  The rotations of L are VPROLD and the XORs of
 * three terms VPTERNLOGD.  Nothing here indexes memory with data or key
 * bytes.
 */
#include <config.h>

#include <immintrin.h>
#include <string.h>

#include "secmem.h"
#include "sm4.h"

#define TARGET __attribute__ ((target ("avx512f,avx512bw,gfni")))
#define INLINE_TARGET \
  __attribute__ ((always_inline, target ("avx512f,avx512bw,gfni"))) inline

#define SET_BLOCKS 16                   /* blocks per set of 4 vectors */
#define MAX_SETS 4                      /* sets per call */

#define PRE_MATRIX   0x669b0d608a162e14LL
#define PRE_CONST    0x01
#define POST_MATRIX  0x598edb70229ca40eLL
#define POST_CONST   0xd3

#define XOR3 0x96                       /* VPTERNLOGD: a ^ b ^ c */

/* The same 16 bytes in all four 128-bit lanes. */
#define LANES(...) _mm512_broadcast_i32x4 (_mm_setr_epi8 (__VA_ARGS__))

bool
ic_sm4_gfni_avx512_usable (void)
{
  __builtin_cpu_init ();
  return __builtin_cpu_supports ("avx512f") &&
    __builtin_cpu_supports ("avx512bw") && __builtin_cpu_supports ("gfni");
}

/* s0 ^ T(s1 ^ s2 ^ s3 ^ rk), T = L after the S-box on each byte. */
static INLINE_TARGET __m512i
round_fn (__m512i s0, __m512i s1, __m512i s2, __m512i s3, __m512i rk)
{
  const __m512i pre = _mm512_set1_epi64 (PRE_MATRIX);
  const __m512i post = _mm512_set1_epi64 (POST_MATRIX);
  __m512i x = _mm512_xor_si512 (_mm512_ternarylogic_epi32 (s1, s2, s3, XOR3),
                                rk);
  __m512i t;

  x = _mm512_gf2p8affine_epi64_epi8 (x, pre, PRE_CONST);
  x = _mm512_gf2p8affineinv_epi64_epi8 (x, post, POST_CONST);
  /* L(B) = B ^ B<<<24 ^ (B ^ B<<<8 ^ B<<<16)<<<2 */
  s0 = _mm512_ternarylogic_epi32 (s0, x, _mm512_rol_epi32 (x, 24), XOR3);
  t = _mm512_ternarylogic_epi32 (x, _mm512_rol_epi32 (x, 8),
                                 _mm512_rol_epi32 (x, 16), XOR3);
  return _mm512_xor_si512 (s0, _mm512_rol_epi32 (t, 2));
}

#define ROUND(s0, s1, s2, s3, rk) s0 = round_fn (s0, s1, s2, s3, rk)

/* Transpose the 4 x 4 words in each 128-bit lane of x0..x3. */
#define TRANSPOSE(x0, x1, x2, x3)                                       \
  do {                                                                  \
    __m512i t0_ = _mm512_unpacklo_epi32 (x0, x1);                       \
    __m512i t1_ = _mm512_unpackhi_epi32 (x0, x1);                       \
    __m512i t2_ = _mm512_unpacklo_epi32 (x2, x3);                       \
    __m512i t3_ = _mm512_unpackhi_epi32 (x2, x3);                       \
    x0 = _mm512_unpacklo_epi64 (t0_, t2_);                              \
    x1 = _mm512_unpackhi_epi64 (t0_, t2_);                              \
    x2 = _mm512_unpacklo_epi64 (t1_, t3_);                              \
    x3 = _mm512_unpackhi_epi64 (t1_, t3_);                              \
  } while (0)

#define LOAD(p) _mm512_loadu_si512 ((const void *) (p))
#define STORE(p, x) _mm512_storeu_si512 ((void *) (p), x)

/* En/decrypt @nsets sets of 16 blocks from @src to @dst, each XORed
 * before and after with its tweak unless @tw is NULL.  Vector w of set s
 * holds the 4 blocks at 256 s + 64 w bytes: the transposes keep them
 * there.  The rounds of one set depend on each other; the sets do not, so
 * more sets hide more latency.
 */
static INLINE_TARGET void
crypt_sets (const struct ic_sm4_key *rk, uint8_t *dst, const uint8_t *src,
            const uint8_t *tw, const int nsets)
{
  /* Each big-endian word to host order; and at the end the block's four
   * words reversed and back to big-endian, the reverse transformation R.
   */
  const __m512i bswap32 = LANES (3, 2, 1, 0, 7, 6, 5, 4,
                                 11, 10, 9, 8, 15, 14, 13, 12);
  const __m512i bswap128 = LANES (15, 14, 13, 12, 11, 10, 9, 8,
                                  7, 6, 5, 4, 3, 2, 1, 0);
  __m512i x[MAX_SETS][4];
  __m512i k;
  int i;
  int s;
  int w;

#pragma GCC unroll 4
  for (s = 0; s < nsets; s++) {
#pragma GCC unroll 4
    for (w = 0; w < 4; w++) {
      x[s][w] = LOAD (src + 256 * s + 64 * w);
      if (tw)
        x[s][w] = _mm512_xor_si512 (x[s][w], LOAD (tw + 256 * s + 64 * w));
      x[s][w] = _mm512_shuffle_epi8 (x[s][w], bswap32);
    }
    TRANSPOSE (x[s][0], x[s][1], x[s][2], x[s][3]);
  }

  for (i = 0; i < IC_SM4_ROUNDS; i += 4) {
    k = _mm512_set1_epi32 ((int) rk->rk[i]);
#pragma GCC unroll 4
    for (s = 0; s < nsets; s++)
      ROUND (x[s][0], x[s][1], x[s][2], x[s][3], k);
    k = _mm512_set1_epi32 ((int) rk->rk[i + 1]);
#pragma GCC unroll 4
    for (s = 0; s < nsets; s++)
      ROUND (x[s][1], x[s][2], x[s][3], x[s][0], k);
    k = _mm512_set1_epi32 ((int) rk->rk[i + 2]);
#pragma GCC unroll 4
    for (s = 0; s < nsets; s++)
      ROUND (x[s][2], x[s][3], x[s][0], x[s][1], k);
    k = _mm512_set1_epi32 ((int) rk->rk[i + 3]);
#pragma GCC unroll 4
    for (s = 0; s < nsets; s++)
      ROUND (x[s][3], x[s][0], x[s][1], x[s][2], k);
  }

  /* Vector w holds X32+w; per block (X32, X33, X34, X35) after the
   * transpose, which the 128-bit byte reversal turns into R's output.
   */
#pragma GCC unroll 4
  for (s = 0; s < nsets; s++) {
    TRANSPOSE (x[s][0], x[s][1], x[s][2], x[s][3]);
#pragma GCC unroll 4
    for (w = 0; w < 4; w++) {
      x[s][w] = _mm512_shuffle_epi8 (x[s][w], bswap128);
      if (tw)
        x[s][w] = _mm512_xor_si512 (x[s][w], LOAD (tw + 256 * s + 64 * w));
      STORE (dst + 256 * s + 64 * w, x[s][w]);
    }
  }
}

static TARGET void
crypt1 (const struct ic_sm4_key *rk, uint8_t *dst, const uint8_t *src,
        const uint8_t *tw)
{
  crypt_sets (rk, dst, src, tw, 1);
}

static TARGET void
crypt2 (const struct ic_sm4_key *rk, uint8_t *dst, const uint8_t *src,
        const uint8_t *tw)
{
  crypt_sets (rk, dst, src, tw, 2);
}

static TARGET void
crypt3 (const struct ic_sm4_key *rk, uint8_t *dst, const uint8_t *src,
        const uint8_t *tw)
{
  crypt_sets (rk, dst, src, tw, 3);
}

static TARGET void
crypt4 (const struct ic_sm4_key *rk, uint8_t *dst, const uint8_t *src,
        const uint8_t *tw)
{
  crypt_sets (rk, dst, src, tw, 4);
}

typedef void crypt_fn (const struct ic_sm4_key *rk, uint8_t *dst,
                       const uint8_t *src, const uint8_t *tw);

/* crypt_n[n] runs n sets. */
static crypt_fn *const crypt_n[MAX_SETS + 1] = {
  NULL, crypt1, crypt2, crypt3, crypt4,
};

void
ic_sm4_crypt_blocks_gfni_avx512 (const struct ic_sm4_key *rk, uint8_t *dst,
                                 const uint8_t *src, const uint8_t *tweaks,
                                 size_t nblocks)
{
  uint8_t pad[2][MAX_SETS * SET_BLOCKS * IC_SM4_BLOCK_SIZE]; /* data, tweaks */
  size_t nsets;
  size_t tail;

  for (; nblocks >= MAX_SETS * SET_BLOCKS; nblocks -= MAX_SETS * SET_BLOCKS) {
    crypt4 (rk, dst, src, tweaks);
    dst += MAX_SETS * SET_BLOCKS * IC_SM4_BLOCK_SIZE;
    src += MAX_SETS * SET_BLOCKS * IC_SM4_BLOCK_SIZE;
    if (tweaks)
      tweaks += MAX_SETS * SET_BLOCKS * IC_SM4_BLOCK_SIZE;
  }
  if (nblocks == 0)
    return;
  nsets = (nblocks + SET_BLOCKS - 1) / SET_BLOCKS;
  if (nblocks % SET_BLOCKS == 0) {
    crypt_n[nsets] (rk, dst, src, tweaks);
    return;
  }

  /* A partial set: through a zero-padded copy. */
  tail = nblocks * IC_SM4_BLOCK_SIZE;
  memset (pad, 0, sizeof pad);
  memcpy (pad[0], src, tail);
  if (tweaks)
    memcpy (pad[1], tweaks, tail);
  crypt_n[nsets] (rk, pad[0], pad[0], tweaks ? pad[1] : NULL);
  memcpy (dst, pad[0], tail);
  ic_memzero_explicit (pad, sizeof pad);
}

/* crypto/sm4-aesni.c - ic_sm4_crypt_blocks with AES-NI and AVX2, see
 * sm4.h.  The method of Linux arch/x86/crypto/sm4-aesni-avx2-asm_64.S
 * (after libgcrypt and Markku-Juhani O. Saarinen's sm4ni), written anew
 * with intrinsics.
 *
 * Blocks are sliced by word: after a byte swap of each big-endian word and
 * a 4 x 4 transpose of 32-bit words inside each 128-bit lane, vector w of a
 * set holds word w of eight blocks, so one SM4 round is the same few vector
 * operations for all eight.  A round's result feeds the next, so up to four
 * independent sets (32 blocks) run side by side to hide the latencies (two
 * sets ran 1.6 times slower); a partial set goes through a padded copy.
 *
 * The SM4 S-box is S(x) = post(AES-SubBytes(pre(x))), pre and post affine
 * maps over GF(2) between SM4's and AES's representations of GF(2^8)
 * (sm4ni).  Each map is two 16-entry nibble tables applied with PSHUFB:
 * f(x) = lo[x & 15] ^ hi[x >> 4].  AESENCLAST with a zero round key gives
 * SubBytes, and also ShiftRows, which moves bytes between the four words
 * of the 128-bit lane; the linear transformation L undoes that for free by
 * folding the inverse ShiftRows into the byte shuffles that rotate by 0, 8,
 * 16 and 24 bits:
 *
 *   L(B) = B ^ B<<<2 ^ B<<<10 ^ B<<<18 ^ B<<<24
 *        = B ^ B<<<24 ^ (B ^ B<<<8 ^ B<<<16)<<<2
 *
 * AESENCLAST exists only on 128-bit vectors without VAES, so the 256-bit
 * vector is split around it, as Linux does.  Nothing here indexes memory
 * with data or key bytes.  Only this file is compiled with AVX2 and AES-NI
 * enabled, function by function; sm4.c calls it only when
 * ic_sm4_aesni_avx2_usable() said yes.
 */
#include <config.h>

#include <immintrin.h>
#include <string.h>

#include "secmem.h"
#include "sm4.h"

#define TARGET __attribute__ ((target ("avx2,aes")))
#define INLINE_TARGET \
  __attribute__ ((always_inline, target ("avx2,aes"))) inline

#define SET_BLOCKS 8                    /* blocks per set of 4 vectors */
#define MAX_SETS 4                      /* sets per call */

/* The same 16 bytes in both 128-bit lanes. */
#define LANES(...) _mm256_setr_epi8 (__VA_ARGS__, __VA_ARGS__)

bool
ic_sm4_aesni_avx2_usable (void)
{
  __builtin_cpu_init ();
  return __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("aes");
}

/* f(x) = lo[x & 15] ^ hi[x >> 4] on each byte. */
static INLINE_TARGET __m256i
nibble_map (__m256i x, __m256i lo, __m256i hi)
{
  const __m256i mask = _mm256_set1_epi8 (0x0f);
  __m256i l = _mm256_and_si256 (x, mask);
  __m256i h = _mm256_and_si256 (_mm256_srli_epi32 (x, 4), mask);

  return _mm256_xor_si256 (_mm256_shuffle_epi8 (lo, l),
                           _mm256_shuffle_epi8 (hi, h));
}

/* The SM4 S-box on each byte, the bytes of each lane left in ShiftRows
 * order.
 */
static INLINE_TARGET __m256i
sbox (__m256i x)
{
  /* pre: from SM4's field to AES's. */
  const __m256i pre_lo = LANES (0x01, 0x07, 0x72, 0x74, 0xe4, 0xe2, 0x97,
                                0x91, 0x57, 0x51, 0x24, 0x22, 0xb2, 0xb4,
                                0xc1, 0xc7);
  const __m256i pre_hi = LANES (0x00, 0xa2, 0x49, 0xeb, 0x09, 0xab, 0x40,
                                0xe2, 0x12, 0xb0, 0x5b, 0xf9, 0x1b, 0xb9,
                                0x52, 0xf0);
  /* post: from AES's field back, after the AES S-box. */
  const __m256i post_lo = LANES (0x34, 0x08, 0x9d, 0xa1, 0xce, 0xf2, 0x67,
                                 0x5b, 0x82, 0xbe, 0x2b, 0x17, 0x78, 0x44,
                                 0xd1, 0xed);
  const __m256i post_hi = LANES (0x00, 0xdc, 0xaf, 0x73, 0xdd, 0x01, 0x72,
                                 0xae, 0xbf, 0x63, 0x10, 0xcc, 0x62, 0xbe,
                                 0xcd, 0x11);
  const __m128i zero = _mm_setzero_si128 ();
  __m128i lo;
  __m128i hi;

  x = nibble_map (x, pre_lo, pre_hi);
  lo = _mm_aesenclast_si128 (_mm256_castsi256_si128 (x), zero);
  hi = _mm_aesenclast_si128 (_mm256_extracti128_si256 (x, 1), zero);
  x = _mm256_inserti128_si256 (_mm256_castsi128_si256 (lo), hi, 1);
  return nibble_map (x, post_lo, post_hi);
}

/* L of the S-box output @s (bytes in ShiftRows order), to XOR into s0. */
static INLINE_TARGET __m256i
linear (__m256i s)
{
  /* Inverse ShiftRows, then rotate each word left by 0, 8, 16, 24. */
  const __m256i rol0 = LANES (0, 13, 10, 7, 4, 1, 14, 11,
                              8, 5, 2, 15, 12, 9, 6, 3);
  const __m256i rol8 = LANES (7, 0, 13, 10, 11, 4, 1, 14,
                              15, 8, 5, 2, 3, 12, 9, 6);
  const __m256i rol16 = LANES (10, 7, 0, 13, 14, 11, 4, 1,
                               2, 15, 8, 5, 6, 3, 12, 9);
  const __m256i rol24 = LANES (13, 10, 7, 0, 1, 14, 11, 4,
                               5, 2, 15, 8, 9, 6, 3, 12);
  __m256i b = _mm256_shuffle_epi8 (s, rol0);
  __m256i t = _mm256_xor_si256 (b, _mm256_shuffle_epi8 (s, rol8));
  __m256i r = _mm256_xor_si256 (b, _mm256_shuffle_epi8 (s, rol24));

  t = _mm256_xor_si256 (t, _mm256_shuffle_epi8 (s, rol16));
  return _mm256_xor_si256 (r, _mm256_or_si256 (_mm256_slli_epi32 (t, 2),
                                               _mm256_srli_epi32 (t, 30)));
}

/* s0 ^= T(s1 ^ s2 ^ s3 ^ rk). */
#define ROUND(s0, s1, s2, s3, rk)                                       \
  s0 = _mm256_xor_si256 (s0, linear (sbox (_mm256_xor_si256 (           \
           _mm256_xor_si256 (s1, s2), _mm256_xor_si256 (s3, rk)))))

/* Transpose the 4 x 4 words in each 128-bit lane of x0..x3. */
#define TRANSPOSE(x0, x1, x2, x3)                                       \
  do {                                                                  \
    __m256i t0_ = _mm256_unpacklo_epi32 (x0, x1);                       \
    __m256i t1_ = _mm256_unpackhi_epi32 (x0, x1);                       \
    __m256i t2_ = _mm256_unpacklo_epi32 (x2, x3);                       \
    __m256i t3_ = _mm256_unpackhi_epi32 (x2, x3);                       \
    x0 = _mm256_unpacklo_epi64 (t0_, t2_);                              \
    x1 = _mm256_unpackhi_epi64 (t0_, t2_);                              \
    x2 = _mm256_unpacklo_epi64 (t1_, t3_);                              \
    x3 = _mm256_unpackhi_epi64 (t1_, t3_);                              \
  } while (0)

#define LOAD(p) _mm256_loadu_si256 ((const __m256i *) (p))
#define STORE(p, x) _mm256_storeu_si256 ((__m256i *) (p), x)

/* En/decrypt @nsets sets of 8 blocks from @src to @dst, each XORed
 * before and after with its tweak unless @tw is NULL.  Vector w of set s
 * holds the 2 blocks at 128 s + 32 w bytes: the transposes keep them
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
  const __m256i bswap32 = LANES (3, 2, 1, 0, 7, 6, 5, 4,
                                 11, 10, 9, 8, 15, 14, 13, 12);
  const __m256i bswap128 = LANES (15, 14, 13, 12, 11, 10, 9, 8,
                                  7, 6, 5, 4, 3, 2, 1, 0);
  __m256i x[MAX_SETS][4];
  __m256i k;
  int i;
  int s;
  int w;

#pragma GCC unroll 4
  for (s = 0; s < nsets; s++) {
#pragma GCC unroll 4
    for (w = 0; w < 4; w++) {
      x[s][w] = LOAD (src + 128 * s + 32 * w);
      if (tw)
        x[s][w] = _mm256_xor_si256 (x[s][w], LOAD (tw + 128 * s + 32 * w));
      x[s][w] = _mm256_shuffle_epi8 (x[s][w], bswap32);
    }
    TRANSPOSE (x[s][0], x[s][1], x[s][2], x[s][3]);
  }

  for (i = 0; i < IC_SM4_ROUNDS; i += 4) {
    k = _mm256_set1_epi32 ((int) rk->rk[i]);
#pragma GCC unroll 4
    for (s = 0; s < nsets; s++)
      ROUND (x[s][0], x[s][1], x[s][2], x[s][3], k);
    k = _mm256_set1_epi32 ((int) rk->rk[i + 1]);
#pragma GCC unroll 4
    for (s = 0; s < nsets; s++)
      ROUND (x[s][1], x[s][2], x[s][3], x[s][0], k);
    k = _mm256_set1_epi32 ((int) rk->rk[i + 2]);
#pragma GCC unroll 4
    for (s = 0; s < nsets; s++)
      ROUND (x[s][2], x[s][3], x[s][0], x[s][1], k);
    k = _mm256_set1_epi32 ((int) rk->rk[i + 3]);
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
      x[s][w] = _mm256_shuffle_epi8 (x[s][w], bswap128);
      if (tw)
        x[s][w] = _mm256_xor_si256 (x[s][w], LOAD (tw + 128 * s + 32 * w));
      STORE (dst + 128 * s + 32 * w, x[s][w]);
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
ic_sm4_crypt_blocks_aesni_avx2 (const struct ic_sm4_key *rk, uint8_t *dst,
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

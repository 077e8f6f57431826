/* crypto/chacha-avx2.c - ic_chacha_crypt with AVX2, see chacha.h.
 *
 * Eight blocks at a time, one block per 32-bit lane: each of the 16 state
 * words is a vector holding that word of eight consecutive blocks, whose
 * counters (word 12) are state[12] + 0..7 (32-bit, wrapping, as the portable
 * code).  After the rounds the 16 x 8 words are transposed back into eight
 * 64-byte blocks and XORed into the data.  Only this file is compiled with
 * AVX2 enabled, function by function; chacha.c calls it only when
 * ic_chacha_avx2_usable() said yes.
 */
#include <config.h>

#include <immintrin.h>
#include <string.h>

#include "chacha.h"
#include "secmem.h"

#define AVX2 __attribute__ ((target ("avx2")))

#define BATCH_BLOCKS 8
#define BATCH_BYTES (BATCH_BLOCKS * IC_CHACHA_BLOCK_SIZE)

bool
ic_chacha_avx2_usable (void)
{
  __builtin_cpu_init ();
  return __builtin_cpu_supports ("avx2");
}

/* Rotations by 16 and 8 are byte shuffles; 12 and 7 are two shifts. */
static inline AVX2 __m256i
rotl16 (__m256i x)
{
  const __m256i rot16 = _mm256_setr_epi8 (2, 3, 0, 1, 6, 7, 4, 5,
                                          10, 11, 8, 9, 14, 15, 12, 13,
                                          2, 3, 0, 1, 6, 7, 4, 5,
                                          10, 11, 8, 9, 14, 15, 12, 13);

  return _mm256_shuffle_epi8 (x, rot16);
}

static inline AVX2 __m256i
rotl8 (__m256i x)
{
  const __m256i rot8 = _mm256_setr_epi8 (3, 0, 1, 2, 7, 4, 5, 6,
                                         11, 8, 9, 10, 15, 12, 13, 14,
                                         3, 0, 1, 2, 7, 4, 5, 6,
                                         11, 8, 9, 10, 15, 12, 13, 14);

  return _mm256_shuffle_epi8 (x, rot8);
}

static inline AVX2 __m256i
rotl12 (__m256i x)
{
  return _mm256_or_si256 (_mm256_slli_epi32 (x, 12),
                          _mm256_srli_epi32 (x, 20));
}

static inline AVX2 __m256i
rotl7 (__m256i x)
{
  return _mm256_or_si256 (_mm256_slli_epi32 (x, 7),
                          _mm256_srli_epi32 (x, 25));
}

#define QUARTERROUND(a, b, c, d)                                \
  do {                                                          \
    a = _mm256_add_epi32 (a, b);                                \
    d = rotl16 (_mm256_xor_si256 (d, a));                       \
    c = _mm256_add_epi32 (c, d);                                \
    b = rotl12 (_mm256_xor_si256 (b, c));                       \
    a = _mm256_add_epi32 (a, b);                                \
    d = rotl8 (_mm256_xor_si256 (d, a));                        \
    c = _mm256_add_epi32 (c, d);                                \
    b = rotl7 (_mm256_xor_si256 (b, c));                        \
  } while (0)

/* Transpose eight vectors of eight words (vector i = word i of blocks 0-7)
 * into half-blocks: on return v[b] holds the eight words of block b, for
 * the half of the block these words belong to.
 */
static inline AVX2 void
transpose8 (__m256i v[8])
{
  __m256i t[8];
  __m256i u[8];
  int i;

  /* Pairs of words: t[2i] = blocks 0,1 | 4,5; t[2i+1] = blocks 2,3 | 6,7. */
  for (i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_epi32 (v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32 (v[2 * i], v[2 * i + 1]);
  }
  /* Quads: u[0..3] = words 0-3 of blocks (0|4), (1|5), (2|6), (3|7);
   * u[4..7] the same for words 4-7.
   */
  for (i = 0; i < 2; i++) {
    u[4 * i + 0] = _mm256_unpacklo_epi64 (t[4 * i + 0], t[4 * i + 2]);
    u[4 * i + 1] = _mm256_unpackhi_epi64 (t[4 * i + 0], t[4 * i + 2]);
    u[4 * i + 2] = _mm256_unpacklo_epi64 (t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm256_unpackhi_epi64 (t[4 * i + 1], t[4 * i + 3]);
  }
  /* Join the 128-bit halves: block b (b < 4) from the low lanes, b + 4
   * from the high ones.
   */
  for (i = 0; i < 4; i++) {
    v[i] = _mm256_permute2x128_si256 (u[i], u[i + 4], 0x20);
    v[i + 4] = _mm256_permute2x128_si256 (u[i], u[i + 4], 0x31);
  }
}

/* XOR eight blocks of keystream, starting at block counter state[12], from
 * @src into @dst.  Does not advance the counter.
 */
static AVX2 void
chacha_8blocks (const uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                const uint8_t *src, int nrounds)
{
  __m256i s[IC_CHACHA_STATE_WORDS];
  __m256i x0;
  __m256i x1;
  __m256i x2;
  __m256i x3;
  __m256i x4;
  __m256i x5;
  __m256i x6;
  __m256i x7;
  __m256i x8;
  __m256i x9;
  __m256i x10;
  __m256i x11;
  __m256i x12;
  __m256i x13;
  __m256i x14;
  __m256i x15;
  __m256i lo[8];
  __m256i hi[8];
  int i;

  for (i = 0; i < IC_CHACHA_STATE_WORDS; i++)
    s[i] = _mm256_set1_epi32 ((int) state[i]);
  s[12] = _mm256_add_epi32 (s[12], _mm256_setr_epi32 (0, 1, 2, 3, 4, 5, 6, 7));

  x0 = s[0]; x1 = s[1]; x2 = s[2]; x3 = s[3];
  x4 = s[4]; x5 = s[5]; x6 = s[6]; x7 = s[7];
  x8 = s[8]; x9 = s[9]; x10 = s[10]; x11 = s[11];
  x12 = s[12]; x13 = s[13]; x14 = s[14]; x15 = s[15];

  for (i = 0; i < nrounds; i += 2) {
    QUARTERROUND (x0, x4, x8, x12);
    QUARTERROUND (x1, x5, x9, x13);
    QUARTERROUND (x2, x6, x10, x14);
    QUARTERROUND (x3, x7, x11, x15);
    QUARTERROUND (x0, x5, x10, x15);
    QUARTERROUND (x1, x6, x11, x12);
    QUARTERROUND (x2, x7, x8, x13);
    QUARTERROUND (x3, x4, x9, x14);
  }

  lo[0] = _mm256_add_epi32 (x0, s[0]);
  lo[1] = _mm256_add_epi32 (x1, s[1]);
  lo[2] = _mm256_add_epi32 (x2, s[2]);
  lo[3] = _mm256_add_epi32 (x3, s[3]);
  lo[4] = _mm256_add_epi32 (x4, s[4]);
  lo[5] = _mm256_add_epi32 (x5, s[5]);
  lo[6] = _mm256_add_epi32 (x6, s[6]);
  lo[7] = _mm256_add_epi32 (x7, s[7]);
  hi[0] = _mm256_add_epi32 (x8, s[8]);
  hi[1] = _mm256_add_epi32 (x9, s[9]);
  hi[2] = _mm256_add_epi32 (x10, s[10]);
  hi[3] = _mm256_add_epi32 (x11, s[11]);
  hi[4] = _mm256_add_epi32 (x12, s[12]);
  hi[5] = _mm256_add_epi32 (x13, s[13]);
  hi[6] = _mm256_add_epi32 (x14, s[14]);
  hi[7] = _mm256_add_epi32 (x15, s[15]);
  transpose8 (lo);
  transpose8 (hi);

  for (i = 0; i < BATCH_BLOCKS; i++) {
    const __m256i *in = (const __m256i *) (src + i * IC_CHACHA_BLOCK_SIZE);
    __m256i *out = (__m256i *) (dst + i * IC_CHACHA_BLOCK_SIZE);

    _mm256_storeu_si256 (out,
                         _mm256_xor_si256 (_mm256_loadu_si256 (in), lo[i]));
    _mm256_storeu_si256 (out + 1,
                         _mm256_xor_si256 (_mm256_loadu_si256 (in + 1),
                                           hi[i]));
  }
}

AVX2 void
ic_chacha_crypt_avx2 (uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                      const uint8_t *src, size_t len, int nrounds)
{
  uint8_t stream[BATCH_BYTES];
  size_t i;

  for (; len >= BATCH_BYTES; len -= BATCH_BYTES) {
    chacha_8blocks (state, dst, src, nrounds);
    state[12] += BATCH_BLOCKS;
    dst += BATCH_BYTES;
    src += BATCH_BYTES;
  }
  if (len > 0) {
    /* A short tail: eight blocks of keystream, of which the first
     * ceil(len / 64) count.  (Adiantum with data units of 512 bytes or more
     * never gets here.)
     */
    memset (stream, 0, sizeof stream);
    chacha_8blocks (state, stream, stream, nrounds);
    for (i = 0; i < len; i++)
      dst[i] = src[i] ^ stream[i];
    state[12] += (len + IC_CHACHA_BLOCK_SIZE - 1) / IC_CHACHA_BLOCK_SIZE;
    ic_memzero_explicit (stream, sizeof stream);
  }
  /* Leave no keystream or key words in the vector registers.  XXX Spills
   * of the state to the stack inside chacha_8blocks are not wiped: C gives
   * no handle on them.
   */
  _mm256_zeroall ();
}

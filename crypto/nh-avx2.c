/* crypto/nh-avx2.c - ic_nh with AVX2, see nh.h.
 *
 * Two 16-byte message units per 256-bit vector (unit j in the low 128 bits,
 * unit j + 1 in the high ones).  For pass p the key windows of those units,
 * words 4(j+p) and 4(j+1+p), are 32 contiguous bytes, so one unaligned load
 * gives them.  The message words of each unit are shuffled once into the
 * key's layout, (m0, m2, m1, m3); after the 32-bit additions each 64-bit
 * half of a lane then holds one NH pair, (t0, t2) and (t1, t3), and one
 * unsigned 32x32->64 multiply of the vector by a copy with its odd words
 * moved down forms both products.  Each pass keeps four 64-bit partial
 * sums, added together at the end.  The key words are read straight from
 * memory: x86-64 is little-endian, as the key words are defined.
 */
#include <config.h>

#include <endian.h>
#include <immintrin.h>
#include <string.h>

#include "nh.h"

#define AVX2 __attribute__ ((target ("avx2")))

bool
ic_nh_avx2_usable (void)
{
  __builtin_cpu_init ();
  return __builtin_cpu_supports ("avx2");
}

/* The four partial NH products of one pass for the two units in @m, whose
 * words are in the key's layout.  The odd words come down by a 64-bit
 * shift (a shuffle measured the same on AMD Zen 1).
 */
static inline AVX2 __m256i
nh_pass (__m256i m, const uint8_t *key)
{
  __m256i t = _mm256_add_epi32 (m, _mm256_loadu_si256 ((const __m256i *) key));

  return _mm256_mul_epu32 (t, _mm256_srli_epi64 (t, 32));
}

/* The partial NH products of one pass for the single unit in @m. */
static inline AVX2 __m128i
nh_pass_128 (__m128i m, const uint8_t *key)
{
  __m128i t = _mm_add_epi32 (m, _mm_loadu_si128 ((const __m128i *) key));

  return _mm_mul_epu32 (t, _mm_srli_epi64 (t, 32));
}

/* Sum the 64-bit lanes of @v and @tail.  The odd unit's products join
 * here rather than the 256-bit sums: that way GCC no longer copied the
 * sums between registers on every iteration of the main loop (13.6 cycles
 * per 32 bytes before, 12.1 after, on AMD Zen 1).
 */
static inline AVX2 uint64_t
hsum (__m256i v, __m128i tail)
{
  __m128i x = _mm_add_epi64 (_mm256_castsi256_si128 (v),
                             _mm256_extracti128_si256 (v, 1));

  x = _mm_add_epi64 (x, tail);
  return (uint64_t) _mm_cvtsi128_si64 (x) + (uint64_t) _mm_extract_epi64 (x, 1);
}

static inline void
put_le64 (uint8_t *p, uint64_t v)
{
  v = htole64 (v);
  memcpy (p, &v, sizeof v);
}

AVX2 void
ic_nh_avx2 (const uint32_t key[IC_NH_KEY_WORDS], const uint8_t *msg,
            size_t len, uint8_t hash[IC_NH_HASH_BYTES])
{
  const uint8_t *k = (const uint8_t *) key;
  __m256i sum0 = _mm256_setzero_si256 ();
  __m256i sum1 = _mm256_setzero_si256 ();
  __m256i sum2 = _mm256_setzero_si256 ();
  __m256i sum3 = _mm256_setzero_si256 ();
  __m128i tail0 = _mm_setzero_si128 ();
  __m128i tail1 = _mm_setzero_si128 ();
  __m128i tail2 = _mm_setzero_si128 ();
  __m128i tail3 = _mm_setzero_si128 ();

  for (; len >= 2 * IC_NH_MESSAGE_UNIT; len -= 2 * IC_NH_MESSAGE_UNIT) {
    /* (m0, m2, m1, m3) in each unit, as the key. */
    __m256i m = _mm256_shuffle_epi32 (_mm256_loadu_si256 ((const __m256i *)
                                                          msg), 0xd8);

    sum0 = _mm256_add_epi64 (sum0, nh_pass (m, k + 0));
    sum1 = _mm256_add_epi64 (sum1, nh_pass (m, k + 16));
    sum2 = _mm256_add_epi64 (sum2, nh_pass (m, k + 32));
    sum3 = _mm256_add_epi64 (sum3, nh_pass (m, k + 48));
    msg += 2 * IC_NH_MESSAGE_UNIT;
    k += 2 * IC_NH_MESSAGE_UNIT;
  }
  if (len >= IC_NH_MESSAGE_UNIT) {
    /* An odd number of units: the last one alone. */
    __m128i m = _mm_shuffle_epi32 (_mm_loadu_si128 ((const __m128i *) msg),
                                   0xd8);

    tail0 = nh_pass_128 (m, k + 0);
    tail1 = nh_pass_128 (m, k + 16);
    tail2 = nh_pass_128 (m, k + 32);
    tail3 = nh_pass_128 (m, k + 48);
  }

  put_le64 (hash + 0, hsum (sum0, tail0));
  put_le64 (hash + 8, hsum (sum1, tail1));
  put_le64 (hash + 16, hsum (sum2, tail2));
  put_le64 (hash + 24, hsum (sum3, tail3));
  /* Leave no key words in the vector registers. */
  _mm256_zeroall ();
}

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

#include <assert.h>
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

/* The rounds, in assembly.  Each quarter round rotates by 12 and 7 with
 * two shifts and an addition through a scratch register, so the sixteen
 * state vectors and the scratch need seventeen registers; x86-64 has
 * sixteen.  Left to itself, GCC spilled and reloaded about fifteen vectors
 * per double round.  On CPUs that execute 256-bit operations as two halves
 * (AMD Zen 1), stores share the one pipe that does every vector shift,
 * which is already ChaCha's bottleneck: the rounds of eight blocks took
 * 120 cycles per double round there, against 64 for the shifts alone.
 * Here x15 alone lives in memory: in each round the quarter round whose d
 * it is works on it in the scratch register and stores it back before the
 * scratch is needed for the rotations, four stores per double round.  With
 * the four quarter rounds of a round interleaved, that is 91 cycles.
 *
 * x0 ... x14 are in ymm0 ... ymm14 on exit (the register variables below
 * bind them there), x15 is in memory; ymm15 is the scratch.  AT&T operand
 * order: "vpaddd b, a, a" is a += b.  The two halves of a rotation have no
 * bits in common, so adding them is ORing them; on Zen 1 an OR may be
 * issued to the shift pipe and an addition may not (2 % faster).
 */
#define ADD(x, y)   "vpaddd %%ymm" #y ", %%ymm" #x ", %%ymm" #x "\n\t"
#define XOR(x, y)   "vpxor %%ymm" #y ", %%ymm" #x ", %%ymm" #x "\n\t"
#define SHUF(x, m)  "vpshufb %[" #m "], %%ymm" #x ", %%ymm" #x "\n\t"
#define ROTL(x, n, t)                                                   \
  "vpslld $" #n ", %%ymm" #x ", %%ymm" #t "\n\t"                       \
  "vpsrld $(32 - " #n "), %%ymm" #x ", %%ymm" #x "\n\t"                \
  "vpaddd %%ymm" #t ", %%ymm" #x ", %%ymm" #x "\n\t"

/* The four quarter rounds of a column or diagonal round, interleaved
 * step by step so that the scheduler always has four independent chains
 * to pick from.  The fourth has its d in memory (x15 in both kinds of
 * rounds): it is brought into the scratch register for the XOR, rotation
 * by a shuffle and addition, and stored back before the scratch is needed
 * for the rotations by 12 and 7.
 */
#define QR4(a0, b0, c0, d0, a1, b1, c1, d1, a2, b2, c2, d2, a3, b3, c3)   \
  ADD (a0, b0) ADD (a1, b1) ADD (a2, b2) ADD (a3, b3)                   \
  XOR (d0, a0) XOR (d1, a1) XOR (d2, a2) XOR_X15 (a3)                   \
  SHUF (d0, rot16) SHUF (d1, rot16) SHUF (d2, rot16) SHUF (15, rot16)   \
  ADD (c0, d0) ADD (c1, d1) ADD (c2, d2) ADD (c3, 15) STORE_X15         \
  XOR (b0, c0) XOR (b1, c1) XOR (b2, c2) XOR (b3, c3)                   \
  ROTL (b0, 12, 15) ROTL (b1, 12, 15) ROTL (b2, 12, 15) ROTL (b3, 12, 15) \
  ADD (a0, b0) ADD (a1, b1) ADD (a2, b2) ADD (a3, b3)                   \
  XOR (d0, a0) XOR (d1, a1) XOR (d2, a2) XOR_X15 (a3)                   \
  SHUF (d0, rot8) SHUF (d1, rot8) SHUF (d2, rot8) SHUF (15, rot8)       \
  ADD (c0, d0) ADD (c1, d1) ADD (c2, d2) ADD (c3, 15) STORE_X15         \
  XOR (b0, c0) XOR (b1, c1) XOR (b2, c2) XOR (b3, c3)                   \
  ROTL (b0, 7, 15) ROTL (b1, 7, 15) ROTL (b2, 7, 15) ROTL (b3, 7, 15)

/* ymm15 = x15 ^ a; x15 = ymm15. */
#define XOR_X15(a)  "vpxor %[x15], %%ymm" #a ", %%ymm15\n\t"
#define STORE_X15   "vmovdqu %%ymm15, %[x15]\n\t"

/* Rotations by 16 and 8 as byte shuffles, within each 32-bit word. */
static const uint8_t rot16_mask[32] __attribute__ ((aligned (32))) = {
  2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
  2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
};
static const uint8_t rot8_mask[32] __attribute__ ((aligned (32))) = {
  3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14,
  3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14,
};

/* A quarter round on four columns at once, one row per vector. */
#define ROW_ROUND(a, b, c, d, rot16, rot8)                              \
  do {                                                                  \
    a = _mm_add_epi32 (a, b);                                           \
    d = _mm_shuffle_epi8 (_mm_xor_si128 (d, a), rot16);                 \
    c = _mm_add_epi32 (c, d);                                           \
    b = _mm_xor_si128 (b, c);                                           \
    b = _mm_add_epi32 (_mm_slli_epi32 (b, 12), _mm_srli_epi32 (b, 20)); \
    a = _mm_add_epi32 (a, b);                                           \
    d = _mm_shuffle_epi8 (_mm_xor_si128 (d, a), rot8);                  \
    c = _mm_add_epi32 (c, d);                                           \
    b = _mm_xor_si128 (b, c);                                           \
    b = _mm_add_epi32 (_mm_slli_epi32 (b, 7), _mm_srli_epi32 (b, 25));  \
  } while (0)

/* Transpose eight vectors of eight words (vector i = word i of blocks 0-7)
 * in place into half-blocks: afterwards v0 ... v7 hold the eight words of
 * blocks 0 ... 7 for the half of the block these words belong to.  Written
 * out on named variables so that everything stays in registers: with
 * arrays and loops, GCC at -O2 kept the intermediate rows on the stack,
 * and reloading them cost more than a third of ChaCha12's time.  The lanes
 * are joined with inserts and an extract rather than vperm2i128, which
 * some CPUs without 256-bit units (AMD Zen 1) split into eight micro-ops.
 */
#define TRANSPOSE8(v0, v1, v2, v3, v4, v5, v6, v7)                          \
  do {                                                                      \
    /* Pairs of words: blocks 0,1 | 4,5 and 2,3 | 6,7. */                   \
    __m256i t0_ = _mm256_unpacklo_epi32 (v0, v1);                           \
    __m256i t1_ = _mm256_unpackhi_epi32 (v0, v1);                           \
    __m256i t2_ = _mm256_unpacklo_epi32 (v2, v3);                           \
    __m256i t3_ = _mm256_unpackhi_epi32 (v2, v3);                           \
    __m256i t4_ = _mm256_unpacklo_epi32 (v4, v5);                           \
    __m256i t5_ = _mm256_unpackhi_epi32 (v4, v5);                           \
    __m256i t6_ = _mm256_unpacklo_epi32 (v6, v7);                           \
    __m256i t7_ = _mm256_unpackhi_epi32 (v6, v7);                           \
    /* Quads: words 0-3 (u0-u3) and 4-7 (u4-u7) of blocks (0|4), (1|5), \
     * (2|6), (3|7).                                                        \
     */                                                                     \
    __m256i u0_ = _mm256_unpacklo_epi64 (t0_, t2_);                         \
    __m256i u1_ = _mm256_unpackhi_epi64 (t0_, t2_);                         \
    __m256i u2_ = _mm256_unpacklo_epi64 (t1_, t3_);                         \
    __m256i u3_ = _mm256_unpackhi_epi64 (t1_, t3_);                         \
    __m256i u4_ = _mm256_unpacklo_epi64 (t4_, t6_);                         \
    __m256i u5_ = _mm256_unpackhi_epi64 (t4_, t6_);                         \
    __m256i u6_ = _mm256_unpacklo_epi64 (t5_, t7_);                         \
    __m256i u7_ = _mm256_unpackhi_epi64 (t5_, t7_);                         \
    /* Block b (b < 4) from the low lanes, b + 4 from the high ones. */     \
    v0 = JOIN_LO (u0_, u4_);                                                \
    v4 = JOIN_HI (u0_, u4_);                                                \
    v1 = JOIN_LO (u1_, u5_);                                                \
    v5 = JOIN_HI (u1_, u5_);                                                \
    v2 = JOIN_LO (u2_, u6_);                                                \
    v6 = JOIN_HI (u2_, u6_);                                                \
    v3 = JOIN_LO (u3_, u7_);                                                \
    v7 = JOIN_HI (u3_, u7_);                                                \
  } while (0)

/* The low 128-bit lanes of @a and @b, and their high lanes. */
#define JOIN_LO(a, b) \
  _mm256_inserti128_si256 ((a), _mm256_castsi256_si128 (b), 1)
#define JOIN_HI(a, b) \
  _mm256_inserti128_si256 ((b), _mm256_extracti128_si256 ((a), 1), 0)

/* dst[off .. off + 32) = src[off .. off + 32) XOR @ks. */
static inline AVX2 void
xor32 (uint8_t *dst, const uint8_t *src, size_t off, __m256i ks)
{
  __m256i in = _mm256_loadu_si256 ((const __m256i *) (src + off));

  _mm256_storeu_si256 ((__m256i *) (dst + off), _mm256_xor_si256 (in, ks));
}

/* XOR eight blocks of keystream, starting at block counter state[12], from
 * @src into @dst.  Does not advance the counter.  The rounds keep x15 in
 * *@x15_home, which the caller wipes.
 */
static AVX2 void
chacha_8blocks (const uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                const uint8_t *src, int nrounds, __m256i *x15_home)
{
  static const uint32_t counters_v[8] __attribute__ ((aligned (32))) = {
    0, 1, 2, 3, 4, 5, 6, 7
  };
  const __m256i counters = _mm256_load_si256 ((const __m256i *) counters_v);
  register __m256i r0 __asm__ ("ymm0");
  register __m256i r1 __asm__ ("ymm1");
  register __m256i r2 __asm__ ("ymm2");
  register __m256i r3 __asm__ ("ymm3");
  register __m256i r4 __asm__ ("ymm4");
  register __m256i r5 __asm__ ("ymm5");
  register __m256i r6 __asm__ ("ymm6");
  register __m256i r7 __asm__ ("ymm7");
  register __m256i r8 __asm__ ("ymm8");
  register __m256i r9 __asm__ ("ymm9");
  register __m256i r10 __asm__ ("ymm10");
  register __m256i r11 __asm__ ("ymm11");
  register __m256i r12 __asm__ ("ymm12");
  register __m256i r13 __asm__ ("ymm13");
  register __m256i r14 __asm__ ("ymm14");
  long double_rounds = nrounds / 2;

  assert (nrounds >= 0 && nrounds % 2 == 0);
  /* Operands count twice when both read and written, and asm takes at
   * most 30: the state is broadcast in here rather than passed in.
   */
  __asm__ ("vpbroadcastd 0(%[state]), %%ymm0\n\t"
           "vpbroadcastd 4(%[state]), %%ymm1\n\t"
           "vpbroadcastd 8(%[state]), %%ymm2\n\t"
           "vpbroadcastd 12(%[state]), %%ymm3\n\t"
           "vpbroadcastd 16(%[state]), %%ymm4\n\t"
           "vpbroadcastd 20(%[state]), %%ymm5\n\t"
           "vpbroadcastd 24(%[state]), %%ymm6\n\t"
           "vpbroadcastd 28(%[state]), %%ymm7\n\t"
           "vpbroadcastd 32(%[state]), %%ymm8\n\t"
           "vpbroadcastd 36(%[state]), %%ymm9\n\t"
           "vpbroadcastd 40(%[state]), %%ymm10\n\t"
           "vpbroadcastd 44(%[state]), %%ymm11\n\t"
           "vpbroadcastd 48(%[state]), %%ymm12\n\t"
           "vpaddd %[counters], %%ymm12, %%ymm12\n\t"
           "vpbroadcastd 52(%[state]), %%ymm13\n\t"
           "vpbroadcastd 56(%[state]), %%ymm14\n\t"
           "vpbroadcastd 60(%[state]), %%ymm15\n\t"
           "vmovdqu %%ymm15, %[x15]\n\t"
           /* No rounds at all (not done by Adiantum): no loop. */
           "test %[n], %[n]\n\t"
           "jz 2f\n\t"
           "1:\n\t"
           QR4 (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11)
           QR4 (1, 6, 11, 12, 2, 7, 8, 13, 3, 4, 9, 14, 0, 5, 10)
           "dec %[n]\n\t"
           "jnz 1b\n\t"
           "2:"
           : "=x" (r0), "=x" (r1), "=x" (r2), "=x" (r3), "=x" (r4),
             "=x" (r5), "=x" (r6), "=x" (r7), "=x" (r8), "=x" (r9),
             "=x" (r10), "=x" (r11), "=x" (r12), "=x" (r13), "=x" (r14),
             [x15] "=m" (*x15_home),
             [n] "+r" (double_rounds)
           : [state] "r" (state), "m" (*(const uint32_t (*)[16]) state),
             [counters] "m" (counters),
             [rot16] "m" (*(const __m256i *) rot16_mask),
             [rot8] "m" (*(const __m256i *) rot8_mask)
           : "xmm15", "cc");

  /* Out of the register variables at once: they are bound to their
   * registers only as asm operands, and a call (the sanitizers insert
   * some) would clobber them.
   */
  __m256i x0 = r0;
  __m256i x1 = r1;
  __m256i x2 = r2;
  __m256i x3 = r3;
  __m256i x4 = r4;
  __m256i x5 = r5;
  __m256i x6 = r6;
  __m256i x7 = r7;
  __m256i x8 = r8;
  __m256i x9 = r9;
  __m256i x10 = r10;
  __m256i x11 = r11;
  __m256i x12 = r12;
  __m256i x13 = r13;
  __m256i x14 = r14;

  /* The feed-forward addition re-broadcasts the state words from memory
   * instead of keeping sixteen more vectors alive through the rounds.
   * Words 0-7 make the first half of each block, 8-15 the second.
   */
  x0 = _mm256_add_epi32 (x0, _mm256_set1_epi32 ((int) state[0]));
  x1 = _mm256_add_epi32 (x1, _mm256_set1_epi32 ((int) state[1]));
  x2 = _mm256_add_epi32 (x2, _mm256_set1_epi32 ((int) state[2]));
  x3 = _mm256_add_epi32 (x3, _mm256_set1_epi32 ((int) state[3]));
  x4 = _mm256_add_epi32 (x4, _mm256_set1_epi32 ((int) state[4]));
  x5 = _mm256_add_epi32 (x5, _mm256_set1_epi32 ((int) state[5]));
  x6 = _mm256_add_epi32 (x6, _mm256_set1_epi32 ((int) state[6]));
  x7 = _mm256_add_epi32 (x7, _mm256_set1_epi32 ((int) state[7]));
  TRANSPOSE8 (x0, x1, x2, x3, x4, x5, x6, x7);
  xor32 (dst, src, 0 * IC_CHACHA_BLOCK_SIZE, x0);
  xor32 (dst, src, 1 * IC_CHACHA_BLOCK_SIZE, x1);
  xor32 (dst, src, 2 * IC_CHACHA_BLOCK_SIZE, x2);
  xor32 (dst, src, 3 * IC_CHACHA_BLOCK_SIZE, x3);
  xor32 (dst, src, 4 * IC_CHACHA_BLOCK_SIZE, x4);
  xor32 (dst, src, 5 * IC_CHACHA_BLOCK_SIZE, x5);
  xor32 (dst, src, 6 * IC_CHACHA_BLOCK_SIZE, x6);
  xor32 (dst, src, 7 * IC_CHACHA_BLOCK_SIZE, x7);

  x8 = _mm256_add_epi32 (x8, _mm256_set1_epi32 ((int) state[8]));
  x9 = _mm256_add_epi32 (x9, _mm256_set1_epi32 ((int) state[9]));
  x10 = _mm256_add_epi32 (x10, _mm256_set1_epi32 ((int) state[10]));
  x11 = _mm256_add_epi32 (x11, _mm256_set1_epi32 ((int) state[11]));
  x12 = _mm256_add_epi32 (x12, counters);
  x12 = _mm256_add_epi32 (x12, _mm256_set1_epi32 ((int) state[12]));
  x13 = _mm256_add_epi32 (x13, _mm256_set1_epi32 ((int) state[13]));
  x14 = _mm256_add_epi32 (x14, _mm256_set1_epi32 ((int) state[14]));
  __m256i x15 = _mm256_add_epi32 (*x15_home,
                                  _mm256_set1_epi32 ((int) state[15]));
  TRANSPOSE8 (x8, x9, x10, x11, x12, x13, x14, x15);
  xor32 (dst, src, 0 * IC_CHACHA_BLOCK_SIZE + 32, x8);
  xor32 (dst, src, 1 * IC_CHACHA_BLOCK_SIZE + 32, x9);
  xor32 (dst, src, 2 * IC_CHACHA_BLOCK_SIZE + 32, x10);
  xor32 (dst, src, 3 * IC_CHACHA_BLOCK_SIZE + 32, x11);
  xor32 (dst, src, 4 * IC_CHACHA_BLOCK_SIZE + 32, x12);
  xor32 (dst, src, 5 * IC_CHACHA_BLOCK_SIZE + 32, x13);
  xor32 (dst, src, 6 * IC_CHACHA_BLOCK_SIZE + 32, x14);
  xor32 (dst, src, 7 * IC_CHACHA_BLOCK_SIZE + 32, x15);
}

AVX2 void
ic_chacha_crypt_avx2 (uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                      const uint8_t *src, size_t len, int nrounds)
{
  uint8_t stream[BATCH_BYTES];
  __m256i x15_home;             /* the rounds keep x15 here */
  size_t i;

  for (; len >= BATCH_BYTES; len -= BATCH_BYTES) {
    chacha_8blocks (state, dst, src, nrounds, &x15_home);
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
    chacha_8blocks (state, stream, stream, nrounds, &x15_home);
    for (i = 0; i < len; i++)
      dst[i] = src[i] ^ stream[i];
    state[12] += (len + IC_CHACHA_BLOCK_SIZE - 1) / IC_CHACHA_BLOCK_SIZE;
    ic_memzero_explicit (stream, sizeof stream);
  }
  /* Leave no keystream or key words in memory we know of or in the vector
   * registers.  XXX Spills that GCC may make inside chacha_8blocks, after
   * the rounds, are not wiped: C gives no handle on them.
   */
  ic_memzero_explicit (&x15_home, sizeof x15_home);
  _mm256_zeroall ();
}

/* HChaCha on one block, the rows of the state in four vectors: a column
 * round works on whole rows, and rotating rows b, c and d by one, two and
 * three words lines the diagonals up as columns.  About half the time of
 * the portable code, which runs short of general registers; Adiantum pays
 * it once per data unit.
 */
AVX2 void
ic_hchacha_block_avx2 (const uint32_t state[IC_CHACHA_STATE_WORDS],
                       uint32_t out[IC_HCHACHA_OUT_WORDS], int nrounds)
{
  const __m128i rot16 = _mm_load_si128 ((const __m128i *) rot16_mask);
  const __m128i rot8 = _mm_load_si128 ((const __m128i *) rot8_mask);
  __m128i a = _mm_loadu_si128 ((const __m128i *) &state[0]);
  __m128i b = _mm_loadu_si128 ((const __m128i *) &state[4]);
  __m128i c = _mm_loadu_si128 ((const __m128i *) &state[8]);
  __m128i d = _mm_loadu_si128 ((const __m128i *) &state[12]);
  int i;

  for (i = 0; i < nrounds; i += 2) {
    ROW_ROUND (a, b, c, d, rot16, rot8);
    b = _mm_shuffle_epi32 (b, 0x39);    /* words 1 2 3 0 */
    c = _mm_shuffle_epi32 (c, 0x4e);    /* words 2 3 0 1 */
    d = _mm_shuffle_epi32 (d, 0x93);    /* words 3 0 1 2 */
    ROW_ROUND (a, b, c, d, rot16, rot8);
    b = _mm_shuffle_epi32 (b, 0x93);
    c = _mm_shuffle_epi32 (c, 0x4e);
    d = _mm_shuffle_epi32 (d, 0x39);
  }
  _mm_storeu_si128 ((__m128i *) &out[0], a);
  _mm_storeu_si128 ((__m128i *) &out[4], d);
  _mm256_zeroall ();
}

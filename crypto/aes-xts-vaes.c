/* crypto/aes-xts-vaes.c - AES-256-XTS with VAES, VPCLMULQDQ and AVX-512,
 * see aes-xts.h.  Written from FIPS 197 (AES), IEEE Std 1619-2018 (XTS)
 * and Intel's AES-NI white paper (the key schedule with AESKEYGENASSIST,
 * the equivalent inverse cipher with AESIMC).
 *
 * A 512-bit vector holds four consecutive blocks and their four tweaks.
 * Sixteen blocks (four vectors) go through the 14 rounds side by side, so
 * that the AES units always have independent work; the round keys stay in
 * registers, broadcast to the four lanes.  The first and last XORs with
 * the tweak fold into the first round-key XOR (VPTERNLOGQ) and into
 * AESENCLAST's round-key operand.
 *
 * Tweaks never leave the registers.  Within a vector, lane i holds
 * T * x^i; the next group of sixteen blocks needs each lane times x^16,
 * which is a 16-bit left shift of each 128-bit lane (VPSLLDQ by two bytes)
 * plus the 16 bits shifted out, carry-less multiplied by x^7 + x^2 + x + 1
 * (0x87) with VPCLMULQDQ: a product of 23 bits at most, so no further
 * reduction.  The first tweaks of up to sixteen data units are encrypted
 * with K2 together, four vectors at a time, like the data.
 *
 * Nothing here indexes memory with key or data bytes: AES-NI is constant
 * time.  The stack copy of the first tweaks is wiped; copies that the
 * compiler makes of registers are not (C gives no way to reach them).
 */
#include <config.h>

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#include "aes-xts.h"
#include "secmem.h"

#define FEATURES "avx512f,avx512bw,vaes,vpclmulqdq,aes,sse4.1"
#define TARGET __attribute__ ((target (FEATURES)))
#define INLINE_TARGET \
  __attribute__ ((always_inline, target (FEATURES))) inline

#define NR IC_AES_256_ROUNDS
#define VEC_BLOCKS 4                    /* blocks per 512-bit vector */
#define GROUP_VECS 4                    /* vectors en/decrypted together */
#define GROUP_BLOCKS (VEC_BLOCKS * GROUP_VECS)
#define BATCH_UNITS GROUP_BLOCKS        /* first tweaks per AES pass */

#define XOR3 0x96                       /* VPTERNLOGQ: a ^ b ^ c */

/* CPUID leaf 7, ECX: VAES and VPCLMULQDQ, which clang's
 * __builtin_cpu_supports does not know.  AVX-512 itself is checked there,
 * with the OS's support for its registers (XCR0).
 */
#define CPUID7_ECX_VAES         (1u << 9)
#define CPUID7_ECX_VPCLMULQDQ   (1u << 10)

bool
ic_aes_xts_vaes_avx512_usable (void)
{
  unsigned int eax;
  unsigned int ebx;
  unsigned int ecx;
  unsigned int edx;
  unsigned int want = CPUID7_ECX_VAES | CPUID7_ECX_VPCLMULQDQ;

  __builtin_cpu_init ();
  if (!__builtin_cpu_supports ("aes") ||
      !__builtin_cpu_supports ("avx512f") ||
      !__builtin_cpu_supports ("avx512bw"))
    return false;
  if (!__get_cpuid_count (7, 0, &eax, &ebx, &ecx, &edx))
    return false;
  return (ecx & want) == want;
}

/* The 15 round keys, each in all four lanes. */
struct round_keys {
  __m512i k[NR + 1];
};

static INLINE_TARGET void
load_round_keys (struct round_keys *rk, const struct ic_aes256_key *key)
{
  int i;

  #pragma GCC unroll 16
  for (i = 0; i <= NR; i++)
    rk->k[i] = _mm512_broadcast_i32x4 (
      _mm_loadu_si128 ((const __m128i *) key->rk[i]));
}

/* Each 128-bit lane of @v times x^GROUP_BLOCKS in GF(2^128), see the
 * top: a shift by whole bytes.
 */
static INLINE_TARGET __m512i
mul_x_group (__m512i v)
{
  const __m512i poly = _mm512_set1_epi64 (0x87);
  __m512i out = _mm512_bsrli_epi128 (v, 16 - GROUP_BLOCKS / 8);

  return _mm512_xor_si512 (_mm512_bslli_epi128 (v, GROUP_BLOCKS / 8),
                           _mm512_clmulepi64_epi128 (out, poly, 0x00));
}

/* Each 128-bit lane of @v shifted left by the bit counts in @count (the
 * same in both 64-bit halves of a lane, 0 to 8) and reduced: lane i times
 * x^count_i.  @rcount is 64 - @count.
 */
static INLINE_TARGET __m512i
mul_xn (__m512i v, __m512i count, __m512i rcount)
{
  const __m512i poly = _mm512_set1_epi64 (0x87);
  /* The bits each 64-bit half shifts out, moved to the other half: the
   * low half's go up into the high half, the high half's (past x^127) go
   * round into the low half, times 0x87.
   */
  __m512i out = _mm512_shuffle_epi32 (_mm512_srlv_epi64 (v, rcount),
                                      _MM_PERM_BADC);

  return _mm512_ternarylogic_epi64 (_mm512_sllv_epi64 (v, count),
                                    _mm512_clmulepi64_epi128 (out, poly,
                                                              0x00),
                                    _mm512_maskz_mov_epi64 (0xaa, out),
                                    XOR3);
}

/* The tweaks of the first sixteen blocks of a data unit whose first tweak
 * is @t0: t[j] lane i = T_0 * x^(4j + i).
 */
static INLINE_TARGET void
first_tweaks (__m512i t[GROUP_VECS], const uint8_t *t0)
{
  const __m512i lane = _mm512_set_epi64 (3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i rlane = _mm512_set_epi64 (61, 61, 62, 62, 63, 63, 64, 64);
  const __m512i four = _mm512_set1_epi64 (4);
  const __m512i rfour = _mm512_set1_epi64 (60);
  int j;

  t[0] = mul_xn (_mm512_broadcast_i32x4 (
                   _mm_loadu_si128 ((const __m128i *) t0)), lane, rlane);
  #pragma GCC unroll 16
  for (j = 1; j < GROUP_VECS; j++)
    t[j] = mul_xn (t[j - 1], four, rfour);
}

/* @n vectors (a constant once inlined) through AES side by side, each
 * XORed with its tweak before and after.
 */
static INLINE_TARGET void
crypt_vecs (const struct round_keys *rk, __m512i *x, const __m512i *t, int n,
            bool enc)
{
  int r;
  int j;

  #pragma GCC unroll 16
  for (j = 0; j < n; j++)
    x[j] = _mm512_ternarylogic_epi64 (x[j], t[j], rk->k[0], XOR3);
  #pragma GCC unroll 16
  for (r = 1; r < NR; r++) {
    #pragma GCC unroll 16
    for (j = 0; j < n; j++)
      x[j] = enc ? _mm512_aesenc_epi128 (x[j], rk->k[r])
                 : _mm512_aesdec_epi128 (x[j], rk->k[r]);
  }
  #pragma GCC unroll 16
  for (j = 0; j < n; j++) {
    __m512i last = _mm512_xor_si512 (rk->k[NR], t[j]);

    x[j] = enc ? _mm512_aesenclast_epi128 (x[j], last)
               : _mm512_aesdeclast_epi128 (x[j], last);
  }
}

/* One data unit of @nblocks blocks whose first tweak is @t0. */
static INLINE_TARGET void
crypt_unit (const struct round_keys *rk, uint8_t *dst, const uint8_t *src,
            size_t nblocks, const uint8_t *t0, bool enc)
{
  __m512i t[GROUP_VECS];
  __m512i x[GROUP_VECS];
  size_t j;

  first_tweaks (t, t0);
  for (; nblocks >= GROUP_BLOCKS; nblocks -= GROUP_BLOCKS) {
    #pragma GCC unroll 16
    for (j = 0; j < GROUP_VECS; j++)
      x[j] = _mm512_loadu_si512 (src + 64 * j);
    crypt_vecs (rk, x, t, GROUP_VECS, enc);
    #pragma GCC unroll 16
    for (j = 0; j < GROUP_VECS; j++) {
      _mm512_storeu_si512 (dst + 64 * j, x[j]);
      t[j] = mul_x_group (t[j]);
    }
    src += 64 * GROUP_VECS;
    dst += 64 * GROUP_VECS;
  }
  /* Fewer than sixteen blocks left: a vector at a time, the last one
   * masked to the blocks there are.
   */
  for (j = 0; nblocks > 0; j++) {
    size_t n = nblocks < VEC_BLOCKS ? nblocks : VEC_BLOCKS;
    __mmask8 m = (__mmask8) ((1u << (2 * n)) - 1);

    x[0] = _mm512_maskz_loadu_epi64 (m, src);
    crypt_vecs (rk, x, &t[j], 1, enc);
    _mm512_mask_storeu_epi64 (dst, m, x[0]);
    src += 16 * n;
    dst += 16 * n;
    nblocks -= n;
  }
}

/* First tweaks T_0 = AES_K2(IV) of @n (up to BATCH_UNITS) data units whose
 * IVs count up from *@lo, *@hi, into @out; advance the IV past them.
 */
static INLINE_TARGET void
encrypt_ivs (const struct round_keys *tk, uint8_t out[][IC_AES_BLOCK_SIZE],
             size_t n, uint64_t *lo, uint64_t *hi)
{
  const __m512i zero = _mm512_setzero_si512 ();
  __m512i x[GROUP_VECS];
  size_t i;
  int j;

  #pragma GCC unroll 16
  for (i = 0; i < BATCH_UNITS; i++) {
    /* Units past @n get IVs too, whose tweaks nobody reads. */
    memcpy (out[i], lo, 8);
    memcpy (out[i] + 8, hi, 8);
    if (i < n)
      *hi += ++*lo == 0;
  }
  #pragma GCC unroll 16
  for (j = 0; j < GROUP_VECS; j++)
    x[j] = _mm512_loadu_si512 (out[VEC_BLOCKS * j]);
  crypt_vecs (tk, x, (const __m512i[GROUP_VECS]) { zero }, GROUP_VECS, true);
  #pragma GCC unroll 16
  for (j = 0; j < GROUP_VECS; j++)
    _mm512_storeu_si512 (out[VEC_BLOCKS * j], x[j]);
}

static INLINE_TARGET void
xts_crypt (const struct ic_aes256_key *data,
           const struct ic_aes256_key *tweak, uint8_t *dst,
           const uint8_t *src, size_t len, unsigned int du,
           const uint8_t iv[IC_AES_XTS_IV_SIZE], bool enc)
{
  uint8_t first[BATCH_UNITS][IC_AES_BLOCK_SIZE];
  struct round_keys rk;
  struct round_keys tk;
  size_t nunits = len / du;
  size_t unit;
  size_t n;
  size_t i;
  uint64_t lo;
  uint64_t hi;

  memcpy (&lo, iv, 8);
  memcpy (&hi, iv + 8, 8);
  load_round_keys (&rk, data);
  load_round_keys (&tk, tweak);
  for (unit = 0; unit < nunits; unit += n) {
    n = nunits - unit < BATCH_UNITS ? nunits - unit : BATCH_UNITS;
    encrypt_ivs (&tk, first, n, &lo, &hi);
    for (i = 0; i < n; i++) {
      crypt_unit (&rk, dst, src, du / IC_AES_BLOCK_SIZE, first[i], enc);
      src += du;
      dst += du;
    }
  }
  ic_memzero_explicit (first, sizeof first);
  ic_memzero_explicit (&rk, sizeof rk);
  ic_memzero_explicit (&tk, sizeof tk);
}

/* Two copies, so that the direction is a constant inside each. */
static void TARGET
xts_encrypt (const struct ic_aes256_key *data,
             const struct ic_aes256_key *tweak, uint8_t *dst,
             const uint8_t *src, size_t len, unsigned int du,
             const uint8_t iv[IC_AES_XTS_IV_SIZE])
{
  xts_crypt (data, tweak, dst, src, len, du, iv, true);
}

static void TARGET
xts_decrypt (const struct ic_aes256_key *data,
             const struct ic_aes256_key *tweak, uint8_t *dst,
             const uint8_t *src, size_t len, unsigned int du,
             const uint8_t iv[IC_AES_XTS_IV_SIZE])
{
  xts_crypt (data, tweak, dst, src, len, du, iv, false);
}

void
ic_aes_xts_crypt_vaes_avx512 (const struct ic_aes256_key *data,
                              const struct ic_aes256_key *tweak,
                              uint8_t *dst, const uint8_t *src, size_t len,
                              unsigned int du,
                              const uint8_t iv[IC_AES_XTS_IV_SIZE], bool enc)
{
  if (enc)
    xts_encrypt (data, tweak, dst, src, len, du, iv);
  else
    xts_decrypt (data, tweak, dst, src, len, du, iv);
}

/* crypto/aes-xts-aesni.c - AES-256-XTS with AES-NI on 128-bit vectors,
 * see aes-xts.h, and the AES-NI key schedule that the VAES code shares.
 * Written from FIPS 197 (AES), IEEE Std 1619-2018 (XTS) and Intel's
 * AES-NI white paper (the key schedule with AESKEYGENASSIST, the
 * equivalent inverse cipher with AESIMC).
 *
 * For CPUs with AES-NI but no VAES.  AESENC has a latency of four cycles
 * and CPUs of this kind issue two per cycle, so eight blocks go through
 * the 14 rounds side by side.  Their tweaks are made one from the other
 * (times x: a doubling of both 64-bit halves plus the two carries) in a
 * chain that is independent of the rounds, so that it overlaps them, and
 * in general-purpose registers, off the vector pipes (crypt_group()).
 *
 * On AMD Zen 1 this runs 1.2 x libgcrypt 1.10's AES-NI XTS at 4096-byte
 * data units, by the tweaks off the vector pipes, and 1.45 x at 512, by
 * the first tweak of each data unit too, T_0 = AES_K2(IV): libgcrypt,
 * called once per data unit, waits for it (14 dependent rounds) at the
 * start of every call, where here the first tweaks of eight data units
 * are encrypted together, like the data.
 *
 * Nothing here indexes memory with key or data bytes or branches on them:
 * AES-NI is constant time, and so is the tweak doubling.  The stack
 * copies of tweaks and of the key schedule are wiped; copies that the
 * compiler makes of registers are not (C gives no way to reach them).
 */
#include <config.h>

#include <immintrin.h>
#include <string.h>

#include "aes-xts.h"
#include "secmem.h"

#define FEATURES "aes,sse4.1,avx"
#define TARGET __attribute__ ((target (FEATURES)))
#define INLINE_TARGET \
  __attribute__ ((always_inline, target (FEATURES))) inline

#define NR IC_AES_256_ROUNDS
#define GROUP 8                         /* blocks en/decrypted together */

bool
ic_aes_xts_aesni_usable (void)
{
  __builtin_cpu_init ();
  return __builtin_cpu_supports ("aes") && __builtin_cpu_supports ("avx");
}

/* The AES-256 key schedule.  Every second round key is the previous one of
 * its parity XORed with its own running prefix XOR and with RotWord,
 * SubWord and Rcon of the last word of the one before (AESKEYGENASSIST,
 * word 3), or, for the odd ones, SubWord alone (word 2).
 */
static INLINE_TARGET __m128i
prefix_xor (__m128i k)
{
  k = _mm_xor_si128 (k, _mm_slli_si128 (k, 4));
  k = _mm_xor_si128 (k, _mm_slli_si128 (k, 4));
  return _mm_xor_si128 (k, _mm_slli_si128 (k, 4));
}

#define EXPAND_EVEN(i, rcon)                                            \
  rk[i] = _mm_xor_si128 (prefix_xor (rk[i - 2]),                        \
                         _mm_shuffle_epi32 (                            \
                           _mm_aeskeygenassist_si128 (rk[i - 1], rcon), \
                           0xff))
#define EXPAND_ODD(i)                                                   \
  rk[i] = _mm_xor_si128 (prefix_xor (rk[i - 2]),                        \
                         _mm_shuffle_epi32 (                            \
                           _mm_aeskeygenassist_si128 (rk[i - 1], 0),    \
                           0xaa))

void TARGET
ic_aes256_expand_key_aesni (struct ic_aes256_key *enc,
                            struct ic_aes256_key *dec,
                            const uint8_t key[IC_AES_256_KEY_SIZE])
{
  __m128i rk[NR + 1];
  int i;

  rk[0] = _mm_loadu_si128 ((const __m128i *) key);
  rk[1] = _mm_loadu_si128 ((const __m128i *) (key + 16));
  EXPAND_EVEN (2, 0x01);
  EXPAND_ODD (3);
  EXPAND_EVEN (4, 0x02);
  EXPAND_ODD (5);
  EXPAND_EVEN (6, 0x04);
  EXPAND_ODD (7);
  EXPAND_EVEN (8, 0x08);
  EXPAND_ODD (9);
  EXPAND_EVEN (10, 0x10);
  EXPAND_ODD (11);
  EXPAND_EVEN (12, 0x20);
  EXPAND_ODD (13);
  EXPAND_EVEN (14, 0x40);

  #pragma GCC unroll 16
  for (i = 0; i <= NR; i++)
    _mm_storeu_si128 ((__m128i *) enc->rk[i], rk[i]);
  /* The equivalent inverse cipher (FIPS 197 5.3.5): the round keys in
   * reverse order, InvMixColumns on all but the first and the last.
   */
  if (dec) {
    _mm_storeu_si128 ((__m128i *) dec->rk[0], rk[NR]);
    #pragma GCC unroll 16
    for (i = 1; i < NR; i++)
      _mm_storeu_si128 ((__m128i *) dec->rk[i],
                        _mm_aesimc_si128 (rk[NR - i]));
    _mm_storeu_si128 ((__m128i *) dec->rk[NR], rk[0]);
  }
  ic_memzero_explicit (rk, sizeof rk);
}

/* @t times x in GF(2^128), IEEE 1619's little-endian bit order: both
 * 64-bit halves doubled; bit 63 carried into bit 64, and bit 127 folded
 * back as x^7 + x^2 + x + 1 (0x87).  The carries are the sign bits of
 * dwords 1 and 3, spread by an arithmetic shift and moved into place.
 */
static INLINE_TARGET __m128i
mul_x (__m128i t)
{
  const __m128i poly = _mm_set_epi32 (0, 1, 0, 0x87);
  __m128i carry = _mm_shuffle_epi32 (_mm_srai_epi32 (t, 31), 0x13);

  return _mm_xor_si128 (_mm_add_epi64 (t, t), _mm_and_si128 (carry, poly));
}

/* @n blocks (a constant once inlined) through AES side by side, each
 * XORed with its tweak before and after; the round keys are read from
 * @rk as they are needed.  If @next is not NULL, the tweaks of the @n
 * blocks after these are made meanwhile, one per round, from t[@n - 1]
 * or, if @start is not NULL, from *@start (the first tweak of the next
 * data unit), so that their chain of dependent steps runs beside the
 * rounds.
 */
static INLINE_TARGET void
crypt_blocks (const struct ic_aes256_key *rk, __m128i *x, const __m128i *t,
              int n, bool enc, __m128i *next, const __m128i *start)
{
  __m128i k = _mm_loadu_si128 ((const __m128i *) rk->rk[0]);
  int r;
  int j;

  #pragma GCC unroll 16
  for (j = 0; j < n; j++)
    x[j] = _mm_xor_si128 (x[j], _mm_xor_si128 (t[j], k));
  #pragma GCC unroll 16
  for (r = 1; r < NR; r++) {
    k = _mm_loadu_si128 ((const __m128i *) rk->rk[r]);
    #pragma GCC unroll 16
    for (j = 0; j < n; j++)
      x[j] = enc ? _mm_aesenc_si128 (x[j], k) : _mm_aesdec_si128 (x[j], k);
    if (next && r <= n)
      next[r - 1] = r > 1 ? mul_x (next[r - 2])
                  : start ? *start : mul_x (t[n - 1]);
  }
  k = _mm_loadu_si128 ((const __m128i *) rk->rk[NR]);
  #pragma GCC unroll 16
  for (j = 0; j < n; j++) {
    __m128i last = _mm_xor_si128 (k, t[j]);

    x[j] = enc ? _mm_aesenclast_si128 (x[j], last)
               : _mm_aesdeclast_si128 (x[j], last);
  }
}

/* One data unit of @nblocks blocks whose first tweak is @t0. */
static INLINE_TARGET void
crypt_unit (const struct ic_aes256_key *rk, uint8_t *dst, const uint8_t *src,
            size_t nblocks, __m128i t0, bool enc)
{
  __m128i t[GROUP];
  __m128i nt[GROUP];
  __m128i x[GROUP];
  __m128i next;
  int j;

  t[0] = t0;
  #pragma GCC unroll 16
  for (j = 1; j < GROUP; j++)
    t[j] = mul_x (t[j - 1]);
  for (; nblocks >= GROUP; nblocks -= GROUP) {
    #pragma GCC unroll 16
    for (j = 0; j < GROUP; j++)
      x[j] = _mm_loadu_si128 ((const __m128i *) (src + 16 * j));
    crypt_blocks (rk, x, t, GROUP, enc, nt, NULL);
    #pragma GCC unroll 16
    for (j = 0; j < GROUP; j++) {
      _mm_storeu_si128 ((__m128i *) (dst + 16 * j), x[j]);
      t[j] = nt[j];
    }
    src += 16 * GROUP;
    dst += 16 * GROUP;
  }
  next = t[0];
  for (; nblocks > 0; nblocks--) {
    x[0] = _mm_loadu_si128 ((const __m128i *) src);
    crypt_blocks (rk, x, &next, 1, enc, NULL, NULL);
    _mm_storeu_si128 ((__m128i *) dst, x[0]);
    next = mul_x (next);
    src += 16;
    dst += 16;
  }
  ic_memzero_explicit (t, sizeof t);
  ic_memzero_explicit (nt, sizeof nt);
  ic_memzero_explicit (&next, sizeof next);
}

/* First tweaks T_0 = AES_K2(IV) of @n (up to GROUP) data units whose IVs
 * count up from *@lo, *@hi, into @out; advance the IV past them.
 */
static INLINE_TARGET void
encrypt_ivs (const struct ic_aes256_key *tk, __m128i out[GROUP], size_t n,
             uint64_t *lo, uint64_t *hi)
{
  const __m128i zero[GROUP] = { _mm_setzero_si128 () };
  size_t i;

  #pragma GCC unroll 16
  for (i = 0; i < GROUP; i++) {
    /* Units past @n get IVs too, whose tweaks nobody reads. */
    out[i] = _mm_set_epi64x ((long long) *hi, (long long) *lo);
    if (i < n)
      *hi += ++*lo == 0;
  }
  crypt_blocks (tk, out, zero, GROUP, true, NULL, NULL);
}

/* One group of eight blocks in assembly: GCC 12 spills the blocks, the
 * tweaks or the round key of crypt_blocks() once the loop around it grows
 * (a third slower).  Blocks in xmm0-7, the round key in xmm8, xmm9 for
 * the last round's key and tweak.  The tweaks of these blocks are read
 * from @t; those of the next eight are made into @nt, one per round, in
 * general-purpose registers (@lo, @hi: the last tweak made).  The integer
 * units are otherwise idle, where on Zen 1 the vector pipes that would do
 * it also do AESENC, two per cycle at most: with the chain in vector
 * registers the 120 AES instructions of a group took about 82 cycles, now
 * about 67 (bench/cipher at 4096-byte units: 3.6 -> 4.3 GiB/s).  Keeping
 * the tweaks XORed with the first and last round keys too, to save the
 * vector XORs left, was slower (3.9 GiB/s).
 */
#define X8(insn) \
  insn " %%xmm8, %%xmm0, %%xmm0\n\t" insn " %%xmm8, %%xmm1, %%xmm1\n\t" \
  insn " %%xmm8, %%xmm2, %%xmm2\n\t" insn " %%xmm8, %%xmm3, %%xmm3\n\t" \
  insn " %%xmm8, %%xmm4, %%xmm4\n\t" insn " %%xmm8, %%xmm5, %%xmm5\n\t" \
  insn " %%xmm8, %%xmm6, %%xmm6\n\t" insn " %%xmm8, %%xmm7, %%xmm7\n\t"
#define ROUND(insn, r) \
  "vmovdqu (16*" #r ")(%[rk]), %%xmm8\n\t" X8 (insn)
/* lo:hi times x (mul_x()): the top bit of hi folded back as 0x87. */
#define MUL_X \
  "mov %[hi], %[c]\n\t" \
  "sar $63, %[c]\n\t" \
  "mov %[lo], %[d]\n\t" \
  "shr $63, %[d]\n\t" \
  "add %[hi], %[hi]\n\t" \
  "or %[d], %[hi]\n\t" \
  "and $0x87, %[c]\n\t" \
  "add %[lo], %[lo]\n\t" \
  "xor %[c], %[lo]\n\t"
#define PUT_TWEAK(i) \
  "mov %[lo], (16*" #i ")(%[nt])\n\t" \
  "mov %[hi], (16*" #i "+8)(%[nt])\n\t"
#define NEXT_TWEAK(i) MUL_X PUT_TWEAK (i)
#define LOAD(i) \
  "vmovdqu (16*" #i ")(%[src]), %%xmm" #i "\n\t" \
  "vpxor (16*" #i ")(%[t]), %%xmm" #i ", %%xmm" #i "\n\t" \
  "vpxor %%xmm8, %%xmm" #i ", %%xmm" #i "\n\t"
#define STORE(insn, i) \
  "vpxor (16*" #i ")(%[t]), %%xmm8, %%xmm9\n\t" \
  insn " %%xmm9, %%xmm" #i ", %%xmm" #i "\n\t" \
  "vmovdqu %%xmm" #i ", (16*" #i ")(%[dst])\n\t"
#define GROUP_ASM(round, last, first) \
  "vmovdqu (%[rk]), %%xmm8\n\t" \
  LOAD (0) LOAD (1) LOAD (2) LOAD (3) LOAD (4) LOAD (5) LOAD (6) LOAD (7) \
  ROUND (round, 1) first \
  ROUND (round, 2) NEXT_TWEAK (1) \
  ROUND (round, 3) NEXT_TWEAK (2) \
  ROUND (round, 4) NEXT_TWEAK (3) \
  ROUND (round, 5) NEXT_TWEAK (4) \
  ROUND (round, 6) NEXT_TWEAK (5) \
  ROUND (round, 7) NEXT_TWEAK (6) \
  ROUND (round, 8) NEXT_TWEAK (7) \
  ROUND (round, 9) ROUND (round, 10) ROUND (round, 11) \
  ROUND (round, 12) ROUND (round, 13) \
  "vmovdqu (16*14)(%[rk]), %%xmm8\n\t" \
  STORE (last, 0) STORE (last, 1) STORE (last, 2) STORE (last, 3) \
  STORE (last, 4) STORE (last, 5) STORE (last, 6) STORE (last, 7)
#define GROUP_ASM_ARGS \
  : [lo] "+r" (*lo), [hi] "+r" (*hi), [c] "=&r" (c), [d] "=&r" (d) \
  : [rk] "r" (rk->rk), [src] "r" (src), [dst] "r" (dst), [t] "r" (t), \
    [nt] "r" (nt) \
  : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
    "xmm8", "xmm9", "cc", "memory"

/* If @start, *@lo:*@hi is the first tweak of the next group (a data
 * unit's first); else the next group's tweaks follow from it, the last
 * tweak of this group.  Either way it is the last of the next group's
 * after.
 */
static INLINE_TARGET void
crypt_group (const struct ic_aes256_key *rk, uint8_t *dst,
             const uint8_t *src, const __m128i *t, __m128i *nt,
             uint64_t *lo, uint64_t *hi, bool enc, bool start)
{
  uint64_t c;
  uint64_t d;

  if (enc && start)
    __asm__ volatile (GROUP_ASM ("vaesenc", "vaesenclast", PUT_TWEAK (0))
                      GROUP_ASM_ARGS);
  else if (enc)
    __asm__ volatile (GROUP_ASM ("vaesenc", "vaesenclast", NEXT_TWEAK (0))
                      GROUP_ASM_ARGS);
  else if (start)
    __asm__ volatile (GROUP_ASM ("vaesdec", "vaesdeclast", PUT_TWEAK (0))
                      GROUP_ASM_ARGS);
  else
    __asm__ volatile (GROUP_ASM ("vaesdec", "vaesdeclast", NEXT_TWEAK (0))
                      GROUP_ASM_ARGS);
}

/* @n data units of @du bytes, a whole number of groups each, whose first
 * tweaks are @first: one stream of groups, in which the tweaks of the
 * first group of a unit are made during the last group of the one before.
 */
static INLINE_TARGET void
crypt_units (const struct ic_aes256_key *rk, uint8_t *dst,
             const uint8_t *src, size_t n, unsigned int du,
             const __m128i *first, __m128i tw[2][GROUP], bool enc)
{
  const size_t groups = du / (IC_AES_BLOCK_SIZE * GROUP);
  __m128i *t = tw[0];
  __m128i *nt = tw[1];
  __m128i *swap;
  uint64_t lo;
  uint64_t hi;
  size_t unit;
  size_t g;
  int j;

  t[0] = first[0];
  for (j = 1; j < GROUP; j++)
    t[j] = mul_x (t[j - 1]);
  memcpy (&lo, &t[GROUP - 1], 8);
  memcpy (&hi, (char *) &t[GROUP - 1] + 8, 8);
  for (unit = 0; unit < n; unit++) {
    for (g = 1; g <= groups; g++) {
      if (g < groups)
        crypt_group (rk, dst, src, t, nt, &lo, &hi, enc, false);
      else {
        /* The next unit's first tweak (past the last unit, a tweak made
         * for nothing).
         */
        const __m128i *f = &first[unit + 1 < n ? unit + 1 : 0];

        memcpy (&lo, f, 8);
        memcpy (&hi, (const char *) f + 8, 8);
        crypt_group (rk, dst, src, t, nt, &lo, &hi, enc, true);
      }
      swap = t;
      t = nt;
      nt = swap;
      src += 16 * GROUP;
      dst += 16 * GROUP;
    }
  }
}

static INLINE_TARGET void
xts_crypt (const struct ic_aes256_key *data,
           const struct ic_aes256_key *tweak, uint8_t *dst,
           const uint8_t *src, size_t len, unsigned int du,
           const uint8_t iv[IC_AES_XTS_IV_SIZE], bool enc)
{
  __m128i first[GROUP];
  __m128i tw[2][GROUP];
  size_t nunits = len / du;
  size_t unit;
  size_t n;
  size_t i;
  uint64_t lo;
  uint64_t hi;

  memcpy (&lo, iv, 8);
  memcpy (&hi, iv + 8, 8);
  for (unit = 0; unit < nunits; unit += n) {
    n = nunits - unit < GROUP ? nunits - unit : GROUP;
    encrypt_ivs (tweak, first, n, &lo, &hi);
    if (du % (IC_AES_BLOCK_SIZE * GROUP) == 0) {
      crypt_units (data, dst, src, n, du, first, tw, enc);
      src += n * du;
      dst += n * du;
      continue;
    }
    for (i = 0; i < n; i++) {
      crypt_unit (data, dst, src, du / IC_AES_BLOCK_SIZE, first[i], enc);
      src += du;
      dst += du;
    }
  }
  ic_memzero_explicit (first, sizeof first);
  ic_memzero_explicit (tw, sizeof tw);
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
ic_aes_xts_crypt_aesni (const struct ic_aes256_key *data,
                        const struct ic_aes256_key *tweak, uint8_t *dst,
                        const uint8_t *src, size_t len, unsigned int du,
                        const uint8_t iv[IC_AES_XTS_IV_SIZE], bool enc)
{
  if (enc)
    xts_encrypt (data, tweak, dst, src, len, du, iv);
  else
    xts_decrypt (data, tweak, dst, src, len, du, iv);
}

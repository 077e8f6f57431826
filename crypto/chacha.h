/* crypto/chacha.h - the ChaCha permutation, HChaCha and the (X)ChaCha
 * stream cipher with a chosen number of rounds; Adiantum uses 12.  Follows
 * Linux lib/crypto/chacha.c (chacha_block_generic, hchacha_block_generic),
 * include/crypto/chacha.h (chacha_init) and crypto/chacha_generic.c
 * (crypto_xchacha_crypt): same state layout, same IVs, same output.
 *
 * The state is 16 words: the constant "expand 32-byte k" (0-3), the key
 * (4-11) and the 16-byte IV read as four little-endian words (12-15).
 * Word 12 is the block counter: it is incremented after each 64-byte block,
 * as a 32-bit number that wraps without carrying into word 13 (as Linux).
 *
 * The 32-byte XChaCha IV is laid out as Linux's: a 24-byte nonce, then the
 * 8-byte little-endian stream position (the first block number).  HChaCha of
 * the key and nonce bytes 0-15 gives the subkey; the ChaCha IV is then
 * position (words 12-13) followed by nonce bytes 16-23 (words 14-15).
 *
 * The bulk XOR runs either portable C or, on x86-64 CPUs with AVX2, eight
 * blocks at a time (crypto/chacha-avx2.c).  The choice is made once, at the
 * first call, and honours IC_NO_SIMD=1 in the environment.  Functions keep no
 * state outside their arguments and are reentrant; the caller wipes states
 * that hold key material.
 */
#ifndef IC_CHACHA_H
#define IC_CHACHA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IC_CHACHA_KEY_SIZE      32
#define IC_CHACHA_KEY_WORDS     (IC_CHACHA_KEY_SIZE / 4)
#define IC_CHACHA_IV_SIZE       16
#define IC_CHACHA_BLOCK_SIZE    64
#define IC_CHACHA_STATE_WORDS   16
#define IC_HCHACHA_OUT_WORDS    8
#define IC_XCHACHA_NONCE_SIZE   24
#define IC_XCHACHA_IV_SIZE      32   /* nonce, then 8-byte stream position */

/* Read a 32-byte key into words (little-endian), as chacha_init wants it. */
void ic_chacha_load_key (uint32_t key[IC_CHACHA_KEY_WORDS],
                         const uint8_t raw[IC_CHACHA_KEY_SIZE]);

/* Fill @state from @key and the 16-byte @iv (chacha_init). */
void ic_chacha_init (uint32_t state[IC_CHACHA_STATE_WORDS],
                     const uint32_t key[IC_CHACHA_KEY_WORDS],
                     const uint8_t iv[IC_CHACHA_IV_SIZE]);

/* Apply @nrounds rounds (even, > 0) of the ChaCha permutation to @x. */
void ic_chacha_permute (uint32_t x[IC_CHACHA_STATE_WORDS], int nrounds);

/* One keystream block: permute a copy of @state, add @state, write the 16
 * words little-endian to @out and increment the block counter (word 12).
 */
void ic_chacha_block (uint32_t state[IC_CHACHA_STATE_WORDS],
                      uint8_t out[IC_CHACHA_BLOCK_SIZE], int nrounds);

/* HChaCha: permute a copy of @state and output words 0-3 and 12-15, without
 * the final addition (hchacha_block_generic).
 *
 * Context: any thread; uses the SIMD implementation when selected.
 */
void ic_hchacha_block (const uint32_t state[IC_CHACHA_STATE_WORDS],
                       uint32_t out[IC_HCHACHA_OUT_WORDS], int nrounds);

/* The portable implementation of ic_hchacha_block (for tests). */
void ic_hchacha_block_generic (const uint32_t state[IC_CHACHA_STATE_WORDS],
                               uint32_t out[IC_HCHACHA_OUT_WORDS],
                               int nrounds);

/* XOR @len bytes of keystream, starting at the block @state points at, from
 * @src into @dst (which may equal @src) and advance the block counter by the
 * number of blocks begun.  A partial last block uses the first bytes of that
 * block's keystream.
 *
 * Context: any thread; uses the SIMD implementation when selected.
 */
void ic_chacha_crypt (uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                      const uint8_t *src, size_t len, int nrounds);

/* The portable implementation of ic_chacha_crypt (for tests). */
void ic_chacha_crypt_generic (uint32_t state[IC_CHACHA_STATE_WORDS],
                              uint8_t *dst, const uint8_t *src, size_t len,
                              int nrounds);

/* XChaCha with @nrounds rounds: XOR the keystream for @key and the 32-byte
 * @iv (nonce, stream position) into @len bytes from @src to @dst (which may
 * equal @src).  Wipes its own copies of the subkey.
 *
 * Context: any thread.
 */
void ic_xchacha_crypt (const uint32_t key[IC_CHACHA_KEY_WORDS],
                       const uint8_t iv[IC_XCHACHA_IV_SIZE], uint8_t *dst,
                       const uint8_t *src, size_t len, int nrounds);

/* Use the SIMD implementation if the CPU has one (@enable, the default
 * unless IC_NO_SIMD=1) or force the portable one.  For tests and benchmarks.
 *
 * Context: must not race with ChaCha calls whose output matters (they may
 * use either implementation; both give the same bytes).
 */
void ic_chacha_use_simd (bool enable);

/* Name of the implementation in use: "avx2" or "generic". */
const char *ic_chacha_impl_name (void);

#ifdef HAVE_X86_64_SIMD
/* crypto/chacha-avx2.c: true if the CPU and OS support AVX2. */
bool ic_chacha_avx2_usable (void);

/* ic_chacha_crypt on eight blocks at a time with AVX2; call only when
 * ic_chacha_avx2_usable().
 */
void ic_chacha_crypt_avx2 (uint32_t state[IC_CHACHA_STATE_WORDS],
                           uint8_t *dst, const uint8_t *src, size_t len,
                           int nrounds);

/* ic_hchacha_block with SSE-width vectors (AVX2 encoding); call only when
 * ic_chacha_avx2_usable().
 */
void ic_hchacha_block_avx2 (const uint32_t state[IC_CHACHA_STATE_WORDS],
                            uint32_t out[IC_HCHACHA_OUT_WORDS], int nrounds);
#else
static inline bool
ic_chacha_avx2_usable (void)
{
  return false;
}

/* Never selected without x86-64 SIMD; keeps callers free of #ifdefs. */
static inline void
ic_chacha_crypt_avx2 (uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                      const uint8_t *src, size_t len, int nrounds)
{
  ic_chacha_crypt_generic (state, dst, src, len, nrounds);
}

static inline void
ic_hchacha_block_avx2 (const uint32_t state[IC_CHACHA_STATE_WORDS],
                       uint32_t out[IC_HCHACHA_OUT_WORDS], int nrounds)
{
  ic_hchacha_block_generic (state, out, nrounds);
}
#endif

#endif /* IC_CHACHA_H */

/* crypto/nh.h - the NH hash and NHPoly1305, the bulk hash of Adiantum.
 * Follows Linux include/crypto/nhpoly1305.h and crypto/nhpoly1305.c (NH
 * with NH_PAIR_STRIDE 2, NH_NUM_PASSES 4, 16-byte message units, 1024-byte
 * messages and a 1072-byte key).
 *
 * NH of a message of n 16-byte units (n <= 64), with key words k[] and
 * message words m[] (all little-endian 32-bit), is four 64-bit sums, pass
 * p = 0..3 using the key shifted by 4p words:
 *
 *   sum_p = sum over units j of
 *             (m[4j]   + k[4j+4p])   * (m[4j+2] + k[4j+4p+2])
 *           + (m[4j+1] + k[4j+4p+1]) * (m[4j+3] + k[4j+4p+3])
 *
 * with 32-bit additions and 64-bit products and sums, all modulo 2^32 and
 * 2^64; the 32-byte hash is the four sums little-endian.
 *
 * NHPoly1305 (Adiantum's H_L): split the message into 1024-byte chunks, pad
 * the last to a multiple of 16 bytes with zeros, NH each chunk and feed the
 * 32-byte hashes through the Poly1305 core (two blocks each, with the 2^128
 * bit); emit without "s".  An empty message hashes to zero.
 *
 * Keys are kept with the two middle words of every 16-byte unit exchanged,
 * (k[4j], k[4j+2], k[4j+1], k[4j+3]), so that each pair of words NH
 * multiplies is adjacent: SIMD code shuffles each message block once
 * into that order instead of shuffling every sum of message and key words
 * (AMD Zen 1: NH at 14.7 cycles per 32 bytes before, 12.1 after, with
 * the change in nh-avx2.c's hsum).  ic_nh_load_key makes this layout and
 * every implementation takes it.
 *
 * NH runs portable C or, on x86-64 CPUs with AVX2, crypto/nh-avx2.c; the
 * choice is made once, at the first call, and honours IC_NO_SIMD=1.
 * Functions keep no state outside their arguments and are reentrant.
 */
#ifndef IC_NH_H
#define IC_NH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "poly1305.h"

#define IC_NH_PAIR_STRIDE       2
#define IC_NH_MESSAGE_UNIT      (IC_NH_PAIR_STRIDE * 2 * 4)     /* 16 bytes */
#define IC_NH_NUM_PASSES        4
#define IC_NH_HASH_BYTES        (IC_NH_NUM_PASSES * 8)          /* 32 */
#define IC_NH_NUM_STRIDES       64
#define IC_NH_MESSAGE_WORDS     (IC_NH_PAIR_STRIDE * 2 * IC_NH_NUM_STRIDES)
#define IC_NH_MESSAGE_BYTES     (IC_NH_MESSAGE_WORDS * 4)       /* 1024 */
#define IC_NH_KEY_WORDS         (IC_NH_MESSAGE_WORDS + \
                                 IC_NH_PAIR_STRIDE * 2 * (IC_NH_NUM_PASSES - 1))
#define IC_NH_KEY_BYTES         (IC_NH_KEY_WORDS * 4)           /* 1072 */

#define IC_NHPOLY1305_KEY_SIZE  (IC_POLY1305_KEY_SIZE + IC_NH_KEY_BYTES)
#define IC_NHPOLY1305_HASH_SIZE IC_POLY1305_BLOCK_SIZE

struct ic_nhpoly1305_key {
  struct ic_poly1305_key poly_key;      /* K_M in Adiantum */
  uint32_t nh_key[IC_NH_KEY_WORDS];     /* K_N, as ic_nh_load_key makes it */
};

/* Read a 1072-byte NH key into little-endian words, in the layout above
 * (the middle words of each unit exchanged).
 */
void ic_nh_load_key (uint32_t key[IC_NH_KEY_WORDS],
                     const uint8_t raw[IC_NH_KEY_BYTES]);

/* NH of @len bytes at @msg (a multiple of 16, at most 1024) into @hash,
 * with a key from ic_nh_load_key.
 *
 * Context: any thread; uses the SIMD implementation when selected.
 */
void ic_nh (const uint32_t key[IC_NH_KEY_WORDS], const uint8_t *msg,
            size_t len, uint8_t hash[IC_NH_HASH_BYTES]);

/* The portable implementation of ic_nh (nh_generic; for tests). */
void ic_nh_generic (const uint32_t key[IC_NH_KEY_WORDS], const uint8_t *msg,
                    size_t len, uint8_t hash[IC_NH_HASH_BYTES]);

/* Load a 1088-byte NHPoly1305 key: 16 bytes of Poly1305 multiplier, then
 * the NH key (crypto_nhpoly1305_setkey).
 */
void ic_nhpoly1305_setkey (struct ic_nhpoly1305_key *key,
                           const uint8_t raw[IC_NHPOLY1305_KEY_SIZE]);

/* NHPoly1305 of @len bytes at @msg, in one go, into @out.
 *
 * Context: any thread.
 */
void ic_nhpoly1305 (const struct ic_nhpoly1305_key *key, const uint8_t *msg,
                    size_t len, uint8_t out[IC_NHPOLY1305_HASH_SIZE]);

/* Use the SIMD NH if the CPU has one (@enable, the default unless
 * IC_NO_SIMD=1) or force the portable one.  For tests and benchmarks.
 *
 * Context: must not race with NH calls whose output matters (they may use
 * either implementation; both give the same bytes).
 */
void ic_nh_use_simd (bool enable);

/* Name of the NH implementation in use: "avx2" or "generic". */
const char *ic_nh_impl_name (void);

#ifdef HAVE_X86_64_SIMD
/* crypto/nh-avx2.c: true if the CPU and OS support AVX2. */
bool ic_nh_avx2_usable (void);

/* ic_nh with AVX2; call only when ic_nh_avx2_usable(). */
void ic_nh_avx2 (const uint32_t key[IC_NH_KEY_WORDS], const uint8_t *msg,
                 size_t len, uint8_t hash[IC_NH_HASH_BYTES]);
#else
static inline bool
ic_nh_avx2_usable (void)
{
  return false;
}

/* Never selected without x86-64 SIMD; keeps callers free of #ifdefs. */
static inline void
ic_nh_avx2 (const uint32_t key[IC_NH_KEY_WORDS], const uint8_t *msg,
            size_t len, uint8_t hash[IC_NH_HASH_BYTES])
{
  ic_nh_generic (key, msg, len, hash);
}
#endif

#endif /* IC_NH_H */

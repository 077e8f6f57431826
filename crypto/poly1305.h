/* crypto/poly1305.h - the Poly1305 polynomial evaluation ("core") as
 * Adiantum uses it.  Follows Linux include/crypto/internal/poly1305.h
 * (poly1305_core_setkey, poly1305_core_init, poly1305_core_blocks,
 * poly1305_core_emit).
 *
 * Only the multiplier r is keyed (clamped as RFC 8439 says); each 16-byte
 * block m is added as m + hibit * 2^128 and the accumulator multiplied by r
 * modulo 2^130 - 5.  Emitting reduces fully and gives the low 128 bits,
 * little-endian, WITHOUT adding the "s" half of a Poly1305 MAC key: Adiantum
 * adds hash values itself.  A MAC is emit + s (mod 2^128), with a last
 * partial block padded by a 1 byte and hibit 0.
 *
 * Arithmetic in base 2^64 with unsigned __int128 products; constant time (no
 * branch or index depends on key or data).  Plain values, no locking.
 */
#ifndef IC_POLY1305_H
#define IC_POLY1305_H

#include <stddef.h>
#include <stdint.h>

#define IC_POLY1305_BLOCK_SIZE  16
#define IC_POLY1305_KEY_SIZE    16   /* r only */

struct ic_poly1305_key {
  uint64_t r0;                  /* clamped r, low 64 bits */
  uint64_t r1;                  /* clamped r, high 64 bits (multiple of 4) */
  uint64_t s1;                  /* r1 + r1 / 4: 2^128 r1 = 5 r1 / 4 mod p */
};

struct ic_poly1305_state {
  uint64_t h0;                  /* accumulator, partially reduced: */
  uint64_t h1;                  /* h0 + 2^64 h1 + 2^128 h2 */
  uint64_t h2;
};

/* Clamp and load the 16-byte multiplier @raw (poly1305_core_setkey). */
void ic_poly1305_core_setkey (struct ic_poly1305_key *key,
                              const uint8_t raw[IC_POLY1305_KEY_SIZE]);

/* Start an evaluation: accumulator 0. */
void ic_poly1305_core_init (struct ic_poly1305_state *state);

/* Absorb @nblocks 16-byte blocks from @src, each with 2^128 * @hibit (0 or
 * 1) added (poly1305_core_blocks).
 */
void ic_poly1305_core_blocks (struct ic_poly1305_state *state,
                              const struct ic_poly1305_key *key,
                              const uint8_t *src, size_t nblocks,
                              unsigned int hibit);

/* The accumulator reduced modulo 2^130 - 5, low 128 bits little-endian
 * (poly1305_core_emit).  Leaves @state unchanged.
 */
void ic_poly1305_core_emit (const struct ic_poly1305_state *state,
                            uint8_t out[IC_POLY1305_BLOCK_SIZE]);

#endif /* IC_POLY1305_H */

/* crypto/crypt-ctx.h - the crypto context of a request: a key and the data
 * unit number (DUN) of its first data unit.  Follows Linux
 * include/linux/blk-crypto.h (struct bio_crypt_ctx) and
 * block/blk-crypto-internal.h, block/blk-crypto.c (bio_crypt_dun_increment,
 * __bio_crypt_advance, bio_crypt_dun_is_contiguous) and
 * block/blk-crypto-fallback.c (blk_crypto_dun_to_iv).
 *
 * The DUN is up to 32 bytes, kept as four little-endian-ordered u64 limbs
 * (limb 0 least significant).  Each further data unit of a request uses
 * DUN+1, with carry from limb to limb; the cipher consumes the first IV-size
 * bytes of the limbs written out little-endian.  Plain values; no locking.
 */
#ifndef IC_CRYPT_CTX_H
#define IC_CRYPT_CTX_H

#include <stdbool.h>
#include <stdint.h>

#include "key.h"

struct ic_crypt_ctx {
  const struct ic_crypto_key *key;
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
};

/* dun += @inc with carry across limbs; wraps at 2^256
 * (bio_crypt_dun_increment).
 */
static inline void
ic_crypt_dun_increment (uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE], uint64_t inc)
{
  int i;

  for (i = 0; inc && i < IC_CRYPTO_DUN_ARRAY_SIZE; i++) {
    dun[i] += inc;
    /* If the limb overflowed, carry one into the next. */
    inc = dun[i] < inc;
  }
}

/* Advance @ctx past @bytes of data (__bio_crypt_advance): the DUN moves on by
 * the number of whole data units in @bytes.
 */
static inline void
ic_crypt_ctx_advance (struct ic_crypt_ctx *ctx, uint64_t bytes)
{
  ic_crypt_dun_increment (ctx->dun, bytes >> ctx->key->data_unit_size_bits);
}

/* True if a request of @bytes with context @ctx is followed, in DUN space,
 * by @next_dun (bio_crypt_dun_is_contiguous).  A wrap through zero is not
 * contiguous.
 */
bool ic_crypt_dun_is_contiguous (const struct ic_crypt_ctx *ctx,
                                 uint64_t bytes,
                                 const uint64_t next_dun[IC_CRYPTO_DUN_ARRAY_SIZE]);

/* Write the DUN out as the 32-byte little-endian IV (blk_crypto_dun_to_iv);
 * a mode uses the first ivsize bytes.
 */
void ic_crypto_dun_to_iv (const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE],
                          uint8_t iv[IC_CRYPTO_MAX_IV_SIZE]);

/* Set the DUN from a 64-bit number (the common case: dun-base + index). */
static inline void
ic_crypt_dun_set_u64 (uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE], uint64_t value)
{
  int i;

  dun[0] = value;
  for (i = 1; i < IC_CRYPTO_DUN_ARRAY_SIZE; i++)
    dun[i] = 0;
}

/* Compare two DUNs as 256-bit numbers: <0, 0 or >0. */
int ic_crypt_dun_cmp (const uint64_t a[IC_CRYPTO_DUN_ARRAY_SIZE],
                      const uint64_t b[IC_CRYPTO_DUN_ARRAY_SIZE]);

/* True if the DUN needs more than @dun_bytes bytes. */
bool ic_crypt_dun_exceeds (const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE],
                           unsigned int dun_bytes);

#endif /* IC_CRYPT_CTX_H */

/* crypto/crypt-ctx.c - see crypt-ctx.h. */
#include <config.h>

#include <string.h>

#include "crypt-ctx.h"

bool
ic_crypt_dun_is_contiguous (const struct ic_crypt_ctx *ctx, uint64_t bytes,
                            const uint64_t next_dun[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  uint64_t carry = bytes >> ctx->key->data_unit_size_bits;
  int i;

  /* Same walk as upstream: a limb must equal ours plus the carry, and a
   * carry that runs off the top means the DUN wrapped.
   */
  for (i = 0; i < IC_CRYPTO_DUN_ARRAY_SIZE; i++) {
    if (ctx->dun[i] + carry != next_dun[i])
      return false;
    /* This limb wrapped iff it is now smaller than what was added. */
    carry = (ctx->dun[i] + carry) < carry;
  }
  /* If the DUN wrapped through zero, don't treat it as contiguous. */
  return carry == 0;
}

void
ic_crypto_dun_to_iv (const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE],
                     uint8_t iv[IC_CRYPTO_MAX_IV_SIZE])
{
  int i;
  int b;

  for (i = 0; i < IC_CRYPTO_DUN_ARRAY_SIZE; i++)
    for (b = 0; b < 8; b++)
      iv[8 * i + b] = dun[i] >> (8 * b);
}

bool
ic_crypt_dun_exceeds (const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE],
                      unsigned int dun_bytes)
{
  uint8_t iv[IC_CRYPTO_MAX_IV_SIZE];
  unsigned int i;

  ic_crypto_dun_to_iv (dun, iv);
  for (i = dun_bytes; i < sizeof iv; i++)
    if (iv[i])
      return true;
  return false;
}

int
ic_crypt_dun_cmp (const uint64_t a[IC_CRYPTO_DUN_ARRAY_SIZE],
                  const uint64_t b[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  int i;

  for (i = IC_CRYPTO_DUN_ARRAY_SIZE - 1; i >= 0; i--)
    if (a[i] != b[i])
      return a[i] < b[i] ? -1 : 1;
  return 0;
}

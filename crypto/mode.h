/* crypto/mode.h - the inline-encryption modes.  Follows Linux
 * include/linux/blk-crypto.h (enum blk_crypto_mode_num) and
 * block/blk-crypto.c (blk_crypto_modes[]): same modes, same numbers, same
 * names as /sys/block/<disk>/queue/crypto/modes/.  Constant data.
 */
#ifndef IC_MODE_H
#define IC_MODE_H

#include <stdbool.h>

enum ic_crypto_mode_num {
  IC_ENCRYPTION_MODE_INVALID,
  IC_ENCRYPTION_MODE_AES_256_XTS,
  IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV,
  IC_ENCRYPTION_MODE_ADIANTUM,
  IC_ENCRYPTION_MODE_SM4_XTS,
  IC_ENCRYPTION_MODE_MAX,
};

/* Sizes from include/linux/blk-crypto.h. */
#define IC_CRYPTO_MAX_RAW_KEY_SIZE        64
#define IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE 128
#define IC_CRYPTO_MAX_ANY_KEY_SIZE        IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE
#define IC_CRYPTO_SW_SECRET_SIZE          32
#define IC_CRYPTO_MAX_IV_SIZE             32
#define IC_CRYPTO_DUN_ARRAY_SIZE          (IC_CRYPTO_MAX_IV_SIZE / 8)

/* Data unit sizes this project accepts: powers of two in this range. */
#define IC_CRYPTO_MIN_DATA_UNIT_SIZE      512
#define IC_CRYPTO_MAX_DATA_UNIT_SIZE      65536

struct ic_crypto_mode {
  const char *name;             /* sysfs name, e.g. "AES-256-XTS" */
  const char *cipher_str;       /* Linux crypto API name of the fallback */
  unsigned int keysize;         /* raw key size in bytes */
  unsigned int security_strength; /* bytes; lower bound of a wrapped key */
  unsigned int ivsize;          /* bytes of the DUN the cipher consumes */
};

/* Indexed by enum ic_crypto_mode_num; entry 0 (INVALID) is all zero. */
extern const struct ic_crypto_mode ic_crypto_modes[IC_ENCRYPTION_MODE_MAX];

/* True for the valid modes 1 .. MAX-1. */
bool ic_crypto_mode_is_valid (int mode);

/* Look a mode up by its sysfs name, ignoring case.
 *
 * Return: the mode, or IC_ENCRYPTION_MODE_INVALID.
 */
enum ic_crypto_mode_num ic_crypto_mode_from_name (const char *name);

/* The sysfs name of @mode, or "invalid". */
const char *ic_crypto_mode_name (int mode);

#endif /* IC_MODE_H */

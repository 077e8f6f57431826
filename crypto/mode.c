/* crypto/mode.c - see mode.h.  The table mirrors blk_crypto_modes[]. */
#include <config.h>

#include <strings.h>

#include "mode.h"

const struct ic_crypto_mode ic_crypto_modes[IC_ENCRYPTION_MODE_MAX] = {
  [IC_ENCRYPTION_MODE_AES_256_XTS] = {
    .name = "AES-256-XTS",
    .cipher_str = "xts(aes)",
    .keysize = 64,
    .security_strength = 32,
    .ivsize = 16,
  },
  [IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV] = {
    .name = "AES-128-CBC-ESSIV",
    .cipher_str = "essiv(cbc(aes),sha256)",
    .keysize = 16,
    .security_strength = 16,
    .ivsize = 16,
  },
  [IC_ENCRYPTION_MODE_ADIANTUM] = {
    .name = "Adiantum",
    .cipher_str = "adiantum(xchacha12,aes)",
    .keysize = 32,
    .security_strength = 32,
    .ivsize = 32,
  },
  [IC_ENCRYPTION_MODE_SM4_XTS] = {
    .name = "SM4-XTS",
    .cipher_str = "xts(sm4)",
    .keysize = 32,
    .security_strength = 16,
    .ivsize = 16,
  },
};

bool
ic_crypto_mode_is_valid (int mode)
{
  return mode > IC_ENCRYPTION_MODE_INVALID && mode < IC_ENCRYPTION_MODE_MAX;
}

enum ic_crypto_mode_num
ic_crypto_mode_from_name (const char *name)
{
  int i;

  for (i = 1; i < IC_ENCRYPTION_MODE_MAX; i++)
    if (strcasecmp (name, ic_crypto_modes[i].name) == 0)
      return i;
  return IC_ENCRYPTION_MODE_INVALID;
}

const char *
ic_crypto_mode_name (int mode)
{
  return ic_crypto_mode_is_valid (mode) ? ic_crypto_modes[mode].name
                                        : "invalid";
}

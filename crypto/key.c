/* crypto/key.c - see key.h.  ic_crypto_init_key() mirrors
 * blk_crypto_init_key() in Linux block/blk-crypto.c.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "key.h"
#include "secmem.h"

static bool
is_power_of_2 (unsigned long n)
{
  return n != 0 && (n & (n - 1)) == 0;
}

const char *
ic_crypto_key_type_name (enum ic_crypto_key_type type)
{
  switch (type) {
  case IC_CRYPTO_KEY_TYPE_RAW: return "raw";
  case IC_CRYPTO_KEY_TYPE_HW_WRAPPED: return "hw_wrapped";
  }
  return "invalid";
}

int
ic_crypto_init_key (struct ic_crypto_key *key, const char *name,
                    const uint8_t *key_bytes, size_t key_size,
                    enum ic_crypto_key_type key_type,
                    enum ic_crypto_mode_num crypto_mode,
                    unsigned int dun_bytes,
                    unsigned int data_unit_size)
{
  const struct ic_crypto_mode *mode;
  const char *label = name && *name ? name : "key";

  memset (key, 0, sizeof *key);

  if (!ic_crypto_mode_is_valid (crypto_mode)) {
    ic_error ("%s: init key: invalid crypto mode %d", label, crypto_mode);
    return -EINVAL;
  }
  mode = &ic_crypto_modes[crypto_mode];

  switch (key_type) {
  case IC_CRYPTO_KEY_TYPE_RAW:
    if (key_size != mode->keysize) {
      ic_error ("%s: init key: %s needs a key of exactly %u bytes "
                "(%u hex digits), got %zu bytes",
                label, mode->name, mode->keysize, 2 * mode->keysize,
                key_size);
      return -EINVAL;
    }
    break;
  case IC_CRYPTO_KEY_TYPE_HW_WRAPPED:
    if (key_size < mode->security_strength ||
        key_size > IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE) {
      ic_error ("%s: init key: a hw_wrapped %s key must be %u to %u bytes, "
                "got %zu bytes",
                label, mode->name, mode->security_strength,
                IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE, key_size);
      return -EINVAL;
    }
    break;
  default:
    ic_error ("%s: init key: invalid key type %d", label, key_type);
    return -EINVAL;
  }

  if (dun_bytes == 0 || dun_bytes > mode->ivsize) {
    ic_error ("%s: init key: dun-bytes %u out of range: %s takes 1 to %u",
              label, dun_bytes, mode->name, mode->ivsize);
    return -EINVAL;
  }

  if (!is_power_of_2 (data_unit_size)) {
    ic_error ("%s: init key: data unit size %u is not a power of two",
              label, data_unit_size);
    return -EINVAL;
  }
  if (data_unit_size < IC_CRYPTO_MIN_DATA_UNIT_SIZE ||
      data_unit_size > IC_CRYPTO_MAX_DATA_UNIT_SIZE) {
    ic_error ("%s: init key: data unit size %u out of range: %u to %u",
              label, data_unit_size, IC_CRYPTO_MIN_DATA_UNIT_SIZE,
              IC_CRYPTO_MAX_DATA_UNIT_SIZE);
    return -EINVAL;
  }

  key->crypto_cfg.crypto_mode = crypto_mode;
  key->crypto_cfg.data_unit_size = data_unit_size;
  key->crypto_cfg.dun_bytes = dun_bytes;
  key->crypto_cfg.key_type = key_type;
  key->data_unit_size_bits = __builtin_ctz (data_unit_size);
  key->size = key_size;
  if (name)
    snprintf (key->name, sizeof key->name, "%s", name);
  memcpy (key->bytes, key_bytes, key_size);
  return 0;
}

struct ic_crypto_key *
ic_crypto_key_alloc (void)
{
  return ic_secure_alloc (sizeof (struct ic_crypto_key));
}

struct ic_crypto_key *
ic_crypto_key_new (const char *name, const uint8_t *key_bytes,
                   size_t key_size, enum ic_crypto_key_type key_type,
                   enum ic_crypto_mode_num crypto_mode, unsigned int dun_bytes,
                   unsigned int data_unit_size)
{
  struct ic_crypto_key *key = ic_crypto_key_alloc ();
  int r;

  if (!key) {
    ic_error ("%s: init key: out of locked memory",
              name && *name ? name : "key");
    return NULL;
  }
  r = ic_crypto_init_key (key, name, key_bytes, key_size, key_type,
                          crypto_mode, dun_bytes, data_unit_size);
  if (r < 0) {
    ic_crypto_key_free (key);
    errno = -r;
    return NULL;
  }
  return key;
}

void
ic_crypto_key_free (struct ic_crypto_key *key)
{
  ic_secure_free (key, sizeof *key);
}

int
ic_hex_value (int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int
ic_hex_decode (const char *what, const char *hex, uint8_t *out,
               size_t out_size)
{
  size_t start = 0;
  size_t end = strlen (hex);
  size_t i;
  size_t n;

  while (start < end && isspace ((unsigned char) hex[start]))
    start++;
  while (end > start && isspace ((unsigned char) hex[end - 1]))
    end--;
  if (start == end) {
    ic_error ("%s: expected hexadecimal digits, got nothing", what);
    return -EINVAL;
  }
  for (i = start; i < end; i++)
    if (ic_hex_value ((unsigned char) hex[i]) < 0) {
      /* Say where, never what: the text is a secret. */
      ic_error ("%s: character %zu is not a hexadecimal digit",
                what, i + 1);
      return -EINVAL;
    }
  n = end - start;
  if (n % 2) {
    ic_error ("%s: odd number of hexadecimal digits (%zu)", what, n);
    return -EINVAL;
  }
  if (n / 2 > out_size) {
    ic_error ("%s: %zu bytes is too long, at most %zu bytes are accepted",
              what, n / 2, out_size);
    return -E2BIG;
  }
  for (i = 0; i < n / 2; i++)
    out[i] = ic_hex_value ((unsigned char) hex[start + 2 * i]) << 4 |
             ic_hex_value ((unsigned char) hex[start + 2 * i + 1]);
  return n / 2;
}

/* crypto/cipher.c - see cipher.h.
 *
 * AES-256-XTS: crypto/aes-xts.c (VAES with AVX-512, or libgcrypt), and
 * SM4-XTS: crypto/sm4.c (portable, AES-NI or GFNI; libgcrypt 1.10 has no
 * bulk XTS for SM4), both given the IV of the first data unit; they add
 * one per data unit with a 128-bit wrap, the same carry as Linux (the two
 * low limbs are the whole 16-byte IV).
 *
 * AES-128-CBC-ESSIV: per data unit, IV = AES-256_{SHA-256(key)}(le128(DUN)),
 * then AES-128-CBC with the key, no padding (Linux crypto/essiv.c).
 *
 * Adiantum: crypto/adiantum.c with the 32-byte tweak = the four DUN limbs.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "adiantum.h"
#include "aes-xts.h"
#include "cipher.h"
#include "crypt-ctx.h"
#include "error.h"
#include "secmem.h"
#include "sm4.h"

struct ic_cipher {
  enum ic_crypto_mode_num mode;
  bool keyed;
  union {
    struct ic_aes_xts_ctx *aes_xts;    /* AES-256-XTS */
    struct ic_sm4_xts_ctx *sm4_xts;    /* SM4-XTS */
    struct {
      gcry_cipher_hd_t cbc;            /* AES-128-CBC, the data key */
      gcry_cipher_hd_t essiv;          /* AES-256-ECB, SHA-256(data key) */
    } essiv;
    struct ic_adiantum_ctx *adiantum;
  } u;
};

static int
open_gcry (const char *what, int algo, int gmode, gcry_cipher_hd_t *hd)
{
  gcry_error_t err = gcry_cipher_open (hd, algo, gmode, GCRY_CIPHER_SECURE);

  if (err) {
    ic_error ("cipher: open %s: %s", what, gcry_strerror (err));
    *hd = NULL;
    return gcry_err_code (err) == GPG_ERR_CIPHER_ALGO ? -ENOPKG : -ENOMEM;
  }
  /* The handle holds the key schedule: it must be in the locked pool. */
  ic_secmem_check (*hd);
  return 0;
}

struct ic_cipher *
ic_cipher_new (enum ic_crypto_mode_num mode)
{
  struct ic_cipher *c;
  int r = 0;

  if (!ic_crypto_mode_is_valid (mode)) {
    ic_error ("cipher: invalid crypto mode %d", mode);
    errno = EINVAL;
    return NULL;
  }
  r = ic_crypto_init ();
  if (r < 0) {
    errno = -r;
    return NULL;
  }
  c = ic_secure_alloc (sizeof *c);
  if (!c) {
    ic_error ("cipher: %s: out of locked memory", ic_crypto_mode_name (mode));
    return NULL;
  }
  c->mode = mode;

  switch (mode) {
  case IC_ENCRYPTION_MODE_AES_256_XTS:
    c->u.aes_xts = ic_aes_xts_new ();
    if (!c->u.aes_xts)
      r = -errno;
    break;
  case IC_ENCRYPTION_MODE_SM4_XTS:
    c->u.sm4_xts = ic_sm4_xts_new ();
    if (!c->u.sm4_xts)
      r = -errno;
    break;
  case IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV:
    r = open_gcry ("cbc(aes)", GCRY_CIPHER_AES128, GCRY_CIPHER_MODE_CBC,
                   &c->u.essiv.cbc);
    if (r == 0)
      r = open_gcry ("essiv(aes)", GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_ECB,
                     &c->u.essiv.essiv);
    break;
  case IC_ENCRYPTION_MODE_ADIANTUM:
    c->u.adiantum = ic_adiantum_new ();
    if (!c->u.adiantum)
      r = -errno;
    break;
  default:
    abort ();
  }
  if (r < 0) {
    ic_cipher_free (c);
    errno = -r;
    return NULL;
  }
  return c;
}

void
ic_cipher_free (struct ic_cipher *c)
{
  if (!c)
    return;
  switch (c->mode) {
  case IC_ENCRYPTION_MODE_AES_256_XTS:
    ic_aes_xts_free (c->u.aes_xts);
    break;
  case IC_ENCRYPTION_MODE_SM4_XTS:
    ic_sm4_xts_free (c->u.sm4_xts);
    break;
  case IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV:
    gcry_cipher_close (c->u.essiv.cbc);
    gcry_cipher_close (c->u.essiv.essiv);
    break;
  case IC_ENCRYPTION_MODE_ADIANTUM:
    ic_adiantum_free (c->u.adiantum);
    break;
  default:
    break;
  }
  ic_secure_free (c, sizeof *c);
}

enum ic_crypto_mode_num
ic_cipher_mode (const struct ic_cipher *c)
{
  return c->mode;
}

static int
gcry_setkey (const char *what, gcry_cipher_hd_t hd, const void *key,
             size_t size)
{
  gcry_error_t err = gcry_cipher_setkey (hd, key, size);

  if (err) {
    ic_error ("cipher: %s: set key: %s", what, gcry_strerror (err));
    return -EINVAL;
  }
  return 0;
}

int
ic_cipher_check_key (enum ic_crypto_mode_num m, const uint8_t *key,
                     size_t size)
{
  const struct ic_crypto_mode *mode;

  if (!ic_crypto_mode_is_valid (m)) {
    ic_error ("cipher: invalid crypto mode %d", m);
    return -EINVAL;
  }
  mode = &ic_crypto_modes[m];
  if (size != mode->keysize) {
    ic_error ("cipher: %s: set key: the key must be %u bytes, not %zu",
              mode->name, mode->keysize, size);
    return -EINVAL;
  }
  /* xts_verify_key() with CRYPTO_TFM_REQ_FORBID_WEAK_KEYS, which the Linux
   * fallback sets: equal halves make XTS a plain tweakable ECB.
   */
  if ((m == IC_ENCRYPTION_MODE_AES_256_XTS ||
       m == IC_ENCRYPTION_MODE_SM4_XTS) &&
      memcmp (key, key + size / 2, size / 2) == 0) {
    ic_error ("cipher: %s: set key: the two halves of the key are equal, "
              "which XTS forbids", mode->name);
    return -EINVAL;
  }
  return 0;
}

int
ic_cipher_setkey (struct ic_cipher *c, const uint8_t *key, size_t size)
{
  const struct ic_crypto_mode *mode = &ic_crypto_modes[c->mode];
  uint8_t salt[32];
  int r;

  c->keyed = false;
  r = ic_cipher_check_key (c->mode, key, size);
  if (r < 0)
    return r;

  switch (c->mode) {
  case IC_ENCRYPTION_MODE_AES_256_XTS:
    r = ic_aes_xts_setkey (c->u.aes_xts, key);
    break;
  case IC_ENCRYPTION_MODE_SM4_XTS:
    ic_sm4_xts_setkey (c->u.sm4_xts, key);
    break;
  case IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV:
    r = gcry_setkey (mode->name, c->u.essiv.cbc, key, size);
    if (r == 0)
      r = ic_sha256_secure (salt, key, size);
    if (r == 0) {
      r = gcry_setkey ("essiv", c->u.essiv.essiv, salt, sizeof salt);
      ic_memzero_explicit (salt, sizeof salt);
    }
    break;
  case IC_ENCRYPTION_MODE_ADIANTUM:
    r = ic_adiantum_setkey (c->u.adiantum, key);
    break;
  default:
    abort ();
  }
  if (r == 0)
    c->keyed = true;
  return r;
}

static int
check_lengths (const struct ic_cipher *c, size_t len,
               unsigned int data_unit_size)
{
  if (!c->keyed) {
    ic_error ("cipher: %s: no key set", ic_crypto_mode_name (c->mode));
    return -EINVAL;
  }
  if (data_unit_size < 16 || data_unit_size % 16 != 0 || len == 0 ||
      len % data_unit_size != 0) {
    ic_error ("cipher: %s: %zu bytes is not a whole number of %u-byte "
              "data units", ic_crypto_mode_name (c->mode), len,
              data_unit_size);
    return -EINVAL;
  }
  return 0;
}

static int
aes_xts_crypt (struct ic_cipher *c, uint8_t *dst, const uint8_t *src,
               size_t len, unsigned int du,
               const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE], bool enc)
{
  uint8_t iv[IC_CRYPTO_MAX_IV_SIZE];

  ic_crypto_dun_to_iv (dun, iv);
  return enc ? ic_aes_xts_encrypt (c->u.aes_xts, dst, src, len, du, iv)
             : ic_aes_xts_decrypt (c->u.aes_xts, dst, src, len, du, iv);
}

static int
sm4_xts_crypt (struct ic_cipher *c, uint8_t *dst, const uint8_t *src,
               size_t len, unsigned int du,
               const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE], bool enc)
{
  uint8_t iv[IC_CRYPTO_MAX_IV_SIZE];

  ic_crypto_dun_to_iv (dun, iv);
  return enc ? ic_sm4_xts_encrypt (c->u.sm4_xts, dst, src, len, du, iv)
             : ic_sm4_xts_decrypt (c->u.sm4_xts, dst, src, len, du, iv);
}

static int
essiv_crypt (struct ic_cipher *c, uint8_t *dst, const uint8_t *src,
             size_t len, unsigned int du,
             const uint64_t dun0[IC_CRYPTO_DUN_ARRAY_SIZE], bool enc)
{
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint8_t iv[IC_CRYPTO_MAX_IV_SIZE];
  gcry_error_t err = 0;
  size_t off;

  memcpy (dun, dun0, sizeof dun);
  for (off = 0; !err && off < len; off += du) {
    ic_crypto_dun_to_iv (dun, iv);
    err = gcry_cipher_encrypt (c->u.essiv.essiv, iv, 16, NULL, 0);
    if (!err)
      err = gcry_cipher_setiv (c->u.essiv.cbc, iv, 16);
    if (!err && enc)
      err = gcry_cipher_encrypt (c->u.essiv.cbc, dst + off, du,
                                 src == dst ? NULL : src + off,
                                 src == dst ? 0 : du);
    else if (!err)
      err = gcry_cipher_decrypt (c->u.essiv.cbc, dst + off, du,
                                 src == dst ? NULL : src + off,
                                 src == dst ? 0 : du);
    ic_crypt_dun_increment (dun, 1);
  }
  if (err) {
    ic_error ("cipher: %s: %s", ic_crypto_mode_name (c->mode),
              gcry_strerror (err));
    return -EIO;
  }
  return 0;
}

static int
adiantum_crypt (struct ic_cipher *c, uint8_t *dst, const uint8_t *src,
                size_t len, unsigned int du,
                const uint64_t dun0[IC_CRYPTO_DUN_ARRAY_SIZE], bool enc)
{
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint8_t tweak[IC_CRYPTO_MAX_IV_SIZE];
  size_t off;

  memcpy (dun, dun0, sizeof dun);
  for (off = 0; off < len; off += du) {
    ic_crypto_dun_to_iv (dun, tweak);
    if (enc)
      ic_adiantum_encrypt (c->u.adiantum, dst + off, src + off, du, tweak);
    else
      ic_adiantum_decrypt (c->u.adiantum, dst + off, src + off, du, tweak);
    ic_crypt_dun_increment (dun, 1);
  }
  return 0;
}

static int
cipher_crypt (struct ic_cipher *c, void *dst, const void *src, size_t len,
              unsigned int du, const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE],
              bool enc)
{
  int r = check_lengths (c, len, du);

  if (r < 0)
    return r;
  switch (c->mode) {
  case IC_ENCRYPTION_MODE_AES_256_XTS:
    return aes_xts_crypt (c, dst, src, len, du, dun, enc);
  case IC_ENCRYPTION_MODE_SM4_XTS:
    return sm4_xts_crypt (c, dst, src, len, du, dun, enc);
  case IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV:
    return essiv_crypt (c, dst, src, len, du, dun, enc);
  case IC_ENCRYPTION_MODE_ADIANTUM:
    return adiantum_crypt (c, dst, src, len, du, dun, enc);
  default:
    abort ();
  }
}

int
ic_cipher_encrypt (struct ic_cipher *c, void *dst, const void *src,
                   size_t len, unsigned int data_unit_size,
                   const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  return cipher_crypt (c, dst, src, len, data_unit_size, dun, true);
}

int
ic_cipher_decrypt (struct ic_cipher *c, void *dst, const void *src,
                   size_t len, unsigned int data_unit_size,
                   const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  return cipher_crypt (c, dst, src, len, data_unit_size, dun, false);
}

bool
ic_is_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;

  /* The first 16 bytes decide for almost every real data unit; then the
   * buffer is compared with itself shifted, which memcmp does fast.
   */
  if (len < 16)
    return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
  return memcmp (p, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16) == 0 &&
    memcmp (p, p + 16, len - 16) == 0;
}

int
ic_cipher_decrypt_holes (struct ic_cipher *c, void *dst, const void *src,
                         size_t len, unsigned int du,
                         const uint64_t dun0[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  const uint8_t *p = src;
  uint8_t *q = dst;
  size_t run_start = 0;
  size_t off;
  int r = check_lengths (c, len, du);

  if (r < 0)
    return r;
  /* Decrypt each run of data units that are not holes in one call. */
  memcpy (dun, dun0, sizeof dun);
  for (off = 0; off <= len; off += du) {
    bool hole = off < len && ic_is_zero (p + off, du);

    if (hole && q != p)
      memset (q + off, 0, du);
    if (off == len || hole) {
      if (off > run_start) {
        r = cipher_crypt (c, q + run_start, p + run_start, off - run_start,
                          du, dun, false);
        if (r < 0)
          return r;
      }
      ic_crypt_dun_increment (dun, (off - run_start) / du + (hole ? 1 : 0));
      run_start = off + du;
    }
  }
  return 0;
}

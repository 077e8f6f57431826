/* crypto/aes-xts.c - see aes-xts.h.  The choice of implementation and the
 * libgcrypt one.
 *
 * libgcrypt treats the XTS IV as the 128-bit little-endian data unit
 * sequence number and adds one after each gcry_cipher_encrypt() call, so
 * one setiv per request followed by one call per data unit gives IV,
 * IV + 1, ... with the same wrap as Linux.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "aes-xts.h"
#include "error.h"
#include "secmem.h"
#include "simd.h"

struct ic_aes_xts_ctx {
  /* The implementation the context was keyed for; NULL: unkeyed. */
  const struct aes_xts_impl *impl;
  struct ic_aes256_key data_enc;        /* K1 */
  struct ic_aes256_key data_dec;        /* K1, equivalent inverse cipher */
  struct ic_aes256_key tweak_enc;       /* K2 */
  gcry_cipher_hd_t hd;                  /* libgcrypt: opened at first key */
};

struct aes_xts_impl {
  struct ic_impl impl;
  int (*setkey) (struct ic_aes_xts_ctx *ctx, const uint8_t *key);
  int (*crypt) (struct ic_aes_xts_ctx *ctx, uint8_t *dst, const uint8_t *src,
                size_t len, unsigned int du, const uint8_t *iv, bool enc);
};

static int
vaes_setkey (struct ic_aes_xts_ctx *ctx, const uint8_t *key)
{
  ic_aes256_expand_key_aesni (&ctx->data_enc, &ctx->data_dec, key);
  ic_aes256_expand_key_aesni (&ctx->tweak_enc, NULL,
                              key + IC_AES_256_KEY_SIZE);
  return 0;
}

static int
vaes_crypt (struct ic_aes_xts_ctx *ctx, uint8_t *dst, const uint8_t *src,
            size_t len, unsigned int du, const uint8_t *iv, bool enc)
{
  ic_aes_xts_crypt_vaes_avx512 (enc ? &ctx->data_enc : &ctx->data_dec,
                                &ctx->tweak_enc, dst, src, len, du, iv, enc);
  return 0;
}

static int
aesni_crypt (struct ic_aes_xts_ctx *ctx, uint8_t *dst, const uint8_t *src,
             size_t len, unsigned int du, const uint8_t *iv, bool enc)
{
  ic_aes_xts_crypt_aesni (enc ? &ctx->data_enc : &ctx->data_dec,
                          &ctx->tweak_enc, dst, src, len, du, iv, enc);
  return 0;
}

static int
gcry_setkey (struct ic_aes_xts_ctx *ctx, const uint8_t *key)
{
  gcry_error_t err;

  if (!ctx->hd) {
    err = gcry_cipher_open (&ctx->hd, GCRY_CIPHER_AES256,
                            GCRY_CIPHER_MODE_XTS, GCRY_CIPHER_SECURE);
    if (err) {
      ic_error ("aes-xts: open xts(aes): %s", gcry_strerror (err));
      ctx->hd = NULL;
      return -ENOMEM;
    }
    /* The handle holds the key schedule: it must be in the locked pool. */
    ic_secmem_check (ctx->hd);
  }
  err = gcry_cipher_setkey (ctx->hd, key, IC_AES_XTS_KEY_SIZE);
  if (err) {
    ic_error ("aes-xts: set key: %s", gcry_strerror (err));
    return -EINVAL;
  }
  return 0;
}

static int
gcry_crypt (struct ic_aes_xts_ctx *ctx, uint8_t *dst, const uint8_t *src,
            size_t len, unsigned int du, const uint8_t *iv, bool enc)
{
  gcry_error_t err = gcry_cipher_setiv (ctx->hd, iv, IC_AES_XTS_IV_SIZE);
  size_t off;

  for (off = 0; !err && off < len; off += du) {
    /* Each call advances libgcrypt's sequence number by one. */
    if (enc)
      err = gcry_cipher_encrypt (ctx->hd, dst + off, du,
                                 src == dst ? NULL : src + off,
                                 src == dst ? 0 : du);
    else
      err = gcry_cipher_decrypt (ctx->hd, dst + off, du,
                                 src == dst ? NULL : src + off,
                                 src == dst ? 0 : du);
  }
  if (err) {
    ic_error ("aes-xts: %s: %s", enc ? "encrypt" : "decrypt",
              gcry_strerror (err));
    return -EIO;
  }
  return 0;
}

static const struct aes_xts_impl vaes_impl = {
  { "vaes-avx512", ic_aes_xts_vaes_avx512_usable }, vaes_setkey, vaes_crypt,
};
static const struct aes_xts_impl aesni_impl = {
  { "aesni", ic_aes_xts_aesni_usable }, vaes_setkey, aesni_crypt,
};
static const struct aes_xts_impl gcry_impl = {
  { "libgcrypt", ic_impl_always }, gcry_setkey, gcry_crypt,
};

static const struct ic_impl *const impls[] = {
  &vaes_impl.impl, &aesni_impl.impl, &gcry_impl.impl,
};
static struct ic_impl_choice choice = {
  "aes-xts", impls, sizeof impls / sizeof impls[0], NULL,
};

static const struct aes_xts_impl *
current_impl (void)
{
  return (const struct aes_xts_impl *) ic_impl_current (&choice);
}

void
ic_aes_xts_use_simd (bool enable)
{
  ic_impl_use_simd (&choice, enable);
}

int
ic_aes_xts_use_impl (const char *name)
{
  return ic_impl_use (&choice, name);
}

const char *
ic_aes_xts_impl_name (void)
{
  return current_impl ()->impl.name;
}

const char *
ic_aes_xts_ctx_impl_name (const struct ic_aes_xts_ctx *ctx)
{
  return ctx->impl ? ctx->impl->impl.name : NULL;
}

struct ic_aes_xts_ctx *
ic_aes_xts_new (void)
{
  struct ic_aes_xts_ctx *ctx = ic_secure_alloc (sizeof *ctx);

  if (!ctx)
    ic_error ("aes-xts: allocate context: out of locked memory");
  return ctx;
}

void
ic_aes_xts_free (struct ic_aes_xts_ctx *ctx)
{
  if (!ctx)
    return;
  gcry_cipher_close (ctx->hd);          /* wipes: opened secure */
  ic_secure_free (ctx, sizeof *ctx);
}

int
ic_aes_xts_setkey (struct ic_aes_xts_ctx *ctx,
                   const uint8_t key[IC_AES_XTS_KEY_SIZE])
{
  const struct aes_xts_impl *im = current_impl ();
  int r;

  ctx->impl = NULL;
  r = im->setkey (ctx, key);
  if (r == 0)
    ctx->impl = im;
  return r;
}

static int
xts_crypt (struct ic_aes_xts_ctx *ctx, uint8_t *dst, const uint8_t *src,
           size_t len, unsigned int du, const uint8_t iv[IC_AES_XTS_IV_SIZE],
           bool enc)
{
  if (!ctx->impl) {
    ic_error ("aes-xts: no key set");
    return -EINVAL;
  }
  if (du == 0 || du % IC_AES_BLOCK_SIZE != 0 || len == 0 || len % du != 0) {
    ic_error ("aes-xts: %zu bytes is not a whole number of %u-byte data "
              "units of 16-byte blocks", len, du);
    return -EINVAL;
  }
  return ctx->impl->crypt (ctx, dst, src, len, du, iv, enc);
}

int
ic_aes_xts_encrypt (struct ic_aes_xts_ctx *ctx, uint8_t *dst,
                    const uint8_t *src, size_t len,
                    unsigned int data_unit_size,
                    const uint8_t iv[IC_AES_XTS_IV_SIZE])
{
  return xts_crypt (ctx, dst, src, len, data_unit_size, iv, true);
}

int
ic_aes_xts_decrypt (struct ic_aes_xts_ctx *ctx, uint8_t *dst,
                    const uint8_t *src, size_t len,
                    unsigned int data_unit_size,
                    const uint8_t iv[IC_AES_XTS_IV_SIZE])
{
  return xts_crypt (ctx, dst, src, len, data_unit_size, iv, false);
}

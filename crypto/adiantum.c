/* crypto/adiantum.c - see adiantum.h.  Written from the Adiantum paper
 * (https://eprint.iacr.org/2018/720.pdf, section 6.4) with the key
 * derivation, tweak length and hash layout of Linux crypto/adiantum.c
 * (adiantum_setkey, adiantum_hash_header, adiantum_crypt, adiantum_finish).
 */
#include <config.h>

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <gcrypt.h>

#include "adiantum.h"
#include "chacha.h"
#include "error.h"
#include "nh.h"
#include "poly1305.h"
#include "secmem.h"

#define XCHACHA_ROUNDS          12
#define BLOCKCIPHER_BLOCK_SIZE  16      /* |P_R|, AES block, hash output */
#define BLOCKCIPHER_KEY_SIZE    32      /* K_E */

/* K_E || K_T || K_M || K_N, as the XChaCha12 keystream gives them. */
#define DERIVED_KEYS_SIZE       (BLOCKCIPHER_KEY_SIZE + IC_POLY1305_KEY_SIZE + \
                                 IC_NHPOLY1305_KEY_SIZE)

struct ic_adiantum_ctx {
  uint32_t stream_key[IC_CHACHA_KEY_WORDS];     /* K, for XChaCha12 */
  struct ic_poly1305_key header_hash_key;       /* K_T */
  struct ic_nhpoly1305_key hash_key;            /* K_M and K_N */
  gcry_cipher_hd_t blockcipher;                 /* AES-256 keyed with K_E;
                                                   libgcrypt keeps its key
                                                   schedule in secure memory */
  bool keyed;
};

/* A 128-bit little-endian number as two 64-bit halves. */
struct le128 {
  uint64_t lo;
  uint64_t hi;
};

static inline struct le128
le128_load (const uint8_t p[16])
{
  struct le128 v;

  memcpy (&v.lo, p, 8);
  memcpy (&v.hi, p + 8, 8);
  v.lo = le64toh (v.lo);
  v.hi = le64toh (v.hi);
  return v;
}

static inline void
le128_store (uint8_t p[16], struct le128 v)
{
  v.lo = htole64 (v.lo);
  v.hi = htole64 (v.hi);
  memcpy (p, &v.lo, 8);
  memcpy (p + 8, &v.hi, 8);
}

/* Addition and subtraction in Z/(2^128 Z). */
static inline struct le128
le128_add (struct le128 a, struct le128 b)
{
  struct le128 r;

  r.lo = a.lo + b.lo;
  r.hi = a.hi + b.hi + (r.lo < a.lo);
  return r;
}

static inline struct le128
le128_sub (struct le128 a, struct le128 b)
{
  struct le128 r;

  r.lo = a.lo - b.lo;
  r.hi = a.hi - b.hi - (a.lo < b.lo);
  return r;
}

struct ic_adiantum_ctx *
ic_adiantum_new (void)
{
  struct ic_adiantum_ctx *ctx;
  gcry_error_t err;

  ctx = ic_secure_alloc (sizeof *ctx);
  if (!ctx) {
    ic_error ("adiantum: allocate context: out of locked memory");
    return NULL;
  }
  err = gcry_cipher_open (&ctx->blockcipher, GCRY_CIPHER_AES256,
                          GCRY_CIPHER_MODE_ECB, GCRY_CIPHER_SECURE);
  if (err) {
    ic_error ("adiantum: open AES-256: %s", gcry_strerror (err));
    ic_secure_free (ctx, sizeof *ctx);
    errno = gcry_err_code (err) == GPG_ERR_ENOMEM ? ENOMEM : EIO;
    return NULL;
  }
  /* The handle will hold K_E's key schedule: it must be in the locked
   * pool too.
   */
  ic_secmem_check (ctx->blockcipher);
  return ctx;
}

void
ic_adiantum_free (struct ic_adiantum_ctx *ctx)
{
  if (!ctx)
    return;
  gcry_cipher_close (ctx->blockcipher);
  ic_secure_free (ctx, sizeof *ctx);
}

/* adiantum_setkey: K_E || K_T || K_M || K_N = XChaCha12_K (nonce
 * 1 || 0^191, position 0), i.e. the keystream XORed into zeros.
 */
int
ic_adiantum_setkey (struct ic_adiantum_ctx *ctx,
                    const uint8_t key[IC_ADIANTUM_KEY_SIZE])
{
  uint8_t iv[IC_XCHACHA_IV_SIZE] = { 1 };
  uint8_t derived[DERIVED_KEYS_SIZE];
  const uint8_t *p = derived;
  gcry_error_t err;
  int r = 0;

  ctx->keyed = false;
  ic_chacha_load_key (ctx->stream_key, key);
  memset (derived, 0, sizeof derived);
  ic_xchacha_crypt (ctx->stream_key, iv, derived, derived, sizeof derived,
                    XCHACHA_ROUNDS);

  err = gcry_cipher_setkey (ctx->blockcipher, p, BLOCKCIPHER_KEY_SIZE);
  if (err) {
    ic_error ("adiantum: set key: AES-256 refuses K_E: %s",
              gcry_strerror (err));
    ic_memzero_explicit (ctx->stream_key, sizeof ctx->stream_key);
    r = -EIO;
    goto out_wipe;
  }
  p += BLOCKCIPHER_KEY_SIZE;
  ic_poly1305_core_setkey (&ctx->header_hash_key, p);
  p += IC_POLY1305_KEY_SIZE;
  ic_nhpoly1305_setkey (&ctx->hash_key, p);
  ctx->keyed = true;

 out_wipe:
  ic_memzero_explicit (derived, sizeof derived);
  return r;
}

/* adiantum_hash_header: H_T = Poly1305_{K_T} (le64 (8 bulk_len) || 0^8 ||
 * T).  Depends only on the length and the tweak; used by both hash steps.
 */
static struct le128
hash_header (const struct ic_adiantum_ctx *ctx, size_t bulk_len,
             const uint8_t tweak[IC_ADIANTUM_TWEAK_SIZE])
{
  struct le128 bits = { (uint64_t) bulk_len * 8, 0 };
  uint8_t header[IC_POLY1305_BLOCK_SIZE];
  uint8_t out[IC_POLY1305_BLOCK_SIZE];
  struct ic_poly1305_state state;

  le128_store (header, bits);
  ic_poly1305_core_init (&state);
  ic_poly1305_core_blocks (&state, &ctx->header_hash_key, header, 1, 1);
  ic_poly1305_core_blocks (&state, &ctx->header_hash_key, tweak,
                           IC_ADIANTUM_TWEAK_SIZE / IC_POLY1305_BLOCK_SIZE,
                           1);
  ic_poly1305_core_emit (&state, out);
  return le128_load (out);
}

/* H(T, X) = H_T + NHPoly1305_{K_M, K_N} (X), X the @bulk_len bytes at @x. */
static struct le128
hash_message (const struct ic_adiantum_ctx *ctx, struct le128 header_hash,
              const uint8_t *x, size_t bulk_len)
{
  uint8_t out[IC_NHPOLY1305_HASH_SIZE];

  ic_nhpoly1305 (&ctx->hash_key, x, bulk_len, out);
  return le128_add (header_hash, le128_load (out));
}

static inline size_t
round_up_chacha_block (size_t n)
{
  return (n + IC_CHACHA_BLOCK_SIZE - 1) & ~(size_t) (IC_CHACHA_BLOCK_SIZE - 1);
}

/* adiantum_crypt + adiantum_finish.  Encrypting, "right" is P_R -> P_M ->
 * C_M -> C_R and the stream turns P_L into C_L; decrypting, C_R -> C_M ->
 * P_M -> P_R and C_L into P_L.
 */
static void
adiantum_crypt (struct ic_adiantum_ctx *ctx, uint8_t *dst, const uint8_t *src,
                size_t len, const uint8_t tweak[IC_ADIANTUM_TWEAK_SIZE],
                bool enc)
{
  const size_t bulk_len = len - BLOCKCIPHER_BLOCK_SIZE;
  /* The XChaCha IV: C_M (the nonce's first 16 bytes), 1 || 0^7 (the
   * rest of the nonce), position 0.
   */
  uint8_t rbuf[IC_XCHACHA_IV_SIZE];
  struct le128 header_hash;
  struct le128 right;
  size_t stream_len;
  gcry_error_t err = 0;

  assert (ctx->keyed);
  assert (len >= IC_ADIANTUM_MIN_LEN);

  /* First hash step: P_M = P_R + H(T, P_L) (or C_M from C_R, C_L). */
  header_hash = hash_header (ctx, bulk_len, tweak);
  right = le128_add (le128_load (src + bulk_len),
                     hash_message (ctx, header_hash, src, bulk_len));
  le128_store (rbuf, right);

  /* The block cipher on the middle block. */
  if (enc) {
    /* Cannot fail: ECB on one whole block with a keyed handle. */
    err = gcry_cipher_encrypt (ctx->blockcipher, rbuf, BLOCKCIPHER_BLOCK_SIZE,
                               NULL, 0);
    assert (!err);
  }

  memset (rbuf + BLOCKCIPHER_BLOCK_SIZE, 0,
          sizeof rbuf - BLOCKCIPHER_BLOCK_SIZE);
  rbuf[BLOCKCIPHER_BLOCK_SIZE] = 1;

  /* The stream cipher on the bulk.  As Linux does, run it to the next
   * 64-byte boundary when the message is long enough: whole ChaCha blocks
   * are faster and the bytes written past the bulk are overwritten below
   * (P_R was read already, so in-place is safe too).
   */
  stream_len = round_up_chacha_block (bulk_len);
  if (stream_len > len)
    stream_len = bulk_len;
  ic_xchacha_crypt (ctx->stream_key, rbuf, dst, src, stream_len,
                    XCHACHA_ROUNDS);

  if (!enc) {
    err = gcry_cipher_decrypt (ctx->blockcipher, rbuf, BLOCKCIPHER_BLOCK_SIZE,
                               NULL, 0);
    assert (!err);
  }
  (void) err;

  /* Second hash step: C_R = C_M - H(T, C_L) (or P_R from P_M, P_L). */
  right = le128_sub (le128_load (rbuf),
                     hash_message (ctx, header_hash, dst, bulk_len));
  le128_store (dst + bulk_len, right);
}

void
ic_adiantum_encrypt (struct ic_adiantum_ctx *ctx, uint8_t *dst,
                     const uint8_t *src, size_t len,
                     const uint8_t tweak[IC_ADIANTUM_TWEAK_SIZE])
{
  adiantum_crypt (ctx, dst, src, len, tweak, true);
}

void
ic_adiantum_decrypt (struct ic_adiantum_ctx *ctx, uint8_t *dst,
                     const uint8_t *src, size_t len,
                     const uint8_t tweak[IC_ADIANTUM_TWEAK_SIZE])
{
  adiantum_crypt (ctx, dst, src, len, tweak, false);
}

/* crypto/cipher.h - one keyed transform of one mode: what Linux calls a tfm
 * (crypto_skcipher "xts(aes)", "essiv(cbc(aes),sha256)",
 * "adiantum(xchacha12,aes)", "xts(sm4)").
 *
 * A cipher en/decrypts whole data units: a buffer of n data units starting
 * at DUN d is processed as data unit i with DUN d+i, the IV being the DUN in
 * little-endian (crypto/crypt-ctx.h), exactly as blk-crypto-fallback and
 * compliant inline-encryption hardware do.
 *
 * Not thread-safe: a cipher has one user at a time (the engine and the
 * fallback keep one per thread per keyslot).  Its state, key schedule
 * included, lives in locked memory and is wiped when freed.
 */
#ifndef IC_CIPHER_H
#define IC_CIPHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mode.h"

struct ic_cipher;

/* Allocate an unkeyed cipher for @mode.
 *
 * Context: may block (allocates).
 * Return: the cipher, or NULL with errno set (ENOMEM, or ENOPKG if
 * libgcrypt lacks the algorithm) and the reason in ic_last_error().
 */
struct ic_cipher *ic_cipher_new (enum ic_crypto_mode_num mode);

/* Key the cipher with @size raw bytes (the mode's key size).  Like the Linux
 * fallback, which sets CRYPTO_TFM_REQ_FORBID_WEAK_KEYS, XTS refuses a key
 * whose two halves are equal.  A refused key leaves the cipher unkeyed
 * (Linux then fails with ENOKEY; here en/decryption fails with EINVAL).
 *
 * Return: 0, or -EINVAL (bad key) or -EIO (libgcrypt failed) with the
 * reason in ic_last_error().
 */
int ic_cipher_setkey (struct ic_cipher *cipher, const uint8_t *key,
                      size_t size);

/* Check that ic_cipher_setkey() would take @size bytes at @key for @mode
 * (the size; XTS halves that differ), without a cipher.
 *
 * Return: 0, or -EINVAL with the reason in ic_last_error().
 */
int ic_cipher_check_key (enum ic_crypto_mode_num mode, const uint8_t *key,
                         size_t size);

/* En/decrypt @len bytes from @src to @dst (which may be @src) as
 * @len / @data_unit_size data units starting at DUN @dun.  @len must be a
 * non-zero multiple of @data_unit_size, itself a multiple of 16 bytes.
 *
 * Context: no locks taken; never blocks.
 * Return: 0, -EINVAL for a bad length or an unkeyed cipher, or -EIO if
 * libgcrypt fails.
 */
int ic_cipher_encrypt (struct ic_cipher *cipher, void *dst, const void *src,
                       size_t len, unsigned int data_unit_size,
                       const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE]);
int ic_cipher_decrypt (struct ic_cipher *cipher, void *dst, const void *src,
                       size_t len, unsigned int data_unit_size,
                       const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE]);

/* Decrypt @len bytes of @src into @dst (which may be @src) like
 * ic_cipher_decrypt(), except that a data unit whose ciphertext is all
 * zero bytes is a hole (never written, trimmed or zeroed on the backing
 * store) and stays, or is made, all zero instead of being decrypted.
 * Beyond upstream: it is what makes unwritten and trimmed ranges of an
 * export read as zeros, as NBD clients expect.  Real ciphertext is all
 * zero with probability 2^-(8 * data unit size).
 *
 * Return: as ic_cipher_decrypt().
 */
int ic_cipher_decrypt_holes (struct ic_cipher *cipher, void *dst,
                             const void *src, size_t len,
                             unsigned int data_unit_size,
                             const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE]);

/* True if @len bytes at @buf are all zero. */
bool ic_is_zero (const void *buf, size_t len);

/* The mode of @cipher. */
enum ic_crypto_mode_num ic_cipher_mode (const struct ic_cipher *cipher);

/* Wipe and free.  NULL is ignored. */
void ic_cipher_free (struct ic_cipher *cipher);

#endif /* IC_CIPHER_H */

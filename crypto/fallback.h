/* crypto/fallback.h - the software fallback.  Follows Linux
 * block/blk-crypto-fallback.c: one crypto profile shared by the whole
 * process, with its own keyslots (num_keyslots, default 100), every mode at
 * every data unit size, 32 DUN bytes, raw keys only (it never handles
 * hardware-wrapped keys).  Each slot keeps ciphers prepared when the slot is
 * programmed, one active mode per slot (crypto/cipher-pool.h).
 *
 * The stack uses it for requests whose context the device they are
 * submitted to cannot take natively: writes are encrypted into a bounce
 * buffer before going down as plain I/O, reads are decrypted in place after
 * they come back (and left alone if they failed).
 *
 * Thread-safe.  A keyslot is held only while one piece of data is
 * en/decrypted, never across I/O.
 */
#ifndef IC_FALLBACK_H
#define IC_FALLBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypt-ctx.h"
#include "profile.h"

#define IC_FALLBACK_DEFAULT_KEYSLOTS 100
#define IC_FALLBACK_MAX_KEYSLOTS 65536

/* Counters of the fallback, per mode. */
struct ic_fallback_stats {
  struct ic_keyslot_stats slots;
  uint64_t encrypt_requests[IC_ENCRYPTION_MODE_MAX];
  uint64_t encrypt_bytes[IC_ENCRYPTION_MODE_MAX];
  uint64_t decrypt_requests[IC_ENCRYPTION_MODE_MAX];
  uint64_t decrypt_bytes[IC_ENCRYPTION_MODE_MAX];
};

/* Set the number of keyslots (the num_keyslots module parameter).  Only
 * before the fallback is first used.
 *
 * Return: 0, -EINVAL (out of range 1..65536) or -EBUSY (already in use).
 */
int ic_crypto_fallback_set_num_keyslots (unsigned int num_keyslots);

/* Initialise the fallback if not done yet (blk_crypto_fallback_init).
 *
 * Context: any; the first call allocates.
 * Return: 0, or -errno.
 */
int ic_crypto_fallback_init (void);

/* The fallback's profile (to evict keys from it, read its stats), or NULL
 * before ic_crypto_fallback_init().
 */
struct ic_crypto_profile *ic_crypto_fallback_profile (void);

/* Set the capability fields of @caps (modes, DUN bytes, key types) to
 * what the fallback supports, for a stacked device that weighs what its
 * children can take; the other fields are left alone.
 */
void ic_crypto_fallback_capabilities (struct ic_crypto_profile *caps);

/* True if the fallback can take keys of @cfg (raw keys, every mode). */
bool ic_crypto_fallback_supports (const struct ic_crypto_config *cfg);

/* Encrypt @len bytes of @src into @dst (a bounce buffer) as data units of
 * @ctx's key from @ctx's DUN (blk_crypto_fallback_encrypt_bio).
 *
 * Context: takes and releases a fallback keyslot; may wait for one.
 * Return: 0, -EOPNOTSUPP for a wrapped key, or -errno.
 */
int ic_crypto_fallback_encrypt (const struct ic_crypt_ctx *ctx, void *dst,
                                const void *src, size_t len);

/* Decrypt @len bytes of @src into @dst, which may be @src: in place, as
 * blk_crypto_fallback_decrypt_bio does.  All-zero data units are holes
 * and stay zero (ic_cipher_decrypt_holes()).
 */
int ic_crypto_fallback_decrypt (const struct ic_crypt_ctx *ctx, void *dst,
                                const void *src, size_t len);

/* Evict @key from the fallback's keyslots (see ic_crypto_evict_key()).
 * Return: 0 if the fallback was never used.
 */
int ic_crypto_fallback_evict_key (const struct ic_crypto_key *key);

/* Copy the counters; with @reset, zero them after. */
void ic_crypto_fallback_read_stats (struct ic_fallback_stats *stats,
                                    bool reset);

/* Number of keyslots the fallback has or will have. */
unsigned int ic_crypto_fallback_num_keyslots (void);

/* Free the fallback (at unload).  No request may be using it. */
void ic_crypto_fallback_destroy (void);

#endif /* IC_FALLBACK_H */

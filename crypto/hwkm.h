/* crypto/hwkm.h - the emulated hardware key manager of an engine: what the
 * Qualcomm HWKM behind TrustZone is to an ICE (drivers/soc/qcom/ice.c
 * qcom_ice_import_key, qcom_ice_generate_key, qcom_ice_prepare_key,
 * qcom_ice_derive_sw_secret), following the "Hardware-wrapped keys"
 * section of Linux Documentation/block/inline-encryption.rst.
 *
 * A hardware-wrapped key is a 32-byte secret (the KDF's "master key") that
 * software only ever sees wrapped:
 *   - long-term wrapped by the persistent long-term wrapping key, the form
 *     userspace stores (made once, by import or generate);
 *   - ephemerally wrapped by a per-process ephemeral wrapping key, the form
 *     the key object holds and keyslots are programmed with (made by
 *     prepare at each start; so keys can be reprogrammed after an engine
 *     reset without the raw key).
 * Inside the "hardware", the hardware KDF turns the master key into the
 * 64-byte AES-256-XTS inline encryption key (programmed into a keyslot,
 * never returned) and the 32-byte software secret (returned to software,
 * e.g. for fscrypt's other keys).  The KDF is the one all known hardware
 * uses and xfstests replicates (src/fscrypt-crypt-util.c hw_kdf()): NIST
 * SP 800-108 counter mode, PRF AES-256-CMAC, 16-byte output block i
 * (from 1) = CMAC(master, be32(i) | label | 0x00 | context | be32(L)),
 * label = 00 00 40 00 00 00 00 00 00 00 20, L = output bits, contexts:
 *   inline key (L = 512): "inline encryption key" 00*6
 *                         02 43 00 82 50 00 00 00 00
 *   software secret (L = 256): "raw secret" 00*9 02 17 00 80 50 00 00 00 00
 *
 * Blobs (both forms; IC_HWKM_BLOB_SIZE = 61 bytes, within Linux's 128 and
 * above AES-256-XTS's 32-byte security strength, so ic_crypto_init_key()
 * takes an ephemeral blob as an IC_CRYPTO_KEY_TYPE_HW_WRAPPED key):
 *   byte  0      format version, 1
 *   bytes 1..12  random GCM nonce
 *   bytes 13..44 the 32-byte master key, AES-256-GCM encrypted under the
 *                form's wrapping key
 *   bytes 45..60 GCM tag over the above, with additional data = the
 *                version byte followed by "inlinecrypt-hwkm long-term" or
 *                "inlinecrypt-hwkm ephemeral" (no NUL): a blob of one form
 *                never opens as the other (-EBADMSG), even if both
 *                wrapping keys were equal.
 *
 * Imported raw keys may be 16 to 64 bytes, as BLKCRYPTOIMPORTKEY allows.
 * The KDF takes exactly a 32-byte master key (xfstests' hw_kdf() refuses
 * any other size, and it imports 32-byte raw keys), so a 32-byte raw key
 * IS the master key: ciphertext of such a key can be checked by anyone
 * who knows it (tests/hwkdf.py, xfstests --enable-hw-kdf).  Other sizes
 * are mapped to master = SHA-256(raw key) at import (beyond upstream,
 * which leaves it to the hardware): still reproducible in software, and
 * no entropy of a longer key is dropped.  Blobs then all have one size.
 *
 * The long-term wrapping key is 32 random bytes kept in hex in a file
 * (wrapping-key=FILE): created with mode 0600 from
 * GCRY_VERY_STRONG_RANDOM on first use; a file readable or writable by
 * group or others is refused.  Engines opening the same file (same device
 * and inode) share one key manager, ephemeral key included, as engines
 * behind one HWKM do, so blobs of one work on all of them (what a stacked
 * device over several engines needs).  The ephemeral wrapping key is
 * random when the key manager is created and lives until its last engine
 * is freed.  Every key and unwrapped secret is in locked memory
 * (crypto/secmem.h) and wiped after use.
 *
 * Threading: thread-safe.  A key manager is immutable once created; only
 * its reference count changes (registry_lock in hwkm.c covers the list of
 * open key managers).  Operations may block briefly on libgcrypt's RNG.
 */
#ifndef IC_HWKM_H
#define IC_HWKM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mode.h"

struct ic_hwkm;

#define IC_HWKM_BLOB_VERSION      1
#define IC_HWKM_NONCE_SIZE        12
#define IC_HWKM_TAG_SIZE          16
#define IC_HWKM_MASTER_KEY_SIZE   32    /* what a blob wraps: KDF input */
#define IC_HWKM_WRAPPING_KEY_SIZE 32    /* AES-256-GCM */
#define IC_HWKM_BLOB_SIZE \
  (1 + IC_HWKM_NONCE_SIZE + IC_HWKM_MASTER_KEY_SIZE + IC_HWKM_TAG_SIZE)
#define IC_HWKM_INLINE_KEY_SIZE   64    /* an AES-256-XTS key */
/* Raw key sizes BLKCRYPTOIMPORTKEY takes. */
#define IC_HWKM_MIN_RAW_KEY_SIZE  16
#define IC_HWKM_MAX_RAW_KEY_SIZE  IC_CRYPTO_MAX_RAW_KEY_SIZE

/* Open the key manager whose long-term wrapping key is in @path, creating
 * the file (0600, random key) if it does not exist; *@created (if not
 * NULL) says whether this call created it.  If a key manager for that
 * file is open already, it is shared.
 *
 * Context: takes registry_lock; file I/O.
 * Return: a reference, or NULL with errno set and the reason in
 * ic_last_error(): EACCES (readable or writable by group or others),
 * EINVAL (not a regular file, not 64 hex digits), ENOMEM, or the errno of
 * open/read/write.
 */
struct ic_hwkm *ic_hwkm_open (const char *path, bool *created);

/* A key manager whose long-term wrapping key is random and never stored:
 * its long-term blobs are worthless once it is freed.  For engines built
 * without a wrapping-key file, and tests.
 *
 * Return: a reference, or NULL with errno = ENOMEM.
 */
struct ic_hwkm *ic_hwkm_new_volatile (void);

/* Take / drop a reference.  The last put wipes and frees it.  NULL is
 * ignored by put.
 */
struct ic_hwkm *ic_hwkm_get (struct ic_hwkm *hwkm);
void ic_hwkm_put (struct ic_hwkm *hwkm);

/* The wrapping-key file's path as opened, or "(volatile)". */
const char *ic_hwkm_name (const struct ic_hwkm *hwkm);

/* The four operations.  @who names the caller in messages (the engine).
 * Output buffers are IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE bytes, as the
 * ll_ops' (the capacity checks of the ioctls are in
 * ic_crypto_ioctl_*_key(), crypto/profile.h).
 *
 * import: wrap @raw_key (16..64 bytes) for the long term.
 * Return: IC_HWKM_BLOB_SIZE, or -EINVAL (size), -EIO (libgcrypt).
 */
int ic_hwkm_import_key (struct ic_hwkm *hwkm, const char *who,
                        const uint8_t *raw_key, size_t raw_key_size,
                        uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);

/* generate: a random master key (GCRY_VERY_STRONG_RANDOM), wrapped for
 * the long term; nobody ever sees it in the clear.
 * Return: IC_HWKM_BLOB_SIZE, or -EIO.
 */
int ic_hwkm_generate_key (struct ic_hwkm *hwkm, const char *who,
                          uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);

/* prepare: unwrap a long-term blob and wrap it again ephemerally.
 * Return: IC_HWKM_BLOB_SIZE, or -EBADMSG (not a valid long-term blob of
 * this key manager: size, version, authentication), -EIO.
 */
int ic_hwkm_prepare_key (struct ic_hwkm *hwkm, const char *who,
                         const uint8_t *lt_key, size_t lt_key_size,
                         uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);

/* derive_sw_secret: the software secret of an ephemeral blob.
 * Return: 0, or -EBADMSG (not a valid ephemeral blob), -EIO.
 */
int ic_hwkm_derive_sw_secret (struct ic_hwkm *hwkm, const char *who,
                              const uint8_t *eph_key, size_t eph_key_size,
                              uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE]);

/* What keyslot programming does inside the hardware: unwrap an ephemeral
 * blob and derive the AES-256-XTS inline encryption key.  @inline_key
 * should be locked memory; it is wiped on failure.
 * Return: 0, or -EBADMSG, -EIO.
 */
int ic_hwkm_derive_inline_key (struct ic_hwkm *hwkm, const char *who,
                               const uint8_t *eph_key, size_t eph_key_size,
                               uint8_t inline_key[IC_HWKM_INLINE_KEY_SIZE]);

/* The hardware KDF on a known master key: @out_size bytes (a multiple of
 * 16) for @context (at most 64 bytes).  Exposed for the known-answer
 * tests.
 * Return: 0, or -EINVAL (sizes), -EIO (libgcrypt).
 */
int ic_hw_kdf (const uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE],
               const uint8_t *context, size_t context_size,
               uint8_t *out, size_t out_size);

/* The two derivations, with the contexts above. */
int ic_hw_kdf_inline_key (const uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE],
                          uint8_t inline_key[IC_HWKM_INLINE_KEY_SIZE]);
int ic_hw_kdf_sw_secret (const uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE],
                         uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE]);

/* The master key an imported raw key becomes: the key itself if it has 32
 * bytes, else SHA-256 of it.
 * Return: 0, or -EINVAL if @raw_key_size is not 16..64.
 */
int ic_hwkm_master_key_from_raw (const uint8_t *raw_key, size_t raw_key_size,
                                 uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE]);

#endif /* IC_HWKM_H */

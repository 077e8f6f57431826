/* crypto/secmem.h - libgcrypt set-up and locked memory for key material.
 *
 * Key bytes and every cipher state derived from them live in libgcrypt's
 * secure memory: pages locked with mlock(2) so they never reach swap, wiped
 * when freed.  The pool has IC_SECMEM_SIZE bytes; libgcrypt grows it on
 * demand with memory it does not lock (ic_secmem_check() notices).  As an
 * unprivileged user whose RLIMIT_MEMLOCK is too small, libgcrypt falls
 * back to unlocked pages; ic_secmem_locked() tells which.
 *
 * Thread-safe once ic_crypto_init() has returned.
 */
#ifndef IC_SECMEM_H
#define IC_SECMEM_H

#include <stdbool.h>
#include <stddef.h>

/* The locked pool: IC_SECMEM_SIZE bytes where memory may be locked that
 * much (CAP_IPC_LOCK, or RLIMIT_MEMLOCK twice that), else half of
 * RLIMIT_MEMLOCK (the other half is for the control server's input
 * buffers), at least IC_SECMEM_MIN, libgcrypt's smallest pool.  A key with
 * its ciphers takes a few KiB, so 8 MiB holds thousands of them, and the
 * 32 KiB of a 64 KiB limit a few.
 */
#define IC_SECMEM_SIZE (8 * 1024 * 1024)
#define IC_SECMEM_MIN (16 * 1024)

/* Initialise libgcrypt (version check, secure memory).  Idempotent.
 *
 * Context: any thread; the first call does the work.
 * Return: 0, or -errno with the reason in ic_last_error().
 */
int ic_crypto_init (void);

/* Allocate @size zeroed bytes of secure memory.
 *
 * Return: the memory, or NULL with errno = ENOMEM.
 */
void *ic_secure_alloc (size_t size);

/* Wipe @size bytes at @p and free them.  NULL is ignored. */
void ic_secure_free (void *p, size_t size);

/* Wipe @size bytes in a way the compiler cannot elide. */
void ic_memzero_explicit (void *p, size_t size);

/* SHA-256 of @len bytes at @in into @out, for digests that are keys (the
 * ESSIV key, a KDF's master key): the hash state lives in secure memory
 * and is wiped after, where gcry_md_hash_buffer() leaves it, digest
 * included, on the caller's stack.
 *
 * Return: 0, or -ENOMEM.
 */
int ic_sha256_secure (unsigned char out[32], const void *in, size_t len);

/* True if the secure memory pool is locked in RAM and nothing secure has
 * been placed outside it.
 */
bool ic_secmem_locked (void);

/* Check that secure memory at @p lies in the locked pool.  When it is full
 * libgcrypt adds pools of ordinary memory; the first allocation there is
 * reported once and makes ic_secmem_locked() false from then on.
 */
void ic_secmem_check (const void *p);

#endif /* IC_SECMEM_H */

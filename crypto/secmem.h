/* crypto/secmem.h - libgcrypt set-up and locked memory for key material.
 *
 * Key bytes and every cipher state derived from them live in libgcrypt's
 * secure memory: pages locked with mlock(2) so they never reach swap, wiped
 * when freed.  The pool starts at IC_SECMEM_INITIAL bytes and grows on
 * demand.  As an unprivileged user whose RLIMIT_MEMLOCK is too small,
 * libgcrypt falls back to unlocked pages; ic_secmem_locked() tells which.
 *
 * Thread-safe once ic_crypto_init() has returned.
 */
#ifndef IC_SECMEM_H
#define IC_SECMEM_H

#include <stdbool.h>
#include <stddef.h>

#define IC_SECMEM_INITIAL (256 * 1024)

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

/* True if the secure memory pool is locked in RAM. */
bool ic_secmem_locked (void);

#endif /* IC_SECMEM_H */

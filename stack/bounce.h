/* stack/bounce.h - bounce buffers for encrypted writes.  A write is
 * encrypted into a bounce buffer, never into the client's data.
 *
 * Each thread keeps its last buffer of up to IC_BOUNCE_CACHE_MAX bytes for
 * the next request (no allocation on the hot path); larger requests get a
 * buffer of their own.  Buffers are page-aligned.  Thread-safe (per-thread
 * state only).
 */
#ifndef IC_BOUNCE_H
#define IC_BOUNCE_H

#include <stddef.h>

#define IC_BOUNCE_CACHE_MAX (4u << 20)

/* A buffer of at least @len bytes, or NULL with errno = ENOMEM. */
void *ic_bounce_get (size_t len);

/* Give back a buffer from ic_bounce_get().  Bounce buffers only ever
 * hold ciphertext (reads decrypt in the caller's buffer), so they are not
 * wiped.  NULL is ignored.
 */
void ic_bounce_put (void *buf, size_t len);

#endif /* IC_BOUNCE_H */

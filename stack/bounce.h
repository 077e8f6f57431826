/* stack/bounce.h - bounce buffers for encrypted writes.  A write is
 * encrypted into a bounce buffer, never into the client's data.
 *
 * No allocation on the hot path: each thread keeps its last small buffer
 * (up to IC_BOUNCE_SMALL bytes), and larger ones come from a pool shared
 * by all threads that keeps at most IC_BOUNCE_POOL_MAX idle bytes, so that
 * the memory of a server with a thousand threads stays bounded.  Large
 * buffers in use are bounded too: a get that would take more than
 * IC_BOUNCE_BUDGET bytes in all waits until others give theirs back (a
 * request larger than the budget waits until it is alone), and the idle
 * ones in the pool make room for new ones, so that 256 writes of 1 MiB in
 * flight do not cost 256 MiB more than the server itself, nor the pool
 * another budget on top.
 *
 * The sizes: nbdkit runs 16 threads per connection, so 64 connections
 * that once wrote 4 or 8 KiB keep 1024 small buffers (12 MiB with their
 * header pages); were 64 KiB writes small, they would keep 68 MiB.  The
 * budget is 64 of the 256 KiB pieces that leaves encrypt large writes in,
 * far more than two CPUs keep busy, and what it costs at most, with one
 * exception: the writes a mirror has registered (overlapping writes wait
 * for them) never wait for the budget (ic_bounce_nowait_begin()), and may
 * take beyond it up to a piece each (256 KiB at a local leaf, the whole
 * request at a remote one), so that no wait for it closes a cycle.
 * Buffers are page-aligned.  Thread-safe.
 */
#ifndef IC_BOUNCE_H
#define IC_BOUNCE_H

#include <stddef.h>

#define IC_BOUNCE_SMALL (8u << 10)
#define IC_BOUNCE_POOL_MAX (16u << 20)
#define IC_BOUNCE_BUDGET (16u << 20)

/* A buffer of at least @len bytes, or NULL with errno = ENOMEM.
 * Context: may wait for other threads to put theirs (never when this
 * thread already holds a large one, so nested gets cannot deadlock).
 */
void *ic_bounce_get (size_t len);

/* Between ic_bounce_nowait_begin() and the matching
 * ic_bounce_nowait_end() (they nest), the calling thread holds something
 * that a holder of large buffers may be waiting for (a mirror's
 * registration of a write in flight, which overlapping writes wait for,
 * maybe with the bounce buffer of a device's fallback): its gets then
 * never wait for the budget, as when it holds a large buffer already, so
 * that such a wait cannot close a cycle.  The budget may be exceeded by
 * what these threads take meanwhile.  (Anything else a holder may wait
 * for, such as a keyslot, is taken after the bounce buffer.)
 */
void ic_bounce_nowait_begin (void);
void ic_bounce_nowait_end (void);

/* Give back a buffer from ic_bounce_get().  Bounce buffers only ever
 * hold ciphertext (reads decrypt in the caller's buffer), so they are not
 * wiped.  NULL is ignored.
 */
void ic_bounce_put (void *buf, size_t len);

/* Bytes of large buffers in use and idle in the pool, for tests. */
void ic_bounce_usage (size_t *in_use, size_t *idle);

/* Gets waiting for the budget now, for tests. */
unsigned int ic_bounce_waiting (void);

#endif /* IC_BOUNCE_H */

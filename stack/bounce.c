/* stack/bounce.c - see bounce.h.
 *
 * A buffer is preceded by a page holding its size, so that nested gets
 * (a fallback bounce going down to a leaf that bounces again) never mix
 * sizes up.  Small buffers (up to IC_BOUNCE_SMALL) are cached one per
 * thread: nbdkit runs many threads, most of them idle, so a large
 * per-thread cache would pin memory for nothing.  Large ones come from a
 * pool shared by all threads, in power-of-two size classes, that keeps at
 * most IC_BOUNCE_POOL_MAX bytes of idle buffers; they are mapped and
 * unmapped directly, so that what the pool does not keep goes back to the
 * system.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "bounce.h"

#define HEADER 4096

/* Large size classes: 2^SMALL_SHIFT+1 .. 2^MAX_SHIFT bytes. */
#define SMALL_SHIFT 13
#define MAX_SHIFT 26
#define CLASSES (MAX_SHIFT - SMALL_SHIFT)

struct cache {
  void *buf;                    /* the cached small buffer, or NULL */
  unsigned int large_held;      /* large buffers this thread holds */
  unsigned int nowait;          /* ic_bounce_nowait_begin() depth */
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

/* The shared pool of large buffers: pool_lock covers pool[], pool_bytes,
 * large_in_use and the queue, and is held for a push or a pop only (and
 * by a get waiting for the budget, in pthread_cond_wait).
 *
 * Gets that must wait for the budget are served in the order they came:
 * each takes a ticket.  While the first in line does not fit, a new get
 * queues too rather than take what was freed: otherwise a stream of
 * mid-size gets (writes of 16-64 KiB) could keep a request that needs
 * the whole budget waiting for ever.  Otherwise a get that fits goes
 * ahead, so that a queue, once formed, does not make every later get
 * wait its turn (throughput fell 13-fold and stayed there when they
 * did).
 */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t budget_cond = PTHREAD_COND_INITIALIZER;
static void *pool[CLASSES];             /* linked through their header */
static size_t pool_bytes;
static size_t large_in_use;             /* bytes of large buffers out */
static unsigned int budget_waiters;
static uint64_t next_ticket;            /* the next waiter's */
static uint64_t now_serving;            /* the ticket that may go next */
static bool head_blocked;               /* its get does not fit */

static size_t
buf_size (void *buf)
{
  return *(size_t *) ((char *) buf - HEADER);
}

/* The next buffer of a pool list, kept in the header after the size. */
static void **
buf_next (void *buf)
{
  return (void **) ((char *) buf - HEADER + sizeof (size_t));
}

static void *
buf_alloc (size_t size)
{
  void *p;

  if (size <= IC_BOUNCE_SMALL) {
    if (posix_memalign (&p, 4096, HEADER + size) != 0)
      p = NULL;
  }
  else {
    p = mmap (NULL, HEADER + size, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      p = NULL;
  }
  if (!p) {
    errno = ENOMEM;
    return NULL;
  }
  *(size_t *) p = size;
  return (char *) p + HEADER;
}

static void
buf_free (void *buf)
{
  size_t size;

  if (!buf)
    return;
  size = buf_size (buf);
  if (size <= IC_BOUNCE_SMALL)
    free ((char *) buf - HEADER);
  else
    munmap ((char *) buf - HEADER, HEADER + size);
}

static void
free_cache (void *p)
{
  struct cache *c = p;

  buf_free (c->buf);
  free (c);
}

static void
make_key (void)
{
  pthread_key_create (&cache_key, free_cache);
}

static struct cache *
thread_cache (void)
{
  struct cache *c;

  pthread_once (&cache_once, make_key);
  c = pthread_getspecific (cache_key);
  if (!c) {
    c = calloc (1, sizeof *c);
    if (c)
      pthread_setspecific (cache_key, c);
  }
  return c;
}

/* Round up to a power of two, at least a page. */
static size_t
round_size (size_t len)
{
  size_t size;

  for (size = 4096; size < len; size <<= 1)
    ;
  return size;
}

static int
class_of (size_t size)
{
  return __builtin_ctzll (size) - SMALL_SHIFT - 1;
}

/* Take idle buffers out of the pool, largest first, while the large
 * buffers in use and idle together exceed the budget; chain them on
 * *@unmap for the caller to free after dropping pool_lock.  Context:
 * pool_lock held.
 */
static void
trim_pool (void **unmap)
{
  int k;

  for (k = CLASSES - 1; k >= 0; k--)
    while (pool[k] && large_in_use + pool_bytes > IC_BOUNCE_BUDGET) {
      void *p = pool[k];

      pool[k] = *buf_next (p);
      pool_bytes -= buf_size (p);
      *buf_next (p) = *unmap;
      *unmap = p;
    }
}

/* A large buffer of @size bytes may be taken now: within the budget, or
 * alone.  Context: pool_lock held.
 */
static bool
fits (size_t size)
{
  return large_in_use == 0 || large_in_use + size <= IC_BOUNCE_BUDGET;
}

void *
ic_bounce_get (size_t len)
{
  size_t size = round_size (len);
  void *unmap = NULL;
  struct cache *c;
  void *p = NULL;

  if (size <= IC_BOUNCE_SMALL) {
    c = thread_cache ();
    if (c && c->buf && buf_size (c->buf) >= len) {
      p = c->buf;
      c->buf = NULL;
      return p;
    }
    return buf_alloc (size);
  }
  c = thread_cache ();
  pthread_mutex_lock (&pool_lock);
  /* A thread that holds a large buffer already, or something a holder of
   * one may wait for (ic_bounce_nowait_begin()), never waits, so that
   * nested gets cannot deadlock; the others queue when they do not fit,
   * or when the first in line does not.
   */
  if (!(c && (c->large_held || c->nowait)) &&
      (!fits (size) || (budget_waiters && head_blocked))) {
    uint64_t ticket = next_ticket++;

    budget_waiters++;
    for (;;) {
      if (ticket == now_serving) {
        head_blocked = !fits (size);
        if (!head_blocked)
          break;
      }
      pthread_cond_wait (&budget_cond, &pool_lock);
    }
    budget_waiters--;
    now_serving++;
    /* The next in line may fit beside this one. */
    if (budget_waiters)
      pthread_cond_broadcast (&budget_cond);
  }
  large_in_use += size;
  if (size <= ((size_t) 1 << MAX_SHIFT)) {
    int k = class_of (size);

    p = pool[k];
    if (p) {
      pool[k] = *buf_next (p);
      pool_bytes -= size;
    }
  }
  /* A new buffer is mapped: idle ones of other sizes make room for it,
   * so that in use and idle together stay within the budget.
   */
  if (!p)
    trim_pool (&unmap);
  pthread_mutex_unlock (&pool_lock);
  while (unmap) {
    void *next = *buf_next (unmap);

    buf_free (unmap);
    unmap = next;
  }
  if (!p)
    p = buf_alloc (size);
  if (!p) {
    pthread_mutex_lock (&pool_lock);
    large_in_use -= size;
    if (budget_waiters)
      pthread_cond_broadcast (&budget_cond);
    pthread_mutex_unlock (&pool_lock);
    return NULL;
  }
  if (c)
    c->large_held++;
  return p;
}

void
ic_bounce_nowait_begin (void)
{
  struct cache *c = thread_cache ();

  if (c)
    c->nowait++;
}

void
ic_bounce_nowait_end (void)
{
  struct cache *c = thread_cache ();

  if (c && c->nowait)
    c->nowait--;
}

unsigned int
ic_bounce_waiting (void)
{
  unsigned int n;

  pthread_mutex_lock (&pool_lock);
  n = budget_waiters;
  pthread_mutex_unlock (&pool_lock);
  return n;
}

void
ic_bounce_usage (size_t *in_use, size_t *idle)
{
  pthread_mutex_lock (&pool_lock);
  *in_use = large_in_use;
  *idle = pool_bytes;
  pthread_mutex_unlock (&pool_lock);
}

void
ic_bounce_put (void *buf, size_t len)
{
  size_t size;
  struct cache *c;

  if (!buf)
    return;
  size = buf_size (buf);
  if (size <= IC_BOUNCE_SMALL) {
    c = thread_cache ();
    if (c) {
      /* Keep the larger of the cached buffer and this one. */
      if (c->buf && buf_size (c->buf) >= size) {
        buf_free (buf);
        return;
      }
      buf_free (c->buf);
      c->buf = buf;
      return;
    }
  }
  else {
    c = thread_cache ();
    if (c && c->large_held)
      c->large_held--;
    pthread_mutex_lock (&pool_lock);
    large_in_use -= size;
    if (budget_waiters)
      pthread_cond_broadcast (&budget_cond);
    if (size <= ((size_t) 1 << MAX_SHIFT) &&
        pool_bytes + size <= IC_BOUNCE_POOL_MAX &&
        large_in_use + pool_bytes + size <= IC_BOUNCE_BUDGET) {
      int k = class_of (size);

      *buf_next (buf) = pool[k];
      pool[k] = buf;
      pool_bytes += size;
      buf = NULL;
    }
    pthread_mutex_unlock (&pool_lock);
  }
  buf_free (buf);
}

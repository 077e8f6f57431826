/* stack/bounce.c - see bounce.h.
 *
 * A buffer is preceded by a page holding its size, so that nested gets
 * (a fallback bounce going down to a leaf that bounces again) never mix
 * sizes up.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "bounce.h"

#define HEADER 4096

struct cache {
  void *buf;                    /* the cached buffer, or NULL */
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static size_t
buf_size (void *buf)
{
  return *(size_t *) ((char *) buf - HEADER);
}

static void
buf_free (void *buf)
{
  if (buf)
    free ((char *) buf - HEADER);
}

static void *
buf_alloc (size_t size)
{
  void *p;

  if (posix_memalign (&p, 4096, HEADER + size) != 0) {
    errno = ENOMEM;
    return NULL;
  }
  *(size_t *) p = size;
  return (char *) p + HEADER;
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

void *
ic_bounce_get (size_t len)
{
  struct cache *c;
  size_t size;
  void *p;

  if (len > IC_BOUNCE_CACHE_MAX)
    return buf_alloc (len);
  c = thread_cache ();
  if (c && c->buf && buf_size (c->buf) >= len) {
    p = c->buf;
    c->buf = NULL;
    return p;
  }
  /* Round up to a power of two so that a thread settles on one buffer. */
  for (size = 4096; size < len; size <<= 1)
    ;
  return buf_alloc (size);
}

void
ic_bounce_put (void *buf, size_t len)
{
  struct cache *c;

  if (!buf)
    return;
  if (buf_size (buf) <= IC_BOUNCE_CACHE_MAX && (c = thread_cache ())) {
    /* Keep the larger of the cached buffer and this one. */
    if (c->buf && buf_size (c->buf) >= buf_size (buf)) {
      buf_free (buf);
      return;
    }
    buf_free (c->buf);
    c->buf = buf;
    return;
  }
  buf_free (buf);
}

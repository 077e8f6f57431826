/* stack/leaf-nbd.c - a leaf that is a remote NBD export, through libnbd.
 * See ic_leaf_nbd_new() in leaf.h.
 *
 * Threading: pool->lock covers the free list of connections and the
 * reconnect schedule; a request holds one connection (not the lock) for
 * the duration of its NBD command.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "error.h"
#include "histogram.h"
#include "leaf.h"

#define MAX_CONNS 4
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct conn {
  struct nbd_handle *h;         /* NULL: broken, to be reopened */
  struct conn *next;            /* on the free list */
};

struct remote {
  struct ic_leaf leaf;
  char *uri;
  bool readonly;
  unsigned int nconns;
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* a connection came back */
  struct conn *free_list;       /* protected by lock */
  uint64_t next_connect_ns;     /* protected by lock: backoff */
  unsigned int backoff_ms;      /* protected by lock */
  uint64_t reconnects;          /* atomic */
  unsigned int timeout_ms;      /* per command; 0: none */
  struct conn conns[MAX_CONNS];
};

/* Open a connection, giving up after @timeout_ms (0: no limit): a server
 * that accepts the connection but never answers (a stopped process) must
 * not hang the request that reconnects.
 *
 * Return: the handle, or NULL with *err and the reason set.
 */
static struct nbd_handle *
nbd_open (const char *name, const char *uri, unsigned int timeout_ms,
          int *err)
{
  uint64_t deadline = ic_now_ns () + (uint64_t) timeout_ms * 1000000;
  struct nbd_handle *h = nbd_create ();

  if (!h) {
    ic_error ("%s: libnbd: %s", name, nbd_get_error ());
    *err = ENOMEM;
    return NULL;
  }
  if (nbd_aio_connect_uri (h, uri) == -1)
    goto out_failed;
  while (nbd_aio_is_connecting (h) == 1) {
    int left = -1;

    if (timeout_ms) {
      uint64_t now = ic_now_ns ();

      if (now >= deadline) {
        ic_error ("%s: connect to %s: no answer within %u ms", name, uri,
                  timeout_ms);
        *err = ETIMEDOUT;
        nbd_close (h);
        return NULL;
      }
      left = (deadline - now + 999999) / 1000000;
    }
    if (nbd_poll (h, left) == -1)
      goto out_failed;
  }
  if (nbd_aio_is_ready (h) != 1) {
    ic_error ("%s: connect to %s: %s", name, uri,
              nbd_get_error () ? nbd_get_error () : "the handshake failed");
    *err = nbd_get_errno () ? nbd_get_errno () : ECONNREFUSED;
    nbd_close (h);
    return NULL;
  }
  return h;

out_failed:
  *err = nbd_get_errno () ? nbd_get_errno () : ECONNREFUSED;
  ic_error ("%s: connect to %s: %s", name, uri, nbd_get_error ());
  nbd_close (h);
  return NULL;
}

static struct conn *
conn_get (struct remote *rm)
{
  struct conn *c;

  pthread_mutex_lock (&rm->lock);
  while (!rm->free_list)
    pthread_cond_wait (&rm->cond, &rm->lock);
  c = rm->free_list;
  rm->free_list = c->next;
  pthread_mutex_unlock (&rm->lock);
  return c;
}

static void
conn_put (struct remote *rm, struct conn *c)
{
  pthread_mutex_lock (&rm->lock);
  c->next = rm->free_list;
  rm->free_list = c;
  pthread_cond_signal (&rm->cond);
  pthread_mutex_unlock (&rm->lock);
}

/* Make sure @c is connected, reopening it if the backoff allows.
 *
 * Return: 0, or -EIO while the server is away.
 */
static int
conn_ready (struct remote *rm, struct conn *c)
{
  const char *name = rm->leaf.dev.name;
  uint64_t now = ic_now_ns ();
  struct nbd_handle *h;
  bool try = false;
  int err = 0;

  if (c->h)
    return 0;
  pthread_mutex_lock (&rm->lock);
  if (now >= rm->next_connect_ns) {
    try = true;
    rm->next_connect_ns = now + (uint64_t) rm->backoff_ms * 1000000;
    rm->backoff_ms = rm->backoff_ms * 2 > BACKOFF_MAX_MS
      ? BACKOFF_MAX_MS : rm->backoff_ms * 2;
  }
  pthread_mutex_unlock (&rm->lock);
  if (!try) {
    ic_error ("%s: %s is unreachable; retrying later", name, rm->uri);
    return -EIO;
  }
  h = nbd_open (name, rm->uri, rm->timeout_ms, &err);
  if (!h)
    return -EIO;
  if ((uint64_t) nbd_get_size (h) < rm->leaf.dev.size) {
    ic_error ("%s: %s came back smaller than before", name, rm->uri);
    nbd_close (h);
    return -EIO;
  }
  c->h = h;
  __atomic_fetch_add (&rm->reconnects, 1, __ATOMIC_RELAXED);
  pthread_mutex_lock (&rm->lock);
  rm->backoff_ms = BACKOFF_MIN_MS;
  rm->next_connect_ns = 0;
  pthread_mutex_unlock (&rm->lock);
  ic_debug ("%s: reconnected to %s", name, rm->uri);
  return 0;
}

/* After a failed command: the connection may be dead. */
static int
command_failed (struct remote *rm, struct conn *c, const char *op,
                uint64_t len, uint64_t offset)
{
  int err = nbd_get_errno ();

  ic_error ("%s: %s %" PRIu64 " bytes at %" PRIu64 ": %s", rm->leaf.dev.name,
            op, len, offset, nbd_get_error ());
  if (nbd_aio_is_dead (c->h) || nbd_aio_is_closed (c->h)) {
    nbd_close (c->h);
    c->h = NULL;
    return -EIO;
  }
  return err ? -err : -EIO;
}

enum remote_op { R_READ, R_WRITE, R_FLUSH, R_TRIM, R_ZERO };

/* Start one command on @c.  Return: its cookie, or -1. */
static int64_t
start_command (struct conn *c, enum remote_op op, void *buf, uint64_t len,
               uint64_t offset, uint32_t flags)
{
  switch (op) {
  case R_READ:
    return nbd_aio_pread (c->h, buf, len, offset, NBD_NULL_COMPLETION, 0);
  case R_WRITE:
    return nbd_aio_pwrite (c->h, buf, len, offset, NBD_NULL_COMPLETION,
                           flags);
  case R_FLUSH:
    return nbd_aio_flush (c->h, NBD_NULL_COMPLETION, 0);
  case R_TRIM:
    return nbd_aio_trim (c->h, len, offset, NBD_NULL_COMPLETION, flags);
  case R_ZERO:
    return nbd_aio_zero (c->h, len, offset, NBD_NULL_COMPLETION, flags);
  }
  return -1;
}

/* Wait for command @cookie on @c, at most rm->timeout_ms (0: for ever).
 *
 * Return: 0, -1 if the command failed (libnbd's error set), or -ETIMEDOUT
 * if the server did not answer in time.
 */
static int
wait_command (struct remote *rm, struct conn *c, int64_t cookie)
{
  uint64_t deadline = ic_now_ns () + (uint64_t) rm->timeout_ms * 1000000;
  int r;

  while ((r = nbd_aio_command_completed (c->h, cookie)) == 0) {
    int left = -1;

    if (rm->timeout_ms) {
      uint64_t now = ic_now_ns ();

      if (now >= deadline)
        return -ETIMEDOUT;
      left = (deadline - now + 999999) / 1000000;
    }
    if (nbd_poll (c->h, left) == -1)
      return -1;
  }
  return r == 1 ? 0 : -1;
}

/* One command on a connection of the pool.  A server that does not answer
 * within the timeout loses the connection (a later request reconnects),
 * and the request fails with EIO instead of hanging.
 */
static int
remote_io (struct ic_leaf *leaf, enum remote_op op, void *buf, uint64_t len,
           uint64_t offset, uint32_t flags)
{
  static const char *const names[] = { "read", "write", "flush", "trim",
                                       "zero" };
  struct remote *rm = (struct remote *) leaf;
  struct conn *c = conn_get (rm);
  int64_t cookie;
  int r;

  r = conn_ready (rm, c);
  if (r == 0) {
    cookie = start_command (c, op, buf, len, offset, flags);
    r = cookie == -1 ? -1 : wait_command (rm, c, cookie);
    if (r == -ETIMEDOUT) {
      ic_error ("%s: %s %" PRIu64 " bytes at %" PRIu64 ": no answer from %s "
                "within %u ms; dropping the connection", leaf->dev.name,
                names[op], len, offset, rm->uri, rm->timeout_ms);
      nbd_close (c->h);
      c->h = NULL;
      r = -EIO;
    }
    else if (r == -1)
      r = command_failed (rm, c, names[op], len, offset);
  }
  conn_put (rm, c);
  return r;
}

static int
remote_pread (struct ic_leaf *leaf, void *buf, uint64_t len, uint64_t offset)
{
  return remote_io (leaf, R_READ, buf, len, offset, 0);
}

static int
remote_pwrite (struct ic_leaf *leaf, const void *buf, uint64_t len,
               uint64_t offset, bool fua)
{
  struct remote *rm = (struct remote *) leaf;
  int r = remote_io (leaf, R_WRITE, (void *) buf, len, offset,
                     fua && (leaf->dev.features & IC_DEV_CAN_FUA)
                     ? LIBNBD_CMD_FLAG_FUA : 0);

  /* A server without FUA: flush instead. */
  if (r == 0 && fua && !(rm->leaf.dev.features & IC_DEV_CAN_FUA))
    r = remote_io (leaf, R_FLUSH, NULL, 0, 0, 0);
  return r;
}

static int
remote_flush (struct ic_leaf *leaf)
{
  return remote_io (leaf, R_FLUSH, NULL, 0, 0, 0);
}

static int
remote_zero (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
             bool may_trim, bool fua)
{
  static const char zeros[65536];
  uint32_t flags = (may_trim ? 0 : LIBNBD_CMD_FLAG_NO_HOLE) |
                   (fua ? LIBNBD_CMD_FLAG_FUA : 0);
  int r;

  if (leaf->dev.features & IC_DEV_CAN_ZERO)
    return remote_io (leaf, R_ZERO, NULL, len, offset, flags);
  /* No WRITE_ZEROES on the server: write them. */
  for (r = 0; r == 0 && len > 0;) {
    uint64_t n = len < sizeof zeros ? len : sizeof zeros;

    r = remote_pwrite (leaf, zeros, n, offset, fua && n == len);
    offset += n;
    len -= n;
  }
  return r;
}

static int
remote_trim (struct ic_leaf *leaf, uint64_t len, uint64_t offset, bool fua)
{
  /* TRIM is advisory: a server without it keeps the data. */
  if (!(leaf->dev.features & IC_DEV_CAN_TRIM))
    return 0;
  return remote_io (leaf, R_TRIM, NULL, len, offset,
                    fua ? LIBNBD_CMD_FLAG_FUA : 0);
}

static void
remote_destroy (struct ic_leaf *leaf)
{
  struct remote *rm = (struct remote *) leaf;
  unsigned int i;

  for (i = 0; i < rm->nconns; i++)
    if (rm->conns[i].h) {
      nbd_shutdown (rm->conns[i].h, 0);
      nbd_close (rm->conns[i].h);
    }
  pthread_mutex_destroy (&rm->lock);
  pthread_cond_destroy (&rm->cond);
  free (rm->uri);
  free (rm);
}

static const struct ic_leaf_ops remote_ops = {
  .type = "nbd",
  .pread = remote_pread,
  .pwrite = remote_pwrite,
  .flush = remote_flush,
  .trim = remote_trim,
  .zero = remote_zero,
  .destroy = remote_destroy,
};

struct ic_device *
ic_leaf_nbd_new (const char *name, const char *uri, uint64_t size,
                 bool readonly, unsigned int timeout_ms,
                 struct ic_engine *engine)
{
  struct remote *rm;
  struct nbd_handle *h;
  unsigned int features = 0;
  int64_t export_size;
  unsigned int i;
  int err = 0;

  h = nbd_open (name, uri, timeout_ms, &err);
  if (!h) {
    errno = err;
    return NULL;
  }
  export_size = nbd_get_size (h);
  if (export_size < 0) {
    ic_error ("%s: size of %s: %s", name, uri, nbd_get_error ());
    err = EIO;
    goto out_close;
  }
  if (size == 0)
    size = export_size;
  else if (size > (uint64_t) export_size) {
    ic_error ("%s: %s has %" PRId64 " bytes, fewer than size=%" PRIu64,
              name, uri, export_size, size);
    err = EINVAL;
    goto out_close;
  }
  if (!readonly && nbd_is_read_only (h) == 1) {
    ic_error ("%s: %s is read-only; give readonly=true", name, uri);
    err = EROFS;
    goto out_close;
  }
  if (nbd_can_fua (h) == 1)
    features |= IC_DEV_CAN_FUA;
  if (nbd_can_trim (h) == 1)
    features |= IC_DEV_CAN_TRIM;
  if (nbd_can_zero (h) == 1)
    features |= IC_DEV_CAN_ZERO;
  if (nbd_can_multi_conn (h) == 1)
    features |= IC_DEV_CAN_MULTI_CONN;

  rm = calloc (1, sizeof *rm);
  if (!rm || !(rm->uri = strdup (uri))) {
    free (rm);
    ic_error ("%s: out of memory", name);
    err = ENOMEM;
    goto out_close;
  }
  rm->readonly = readonly;
  rm->timeout_ms = timeout_ms;
  /* Several connections only when flushes cover them all. */
  rm->nconns = (features & IC_DEV_CAN_MULTI_CONN) ? MAX_CONNS : 1;
  rm->backoff_ms = BACKOFF_MIN_MS;
  pthread_mutex_init (&rm->lock, NULL);
  pthread_cond_init (&rm->cond, NULL);
  rm->conns[0].h = h;
  for (i = 1; i < rm->nconns; i++)
    rm->conns[i].h = nbd_open (name, uri, timeout_ms, &err);  /* NULL: later */
  for (i = rm->nconns; i-- > 0;) {
    rm->conns[i].next = rm->free_list;
    rm->free_list = &rm->conns[i];
  }
  ic_leaf_init (&rm->leaf, name, size, &remote_ops, engine, features);
  return &rm->leaf.dev;

out_close:
  nbd_close (h);
  errno = err;
  return NULL;
}

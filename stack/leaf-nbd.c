/* stack/leaf-nbd.c - a leaf that is a remote NBD export, through libnbd.
 * See ic_leaf_nbd_new() in leaf.h.
 *
 * Threading: rm->lock covers the free list of connections, the reconnect
 * schedule and the abandoned commands (conn->abandoned, rm->nabandoned);
 * it is never held across I/O or a wait for the server.  A request holds
 * one connection (not the lock) for the duration of its NBD command, and
 * owns conn->h meanwhile; a connection on the free list is given a handle
 * only under the lock.  An abandoned command is polled by one request at a
 * time (abandoned.polling), which owns its handle meanwhile; others wait
 * on rm->fence_cond.
 *
 * Fencing: a write, trim or zero that times out after the server got all
 * of it may still be carried out later, over newer writes that were
 * acknowledged.  So its handle is not closed but kept, out of the pool, as
 * an abandoned command, and write-type requests first wait for its reply
 * (fence_wait()), or fail with EIO.  Reads and flushes do not wait: a
 * failed write may read back old or new, never half.  A write-type command
 * starts only on a connection taken while nothing was abandoned
 * (conn_get()), so a connection has at most one abandoned command.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libnbd.h>

#include "error.h"
#include "histogram.h"
#include "leaf.h"
#include "mode.h"

#define MAX_CONNS 4
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DISCONNECT_MS 30000

enum remote_op { R_READ, R_WRITE, R_FLUSH, R_TRIM, R_ZERO };

static const char *const op_names[] = { "read", "write", "flush", "trim",
                                        "zero" };

/* A write-type command that timed out after the server got all of it. */
struct abandoned {
  struct nbd_handle *h;         /* NULL: none; else its connection */
  int64_t cookie;
  enum remote_op op;            /* for messages */
  uint64_t len;
  uint64_t offset;
  bool polling;                 /* a request is waiting for its reply */
};

struct conn {
  struct nbd_handle *h;         /* NULL: broken, to be reopened */
  struct conn *next;            /* on the free list */
  struct abandoned abandoned;   /* protected by lock */
  bool live;                    /* protected by lock: had a handle when it
                                   was last put back (or adopted one) */
};

struct remote {
  struct ic_leaf leaf;
  char *uri;
  bool readonly;
  /* The server takes NBD_CMD_FLUSH.  Without it, as Linux's nbd driver
   * does (no write cache then), flushes and FUA are nothing to do.
   */
  bool can_flush;
  /* The largest request the server takes (split_size() of its maximum
   * block size), or 0: any.  Larger ones are split, as the block layer
   * splits bios at max_hw_sectors.
   */
  uint64_t max_request;
  unsigned int nconns;
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* a connection came back */
  pthread_cond_t fence_cond;    /* an abandoned command was resolved or
                                   is no longer polled; CLOCK_MONOTONIC */
  struct conn *free_list;       /* protected by lock */
  uint64_t next_connect_ns;     /* protected by lock: backoff */
  unsigned int backoff_ms;      /* protected by lock */
  unsigned int nabandoned;      /* protected by lock: > 0 fences writes */
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
  /* The URI comes from the configuration file, as trusted as the rest
   * of it: a TLS URI may name its PSK file or certificates directory.
   */
  if (nbd_set_uri_allow_local_file (h, true) == -1 ||
      nbd_aio_connect_uri (h, uri) == -1)
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

static bool
is_write_op (enum remote_op op)
{
  return op == R_WRITE || op == R_TRIM || op == R_ZERO;
}

/* Take a connection from the pool, waiting until one is free.  A
 * write-type request (@write) gets none while a command is abandoned: the
 * check and the command are on the connection taken under the same lock,
 * so no write starts once a timed-out one has been reported.
 *
 * Return: the connection, or NULL if @write and writes are fenced.
 */
static struct conn *
conn_get (struct remote *rm, bool write)
{
  struct conn *c = NULL;
  struct conn **pp, **take;
  bool fenced;

  pthread_mutex_lock (&rm->lock);
  while (!(fenced = write && rm->nabandoned > 0) && !rm->free_list)
    pthread_cond_wait (&rm->cond, &rm->lock);
  if (!fenced) {
    /* A connected one first: one without a handle costs a reconnection,
     * which may fail (a server that takes fewer connections than we
     * opened).
     */
    take = &rm->free_list;
    for (pp = &rm->free_list; *pp; pp = &(*pp)->next)
      if ((*pp)->h) {
        take = pp;
        break;
      }
    c = *take;
    *take = c->next;
  }
  else if (rm->free_list)
    /* We may have taken the wake-up of conn_put(): pass it on to a
     * request that can use the connection.
     */
    pthread_cond_signal (&rm->cond);
  pthread_mutex_unlock (&rm->lock);
  return c;
}

static void
conn_put (struct remote *rm, struct conn *c)
{
  pthread_mutex_lock (&rm->lock);
  c->next = rm->free_list;
  rm->free_list = c;
  c->live = c->h != NULL;
  /* A connection that lost its handle may be the last live one, which
   * requests in conn_wait_live() wait for: wake them all.
   */
  if (c->live)
    pthread_cond_signal (&rm->cond);
  else
    pthread_cond_broadcast (&rm->cond);
  pthread_mutex_unlock (&rm->lock);
}

/* @c could not be reconnected.  If another connection of the pool is
 * live, put @c back and wait until a connected one is free, so that the
 * request is carried out there instead of failing: a server may take
 * fewer connections than the pool has, or refuse a new one while the old
 * ones work.
 *
 * Return: true if @c was put back and the caller should take a connection
 * again, false if no other connection is live (the caller still owns @c).
 */
static bool
conn_wait_live (struct remote *rm, struct conn *c)
{
  struct conn *f;
  unsigned int i;
  bool any = false;

  pthread_mutex_lock (&rm->lock);
  for (i = 0; i < rm->nconns; i++)
    if (&rm->conns[i] != c && rm->conns[i].live)
      any = true;
  if (!any) {
    pthread_mutex_unlock (&rm->lock);
    return false;
  }
  c->next = rm->free_list;
  rm->free_list = c;
  c->live = false;
  for (;;) {
    for (f = rm->free_list; f && !f->h; f = f->next)
      ;
    if (f)
      break;
    for (any = false, i = 0; i < rm->nconns; i++)
      any |= rm->conns[i].live;
    if (!any)
      break;
    pthread_cond_wait (&rm->cond, &rm->lock);
  }
  /* We may have taken a wake-up meant for conn_get(). */
  pthread_cond_signal (&rm->cond);
  pthread_mutex_unlock (&rm->lock);
  return true;
}

/* Give @h, a live handle nobody uses, to a free connection that has none.
 *
 * Context: rm->lock held.
 * Return: true, or false if every free connection has one (the caller then
 * closes @h, outside the lock).
 */
static bool
conn_adopt_locked (struct remote *rm, struct nbd_handle *h)
{
  struct conn *c;

  for (c = rm->free_list; c; c = c->next)
    if (!c->h) {
      c->h = h;
      c->live = true;
      pthread_cond_broadcast (&rm->cond);
      return true;
    }
  return false;
}

static uint64_t split_size (uint64_t max);

/* What a server that came back lacks of what the leaf was set up with
 * (and told the exports above it, and their clients), or NULL.  The leaf
 * sends FUA and flushes, and uses several connections, by what the first
 * server said: a server without them now would refuse the commands, or
 * not make writes on other connections durable.
 */
static const char *
peer_lacks (struct remote *rm, struct nbd_handle *h)
{
  unsigned int features = rm->leaf.dev.features;
  int64_t max;

  if (!rm->readonly && nbd_is_read_only (h) == 1)
    return "writes (it is read-only now)";
  if ((features & IC_DEV_CAN_FUA) && nbd_can_fua (h) != 1)
    return "FUA";
  if (rm->can_flush && nbd_can_flush (h) != 1)
    return "flush";
  if ((features & IC_DEV_CAN_ZERO) && nbd_can_zero (h) != 1)
    return "WRITE_ZEROES";
  if ((features & IC_DEV_CAN_TRIM) && nbd_can_trim (h) != 1)
    return "TRIM";
  if ((features & IC_DEV_CAN_MULTI_CONN) && nbd_can_multi_conn (h) != 1)
    return "multi-conn";
  if (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM) >
      (rm->leaf.dev.min_block ? rm->leaf.dev.min_block : 1))
    return "the minimum block size (it is larger now)";
  max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);
  if (max > 0 && (rm->max_request == 0 ||
                  split_size (max) < rm->max_request))
    return "the maximum block size (it is smaller now)";
  return NULL;
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
  unsigned int wait_ms = 0;
  const char *lacks;
  uint64_t after;
  bool try = false;
  int err = 0;

  if (c->h)
    return 0;
  pthread_mutex_lock (&rm->lock);
  if (now >= rm->next_connect_ns) {
    try = true;
    wait_ms = rm->backoff_ms;
    rm->next_connect_ns = now + (uint64_t) wait_ms * 1000000;
    rm->backoff_ms = rm->backoff_ms * 2 > BACKOFF_MAX_MS
      ? BACKOFF_MAX_MS : rm->backoff_ms * 2;
  }
  pthread_mutex_unlock (&rm->lock);
  if (!try) {
    ic_error ("%s: %s is unreachable; retrying later", name, rm->uri);
    return -EIO;
  }
  h = nbd_open (name, rm->uri, rm->timeout_ms, &err);
  if (h && (uint64_t) nbd_get_size (h) < rm->leaf.dev.size) {
    ic_error ("%s: %s came back smaller than before", name, rm->uri);
    nbd_close (h);
    h = NULL;
  }
  if (h && (lacks = peer_lacks (rm, h))) {
    ic_error ("%s: %s came back without %s, which it had", name, rm->uri,
              lacks);
    nbd_close (h);
    h = NULL;
  }
  if (!h) {
    /* The backoff interval runs from the failure, not from the start of
     * the attempt: one that waited out the timeout (a server that
     * accepts but does not answer) must not let every request queued
     * behind it wait as long again.
     */
    after = ic_now_ns () + (uint64_t) wait_ms * 1000000;
    pthread_mutex_lock (&rm->lock);
    if (after > rm->next_connect_ns)
      rm->next_connect_ns = after;
    pthread_mutex_unlock (&rm->lock);
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
  /* The peer's errno goes up (ENOSPC, EPERM, EINVAL...), but not
   * ESHUTDOWN: from us it would tell our clients that this server is
   * shutting down, when only the peer is.
   */
  if (!err || err == ESHUTDOWN)
    return -EIO;
  return -err;
}

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

/* Set up @ts as @deadline_ns on CLOCK_MONOTONIC, for fence_cond. */
static void
deadline_to_timespec (uint64_t deadline_ns, struct timespec *ts)
{
  ts->tv_sec = deadline_ns / 1000000000;
  ts->tv_nsec = deadline_ns % 1000000000;
}

/* Poll the handle of abandoned command @a until its reply arrives, the
 * connection dies, or @deadline_ns (0: no limit) passes; then, unless the
 * deadline passed, resolve it: writes are no longer fenced by it, and its
 * handle goes to a free connection that has none, or is closed.  The
 * caller has set a->polling, so that it alone uses the handle.
 *
 * Context: called and returns without rm->lock; takes it to resolve.
 * Return: 0 if resolved, -ETIMEDOUT if the deadline passed first.
 */
static int
abandoned_poll (struct remote *rm, struct abandoned *a, uint64_t deadline_ns)
{
  const char *name = rm->leaf.dev.name;
  struct nbd_handle *h = a->h;
  bool answered;
  int r;

  while ((r = nbd_aio_command_completed (h, a->cookie)) == 0) {
    int left = -1;

    if (deadline_ns) {
      uint64_t now = ic_now_ns ();

      if (now >= deadline_ns) {
        pthread_mutex_lock (&rm->lock);
        a->polling = false;
        pthread_cond_broadcast (&rm->fence_cond);
        pthread_mutex_unlock (&rm->lock);
        return -ETIMEDOUT;
      }
      left = (deadline_ns - now + 999999) / 1000000;
    }
    if (nbd_poll (h, left) == -1)
      break;
  }

  /* Retired with the server's reply, a success or an error, or else
   * retired (ENOTCONN) or stranded with the connection.
   */
  answered = r != 0 && nbd_aio_is_dead (h) != 1 && nbd_aio_is_closed (h) != 1;
  if (answered)
    ic_debug ("%s: %s %" PRIu64 " bytes at %" PRIu64 ", which timed out, "
              "has been answered: %s", name, op_names[a->op], a->len,
              a->offset, r == 1 ? "done" : nbd_get_error ());
  else
    /* Nobody can tell any more whether the server carried it out, or
     * still will: Linux's nbd driver has the same blind spot when it
     * requeues a timed-out request.  Writes go on.
     */
    ic_error ("%s: %s %" PRIu64 " bytes at %" PRIu64 ", which timed out, "
              "lost its connection to %s before the reply: it may or may "
              "not have been done", name, op_names[a->op], a->len,
              a->offset, rm->uri);

  pthread_mutex_lock (&rm->lock);
  if (answered && conn_adopt_locked (rm, h))
    h = NULL;
  a->h = NULL;
  a->polling = false;
  rm->nabandoned--;
  pthread_cond_broadcast (&rm->fence_cond);
  pthread_mutex_unlock (&rm->lock);
  if (h)
    nbd_close (h);
  return 0;
}

/* Wait until no command is abandoned, polling their connections for the
 * replies, until @deadline_ns (0: no limit).  A command polled by another
 * request is waited for on fence_cond.
 *
 * Context: takes and releases rm->lock, never holding it across a poll.
 * Return: 0 once writes are no longer fenced, or -ETIMEDOUT.
 */
static int
fence_wait (struct remote *rm, uint64_t deadline_ns)
{
  struct timespec ts;
  int r = 0;

  deadline_to_timespec (deadline_ns, &ts);
  pthread_mutex_lock (&rm->lock);
  while (rm->nabandoned > 0) {
    struct abandoned *a = NULL;
    unsigned int i;

    for (i = 0; i < rm->nconns && !a; i++)
      if (rm->conns[i].abandoned.h && !rm->conns[i].abandoned.polling)
        a = &rm->conns[i].abandoned;
    if (a) {
      a->polling = true;
      pthread_mutex_unlock (&rm->lock);
      r = abandoned_poll (rm, a, deadline_ns);
      pthread_mutex_lock (&rm->lock);
    }
    else if (deadline_ns == 0)
      pthread_cond_wait (&rm->fence_cond, &rm->lock);
    else
      r = pthread_cond_timedwait (&rm->fence_cond, &rm->lock, &ts)
        == ETIMEDOUT ? -ETIMEDOUT : 0;
    if (r == -ETIMEDOUT)
      break;
  }
  r = rm->nabandoned > 0 ? -ETIMEDOUT : 0;
  pthread_mutex_unlock (&rm->lock);
  return r;
}

/* Command @cookie on @c got no answer in time.  A read or a flush is
 * dropped with its connection: nothing comes of it later.  So is a
 * write-type command that libnbd had not finished sending (not "ready"):
 * the server cannot carry out half a request.  Any other write-type
 * command may still land, after newer writes: its handle is kept as
 * @c's abandoned command, which fences writes until it is answered, and
 * @c gets a new connection when it is next used.  libnbd no longer reads a
 * write's buffer once it has sent it, so the caller may free it.
 *
 * Return: -EIO.
 */
static int
command_timed_out (struct remote *rm, struct conn *c, enum remote_op op,
                   int64_t cookie, uint64_t len, uint64_t offset)
{
  const char *name = rm->leaf.dev.name;

  if (is_write_op (op) && nbd_aio_is_ready (c->h) == 1) {
    ic_error ("%s: %s %" PRIu64 " bytes at %" PRIu64 ": no answer from %s "
              "within %u ms; writes wait for it", name, op_names[op], len,
              offset, rm->uri, rm->timeout_ms);
    pthread_mutex_lock (&rm->lock);
    /* Empty: @c was taken while nothing was abandoned (conn_get()). */
    c->abandoned = (struct abandoned) {
      .h = c->h, .cookie = cookie, .op = op, .len = len, .offset = offset,
    };
    rm->nabandoned++;
    pthread_mutex_unlock (&rm->lock);
    c->h = NULL;
    return -EIO;
  }
  ic_error ("%s: %s %" PRIu64 " bytes at %" PRIu64 ": no answer from %s "
            "within %u ms; dropping the connection", name, op_names[op], len,
            offset, rm->uri, rm->timeout_ms);
  nbd_close (c->h);
  c->h = NULL;
  return -EIO;
}

/* One command on a connection of the pool.  A server that does not answer
 * within the timeout fails the request with EIO instead of hanging it (see
 * command_timed_out()).  A write-type request first waits, for as long as
 * the timeout, until no timed-out write-type command is left that the
 * server may still carry out; if one is, it fails with EIO.
 */
static int
remote_io (struct ic_leaf *leaf, enum remote_op op, void *buf, uint64_t len,
           uint64_t offset, uint32_t flags)
{
  struct remote *rm = (struct remote *) leaf;
  bool write = is_write_op (op);
  uint64_t deadline = 0;
  struct conn *c;
  int64_t cookie;
  int r;

  do {
    while (!(c = conn_get (rm, write))) {
      if (!deadline && rm->timeout_ms)
        deadline = ic_now_ns () + (uint64_t) rm->timeout_ms * 1000000;
      if (fence_wait (rm, deadline) < 0) {
        ic_error ("%s: %s %" PRIu64 " bytes at %" PRIu64 ": not sent: a "
                  "write that timed out earlier is still unanswered by %s "
                  "after another %u ms", leaf->dev.name, op_names[op], len,
                  offset, rm->uri, rm->timeout_ms);
        return -EIO;
      }
    }
    r = conn_ready (rm, c);
  } while (r < 0 && conn_wait_live (rm, c));
  if (r == 0) {
    cookie = start_command (c, op, buf, len, offset, flags);
    r = cookie == -1 ? -1 : wait_command (rm, c, cookie);
    if (r == -ETIMEDOUT)
      r = command_timed_out (rm, c, op, cookie, len, offset);
    else if (r == -1)
      r = command_failed (rm, c, op_names[op], len, offset);
  }
  conn_put (rm, c);
  return r;
}

/* The size of the pieces a request larger than the server's maximum
 * block size @max is split into: whole largest data units (64 KiB) where
 * @max allows, else the largest power of two within it.  A request
 * starts at a data unit boundary, so no data unit of any size up to the
 * piece straddles two commands, where a failed second command would leave
 * it half old, half new (a larger one cannot be helped).
 */
static uint64_t
split_size (uint64_t max)
{
  uint64_t p = 1;

  if (max >= IC_CRYPTO_MAX_DATA_UNIT_SIZE)
    return max / IC_CRYPTO_MAX_DATA_UNIT_SIZE * IC_CRYPTO_MAX_DATA_UNIT_SIZE;
  while (p * 2 <= max)
    p *= 2;
  return p;
}

/* remote_io() in pieces the server takes. */
static int
remote_io_split (struct ic_leaf *leaf, enum remote_op op, void *buf,
                 uint64_t len, uint64_t offset, uint32_t flags)
{
  struct remote *rm = (struct remote *) leaf;
  uint64_t max = rm->max_request;
  int r = 0;

  if (max == 0 || len <= max)
    return remote_io (leaf, op, buf, len, offset, flags);
  while (r == 0 && len > 0) {
    uint64_t n = len < max ? len : max;

    r = remote_io (leaf, op, buf, n, offset, flags);
    if (buf)
      buf = (char *) buf + n;
    offset += n;
    len -= n;
  }
  return r;
}

static int
remote_pread (struct ic_leaf *leaf, void *buf, uint64_t len, uint64_t offset)
{
  return remote_io_split (leaf, R_READ, buf, len, offset, 0);
}

static int
remote_flush (struct ic_leaf *leaf)
{
  struct remote *rm = (struct remote *) leaf;

  if (!rm->can_flush)
    return 0;
  return remote_io (leaf, R_FLUSH, NULL, 0, 0, 0);
}

/* A write-type command with FUA: the flag where the server takes it, else
 * the command, then a flush.
 */
static int
remote_io_fua (struct ic_leaf *leaf, enum remote_op op, void *buf,
               uint64_t len, uint64_t offset, uint32_t flags, bool fua)
{
  bool native = leaf->dev.features & IC_DEV_CAN_FUA;
  int r = remote_io_split (leaf, op, buf, len, offset,
                           flags | (fua && native ? LIBNBD_CMD_FLAG_FUA : 0));

  if (r == 0 && fua && !native)
    r = remote_flush (leaf);
  return r;
}

static int
remote_pwrite (struct ic_leaf *leaf, const void *buf, uint64_t len,
               uint64_t offset, unsigned int unit, bool fua, bool *partial)
{
  int r = remote_io_fua (leaf, R_WRITE, (void *) buf, len, offset, 0, fua);

  /* The NBD protocol leaves a failed write's range undefined. */
  if (r < 0)
    *partial = true;
  return r;
}

static int
remote_zero (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
             bool may_trim, bool fua)
{
  static const char zeros[65536];
  uint32_t flags = may_trim ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
  bool native = leaf->dev.features & IC_DEV_CAN_FUA;
  int r;

  if (leaf->dev.features & IC_DEV_CAN_ZERO)
    return remote_io_fua (leaf, R_ZERO, NULL, len, offset, flags, fua);
  /* No WRITE_ZEROES on the server: write them.  An NBD FUA makes only
   * its own command's data durable, so every piece carries it; without
   * FUA on the server, one flush after the last piece.
   */
  for (r = 0; r == 0 && len > 0;) {
    uint64_t n = len < sizeof zeros ? len : sizeof zeros;

    r = remote_io_split (leaf, R_WRITE, (void *) zeros, n, offset,
                         fua && native ? LIBNBD_CMD_FLAG_FUA : 0);
    offset += n;
    len -= n;
  }
  if (r == 0 && fua && !native)
    r = remote_flush (leaf);
  return r;
}

static int
remote_trim (struct ic_leaf *leaf, uint64_t len, uint64_t offset, bool fua)
{
  /* TRIM is advisory: a server without it keeps the data. */
  if (!(leaf->dev.features & IC_DEV_CAN_TRIM))
    return 0;
  return remote_io_fua (leaf, R_TRIM, NULL, len, offset, 0, fua);
}

/* Tell the server we are going, on every connection, and wait for it to
 * close them, but not for ever as nbd_shutdown() would: a server that
 * stopped answering must not keep nbdkit from exiting.  Nothing is in
 * flight, and what was written was flushed or not as the clients asked,
 * so nothing is lost when it does not answer.  The wait, for all the
 * connections together, is the leaf's timeout, or DISCONNECT_MS with
 * timeout=0.
 */
static void
disconnect_all (struct remote *rm)
{
  unsigned int ms = rm->timeout_ms ? rm->timeout_ms : DISCONNECT_MS;
  uint64_t deadline = ic_now_ns () + (uint64_t) ms * 1000000;
  bool sent[MAX_CONNS] = { false };
  unsigned int i;

  for (i = 0; i < rm->nconns; i++) {
    struct nbd_handle *h = rm->conns[i].h;

    sent[i] = h && nbd_aio_is_ready (h) == 1
      && nbd_aio_disconnect (h, 0) == 0;
  }
  for (i = 0; i < rm->nconns; i++) {
    struct nbd_handle *h = rm->conns[i].h;

    while (sent[i] && nbd_aio_is_closed (h) != 1
           && nbd_aio_is_dead (h) != 1) {
      uint64_t now = ic_now_ns ();

      if (now >= deadline) {
        ic_error ("%s: %s did not close the connection within %u ms",
                  rm->leaf.dev.name, rm->uri, ms);
        return;
      }
      if (nbd_poll (h, (deadline - now + 999999) / 1000000) == -1)
        break;
    }
  }
}

static void
remote_destroy (struct ic_leaf *leaf)
{
  struct remote *rm = (struct remote *) leaf;
  unsigned int i;

  disconnect_all (rm);
  for (i = 0; i < rm->nconns; i++) {
    if (rm->conns[i].h)
      nbd_close (rm->conns[i].h);
    /* Still unanswered: what the server does with it is out of our
     * hands, as it would be after a crash.
     */
    if (rm->conns[i].abandoned.h)
      nbd_close (rm->conns[i].abandoned.h);
  }
  pthread_mutex_destroy (&rm->lock);
  pthread_cond_destroy (&rm->cond);
  pthread_cond_destroy (&rm->fence_cond);
  free (rm->uri);
  free (rm);
}

/* The fence, for status: the abandoned commands, and the first of them.
 * A command the server has answered since stays counted until a write
 * polls its connection (fence_wait()): the fence is lifted then, not
 * here, as status must not wait for the server.
 */
static void
remote_status (struct ic_leaf *leaf, struct ic_leaf_status *st)
{
  struct remote *rm = (struct remote *) leaf;
  unsigned int i;

  pthread_mutex_lock (&rm->lock);
  st->unanswered_writes = rm->nabandoned;
  for (i = 0; i < rm->nconns && !st->fence_op; i++) {
    const struct abandoned *a = &rm->conns[i].abandoned;

    if (a->h) {
      st->fence_op = op_names[a->op];
      st->fence_len = a->len;
      st->fence_offset = a->offset;
    }
  }
  pthread_mutex_unlock (&rm->lock);
}

static const struct ic_leaf_ops remote_ops = {
  .type = "nbd",
  .remote = true,
  .pread = remote_pread,
  .pwrite = remote_pwrite,
  .flush = remote_flush,
  .trim = remote_trim,
  .zero = remote_zero,
  .destroy = remote_destroy,
  .status = remote_status,
};

struct ic_device *
ic_leaf_nbd_new (const char *name, const char *uri, uint64_t size,
                 bool readonly, unsigned int timeout_ms,
                 struct ic_engine *engine)
{
  struct remote *rm;
  struct nbd_handle *h;
  pthread_condattr_t attr;
  unsigned int features = 0;
  int64_t export_size;
  int64_t block;
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
  /* The leaf's minimum block size becomes its exports' (see below):
   * clients aligned to it could not reach a tail shorter than a block,
   * nor could the leaf, as the server refuses it.
   */
  block = nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  if (block > 1 && size % (uint64_t) block) {
    ic_error ("%s: %s: the leaf's %" PRIu64 " bytes are not a multiple of "
              "the server's minimum block size, %" PRId64 " bytes: its end "
              "could not be reached", name, uri, size, block);
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
  if (readonly)
    features |= IC_DEV_READONLY;

  rm = calloc (1, sizeof *rm);
  if (!rm || !(rm->uri = strdup (uri))) {
    free (rm);
    ic_error ("%s: out of memory", name);
    err = ENOMEM;
    goto out_close;
  }
  rm->readonly = readonly;
  rm->can_flush = nbd_can_flush (h) == 1;
  block = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);
  if (block > 0)
    rm->max_request = split_size (block);
  rm->timeout_ms = timeout_ms;
  /* Several connections only when flushes cover them all. */
  rm->nconns = (features & IC_DEV_CAN_MULTI_CONN) ? MAX_CONNS : 1;
  rm->backoff_ms = BACKOFF_MIN_MS;
  pthread_mutex_init (&rm->lock, NULL);
  pthread_cond_init (&rm->cond, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);  /* as ic_now_ns() */
  pthread_cond_init (&rm->fence_cond, &attr);
  pthread_condattr_destroy (&attr);
  rm->conns[0].h = h;
  for (i = 1; i < rm->nconns; i++)
    rm->conns[i].h = nbd_open (name, uri, timeout_ms, &err);  /* NULL: later */
  for (i = 0; i < rm->nconns; i++)
    rm->conns[i].live = rm->conns[i].h != NULL;
  for (i = rm->nconns; i-- > 0;) {
    rm->conns[i].next = rm->free_list;
    rm->free_list = &rm->conns[i];
  }
  ic_leaf_init (&rm->leaf, name, size, &remote_ops, engine, features);
  /* What requests must be aligned to, for the export to advertise. */
  block = nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  if (block > 1)
    rm->leaf.dev.min_block = block;
  return &rm->leaf.dev;

out_close:
  nbd_close (h);
  errno = err;
  return NULL;
}

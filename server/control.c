/* server/control.c - see control.h.
 *
 * Threading: the loop thread owns every client and watcher.  Workers touch
 * only the request they were given and the done queue (done_lock), then
 * wake the loop with ev_async_send.  Listed in the order they are taken:
 * done_lock, then nothing else.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "control.h"
#include "error.h"
#include "protocol.h"
#include "secmem.h"

/* The input buffer: one line of the longest request, its newline and room
 * to read on (a whole number of pages).
 */
#define IN_SIZE (IC_PROTOCOL_MAX_LINE + 4096)

/* Clients connected at once; more are refused with EAGAIN. */
#define MAX_CLIENTS 128

/* How long accepting pauses when the process is out of descriptors. */
#define ACCEPT_RETRY_S 0.1

#define STRINGIFY(x) STRINGIFY_ (x)
#define STRINGIFY_(x) #x

/* Back-pressure: while this many bytes of a client's replies wait to be
 * written, nothing more of its input is read or run.
 */
#define OUT_HIGH (1024 * 1024)

struct client {
  struct ic_control *ctl;
  int fd;
  ev_io rio;
  ev_io wio;
  char *in;                     /* bytes read and not yet handled: whole
                                   lines, then at most part of one */
  size_t in_len;
  bool discarding;              /* skipping the rest of a too-long line */
  char *out;                    /* replies; out[out_off..out_len) unsent */
  size_t out_len;
  size_t out_off;
  size_t out_cap;               /* bytes allocated at out */
  bool waiting;                 /* a slow command is running for it */
  bool eof;                     /* it sends no more (shutdown or close) */
  bool closed;                  /* gone; freed when no worker refers to it */
  unsigned int refs;            /* the loop's + a worker's */
  struct client *next;          /* ctl->clients */
};

/* A reply from a worker, queued for the loop. */
struct done {
  struct client *client;
  char *reply;
  bool secret;                  /* reply holds one: wiped once sent */
  struct done *next;
};

struct ic_control {
  struct ic_graph *graph;
  char *path;                   /* absolute, to unlink at the end */
  dev_t sock_dev;               /* ... if it is still our socket */
  ino_t sock_ino;
  int listen_fd;
  struct ev_loop *loop;
  ev_io accept_io;
  ev_timer accept_retry;        /* accept_io paused: out of descriptors */
  unsigned int nclients;        /* loop thread only */
  ev_async wake;                /* done replies or stop */
  pthread_t thread;
  bool running;
  struct client *clients;       /* loop thread only */

  pthread_mutex_t done_lock;    /* covers done, stopping, workers */
  pthread_cond_t done_cond;
  struct done *done;
  bool stopping;
  unsigned int workers;
};

static void client_close (struct client *c);
static void client_kick (struct client *c);

/* A client's input buffer.  A key-add sent behind a command that waits
 * (key-remove, wait-resync, engine-reset) waits in it, key and all, for
 * up to a minute: it is locked like the keys when RLIMIT_MEMLOCK allows
 * (128 clients lock 8.5 MiB), and left out of core dumps.  Each line is
 * wiped once handled, and the whole buffer when freed.
 */
static char *
in_alloc (void)
{
  char *p = mmap (NULL, IN_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

  if (p == MAP_FAILED)
    return NULL;
  if (mlock (p, IN_SIZE) == -1)
    ic_debug ("control: a client's input buffer is not locked: %s",
              strerror (errno));
  madvise (p, IN_SIZE, MADV_DONTDUMP);
  return p;
}

static void
in_free (char *p)
{
  if (p) {
    ic_memzero_explicit (p, IN_SIZE);
    munmap (p, IN_SIZE);
  }
}

static void
client_unref (struct client *c)
{
  if (--c->refs == 0) {
    /* Wiped whole: bytes moved down by process_input() were wiped where
     * they left, but a line may be cut anywhere by a read.
     */
    in_free (c->in);
    if (c->out)                 /* a reply may have held a secret */
      ic_memzero_explicit (c->out, c->out_cap);
    free (c->out);
    free (c);
  }
}

static size_t
out_pending (const struct client *c)
{
  return c->out_len - c->out_off;
}

/* The largest reply buffer kept once everything in it was sent. */
#define OUT_KEEP (64 * 1024)

/* Free the reply buffer, wiped (see client_send). */
static void
out_free (struct client *c)
{
  ic_memzero_explicit (c->out, c->out_cap);
  free (c->out);
  c->out = NULL;
  c->out_cap = 0;
}

/* Queue @text and a newline for @c. */
static void
client_send (struct client *c, const char *text)
{
  size_t n = strlen (text);
  char *bigger;

  if (c->closed)
    return;
  /* Drop what was written once it is half the buffer or the reply does
   * not fit, so that a client that reads as fast as it asks does not
   * grow the buffer for ever; grow it by doubling.  Each byte is then
   * moved a bounded number of times on average: a copy of everything
   * pending per reply made a backlog of 200,000 pings quadratic (under
   * ASan, whose realloc always copies, minutes).
   */
  if (c->out_off > 0 &&
      (c->out_off >= c->out_len / 2 || c->out_len + n + 1 > c->out_cap)) {
    memmove (c->out, c->out + c->out_off, out_pending (c));
    c->out_len -= c->out_off;
    /* A reply may hold a secret (key-derive-secret): no copy of it stays
     * behind where it was moved from, nor where it was sent from (below,
     * write_cb), nor in a buffer given back (no realloc).
     */
    ic_memzero_explicit (c->out + c->out_len, c->out_off);
    c->out_off = 0;
  }
  if (c->out_len + n + 1 > c->out_cap) {
    size_t cap = c->out_cap ? 2 * c->out_cap : 4096;

    while (cap < c->out_len + n + 1)
      cap *= 2;
    bigger = malloc (cap);
    if (!bigger) {
      client_close (c);
      return;
    }
    if (c->out) {
      memcpy (bigger, c->out, c->out_len);
      out_free (c);
    }
    c->out = bigger;
    c->out_cap = cap;
  }
  memcpy (c->out + c->out_len, text, n);
  c->out[c->out_len + n] = '\n';
  c->out_len += n + 1;
  ev_io_start (c->ctl->loop, &c->wio);
}

static void
client_send_json (struct client *c, struct json_object *reply)
{
  const char *text = ic_protocol_reply_text (reply);

  client_send (c, text);
  /* json-c's copies of a secret the reply holds, freed unwiped. */
  if (ic_protocol_wipe_secrets (reply))
    ic_memzero_explicit ((char *) text, strlen (text));
  json_object_put (reply);
}

static void
client_close (struct client *c)
{
  struct client **pp;

  if (c->closed)
    return;
  c->closed = true;
  ev_io_stop (c->ctl->loop, &c->rio);
  ev_io_stop (c->ctl->loop, &c->wio);
  close (c->fd);
  for (pp = &c->ctl->clients; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  c->ctl->nclients--;
  client_unref (c);
}

struct work {
  struct ic_control *ctl;
  struct client *client;
  struct json_object *req;
};

static void *
worker (void *arg)
{
  struct work *w = arg;
  struct ic_control *ctl = w->ctl;
  struct json_object *reply = ic_protocol_execute (ctl->graph, w->req);
  struct done *d = calloc (1, sizeof *d);
  const char *text;

  json_object_put (w->req);
  text = ic_protocol_reply_text (reply);
  if (d) {
    d->client = w->client;
    d->reply = strdup (text);
  }
  /* A secret in the reply: wiped here, and in d->reply once sent. */
  if (ic_protocol_wipe_secrets (reply)) {
    ic_memzero_explicit ((char *) text, strlen (text));
    if (d)
      d->secret = true;
  }
  json_object_put (reply);
  free (w);
  pthread_mutex_lock (&ctl->done_lock);
  if (d) {
    d->next = ctl->done;
    ctl->done = d;
  }
  /* Wake the loop before counting ourselves out: once workers is 0, stop
   * may destroy the loop.
   */
  ev_async_send (ctl->loop, &ctl->wake);
  ctl->workers--;
  pthread_cond_broadcast (&ctl->done_cond);
  pthread_mutex_unlock (&ctl->done_lock);
  return NULL;
}

/* Run a slow request on a worker; the client reads nothing more until the
 * reply is back, so replies stay in order.
 */
static void
start_worker (struct client *c, struct json_object *req)
{
  struct ic_control *ctl = c->ctl;
  struct work *w = calloc (1, sizeof *w);
  pthread_attr_t attr;
  pthread_t tid;
  int err = ENOMEM;

  if (w) {
    w->ctl = ctl;
    w->client = c;
    w->req = req;
    pthread_mutex_lock (&ctl->done_lock);
    ctl->workers++;
    pthread_mutex_unlock (&ctl->done_lock);
    c->refs++;
    pthread_attr_init (&attr);
    pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
    err = pthread_create (&tid, &attr, worker, w);
    pthread_attr_destroy (&attr);
    if (err == 0) {
      c->waiting = true;
      ev_io_stop (ctl->loop, &c->rio);
      return;
    }
    c->refs--;
    pthread_mutex_lock (&ctl->done_lock);
    ctl->workers--;
    pthread_mutex_unlock (&ctl->done_lock);
    free (w);
  }
  json_object_put (req);
  client_send_json (c, ic_protocol_error (err, "cannot start a worker "
                                          "thread"));
}

/* Handle one complete line. */
static void
handle_line (struct client *c, const char *line, size_t len)
{
  struct json_object *reply;
  struct json_object *req;

  if (len == 0)
    return;
  req = ic_protocol_parse (line, len, &reply);
  if (!req) {
    client_send_json (c, reply);
    return;
  }
  /* A quick command runs here, unless a command on a worker holds the
   * lock they share: then it waits its turn on a worker too, so that the
   * loop never waits (other clients, ping).
   */
  if (!ic_protocol_is_slow (req)) {
    reply = ic_protocol_try_execute (c->ctl->graph, req);
    if (reply) {
      json_object_put (req);
      client_send_json (c, reply);
      return;
    }
  }
  start_worker (c, req);
}

/* Handle the lines in the input buffer, in order, while no slow command
 * runs for the client and its replies are being taken.  Once it sends no
 * more, a last line without a newline is a request too.  Whatever is left
 * is then part of one line: refused once it is longer than a request may
 * be, when every line before it has had its reply.
 */
static void
process_input (struct client *c)
{
  size_t start = 0;

  while (!c->closed && !c->waiting && out_pending (c) < OUT_HIGH &&
         start < c->in_len) {
    char *nl = memchr (c->in + start, '\n', c->in_len - start);
    size_t len;
    size_t used;

    if (nl)
      used = (len = nl - (c->in + start)) + 1;
    else if (c->eof)
      used = len = c->in_len - start;
    else
      break;
    if (c->discarding)
      c->discarding = false;
    else
      handle_line (c, c->in + start, len);
    /* The line may have held a key. */
    ic_memzero_explicit (c->in + start, used);
    start += used;
  }
  if (c->closed)
    return;
  memmove (c->in, c->in + start, c->in_len - start);
  c->in_len -= start;
  /* The part of a line just moved down may be part of a key: no copy of
   * it stays behind where it was.
   */
  if (start > 0)
    ic_memzero_explicit (c->in + c->in_len, start);
  if (!c->waiting && out_pending (c) < OUT_HIGH &&
      c->in_len > IC_PROTOCOL_MAX_LINE) {
    /* Refuse it now and skip to its end. */
    if (!c->discarding) {
      struct json_object *r =
        ic_protocol_error (EMSGSIZE, "request too long: more than 65536 "
                           "bytes without a newline");

      client_send_json (c, r);
    }
    ic_memzero_explicit (c->in, c->in_len);
    c->in_len = 0;
    c->discarding = true;
  }
}

/* After anything that changes what a client can do next: handle what can
 * be handled, then read on if it may send more and we may take it; close
 * it once it sends no more and every request it sent has its reply
 * written.
 */
static void
client_kick (struct client *c)
{
  /* Closing it on the way (out of memory) must not free it under us. */
  c->refs++;
  process_input (c);
  if (c->closed)
    goto out_unref;
  if (c->eof && !c->waiting && c->in_len == 0 && out_pending (c) == 0)
    client_close (c);
  else if (!c->eof && !c->waiting && out_pending (c) < OUT_HIGH &&
           c->in_len < IN_SIZE)
    ev_io_start (c->ctl->loop, &c->rio);
  else
    ev_io_stop (c->ctl->loop, &c->rio);
out_unref:
  client_unref (c);
}

static void
read_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct client *c = w->data;
  ssize_t n;

  if (!c->in) {
    c->in = in_alloc ();
    if (!c->in) {
      client_close (c);
      return;
    }
  }
  n = read (c->fd, c->in + c->in_len, IN_SIZE - c->in_len);
  if (n == -1 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n == -1) {
    client_close (c);
    return;
  }
  /* End of input is a half-close (shutdown (SHUT_WR), as socat and nc -N
   * do) as often as a close: the requests already sent still get their
   * replies.
   */
  if (n == 0)
    c->eof = true;
  c->in_len += n;
  client_kick (c);
}

static void
write_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct client *c = w->data;
  ssize_t n;

  while (out_pending (c) > 0) {
    /* A client that went away entirely: no SIGPIPE, just close. */
    n = send (c->fd, c->out + c->out_off, out_pending (c), MSG_NOSIGNAL);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 && errno == EAGAIN)
      break;
    if (n <= 0) {
      client_close (c);
      return;
    }
    ic_memzero_explicit (c->out + c->out_off, n);
    c->out_off += n;
  }
  if (out_pending (c) == 0) {
    c->out_off = c->out_len = 0;
    if (c->out_cap > OUT_KEEP)          /* a backlog is over: give it back */
      out_free (c);
    ev_io_stop (loop, w);
  }
  /* Input held back for the replies to be taken, or the close that
   * waited for the last reply.
   */
  client_kick (c);
}

/* Only our own user and root may talk to us. */
static bool
peer_allowed (int fd)
{
  struct ucred cred;
  socklen_t len = sizeof cred;

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
    return false;
  return cred.uid == 0 || cred.uid == geteuid ();
}

/* Refuse a client with a one-line error reply, then hang up. */
static void
refuse_client (int fd, const char *msg)
{
  ssize_t ignored = write (fd, msg, strlen (msg));

  (void) ignored;
  close (fd);
}

/* accept4 ran out of descriptors or memory: the connection stays in the
 * backlog and the listening socket stays readable, so accepting again at
 * once would spin.  Wait a while instead, serving the clients we have.
 */
static void
accept_pause (struct ic_control *ctl, int err)
{
  ic_debug ("control: cannot accept a client: %s; trying again in %g s",
            ic_strerror (err), ACCEPT_RETRY_S);
  ev_io_stop (ctl->loop, &ctl->accept_io);
  ev_timer_set (&ctl->accept_retry, ACCEPT_RETRY_S, 0.);
  ev_timer_start (ctl->loop, &ctl->accept_retry);
}

static void
accept_retry_cb (struct ev_loop *loop, ev_timer *w, int revents)
{
  struct ic_control *ctl = w->data;

  ev_io_start (loop, &ctl->accept_io);
}

static void
accept_cb (struct ev_loop *loop, ev_io *w, int revents)
{
  struct ic_control *ctl = w->data;
  struct client *c;
  int fd;

  fd = accept4 (ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd == -1) {
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
        errno == ENOMEM)
      accept_pause (ctl, errno);
    return;
  }
  if (!peer_allowed (fd)) {
    refuse_client (fd, "{\"ok\":false,\"error\":\"permission denied: only "
                   "the server's user and root may use the control "
                   "socket\",\"errno\":\"EACCES\"}\n");
    ic_debug ("control: refused a client of another user");
    return;
  }
  /* Each client may hold a worker thread and an input buffer: a bound,
   * so that one user's connections cannot take the server's descriptors
   * or memory.
   */
  if (ctl->nclients >= MAX_CLIENTS) {
    refuse_client (fd, "{\"ok\":false,\"error\":\"control: too many "
                   "clients (at most " STRINGIFY (MAX_CLIENTS) "); try "
                   "again later\",\"errno\":\"EAGAIN\"}\n");
    ic_debug ("control: refused a client: %u connected", ctl->nclients);
    return;
  }
  c = calloc (1, sizeof *c);
  if (!c) {
    close (fd);
    return;
  }
  c->ctl = ctl;
  c->fd = fd;
  c->refs = 1;
  ev_io_init (&c->rio, read_cb, fd, EV_READ);
  ev_io_init (&c->wio, write_cb, fd, EV_WRITE);
  c->rio.data = c->wio.data = c;
  c->next = ctl->clients;
  ctl->clients = c;
  ctl->nclients++;
  ev_io_start (loop, &c->rio);
}

static void
wake_cb (struct ev_loop *loop, ev_async *w, int revents)
{
  struct ic_control *ctl = w->data;
  struct done *d;
  bool stopping;

  pthread_mutex_lock (&ctl->done_lock);
  d = ctl->done;
  ctl->done = NULL;
  stopping = ctl->stopping;
  pthread_mutex_unlock (&ctl->done_lock);
  while (d) {
    struct done *next = d->next;
    struct client *c = d->client;

    /* Once stopping, nothing more is run: a line handled now could
     * start a worker that stop no longer waits for.
     */
    if (!c->closed && !stopping) {
      c->waiting = false;
      if (d->reply)
        client_send (c, d->reply);
      else
        client_send_json (c, ic_protocol_error (ENOMEM, "out of memory"));
      /* Lines that arrived meanwhile, then read on or close. */
      if (!c->closed)
        client_kick (c);
    }
    else if (!c->closed && d->reply)
      client_send (c, d->reply);        /* ic_control_stop sends it */
    client_unref (c);
    if (d->secret && d->reply)
      ic_memzero_explicit (d->reply, strlen (d->reply));
    free (d->reply);
    free (d);
    d = next;
  }
  if (stopping)
    ev_break (loop, EVBREAK_ALL);
}

static void *
loop_thread (void *arg)
{
  struct ic_control *ctl = arg;
  locale_t c_locale;

  /* Errors of the commands go to their replies, not to the log. */
  ic_error_capture (true);
  /* The protocol is locale-independent: run in the C locale.  This also
   * keeps json-c's per-parse newlocale() on its lock-free path for "C"
   * (with the lock, a process whose locale lock was left unbalanced by a
   * preloaded sanitizer runtime would hang here).
   */
  c_locale = newlocale (LC_ALL_MASK, "C", (locale_t) 0);
  if (c_locale)
    uselocale (c_locale);
  ev_run (ctl->loop, 0);
  return NULL;
}

/* Is somebody answering on @path? */
static bool
socket_alive (const struct sockaddr_un *addr)
{
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool alive;

  if (fd == -1)
    return false;
  alive = connect (fd, (const struct sockaddr *) addr, sizeof *addr) == 0;
  close (fd);
  return alive;
}

/* @path made absolute against the current directory: nbdkit moves to /
 * when it forks into the background, and the socket must still be
 * removed at the end.  NULL if out of memory.
 */
static char *
absolute (const char *path)
{
  char *cwd, *out;

  if (path[0] == '/')
    return strdup (path);
  cwd = getcwd (NULL, 0);
  if (!cwd) {
    ic_debug ("control socket %s: cannot tell the current directory (%s): "
              "it is removed by that relative name at the end", path,
              ic_strerror (errno));
    return strdup (path);
  }
  if (asprintf (&out, "%s%s%s", cwd, strcmp (cwd, "/") ? "/" : "",
                path) == -1)
    out = NULL;
  free (cwd);
  return out;
}

/* Remove our socket at the end, unless someone put something else there
 * since (a second server after ours was removed by hand).
 */
static void
unlink_if_ours (const struct ic_control *ctl)
{
  struct stat st;

  if (lstat (ctl->path, &st) == 0 && S_ISSOCK (st.st_mode) &&
      st.st_dev == ctl->sock_dev && st.st_ino == ctl->sock_ino)
    unlink (ctl->path);
}

void
ic_control_unlink (struct ic_control *ctl)
{
  if (ctl)
    unlink_if_ours (ctl);
}

struct ic_control *
ic_control_listen (struct ic_graph *graph, const char *path, mode_t mode,
                   const char *what)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct ic_control *ctl;
  struct stat st;
  mode_t old_umask;
  int err;

  if (strlen (path) >= sizeof addr.sun_path) {
    ic_error ("%s: socket path %s is too long (at most %zu bytes)",
              what, path, sizeof addr.sun_path - 1);
    errno = ENAMETOOLONG;
    return NULL;
  }
  strcpy (addr.sun_path, path);
  ctl = calloc (1, sizeof *ctl);
  if (!ctl || !(ctl->path = absolute (path))) {
    free (ctl);
    ic_error ("%s: out of memory", what);
    errno = ENOMEM;
    return NULL;
  }
  ctl->graph = graph;
  pthread_mutex_init (&ctl->done_lock, NULL);
  pthread_cond_init (&ctl->done_cond, NULL);

  if (socket_alive (&addr)) {
    ic_error ("%s: %s is in use by another server", what, path);
    err = EADDRINUSE;
    goto out_free;
  }
  /* A stale socket from a crash is replaced; anything else at the path
   * (a file named by mistake) is never removed.
   */
  if (lstat (path, &st) == 0) {
    if (!S_ISSOCK (st.st_mode)) {
      ic_error ("%s: %s exists and is not a socket; refused (remove it or "
                "choose another path)", what, path);
      err = EEXIST;
      goto out_free;
    }
    unlink (path);
  }
  ctl->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
                           SOCK_CLOEXEC, 0);
  if (ctl->listen_fd == -1) {
    err = errno;
    ic_error ("%s: socket: %s", what, ic_strerror (err));
    goto out_free;
  }
  /* Never a moment with a wider mode than asked for. */
  old_umask = umask (~mode & 0777);
  if (bind (ctl->listen_fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    err = errno;
    umask (old_umask);
    ic_error ("%s: bind %s: %s", what, path, ic_strerror (err));
    goto out_close;
  }
  umask (old_umask);
  if (chmod (path, mode) == -1 || listen (ctl->listen_fd, 64) == -1 ||
      lstat (path, &st) == -1) {
    err = errno;
    ic_error ("%s: %s: %s", what, path, ic_strerror (err));
    unlink (path);
    goto out_close;
  }
  ctl->loop = ev_loop_new (EVFLAG_AUTO);
  if (!ctl->loop) {
    err = ENOMEM;
    ic_error ("%s: cannot create the event loop", what);
    unlink (path);
    goto out_close;
  }
  ctl->sock_dev = st.st_dev;
  ctl->sock_ino = st.st_ino;
  ev_io_init (&ctl->accept_io, accept_cb, ctl->listen_fd, EV_READ);
  ctl->accept_io.data = ctl;
  ev_io_start (ctl->loop, &ctl->accept_io);
  ev_init (&ctl->accept_retry, accept_retry_cb);
  ctl->accept_retry.data = ctl;
  ev_async_init (&ctl->wake, wake_cb);
  ctl->wake.data = ctl;
  ev_async_start (ctl->loop, &ctl->wake);
  return ctl;

out_close:
  close (ctl->listen_fd);
out_free:
  free (ctl->path);
  free (ctl);
  errno = err;
  return NULL;
}

int
ic_control_start (struct ic_control *ctl)
{
  int err = pthread_create (&ctl->thread, NULL, loop_thread, ctl);

  if (err) {
    ic_error ("control: cannot start the control thread: %s",
              ic_strerror (err));
    return -err;
  }
  ctl->running = true;
  return 0;
}

void
ic_control_stop (struct ic_control *ctl)
{
  if (!ctl)
    return;
  pthread_mutex_lock (&ctl->done_lock);
  ctl->stopping = true;
  pthread_mutex_unlock (&ctl->done_lock);
  if (ctl->running) {
    ev_async_send (ctl->loop, &ctl->wake);
    pthread_join (ctl->thread, NULL);
  }
  /* Workers still running finish their command (those that wait stop
   * waiting) and queue their reply, sent below if it can be at once.
   */
  ic_protocol_cancel_waits ();
  pthread_mutex_lock (&ctl->done_lock);
  while (ctl->workers > 0)
    pthread_cond_wait (&ctl->done_cond, &ctl->done_lock);
  pthread_mutex_unlock (&ctl->done_lock);
  wake_cb (ctl->loop, &ctl->wake, 0);
  /* The replies still queued (a wait-resync that gave up says why) go
   * out if the socket takes them now; no waiting for slow readers.
   */
  while (ctl->clients) {
    struct client *c = ctl->clients;

    if (out_pending (c) > 0 &&
        send (c->fd, c->out + c->out_off, out_pending (c),
              MSG_NOSIGNAL) == -1)
      ic_debug ("control: a last reply was not sent: %s",
                ic_strerror (errno));
    client_close (c);
  }
  ev_timer_stop (ctl->loop, &ctl->accept_retry);
  ev_loop_destroy (ctl->loop);
  close (ctl->listen_fd);
  unlink_if_ours (ctl);
  pthread_mutex_destroy (&ctl->done_lock);
  pthread_cond_destroy (&ctl->done_cond);
  free (ctl->path);
  free (ctl);
}

/* plugins/inlinecrypt.c - the nbdkit plugin: glue only.
 *
 * nbdkit hands us NBD requests from many threads at once (PARALLEL); each
 * is passed to its export (stack/export.h), which gives it crypto contexts
 * from the export's context map and submits it down the stack.  Nothing
 * here holds a lock.
 */
#include <config.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "error.h"
#include "conf.h"
#include "control.h"
#include "export.h"
#include "fallback.h"
#include "graph.h"
#include "params.h"
#include "parse.h"
#include "secmem.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* The largest request we take; NBD clients split bigger ones. */
#define MAX_REQUEST (32 * 1024 * 1024)

static struct ic_params *params;
static struct ic_graph *graph;
static struct ic_control *control;
/* The files the leaves created belong to a server that started: set in
 * after_fork, and in a parent that forked (nbdkit going into the
 * background: the child owns them now).
 */
static bool started;

/* A connection: its export, and the minimum block size it was told. */
struct conn {
  struct ic_export *exp;
  uint32_t told;                /* the minimum block size, counted */
  struct conn *prev, *next;     /* in open_conns */
};

/* The open connections.  nbdkit does not close a connection that ends
 * once it is shutting down (it unloads us instead): unload frees what is
 * left here.
 */
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn *open_conns;

static void
log_error (const char *msg)
{
  nbdkit_error ("%s", msg);
}

static void
log_debug (const char *msg)
{
  nbdkit_debug ("%s", msg);
}

static void
inlinecrypt_load (void)
{
#if defined __SANITIZE_ADDRESS__ || defined __SANITIZE_THREAD__
  /* Stay loaded when nbdkit unloads us at exit, so that the leaks found
   * then are reported with our function names and lines (nbdkit keeps a
   * plugin loaded only under valgrind), and so that TSan, which keeps
   * its own list of atexit handlers, does not call ours once unloaded.
   */
  Dl_info info;

  if (dladdr ((void *) inlinecrypt_load, &info) && info.dli_fname)
    (void) dlopen (info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
#endif
  ic_error_set_sink (log_error, log_debug);
}

/* A start that fails after config_complete built the graph leaves no
 * file a leaf created, nor the control socket: get_ready discards the graph itself when it fails,
 * but nbdkit can fail after us (a bad socket of its own, another
 * config_complete or get_ready) and then exits without unloading the
 * plugin.  An exit handler removes the files then, unless the server
 * started.  A parent that forks marks the start too: nbdkit's daemonizing
 * parent exits, and its exit must not take the child's files.
 */
static void
discard_files_at_exit (void)
{
  if (!__atomic_load_n (&started, __ATOMIC_ACQUIRE)) {
    ic_graph_discard_files (graph);
    ic_control_unlink (control);
  }
}

static void
forked_parent (void)
{
  __atomic_store_n (&started, true, __ATOMIC_RELEASE);
}

/* Called before the graph is built.  Both handlers are the plugin's: glibc
 * runs the exit handler and drops the fork handler when nbdkit unloads
 * it, after unload has freed the graph.
 */
static int
discard_files_unless_started (void)
{
  static bool registered;
  int err;

  if (registered)
    return 0;
  err = pthread_atfork (NULL, forked_parent, NULL);
  if (err == 0 && atexit (discard_files_at_exit) != 0)
    err = ENOMEM;
  if (err) {
    nbdkit_error ("cannot register an exit handler: %s", strerror (err));
    return -1;
  }
  registered = true;
  return 0;
}

/* The control socket is bound before nbdkit forks, so that a bad path
 * stops the start; its thread starts after the fork.  Its errors name the
 * line of the control statement, or control=.
 */
static int
inlinecrypt_get_ready (void)
{
  char what[512];

  if (graph->control_path) {
    if (graph->control_at)
      snprintf (what, sizeof what, "%s: control", graph->control_at);
    else
      snprintf (what, sizeof what, "control=");
    control = ic_control_listen (graph, graph->control_path,
                                 graph->control_mode, what);
    if (!control) {
      ic_graph_discard (graph);
      graph = NULL;
      return -1;
    }
  }
  return 0;
}

static int
inlinecrypt_after_fork (void)
{
  if (control && ic_control_start (control) < 0)
    return -1;
  __atomic_store_n (&started, true, __ATOMIC_RELEASE);
  return 0;
}

/* Every connection is gone: stop taking commands, remove the socket. */
static void
inlinecrypt_cleanup (void)
{
  ic_control_stop (control);
  control = NULL;
}

static void
inlinecrypt_unload (void)
{
  struct conn *c;

  /* No connection thread calls us any more (see open_conns). */
  while ((c = open_conns) != NULL) {
    open_conns = c->next;
    free (c);
  }
  ic_control_stop (control);
  control = NULL;
  ic_graph_free (graph);
  graph = NULL;
  ic_params_free (params);
  params = NULL;
  ic_crypto_fallback_destroy ();
}

static int
inlinecrypt_config (const char *key, const char *value)
{
  int r;

  if (!params) {
    if (ic_crypto_init () < 0)
      return -1;
    params = ic_params_new ();
    if (!params) {
      nbdkit_error ("out of memory");
      return -1;
    }
  }
  if (strcmp (key, "key") == 0) {
    char *hex = NULL;
    struct stat st;

    /* A second key= is refused before its secret is read or prompted
     * for, not after.
     */
    if (ic_params_check_once (params, key) < 0)
      return -1;
    if (value[0] == '+' && stat (value + 1, &st) == 0 &&
        S_ISREG (st.st_mode) && (st.st_mode & (S_IRWXG | S_IRWXO))) {
      nbdkit_error ("key=: key file %s is accessible by group or others "
                    "(mode %04o); chmod 600 it", value + 1,
                    (unsigned int) (st.st_mode & 07777));
      return -1;
    }

    /* The key itself: nbdkit has shown it already (with -v it logs every
     * parameter before the plugin sees it, and has no way to mark one
     * secret), and it is in the command line for ps as long as we run.
     * Say so where it shows; the manual says it too.
     */
    if (value[0] != '+' && value[0] != '-')
      nbdkit_debug ("key=: the key was given on the command line, so it is "
                    "in this log and visible to ps; use key=+FILE or key=- "
                    "instead");

    /* +FILE, - and -FD, like every nbdkit secret.  A file and a file
     * descriptor are read straight into locked memory: nbdkit reads them
     * through a FILE whose buffer it frees with the key still in it.
     * "-" prompts on the terminal, which nbdkit knows how to do.
     */
    if (strcmp (value, "-") != 0) {
      size_t size;

      /* -FD is closed there, the descriptor it parsed. */
      if (ic_read_secret ("key=", value, &hex, &size) < 0)
        return -1;
      r = ic_params_set (params, key, hex);
      ic_secure_free (hex, size);
      return r < 0 ? -1 : 0;
    }
    if (nbdkit_read_password (value, &hex) == -1)
      return -1;
    r = ic_params_set (params, key, hex);
    ic_memzero_explicit (hex, strlen (hex));
    free (hex);
  }
  else
    r = ic_params_set (params, key, value);
  return r < 0 ? -1 : 0;
}

static int
inlinecrypt_config_complete (void)
{
  const char *conflict;

  if (!params) {
    nbdkit_error ("no parameters: try size=1G key=+FILE, or config=FILE; "
                  "see nbdkit inlinecrypt --help");
    return -1;
  }
  if (discard_files_unless_started () < 0)
    return -1;
  if (ic_params_config_file (params)) {
    conflict = ic_params_config_conflict (params);
    if (conflict) {
      nbdkit_error ("%s=: cannot be combined with config= (the file says "
                    "it all; only control= may be added)", conflict);
      return -1;
    }
    graph = ic_conf_load (ic_params_config_file (params));
    /* control= overrides the file's control socket: the command line is
     * the one place to move it without editing the file (a second server
     * on the same file, a test rig).  Only the path: the file's mode=
     * stays, as control= has none.  Said in the log, not silently.
     */
    if (graph && ic_params_control (params)) {
      if (graph->control_at)
        nbdkit_debug ("control=%s: replaces the control socket %s of %s "
                      "(the file's mode=%04o still applies)",
                      ic_params_control (params), graph->control_path,
                      graph->control_at,
                      (unsigned int) graph->control_mode);
      free (graph->control_path);
      free (graph->control_at);
      graph->control_at = NULL;
      graph->control_path = strdup (ic_params_control (params));
      if (!graph->control_path) {
        nbdkit_error ("out of memory");
        return -1;
      }
    }
  }
  else
    graph = ic_params_build (params);
  if (!graph)
    return -1;
  if (ic_crypto_fallback_set_num_keyslots (graph->fallback_keyslots) < 0)
    return -1;
  /* Key bytes are now only in the key objects. */
  ic_params_free (params);
  params = NULL;
  return 0;
}

static void
inlinecrypt_dump_plugin (void)
{
  int m;

  printf ("inlinecrypt_version=%s\n", PACKAGE_VERSION);
  printf ("inlinecrypt_modes=");
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    printf ("%s%s", m > 1 ? "," : "", ic_crypto_mode_name (m));
  printf ("\n");
}

static int
inlinecrypt_list_exports (int readonly, int is_tls,
                          struct nbdkit_exports *exports)
{
  size_t i;

  for (i = 0; i < graph->nexports; i++)
    if (nbdkit_add_export (exports, graph->exports[i]->name,
                           graph->exports[i]->description) == -1)
      return -1;
  return 0;
}

static const char *
inlinecrypt_default_export (int readonly, int is_tls)
{
  return graph->nexports ? graph->exports[0]->name : "";
}

static struct ic_export *
export_of (void *handle)
{
  return ((struct conn *) handle)->exp;
}

static void *
inlinecrypt_open (int readonly)
{
  const char *name = nbdkit_export_name ();
  struct ic_export *exp;
  struct conn *c;

  exp = ic_graph_find_export (graph, name ? name : "");
  if (!exp) {
    nbdkit_error ("no export named '%s' (nbdinfo --list shows them)",
                  name ? name : "");
    errno = ENOENT;
    return NULL;
  }
  c = calloc (1, sizeof *c);
  if (!c) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  c->exp = exp;
  /* Counted from the start: nbdkit asks .block_size only of a client
   * that asks for it, and one that does not is bound by it all the same
   * (a map may not raise it under the client).
   */
  c->told = ic_export_tell_block_size (exp, ic_device_min_block (exp->dev));
  pthread_mutex_lock (&conns_lock);
  c->next = open_conns;
  if (open_conns)
    open_conns->prev = c;
  open_conns = c;
  pthread_mutex_unlock (&conns_lock);
  return c;
}

static void
inlinecrypt_close (void *handle)
{
  struct conn *c = handle;

  pthread_mutex_lock (&conns_lock);
  if (c->prev)
    c->prev->next = c->next;
  else
    open_conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  pthread_mutex_unlock (&conns_lock);
  ic_export_forget_block_size (c->exp, c->told);
  free (c);
}

static const char *
inlinecrypt_export_description (void *handle)
{
  struct ic_export *exp = export_of (handle);

  return exp->description[0] ? exp->description : NULL;
}

static int64_t
inlinecrypt_get_size (void *handle)
{
  struct ic_export *exp = export_of (handle);

  return exp->size;
}

static int
inlinecrypt_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                        uint32_t *maximum)
{
  struct conn *c = handle;

  /* What the connection was counted with at open (powers of 2 all: the
   * largest is a multiple of the others).
   */
  *minimum = c->told;
  *preferred = *minimum > 4096 ? *minimum : 4096;
  *maximum = MAX_REQUEST;
  return 0;
}

/* Read-only if a leaf under the export is: nbdkit then refuses writes
 * (EROFS) before they reach a leaf that cannot take them.
 */
static int
inlinecrypt_can_write (void *handle)
{
  struct ic_export *exp = export_of (handle);

  return !ic_device_is_readonly (exp->dev);
}

static int
inlinecrypt_can_flush (void *handle)
{
  return 1;
}

static int
inlinecrypt_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
inlinecrypt_can_trim (void *handle)
{
  return 1;
}

static int
inlinecrypt_can_zero (void *handle)
{
  return 1;
}

static int
inlinecrypt_can_fast_zero (void *handle)
{
  return 0;
}

static int
inlinecrypt_can_multi_conn (void *handle)
{
  struct ic_export *exp = export_of (handle);

  return (exp->dev->features & IC_DEV_CAN_MULTI_CONN) != 0;
}

static int
inlinecrypt_is_rotational (void *handle)
{
  return 0;
}

/* The one way back to nbdkit: errno for the client, -1. */
static int
fail (int r)
{
  nbdkit_set_error (-r);
  return -1;
}

static int
inlinecrypt_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                   uint32_t flags)
{
  int r = ic_export_pread (export_of (handle), buf, count, offset);

  return r < 0 ? fail (r) : 0;
}

static int
inlinecrypt_pwrite (void *handle, const void *buf, uint32_t count,
                    uint64_t offset, uint32_t flags)
{
  int r = ic_export_pwrite (export_of (handle), buf, count, offset,
                            flags & NBDKIT_FLAG_FUA ? IC_BIO_FUA : 0);

  return r < 0 ? fail (r) : 0;
}

static int
inlinecrypt_zero (void *handle, uint32_t count, uint64_t offset,
                  uint32_t flags)
{
  unsigned int f = 0;
  int r;

  if (flags & NBDKIT_FLAG_FUA)
    f |= IC_BIO_FUA;
  if (!(flags & NBDKIT_FLAG_MAY_TRIM))
    f |= IC_BIO_NOUNMAP;
  r = ic_export_zero (export_of (handle), count, offset, f);
  return r < 0 ? fail (r) : 0;
}

static int
inlinecrypt_trim (void *handle, uint32_t count, uint64_t offset,
                  uint32_t flags)
{
  int r = ic_export_trim (export_of (handle), count, offset,
                          flags & NBDKIT_FLAG_FUA ? IC_BIO_FUA : 0);

  return r < 0 ? fail (r) : 0;
}

static int
inlinecrypt_flush (void *handle, uint32_t flags)
{
  int r = ic_export_flush (export_of (handle));

  return r < 0 ? fail (r) : 0;
}

static struct nbdkit_plugin plugin = {
  .name = "inlinecrypt",
  .longname = "inlinecrypt: Linux inline encryption (blk-crypto) emulated",
  .version = PACKAGE_VERSION,
  .description = "Serves exports whose data is stored encrypted exactly as "
                 "Linux inline-encryption hardware and blk-crypto-fallback "
                 "write it.",
  .load = inlinecrypt_load,
  .unload = inlinecrypt_unload,
  .config = inlinecrypt_config,
  .config_complete = inlinecrypt_config_complete,
  .get_ready = inlinecrypt_get_ready,
  .after_fork = inlinecrypt_after_fork,
  .cleanup = inlinecrypt_cleanup,
  .config_help = ic_params_help,
  .magic_config_key = "config",
  .dump_plugin = inlinecrypt_dump_plugin,
  .list_exports = inlinecrypt_list_exports,
  .default_export = inlinecrypt_default_export,
  .open = inlinecrypt_open,
  .close = inlinecrypt_close,
  .export_description = inlinecrypt_export_description,
  .get_size = inlinecrypt_get_size,
  .block_size = inlinecrypt_block_size,
  .can_write = inlinecrypt_can_write,
  .can_flush = inlinecrypt_can_flush,
  .can_fua = inlinecrypt_can_fua,
  .can_trim = inlinecrypt_can_trim,
  .can_zero = inlinecrypt_can_zero,
  .can_fast_zero = inlinecrypt_can_fast_zero,
  .can_multi_conn = inlinecrypt_can_multi_conn,
  .is_rotational = inlinecrypt_is_rotational,
  .pread = inlinecrypt_pread,
  .pwrite = inlinecrypt_pwrite,
  .zero = inlinecrypt_zero,
  .trim = inlinecrypt_trim,
  .flush = inlinecrypt_flush,
  .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN (plugin)

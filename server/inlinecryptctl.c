/* server/inlinecryptctl.c - the command-line client of the control
 * server (server/protocol.h).
 *
 *   inlinecryptctl [-s SOCKET] [--json] COMMAND [ARGS...]
 *
 * Exit status: 0 on success, 1 when the server refused the command (its
 * message on standard error), 2 on a usage error (a malformed number too)
 * or no server.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "number.h"
#include "shown.h"

#define DEFAULT_SOCKET "/run/inlinecrypt.sock"

static const char *socket_path;
static bool json_output;

static void
usage (int status)
{
  fprintf (status ? stderr : stdout,
"usage: inlinecryptctl [-s SOCKET] [--json] COMMAND [ARGS...]\n"
"\n"
"  status [DEVICE]                      crypto capabilities (sysfs view),\n"
"                                       tables, mirror legs\n"
"  stats [--reset]                      engine, fallback, device, export\n"
"                                       counters\n"
"  key add NAME [mode=M] [data-unit-size=N] [dun-bytes=N] key=+FILE|-\n"
"  key add NAME type=hw_wrapped engine=E [data-unit-size=N] [dun-bytes=N]\n"
"          key=+FILE|-                  an ephemeral blob from key prepare\n"
"  key remove NAME                      refused while a map uses it\n"
"  key list                             names and modes, never key bytes\n"
"  key import engine=E|device=D key=+FILE|- [capacity=N]\n"
"                                       raw key -> long-term blob (hex)\n"
"  key generate engine=E|device=D [capacity=N]\n"
"                                       random key -> long-term blob\n"
"  key prepare engine=E|device=D blob=+FILE|- [capacity=N]\n"
"                                       long-term -> ephemeral blob\n"
"  key derive-secret NAME [engine=E|device=D]\n"
"                                       software secret of a hw_wrapped key\n"
"  evict KEY [DEVICE]                   EBUSY while in use, 0 if absent\n"
"  map EXPORT OFFSET LENGTH key=K [dun-base=N] | none\n"
"  table load DEVICE FILE|- [options=per_child_fallback]\n"
"  table resume|clear|show DEVICE\n"
"  engine reset ENGINE\n"
"  fault ENGINE program-fail=N[,errno=EIO] | program-fail-prob=P |\n"
"               program-delay-us=N | clear\n"
"  fault LEAF io-error=read|write|all [count=N] | io-delay-us=N | clear\n"
"  wait-resync DEVICE [timeout-ms=N]\n"
"  ping\n"
"\n"
"SOCKET defaults to $INLINECRYPT_SOCKET, else " DEFAULT_SOCKET ".\n");
  exit (status);
}

static void
die_usage (const char *fmt, const char *arg)
{
  fprintf (stderr, "inlinecryptctl: ");
  fprintf (stderr, fmt, IC_SHOWN (arg));
  fprintf (stderr, "\n");
  exit (2);
}

/* Read all of a file ("-": standard input) as a string. */
static char *
read_all (const char *path, size_t *lenp)
{
  int fd = strcmp (path, "-") == 0 ? 0 : open (path, O_RDONLY | O_CLOEXEC);
  size_t cap = 4096;
  size_t len = 0;
  char *buf;

  if (fd == -1) {
    fprintf (stderr, "inlinecryptctl: %s: %s\n", path, strerror (errno));
    exit (2);
  }
  buf = malloc (cap);
  for (;;) {
    ssize_t n;

    if (!buf)
      die_usage ("%s", "out of memory");
    if (len + 1 >= cap) {
      char *bigger = malloc (cap * 2);

      if (!bigger)
        die_usage ("%s", "out of memory");
      memcpy (bigger, buf, len);
      explicit_bzero (buf, cap);
      free (buf);
      buf = bigger;
      cap *= 2;
    }
    n = read (fd, buf + len, cap - 1 - len);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      fprintf (stderr, "inlinecryptctl: %s: %s\n", path, strerror (errno));
      exit (2);
    }
    if (n == 0)
      break;
    len += n;
  }
  if (fd != 0)
    close (fd);
  buf[len] = '\0';
  if (lenp)
    *lenp = cap;
  return buf;
}

/* Read the value of @name=+FILE or @name=- (a key or a wrapped-key blob
 * in hex): a file must not be readable by group or others.
 */
static char *
read_key (const char *name, const char *value, size_t *cap)
{
  struct stat st;
  char *text;
  size_t n;

  if (value[0] == '+') {
    if (stat (value + 1, &st) == 0 && S_ISREG (st.st_mode) &&
        (st.st_mode & (S_IRWXG | S_IRWXO))) {
      fprintf (stderr, "inlinecryptctl: %s file %s is accessible by group "
               "or others (mode %04o); chmod 600 it\n", name, value + 1,
               (unsigned int) (st.st_mode & 07777));
      exit (2);
    }
    text = read_all (value + 1, cap);
  }
  else if (strcmp (value, "-") == 0)
    text = read_all ("-", cap);
  else if (strcmp (name, "key") == 0)
    die_usage ("key=%s: expected key=+FILE or key=- (the key in hex is "
               "never taken from the command line)", value);
  else
    die_usage ("blob=%s: expected blob=+FILE or blob=- (the blob in hex "
               "is never taken from the command line)", value);
  n = strlen (text);
  while (n > 0 && strchr (" \t\r\n", text[n - 1]))
    text[--n] = '\0';
  return text;
}

/* "key=value" in @arg: the value if the key matches, else NULL. */
static const char *
kv (const char *arg, const char *key)
{
  size_t n = strlen (key);

  if (strncmp (arg, key, n) == 0 && arg[n] == '=')
    return arg + n + 1;
  return NULL;
}

/* A size or count, read as the server and the configuration file read
 * them (ic_number_parse_size(), which ic_parse_size() uses too): a
 * decimal number with an optional suffix K, M, G, T, P (powers of 1024,
 * also KiB, KB...) or s (512-byte sectors), at most 2^64-1.  No octal, no
 * hex, no sign: those, and anything too large, are usage errors.  Sent as
 * a JSON integer.
 */
static void
add_size (struct json_object *req, const char *field, const char *what,
          const char *value)
{
  uint64_t v;
  int r = ic_number_parse_size (value, &v);

  if (r == -ERANGE) {
    fprintf (stderr, "inlinecryptctl: %s%s: too large (at most "
             "18446744073709551615)\n", what, IC_SHOWN (value));
    exit (2);
  }
  if (r < 0) {
    fprintf (stderr, "inlinecryptctl: %s%s: expected a decimal number with "
             "an optional K, M, G, T, P or s suffix\n", what,
             IC_SHOWN (value));
    exit (2);
  }
  json_object_object_add (req, field, json_object_new_uint64 (v));
}

/* A probability: a decimal number from 0 to 1. */
static void
add_prob (struct json_object *req, const char *field, const char *what,
          const char *value)
{
  char *end;
  double p;

  /* strtod would also take hex, "inf", "nan" and leading blanks. */
  if (!*value || strspn (value, "0123456789.eE+-") != strlen (value))
    goto bad;
  errno = 0;
  p = strtod (value, &end);
  if (errno || *end || !(p >= 0 && p <= 1))
    goto bad;
  json_object_object_add (req, field, json_object_new_double (p));
  return;
bad:
  fprintf (stderr, "inlinecryptctl: %s%s: expected a decimal number from 0 "
           "to 1\n", what, IC_SHOWN (value));
  exit (2);
}

static void
add_str (struct json_object *req, const char *field, const char *value)
{
  json_object_object_add (req, field, json_object_new_string (value));
}

/* The key of key=+FILE or key=- into *@secret and the request, once: a
 * second would leave the first unwiped, and which one was meant?
 */
static void
add_key (struct json_object *req, const char *value, char **secret,
         size_t *secret_cap)
{
  if (*secret)
    die_usage ("%s", "key= is given twice");
  *secret = read_key ("key", value, secret_cap);
  add_str (req, "key", *secret);
}

/* Wipe the copy of the key that the request holds (json-c frees it
 * without).
 */
static void
wipe_request_key (struct json_object *req)
{
  struct json_object *v;

  if (json_object_object_get_ex (req, "key", &v) &&
      json_object_is_type (v, json_type_string))
    explicit_bzero ((char *) json_object_get_string (v),
                    json_object_get_string_len (v));
}

static struct json_object *
build_request (int argc, char **argv, char **secret, size_t *secret_cap)
{
  struct json_object *req = json_object_new_object ();
  const char *cmd;
  const char *v;
  int i;

  if (argc < 1)
    usage (2);
  cmd = argv[0];
#define NEED(n) do { if (argc < (n)) usage (2); } while (0)
  if (strcmp (cmd, "ping") == 0)
    add_str (req, "cmd", "ping");
  else if (strcmp (cmd, "status") == 0) {
    add_str (req, "cmd", "status");
    if (argc > 2)
      usage (2);
    if (argc == 2)
      add_str (req, "device", argv[1]);
  }
  else if (strcmp (cmd, "stats") == 0) {
    add_str (req, "cmd", "stats");
    for (i = 1; i < argc; i++)
      if (strcmp (argv[i], "--reset") == 0 || strcmp (argv[i], "reset") == 0)
        json_object_object_add (req, "reset",
                                json_object_new_boolean (true));
      else
        die_usage ("stats: unknown argument '%s'", argv[i]);
  }
  else if (strcmp (cmd, "key") == 0) {
    NEED (2);
    if (strcmp (argv[1], "add") == 0) {
      NEED (3);
      add_str (req, "cmd", "key-add");
      add_str (req, "name", argv[2]);
      for (i = 3; i < argc; i++) {
        if ((v = kv (argv[i], "mode")))
          add_str (req, "mode", v);
        else if ((v = kv (argv[i], "data-unit-size")))
          add_size (req, "data_unit_size", "data-unit-size=", v);
        else if ((v = kv (argv[i], "dun-bytes")))
          add_size (req, "dun_bytes", "dun-bytes=", v);
        else if ((v = kv (argv[i], "type")))
          add_str (req, "type", v);
        else if ((v = kv (argv[i], "engine")))
          add_str (req, "engine", v);
        else if ((v = kv (argv[i], "key")))
          add_key (req, v, secret, secret_cap);
        else
          die_usage ("key add: unknown argument '%s'", argv[i]);
      }
      if (!*secret)
        die_usage ("%s", "key add: key=+FILE or key=- is required");
    }
    else if (strcmp (argv[1], "import") == 0 ||
             strcmp (argv[1], "generate") == 0 ||
             strcmp (argv[1], "prepare") == 0) {
      char name[32];
      bool blob = false;

      snprintf (name, sizeof name, "key-%s", argv[1]);
      add_str (req, "cmd", name);
      for (i = 2; i < argc; i++) {
        if ((v = kv (argv[i], "engine")))
          add_str (req, "engine", v);
        else if ((v = kv (argv[i], "device")))
          add_str (req, "device", v);
        else if ((v = kv (argv[i], "capacity")))
          add_size (req, "capacity", "capacity=", v);
        else if ((v = kv (argv[i], "key")) &&
                 strcmp (argv[1], "import") == 0)
          add_key (req, v, secret, secret_cap);
        else if ((v = kv (argv[i], "blob")) &&
                 strcmp (argv[1], "prepare") == 0) {
          char *text;

          if (blob)
            die_usage ("%s", "blob= is given twice");
          text = read_key ("blob", v, NULL);
          add_str (req, "lt_key", text);
          free (text);
          blob = true;
        }
        else
          die_usage ("key: unknown argument '%s'", argv[i]);
      }
      if (strcmp (argv[1], "import") == 0 && !*secret)
        die_usage ("%s", "key import: key=+FILE or key=- is required");
      if (strcmp (argv[1], "prepare") == 0 && !blob)
        die_usage ("%s", "key prepare: blob=+FILE or blob=- is required");
    }
    else if (strcmp (argv[1], "derive-secret") == 0) {
      NEED (3);
      add_str (req, "cmd", "key-derive-secret");
      add_str (req, "name", argv[2]);
      for (i = 3; i < argc; i++)
        if ((v = kv (argv[i], "engine")))
          add_str (req, "engine", v);
        else if ((v = kv (argv[i], "device")))
          add_str (req, "device", v);
        else
          die_usage ("key derive-secret: unknown argument '%s'", argv[i]);
    }
    else if (strcmp (argv[1], "remove") == 0) {
      if (argc != 3)
        usage (2);
      add_str (req, "cmd", "key-remove");
      add_str (req, "name", argv[2]);
    }
    else if (strcmp (argv[1], "list") == 0) {
      if (argc != 2)
        usage (2);
      add_str (req, "cmd", "key-list");
    }
    else
      die_usage ("key: unknown subcommand '%s'", argv[1]);
  }
  else if (strcmp (cmd, "evict") == 0) {
    if (argc < 2 || argc > 3)
      usage (2);
    add_str (req, "cmd", "evict");
    add_str (req, "key", argv[1]);
    if (argc == 3)
      add_str (req, "device", argv[2]);
  }
  else if (strcmp (cmd, "map") == 0) {
    NEED (5);
    add_str (req, "cmd", "map");
    add_str (req, "export", argv[1]);
    add_size (req, "offset", "map: OFFSET=", argv[2]);
    add_size (req, "length", "map: LENGTH=", argv[3]);
    for (i = 4; i < argc; i++) {
      /* Each once, and a key or none, not both: which one was meant? */
      if (strcmp (argv[i], "none") == 0 || kv (argv[i], "key")) {
        if (json_object_object_get_ex (req, "key", NULL))
          die_usage ("map: '%s': a key is given already (key= or none, "
                     "once)", argv[i]);
        if (argv[i][0] == 'n')
          json_object_object_add (req, "key", NULL);
        else
          add_str (req, "key", kv (argv[i], "key"));
      }
      else if ((v = kv (argv[i], "dun-base"))) {
        if (json_object_object_get_ex (req, "dun_base", NULL))
          die_usage ("map: '%s': dun-base= is given already", argv[i]);
        add_str (req, "dun_base", v);
      }
      else
        die_usage ("map: unknown argument '%s'", argv[i]);
    }
    if (!json_object_object_get_ex (req, "key", NULL))
      die_usage ("%s", "map: key=KEY or none is needed");
  }
  else if (strcmp (cmd, "table") == 0) {
    NEED (3);
    if (strcmp (argv[1], "load") == 0) {
      char *text;

      NEED (4);
      add_str (req, "cmd", "table-load");
      add_str (req, "device", argv[2]);
      text = read_all (argv[3], NULL);
      add_str (req, "table", text);
      free (text);
      for (i = 4; i < argc; i++)
        if ((v = kv (argv[i], "options")))
          add_str (req, "options", v);
        else
          die_usage ("table load: unknown argument '%s'", argv[i]);
    }
    else if (strcmp (argv[1], "resume") == 0 ||
             strcmp (argv[1], "clear") == 0 ||
             strcmp (argv[1], "show") == 0) {
      char name[32];

      if (argc != 3)
        usage (2);
      snprintf (name, sizeof name, "table-%s", argv[1]);
      add_str (req, "cmd", name);
      add_str (req, "device", argv[2]);
    }
    else
      die_usage ("table: unknown subcommand '%s'", argv[1]);
  }
  else if (strcmp (cmd, "engine") == 0) {
    if (argc != 3 || strcmp (argv[1], "reset") != 0)
      usage (2);
    add_str (req, "cmd", "engine-reset");
    add_str (req, "engine", argv[2]);
  }
  else if (strcmp (cmd, "fault") == 0) {
    NEED (3);
    add_str (req, "cmd", "fault");
    add_str (req, "target", argv[1]);
    for (i = 2; i < argc; i++) {
      if (strcmp (argv[i], "clear") == 0)
        json_object_object_add (req, "clear", json_object_new_boolean (true));
      else if ((v = kv (argv[i], "program-fail"))) {
        char *copy = strdup (v);
        char *comma = strchr (copy, ',');

        if (comma) {
          *comma = '\0';
          if (!kv (comma + 1, "errno"))
            die_usage ("fault: expected program-fail=N,errno=NAME, got "
                       "'%s'", argv[i]);
          add_str (req, "errno", kv (comma + 1, "errno"));
        }
        add_size (req, "program_fail", "program-fail=", copy);
        free (copy);
      }
      else if ((v = kv (argv[i], "errno")))
        add_str (req, "errno", v);
      else if ((v = kv (argv[i], "program-fail-prob")))
        add_prob (req, "program_fail_prob", "program-fail-prob=", v);
      else if ((v = kv (argv[i], "program-delay-us")))
        add_size (req, "program_delay_us", "program-delay-us=", v);
      else if ((v = kv (argv[i], "io-error")))
        add_str (req, "io_error", v);
      else if ((v = kv (argv[i], "io-delay-us")))
        add_size (req, "io_delay_us", "io-delay-us=", v);
      else if ((v = kv (argv[i], "count")))
        add_size (req, "count", "count=", v);
      else
        die_usage ("fault: unknown argument '%s'", argv[i]);
    }
  }
  else if (strcmp (cmd, "wait-resync") == 0) {
    NEED (2);
    add_str (req, "cmd", "wait-resync");
    add_str (req, "device", argv[1]);
    for (i = 2; i < argc; i++)
      if ((v = kv (argv[i], "timeout-ms")))
        add_size (req, "timeout_ms", "timeout-ms=", v);
      else
        die_usage ("wait-resync: unknown argument '%s'", argv[i]);
  }
  else
    die_usage ("unknown command '%s'; try --help", cmd);
#undef NEED
  return req;
}

/* Send one line, read one line.  The caller frees the reply. */
static char *
exchange (const char *line)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  size_t len = strlen (line);
  size_t cap = 65536;
  size_t got = 0;
  char *reply;
  int fd;

  if (strlen (socket_path) >= sizeof addr.sun_path)
    die_usage ("socket path %s is too long", socket_path);
  strcpy (addr.sun_path, socket_path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    fprintf (stderr, "inlinecryptctl: cannot connect to %s: %s\n",
             socket_path, strerror (errno));
    exit (2);
  }
  while (len > 0) {
    /* The server may have answered and closed already (a refused user):
     * no SIGPIPE, and read its answer below.
     */
    ssize_t n = send (fd, line, len, MSG_NOSIGNAL);

    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    line += n;
    len -= n;
  }
  reply = malloc (cap);
  for (;;) {
    ssize_t n;

    if (!reply)
      die_usage ("%s", "out of memory");
    if (got + 1 == cap) {
      cap *= 2;
      reply = realloc (reply, cap);
      continue;
    }
    n = read (fd, reply + got, cap - 1 - got);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += n;
    if (memchr (reply + got - n, '\n', n))
      break;
  }
  close (fd);
  reply[got] = '\0';
  if (got == 0) {
    fprintf (stderr, "inlinecryptctl: no reply from %s\n", socket_path);
    exit (2);
  }
  return reply;
}

static uint64_t
get_u64 (struct json_object *o, const char *k)
{
  struct json_object *v;

  return json_object_object_get_ex (o, k, &v) ? json_object_get_uint64 (v)
                                              : 0;
}

static const char *
get_str (struct json_object *o, const char *k)
{
  struct json_object *v;

  return json_object_object_get_ex (o, k, &v) ? json_object_get_string (v)
                                              : "";
}

static bool
get_bool (struct json_object *o, const char *k)
{
  struct json_object *v;

  return json_object_object_get_ex (o, k, &v) && json_object_get_boolean (v);
}

static void
print_status (struct json_object *reply)
{
  struct json_object *devs;
  size_t i;
  size_t j;

  if (!json_object_object_get_ex (reply, "devices", &devs))
    return;
  for (i = 0; i < json_object_array_length (devs); i++) {
    struct json_object *d = json_object_array_get_idx (devs, i);
    struct json_object *crypto;
    struct json_object *legs;
    struct json_object *modes;

    printf ("%s: %s", get_str (d, "name"), get_str (d, "kind"));
    if (strcmp (get_str (d, "kind"), "leaf") == 0)
      printf (" (%s)", get_str (d, "backend"));
    printf (", %" PRIu64 " bytes", get_u64 (d, "size"));
    if (*get_str (d, "engine"))
      printf (", engine %s", get_str (d, "engine"));
    if (*get_str (d, "options"))
      printf (", options=%s", get_str (d, "options"));
    printf ("\n");
    if (json_object_object_get_ex (d, "crypto", &crypto) && crypto) {
      printf ("  queue/crypto/max_dun_bits  %" PRIu64 "\n",
              get_u64 (crypto, "max_dun_bits"));
      printf ("  queue/crypto/num_keyslots  %" PRIu64 "\n",
              get_u64 (crypto, "num_keyslots"));
      if (json_object_object_get_ex (crypto, "modes", &modes)) {
        json_object_object_foreach (modes, m, mask)
          printf ("  queue/crypto/modes/%s  %s\n", m,
                  json_object_get_string (mask));
      }
      if (*get_str (crypto, "raw_keys"))
        printf ("  queue/crypto/raw_keys  %s\n", get_str (crypto, "raw_keys"));
      if (*get_str (crypto, "hw_wrapped_keys"))
        printf ("  queue/crypto/hw_wrapped_keys  %s\n",
                get_str (crypto, "hw_wrapped_keys"));
    }
    else
      printf ("  no inline encryption (no queue/crypto/)\n");
    if (*get_str (d, "view"))
      printf ("  reads from the file's mapping: %" PRIu64 "%s\n",
              get_u64 (d, "view_reads"),
              strcmp (get_str (d, "view"), "lost") == 0 ?
              " (lost after a fault: pread from now on)" : "");
    if (get_bool (d, "writes_fenced")) {
      struct json_object *f;

      printf ("  writes fenced: %" PRIu64 " timed-out write(s) not yet "
              "answered", get_u64 (d, "unanswered_writes"));
      if (json_object_object_get_ex (d, "fenced_by", &f))
        printf (", the first %s %" PRIu64 " bytes at %" PRIu64,
                get_str (f, "op"), get_u64 (f, "length"),
                get_u64 (f, "offset"));
      printf ("\n");
    }
    if (*get_str (d, "table")) {
      const char *t = get_str (d, "table");

      printf ("  table:\n");
      while (*t) {
        const char *nl = strchr (t, '\n');
        int n = nl ? (int) (nl - t) : (int) strlen (t);

        printf ("    %.*s\n", n, t);
        t += n + (nl ? 1 : 0);
      }
    }
    if (json_object_object_get_ex (d, "legs", &legs))
      for (j = 0; j < json_object_array_length (legs); j++) {
        struct json_object *l = json_object_array_get_idx (legs, j);

        printf ("  leg %s %" PRIu64 ": %s", get_str (l, "device"),
                get_u64 (l, "offset") >> 9, get_str (l, "state"));
        if (strcmp (get_str (l, "state"), "resync") == 0)
          printf (" (%" PRIu64 " bytes done)", get_u64 (l, "resync_done"));
        if (get_u64 (l, "errors"))
          printf (", %" PRIu64 " errors", get_u64 (l, "errors"));
        printf ("\n");
      }
  }
}

static void
print_counters (const char *indent, struct json_object *o)
{
  json_object_object_foreach (o, k, v) {
    if (json_object_is_type (v, json_type_object)) {
      if (json_object_object_length (v) == 0)
        continue;
      printf ("%s%s:", indent, k);
      {
        json_object_object_foreach (v, k2, v2)
          printf (" %s=%s", k2, json_object_get_string (v2));
      }
      printf ("\n");
    }
    else
      printf ("%s%-18s %s\n", indent, k, json_object_get_string (v));
  }
}

static void
print_stats (struct json_object *reply)
{
  static const char *const sections[] = { "engines", "devices", "exports" };
  struct json_object *sec;
  size_t i;

  for (i = 0; i < 3; i++)
    if (json_object_object_get_ex (reply, sections[i], &sec)) {
      json_object_object_foreach (sec, name, o) {
        printf ("%.*s %s\n", (int) strlen (sections[i]) - 1, sections[i],
                name);
        print_counters ("  ", o);
      }
    }
  if (json_object_object_get_ex (reply, "fallback", &sec)) {
    printf ("fallback\n");
    print_counters ("  ", sec);
  }
}

static void
print_human (struct json_object *req, struct json_object *reply)
{
  const char *cmd = get_str (req, "cmd");
  struct json_object *v;
  size_t i;

  if (strcmp (cmd, "status") == 0)
    print_status (reply);
  else if (strcmp (cmd, "stats") == 0)
    print_stats (reply);
  else if (strcmp (cmd, "key-list") == 0 &&
           json_object_object_get_ex (reply, "keys", &v))
    for (i = 0; i < json_object_array_length (v); i++) {
      struct json_object *k = json_object_array_get_idx (v, i);
      struct json_object *users;

      printf ("%s %s data-unit-size=%" PRIu64 " dun-bytes=%" PRIu64
              " type=%s", get_str (k, "name"), get_str (k, "mode"),
              get_u64 (k, "data_unit_size"), get_u64 (k, "dun_bytes"),
              get_str (k, "type"));
      if (json_object_object_get_ex (k, "used_by", &users) &&
          json_object_array_length (users))
        printf (" used-by=%s", json_object_to_json_string_ext
                (users, JSON_C_TO_STRING_PLAIN));
      printf ("\n");
    }
  else if (strcmp (cmd, "table-show") == 0) {
    printf ("live:\n%s", get_str (reply, "live"));
    printf ("inactive:\n%s", get_str (reply, "inactive"));
  }
  else if (strcmp (cmd, "evict") == 0 &&
           json_object_object_get_ex (reply, "results", &v)) {
    json_object_object_foreach (v, dev, res)
      printf ("%s: %s\n", dev, json_object_get_string (res));
  }
  else if (strcmp (cmd, "ping") == 0)
    printf ("inlinecrypt %s\n", get_str (reply, "version"));
  else if (strcmp (cmd, "key-import") == 0 ||
           strcmp (cmd, "key-generate") == 0 ||
           strcmp (cmd, "key-prepare") == 0 ||
           strcmp (cmd, "key-derive-secret") == 0) {
    /* The blob or secret in hex, alone: to redirect into a file. */
    const char *hex = strcmp (cmd, "key-prepare") == 0
      ? get_str (reply, "eph_key")
      : strcmp (cmd, "key-derive-secret") == 0 ? get_str (reply, "sw_secret")
      : get_str (reply, "lt_key");

    if (*hex)
      printf ("%s\n", hex);
  }
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "socket", required_argument, NULL, 's' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct json_object *req;
  struct json_object *reply;
  struct json_object *ok;
  char *secret = NULL;
  size_t secret_cap = 0;
  char *line;
  char *text;
  bool success;
  int c;

  /* Stop at the command: its arguments may start with '-'. */
  while ((c = getopt_long (argc, argv, "+s:jh", opts, NULL)) != -1)
    switch (c) {
    case 's': socket_path = optarg; break;
    case 'j': json_output = true; break;
    case 'h': usage (0); break;
    default: usage (2);
    }
  if (!socket_path)
    socket_path = getenv ("INLINECRYPT_SOCKET");
  if (!socket_path)
    socket_path = DEFAULT_SOCKET;

  req = build_request (argc - optind, argv + optind, &secret, &secret_cap);
  text = (char *) json_object_to_json_string_ext (req,
                                                  JSON_C_TO_STRING_PLAIN);
  if (asprintf (&line, "%s\n", text) == -1)
    die_usage ("%s", "out of memory");
  /* The request may carry a key: wipe every copy of it. */
  explicit_bzero (text, strlen (text));
  wipe_request_key (req);
  if (secret) {
    explicit_bzero (secret, secret_cap);
    free (secret);
  }
  text = exchange (line);
  explicit_bzero (line, strlen (line));
  free (line);

  reply = json_tokener_parse (text);
  if (!reply || !json_object_object_get_ex (reply, "ok", &ok)) {
    fprintf (stderr, "inlinecryptctl: bad reply from the server: %s", text);
    return 2;
  }
  success = json_object_get_boolean (ok);
  if (json_output)
    printf ("%s\n", json_object_to_json_string_ext
            (reply, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
  else if (success)
    print_human (req, reply);
  if (!success) {
    fprintf (stderr, "inlinecryptctl: %s (%s)\n", get_str (reply, "error"),
             get_str (reply, "errno"));
    /* Only evict has something to show on failure: the result of each
     * leaf.  Anything else printed here would be an empty version, blob
     * or table on standard output, which scripts would take for data. */
    if (!json_output && strcmp (get_str (req, "cmd"), "evict") == 0)
      print_human (req, reply);
  }
  json_object_put (reply);
  json_object_put (req);
  free (text);
  return success ? 0 : 1;
}

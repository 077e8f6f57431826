/* config/conf.c - see conf.h. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "error.h"
#include "fallback.h"
#include "hwkm.h"
#include "leaf.h"
#include "parse.h"
#include "secmem.h"
#include "table.h"

#define MAX_WORDS 64
#define MAX_CONF_SIZE (16 * 1024 * 1024)

/* One parameter of a line: key=value, or a bare word (value NULL). */
struct param {
  char *key;
  char *value;
  bool used;
};

struct line {
  unsigned int lineno;
  int nwords;
  char *words[MAX_WORDS];       /* point into a copy of the line */
  int nparams;
  struct param params[MAX_WORDS];
};

struct parser {
  const char *path;
  const char *dir;
  unsigned int flags;
  struct ic_graph *g;
  char at[512];                 /* "path:line" of the current line */
  unsigned int fallback_line;   /* of the fallback statement, 0: none yet */
  unsigned int control_line;    /* of the control statement, 0: none yet */
  bool reported;                /* the error was sent to the sink */
};

/* An error at the current line. */
static int
perr (struct parser *p, int err, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* p->at = "path:LINE" (LINE 0: the path alone).  A path too long for it
 * loses its start, not the line number: "...end/of/path.conf:12".
 */
static void
set_at (struct parser *p, unsigned int lineno)
{
  char line[16] = "";
  size_t room;
  size_t len = strlen (p->path);

  if (lineno > 0)
    snprintf (line, sizeof line, ":%u", lineno);
  room = sizeof p->at - 1 - strlen (line);
  if (len <= room)
    snprintf (p->at, sizeof p->at, "%s%s", p->path, line);
  else
    snprintf (p->at, sizeof p->at, "...%s%s", p->path + len - (room - 3),
              line);
}

/* Send one message to the error sink.  While parsing, errors are only
 * kept (ic_error_capture()): an object made for a line reports its reason
 * without the line, and the parser says it again with the line; once is
 * enough.  An error that names its line already (those of parse.c's
 * helpers, of a table's lines) goes out as it is (ic_conf_parse()).
 */
static void __attribute__ ((format (printf, 2, 3)))
report (struct parser *p, const char *fmt, ...)
{
  char msg[IC_ERROR_MAX];
  bool captured = ic_error_capture (false);
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  ic_error ("%s", msg);
  ic_error_capture (captured);
  p->reported = true;
}

/* What a line that was taken reported anyway (an nbd= leaf whose extra
 * connections failed: it works on one) goes out as it was, as it did
 * before errors were kept; then the next line starts afresh.
 */
static void
flush_warning (struct parser *p)
{
  bool reported = p->reported;

  if (*ic_last_error ())
    report (p, "%s", ic_last_error ());
  p->reported = reported;
  ic_clear_error ();
}

static int
perr (struct parser *p, int err, const char *fmt, ...)
{
  char msg[IC_ERROR_MAX];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  report (p, "%s: %s", p->at, msg);
  return -err;
}

/* Split @text into words: white space separates, "double quotes" group,
 * # starts a comment.  Modifies @text.
 */
static int
split (struct parser *p, char *text, struct line *l)
{
  char *in = text;
  char *out;

  l->nwords = 0;
  for (;;) {
    while (*in && isspace ((unsigned char) *in))
      in++;
    if (!*in || *in == '#')
      return 0;
    if (l->nwords == MAX_WORDS)
      return perr (p, EINVAL, "too many words (at most %d)", MAX_WORDS);
    l->words[l->nwords++] = out = in;
    while (*in && !isspace ((unsigned char) *in)) {
      if (*in == '"') {
        in++;
        while (*in && *in != '"')
          *out++ = *in++;
        if (*in != '"')
          return perr (p, EINVAL, "unterminated \" quote");
        in++;
      }
      else
        *out++ = *in++;
    }
    if (*in)
      in++;
    *out = '\0';
  }
}

/* Turn words[@first..] into parameters. */
static void
make_params (struct line *l, int first)
{
  int i;

  l->nparams = 0;
  for (i = first; i < l->nwords; i++) {
    struct param *pa = &l->params[l->nparams++];
    char *eq = strchr (l->words[i], '=');

    pa->key = l->words[i];
    pa->value = NULL;
    pa->used = false;
    if (eq) {
      *eq = '\0';
      pa->value = eq + 1;
    }
  }
}

/* The value of parameter @key (which must have one), or NULL if absent.
 * A parameter given twice is an error.
 */
static int
get (struct parser *p, struct line *l, const char *what, const char *key,
     const char **value)
{
  int i;

  *value = NULL;
  for (i = 0; i < l->nparams; i++) {
    struct param *pa = &l->params[i];

    if (strcmp (pa->key, key) != 0)
      continue;
    /* An earlier match has set *value: each parameter is taken once, so
     * pa->used alone would never see the second one.
     */
    if (pa->used || *value)
      return perr (p, EINVAL, "%s: %s= is given twice", what, key);
    if (!pa->value)
      return perr (p, EINVAL, "%s: expected %s=VALUE", what, key);
    pa->used = true;
    *value = pa->value;
  }
  return 0;
}

/* Set *@found if the bare word @word is among the parameters (and take
 * it).  Given twice is an error, as for get(), rather than leaving the
 * second one to be called an unknown parameter.
 */
static int
get_flag (struct parser *p, struct line *l, const char *what,
          const char *word, bool *found)
{
  int i;

  *found = false;
  for (i = 0; i < l->nparams; i++)
    if (!l->params[i].value && !l->params[i].used &&
        strcmp (l->params[i].key, word) == 0) {
      if (*found)
        return perr (p, EINVAL, "%s: %s is given twice", what, word);
      l->params[i].used = true;
      *found = true;
    }
  return 0;
}

/* True if parameter @key is on the line, taken or not. */
static bool
has_param (const struct line *l, const char *key)
{
  int i;

  for (i = 0; i < l->nparams; i++)
    if (strcmp (l->params[i].key, key) == 0)
      return true;
  return false;
}

/* Every parameter must have been taken. */
static int
check_unused (struct parser *p, struct line *l, const char *what,
              const char *expected)
{
  int i;

  for (i = 0; i < l->nparams; i++)
    if (!l->params[i].used) {
      char b[128];

      return perr (p, EINVAL, "%s: unknown parameter '%s'; expected %s",
                   what, ic_shown (l->params[i].key, b, sizeof b), expected);
    }
  return 0;
}

/* "path:line: what: param=" for the value parsers. */
static const char *
value_what (struct parser *p, const char *what, const char *key, char *buf,
            size_t size)
{
  snprintf (buf, size, "%s: %s: %s=", p->at, what, key);
  return buf;
}

static int
get_uint (struct parser *p, struct line *l, const char *what,
          const char *key, uint64_t min, uint64_t max, unsigned int *out)
{
  const char *v;
  char w[1024];
  uint64_t n;
  int r = get (p, l, what, key, &v);

  if (r < 0 || !v)
    return r;
  r = ic_parse_uint (value_what (p, what, key, w, sizeof w), v, min, max, &n);
  if (r == 0)
    *out = n;
  return r;
}

static int
get_size (struct parser *p, struct line *l, const char *what,
          const char *key, uint64_t *out)
{
  const char *v;
  char w[1024];
  int r = get (p, l, what, key, &v);

  if (r < 0 || !v)
    return r;
  return ic_parse_size (value_what (p, what, key, w, sizeof w), v, out);
}

static int
get_bool (struct parser *p, struct line *l, const char *what,
          const char *key, bool *out)
{
  const char *v;
  char w[1024];
  int r = get (p, l, what, key, &v);

  if (r < 0 || !v)
    return r;
  return ic_parse_bool (value_what (p, what, key, w, sizeof w), v, out);
}

static bool
valid_name (const char *name)
{
  size_t n = strlen (name);
  size_t i;

  if (n == 0 || n >= 64)
    return false;
  for (i = 0; i < n; i++)
    if (!isalnum ((unsigned char) name[i]) && !strchr ("_.-", name[i]))
      return false;
  return true;
}

static int
check_name (struct parser *p, struct line *l, const char *kind)
{
  char b[128];

  if (l->nwords < 2)
    return perr (p, EINVAL, "%s: expected a name after '%s'", kind, kind);
  if (!valid_name (l->words[1]))
    return perr (p, EINVAL, "%s: invalid name '%s': use 1 to 63 letters, "
                 "digits, '_', '.' or '-'", kind,
                 ic_shown (l->words[1], b, sizeof b));
  return 0;
}

/* A path relative to the configuration file's directory. */
static char *
resolve (struct parser *p, const char *path)
{
  char *out;

  if (path[0] == '/' || !p->dir || !*p->dir)
    return strdup (path);
  if (asprintf (&out, "%s/%s", p->dir, path) == -1)
    return NULL;
  return out;
}

/* @uri with the socket= of an nbd+unix:// or nbds+unix:// URI made an
 * absolute path: relative, it is relative to the configuration file's
 * directory, like every path of the file; left to libnbd, it would be
 * looked up in the current directory at each connection, and nbdkit
 * moves to / when it goes into the background, so that no reconnection
 * would find the socket.  Other URIs are returned as they are.
 *
 * Return: a new string, or NULL (out of memory).
 */
static char *
resolve_nbd_uri (struct parser *p, const char *uri)
{
  const char *colon = strstr (uri, "://");
  const char *query = strchr (uri, '?');
  const char *value = NULL;
  const char *c;
  char *dir = NULL;
  char *out = NULL;
  size_t len;
  size_t i;
  FILE *f;

  if (!colon || colon - uri < 5 || strncmp (colon - 5, "+unix", 5) != 0 ||
      !query)
    return strdup (uri);
  /* The socket= parameter of the query (parameters separated by '&'). */
  for (c = query + 1; c && !value; c = c ? c + 1 : NULL) {
    if (strncmp (c, "socket=", 7) == 0)
      value = c + 7;
    c = strchr (c, '&');
  }
  if (!value || *value == '/' || *value == '&' || *value == '#' ||
      !*value || strncasecmp (value, "%2f", 3) == 0)
    return strdup (uri);

  /* The directory, absolute, percent-encoded as a URI takes it. */
  if (p->dir && p->dir[0] == '/')
    dir = strdup (p->dir);
  else {
    char *cwd = getcwd (NULL, 0);

    if (cwd && (!p->dir || !*p->dir || strcmp (p->dir, ".") == 0))
      dir = strdup (cwd);
    else if (cwd && asprintf (&dir, "%s/%s", cwd, p->dir) == -1)
      dir = NULL;
    free (cwd);
  }
  if (!dir)
    return NULL;
  f = open_memstream (&out, &len);
  if (!f) {
    free (dir);
    return NULL;
  }
  fwrite (uri, 1, value - uri, f);
  for (i = 0; dir[i]; i++) {
    unsigned char ch = dir[i];

    if (isalnum (ch) || strchr ("/-._~", ch))
      fputc (ch, f);
    else
      fprintf (f, "%%%02X", ch);
  }
  fprintf (f, "/%s", value);
  free (dir);
  if (fclose (f) != 0) {
    free (out);
    return NULL;
  }
  return out;
}

/* Read the long-term blob in @path (hex) into @lt_key.
 *
 * Return: its size, or -errno after perr().
 */
static int
read_blob (struct parser *p, const char *what, const char *path,
           uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  char *plus;
  char *text = NULL;
  size_t text_size = 0;
  char w[1024];
  int n;

  snprintf (w, sizeof w, "%s: %s: blob=", p->at, what);
  if (asprintf (&plus, "+%s", path) == -1)
    return perr (p, ENOMEM, "out of memory");
  n = ic_read_secret (w, plus, &text, &text_size);
  free (plus);
  if (n < 0)
    return n;
  n = ic_hex_decode (w, text, lt_key, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  ic_secure_free (text, text_size);
  return n;
}

/* Write @size bytes of @lt_key to the new file @path in hex, mode 0600.
 *
 * Return: 0, or -errno after perr().
 */
static int
write_blob (struct parser *p, const char *what, const char *path,
            const uint8_t *lt_key, size_t size)
{
  char hex[2 * IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE + 2];
  size_t len = 0;
  size_t done = 0;
  size_t i;
  int fd;
  int r = 0;

  for (i = 0; i < size; i++)
    len += snprintf (hex + len, sizeof hex - len, "%02x", lt_key[i]);
  hex[len++] = '\n';
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd == -1)
    return perr (p, errno, "%s: blob=%s: create: %s", what, path,
                 ic_strerror (errno));
  while (done < len) {
    ssize_t n = write (fd, hex + done, len - done);

    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      r = n == 0 ? EIO : errno;
      break;
    }
    done += n;
  }
  if (r == 0 && fsync (fd) == -1)
    r = errno;
  if (close (fd) == -1 && r == 0)
    r = errno;
  if (r) {
    unlink (path);
    return perr (p, r, "%s: blob=%s: write: %s", what, path, ic_strerror (r));
  }
  return 0;
}

/* Make the long-term blob of a new key: import the raw key of @import
 * (+FILE, -FD, - or hex, as key=) or generate one, through @profile.
 *
 * Return: its size, or -errno after perr().
 */
static int
create_blob (struct parser *p, const char *what,
             struct ic_crypto_profile *profile, const char *import,
             uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  size_t lt_size = IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE;
  char *secret = NULL;
  size_t secret_size = 0;
  uint8_t *raw;
  char w[1024];
  int n;
  int r;

  if (!import) {
    r = ic_crypto_ioctl_generate_key (profile, lt_key, &lt_size);
    if (r < 0)
      return perr (p, -r, "%s: generate: %s", what, ic_last_error ());
    return lt_size;
  }
  value_what (p, what, "import", w, sizeof w);
  if (import[0] == '+') {
    char *path = resolve (p, import + 1);
    char *plus;

    if (!path || asprintf (&plus, "+%s", path) == -1) {
      free (path);
      return perr (p, ENOMEM, "out of memory");
    }
    free (path);
    r = ic_read_secret (w, plus, &secret, &secret_size);
    free (plus);
  }
  else if (import[0] != '-' && (p->flags & IC_CONF_SHARED))
    return perr (p, EACCES, "%s: import=HEX in a file that group or others "
                 "may access; chmod 600 %s, or give import=+FILE", what,
                 p->path);
  else
    r = ic_read_secret (w, import, &secret, &secret_size);
  if (r < 0)
    return r;
  raw = ic_secure_alloc (IC_CRYPTO_MAX_RAW_KEY_SIZE);
  if (!raw) {
    ic_secure_free (secret, secret_size);
    return perr (p, ENOMEM, "out of locked memory");
  }
  n = ic_hex_decode (w, secret, raw, IC_CRYPTO_MAX_RAW_KEY_SIZE);
  ic_secure_free (secret, secret_size);
  if (n >= 0) {
    r = ic_crypto_ioctl_import_key (profile, raw, n, lt_key, &lt_size);
    if (r < 0)
      n = perr (p, -r, "%s: import: %s", what, ic_last_error ());
    else
      n = lt_size;
  }
  ic_secure_free (raw, IC_CRYPTO_MAX_RAW_KEY_SIZE);
  return n;
}

/* key NAME type=hw_wrapped [mode=AES-256-XTS] [data-unit-size=]
 *     [dun-bytes=] engine=ENGINE blob=FILE [import=+RAWFILE | generate]
 *
 * The key object holds the ephemerally-wrapped blob that @engine's key
 * manager prepares from the long-term blob in FILE.  With import= or
 * generate and no FILE yet, the key is first created through the engine
 * (BLKCRYPTOIMPORTKEY / BLKCRYPTOGENERATEKEY) and its long-term blob
 * written to FILE (0600); once FILE exists they are ignored, so the line
 * gives the same key at every start.
 */
static int
parse_wrapped_key (struct parser *p, struct line *l, const char *what,
                   enum ic_crypto_mode_num mode, unsigned int du,
                   unsigned int dun_bytes)
{
  const char *name = l->words[1];
  const char *engine_name;
  const char *blob;
  const char *import;
  const char *raw;
  bool generate;
  struct ic_engine *engine;
  struct ic_crypto_profile *profile;
  struct ic_crypto_key *key;
  struct stat st;
  char *path = NULL;
  uint8_t *lt_key = NULL;
  uint8_t *eph_key = NULL;
  size_t eph_size = IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE;
  int lt_size;
  int r;

  if ((r = get (p, l, what, "engine", &engine_name)) < 0 ||
      (r = get (p, l, what, "blob", &blob)) < 0 ||
      (r = get (p, l, what, "import", &import)) < 0 ||
      (r = get_flag (p, l, what, "generate", &generate)) < 0 ||
      (r = get (p, l, what, "key", &raw)) < 0)
    return r;
  if ((r = check_unused (p, l, what, "mode=, data-unit-size=, dun-bytes=, "
                         "type=, engine=, blob=, import= or generate")) < 0)
    return r;
  if (raw)
    return perr (p, EINVAL, "%s: key= is for raw keys; a hw_wrapped key "
                 "takes blob=FILE (its long-term wrapped form), made with "
                 "import=+RAWFILE or generate", what);
  if (mode != IC_ENCRYPTION_MODE_AES_256_XTS)
    return perr (p, EINVAL, "%s: type=hw_wrapped: mode=%s: the hardware "
                 "derives an AES-256-XTS key from a wrapped key; expected "
                 "mode=AES-256-XTS", what, ic_crypto_mode_name (mode));
  if (dun_bytes > ic_crypto_modes[mode].ivsize)
    return perr (p, EINVAL, "%s: dun-bytes=%u: %s takes 1 to %u DUN bytes",
                 what, dun_bytes, ic_crypto_mode_name (mode),
                 ic_crypto_modes[mode].ivsize);
  if (!engine_name)
    return perr (p, EINVAL, "%s: type=hw_wrapped: expected engine=ENGINE, "
                 "the engine whose key manager wraps the key", what);
  engine = ic_graph_find_engine (p->g, engine_name);
  if (!engine)
    return perr (p, EINVAL, "%s: engine=%s: no engine of that name is "
                 "defined above", what, engine_name);
  profile = ic_engine_profile (engine);
  if (!(profile->key_types_supported & IC_CRYPTO_KEY_TYPE_HW_WRAPPED))
    return perr (p, EOPNOTSUPP, "%s: engine=%s: the engine does not take "
                 "hw_wrapped keys; give it key-types=raw,hw_wrapped "
                 "wrapping-key=FILE", what, engine_name);
  if (!blob)
    return perr (p, EINVAL, "%s: type=hw_wrapped: expected blob=FILE, the "
                 "file holding the key's long-term wrapped form in hex",
                 what);
  if (import && generate)
    return perr (p, EINVAL, "%s: import= and generate exclude each other",
                 what);

  path = resolve (p, blob);
  lt_key = ic_secure_alloc (IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  eph_key = ic_secure_alloc (IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  if (!path || !lt_key || !eph_key) {
    r = perr (p, ENOMEM, "out of memory");
    goto out_free;
  }
  if (p->flags & IC_CONF_DRY_RUN) {
    /* Read and write no files: a made-up key imported into the dry run's
     * volatile key manager (no draw on the strongest random either).
     */
    r = lt_size = create_blob (p, what, profile,
                               "0102030405060708090a0b0c0d0e0f10"
                               "1112131415161718191a1b1c1d1e1f20", lt_key);
  }
  else if (stat (path, &st) == -1 && errno == ENOENT) {
    if (!import && !generate) {
      r = perr (p, ENOENT, "%s: blob=%s: no such file; add import=+RAWFILE "
                "or generate to create the key", what, blob);
      goto out_free;
    }
    r = lt_size = create_blob (p, what, profile, import, lt_key);
    if (r >= 0)
      r = write_blob (p, what, path, lt_key, lt_size);
    /* Removed again if the configuration is refused. */
    if (r >= 0 && ic_graph_created_file (p->g, path) < 0)
      r = perr (p, ENOMEM, "out of memory");
  }
  else
    r = lt_size = read_blob (p, what, path, lt_key);
  if (r < 0)
    goto out_free;

  r = ic_crypto_ioctl_prepare_key (profile, lt_key, lt_size, eph_key,
                                   &eph_size);
  if (r < 0) {
    perr (p, -r, "%s: blob=%s: %s%s", what, blob, ic_last_error (),
          r == -EBADMSG ? " (a blob of another wrapping key, or damaged?)"
                        : "");
    goto out_free;
  }
  key = ic_crypto_key_new (name, eph_key, eph_size,
                           IC_CRYPTO_KEY_TYPE_HW_WRAPPED, mode, dun_bytes,
                           du);
  if (!key) {
    r = perr (p, errno, "%s: %s", what, ic_last_error ());
    goto out_free;
  }
  snprintf (key->engine, sizeof key->engine, "%s", engine_name);
  r = ic_graph_add_key (p->g, key);
  if (r < 0)
    perr (p, -r, "%s", ic_last_error ());
out_free:
  free (path);
  ic_secure_free (lt_key, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  ic_secure_free (eph_key, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  return r;
}

/* key NAME [mode=] [data-unit-size=] [dun-bytes=] [type=raw] key=+FILE|HEX
 * key NAME type=hw_wrapped ... (parse_wrapped_key)
 */
static int
parse_key (struct parser *p, struct line *l)
{
  enum ic_crypto_mode_num mode = IC_ENCRYPTION_MODE_AES_256_XTS;
  const char *name = l->words[1];
  const char *v;
  char what[128];
  char w[1024];
  unsigned int du = 4096;
  unsigned int dun_bytes = 8;
  uint8_t *bytes = NULL;
  struct ic_crypto_key *key;
  char *secret = NULL;
  size_t secret_size = 0;
  int n;
  int r;

  snprintf (what, sizeof what, "key %s", name);
  if ((r = get (p, l, what, "mode", &v)) < 0)
    return r;
  if (v && (r = ic_parse_mode (value_what (p, what, "mode", w, sizeof w), v,
                               &mode)) < 0)
    return r;
  if ((r = get (p, l, what, "data-unit-size", &v)) < 0)
    return r;
  if (v && (r = ic_parse_data_unit_size (value_what (p, what,
                                                     "data-unit-size", w,
                                                     sizeof w), v, &du)) < 0)
    return r;
  if ((r = get_uint (p, l, what, "dun-bytes", 1, IC_CRYPTO_MAX_IV_SIZE,
                     &dun_bytes)) < 0)
    return r;
  if ((r = get (p, l, what, "type", &v)) < 0)
    return r;
  if (v && strcmp (v, "hw_wrapped") == 0)
    return parse_wrapped_key (p, l, what, mode, du, dun_bytes);
  if (v && strcmp (v, "raw") != 0)
    return perr (p, EINVAL, "%s: type=%s: expected raw or hw_wrapped", what,
                 v);
  if ((r = get (p, l, what, "key", &v)) < 0)
    return r;
  if ((r = check_unused (p, l, what, "mode=, data-unit-size=, dun-bytes=, "
                         "type= or key=")) < 0)
    return r;
  if (!v)
    return perr (p, EINVAL, "%s: expected key=+FILE (a file holding the key "
                 "in hex) or key=HEX", what);

  bytes = ic_secure_alloc (IC_CRYPTO_MAX_RAW_KEY_SIZE);
  if (!bytes)
    return perr (p, ENOMEM, "out of locked memory");
  value_what (p, what, "key", w, sizeof w);
  if (p->flags & IC_CONF_DRY_RUN) {
    /* Read no files: a made-up key of the right size, halves distinct. */
    for (n = 0; n < (int) ic_crypto_modes[mode].keysize; n++)
      bytes[n] = n + 1;
  }
  else {
    if (v[0] == '+') {
      char *path = resolve (p, v + 1);
      char *plus;

      if (!path || asprintf (&plus, "+%s", path) == -1) {
        free (path);
        r = perr (p, ENOMEM, "out of memory");
        goto out_free;
      }
      free (path);
      r = ic_read_secret (w, plus, &secret, &secret_size);
      free (plus);
    }
    else if (v[0] != '-' && (p->flags & IC_CONF_SHARED)) {
      r = perr (p, EACCES, "%s: key=HEX in a file that group or others "
                "may access; chmod 600 %s, or give key=+FILE", what,
                p->path);
      goto out_free;
    }
    else
      r = ic_read_secret (w, v, &secret, &secret_size);
    if (r < 0)
      goto out_free;
    n = ic_hex_decode (w, secret, bytes, IC_CRYPTO_MAX_RAW_KEY_SIZE);
    ic_secure_free (secret, secret_size);
    if (n < 0) {
      r = n;
      goto out_free;
    }
    if ((unsigned int) n != ic_crypto_modes[mode].keysize) {
      r = perr (p, EINVAL, "%s: %s needs a key of exactly %u bytes (%u hex "
                "digits), got %d bytes", what, ic_crypto_mode_name (mode),
                ic_crypto_modes[mode].keysize,
                2 * ic_crypto_modes[mode].keysize, n);
      goto out_free;
    }
  }
  n = ic_crypto_modes[mode].keysize;
  if ((mode == IC_ENCRYPTION_MODE_AES_256_XTS ||
       mode == IC_ENCRYPTION_MODE_SM4_XTS) &&
      memcmp (bytes, bytes + n / 2, n / 2) == 0) {
    r = perr (p, EINVAL, "%s: the two halves of an %s key must differ", what,
              ic_crypto_mode_name (mode));
    goto out_free;
  }
  if (dun_bytes > ic_crypto_modes[mode].ivsize) {
    r = perr (p, EINVAL, "%s: dun-bytes=%u: %s takes 1 to %u DUN bytes",
              what, dun_bytes, ic_crypto_mode_name (mode),
              ic_crypto_modes[mode].ivsize);
    goto out_free;
  }
  key = ic_crypto_key_new (name, bytes, n, IC_CRYPTO_KEY_TYPE_RAW, mode,
                           dun_bytes, du);
  if (!key) {
    r = perr (p, errno, "%s: %s", what, ic_last_error ());
    goto out_free;
  }
  r = ic_graph_add_key (p->g, key);
  if (r < 0)
    perr (p, -r, "%s", ic_last_error ());
out_free:
  ic_secure_free (bytes, IC_CRYPTO_MAX_RAW_KEY_SIZE);
  return r;
}

/* engine NAME [keyslots=] [modes=] [max-dun-bytes=] [program-us=]
 *        [key-types=raw,hw_wrapped wrapping-key=FILE]
 */
static int
parse_engine (struct parser *p, struct line *l)
{
  struct ic_engine_config cfg;
  struct ic_engine *engine;
  const char *wrapping_key;
  const char *v;
  char what[128];
  char w[1024];
  int r;

  snprintf (what, sizeof what, "engine %s", l->words[1]);
  ic_engine_config_default (&cfg, l->words[1]);
  if ((r = get_uint (p, l, what, "keyslots", 1, IC_ENGINE_MAX_SLOTS,
                     &cfg.num_slots)) < 0 ||
      (r = get_uint (p, l, what, "max-dun-bytes", 1, IC_CRYPTO_MAX_IV_SIZE,
                     &cfg.max_dun_bytes)) < 0 ||
      (r = get_uint (p, l, what, "program-us", 0, 10000000,
                     &cfg.program_us)) < 0)
    return r;
  if ((r = get (p, l, what, "modes", &v)) < 0)
    return r;
  if (v && (r = ic_parse_modes (value_what (p, what, "modes", w, sizeof w),
                                v, cfg.modes_supported)) < 0)
    return r;
  if ((r = get (p, l, what, "key-types", &v)) < 0)
    return r;
  if (v && (r = ic_parse_key_types (value_what (p, what, "key-types", w,
                                                sizeof w), v,
                                    &cfg.key_types)) < 0)
    return r;
  if ((r = get (p, l, what, "wrapping-key", &wrapping_key)) < 0)
    return r;
  if ((r = check_unused (p, l, what, "keyslots=, modes=, max-dun-bytes=, "
                         "program-us=, key-types= or wrapping-key=")) < 0)
    return r;
  if (wrapping_key && !(cfg.key_types & IC_CRYPTO_KEY_TYPE_HW_WRAPPED))
    return perr (p, EINVAL, "%s: wrapping-key= is for hardware-wrapped "
                 "keys: add key-types=raw,hw_wrapped (or hw_wrapped)", what);
  if ((cfg.key_types & IC_CRYPTO_KEY_TYPE_HW_WRAPPED) && !wrapping_key)
    return perr (p, EINVAL, "%s: key-types=hw_wrapped: expected "
                 "wrapping-key=FILE, the key manager's long-term wrapping "
                 "key (created, mode 0600, if missing)", what);
  if (wrapping_key && (p->flags & IC_CONF_DRY_RUN))
    /* No files: a key manager whose blobs live as long as the dry run. */
    cfg.hwkm = ic_hwkm_new_volatile ();
  else if (wrapping_key) {
    char *path = resolve (p, wrapping_key);
    bool created;

    if (!path)
      return perr (p, ENOMEM, "out of memory");
    cfg.hwkm = ic_hwkm_open (path, &created);
    /* Removed again if the configuration is refused. */
    if (created && ic_graph_created_file (p->g, path) < 0) {
      free (path);
      ic_hwkm_put (cfg.hwkm);
      return perr (p, ENOMEM, "out of memory");
    }
    free (path);
  }
  if (wrapping_key && !cfg.hwkm)
    return perr (p, errno, "%s: wrapping-key=%s: %s", what, wrapping_key,
                 ic_last_error ());
  engine = ic_engine_new (&cfg);
  /* The engine holds its own reference. */
  ic_hwkm_put (cfg.hwkm);
  if (!engine)
    return perr (p, errno, "%s", ic_last_error ());
  r = ic_graph_add_engine (p->g, engine);
  return r < 0 ? perr (p, -r, "%s", ic_last_error ()) : 0;
}

/* leaf NAME memory|file=PATH|nbd=URI [size=] [engine=] [readonly=]
 *      [fallback=] [timeout=]
 *
 * readonly= is for file= and nbd= leaves, timeout= for nbd= leaves: given
 * to another kind they would be ignored, so they are refused.
 */
static int
parse_leaf (struct parser *p, struct line *l)
{
  const char *name = l->words[1];
  const char *file;
  const char *nbd;
  const char *engine_name;
  struct ic_engine *engine = NULL;
  struct ic_device *dev;
  bool memory;
  bool readonly = false;
  bool fallback = true;
  unsigned int timeout_s = IC_NBD_DEFAULT_TIMEOUT_MS / 1000;
  uint64_t size = 0;
  char what[128];
  int kinds;
  int r;

  snprintf (what, sizeof what, "leaf %s", name);
  if ((r = get_flag (p, l, what, "memory", &memory)) < 0 ||
      (r = get (p, l, what, "file", &file)) < 0 ||
      (r = get (p, l, what, "nbd", &nbd)) < 0 ||
      (r = get (p, l, what, "engine", &engine_name)) < 0 ||
      (r = get_size (p, l, what, "size", &size)) < 0 ||
      (r = get_bool (p, l, what, "readonly", &readonly)) < 0 ||
      (r = get_bool (p, l, what, "fallback", &fallback)) < 0 ||
      (r = get_uint (p, l, what, "timeout", 0, 3600, &timeout_s)) < 0)
    return r;
  if ((r = check_unused (p, l, what, "memory, file=, nbd=, size=, engine=, "
                         "readonly=, fallback= or timeout=")) < 0)
    return r;
  kinds = memory + !!file + !!nbd;
  if (kinds != 1)
    return perr (p, EINVAL, "%s: expected exactly one of memory, file=PATH "
                 "or nbd=URI", what);
  if (memory && has_param (l, "readonly"))
    return perr (p, EINVAL, "%s: readonly= applies to file= and nbd= "
                 "leaves, not to a memory leaf", what);
  if (!nbd && has_param (l, "timeout"))
    return perr (p, EINVAL, "%s: timeout= applies to nbd= leaves only, not "
                 "to a %s leaf", what, memory ? "memory" : "file=");
  if (memory && size == 0)
    return perr (p, EINVAL, "%s: a memory leaf needs size=", what);
  if (engine_name) {
    engine = ic_graph_find_engine (p->g, engine_name);
    if (!engine)
      return perr (p, EINVAL, "%s: engine=%s: no engine of that name is "
                   "defined above", what, engine_name);
  }

  if (memory || (p->flags & IC_CONF_DRY_RUN))
    dev = ic_leaf_memory_new (name, size ? size : 1024 * 1024 * 1024,
                              engine);
  else if (file) {
    char *path = resolve (p, file);

    if (!path)
      return perr (p, ENOMEM, "out of memory");
    dev = ic_leaf_file_new (name, path, size, readonly, engine);
    free (path);
  }
  else {
    char *uri = resolve_nbd_uri (p, nbd);

    if (!uri)
      return perr (p, ENOMEM, "out of memory");
    dev = ic_leaf_nbd_new (name, uri, size, readonly, timeout_s * 1000,
                           engine);
    free (uri);
  }
  if (!dev)
    return perr (p, errno, "%s", ic_last_error ());
  dev->fallback_enabled = fallback;
  r = ic_graph_add_device (p->g, dev);
  return r < 0 ? perr (p, -r, "%s", ic_last_error ()) : 0;
}

/* True if @msg starts with "path:N" (a device may be named like the
 * file, so the digit matters).
 */
static bool
names_line (struct parser *p, const char *msg)
{
  size_t n = strlen (p->path);

  return strncmp (msg, p->path, n) == 0 && msg[n] == ':' &&
    isdigit ((unsigned char) msg[n + 1]);
}

static struct ic_device *
lookup_device (void *opaque, const char *name)
{
  return ic_graph_find_device (opaque, name);
}

/* device NAME [options=per_child_fallback] ... end */
static int
parse_device (struct parser *p, struct line *l, const char *table,
              unsigned int first_line)
{
  const char *name = l->words[1];
  const char *opts;
  unsigned int options = 0;
  struct ic_device *dev;
  char what[128];
  int r;

  snprintf (what, sizeof what, "device %s", name);
  if ((r = get (p, l, what, "options", &opts)) < 0)
    return r;
  if ((r = check_unused (p, l, what, "options=")) < 0)
    return r;
  if (opts) {
    static const char *const names[] = { "per_child_fallback", NULL };
    static const unsigned int bits[] = { IC_TABLE_PER_CHILD_FALLBACK };
    char w[1024];

    r = ic_parse_flag_list (value_what (p, what, "options", w, sizeof w),
                            opts, "option", names, bits,
                            "per_child_fallback", &options);
    if (r < 0)
      return r;
  }
  if (ic_graph_find_device (p->g, name))
    return perr (p, EEXIST, "%s: a device of that name is already defined",
                 what);
  dev = ic_stacked_new (name);
  if (!dev)
    return perr (p, ENOMEM, "out of memory");
  r = ic_graph_add_device (p->g, dev);
  if (r < 0)
    return perr (p, -r, "%s", ic_last_error ());
  /* The loader reports errors about a table line as "path:line: ...";
   * those about the whole table ("the table has no targets") name only
   * the device, so they get the device line.
   */
  r = ic_stacked_load (dev, table, options, p->path, first_line,
                       lookup_device, p->g);
  if (r == 0)
    r = ic_stacked_resume (dev);
  if (r < 0 && !names_line (p, ic_last_error ()))
    perr (p, -r, "%s", ic_last_error ());
  return r;
}

/* export NAME device=D [key=K [dun-base=N]] [block-size=N]
 *        [description=TEXT]
 */
static int
parse_export (struct parser *p, struct line *l, struct ic_export **expp,
              bool *block)
{
  const char *name = l->words[1];
  const char *devname;
  const char *keyname;
  const char *base;
  const char *desc;
  struct ic_device *dev;
  struct ic_export *exp;
  uint64_t floor = 0;
  char what[128];
  char w[1024];
  int r;

  snprintf (what, sizeof what, "export %s", name);
  if ((r = get (p, l, what, "device", &devname)) < 0 ||
      (r = get (p, l, what, "key", &keyname)) < 0 ||
      (r = get (p, l, what, "dun-base", &base)) < 0 ||
      (r = get_size (p, l, what, "block-size", &floor)) < 0 ||
      (r = get (p, l, what, "description", &desc)) < 0)
    return r;
  if ((r = check_unused (p, l, what, "device=, key=, dun-base=, "
                         "block-size= or description=")) < 0)
    return r;
  /* Given, 0 is refused too: it is not "no block size". */
  if (has_param (l, "block-size") &&
      (floor < 512 || floor > 65536 || (floor & (floor - 1))))
    return perr (p, EINVAL, "%s: block-size=%" PRIu64 ": expected a power of "
                 "two from 512 to 65536", what, floor);
  if (!devname)
    return perr (p, EINVAL, "%s: expected device=NAME", what);
  dev = ic_graph_find_device (p->g, devname);
  if (!dev)
    return perr (p, EINVAL, "%s: device=%s: no leaf or device of that name "
                 "is defined above", what, devname);
  if (base && !keyname)
    return perr (p, EINVAL, "%s: dun-base= needs key=", what);
  if (desc && strlen (desc) > IC_EXPORT_DESCRIPTION_MAX)
    return perr (p, EINVAL, "%s: description= is %zu bytes; NBD allows at "
                 "most %d", what, strlen (desc), IC_EXPORT_DESCRIPTION_MAX);
  if (floor && dev->size % floor)
    return perr (p, EINVAL, "%s: block-size=%" PRIu64 " does not divide "
                 "the size of %s (%" PRIu64 " bytes): clients could not "
                 "reach its end", what, floor, devname, dev->size);
  exp = ic_export_new (name, dev);
  if (!exp)
    return perr (p, ENOMEM, "out of memory");
  exp->block_floor = floor;
  if (desc)
    snprintf (exp->description, sizeof exp->description, "%s", desc);
  else
    snprintf (exp->description, sizeof exp->description,
              "inlinecrypt export %s on %s", name, devname);
  r = ic_graph_add_export (p->g, exp);
  if (r < 0)
    return perr (p, -r, "%s", ic_last_error ());

  *block = !keyname;
  *expp = exp;
  if (keyname) {
    struct ic_ctx_range range = { .start = 0, .len = exp->size };
    char b[128];

    range.key = ic_graph_find_key (p->g, keyname);
    if (!range.key)
      return perr (p, EINVAL, "%s: key=%s: no key of that name is defined "
                   "above", what, ic_shown (keyname, b, sizeof b));
    if (base && (r = ic_parse_dun (value_what (p, what, "dun-base", w,
                                               sizeof w), base,
                                   range.dun_base)) < 0)
      return r;
    snprintf (w, sizeof w, "%s: %s", p->at, what);
    r = ic_export_check_ranges (exp, w, &range, 1);
    if (r == 0)
      r = ic_export_set_map (exp, &range, 1);
  }
  return r;
}

/* map OFFSET LENGTH key=K [dun-base=N] | none */
static int
parse_map (struct parser *p, struct line *l, struct ic_export *exp,
           struct ic_ctx_range **ranges, size_t *n)
{
  struct ic_ctx_range range = { 0 };
  struct ic_ctx_range *bigger;
  const char *keyname;
  const char *base;
  char what[128];
  char w[1024];
  char b[128];
  bool none;
  int r;

  snprintf (what, sizeof what, "export %s: map", exp->name);
  if (l->nwords < 3)
    return perr (p, EINVAL, "%s: expected map OFFSET LENGTH key=K "
                 "[dun-base=N] or map OFFSET LENGTH none", what);
  make_params (l, 3);
  if ((r = ic_parse_size (value_what (p, what, "OFFSET", w, sizeof w),
                          l->words[1], &range.start)) < 0 ||
      (r = ic_parse_size (value_what (p, what, "LENGTH", w, sizeof w),
                          l->words[2], &range.len)) < 0)
    return r;
  if ((r = get_flag (p, l, what, "none", &none)) < 0 ||
      (r = get (p, l, what, "key", &keyname)) < 0 ||
      (r = get (p, l, what, "dun-base", &base)) < 0)
    return r;
  if ((r = check_unused (p, l, what, "key=, dun-base= or none")) < 0)
    return r;
  if (none == !!keyname)
    return perr (p, EINVAL, "%s: expected exactly one of key=NAME or none",
                 what);
  if (none && base)
    return perr (p, EINVAL, "%s: dun-base= needs key=", what);
  /* A none range is kept too, with no key, so that it is checked like the
   * others (inside the export, overlapping no other line); 'end' leaves
   * it out of the map, where unmapped ranges are plain already.
   */
  if (!none) {
    range.key = ic_graph_find_key (p->g, keyname);
    if (!range.key)
      return perr (p, EINVAL, "%s: key=%s: no key of that name is defined "
                   "above", what, ic_shown (keyname, b, sizeof b));
    if (base && (r = ic_parse_dun (value_what (p, what, "dun-base", w,
                                               sizeof w), base,
                                   range.dun_base)) < 0)
      return r;
  }

  bigger = realloc (*ranges, (*n + 1) * sizeof *bigger);
  if (!bigger)
    return perr (p, ENOMEM, "out of memory");
  *ranges = bigger;
  bigger[(*n)++] = range;
  /* Check against the ranges so far, so the message names this line. */
  snprintf (w, sizeof w, "%s: %s", p->at, what);
  r = ic_export_check_ranges (exp, w, *ranges, *n);
  if (r < 0)
    (*n)--;
  return r;
}

/* fallback [keyslots=N] [enabled=BOOL], once */
static int
parse_fallback (struct parser *p, struct line *l)
{
  int r;

  /* A second one would override the first, parameter by parameter. */
  if (p->fallback_line)
    return perr (p, EINVAL, "fallback: given twice (first at %s:%u); give "
                 "keyslots= and enabled= on one fallback line", p->path,
                 p->fallback_line);
  p->fallback_line = l->lineno;
  make_params (l, 1);
  if ((r = get_uint (p, l, "fallback", "keyslots", 1,
                     IC_FALLBACK_MAX_KEYSLOTS,
                     &p->g->fallback_keyslots)) < 0 ||
      (r = get_bool (p, l, "fallback", "enabled",
                     &p->g->fallback_enabled)) < 0)
    return r;
  return check_unused (p, l, "fallback", "keyslots= or enabled=");
}

/* control socket=PATH [mode=0600], once */
static int
parse_control (struct parser *p, struct line *l)
{
  const char *sock;
  const char *mode;
  unsigned long m;
  int r;

  if (p->control_line)
    return perr (p, EINVAL, "control: given twice (first at %s:%u); the "
                 "server has one control socket", p->path, p->control_line);
  p->control_line = l->lineno;
  make_params (l, 1);
  if ((r = get (p, l, "control", "socket", &sock)) < 0 ||
      (r = get (p, l, "control", "mode", &mode)) < 0)
    return r;
  if ((r = check_unused (p, l, "control", "socket= or mode=")) < 0)
    return r;
  if (!sock)
    return perr (p, EINVAL, "control: expected socket=PATH");
  if (mode) {
    /* Octal digits only: strtoul would also take white space and a sign
     * ("+600", " 600", "-0").
     */
    if (!*mode || strspn (mode, "01234567") != strlen (mode) ||
        (m = strtoul (mode, NULL, 8)) > 0777)
      return perr (p, EINVAL, "control: mode=%s: expected an octal file "
                   "mode such as 0600", mode);
    p->g->control_mode = m;
  }
  p->g->control_path = resolve (p, sock);
  p->g->control_at = strdup (p->at);
  if (!p->g->control_path || !p->g->control_at)
    return perr (p, ENOMEM, "out of memory");
  return 0;
}

/* If the first word of @line is "end", what follows it, white space
 * skipped ("" or a comment if nothing does); else NULL.
 */
static const char *
after_end (const char *line)
{
  while (isspace ((unsigned char) *line))
    line++;
  if (strncmp (line, "end", 3) != 0 ||
      (line[3] && line[3] != '#' && !isspace ((unsigned char) line[3])))
    return NULL;
  line += 3;
  while (isspace ((unsigned char) *line))
    line++;
  return line;
}

/* "end" followed by the word @word of @len bytes: an error at its line,
 * not a table line or an unknown map line.
 */
static int
end_with_words (struct parser *p, const char *block, const char *word,
                size_t len)
{
  char copy[1024];
  char b[128];

  snprintf (copy, sizeof copy, "%.*s", (int) len, word);
  return perr (p, EINVAL, "%s: 'end' takes nothing after it, got '%s'",
               block, ic_shown (copy, b, sizeof b));
}

/* Append @line and a newline to the table text being collected. */
static int
append_line (struct parser *p, char **table, size_t *table_len,
             const char *line)
{
  size_t n = strlen (line);
  char *bigger = realloc (*table, *table_len + n + 2);

  if (!bigger)
    return perr (p, ENOMEM, "out of memory");
  memcpy (bigger + *table_len, line, n);
  *table_len += n;
  bigger[(*table_len)++] = '\n';
  bigger[*table_len] = '\0';
  *table = bigger;
  return 0;
}

static int
parse_lines (struct parser *p, char *text, size_t len)
{
  enum { TOP, DEVICE, EXPORT } state = TOP;
  struct line *l = calloc (1, sizeof *l);
  struct line *device_line = calloc (1, sizeof *l);
  struct ic_export *exp = NULL;
  struct ic_ctx_range *ranges = NULL;
  size_t nranges = 0;
  char *table = NULL;
  size_t table_len = 0;
  unsigned int block_start = 0;
  unsigned int lineno = 0;
  char *line;
  char *next;
  int r = 0;

  if (!l || !device_line) {
    r = perr (p, ENOMEM, "out of memory");
    goto out;
  }
  for (line = text; r == 0 && line < text + len; line = next) {
    char *eol = memchr (line, '\n', text + len - line);

    lineno++;
    if (!eol)
      eol = text + len;
    next = eol < text + len ? eol + 1 : eol;
    flush_warning (p);
    set_at (p, lineno);
    if (memchr (line, '\0', eol - line)) {
      r = perr (p, EINVAL, "NUL byte in the line");
      break;
    }
    *eol = '\0';

    if (state == DEVICE) {
      const char *rest = after_end (line);

      if (!rest) {
        /* A table line, kept for the table loader, which names its own
         * lines; blank and comment lines keep the numbering.
         */
        r = append_line (p, &table, &table_len, line);
        continue;
      }
      if (*rest && *rest != '#') {
        char block[128];

        snprintf (block, sizeof block, "device %s", device_line->words[1]);
        r = end_with_words (p, block, rest, strcspn (rest, " \t\r\v\f"));
        continue;
      }
      set_at (p, block_start);
      r = parse_device (p, device_line, table ? table : "", block_start + 1);
      free (table);
      table = NULL;
      table_len = 0;
      state = TOP;
      continue;
    }

    l->lineno = lineno;
    r = split (p, line, l);
    if (r < 0 || l->nwords == 0)
      continue;

    if (state == EXPORT) {
      if (strcmp (l->words[0], "end") == 0 && l->nwords > 1) {
        char block[128];

        snprintf (block, sizeof block, "export %s", exp->name);
        r = end_with_words (p, block, l->words[1], strlen (l->words[1]));
      }
      else if (strcmp (l->words[0], "end") == 0) {
        char w[1024];
        size_t i;
        size_t nkeyed = 0;

        snprintf (w, sizeof w, "%s: export %s", p->at, exp->name);
        r = ic_export_check_ranges (exp, w, ranges, nranges);
        /* The none lines were kept for the checks only. */
        for (i = 0; i < nranges; i++)
          if (ranges[i].key)
            ranges[nkeyed++] = ranges[i];
        if (r == 0)
          r = ic_export_set_map (exp, ranges, nkeyed);
        free (ranges);
        ranges = NULL;
        nranges = 0;
        state = TOP;
      }
      else if (strcmp (l->words[0], "map") == 0)
        r = parse_map (p, l, exp, &ranges, &nranges);
      else {
        char b[128];

        r = perr (p, EINVAL, "export %s: expected 'map OFFSET LENGTH ...' "
                  "or 'end', got '%s'", exp->name,
                  ic_shown (l->words[0], b, sizeof b));
      }
      continue;
    }

    if (strcmp (l->words[0], "key") == 0 ||
        strcmp (l->words[0], "engine") == 0 ||
        strcmp (l->words[0], "leaf") == 0 ||
        strcmp (l->words[0], "device") == 0 ||
        strcmp (l->words[0], "export") == 0) {
      r = check_name (p, l, l->words[0]);
      if (r < 0)
        continue;
      make_params (l, 2);
    }
    if (strcmp (l->words[0], "key") == 0)
      r = parse_key (p, l);
    else if (strcmp (l->words[0], "engine") == 0)
      r = parse_engine (p, l);
    else if (strcmp (l->words[0], "leaf") == 0)
      r = parse_leaf (p, l);
    else if (strcmp (l->words[0], "device") == 0) {
      /* The words point into @text, which outlives the block. */
      *device_line = *l;
      block_start = lineno;
      state = DEVICE;
    }
    else if (strcmp (l->words[0], "export") == 0) {
      bool block = false;

      r = parse_export (p, l, &exp, &block);
      if (r == 0 && block) {
        block_start = lineno;
        state = EXPORT;
      }
    }
    else if (strcmp (l->words[0], "fallback") == 0)
      r = parse_fallback (p, l);
    else if (strcmp (l->words[0], "control") == 0)
      r = parse_control (p, l);
    else if (strcmp (l->words[0], "end") == 0)
      r = perr (p, EINVAL, "'end' without a device or export block");
    else {
      char b[128];

      r = perr (p, EINVAL, "unknown keyword '%s'; expected key, engine, "
                "leaf, device, export, fallback or control",
                ic_shown (l->words[0], b, sizeof b));
    }
  }

  if (r == 0 && state != TOP) {
    set_at (p, block_start);
    r = perr (p, EINVAL, "%s block has no 'end'",
              state == DEVICE ? "device" : "export");
  }
  if (r == 0 && !p->g->fallback_enabled) {
    size_t i;

    /* "fallback enabled=false": like a kernel without the fallback.  A
     * device with per_child_fallback counted on its children's fallbacks:
     * its capabilities are worked out again, children first (a device
     * only uses devices defined above it).
     */
    for (i = 0; i < p->g->ndevices; i++)
      p->g->devices[i]->fallback_enabled = false;
    for (i = 0; i < p->g->ndevices && r == 0; i++)
      if (ic_device_to_stacked (p->g->devices[i]))
        r = ic_stacked_update_capabilities (p->g->devices[i]);
  }
  if (r == 0 && p->g->nexports == 0) {
    /* An empty file has no line to name. */
    set_at (p, lineno);
    r = perr (p, EINVAL, "no export is defined%s; add e.g. 'export vol0 "
              "device=NAME key=KEY'", lineno > 0 ? "" : " (the file is "
              "empty)");
  }
out:
  free (table);
  free (ranges);
  free (l);
  free (device_line);
  return r;
}

struct ic_graph *
ic_conf_parse (const char *text, size_t len, const char *path,
               const char *dir, unsigned int flags)
{
  struct parser p = { .path = path, .dir = dir, .flags = flags };
  bool captured;
  char *copy;
  int r;

  p.g = ic_graph_new ();
  copy = malloc (len + 1);
  if (!p.g || !copy) {
    ic_graph_free (p.g);
    free (copy);
    ic_error ("%s: out of memory", path);
    errno = ENOMEM;
    return NULL;
  }
  memcpy (copy, text, len);
  copy[len] = '\0';
  p.g->fallback_keyslots = IC_FALLBACK_DEFAULT_KEYSLOTS;
  captured = ic_error_capture (true);
  ic_clear_error ();
  r = parse_lines (&p, copy, len);
  if (r == 0)
    flush_warning (&p);
  ic_error_capture (captured);
  if (r < 0 && !p.reported) {
    if (names_line (&p, ic_last_error ()))
      report (&p, "%s", ic_last_error ());
    else
      report (&p, "%s: %s", p.at, *ic_last_error () ? ic_last_error ()
                                                     : ic_strerror (-r));
  }
  /* The text may hold a key: wipe it. */
  ic_memzero_explicit (copy, len);
  free (copy);
  if (r < 0) {
    ic_graph_discard (p.g);
    errno = -r;
    return NULL;
  }
  return p.g;
}

struct ic_graph *
ic_conf_load (const char *path)
{
  struct ic_graph *g;
  struct stat st;
  char *text = NULL;
  char *dir;
  char *slash;
  size_t len = 0;
  int fd;
  int err;

  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1 || fstat (fd, &st) == -1) {
    err = errno;
    ic_error ("%s: %s", path, ic_strerror (err));
    if (fd >= 0)
      close (fd);
    errno = err;
    return NULL;
  }
  if (!S_ISREG (st.st_mode) || st.st_size > MAX_CONF_SIZE) {
    ic_error ("%s: not a regular file of at most %d bytes", path,
              MAX_CONF_SIZE);
    close (fd);
    errno = EINVAL;
    return NULL;
  }
  text = malloc (st.st_size + 1);
  if (!text) {
    close (fd);
    ic_error ("%s: out of memory", path);
    errno = ENOMEM;
    return NULL;
  }
  while (len < (size_t) st.st_size) {
    ssize_t n = read (fd, text + len, st.st_size - len);

    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      err = n == 0 ? EIO : errno;
      ic_error ("%s: read: %s", path, ic_strerror (err));
      close (fd);
      free (text);
      errno = err;
      return NULL;
    }
    len += n;
  }
  close (fd);

  dir = strdup (path);
  if (!dir) {
    free (text);
    errno = ENOMEM;
    return NULL;
  }
  slash = strrchr (dir, '/');
  if (slash == dir)
    slash[1] = '\0';           /* "/ic.conf": its directory is "/" */
  else if (slash)
    *slash = '\0';
  else
    strcpy (dir, ".");
  g = ic_conf_parse (text, len, path, dir,
                     st.st_mode & (S_IRWXG | S_IRWXO) ? IC_CONF_SHARED : 0);
  err = errno;
  ic_memzero_explicit (text, len);
  free (text);
  free (dir);
  errno = err;
  return g;
}

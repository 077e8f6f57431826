/* server/protocol.c - see protocol.h. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "fallback.h"
#include "leaf.h"
#include "parse.h"
#include "protocol.h"
#include "secmem.h"
#include "table.h"

/* How long key-remove waits for requests still using the key. */
#define KEY_DRAIN_MS 10000

/* Top-level members a request may have (every command takes fewer). */
#define MAX_MEMBERS 32

/* One lock for the commands: they run one at a time, except while a slow
 * command waits (it drops the lock then).
 */
static pthread_mutex_t command_lock = PTHREAD_MUTEX_INITIALIZER;

/* Set when the server stops: commands that wait give up. */
static bool cancel_waits;

/* Commands wait in slices of this, checking canceled () in between. */
#define WAIT_SLICE_MS 100

static bool
canceled (void)
{
  return __atomic_load_n (&cancel_waits, __ATOMIC_ACQUIRE);
}

void
ic_protocol_cancel_waits (void)
{
  __atomic_store_n (&cancel_waits, true, __ATOMIC_RELEASE);
}

/* A key that key-remove waits to free: it stays in the graph meanwhile,
 * so that its name is not taken and a failed removal has nothing to undo,
 * but no map may take it.  The nodes live on key-remove's stack.
 */
struct removing {
  const struct ic_crypto_key *key;
  struct removing *next;
};
static struct removing *removing;       /* protected by command_lock */

static bool
key_is_removing (const struct ic_crypto_key *key)
{
  const struct removing *r;

  for (r = removing; r; r = r->next)
    if (r->key == key)
      return true;
  return false;
}

typedef int (*command_fn) (struct ic_graph *g, struct json_object *req,
                           struct json_object *reply);

struct command {
  const char *name;
  bool slow;
  const char *const *fields;    /* allowed besides "cmd"; NULL-terminated */
  command_fn fn;
};

static const struct command *find_command (const char *name);

/* The reply sent when ic_protocol_reply_text() runs out of memory.  A
 * string literal: the reply no longer holds the secret (the caller's
 * ic_protocol_wipe_secrets() says false), so that nobody wipes it.
 */
static const char reply_enomem[] =
  "{\"ok\":false,\"error\":\"out of memory\",\"errno\":\"ENOMEM\"}";

const char *
ic_protocol_reply_text (struct json_object *reply)
{
  struct json_object *v;
  struct json_object *s = NULL;
  char *secret;
  char *stand_in;
  size_t len;

  if (!json_object_object_get_ex (reply, "sw_secret", &v) ||
      !json_object_is_type (v, json_type_string))
    return json_object_to_json_string_ext (reply, JSON_C_TO_STRING_PLAIN);
  /* Write it out once with a stand-in of the same length, which grows
   * json-c's buffer (realloc, leaving what it held in freed memory) to
   * the size of the text; then with the secret, which fits.
   */
  len = json_object_get_string_len (v);
  secret = ic_secure_alloc (len + 1);
  stand_in = malloc (len + 1);
  if (secret && stand_in) {
    memcpy (secret, json_object_get_string (v), len);
    memset (stand_in, 'x', len);
    s = json_object_new_string_len (stand_in, len);
  }
  ic_memzero_explicit ((char *) json_object_get_string (v), len);
  free (stand_in);
  if (s) {
    json_object_object_add (reply, "sw_secret", s);
    json_object_to_json_string_ext (reply, JSON_C_TO_STRING_PLAIN);
    s = json_object_new_string_len (secret, len);
  }
  ic_secure_free (secret, len + 1);
  if (!s) {
    /* Out of memory: nothing of the secret is left in @reply. */
    json_object_object_del (reply, "sw_secret");
    return reply_enomem;
  }
  json_object_object_add (reply, "sw_secret", s);
  return json_object_to_json_string_ext (reply, JSON_C_TO_STRING_PLAIN);
}

bool
ic_protocol_wipe_secrets (struct json_object *reply)
{
  struct json_object *v;

  if (!json_object_object_get_ex (reply, "sw_secret", &v) ||
      !json_object_is_type (v, json_type_string))
    return false;
  ic_memzero_explicit ((char *) json_object_get_string (v),
                       json_object_get_string_len (v));
  return true;
}

struct json_object *
ic_protocol_error (int err, const char *msg)
{
  struct json_object *reply = json_object_new_object ();

  json_object_object_add (reply, "ok", json_object_new_boolean (false));
  json_object_object_add (reply, "error", json_object_new_string (msg));
  json_object_object_add (reply, "errno",
                          json_object_new_string (ic_errno_name (err)));
  return reply;
}

/* The length of @s cut to at most @most bytes without splitting a UTF-8
 * character (a reply that echoes part of a request stays UTF-8).
 */
static int
utf8_cut (const char *s, size_t most)
{
  size_t n = strnlen (s, most + 1);

  if (n <= most)
    return n;
  n = most;
  while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
    n--;
  return n;
}

/* The value of a request's "key" member, kept out of json-c.  json-c
 * copies every string it parses into buffers of its own and frees them
 * unwiped; the key text of key-add and key-import must not be left there.
 */
struct secret {
  char *text;                   /* locked memory, NUL-terminated */
  size_t size;                  /* bytes allocated */
};

static void
free_secret (struct json_object *jso, void *userdata)
{
  struct secret *sec = userdata;

  ic_secure_free (sec->text, sec->size);
  ic_secure_free (sec, sizeof *sec);
}

/* Skip a JSON string starting at @p (on its opening quote); return the
 * position after it, or NULL.  *@escaped tells whether it had escapes.
 */
static const char *
skip_string (const char *p, const char *end, bool *escaped)
{
  *escaped = false;
  for (p++; p < end; p++) {
    if (*p == '\\') {
      *escaped = true;
      p++;
    }
    else if (*p == '"')
      return p + 1;
  }
  return NULL;
}

/* How @c, outside a string, changes the depth of objects and arrays. */
static int
nesting (char c)
{
  if (c == '{' || c == '[')
    return 1;
  if (c == '}' || c == ']')
    return -1;
  return 0;
}

/* If the string that ends before @after is a member name (a ':' follows
 * it), where its value starts (maybe @end); else NULL.
 */
static const char *
member_value (const char *after, const char *end)
{
  const char *v = after;

  while (v < end && strchr (" \t\r\n", *v))
    v++;
  if (v == end || *v != ':')
    return NULL;
  for (v++; v < end && strchr (" \t\r\n", *v); v++)
    ;
  return v;
}

/* The 4 hex digits of a \u escape at @p into *@cp; false if they are not
 * there.
 */
static bool
read_u4 (const char *p, const char *end, unsigned int *cp)
{
  int i;

  if (end - p < 4)
    return false;
  for (*cp = 0, i = 0; i < 4; i++) {
    if (ic_hex_value ((unsigned char) p[i]) < 0)
      return false;
    *cp = *cp << 4 | ic_hex_value ((unsigned char) p[i]);
  }
  return true;
}

/* Decode the text of a JSON string, [@p, @end) between its quotes, into
 * @out, which has room for @end - @p bytes and a NUL (decoding never
 * lengthens it), as json-c would: escapes, and \u escapes in UTF-8 (a
 * lone surrogate as U+FFFD).
 *
 * Return: true, or false if an escape is malformed or decodes to a NUL
 * character (the request is refused: a string holds no NUL).
 */
static bool
json_unescape (const char *p, const char *end, char *out)
{
  static const char plain[] = "\"\\/bfnrt";
  static const char decoded[] = "\"\\/\b\f\n\r\t";
  char *o = out;

  while (p < end) {
    unsigned int cp;
    unsigned int lo;
    const char *e;

    if (*p != '\\') {
      *o++ = *p++;
      continue;
    }
    if (++p == end)
      return false;
    if (*p != 'u') {
      e = strchr (plain, *p);
      if (!*p || !e)
        return false;
      *o++ = decoded[e - plain];
      p++;
      continue;
    }
    if (!read_u4 (p + 1, end, &cp))
      return false;
    p += 5;
    if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' &&
        p[1] == 'u' && read_u4 (p + 2, end, &lo) &&
        lo >= 0xdc00 && lo < 0xe000) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      p += 6;
    }
    else if (cp >= 0xd800 && cp < 0xe000)
      cp = 0xfffd;
    if (cp == 0)
      return false;
    if (cp < 0x80)
      *o++ = cp;
    else if (cp < 0x800) {
      *o++ = 0xc0 | cp >> 6;
      *o++ = 0x80 | (cp & 0x3f);
    }
    else if (cp < 0x10000) {
      *o++ = 0xe0 | cp >> 12;
      *o++ = 0x80 | (cp >> 6 & 0x3f);
      *o++ = 0x80 | (cp & 0x3f);
    }
    else {
      *o++ = 0xf0 | cp >> 18;
      *o++ = 0x80 | (cp >> 12 & 0x3f);
      *o++ = 0x80 | (cp >> 6 & 0x3f);
      *o++ = 0x80 | (cp & 0x3f);
    }
  }
  *o = '\0';
  return true;
}

/* Is [@p, @end) UTF-8 as json-c's JSON_TOKENER_VALIDATE_UTF8 checks it
 * (json_tokener_validate_utf8: a lead byte and its continuation bytes)?
 */
static bool
utf8_as_json_c (const char *p, const char *end)
{
  unsigned int more = 0;

  for (; p < end; p++) {
    unsigned char c = *p;

    if (more > 0) {
      if ((c & 0xc0) != 0x80)
        return false;
      more--;
    }
    else if (c >= 0x80) {
      if ((c & 0xe0) == 0xc0)
        more = 1;
      else if ((c & 0xf0) == 0xe0)
        more = 2;
      else if ((c & 0xf8) == 0xf0)
        more = 3;
      else
        return false;
    }
  }
  return more == 0;
}

/* Find the top-level member "key" of the object in @text and, if its value
 * is a string, move the value into a locked secret (its escapes decoded
 * here: json-c would decode them in a buffer of its own, freed unwiped)
 * and overwrite it in @text with 'x's.  A value whose escapes cannot be
 * decoded, that holds a NUL character, or that is not UTF-8 (json-c,
 * which checks the rest, no longer sees it; a key name is echoed in
 * replies, which must be UTF-8), is overwritten all the same, and
 * *@refused set: the request is refused.  Anything else unexpected:
 * leave @text alone (json-c will say what is wrong with it).
 */
static struct secret *
take_secret (char *text, size_t len, bool *refused)
{
  const char *end = text + len;
  const char *p = text;
  struct secret *sec;
  int depth = 0;
  bool escaped;

  *refused = false;
  while (p < end) {
    if (*p == '"') {
      const char *name = p;
      const char *after = skip_string (p, end, &escaped);
      const char *v;

      if (!after)
        return NULL;
      p = after;
      if (depth != 1 || after - name != 5 ||
          memcmp (name, "\"key\"", 5) != 0)
        continue;
      v = member_value (after, end);
      if (!v)
        continue;               /* "key" as a value, not a member name */
      if (v == end || *v != '"')
        return NULL;
      after = skip_string (v, end, &escaped);
      if (!after)
        return NULL;
      sec = ic_secure_alloc (sizeof *sec);
      if (!sec)
        return NULL;
      sec->size = after - v - 1;
      sec->text = ic_secure_alloc (sec->size);
      if (!sec->text) {
        ic_secure_free (sec, sizeof *sec);
        return NULL;
      }
      if (!utf8_as_json_c (v + 1, after - 1) ||
          !json_unescape (v + 1, after - 1, sec->text)) {
        free_secret (NULL, sec);
        sec = NULL;
        *refused = true;
      }
      memset ((char *) v + 1, 'x', after - v - 2);
      return sec;
    }
    depth += nesting (*p);
    p++;
  }
  return NULL;
}

static bool
printable_ascii (const char *s, size_t len)
{
  size_t i;

  for (i = 0; i < len; i++)
    if (s[i] < 0x20 || s[i] > 0x7e)
      return false;
  return true;
}

/* What take_secret() and json-c must agree on, checked before either
 * reads the request: each top-level member is named once, without
 * escapes (json-c keeps the last of two "key" members, and reads
 * "k\u0065y" as "key": the secret taken would not be the key used), and
 * there are no single-quoted strings or comments (json-c reads both,
 * and a "key" would hide in them from take_secret(), or show there).
 * Return: true, or false with the reason in @msg.
 */
static bool
members_plain (const char *text, size_t len, char *msg, size_t msgsize)
{
  const char *end = text + len;
  const char *p = text;
  const char *names[MAX_MEMBERS];
  size_t lens[MAX_MEMBERS];
  size_t n = 0, i;
  int depth = 0;
  bool escaped;

  while (p < end) {
    if (*p == '"') {
      const char *name = p;
      const char *after = skip_string (p, end, &escaped);

      if (!after)
        return true;            /* json-c says what is wrong */
      p = after;
      if (depth != 1)
        continue;
      if (!member_value (after, end))
        continue;               /* a value, not a member name */
      if (escaped) {
        snprintf (msg, msgsize, "malformed request: a member name with an "
                  "escape");
        return false;
      }
      for (i = 0; i < n; i++)
        if (lens[i] == (size_t) (after - name) &&
            memcmp (names[i], name, lens[i]) == 0) {
          /* Not yet checked as UTF-8: named only if plain ASCII. */
          if (printable_ascii (name, after - name) && after - name <= 40)
            snprintf (msg, msgsize, "malformed request: member %.*s given "
                      "twice", (int) (after - name), name);
          else
            snprintf (msg, msgsize, "malformed request: a member given "
                      "twice");
          return false;
        }
      if (n == MAX_MEMBERS) {
        snprintf (msg, msgsize, "malformed request: more than %d members",
                  MAX_MEMBERS);
        return false;
      }
      names[n] = name;
      lens[n++] = after - name;
      continue;
    }
    if (*p == '\'') {
      snprintf (msg, msgsize, "malformed request: strings are in double "
                "quotes");
      return false;
    }
    if (*p == '/') {
      snprintf (msg, msgsize, "malformed request: comments are not JSON");
      return false;
    }
    depth += nesting (*p);
    p++;
  }
  return true;
}

/* Commands whose "key" member is secret; for the others it names a key. */
static bool
key_is_secret (const char *cmd)
{
  return strcmp (cmd, "key-add") == 0 || strcmp (cmd, "key-import") == 0;
}

static struct json_object *
parse_object (const char *line, size_t len, struct json_object **reply);

struct json_object *
ic_protocol_parse (const char *line, size_t len, struct json_object **reply)
{
  struct json_object *req;
  struct json_object *cmd;
  struct secret *sec = NULL;
  bool refused;
  char msg[128];
  char *copy;

  *reply = NULL;
  if (len > IC_PROTOCOL_MAX_LINE || memchr (line, '\0', len))
    return parse_object (line, len, reply);
  /* Parse a locked copy whose key value is blanked. */
  copy = ic_secure_alloc (len + 1);
  if (!copy)
    abort ();
  memcpy (copy, line, len);
  if (!members_plain (copy, len, msg, sizeof msg)) {
    ic_secure_free (copy, len + 1);
    *reply = ic_protocol_error (EINVAL, msg);
    return NULL;
  }
  sec = take_secret (copy, len, &refused);
  if (refused) {
    ic_secure_free (copy, len + 1);
    *reply = ic_protocol_error (EINVAL, "malformed request: the \"key\" "
                                "string has a bad escape, a NUL "
                                "character or invalid UTF-8");
    return NULL;
  }
  req = parse_object (copy, len, reply);
  ic_secure_free (copy, len + 1);
  if (!req || !sec) {
    if (sec)
      free_secret (NULL, sec);
    return req;
  }
  json_object_object_get_ex (req, "cmd", &cmd);
  if (key_is_secret (json_object_get_string (cmd)))
    json_object_set_userdata (req, sec, free_secret);
  else {
    /* A key name: not secret, put it back. */
    json_object_object_add (req, "key", json_object_new_string (sec->text));
    free_secret (NULL, sec);
  }
  return req;
}

/* json-c reads an integer beyond its range as the nearest end of it
 * (18446744073709551616 and 10^23 as 2^64-1, -2^63-1 as -2^63), saying
 * nothing; the request would then say something else than what was sent.
 * Find such an integer in the text of a request that parsed: a JSON
 * number without fraction or exponent, outside -2^63 .. 2^64-1.
 *
 * Return: true, with the number (shortened) in @msg, if there is one.
 */
static bool
number_out_of_range (const char *text, size_t len, char *msg, size_t size)
{
  const char *end = text + len;
  const char *p = text;
  bool escaped;

  while (p < end) {
    const char *num = p;
    const char *digits;
    const char *limit;
    size_t n;

    if (*p == '"') {
      p = skip_string (p, end, &escaped);
      if (!p)
        return false;
      continue;
    }
    if (*p != '-' && (*p < '0' || *p > '9')) {
      p++;
      continue;
    }
    if (*p == '-')
      p++;
    digits = p;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) {
      /* A double: json-c keeps what it can of it, and the commands that
       * take integers refuse doubles.
       */
      while (p < end && strchr ("0123456789.eE+-", *p))
        p++;
      continue;
    }
    while (digits < p - 1 && *digits == '0')
      digits++;
    n = p - digits;
    limit = *num == '-' ? "9223372036854775808" : "18446744073709551615";
    if (n < strlen (limit) ||
        (n == strlen (limit) && memcmp (digits, limit, n) <= 0))
      continue;
    snprintf (msg, size, "malformed request: the number %.*s%s is out of "
              "range (integers go from -2^63 to 2^64-1)",
              (int) ((p - num) < 40 ? p - num : 40), num,
              p - num > 40 ? "..." : "");
    return true;
  }
  return false;
}

/* Does @o hold a string (a value or a member name) with a NUL character
 * (\u0000)?  Every command reads its strings as C strings: "k1\u0000x"
 * would name k1.
 */
static bool
holds_nul (struct json_object *o)
{
  size_t i;

  if (json_object_is_type (o, json_type_string))
    return strlen (json_object_get_string (o)) !=
      (size_t) json_object_get_string_len (o);
  if (json_object_is_type (o, json_type_array)) {
    for (i = 0; i < json_object_array_length (o); i++)
      if (holds_nul (json_object_array_get_idx (o, i)))
        return true;
  }
  else if (json_object_is_type (o, json_type_object)) {
    struct json_object_iterator it = json_object_iter_begin (o);
    struct json_object_iterator e = json_object_iter_end (o);

    for (; !json_object_iter_equal (&it, &e); json_object_iter_next (&it)) {
      const char *name = json_object_iter_peek_name (&it);

      if (!name || holds_nul (json_object_iter_peek_value (&it)))
        return true;
    }
  }
  return false;
}

static struct json_object *
parse_object (const char *line, size_t len, struct json_object **reply)
{
  struct json_tokener *tok;
  struct json_object *req;
  struct json_object *cmd;
  enum json_tokener_error jerr;
  char msg[512];

  *reply = NULL;
  if (len > IC_PROTOCOL_MAX_LINE) {
    snprintf (msg, sizeof msg, "request too long: %zu bytes, at most %d",
              len, IC_PROTOCOL_MAX_LINE);
    *reply = ic_protocol_error (EMSGSIZE, msg);
    return NULL;
  }
  if (memchr (line, '\0', len)) {
    *reply = ic_protocol_error (EINVAL, "malformed request: NUL byte");
    return NULL;
  }
  /* White space around the object is fine; a CR of CRLF too. */
  while (len > 0 && strchr (" \t\r", line[len - 1]))
    len--;
  tok = json_tokener_new_ex (32);
  if (!tok)
    abort ();
  /* No comments; replies echo names, and must be UTF-8 like any JSON. */
  json_tokener_set_flags (tok, JSON_TOKENER_STRICT |
                          JSON_TOKENER_VALIDATE_UTF8);
  req = json_tokener_parse_ex (tok, line, len);
  jerr = json_tokener_get_error (tok);
  if (!req || jerr != json_tokener_success ||
      json_tokener_get_parse_end (tok) < len) {
    snprintf (msg, sizeof msg, "malformed request: expected one JSON object "
              "per line (%s)",
              jerr == json_tokener_continue ? "incomplete JSON"
              : jerr != json_tokener_success ? json_tokener_error_desc (jerr)
              : req ? "extra text after the object" : "empty line");
    json_object_put (req);
    json_tokener_free (tok);
    *reply = ic_protocol_error (EINVAL, msg);
    return NULL;
  }
  json_tokener_free (tok);
  if (number_out_of_range (line, len, msg, sizeof msg)) {
    json_object_put (req);
    *reply = ic_protocol_error (EINVAL, msg);
    return NULL;
  }
  if (!json_object_is_type (req, json_type_object)) {
    json_object_put (req);
    *reply = ic_protocol_error (EINVAL, "malformed request: expected a JSON "
                                "object such as {\"cmd\": \"status\"}");
    return NULL;
  }
  if (holds_nul (req)) {
    json_object_put (req);
    *reply = ic_protocol_error (EINVAL, "malformed request: a string with "
                                "a NUL character (\\u0000)");
    return NULL;
  }
  if (!json_object_object_get_ex (req, "cmd", &cmd) ||
      !json_object_is_type (cmd, json_type_string)) {
    json_object_put (req);
    *reply = ic_protocol_error (EINVAL, "request has no \"cmd\" string");
    return NULL;
  }
  if (!find_command (json_object_get_string (cmd))) {
    const char *shown = IC_SHOWN (json_object_get_string (cmd));

    snprintf (msg, sizeof msg, "unknown command '%.*s'; expected ping, "
              "status, stats, key-add, key-remove, key-list, key-import, "
              "key-generate, key-prepare, key-derive-secret, evict, map, "
              "table-load, table-resume, table-clear, table-show, "
              "engine-reset, fault or wait-resync",
              utf8_cut (shown, 64), shown);
    json_object_put (req);
    *reply = ic_protocol_error (EINVAL, msg);
    return NULL;
  }
  return req;
}

/* Arguments.  Each returns 0, or -EINVAL with the reason set. */

static const char *
cmd_name (struct json_object *req)
{
  struct json_object *cmd;

  json_object_object_get_ex (req, "cmd", &cmd);
  return json_object_get_string (cmd);
}

static int
arg_string (struct json_object *req, const char *field, bool required,
            const char **out)
{
  struct json_object *v;

  *out = NULL;
  if (!json_object_object_get_ex (req, field, &v) ||
      json_object_is_type (v, json_type_null)) {
    if (!required)
      return 0;
    ic_error ("%s: '%s' is required", cmd_name (req), field);
    return -EINVAL;
  }
  if (!json_object_is_type (v, json_type_string)) {
    ic_error ("%s: '%s': expected a string", cmd_name (req), field);
    return -EINVAL;
  }
  *out = json_object_get_string (v);
  return 0;
}

/* The value of @field, which for "key" may have been kept out of json-c:
 * then the locked copy.
 */
static int
arg_secret (struct json_object *req, const char *field, const char **out)
{
  struct secret *sec = json_object_get_userdata (req);
  int r = arg_string (req, field, true, out);

  if (r == 0 && sec && strcmp (field, "key") == 0)
    *out = sec->text;
  return r;
}

/* A JSON integer >= 0 into @out, exactly: the parser has refused those
 * beyond 2^64-1 (number_out_of_range), and json-c keeps the ones beyond
 * 2^63-1 as unsigned.  Doubles are refused, not rounded.
 */
static int
json_to_u64 (const char *what, struct json_object *v, uint64_t *out)
{
  if (json_object_is_type (v, json_type_double)) {
    ic_error ("%s: expected a whole number, got %s", what,
              json_object_to_json_string (v));
    return -EINVAL;
  }
  if (json_object_get_int64 (v) < 0) {
    ic_error ("%s: expected a number >= 0, got %s", what,
              json_object_to_json_string (v));
    return -EINVAL;
  }
  *out = json_object_get_uint64 (v);
  return 0;
}

/* A number: a JSON integer from 0 to 2^64-1, or a string: a decimal
 * number with an optional size suffix (ic_parse_size).
 */
static int
arg_size (struct json_object *req, const char *field, bool required,
          uint64_t *out, bool *given)
{
  struct json_object *v;
  char what[128];

  if (given)
    *given = false;
  if (!json_object_object_get_ex (req, field, &v)) {
    if (!required)
      return 0;
    ic_error ("%s: '%s' is required", cmd_name (req), field);
    return -EINVAL;
  }
  if (given)
    *given = true;
  snprintf (what, sizeof what, "%s: '%s'", cmd_name (req), field);
  if (json_object_is_type (v, json_type_int) ||
      json_object_is_type (v, json_type_double))
    return json_to_u64 (what, v, out);
  if (json_object_is_type (v, json_type_string))
    return ic_parse_size (what, json_object_get_string (v), out);
  ic_error ("%s: expected a number", what);
  return -EINVAL;
}

static int
arg_bool (struct json_object *req, const char *field, bool *out)
{
  struct json_object *v;

  if (!json_object_object_get_ex (req, field, &v))
    return 0;
  if (!json_object_is_type (v, json_type_boolean)) {
    ic_error ("%s: '%s': expected true or false", cmd_name (req), field);
    return -EINVAL;
  }
  *out = json_object_get_boolean (v);
  return 0;
}

/* Lookups by a field's name.  Return: the object, or NULL with the reason
 * set and errno EINVAL (the field is missing or not a string; a leaf where
 * a stacked device is needed) or ENOENT (nothing of that name).
 */
static struct ic_device *
arg_device (struct ic_graph *g, struct json_object *req, const char *field,
            bool required)
{
  const char *name;
  struct ic_device *dev;

  if (arg_string (req, field, required, &name) < 0 || !name) {
    errno = EINVAL;
    return NULL;
  }
  dev = ic_graph_find_device (g, name);
  if (!dev) {
    ic_error ("%s: no device named '%s'", cmd_name (req), IC_SHOWN (name));
    errno = ENOENT;
  }
  return dev;
}

static struct ic_crypto_key *
arg_key (struct ic_graph *g, struct json_object *req, const char *field)
{
  const char *name;
  struct ic_crypto_key *key;

  if (arg_string (req, field, true, &name) < 0) {
    errno = EINVAL;
    return NULL;
  }
  key = ic_graph_find_key (g, name);
  if (!key) {
    ic_error ("%s: no key named '%s'", cmd_name (req), IC_SHOWN (name));
    errno = ENOENT;
  }
  return key;
}

/* Reject fields the command does not know. */
static int
check_fields (const struct command *c, struct json_object *req)
{
  json_object_object_foreach (req, k, v) {
    size_t i;
    bool ok = strcmp (k, "cmd") == 0;

    (void) v;
    for (i = 0; c->fields && c->fields[i] && !ok; i++)
      ok = strcmp (k, c->fields[i]) == 0;
    if (!ok) {
      const char *shown = IC_SHOWN (k);

      ic_error ("%s: unknown field '%.*s'", c->name, utf8_cut (shown, 64),
                shown);
      return -EINVAL;
    }
  }
  return 0;
}

static void
add_u64 (struct json_object *o, const char *k, uint64_t v)
{
  json_object_object_add (o, k, json_object_new_uint64 (v));
}

static void
add_str (struct json_object *o, const char *k, const char *v)
{
  json_object_object_add (o, k, json_object_new_string (v));
}

/* ping */
static int
cmd_ping (struct ic_graph *g, struct json_object *req,
          struct json_object *reply)
{
  add_str (reply, "version", PACKAGE_VERSION);
  return 0;
}

/* The /sys/block/<disk>/queue/crypto/ view of a profile, or null. */
static struct json_object *
crypto_json (const struct ic_crypto_profile *p)
{
  struct json_object *o;
  struct json_object *modes;
  int m;

  if (!p)
    return NULL;
  o = json_object_new_object ();
  modes = json_object_new_object ();
  add_u64 (o, "max_dun_bits",
           8ull * __atomic_load_n (&p->max_dun_bytes_supported,
                                   __ATOMIC_RELAXED));
  add_u64 (o, "num_keyslots", ic_crypto_profile_num_slots (p));
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++) {
    unsigned int mask = __atomic_load_n (&p->modes_supported[m],
                                         __ATOMIC_RELAXED);
    char hex[16];

    /* Only modes with a nonzero mask, as blk_crypto_mode_is_visible. */
    if (!mask)
      continue;
    snprintf (hex, sizeof hex, "0x%x", mask);
    add_str (modes, ic_crypto_mode_name (m), hex);
  }
  json_object_object_add (o, "modes", modes);
  if (p->key_types_supported & IC_CRYPTO_KEY_TYPE_RAW)
    add_str (o, "raw_keys", "supported");
  if (p->key_types_supported & IC_CRYPTO_KEY_TYPE_HW_WRAPPED)
    add_str (o, "hw_wrapped_keys", "supported");
  return o;
}

static struct json_object *
device_json (struct ic_device *dev)
{
  struct json_object *o = json_object_new_object ();
  struct ic_leaf *leaf = ic_device_to_leaf (dev);
  const struct ic_crypto_profile *profile =
    __atomic_load_n (&dev->profile, __ATOMIC_ACQUIRE);

  add_str (o, "name", dev->name);
  add_u64 (o, "size", dev->size);
  json_object_object_add (o, "fallback",
                          json_object_new_boolean (dev->fallback_enabled));
  json_object_object_add (o, "crypto", crypto_json (profile));
  if (leaf) {
    struct ic_leaf_status st;

    add_str (o, "kind", "leaf");
    add_str (o, "backend", leaf->ops->type);
    if (leaf->engine)
      add_str (o, "engine", ic_engine_name (leaf->engine));
    /* An NBD leaf whose timed-out write the server may still carry out
     * holds back writes (leaf-nbd.c): say so, and which write.
     */
    ic_leaf_read_status (leaf, &st);
    json_object_object_add (o, "writes_fenced", json_object_new_boolean
                            (st.unanswered_writes > 0));
    add_u64 (o, "unanswered_writes", st.unanswered_writes);
    if (st.fence_op) {
      struct json_object *f = json_object_new_object ();

      add_str (f, "op", st.fence_op);
      add_u64 (f, "offset", st.fence_offset);
      add_u64 (f, "length", st.fence_len);
      json_object_object_add (o, "fenced_by", f);
    }
    /* A file leaf on tmpfs decrypts large reads out of its mapping. */
    if (st.view) {
      add_str (o, "view", st.view);
      add_u64 (o, "view_reads", st.view_reads);
    }
  }
  else {
    size_t n;
    struct ic_leg_status *legs = ic_stacked_mirror_status_all (dev, &n);
    size_t len = ic_stacked_table_text (dev, false, NULL, 0) + 1;
    char *text = malloc (len);
    struct json_object *arr;
    size_t i;

    add_str (o, "kind", "stacked");
    if (text) {
      ic_stacked_table_text (dev, false, text, len);
      add_str (o, "table", text);
      free (text);
    }
    add_str (o, "options", (ic_stacked_options (dev) &
                            IC_TABLE_PER_CHILD_FALLBACK)
             ? "per_child_fallback" : "");
    arr = json_object_new_array ();
    for (i = 0; legs && i < n; i++) {
      struct json_object *l = json_object_new_object ();

      add_str (l, "device", legs[i].device);
      add_u64 (l, "offset", legs[i].offset);
      add_str (l, "state", ic_leg_state_name (legs[i].state));
      add_u64 (l, "resync_done", legs[i].resync_done);
      add_u64 (l, "errors", legs[i].errors);
      json_object_array_add (arr, l);
    }
    free (legs);
    json_object_object_add (o, "legs", arr);
  }
  return o;
}

/* status [device] */
static int
cmd_status (struct ic_graph *g, struct json_object *req,
            struct json_object *reply)
{
  struct json_object *devs = json_object_new_array ();
  struct json_object *exps = json_object_new_array ();
  struct json_object *v;
  struct ic_device *one = NULL;
  size_t i;

  if (json_object_object_get_ex (req, "device", &v)) {
    one = arg_device (g, req, "device", true);
    if (!one) {
      json_object_put (devs);
      json_object_put (exps);
      return -errno;
    }
  }
  for (i = 0; i < g->ndevices; i++)
    if (!one || g->devices[i] == one)
      json_object_array_add (devs, device_json (g->devices[i]));
  json_object_object_add (reply, "devices", devs);
  for (i = 0; i < g->nexports && !one; i++) {
    struct json_object *e = json_object_new_object ();

    add_str (e, "name", g->exports[i]->name);
    add_str (e, "device", g->exports[i]->dev->name);
    add_u64 (e, "size", g->exports[i]->size);
    add_str (e, "description", g->exports[i]->description);
    json_object_array_add (exps, e);
  }
  if (one)
    json_object_put (exps);
  else {
    json_object_object_add (reply, "exports", exps);
    json_object_object_add (reply, "locked_memory",
                            json_object_new_boolean (ic_secmem_locked ()));
  }
  return 0;
}

static struct json_object *
wait_json (const struct ic_histogram *h)
{
  struct json_object *o = json_object_new_object ();

  add_u64 (o, "count", h->count);
  add_u64 (o, "total_ns", h->total_ns);
  add_u64 (o, "max_ns", h->max_ns);
  add_u64 (o, "p50_ns", ic_histogram_percentile (h, 50));
  add_u64 (o, "p99_ns", ic_histogram_percentile (h, 99));
  return o;
}

static void
slot_stats_json (struct json_object *o, const struct ic_keyslot_stats *s)
{
  add_u64 (o, "hits", s->hits);
  add_u64 (o, "misses", s->misses);
  add_u64 (o, "programs", s->programs);
  add_u64 (o, "program_failures", s->program_failures);
  add_u64 (o, "evictions", s->evictions);
  add_u64 (o, "evictions_busy", s->evict_busy);
  add_u64 (o, "reprograms", s->reprograms);
  add_u64 (o, "waits", s->waits);
  json_object_object_add (o, "wait", wait_json (&s->wait));
}

/* Per mode counters, only the nonzero ones. */
static struct json_object *
per_mode_json (const uint64_t v[IC_ENCRYPTION_MODE_MAX])
{
  struct json_object *o = json_object_new_object ();
  int m;

  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    if (v[m])
      add_u64 (o, ic_crypto_mode_name (m), v[m]);
  return o;
}

/* stats [reset] */
static int
cmd_stats (struct ic_graph *g, struct json_object *req,
           struct json_object *reply)
{
  struct json_object *engines = json_object_new_object ();
  struct json_object *devices = json_object_new_object ();
  struct json_object *exports = json_object_new_object ();
  struct json_object *fb = json_object_new_object ();
  struct ic_fallback_stats fs;
  bool reset = false;
  size_t i;
  int r;

  r = arg_bool (req, "reset", &reset);
  if (r < 0)
    goto out_free;
  for (i = 0; i < g->nengines; i++) {
    struct json_object *o = json_object_new_object ();
    struct ic_engine_stats st;

    ic_engine_read_stats (g->engines[i], &st, reset);
    slot_stats_json (o, &st.slots);
    add_u64 (o, "resets", st.resets);
    add_u64 (o, "hw_evictions", st.hw_evictions);
    add_u64 (o, "key_mismatches", st.key_mismatches);
    add_u64 (o, "num_keyslots", ic_engine_config (g->engines[i])->num_slots);
    json_object_object_add (o, "requests", per_mode_json (st.requests));
    json_object_object_add (o, "bytes", per_mode_json (st.bytes));
    json_object_object_add (engines, ic_engine_name (g->engines[i]), o);
  }
  ic_crypto_fallback_read_stats (&fs, reset);
  slot_stats_json (fb, &fs.slots);
  add_u64 (fb, "num_keyslots", ic_crypto_fallback_num_keyslots ());
  json_object_object_add (fb, "encrypt_requests",
                          per_mode_json (fs.encrypt_requests));
  json_object_object_add (fb, "encrypt_bytes",
                          per_mode_json (fs.encrypt_bytes));
  json_object_object_add (fb, "decrypt_requests",
                          per_mode_json (fs.decrypt_requests));
  json_object_object_add (fb, "decrypt_bytes",
                          per_mode_json (fs.decrypt_bytes));
  for (i = 0; i < g->ndevices; i++) {
    struct json_object *o = json_object_new_object ();
    struct ic_leaf *leaf = ic_device_to_leaf (g->devices[i]);
    uint64_t requests;
    uint64_t bytes;

    ic_device_read_fallback_stats (g->devices[i], &requests, &bytes, reset);
    add_u64 (o, "fallback_requests", requests);
    add_u64 (o, "fallback_bytes", bytes);
    if (leaf)
      add_u64 (o, "io_errors", reset
               ? __atomic_exchange_n (&leaf->io_errors, 0, __ATOMIC_RELAXED)
               : __atomic_load_n (&leaf->io_errors, __ATOMIC_RELAXED));
    json_object_object_add (devices, g->devices[i]->name, o);
  }
  for (i = 0; i < g->nexports; i++) {
    struct json_object *o = json_object_new_object ();
    struct ic_export_stats st;

    ic_export_read_stats (g->exports[i], &st, reset);
    add_u64 (o, "reads", st.reads);
    add_u64 (o, "writes", st.writes);
    add_u64 (o, "bytes_read", st.bytes_read);
    add_u64 (o, "bytes_written", st.bytes_written);
    add_u64 (o, "zeroes", st.zeroes);
    add_u64 (o, "trims", st.trims);
    add_u64 (o, "flushes", st.flushes);
    add_u64 (o, "errors", st.errors);
    json_object_object_add (exports, g->exports[i]->name, o);
  }
  json_object_object_add (reply, "engines", engines);
  json_object_object_add (reply, "fallback", fb);
  json_object_object_add (reply, "devices", devices);
  json_object_object_add (reply, "exports", exports);
  return 0;

out_free:
  json_object_put (engines);
  json_object_put (devices);
  json_object_put (exports);
  json_object_put (fb);
  return r;
}

/* Overwrite the key text of a request, which json-c keeps in ordinary
 * memory.
 */
static void
wipe_field (struct json_object *req, const char *field)
{
  struct json_object *v;

  if (json_object_object_get_ex (req, field, &v) &&
      json_object_is_type (v, json_type_string))
    ic_memzero_explicit ((char *) json_object_get_string (v),
                         json_object_get_string_len (v));
}

/* @n bytes at @bytes as a hex string field of @o. */
static void
add_hex (struct json_object *o, const char *k, const uint8_t *bytes,
         size_t n)
{
  char hex[2 * 256 + 1];
  size_t i;

  for (i = 0; i < n && i < 256; i++)
    snprintf (hex + 2 * i, 3, "%02x", bytes[i]);
  hex[2 * i] = '\0';
  add_str (o, k, hex);
  ic_memzero_explicit (hex, sizeof hex);
}

/* key-add of type hw_wrapped: @hex is an ephemerally-wrapped blob that
 * @engine_name's key manager prepared (key-prepare).  It is checked, as
 * FS_IOC_ADD_ENCRYPTION_KEY does with a wrapped key, by deriving its
 * software secret (EBADMSG if it is not valid).
 */
static int
key_add_wrapped (struct ic_graph *g, struct json_object *reply,
                 const char *name, enum ic_crypto_mode_num mode, uint64_t du,
                 uint64_t dun_bytes, const char *hex,
                 const char *engine_name)
{
  struct ic_crypto_profile *profile;
  struct ic_crypto_key *key;
  struct ic_engine *engine;
  uint8_t *blob;
  uint8_t *sw_secret;
  int n;
  int r;

  if (!engine_name) {
    ic_error ("key-add: a hw_wrapped key needs 'engine', the engine whose "
              "key manager prepared it");
    return -EINVAL;
  }
  engine = ic_graph_find_engine (g, engine_name);
  if (!engine) {
    ic_error ("key-add: no engine named '%s'", IC_SHOWN (engine_name));
    return -ENOENT;
  }
  if (mode != IC_ENCRYPTION_MODE_AES_256_XTS) {
    ic_error ("key-add: the hardware derives an AES-256-XTS key from a "
              "hw_wrapped key, not a %s key", ic_crypto_mode_name (mode));
    return -EINVAL;
  }
  if (du > IC_CRYPTO_MAX_DATA_UNIT_SIZE || dun_bytes > IC_CRYPTO_MAX_IV_SIZE) {
    ic_error ("key-add: data_unit_size or dun_bytes out of range");
    return -EINVAL;
  }
  profile = ic_engine_profile (engine);
  blob = ic_secure_alloc (IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  sw_secret = ic_secure_alloc (IC_CRYPTO_SW_SECRET_SIZE);
  if (!blob || !sw_secret) {
    r = -ENOMEM;
    goto out_free;
  }
  n = ic_hex_decode ("key-add: key", hex, blob,
                     IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  if (n < 0) {
    r = n == -E2BIG ? -EINVAL : n;
    goto out_free;
  }
  r = ic_crypto_derive_sw_secret (profile, blob, n, sw_secret);
  if (r == -EOPNOTSUPP)
    ic_error ("key-add: engine %s does not take hw_wrapped keys",
              engine_name);
  if (r < 0)
    goto out_free;
  key = ic_crypto_key_new (name, blob, n, IC_CRYPTO_KEY_TYPE_HW_WRAPPED,
                           mode, dun_bytes, du);
  if (!key) {
    r = -errno;
    goto out_free;
  }
  snprintf (key->engine, sizeof key->engine, "%s", engine_name);
  r = ic_graph_add_key (g, key);
  if (r == 0)
    add_str (reply, "name", name);
out_free:
  ic_secure_free (blob, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  ic_secure_free (sw_secret, IC_CRYPTO_SW_SECRET_SIZE);
  return r;
}

/* key-add name mode data_unit_size dun_bytes key [type engine] */
static int
cmd_key_add (struct ic_graph *g, struct json_object *req,
             struct json_object *reply)
{
  enum ic_crypto_mode_num mode = IC_ENCRYPTION_MODE_AES_256_XTS;
  const char *name;
  const char *mode_name;
  const char *type;
  const char *engine_name;
  const char *hex;
  uint64_t du = 4096;
  uint64_t dun_bytes = 8;
  struct ic_crypto_key *key;
  uint8_t *bytes;
  unsigned int keysize;
  int n;
  int r;

  if ((r = arg_string (req, "name", true, &name)) < 0 ||
      (r = arg_string (req, "mode", false, &mode_name)) < 0 ||
      (r = arg_size (req, "data_unit_size", false, &du, NULL)) < 0 ||
      (r = arg_size (req, "dun_bytes", false, &dun_bytes, NULL)) < 0 ||
      (r = arg_secret (req, "key", &hex)) < 0)
    return r;
  if (strlen (name) == 0 || strlen (name) >= IC_CRYPTO_KEY_NAME_MAX ||
      strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
              "0123456789_.-") != strlen (name)) {
    ic_error ("key-add: invalid name: use 1 to 63 letters, digits, '_', '.' "
              "or '-'");
    return -EINVAL;
  }
  if (ic_graph_find_key (g, name)) {
    ic_error ("key-add: a key named '%s' exists already", IC_SHOWN (name));
    return -EEXIST;
  }
  if (mode_name && (r = ic_parse_mode ("key-add: mode", mode_name,
                                       &mode)) < 0)
    return r;
  if ((r = arg_string (req, "type", false, &type)) < 0 ||
      (r = arg_string (req, "engine", false, &engine_name)) < 0)
    return r;
  if (type && strcmp (type, "hw_wrapped") == 0)
    return key_add_wrapped (g, reply, name, mode, du, dun_bytes, hex,
                            engine_name);
  if (type && strcmp (type, "raw") != 0) {
    ic_error ("key-add: type '%s': expected raw or hw_wrapped",
              IC_SHOWN (type));
    return -EINVAL;
  }
  if (engine_name) {
    ic_error ("key-add: 'engine' is for hw_wrapped keys");
    return -EINVAL;
  }
  keysize = ic_crypto_modes[mode].keysize;
  bytes = ic_secure_alloc (IC_CRYPTO_MAX_RAW_KEY_SIZE);
  if (!bytes)
    return -ENOMEM;
  n = ic_hex_decode ("key-add: key", hex, bytes, IC_CRYPTO_MAX_RAW_KEY_SIZE);
  if (n < 0) {
    r = n;
    goto out_free;
  }
  if ((unsigned int) n != keysize) {
    ic_error ("key-add: %s needs a key of exactly %u bytes (%u hex digits), "
              "got %d bytes", ic_crypto_mode_name (mode), keysize,
              2 * keysize, n);
    r = -EINVAL;
    goto out_free;
  }
  if ((mode == IC_ENCRYPTION_MODE_AES_256_XTS ||
       mode == IC_ENCRYPTION_MODE_SM4_XTS) &&
      memcmp (bytes, bytes + n / 2, n / 2) == 0) {
    ic_error ("key-add: the two halves of an %s key must differ",
              ic_crypto_mode_name (mode));
    r = -EINVAL;
    goto out_free;
  }
  if (du > IC_CRYPTO_MAX_DATA_UNIT_SIZE || dun_bytes > IC_CRYPTO_MAX_IV_SIZE) {
    ic_error ("key-add: data_unit_size or dun_bytes out of range");
    r = -EINVAL;
    goto out_free;
  }
  key = ic_crypto_key_new (name, bytes, n, IC_CRYPTO_KEY_TYPE_RAW, mode,
                           dun_bytes, du);
  if (!key) {
    r = -errno;
    goto out_free;
  }
  r = ic_graph_add_key (g, key);
  if (r == 0)
    add_str (reply, "name", name);
out_free:
  ic_secure_free (bytes, IC_CRYPTO_MAX_RAW_KEY_SIZE);
  return r;
}

/* The first export whose current map uses @key, or NULL. */
static struct ic_export *
export_using (struct ic_graph *g, const struct ic_crypto_key *key)
{
  size_t i;

  for (i = 0; i < g->nexports; i++)
    if (ic_export_uses_key (g->exports[i], key))
      return g->exports[i];
  return NULL;
}

/* Evict @key from every leaf and the fallback; results in @results.
 *
 * Return: 0, or the first error (-EBUSY: still in use somewhere).
 */
static int
evict_everywhere (struct ic_graph *g, const struct ic_crypto_key *key,
                  struct json_object *results)
{
  int first = 0;
  size_t i;
  int r;

  for (i = 0; i < g->ndevices; i++) {
    if (!ic_device_to_leaf (g->devices[i]) || !g->devices[i]->profile)
      continue;
    r = ic_crypto_evict_key (g->devices[i]->profile, key);
    if (results)
      add_str (results, g->devices[i]->name, ic_errno_name (-r));
    if (r < 0 && !first)
      first = r;
  }
  r = ic_crypto_fallback_evict_key (key);
  if (results)
    add_str (results, "fallback", ic_errno_name (-r));
  if (r < 0 && !first)
    first = r;
  return first;
}

/* Before @key is freed: out of the slots that an evict which found it
 * busy left holding it (ic_crypto_purge_key), on every leaf and the
 * fallback.
 */
static void
purge_everywhere (struct ic_graph *g, const struct ic_crypto_key *key)
{
  struct ic_crypto_profile *fb = ic_crypto_fallback_profile ();
  size_t i;

  for (i = 0; i < g->ndevices; i++)
    if (ic_device_to_leaf (g->devices[i]) && g->devices[i]->profile)
      ic_crypto_purge_key (g->devices[i]->profile, key);
  if (fb)
    ic_crypto_purge_key (fb, key);
}

static void
sleep_ms (unsigned int ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

  nanosleep (&ts, NULL);
}

/* key-remove name: refused while a map uses the key; waits for requests
 * still on older maps, then evicts it everywhere and frees it.
 */
static int
cmd_key_remove (struct ic_graph *g, struct json_object *req,
                struct json_object *reply)
{
  struct ic_crypto_key *key = arg_key (g, req, "name");
  struct removing self;
  struct removing **pp;
  struct ic_export *user;
  unsigned int waited = 0;

  if (!key)
    return -errno;
  if (key_is_removing (key)) {
    ic_error ("key-remove: key %s is being removed already", key->name);
    return -EBUSY;
  }
  user = export_using (g, key);
  if (user)
    goto out_used;
  /* From here on no new map can take it. */
  self.key = key;
  self.next = removing;
  removing = &self;

  /* Requests that took an older map may still run with it.  A map
   * command that had found the key before may also be installing a map
   * with it (cmd_map): then the key stays, as if the map had come first.
   * An evict may be using it too (cmd_evict).  The count is read under
   * command_lock at last, where no command can take the key any more.
   */
  while (__atomic_load_n (&key->refs, __ATOMIC_ACQUIRE) != 0 &&
         waited < KEY_DRAIN_MS && !canceled () &&
         !(user = export_using (g, key))) {
    pthread_mutex_unlock (&command_lock);
    sleep_ms (10);
    waited += 10;
    pthread_mutex_lock (&command_lock);
  }
  for (pp = &removing; *pp != &self; pp = &(*pp)->next)
    ;
  *pp = self.next;
  if (user || (user = export_using (g, key)))
    goto out_used;
  if (__atomic_load_n (&key->refs, __ATOMIC_ACQUIRE) != 0 &&
      canceled ()) {
    ic_error ("key-remove: key %s is still used by requests and the server "
              "is stopping; it stays", key->name);
    return -ECANCELED;
  }
  if (__atomic_load_n (&key->refs, __ATOMIC_ACQUIRE) != 0) {
    ic_error ("key-remove: key %s is still used after %d ms, by requests "
              "or an evict waiting for a keyslot program; it stays",
              key->name, KEY_DRAIN_MS);
    return -ETIMEDOUT;
  }
  /* Unused, and under command_lock nothing can take it now: out of the
   * graph, no command finds it any more.  The evict waits for keyslots
   * being programmed, as in cmd_evict: not under command_lock.
   */
  ic_graph_remove_key (g, key);
  add_str (reply, "name", key->name);
  pthread_mutex_unlock (&command_lock);
  evict_everywhere (g, key, NULL);
  purge_everywhere (g, key);
  ic_crypto_key_free (key);
  pthread_mutex_lock (&command_lock);
  return 0;

out_used:
  ic_error ("key-remove: key %s is used by the map of export %s; map the "
            "range to another key or none first", key->name, user->name);
  return -EBUSY;
}

/* key-list: names and configurations, never key bytes. */
static int
cmd_key_list (struct ic_graph *g, struct json_object *req,
              struct json_object *reply)
{
  struct json_object *arr = json_object_new_array ();
  size_t i;
  size_t j;

  pthread_mutex_lock (&g->lock);
  for (i = 0; i < g->nkeys; i++) {
    const struct ic_crypto_key *key = g->keys[i];
    struct json_object *o = json_object_new_object ();
    struct json_object *users = json_object_new_array ();

    add_str (o, "name", key->name);
    add_str (o, "mode", ic_crypto_mode_name (key->crypto_cfg.crypto_mode));
    add_u64 (o, "data_unit_size", key->crypto_cfg.data_unit_size);
    add_u64 (o, "dun_bytes", key->crypto_cfg.dun_bytes);
    add_str (o, "type", ic_crypto_key_type_name (key->crypto_cfg.key_type));
    for (j = 0; j < g->nexports; j++)
      if (ic_export_uses_key (g->exports[j], key))
        json_object_array_add (users,
                               json_object_new_string (g->exports[j]->name));
    json_object_object_add (o, "used_by", users);
    json_object_array_add (arr, o);
  }
  pthread_mutex_unlock (&g->lock);
  json_object_object_add (reply, "keys", arr);
  return 0;
}

/* The profile a wrapped-key command runs on, as the BLKCRYPTO* ioctls
 * run on a block device: exactly one of "engine" (the hardware of a leaf)
 * or "device" (a leaf or stacked device; a stacked one forwards to its
 * first child).  *@profilep may be NULL for a device without inline
 * encryption: the ops then fail with EOPNOTSUPP.
 */
static int
wrapped_target (struct ic_graph *g, struct json_object *req,
                struct ic_crypto_profile **profilep, const char **namep)
{
  const char *engine_name;
  const char *dev_name;
  struct ic_engine *engine;
  struct ic_device *dev;
  int r;

  if ((r = arg_string (req, "engine", false, &engine_name)) < 0 ||
      (r = arg_string (req, "device", false, &dev_name)) < 0)
    return r;
  if (!engine_name == !dev_name) {
    ic_error ("%s: expected one of 'engine' or 'device'", cmd_name (req));
    return -EINVAL;
  }
  if (engine_name) {
    engine = ic_graph_find_engine (g, engine_name);
    if (!engine) {
      ic_error ("%s: no engine named '%s'", cmd_name (req),
                IC_SHOWN (engine_name));
      return -ENOENT;
    }
    *profilep = ic_engine_profile (engine);
    *namep = engine_name;
    return 0;
  }
  dev = arg_device (g, req, "device", true);
  if (!dev)
    return -errno;
  *profilep = __atomic_load_n (&dev->profile, __ATOMIC_ACQUIRE);
  *namep = dev->name;
  return 0;
}

/* Give EOPNOTSUPP a message naming the engine or device. */
static int
wrapped_result (struct json_object *req, const char *target, int r)
{
  if (r == -EOPNOTSUPP)
    ic_error ("%s: %s has no hardware-wrapped key support", cmd_name (req),
              target);
  return r;
}

/* The output capacity of key-import/-generate/-prepare (the in/out size
 * of the ioctls): "capacity", default and at most 128 bytes.
 */
static int
arg_capacity (struct json_object *req, size_t *capacity)
{
  uint64_t cap = IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE;
  int r = arg_size (req, "capacity", false, &cap, NULL);

  *capacity = cap < IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE
    ? cap : IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE;
  return r;
}

/* key-import (engine|device) key [capacity]: BLKCRYPTOIMPORTKEY.  The raw
 * key (hex) is wiped from the request; the long-term blob comes back in
 * hex.
 */
static int
cmd_key_import (struct ic_graph *g, struct json_object *req,
                struct json_object *reply)
{
  struct ic_crypto_profile *profile;
  const char *target;
  const char *hex;
  uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE];
  size_t lt_size;
  uint8_t *raw;
  int n;
  int r;

  if ((r = wrapped_target (g, req, &profile, &target)) < 0 ||
      (r = arg_secret (req, "key", &hex)) < 0 ||
      (r = arg_capacity (req, &lt_size)) < 0)
    return r;
  /* No profile: EOPNOTSUPP before the argument is looked at. */
  if (!profile)
    return wrapped_result (req, target, -EOPNOTSUPP);
  raw = ic_secure_alloc (IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  if (!raw)
    return -ENOMEM;
  n = ic_hex_decode ("key-import: key", hex, raw,
                     IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  if (n < 0)
    r = n == -E2BIG ? -EINVAL : n;
  else
    r = wrapped_result (req, target,
                        ic_crypto_ioctl_import_key (profile, raw, n, lt_key,
                                                    &lt_size));
  ic_secure_free (raw, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  if (r < 0)
    return r;
  add_hex (reply, "lt_key", lt_key, lt_size);
  add_u64 (reply, "size", lt_size);
  return 0;
}

/* key-generate (engine|device) [capacity]: BLKCRYPTOGENERATEKEY. */
static int
cmd_key_generate (struct ic_graph *g, struct json_object *req,
                  struct json_object *reply)
{
  struct ic_crypto_profile *profile;
  const char *target;
  uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE];
  size_t lt_size;
  int r;

  if ((r = wrapped_target (g, req, &profile, &target)) < 0 ||
      (r = arg_capacity (req, &lt_size)) < 0)
    return r;
  r = wrapped_result (req, target,
                      ic_crypto_ioctl_generate_key (profile, lt_key,
                                                    &lt_size));
  if (r < 0)
    return r;
  add_hex (reply, "lt_key", lt_key, lt_size);
  add_u64 (reply, "size", lt_size);
  return 0;
}

/* key-prepare (engine|device) lt_key [capacity]: BLKCRYPTOPREPAREKEY.
 * The ephemerally-wrapped blob comes back in hex, for key-add.
 */
static int
cmd_key_prepare (struct ic_graph *g, struct json_object *req,
                 struct json_object *reply)
{
  struct ic_crypto_profile *profile;
  const char *target;
  const char *hex;
  uint8_t lt_key[2 * IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE];
  uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE];
  size_t eph_size;
  int n;
  int r;

  if ((r = wrapped_target (g, req, &profile, &target)) < 0 ||
      (r = arg_string (req, "lt_key", true, &hex)) < 0 ||
      (r = arg_capacity (req, &eph_size)) < 0)
    return r;
  if (!profile)
    return wrapped_result (req, target, -EOPNOTSUPP);
  /* Too long for the ioctl is its EINVAL, not a decoding error. */
  n = ic_hex_decode ("key-prepare: lt_key", hex, lt_key, sizeof lt_key);
  if (n < 0)
    return n == -E2BIG ? -EINVAL : n;
  r = wrapped_result (req, target,
                      ic_crypto_ioctl_prepare_key (profile, lt_key, n,
                                                   eph_key, &eph_size));
  if (r < 0)
    return r;
  add_hex (reply, "eph_key", eph_key, eph_size);
  add_u64 (reply, "size", eph_size);
  return 0;
}

/* key-derive-secret name [engine|device]: the 32-byte software secret of
 * a hw_wrapped key (blk_crypto_derive_sw_secret), from the engine that
 * prepared it unless told otherwise.  The one secret meant for software:
 * it is returned in hex.
 */
static int
cmd_key_derive_secret (struct ic_graph *g, struct json_object *req,
                       struct json_object *reply)
{
  struct ic_crypto_key *key = arg_key (g, req, "name");
  struct ic_crypto_profile *profile;
  struct ic_engine *engine;
  struct json_object *v;
  const char *target;
  uint8_t *sw_secret;
  int r;

  if (!key)
    return -errno;
  if (key->crypto_cfg.key_type != IC_CRYPTO_KEY_TYPE_HW_WRAPPED) {
    ic_error ("key-derive-secret: key %s is a raw key; only a hw_wrapped "
              "key has a software secret", key->name);
    return -EINVAL;
  }
  if (json_object_object_get_ex (req, "engine", &v) ||
      json_object_object_get_ex (req, "device", &v)) {
    if ((r = wrapped_target (g, req, &profile, &target)) < 0)
      return r;
  }
  else {
    engine = key->engine[0] ? ic_graph_find_engine (g, key->engine) : NULL;
    if (!engine) {
      ic_error ("key-derive-secret: key %s names no engine; give 'engine' "
                "or 'device'", key->name);
      return -EINVAL;
    }
    profile = ic_engine_profile (engine);
    target = key->engine;
  }
  sw_secret = ic_secure_alloc (IC_CRYPTO_SW_SECRET_SIZE);
  if (!sw_secret)
    return -ENOMEM;
  r = wrapped_result (req, target,
                      ic_crypto_derive_sw_secret (profile, key->bytes,
                                                  key->size, sw_secret));
  if (r == 0)
    add_hex (reply, "sw_secret", sw_secret, IC_CRYPTO_SW_SECRET_SIZE);
  ic_secure_free (sw_secret, IC_CRYPTO_SW_SECRET_SIZE);
  return r;
}

/* cmd_evict's work, outside command_lock: on @dev, or everywhere if NULL. */
static int
evict (struct ic_graph *g, const struct ic_crypto_key *key,
       struct ic_device *dev, struct json_object *reply)
{
  struct json_object *results;
  int r;

  if (dev) {
    /* blk_crypto_evict_key on that device. */
    r = ic_device_evict_key (dev, key);
    if (r == -EBUSY)
      ic_error ("evict: key %s is still in use by I/O on %s (unlinked "
                "anyway, as Linux does)", key->name, dev->name);
    else if (r < 0)
      ic_error ("evict: %s: error evicting key %s: %s", dev->name, key->name,
                ic_errno_name (-r));
    return r;
  }
  results = json_object_new_object ();
  r = evict_everywhere (g, key, results);
  json_object_object_add (reply, "results", results);
  if (r == -EBUSY)
    ic_error ("evict: key %s is still in use by I/O (unlinked anyway, as "
              "Linux does); see results", key->name);
  else if (r < 0)
    ic_error ("evict: error evicting key %s: %s", key->name,
              ic_errno_name (-r));
  return r;
}

/* evict key [device] */
static int
cmd_evict (struct ic_graph *g, struct json_object *req,
           struct json_object *reply)
{
  struct ic_crypto_key *key = arg_key (g, req, "key");
  struct json_object *v;
  struct ic_device *dev;
  int r;

  if (!key)
    return -errno;
  dev = NULL;
  if (json_object_object_get_ex (req, "device", &v) &&
      !(dev = arg_device (g, req, "device", true)))
    return -errno;
  /* An evict waits for a keyslot being programmed on the same engine,
   * which a fault may make slow: not under command_lock, so that other
   * commands (the fault clear) go on.  The key is counted as used
   * meanwhile, so that a key-remove waits for the evict to end; devices
   * live as long as the graph.
   */
  __atomic_add_fetch (&key->refs, 1, __ATOMIC_ACQ_REL);
  pthread_mutex_unlock (&command_lock);
  r = evict (g, key, dev, reply);
  pthread_mutex_lock (&command_lock);
  __atomic_sub_fetch (&key->refs, 1, __ATOMIC_ACQ_REL);
  return r;
}

/* map export offset length key|null [dun_base] */
static int
cmd_map (struct ic_graph *g, struct json_object *req,
         struct json_object *reply)
{
  uint64_t dun_base[IC_CRYPTO_DUN_ARRAY_SIZE] = { 0 };
  struct ic_crypto_key *key = NULL;
  struct ic_export *exp;
  const char *name;
  const char *keyname;
  struct json_object *v;
  uint64_t offset;
  uint64_t length;
  int r;

  if ((r = arg_string (req, "export", true, &name)) < 0 ||
      (r = arg_size (req, "offset", true, &offset, NULL)) < 0 ||
      (r = arg_size (req, "length", true, &length, NULL)) < 0 ||
      (r = arg_string (req, "key", false, &keyname)) < 0)
    return r;
  /* Plain I/O only when asked for: a "key" misspelt must not turn
   * encryption off for the range.
   */
  if (!json_object_object_get_ex (req, "key", &v)) {
    ic_error ("map: 'key' is required: a key's name, or null or \"none\" "
              "for plain I/O");
    return -EINVAL;
  }
  exp = ic_graph_find_export (g, name);
  if (!exp) {
    ic_error ("map: no export named '%s'", IC_SHOWN (name));
    return -ENOENT;
  }
  if (keyname && strcmp (keyname, "none") != 0) {
    key = arg_key (g, req, "key");
    if (!key)
      return -errno;
    if (key_is_removing (key)) {
      ic_error ("map: key %s is being removed", key->name);
      return -EBUSY;
    }
  }
  if (json_object_object_get_ex (req, "dun_base", &v)) {
    /* A number up to 2^64-1, or a string up to 2^256-1. */
    if (json_object_is_type (v, json_type_int) ||
        json_object_is_type (v, json_type_double)) {
      if ((r = json_to_u64 ("map: 'dun_base'", v, &dun_base[0])) < 0)
        return r;
    }
    else if (!json_object_is_type (v, json_type_string)) {
      ic_error ("map: 'dun_base': expected a number or a string");
      return -EINVAL;
    }
    else if ((r = ic_parse_dun ("map: 'dun_base'", json_object_get_string (v),
                                dun_base)) < 0)
      return r;
    if (!key) {
      ic_error ("map: 'dun_base' needs a key");
      return -EINVAL;
    }
  }
  /* The new map waits for the requests on the old one, which may be slow
   * or hung: not under command_lock, so that other commands (a fault
   * clear that would unhang them) go on.  The key must outlive the wait
   * all the same: counted as used by a map from here on, a key-remove
   * meanwhile waits for it, and keeps it if the map takes it.
   */
  if (key)
    __atomic_add_fetch (&key->refs, 1, __ATOMIC_ACQ_REL);
  pthread_mutex_unlock (&command_lock);
  r = ic_export_map_range (exp, offset, length, key, dun_base);
  pthread_mutex_lock (&command_lock);
  if (key)
    __atomic_sub_fetch (&key->refs, 1, __ATOMIC_ACQ_REL);
  return r;
}

static struct ic_device *
lookup_device (void *opaque, const char *name)
{
  return ic_graph_find_device (opaque, name);
}

static struct ic_device *
stacked_arg (struct ic_graph *g, struct json_object *req)
{
  struct ic_device *dev = arg_device (g, req, "device", true);

  if (dev && !ic_device_to_stacked (dev)) {
    ic_error ("%s: %s is a leaf, not a stacked device", cmd_name (req),
              dev->name);
    errno = EINVAL;
    return NULL;
  }
  return dev;
}

/* table-load device table [options] */
static int
cmd_table_load (struct ic_graph *g, struct json_object *req,
                struct json_object *reply)
{
  struct ic_device *dev = stacked_arg (g, req);
  const char *text;
  const char *opts;
  unsigned int options = 0;
  int r;

  if (!dev)
    return -errno;
  if ((r = arg_string (req, "table", true, &text)) < 0 ||
      (r = arg_string (req, "options", false, &opts)) < 0)
    return r;
  if (opts && *opts) {
    if (strcmp (opts, "per_child_fallback") != 0) {
      ic_error ("table-load: unknown option '%s'; expected "
                "per_child_fallback", IC_SHOWN (opts));
      return -EINVAL;
    }
    options |= IC_TABLE_PER_CHILD_FALLBACK;
  }
  /* Waits while a resume of the device waits for its requests: not under
   * command_lock (devices live as long as the graph).
   */
  pthread_mutex_unlock (&command_lock);
  r = ic_stacked_load (dev, text, options, NULL, 1, lookup_device, g);
  pthread_mutex_lock (&command_lock);
  return r;
}

/* table-resume device: waits for the requests on the live table, which
 * may be slow or hung; not under command_lock.
 */
static int
cmd_table_resume (struct ic_graph *g, struct json_object *req,
                  struct json_object *reply)
{
  struct ic_device *dev = stacked_arg (g, req);
  int r;

  if (!dev)
    return -errno;
  pthread_mutex_unlock (&command_lock);
  r = ic_stacked_resume (dev);
  pthread_mutex_lock (&command_lock);
  return r;
}

/* table-clear device: waits while a resume of the device waits. */
static int
cmd_table_clear (struct ic_graph *g, struct json_object *req,
                 struct json_object *reply)
{
  struct ic_device *dev = stacked_arg (g, req);
  int r;

  if (!dev)
    return -errno;
  pthread_mutex_unlock (&command_lock);
  r = ic_stacked_clear (dev);
  pthread_mutex_lock (&command_lock);
  return r;
}

static void
add_table (struct json_object *reply, const char *field,
           struct ic_device *dev, bool inactive)
{
  size_t len = ic_stacked_table_text (dev, inactive, NULL, 0) + 1;
  char *text = malloc (len);

  if (!text)
    abort ();
  ic_stacked_table_text (dev, inactive, text, len);
  add_str (reply, field, text);
  free (text);
}

static int
cmd_table_show (struct ic_graph *g, struct json_object *req,
                struct json_object *reply)
{
  struct ic_device *dev = stacked_arg (g, req);

  if (!dev)
    return -errno;
  add_table (reply, "live", dev, false);
  add_table (reply, "inactive", dev, true);
  return 0;
}

/* engine-reset engine: waits for the engine's requests to drain. */
static int
cmd_engine_reset (struct ic_graph *g, struct json_object *req,
                  struct json_object *reply)
{
  struct ic_engine *engine;
  const char *name;
  unsigned int failed;
  int r;

  if ((r = arg_string (req, "engine", true, &name)) < 0)
    return r;
  engine = ic_graph_find_engine (g, name);
  if (!engine) {
    ic_error ("engine-reset: no engine named '%s'", IC_SHOWN (name));
    return -ENOENT;
  }
  /* Engines live as long as the graph: no need for the lock. */
  pthread_mutex_unlock (&command_lock);
  failed = ic_engine_reset (engine);
  pthread_mutex_lock (&command_lock);
  add_u64 (reply, "failed_keyslots", failed);
  if (failed) {
    ic_error ("engine-reset: %s: %u keyslot(s) could not be reprogrammed",
              name, failed);
    return -EIO;
  }
  return 0;
}

/* The longest delay a fault may add to each program or request. */
#define FAULT_MAX_DELAY_US 10000000

/* arg_size with an upper bound, refused beyond it. */
static int
arg_size_max (struct json_object *req, const char *field, uint64_t max,
              uint64_t *out, bool *given)
{
  int r = arg_size (req, field, false, out, given);

  if (r == 0 && *given && *out > max) {
    ic_error ("%s: '%s': at most %" PRIu64 ", got %" PRIu64, cmd_name (req),
              field, max, *out);
    return -EINVAL;
  }
  return r;
}

/* Refuse @field, if given, in a fault command on @name, saying @why. */
static int
fault_refuse (struct json_object *req, const char *field, const char *name,
              const char *why)
{
  struct json_object *v;

  if (!json_object_object_get_ex (req, field, &v))
    return 0;
  ic_error ("fault: %s: '%s' %s", name, field, why);
  return -EINVAL;
}

/* fault engine [program_fail errno program_fail_prob program_delay_us]
 * [clear]: every argument is checked before the faults change.
 */
static int
fault_engine (struct ic_engine *engine, struct json_object *req,
              const char *name, bool clear)
{
  struct ic_engine_faults f;
  struct json_object *v;
  const char *errname;
  uint64_t fail;
  uint64_t delay;
  double prob = 0;
  bool fail_given;
  bool delay_given;
  bool prob_given;
  int err = 0;
  int r;

  if ((r = fault_refuse (req, "io_error", name, "is for leaves; this is an "
                         "engine")) < 0 ||
      (r = fault_refuse (req, "io_delay_us", name, "is for leaves; this is "
                         "an engine")) < 0 ||
      (r = fault_refuse (req, "count", name, "is for a leaf's io_error; "
                         "an engine takes program_fail")) < 0 ||
      (r = arg_size_max (req, "program_fail", UINT32_MAX, &fail,
                         &fail_given)) < 0 ||
      (r = arg_size_max (req, "program_delay_us", FAULT_MAX_DELAY_US, &delay,
                         &delay_given)) < 0 ||
      (r = arg_string (req, "errno", false, &errname)) < 0)
    return r;
  prob_given = json_object_object_get_ex (req, "program_fail_prob", &v);
  if (prob_given) {
    prob = json_object_get_double (v);
    if (!(json_object_is_type (v, json_type_double) ||
          json_object_is_type (v, json_type_int)) ||
        !(prob >= 0 && prob <= 1)) {
      ic_error ("fault: 'program_fail_prob': expected a number from 0 to 1");
      return -EINVAL;
    }
  }
  if (errname) {
    err = ic_errno_from_name (errname);
    if (err <= 0) {
      ic_error ("fault: unknown errno '%.32s' (e.g. EIO, EINVAL, ENOMEM)",
                errname);
      return -EINVAL;
    }
  }
  if (!clear && !fail_given && !delay_given && !prob_given && !errname) {
    ic_error ("fault: %s: expected program_fail, program_fail_prob, "
              "program_delay_us, errno or clear", name);
    return -EINVAL;
  }

  /* All good: clear, then set what was given. */
  ic_engine_get_faults (engine, &f);
  if (clear)
    memset (&f, 0, sizeof f);
  if (fail_given)
    f.program_fail_count = fail;
  if (delay_given)
    f.program_delay_us = delay;
  if (prob_given)
    f.program_fail_prob = prob;
  if (errname)
    f.program_errno = err;
  ic_engine_set_faults (engine, &f);
  return 0;
}

/* fault leaf [io_error [count]] [io_delay_us] [clear]: every argument is
 * checked before the faults change.
 */
static int
fault_leaf (struct ic_leaf *leaf, struct json_object *req, const char *name,
            bool clear)
{
  unsigned int kinds = 0;
  const char *io;
  uint64_t delay;
  uint64_t n;
  int64_t count = -1;
  bool delay_given;
  bool count_given;
  int r;

  if ((r = fault_refuse (req, "program_fail", name, "is for engines; this "
                         "is a leaf")) < 0 ||
      (r = fault_refuse (req, "program_fail_prob", name, "is for engines; "
                         "this is a leaf")) < 0 ||
      (r = fault_refuse (req, "program_delay_us", name, "is for engines; "
                         "this is a leaf")) < 0 ||
      (r = fault_refuse (req, "errno", name, "is for engines; a leaf fails "
                         "with EIO")) < 0 ||
      (r = arg_string (req, "io_error", false, &io)) < 0 ||
      (r = arg_size_max (req, "io_delay_us", FAULT_MAX_DELAY_US, &delay,
                         &delay_given)) < 0 ||
      (r = arg_size_max (req, "count", INT64_MAX, &n, &count_given)) < 0)
    return r;
  if (io && strcmp (io, "read") == 0)
    kinds = IC_LEAF_FAULT_READ;
  else if (io && strcmp (io, "write") == 0)
    kinds = IC_LEAF_FAULT_WRITE;
  else if (io && strcmp (io, "all") == 0)
    kinds = IC_LEAF_FAULT_READ | IC_LEAF_FAULT_WRITE;
  else if (io) {
    ic_error ("fault: 'io_error': expected read, write or all");
    return -EINVAL;
  }
  if (count_given && !io) {
    ic_error ("fault: %s: 'count' goes with io_error", name);
    return -EINVAL;
  }
  if (!io && !delay_given && !clear) {
    ic_error ("fault: %s: expected io_error, io_delay_us or clear", name);
    return -EINVAL;
  }
  if (count_given)
    count = n;

  /* All good: clear, then set what was given. */
  if (clear) {
    ic_leaf_set_io_delay (leaf, 0);
    ic_leaf_set_io_faults (leaf, 0, -1);
  }
  if (delay_given)
    ic_leaf_set_io_delay (leaf, delay);
  if (io)
    ic_leaf_set_io_faults (leaf, kinds, count);
  return 0;
}

/* fault target [program_fail errno program_fail_prob program_delay_us |
 *               io_error count io_delay_us] [clear]
 *
 * A refused fault command changes nothing.
 */
static int
cmd_fault (struct ic_graph *g, struct json_object *req,
           struct json_object *reply)
{
  struct ic_engine *engine;
  struct ic_device *dev;
  const char *name;
  bool clear = false;
  int r;

  if ((r = arg_string (req, "target", true, &name)) < 0 ||
      (r = arg_bool (req, "clear", &clear)) < 0)
    return r;
  engine = ic_graph_find_engine (g, name);
  if (engine)
    return fault_engine (engine, req, name, clear);
  dev = ic_graph_find_device (g, name);
  if (dev && ic_device_to_leaf (dev))
    return fault_leaf (ic_device_to_leaf (dev), req, name, clear);
  if (dev)
    ic_error ("fault: %s is a stacked device; faults are for engines and "
              "leaves", name);
  else
    ic_error ("fault: no engine or leaf named '%s'", IC_SHOWN (name));
  return dev ? -EINVAL : -ENOENT;
}

/* After the wait: -EIO if a leg is failed (its copy failed, or a write,
 * or it had before), so that a script that waits does not take the
 * mirror for one whose legs are all in sync.
 */
static int
check_resynced (struct ic_device *dev)
{
  size_t n;
  struct ic_leg_status *legs = ic_stacked_mirror_status_all (dev, &n);
  size_t i;
  int r = 0;

  if (!legs)
    return -ENOMEM;
  for (i = 0; i < n; i++)
    if (legs[i].state == IC_LEG_FAILED) {
      ic_error ("wait-resync: %s: leg %s %" PRIu64 " is failed, not in "
                "sync; only a reload that lists it again resynchronises it "
                "(see status)", dev->name, legs[i].device,
                legs[i].offset >> 9);
      r = -EIO;
      break;
    }
  free (legs);
  return r;
}

/* wait-resync device [timeout_ms] */
static int
cmd_wait_resync (struct ic_graph *g, struct json_object *req,
                 struct json_object *reply)
{
  struct ic_device *dev = stacked_arg (g, req);
  uint64_t timeout = 60000;
  uint64_t left;
  int r;

  if (!dev)
    return -errno;
  if ((r = arg_size (req, "timeout_ms", false, &timeout, NULL)) < 0)
    return r;
  left = timeout;
  /* In slices, so that a server that stops does not wait for us. */
  pthread_mutex_unlock (&command_lock);
  do {
    unsigned int slice = left < WAIT_SLICE_MS ? left : WAIT_SLICE_MS;

    r = ic_stacked_wait_resync (dev, slice);
    left -= slice;
  } while (r == -ETIMEDOUT && left > 0 && !canceled ());
  pthread_mutex_lock (&command_lock);
  if (r < 0 && canceled ()) {
    ic_error ("wait-resync: %s: the server is stopping", dev->name);
    return -ECANCELED;
  }
  if (r < 0) {
    ic_error ("wait-resync: %s: still resynchronising after %" PRIu64 " ms",
              dev->name, timeout);
    return r;
  }
  return check_resynced (dev);
}

static const char *const f_none[] = { NULL };
static const char *const f_status[] = { "device", NULL };
static const char *const f_stats[] = { "reset", NULL };
static const char *const f_key_add[] = { "name", "mode", "data_unit_size",
                                         "dun_bytes", "key", "type",
                                         "engine", NULL };
static const char *const f_key_import[] = { "engine", "device", "key",
                                            "capacity", NULL };
static const char *const f_key_generate[] = { "engine", "device",
                                              "capacity", NULL };
static const char *const f_key_prepare[] = { "engine", "device", "lt_key",
                                             "capacity", NULL };
static const char *const f_key_derive[] = { "name", "engine", "device",
                                            NULL };
static const char *const f_name[] = { "name", NULL };
static const char *const f_evict[] = { "key", "device", NULL };
static const char *const f_map[] = { "export", "offset", "length", "key",
                                     "dun_base", NULL };
static const char *const f_table_load[] = { "device", "table", "options",
                                            NULL };
static const char *const f_device[] = { "device", NULL };
static const char *const f_engine[] = { "engine", NULL };
static const char *const f_fault[] = { "target", "program_fail", "errno",
                                       "program_fail_prob",
                                       "program_delay_us", "io_error",
                                       "io_delay_us", "count", "clear",
                                       NULL };
static const char *const f_wait[] = { "device", "timeout_ms", NULL };

static const struct command commands[] = {
  { "ping", false, f_none, cmd_ping },
  { "status", false, f_status, cmd_status },
  { "stats", false, f_stats, cmd_stats },
  { "key-add", true, f_key_add, cmd_key_add },
  { "key-remove", true, f_name, cmd_key_remove },
  { "key-list", false, f_none, cmd_key_list },
  { "key-import", true, f_key_import, cmd_key_import },
  { "key-generate", true, f_key_generate, cmd_key_generate },
  { "key-prepare", true, f_key_prepare, cmd_key_prepare },
  { "key-derive-secret", true, f_key_derive, cmd_key_derive_secret },
  { "evict", true, f_evict, cmd_evict },
  { "map", true, f_map, cmd_map },
  { "table-load", true, f_table_load, cmd_table_load },
  { "table-resume", true, f_device, cmd_table_resume },
  { "table-clear", true, f_device, cmd_table_clear },
  { "table-show", false, f_device, cmd_table_show },
  { "engine-reset", true, f_engine, cmd_engine_reset },
  { "fault", false, f_fault, cmd_fault },
  { "wait-resync", true, f_wait, cmd_wait_resync },
};

static const struct command *
find_command (const char *name)
{
  size_t i;

  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

bool
ic_protocol_is_slow (struct json_object *req)
{
  const struct command *c = find_command (cmd_name (req));

  return c && c->slow;
}

/* Commands that change nothing and read only what I/O threads read too
 * (devices, engines and exports live as long as the graph; tables,
 * leaves and counters are read through their own locks or atomics, as
 * they already are while a slow command has dropped command_lock): they
 * take no lock, so that a liveness check or a look at the state answers
 * while another command waits for the hardware (an evict behind a
 * keyslot being programmed).
 */
static bool
is_lockless (const struct command *c)
{
  return c->fn == cmd_ping || c->fn == cmd_status || c->fn == cmd_stats;
}

/* Run @req; if !@wait and another command holds command_lock, NULL
 * with nothing done.
 */
static struct json_object *
execute (struct ic_graph *g, struct json_object *req, bool wait)
{
  const struct command *c = find_command (cmd_name (req));
  bool lockless = is_lockless (c);
  struct json_object *reply;
  bool captured;
  int r;

  if (!lockless && !wait && pthread_mutex_trylock (&command_lock) != 0)
    return NULL;
  if (!lockless && wait)
    pthread_mutex_lock (&command_lock);
  captured = ic_error_capture (true);
  ic_clear_error ();
  reply = json_object_new_object ();
  if (!reply)
    abort ();
  json_object_object_add (reply, "ok", json_object_new_boolean (true));
  r = check_fields (c, req);
  if (r == 0)
    r = c->fn (g, req, reply);
  if (!lockless)
    pthread_mutex_unlock (&command_lock);
  wipe_field (req, "key");
  if (r < 0) {
    const char *msg = ic_last_error ();
    char fallback[128];

    if (!*msg) {
      snprintf (fallback, sizeof fallback, "%s: %s", c->name,
                ic_strerror (-r));
      msg = fallback;
    }
    json_object_object_add (reply, "ok", json_object_new_boolean (false));
    add_str (reply, "error", msg);
    add_str (reply, "errno", ic_errno_name (-r));
  }
  ic_error_capture (captured);
  return reply;
}

struct json_object *
ic_protocol_execute (struct ic_graph *g, struct json_object *req)
{
  return execute (g, req, true);
}

struct json_object *
ic_protocol_try_execute (struct ic_graph *g, struct json_object *req)
{
  return execute (g, req, false);
}

char *
ic_protocol_handle_line (struct ic_graph *g, const char *line, size_t len)
{
  struct json_object *reply;
  struct json_object *req = ic_protocol_parse (line, len, &reply);
  char *out;

  if (req) {
    reply = ic_protocol_execute (g, req);
    json_object_put (req);
  }
  out = strdup (json_object_to_json_string_ext (reply,
                                                JSON_C_TO_STRING_PLAIN));
  json_object_put (reply);
  if (!out)
    abort ();
  return out;
}

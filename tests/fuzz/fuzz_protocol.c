/* tests/fuzz/fuzz_protocol.c - the control protocol handler
 * (server/protocol.h, ic_protocol_handle_line).
 *
 * For each input a fresh graph is built from CONFIG below (ic_conf_parse,
 * dry run: small memory leaves, made-up keys), so that whatever the
 * commands add or change (keys, maps, tables, faults) stays bounded and no
 * input sees another's state.  The input is up to MAX_LINES request lines
 * separated by '\n', handled in order.
 *
 * Commands that sleep are kept short, not refused: a request whose
 * timeout_ms, program_delay_us or io_delay_us is larger than the harness
 * allows is re-serialised with the value lowered (wait-resync gets a
 * timeout_ms if it has none), so that an input never waits long.
 *
 * Checks: every reply is one JSON object with "ok"; a failure has a
 * non-empty "error" and an "errno" name; the successful replies of
 * key-add, key-list, status and stats never hold the bytes of a key of
 * the graph in hex (keys of 32 bytes or more, see holds_key()).
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "conf.h"
#include "fuzz.h"
#include "protocol.h"

#define MAX_INPUT (16 * 1024)
#define MAX_LINES 64
#define MAX_WAIT_MS 100
#define MAX_DELAY_US 10

static const char config[] =
  "key k1 mode=AES-256-XTS key=+k1.hex\n"
  "key k2 mode=Adiantum data-unit-size=512 dun-bytes=2 key=+k2.hex\n"
  "key k3 mode=AES-128-CBC-ESSIV dun-bytes=4 key=+k3.hex\n"
  "engine ufs keyslots=2 modes=AES-256-XTS:512,4096;Adiantum:512 "
  "max-dun-bytes=8\n"
  "engine emmc keyslots=1 modes=AES-256-XTS:4096;AES-128-CBC-ESSIV:4096 "
  "max-dun-bytes=4\n"
  "leaf d0 memory size=4M engine=ufs\n"
  "leaf d1 memory size=4M engine=emmc\n"
  "leaf d2 memory size=4M engine=ufs\n"
  "leaf d3 memory size=4M\n"
  "device top\n"
  "  0 4096 linear d0 0\n"
  "  4096 8192 striped 2 8 d1 0 d2 0\n"
  "end\n"
  "device m0 options=per_child_fallback\n"
  "  0 2048 mirror 2 d2 4096 d3 0\n"
  "end\n"
  "export vol0 device=top\n"
  "  map 0 1M key=k1\n"
  "  map 1M 512K key=k2 dun-base=7\n"
  "  map 2M 1M none\n"
  "end\n"
  "export vol1 device=m0 key=k3 dun-base=0xfff\n"
  "export raw device=d3\n"
  "end\n"
  "fallback keyslots=4\n";

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init_crypto ();
  return 0;
}

/* Lower @field of @req to at most @max (a number, or a string size).
 * Return: true if @req was changed.
 */
static bool
clamp (struct json_object *req, const char *field, int64_t max)
{
  struct json_object *v;

  if (!json_object_object_get_ex (req, field, &v))
    return false;
  if (json_object_is_type (v, json_type_int) &&
      json_object_get_int64 (v) >= 0 && json_object_get_int64 (v) <= max)
    return false;
  if (!json_object_is_type (v, json_type_int) &&
      !json_object_is_type (v, json_type_string))
    return false;               /* refused as it is */
  json_object_object_add (req, field, json_object_new_int64 (max));
  return true;
}

/* The line to hand over: @line, or a copy with waits shortened (to
 * free()), or NULL to use @line as it is.
 */
static char *
shorten_waits (const char *line, size_t len)
{
  struct json_object *reply;
  struct json_object *req = ic_protocol_parse (line, len, &reply);
  struct json_object *cmd;
  bool changed = false;
  char *out = NULL;

  if (!req) {
    json_object_put (reply);
    return NULL;
  }
  json_object_object_get_ex (req, "cmd", &cmd);
  if (strcmp (json_object_get_string (cmd), "wait-resync") == 0 &&
      !json_object_object_get_ex (req, "timeout_ms", NULL)) {
    json_object_object_add (req, "timeout_ms",
                            json_object_new_int64 (MAX_WAIT_MS));
    changed = true;
  }
  changed |= clamp (req, "timeout_ms", MAX_WAIT_MS);
  changed |= clamp (req, "program_delay_us", MAX_DELAY_US);
  changed |= clamp (req, "io_delay_us", MAX_DELAY_US);
  if (changed) {
    out = strdup (json_object_to_json_string_ext (req,
                                                  JSON_C_TO_STRING_PLAIN));
    FUZZ_CHECK (out, "out of memory");
  }
  json_object_put (req);
  return out;
}

static const char *
request_cmd (const char *line, size_t len, char *buf, size_t size)
{
  struct json_object *reply;
  struct json_object *req = ic_protocol_parse (line, len, &reply);
  struct json_object *cmd;

  buf[0] = '\0';
  if (req && json_object_object_get_ex (req, "cmd", &cmd))
    snprintf (buf, size, "%s", json_object_get_string (cmd));
  json_object_put (req);
  json_object_put (reply);
  return buf;
}

/* Does @text hold the bytes of a key of @g in hex (either case)?  Only
 * keys of 32 bytes or more: their 64 digits cannot be a name (at most 63
 * characters), the one thing of the request those replies repeat.
 */
static const char *
holds_key (struct ic_graph *g, const char *text)
{
  static const char digits[2][17] = { "0123456789abcdef",
                                      "0123456789ABCDEF" };
  char hex[2 * IC_CRYPTO_MAX_ANY_KEY_SIZE + 1];
  size_t i;
  size_t j;
  int c;

  for (i = 0; i < g->nkeys; i++) {
    const struct ic_crypto_key *key = g->keys[i];

    if (key->size < 32)
      continue;
    for (c = 0; c < 2; c++) {
      for (j = 0; j < key->size; j++) {
        hex[2 * j] = digits[c][key->bytes[j] >> 4];
        hex[2 * j + 1] = digits[c][key->bytes[j] & 15];
      }
      hex[2 * key->size] = '\0';
      if (strstr (text, hex))
        return key->name;
    }
  }
  return NULL;
}

static void
check_reply (struct ic_graph *g, const char *cmd, const char *text)
{
  struct json_object *reply = json_tokener_parse (text);
  struct json_object *v;
  const char *leaked;

  FUZZ_CHECK (reply && json_object_is_type (reply, json_type_object),
              "reply is not a JSON object: %s", text);
  FUZZ_CHECK (json_object_object_get_ex (reply, "ok", &v) &&
              json_object_is_type (v, json_type_boolean),
              "reply without \"ok\": %s", text);
  if (!json_object_get_boolean (v)) {
    FUZZ_CHECK (json_object_object_get_ex (reply, "error", &v) &&
                json_object_is_type (v, json_type_string) &&
                json_object_get_string_len (v) > 0,
                "failure without an error text: %s", text);
    FUZZ_CHECK (json_object_object_get_ex (reply, "errno", &v) &&
                json_object_is_type (v, json_type_string) &&
                json_object_get_string (v)[0] == 'E',
                "failure without an errno name: %s", text);
  }
  else if (strcmp (cmd, "key-add") == 0 || strcmp (cmd, "key-list") == 0 ||
           strcmp (cmd, "status") == 0 || strcmp (cmd, "stats") == 0) {
    leaked = holds_key (g, text);
    FUZZ_CHECK (!leaked, "%s: the reply holds the bytes of key %s: %s",
                cmd, leaked, text);
  }
  json_object_put (reply);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *text = (const char *) data;
  const char *end = text + size;
  struct ic_graph *g;
  const char *line;
  const char *eol;
  unsigned int n;

  if (size > MAX_INPUT)
    return -1;
  g = ic_conf_parse (config, sizeof config - 1, "fuzz.conf", NULL,
                     IC_CONF_DRY_RUN);
  FUZZ_CHECK (g, "the fixed config: %s", ic_last_error ());

  for (line = text, n = 0; line < end && n < MAX_LINES; line = eol + 1, n++) {
    size_t len;
    char cmd[64];
    char *shorter;
    char *reply;

    eol = memchr (line, '\n', end - line);
    if (!eol)
      eol = end;
    len = eol - line;
    request_cmd (line, len, cmd, sizeof cmd);
    shorter = shorten_waits (line, len);
    if (shorter)
      reply = ic_protocol_handle_line (g, shorter, strlen (shorter));
    else
      reply = ic_protocol_handle_line (g, line, len);
    if (fuzz_verbose ())
      fprintf (stderr, "%.*s\n-> %s\n", (int) len, line, reply);
    check_reply (g, cmd, reply);
    free (reply);
    free (shorter);
  }

  ic_graph_free (g);
  return 0;
}

/* tests/fuzz/fuzz_params.c - the one-line parameter parser
 * (config/params.h).
 *
 * The input is text split at white space into words, each "key=value"
 * (a word without '=' is a key with an empty value), given one by one to
 * ic_params_set() the way nbdkit hands them over; then ic_params_build().
 * key= takes the hex text itself, as after nbdkit_read_password().
 * file= is left out (it would create the file); a memory leaf of size=
 * costs nothing until written, whatever its size.
 *
 * Checks: a refused parameter of the one-line form gets a message naming
 * it; a refused key= value is never echoed; build gives a graph of one
 * key, one engine, one leaf and one export mapped whole to the key, or
 * NULL with errno and a message.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "params.h"

#define MAX_INPUT 4096

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init_crypto ();
  return 0;
}

/* A value that is nothing but hex digits, 8 or more of them: it can only
 * be in a message if the message echoes it (numbers in messages are
 * shorter than the text they come from).
 */
static bool
looks_like_key (const char *v)
{
  size_t n = strlen (v);

  return n >= 8 && strspn (v, "0123456789abcdefABCDEF") == n;
}

static void
set_one (struct ic_params *p, char *word)
{
  char *eq = strchr (word, '=');
  const char *value = "";
  const char *msg;
  char want[80];
  int r;

  if (eq) {
    *eq = '\0';
    value = eq + 1;
  }
  if (strcmp (word, "file") == 0)
    return;
  ic_clear_error ();
  r = ic_params_set (p, word, value);
  msg = ic_last_error ();
  if (fuzz_verbose ())
    fprintf (stderr, "set %s: %d %s\n", word, r, msg);
  if (r == 0)
    return;
  FUZZ_CHECK (r < 0, "ic_params_set returned %d", r);
  if (r == -ENOMEM)
    return;
  FUZZ_CHECK (*msg, "%s=: refused (%d) without a message", word, r);
  if (ic_params_is_known (word)) {
    snprintf (want, sizeof want, "%s=", word);
    FUZZ_CHECK (strstr (msg, want), "%s=: the message does not name it: %s",
                word, msg);
  }
  if (strcmp (word, "key") == 0 && looks_like_key (value))
    FUZZ_CHECK (!strstr (msg, value), "key=: the message echoes the key: %s",
                msg);
}

static void
check_graph (struct ic_graph *g)
{
  struct ic_ctx_range *ranges;
  struct ic_export *exp;
  size_t n;
  int r;

  FUZZ_CHECK (g->nkeys == 1 && g->nengines == 1 && g->ndevices == 1 &&
              g->nexports == 1, "%zu keys, %zu engines, %zu devices, %zu "
              "exports", g->nkeys, g->nengines, g->ndevices, g->nexports);
  exp = g->exports[0];
  FUZZ_CHECK (exp->dev == g->devices[0] && exp->size == exp->dev->size,
              "the export is not its leaf");
  r = ic_export_get_map (exp, &ranges, &n);
  FUZZ_CHECK (r == 0, "get_map: %d", r);
  FUZZ_CHECK (n == 1 && ranges[0].start == 0 &&
              ranges[0].len == exp->size && ranges[0].key == g->keys[0],
              "the export is not mapped whole to its key (%zu ranges)", n);
  FUZZ_CHECK (exp->size % g->keys[0]->crypto_cfg.data_unit_size == 0,
              "size %llu is not a multiple of the data unit size",
              (unsigned long long) exp->size);
  free (ranges);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ic_params *p;
  struct ic_graph *g;
  char *text;
  char *save = NULL;
  char *word;

  if (size > MAX_INPUT)
    return -1;
  /* A NUL ends a word as white space does. */
  text = malloc (size + 1);
  FUZZ_CHECK (text, "out of memory");
  memcpy (text, data, size);
  text[size] = '\0';
  for (size_t i = 0; i < size; i++)
    if (text[i] == '\0')
      text[i] = ' ';

  p = ic_params_new ();
  FUZZ_CHECK (p, "ic_params_new");
  for (word = strtok_r (text, " \t\r\n\v\f", &save); word;
       word = strtok_r (NULL, " \t\r\n\v\f", &save))
    set_one (p, word);

  /* config= means a file: what the plugin does then is ic_conf_load(),
   * fuzzed by fuzz_conf.
   */
  if (!ic_params_config_file (p)) {
    ic_clear_error ();
    errno = 0;
    g = ic_params_build (p);
    if (fuzz_verbose ())
      fprintf (stderr, "build: %s %s\n", g ? "ok" : "error",
               g ? "" : ic_last_error ());
    if (g) {
      check_graph (g);
      ic_graph_free (g);
    }
    else {
      FUZZ_CHECK (errno > 0, "NULL without errno");
      FUZZ_CHECK (errno == ENOMEM || *ic_last_error (),
                  "refused without a message (errno %d)", errno);
    }
  }
  else
    (void) ic_params_config_conflict (p);
  ic_params_free (p);
  free (text);
  return 0;
}

/* tests/fuzz/fuzz_conf.c - the configuration file parser (config/conf.h).
 *
 * The input is the text of a configuration file, parsed with
 * IC_CONF_DRY_RUN (file and nbd leaves become memory leaves, key files are
 * not read: nothing on the file system is touched) as "fuzz.conf" in a
 * directory that does not exist.
 *
 * Checks: a failure sets errno and a message naming "fuzz.conf:LINE: "
 * (conf.h: every error names file:line); a graph has an export, every
 * export is as large as its device and its map passes the export's own
 * range checks; the table of every stacked device, as table-show prints
 * it, loads again into the device and prints the same.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "fuzz.h"
#include "table.h"

#define SOURCE "fuzz.conf"
#define MAX_INPUT (64 * 1024)

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init_crypto ();
  return 0;
}

static struct ic_device *
lookup (void *opaque, const char *name)
{
  return ic_graph_find_device (opaque, name);
}

static char *
table_text (struct ic_device *dev, bool inactive)
{
  size_t len = ic_stacked_table_text (dev, inactive, NULL, 0) + 1;
  char *text = malloc (len);

  FUZZ_CHECK (text, "out of memory");
  ic_stacked_table_text (dev, inactive, text, len);
  return text;
}

/* What table-show prints for @dev loads again as it is. */
static void
check_table (struct ic_graph *g, struct ic_device *dev)
{
  char *live = table_text (dev, false);
  char *again;
  int r;

  r = ic_stacked_load (dev, live, ic_stacked_options (dev), NULL, 1, lookup,
                       g);
  FUZZ_CHECK (r == 0, "%s: the table as shown does not load again: %s\n%s",
              dev->name, ic_last_error (), live);
  again = table_text (dev, true);
  FUZZ_CHECK (strcmp (live, again) == 0, "%s: shown differently:\n%s\n%s",
              dev->name, live, again);
  ic_stacked_clear (dev);
  free (again);
  free (live);
}

static void
check_graph (struct ic_graph *g)
{
  size_t i;
  size_t j;

  FUZZ_CHECK (g->nexports > 0, "a graph without exports");
  for (i = 0; i < g->nexports; i++) {
    struct ic_export *exp = g->exports[i];
    struct ic_ctx_range *ranges;
    size_t n;
    bool found = false;
    int r;

    for (j = 0; j < g->ndevices; j++)
      found |= g->devices[j] == exp->dev;
    FUZZ_CHECK (found, "export %s: device not in the graph", exp->name);
    FUZZ_CHECK (exp->size == exp->dev->size, "export %s: %llu bytes, its "
                "device %llu", exp->name, (unsigned long long) exp->size,
                (unsigned long long) exp->dev->size);
    r = ic_export_get_map (exp, &ranges, &n);
    FUZZ_CHECK (r == 0, "get_map: %d", r);
    r = ic_export_check_ranges (exp, "recheck", ranges, n);
    FUZZ_CHECK (r == 0, "export %s: its own map fails the checks: %s",
                exp->name, ic_last_error ());
    for (j = 0; j < n; j++)
      FUZZ_CHECK (ranges[j].key, "export %s: a plain range in the map",
                  exp->name);
    free (ranges);
  }
  for (i = 0; i < g->ndevices; i++)
    if (ic_device_to_stacked (g->devices[i]))
      check_table (g, g->devices[i]);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ic_graph *g;
  const char *msg;

  if (size > MAX_INPUT)
    return -1;
  ic_clear_error ();
  errno = 0;
  g = ic_conf_parse ((const char *) data, size, SOURCE,
                     "/nonexistent/inlinecrypt-fuzz", IC_CONF_DRY_RUN);
  if (!g) {
    msg = ic_last_error ();
    if (fuzz_verbose ())
      fprintf (stderr, "error: %s\n", msg);
    FUZZ_CHECK (errno > 0, "NULL without errno; message: %s", msg);
    /* An empty file has no line to name. */
    if (size == 0)
      FUZZ_CHECK (strncmp (msg, SOURCE ": no export is defined (the file is "
                           "empty)", strlen (SOURCE) + 42) == 0,
                  "the message of an empty file: %s", msg);
    else
      FUZZ_CHECK (strncmp (msg, SOURCE ":", strlen (SOURCE ":")) == 0 &&
                  isdigit ((unsigned char) msg[strlen (SOURCE ":")]),
                  "the message does not start with " SOURCE ":LINE: %s", msg);
    return 0;
  }
  check_graph (g);
  if (fuzz_verbose ())
    fprintf (stderr, "ok: %zu keys, %zu devices, %zu exports\n", g->nkeys,
             g->ndevices, g->nexports);
  ic_graph_free (g);
  return 0;
}

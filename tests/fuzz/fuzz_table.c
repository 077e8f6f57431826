/* tests/fuzz/fuzz_table.c - the dmsetup-style table parser
 * (stack/table.h, ic_stacked_load) and what a loaded table does.
 *
 * The devices a table may name, made once:
 *   m0    8 MiB memory leaf, engine e0 (2 keyslots, every mode)
 *   m1    8 MiB memory leaf, engine e1 (1 keyslot, AES-256-XTS/4096,
 *         4 DUN bytes)
 *   m2    4 MiB memory leaf, no engine
 *   LONG_NAME (63 characters) 1 MiB memory leaf, engine e0
 *   mid   4 MiB stacked device: 0 8192 striped 2 8 m0 8192 m1 8192
 *   fz    the stacked device under test, new for each input (naming it
 *         in its own table is a cycle)
 *
 * The input is up to MAX_TABLES tables separated by lines starting with
 * "---", loaded one after the other into fz.  A table may start with
 * lines of directives: "@per_child_fallback" (the table option),
 * "@clear" (drop the inactive table first), "@noresume" (load only).
 *
 * Checks: a refused table leaves the live table as it was and says why,
 * naming the device or the line; a loaded table, as table_text() shows
 * it, loads again and shows the same (what "table-show" prints can be fed
 * back); a resume succeeds and the live table is that text; single
 * sectors written through the device read back; a resync finishes.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "leaf.h"
#include "table.h"

#define MAX_INPUT (16 * 1024)
#define MAX_TABLES 4
#define SOURCE "fuzz.table"
#define LONG_NAME \
  "a-leaf-with-a-name-of-sixty-three-characters-for-table-text-LLL"

#define MiB (1024 * 1024)

static struct ic_device *m0;
static struct ic_device *m1;
static struct ic_device *m2;
static struct ic_device *longdev;
static struct ic_device *mid;
static struct ic_device *fz;    /* during an input */

static struct ic_device *
lookup (void *opaque, const char *name)
{
  struct ic_device *devs[] = { m0, m1, m2, longdev, mid, fz };
  size_t i;

  for (i = 0; i < sizeof devs / sizeof devs[0]; i++)
    if (devs[i] && strcmp (devs[i]->name, name) == 0)
      return devs[i];
  return NULL;
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  struct ic_engine_config cfg;
  struct ic_engine *e0;
  struct ic_engine *e1;
  int r;

  fuzz_init_crypto ();
  ic_engine_config_default (&cfg, "e0");
  cfg.num_slots = 2;
  e0 = ic_engine_new (&cfg);
  ic_engine_config_default (&cfg, "e1");
  cfg.num_slots = 1;
  memset (cfg.modes_supported, 0, sizeof cfg.modes_supported);
  cfg.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 4096;
  cfg.max_dun_bytes = 4;
  e1 = ic_engine_new (&cfg);
  FUZZ_CHECK (e0 && e1, "engines: %s", ic_last_error ());
  m0 = ic_leaf_memory_new ("m0", 8 * MiB, e0);
  m1 = ic_leaf_memory_new ("m1", 8 * MiB, e1);
  m2 = ic_leaf_memory_new ("m2", 4 * MiB, NULL);
  longdev = ic_leaf_memory_new (LONG_NAME, 1 * MiB, e0);
  mid = ic_stacked_new ("mid");
  FUZZ_CHECK (m0 && m1 && m2 && longdev && mid, "devices: %s",
              ic_last_error ());
  r = ic_stacked_load (mid, "0 8192 striped 2 8 m0 8192 m1 8192\n", 0,
                       NULL, 1, lookup, NULL);
  if (r == 0)
    r = ic_stacked_resume (mid);
  FUZZ_CHECK (r == 0, "mid: %s", ic_last_error ());
  /* The engines and devices live as long as the process. */
  return 0;
}

/* The live or inactive table of fz as text, to free(). */
static char *
table_text (bool inactive)
{
  size_t len = ic_stacked_table_text (fz, inactive, NULL, 0) + 1;
  char *text = malloc (len);

  FUZZ_CHECK (text, "out of memory");
  ic_stacked_table_text (fz, inactive, text, len);
  FUZZ_CHECK (strlen (text) == len - 1, "table_text: %zu bytes, said %zu",
              strlen (text), len - 1);
  return text;
}

/* Write a sector through fz and read it back. */
static void
sector_roundtrip (uint64_t sector, unsigned int seed)
{
  uint8_t out[512];
  uint8_t in[512];
  struct ic_bio bio = { .op = IC_OP_WRITE, .offset = sector * 512,
                        .len = 512, .buf = out };
  size_t i;
  int r;

  for (i = 0; i < sizeof out; i++)
    out[i] = seed + i * 7;
  r = ic_device_submit (fz, &bio);
  FUZZ_CHECK (r == 0, "write sector %llu: %s", (unsigned long long) sector,
              ic_last_error ());
  memset (in, 0xa5, sizeof in);
  bio = (struct ic_bio) { .op = IC_OP_READ, .offset = sector * 512,
                          .len = 512, .buf = in };
  r = ic_device_submit (fz, &bio);
  FUZZ_CHECK (r == 0, "read sector %llu: %s", (unsigned long long) sector,
              ic_last_error ());
  FUZZ_CHECK (memcmp (in, out, sizeof in) == 0, "sector %llu reads back "
              "other data", (unsigned long long) sector);
}

static void
load_one (char *table, unsigned int first_line, unsigned int n)
{
  unsigned int options = 0;
  bool resume = true;
  const char *source = n % 2 ? SOURCE : NULL;
  char *live_before;
  char *live_after;
  char *shown;
  char *again;
  const char *msg;
  int r;

  /* Directives. */
  while (*table == '@') {
    char *eol = strchr (table, '\n');

    if (eol)
      *eol = '\0';
    if (strcmp (table, "@per_child_fallback") == 0)
      options |= IC_TABLE_PER_CHILD_FALLBACK;
    else if (strcmp (table, "@clear") == 0)
      FUZZ_CHECK (ic_stacked_clear (fz) == 0, "clear");
    else if (strcmp (table, "@noresume") == 0)
      resume = false;
    first_line++;
    table = eol ? eol + 1 : table + strlen (table);
  }

  live_before = table_text (false);
  ic_clear_error ();
  r = ic_stacked_load (fz, table, options, source, first_line, lookup,
                       NULL);
  msg = ic_last_error ();
  if (fuzz_verbose ())
    fprintf (stderr, "load: %d %s\n", r, msg);
  if (r < 0) {
    FUZZ_CHECK (*msg || r == -ENOMEM, "refused (%d) without a message", r);
    FUZZ_CHECK (strncmp (msg, "fz", 2) == 0 ||
                (source && strncmp (msg, SOURCE ":", strlen (SOURCE) + 1)
                 == 0), "the message names neither fz nor the line: %s",
                msg);
    live_after = table_text (false);
    FUZZ_CHECK (strcmp (live_before, live_after) == 0, "a refused table "
                "changed the live table");
    free (live_after);
    free (live_before);
    return;
  }
  free (live_before);

  /* What table-show prints must load again, as it is. */
  shown = table_text (true);
  FUZZ_CHECK (*shown, "a loaded table shows as nothing");
  r = ic_stacked_load (fz, shown, options, NULL, 1, lookup, NULL);
  FUZZ_CHECK (r == 0, "the table as shown does not load again: %s\n%s",
              ic_last_error (), shown);
  again = table_text (true);
  FUZZ_CHECK (strcmp (shown, again) == 0, "shown differently:\n%s\n%s",
              shown, again);
  free (again);
  if (!resume) {
    free (shown);
    return;
  }

  r = ic_stacked_resume (fz);
  FUZZ_CHECK (r == 0, "resume: %s", ic_last_error ());
  live_after = table_text (false);
  FUZZ_CHECK (strcmp (shown, live_after) == 0, "the live table is not the "
              "one resumed");
  free (live_after);
  free (shown);
  (void) ic_stacked_options (fz);
  (void) ic_device_depends_on (fz, m0);

  /* A resync (legs new to the table) must finish; after it nothing runs
   * behind our back.
   */
  r = ic_stacked_wait_resync (fz, 10000);
  FUZZ_CHECK (r == 0, "the resync does not finish");

  /* A sector never straddles a target or a stripe chunk: it maps to one
   * place on each child, so what is written reads back (even where a
   * table maps two targets or legs onto the same place).
   */
  sector_roundtrip (0, n);
  sector_roundtrip (fz->size / 512 - 1, n + 1);
  sector_roundtrip (fz->size / 1024, n + 2);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text;
  char *table;
  char *next;
  unsigned int line = 1;
  unsigned int n;

  if (size > MAX_INPUT || memchr (data, '\0', size))
    return -1;
  text = malloc (size + 1);
  FUZZ_CHECK (text, "out of memory");
  memcpy (text, data, size);
  text[size] = '\0';
  fz = ic_stacked_new ("fz");
  FUZZ_CHECK (fz, "ic_stacked_new");

  for (table = text, n = 0; table && n < MAX_TABLES; table = next, n++) {
    unsigned int lines = 0;
    char *p;

    /* Cut at the next line that starts with "---". */
    next = NULL;
    for (p = table; *p; p++)
      if ((p == table || p[-1] == '\n') && strncmp (p, "---", 3) == 0) {
        next = strchr (p, '\n');
        *p = '\0';
        if (next)
          next++;
        break;
      }
    for (p = table; *p; p++)
      lines += *p == '\n';
    load_one (table, line, n);
    line += lines + 1;
  }

  ic_device_destroy (fz);
  fz = NULL;
  free (text);
  return 0;
}

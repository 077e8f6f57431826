/* config/params.c - see params.h. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fallback.h"
#include "leaf.h"
#include "params.h"
#include "parse.h"
#include "secmem.h"

const char ic_params_help[] =
  "size=SIZE                memory backend of SIZE bytes (K, M, G, T)\n"
  "file=PATH                file backend (created; extended to size=)\n"
  "mode=MODE                AES-256-XTS (default), AES-128-CBC-ESSIV,\n"
  "                         Adiantum or SM4-XTS\n"
  "key=+FILE|-|-FD|HEX      the key in hex, read like a password; HEX on\n"
  "                         the command line shows in ps and nbdkit -v\n"
  "data-unit-size=N         512..65536, a power of two (default 4096)\n"
  "dun-bytes=N              DUN bytes of the key (default 8)\n"
  "dun-base=N               DUN of the first data unit (default 0)\n"
  "keyslots=N               keyslots of the engine, 1..1024 (default 32)\n"
  "engine-modes=LIST        what the engine takes, e.g.\n"
  "                         AES-256-XTS:512,4096;SM4-XTS:4096 or none\n"
  "                         (default: every mode and data unit size)\n"
  "max-dun-bytes=N          DUN bytes the engine takes (default 8)\n"
  "program-us=N             cost of programming a keyslot (default 0)\n"
  "fallback-keyslots=N      keyslots of the software fallback (100)\n"
  "fallback=BOOL            use the fallback when the engine cannot\n"
  "                         (default true; false: such I/O fails)\n"
  "readonly=BOOL            open file= read-only (file= only)\n"
  "control=SOCKET           serve the control protocol on SOCKET\n"
  "                         (with config=: instead of the file's socket)\n"
  "config=FILE              read a configuration file instead";

struct ic_params {
  uint64_t size;
  char *file;
  bool readonly;
  enum ic_crypto_mode_num mode;
  uint8_t *key_bytes;           /* locked memory, IC_CRYPTO_MAX_ANY_KEY_SIZE */
  int key_len;                  /* -1: no key= */
  unsigned int data_unit_size;
  unsigned int dun_bytes;
  uint64_t dun_base[IC_CRYPTO_DUN_ARRAY_SIZE];
  bool dun_bytes_set;
  unsigned int keyslots;
  unsigned int engine_modes[IC_ENCRYPTION_MODE_MAX];
  unsigned int max_dun_bytes;
  unsigned int program_us;
  unsigned int fallback_keyslots;
  bool fallback;
  char *control;
  char *config;
  const char *first_set;        /* first parameter but config, control */
  unsigned int given;           /* bit i: known[i] was taken */
};

static const char *const known[] = {
  "size", "file", "readonly", "mode", "key", "data-unit-size", "dun-bytes",
  "dun-base", "keyslots", "engine-modes", "max-dun-bytes", "program-us",
  "fallback-keyslots", "fallback", "control", "config", NULL,
};
_Static_assert (sizeof known / sizeof known[0] - 1 <= 32,
                "struct ic_params.given has one bit per parameter");

/* The index of @key in known[], or -1. */
static int
known_index (const char *key)
{
  int i;

  for (i = 0; known[i]; i++)
    if (strcmp (key, known[i]) == 0)
      return i;
  return -1;
}

bool
ic_params_is_known (const char *key)
{
  return known_index (key) >= 0;
}

int
ic_params_check_once (const struct ic_params *p, const char *key)
{
  int i = known_index (key);

  if (i >= 0 && (p->given & (1u << i))) {
    ic_error ("%s=: given twice; each parameter is taken once", key);
    return -EINVAL;
  }
  return 0;
}

struct ic_params *
ic_params_new (void)
{
  struct ic_params *p = calloc (1, sizeof *p);
  int m;

  if (!p)
    return NULL;
  p->key_bytes = ic_secure_alloc (IC_CRYPTO_MAX_ANY_KEY_SIZE);
  if (!p->key_bytes) {
    free (p);
    return NULL;
  }
  p->key_len = -1;
  p->mode = IC_ENCRYPTION_MODE_AES_256_XTS;
  p->data_unit_size = 4096;
  p->dun_bytes = 8;
  p->keyslots = 32;
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    p->engine_modes[m] = IC_ALL_DATA_UNIT_SIZES;
  p->max_dun_bytes = 8;
  p->fallback_keyslots = IC_FALLBACK_DEFAULT_KEYSLOTS;
  p->fallback = true;
  return p;
}

void
ic_params_free (struct ic_params *p)
{
  if (!p)
    return;
  ic_secure_free (p->key_bytes, IC_CRYPTO_MAX_ANY_KEY_SIZE);
  free (p->file);
  free (p->control);
  free (p->config);
  free (p);
}

const char *
ic_params_config_file (const struct ic_params *p)
{
  return p->config;
}

const char *
ic_params_control (const struct ic_params *p)
{
  return p->control;
}

const char *
ic_params_config_conflict (const struct ic_params *p)
{
  return p->config ? p->first_set : NULL;
}

static int
set_string (char **field, const char *value)
{
  char *copy = strdup (value);

  if (!copy)
    return -ENOMEM;
  free (*field);
  *field = copy;
  return 0;
}

static int
set_uint (const char *what, const char *value, uint64_t min, uint64_t max,
          unsigned int *field)
{
  uint64_t v;
  int r = ic_parse_uint (what, value, min, max, &v);

  if (r == 0)
    *field = v;
  return r;
}

/* Take @value for the known parameter @key. */
static int
set_one (struct ic_params *p, const char *what, const char *key,
         const char *value)
{
  int r;

  if (strcmp (key, "size") == 0)
    return ic_parse_size (what, value, &p->size);
  if (strcmp (key, "file") == 0)
    return set_string (&p->file, value);
  if (strcmp (key, "readonly") == 0)
    return ic_parse_bool (what, value, &p->readonly);
  if (strcmp (key, "mode") == 0)
    return ic_parse_mode (what, value, &p->mode);
  if (strcmp (key, "key") == 0) {
    r = ic_hex_decode (what, value, p->key_bytes, IC_CRYPTO_MAX_RAW_KEY_SIZE);
    if (r < 0)
      return r;
    p->key_len = r;
    return 0;
  }
  if (strcmp (key, "data-unit-size") == 0)
    return ic_parse_data_unit_size (what, value, &p->data_unit_size);
  if (strcmp (key, "dun-bytes") == 0) {
    p->dun_bytes_set = true;
    return set_uint (what, value, 1, IC_CRYPTO_MAX_IV_SIZE, &p->dun_bytes);
  }
  if (strcmp (key, "dun-base") == 0)
    return ic_parse_dun (what, value, p->dun_base);
  if (strcmp (key, "keyslots") == 0)
    return set_uint (what, value, 1, IC_ENGINE_MAX_SLOTS, &p->keyslots);
  if (strcmp (key, "engine-modes") == 0)
    return ic_parse_modes (what, value, p->engine_modes);
  if (strcmp (key, "max-dun-bytes") == 0)
    return set_uint (what, value, 1, IC_CRYPTO_MAX_IV_SIZE,
                     &p->max_dun_bytes);
  if (strcmp (key, "program-us") == 0)
    return set_uint (what, value, 0, 10000000, &p->program_us);
  if (strcmp (key, "fallback-keyslots") == 0)
    return set_uint (what, value, 1, IC_FALLBACK_MAX_KEYSLOTS,
                     &p->fallback_keyslots);
  if (strcmp (key, "fallback") == 0)
    return ic_parse_bool (what, value, &p->fallback);
  if (strcmp (key, "control") == 0)
    return set_string (&p->control, value);
  return set_string (&p->config, value);
}

int
ic_params_set (struct ic_params *p, const char *key, const char *value)
{
  int i = known_index (key);
  char what[64];
  int r;

  if (i < 0) {
    ic_error ("unknown parameter '%s'; see nbdkit inlinecrypt --help",
              IC_SHOWN (key));
    return -EINVAL;
  }
  /* A second size= or key= would silently replace the first. */
  r = ic_params_check_once (p, key);
  if (r < 0)
    return r;
  if (!p->first_set && strcmp (key, "config") != 0 &&
      strcmp (key, "control") != 0)
    p->first_set = known[i];
  snprintf (what, sizeof what, "%s=", key);
  r = set_one (p, what, key, value);
  /* Marked once taken: a refused value leaves nothing to repeat. */
  if (r == 0)
    p->given |= 1u << i;
  return r;
}

/* The DUN of the last data unit of an export of @size bytes must fit in
 * dun-bytes= too (and not wrap past 2^256).
 */
static int
check_last_dun (struct ic_params *p, uint64_t size)
{
  uint64_t last[IC_CRYPTO_DUN_ARRAY_SIZE];

  if (size == 0)
    return 0;
  memcpy (last, p->dun_base, sizeof last);
  ic_crypt_dun_increment (last, size / p->data_unit_size - 1);
  if (ic_crypt_dun_exceeds (last, p->dun_bytes) ||
      ic_crypt_dun_cmp (last, p->dun_base) < 0) {
    ic_error ("dun-bytes=%u: too small for this export: its last data "
              "unit has DUN dun-base + %" PRIu64 "; raise dun-bytes",
              p->dun_bytes, size / p->data_unit_size - 1);
    return -EINVAL;
  }
  return 0;
}

/* Checks that need several parameters, each message naming one. */
static int
check (struct ic_params *p)
{
  const struct ic_crypto_mode *mode = &ic_crypto_modes[p->mode];

  if (p->size == 0 && !p->file) {
    ic_error ("size=: give size= for a memory export or file= for a file "
              "export");
    return -EINVAL;
  }
  /* Ignored by a memory export: refused, as the file refuses it. */
  if (!p->file && (p->given & (1u << known_index ("readonly")))) {
    ic_error ("readonly=: applies to file= exports only, not to a memory "
              "export (nbdkit -r serves any export read-only)");
    return -EINVAL;
  }
  if (p->key_len < 0) {
    ic_error ("key=: a key is required (key=+FILE reads it from FILE); "
              "%s takes %u bytes, %u hex digits", mode->name, mode->keysize,
              2 * mode->keysize);
    return -EINVAL;
  }
  if ((unsigned int) p->key_len != mode->keysize) {
    ic_error ("key=: %s needs a key of exactly %u bytes (%u hex digits), "
              "got %d bytes", mode->name, mode->keysize, 2 * mode->keysize,
              p->key_len);
    return -EINVAL;
  }
  if ((p->mode == IC_ENCRYPTION_MODE_AES_256_XTS ||
       p->mode == IC_ENCRYPTION_MODE_SM4_XTS) &&
      memcmp (p->key_bytes, p->key_bytes + p->key_len / 2,
              p->key_len / 2) == 0) {
    /* The Linux fallback would refuse it at the first I/O (xts_verify_key
     * with CRYPTO_TFM_REQ_FORBID_WEAK_KEYS); say so now.
     */
    ic_error ("key=: the two halves of an %s key must differ", mode->name);
    return -EINVAL;
  }
  if (p->dun_bytes > mode->ivsize) {
    ic_error ("dun-bytes=%u: %s takes 1 to %u DUN bytes", p->dun_bytes,
              mode->name, mode->ivsize);
    return -EINVAL;
  }
  if (p->size % p->data_unit_size) {
    ic_error ("size=%" PRIu64 ": not a multiple of data-unit-size=%u",
              p->size, p->data_unit_size);
    return -EINVAL;
  }
  if (ic_crypt_dun_exceeds (p->dun_base, p->dun_bytes)) {
    ic_error ("dun-base=: does not fit in dun-bytes=%u", p->dun_bytes);
    return -EINVAL;
  }
  /* Without size= a file= export's size is known once the file is open:
   * ic_params_build() checks again then.
   */
  return check_last_dun (p, p->size);
}

struct ic_graph *
ic_params_build (struct ic_params *p)
{
  struct ic_engine_config ecfg;
  struct ic_crypto_key *key;
  struct ic_engine *engine;
  struct ic_device *leaf;
  struct ic_export *exp;
  struct ic_graph *g;
  struct ic_ctx_range range = { 0 };
  bool captured;
  int r;

  r = check (p);
  if (r < 0)
    goto out_errno;
  g = ic_graph_new ();
  if (!g)
    return NULL;
  g->fallback_keyslots = p->fallback_keyslots;
  g->fallback_enabled = p->fallback;
  if (p->control && !(g->control_path = strdup (p->control)))
    goto out_nomem;

  key = ic_crypto_key_new ("key", p->key_bytes, p->key_len,
                           IC_CRYPTO_KEY_TYPE_RAW, p->mode, p->dun_bytes,
                           p->data_unit_size);
  if (!key || ic_graph_add_key (g, key) < 0)
    goto out_free;

  ic_engine_config_default (&ecfg, "engine");
  ecfg.num_slots = p->keyslots;
  memcpy (ecfg.modes_supported, p->engine_modes, sizeof p->engine_modes);
  ecfg.max_dun_bytes = p->max_dun_bytes;
  ecfg.program_us = p->program_us;
  engine = ic_engine_new (&ecfg);
  if (!engine || ic_graph_add_engine (g, engine) < 0)
    goto out_free;

  /* The leaf's reason is kept, and reported once, naming the parameter. */
  captured = ic_error_capture (true);
  if (p->file)
    leaf = ic_leaf_file_new ("disk", p->file, p->size, p->readonly, engine);
  else
    leaf = ic_leaf_memory_new ("disk", p->size, engine);
  ic_error_capture (captured);
  if (!leaf) {
    char msg[IC_ERROR_MAX];

    /* The leaf's message names the leaf ("disk"); name the parameter. */
    r = errno;
    snprintf (msg, sizeof msg, "%s", ic_last_error ());
    ic_error ("%s: %s", p->file ? "file=" : "size=", msg);
    errno = r;
    goto out_free;
  }
  leaf->fallback_enabled = p->fallback;
  if (ic_graph_add_device (g, leaf) < 0)
    goto out_free;
  if (leaf->size % p->data_unit_size) {
    ic_error ("file=%s: its size %" PRIu64 " is not a multiple of "
              "data-unit-size=%u", p->file, leaf->size, p->data_unit_size);
    errno = EINVAL;
    goto out_free;
  }
  r = check_last_dun (p, leaf->size);
  if (r < 0) {
    errno = -r;
    goto out_free;
  }

  exp = ic_export_new ("", leaf);
  if (!exp)
    goto out_free;
  snprintf (exp->description, sizeof exp->description,
            "inlinecrypt %s/%u, %s", ic_crypto_mode_name (p->mode),
            p->data_unit_size, p->file ? p->file : "memory");
  if (ic_graph_add_export (g, exp) < 0)
    goto out_free;
  range.len = leaf->size;
  range.key = key;
  memcpy (range.dun_base, p->dun_base, sizeof range.dun_base);
  r = ic_export_set_map (exp, &range, 1);
  if (r < 0) {
    errno = -r;
    goto out_free;
  }
  return g;

out_nomem:
  ic_error ("out of memory");
  errno = ENOMEM;
out_free:
  r = errno;
  ic_graph_discard (g);
  errno = r;
  return NULL;
out_errno:
  errno = -r;
  return NULL;
}

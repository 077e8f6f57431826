/* tests/test_params.c - unit tests of config/params.c, the one-line nbdkit
 * parameters (ic_params_set(), ic_params_build(),
 * ic_params_config_conflict()), and of config/parse.c, the value parsers
 * they share with the configuration file and the control protocol.
 *
 * Every parameter is accepted once and its effect looked for in the built
 * graph.  Every refusal has a case with its errno and its message, which
 * names the parameter and never shows key bytes: those of
 * tests/test-refusals.sh, at unit level, and those only reachable here.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "error.h"
#include "fallback.h"
#include "leaf.h"
#include "params.h"
#include "parse.h"
#include "secmem.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))
#define KiB 1024
#define MiB (1024 * 1024)

/* Key material: four distinct 16-byte blocks (as in test_conf.c). */
#define HEX_A "00112233445566778899aabbccddeeff"
#define HEX_B "0123456789abcdeffedcba9876543210"
#define HEX_C "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
#define HEX_D "f0e1d2c3b4a5968778695a4b3c2d1e0f"
#define KEY64 HEX_A HEX_B HEX_C HEX_D
#define KEY32 HEX_A HEX_B
#define KEY16 HEX_C
#define WEAK64 HEX_A HEX_B HEX_A HEX_B
#define WEAK32 HEX_A HEX_A

/* 2^256 - 1 and 2^256. */
#define DUN_MAX_DEC "1157920892373161954235709850086879078532699846656405" \
  "64039457584007913129639935"
#define DUN_2_256_DEC "1157920892373161954235709850086879078532699846656405" \
  "64039457584007913129639936"
#define F16 "ffffffffffffffff"

#define DIR_TEMPLATE "/tmp/test_params.XXXXXX"
static char dir[sizeof DIR_TEMPLATE];
#define PATH_SIZE 256

static char *
path_in_dir (const char *name)
{
  static char path[PATH_SIZE];

  snprintf (path, sizeof path, "%s/%s", dir, name);
  return path;
}

static void
write_file (const char *name, const char *content, mode_t mode)
{
  size_t len = strlen (content);
  int fd;

  fd = open (path_in_dir (name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
             0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (write (fd, content, len), (ssize_t) len);
  ck_assert_int_eq (fchmod (fd, mode), 0);
  close (fd);
}

static void
setup (void)
{
  ck_assert_int_eq (ic_crypto_init (), 0);
  snprintf (dir, sizeof dir, "%s", DIR_TEMPLATE);
  ck_assert_ptr_nonnull (mkdtemp (dir));
  write_file ("3m.img", "", 0600);
  ck_assert_int_eq (truncate (path_in_dir ("3m.img"), 3 * MiB), 0);
  write_file ("6k.img", "", 0600);
  ck_assert_int_eq (truncate (path_in_dir ("6k.img"), 6 * KiB), 0);
  write_file ("empty.img", "", 0600);
  ic_clear_error ();
}

static int
remove_one (const char *path, const struct stat *st, int flag,
            struct FTW *ftw)
{
  return remove (path);
}

static void
teardown (void)
{
  nftw (dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
assert_error_is (const char *expect)
{
  ck_assert_msg (strcmp (ic_last_error (), expect) == 0,
                 "last error \"%s\", expected \"%s\"", ic_last_error (),
                 expect);
}

static void
assert_error_starts (const char *start)
{
  ck_assert_msg (strncmp (ic_last_error (), start, strlen (start)) == 0,
                 "last error \"%s\" does not start with \"%s\"",
                 ic_last_error (), start);
}

static void
assert_no_key_bytes (void)
{
  static const char *const parts[] = {
    "00112233", "01234567", "a0a1a2a3", "f0e1d2c3",
  };
  size_t i;

  for (i = 0; i < ARRAY_SIZE (parts); i++)
    ck_assert_msg (strcasestr (ic_last_error (), parts[i]) == NULL,
                   "message \"%s\" shows key bytes", ic_last_error ());
}

/* Set "key=value" parameters in order; a value starting with '@' is a
 * path in the test's directory.
 *
 * Return: the index of the first refused one, or -1.
 */
static int
set_all (struct ic_params *p, const char *const *params)
{
  int i;

  for (i = 0; params[i]; i++) {
    char key[64];
    const char *eq = strchr (params[i], '=');
    const char *value;

    ck_assert_ptr_nonnull (eq);
    snprintf (key, sizeof key, "%.*s", (int) (eq - params[i]), params[i]);
    value = eq + 1;
    if (value[0] == '@')
      value = path_in_dir (value + 1);
    if (ic_params_set (p, key, value) < 0)
      return i;
  }
  return -1;
}

static struct ic_graph *
build (const char *const *params)
{
  struct ic_params *p = ic_params_new ();
  struct ic_graph *g;

  ck_assert_ptr_nonnull (p);
  ck_assert_msg (set_all (p, params) == -1, "%s", ic_last_error ());
  g = ic_params_build (p);
  ck_assert_msg (g != NULL, "build: %s", ic_last_error ());
  ic_params_free (p);
  return g;
}

static void
assert_key_bytes (const struct ic_crypto_key *key, const char *hex)
{
  uint8_t bytes[IC_CRYPTO_MAX_RAW_KEY_SIZE];
  int n = ic_hex_decode ("test", hex, bytes, sizeof bytes);

  ck_assert_int_gt (n, 0);
  ck_assert_uint_eq (key->size, n);
  ck_assert_mem_eq (key->bytes, bytes, n);
}

/* The one range of the export "". */
static struct ic_ctx_range
the_range (struct ic_graph *g)
{
  struct ic_ctx_range *ranges;
  struct ic_ctx_range r;
  size_t n;

  ck_assert_int_eq (ic_export_get_map (g->exports[0], &ranges, &n), 0);
  ck_assert_uint_eq (n, 1);
  r = ranges[0];
  free (ranges);
  return r;
}

static const struct ic_engine_config *
engine_cfg (struct ic_graph *g)
{
  ck_assert_uint_eq (g->nengines, 1);
  return ic_engine_config (g->engines[0]);
}

/* ---- ic_params_is_known, help ---- */

static const char *const known_params[] = {
  "size", "file", "readonly", "mode", "key", "data-unit-size", "dun-bytes",
  "dun-base", "keyslots", "engine-modes", "max-dun-bytes", "program-us",
  "fallback-keyslots", "fallback", "control", "config",
};

START_TEST (test_known)
{
  const char *name = known_params[_i];
  char help[64];

  ck_assert (ic_params_is_known (name));
  snprintf (help, sizeof help, "\n%s=", name);
  ck_assert_msg (strstr (ic_params_help, help) ||
                 strncmp (ic_params_help, help + 1, strlen (help + 1)) == 0,
                 "%s= is not in the help", name);
}
END_TEST

START_TEST (test_unknown)
{
  struct ic_params *p = ic_params_new ();

  ck_assert (!ic_params_is_known ("colour"));
  ck_assert (!ic_params_is_known ("Size"));
  ck_assert (!ic_params_is_known (""));
  ck_assert_int_eq (ic_params_set (p, "colour", "red"), -EINVAL);
  assert_error_is ("unknown parameter 'colour'; see nbdkit inlinecrypt "
                   "--help");
  /* An unknown parameter is no conflict with config=. */
  ck_assert_int_eq (ic_params_set (p, "config", "x.conf"), 0);
  ck_assert_ptr_null (ic_params_config_conflict (p));
  ic_params_free (p);
  ic_params_free (NULL);
}
END_TEST

/* ---- each parameter and its effect ---- */

START_TEST (test_defaults)
{
  static const char *const params[] = { "size=1M", "key=" KEY64, NULL };
  struct ic_graph *g = build (params);
  const struct ic_engine_config *c;
  struct ic_crypto_key *k;
  struct ic_device *dev;
  struct ic_ctx_range r;
  int m;

  ck_assert_uint_eq (g->nkeys, 1);
  k = g->keys[0];
  ck_assert_str_eq (k->name, "key");
  ck_assert_int_eq (k->crypto_cfg.crypto_mode, IC_ENCRYPTION_MODE_AES_256_XTS);
  ck_assert_uint_eq (k->crypto_cfg.data_unit_size, 4096);
  ck_assert_uint_eq (k->crypto_cfg.dun_bytes, 8);
  ck_assert_int_eq (k->crypto_cfg.key_type, IC_CRYPTO_KEY_TYPE_RAW);
  assert_key_bytes (k, KEY64);

  c = engine_cfg (g);
  ck_assert_str_eq (c->name, "engine");
  ck_assert_uint_eq (c->num_slots, 32);
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (c->modes_supported[m], IC_ALL_DATA_UNIT_SIZES);
  ck_assert_uint_eq (c->max_dun_bytes, 8);
  ck_assert_uint_eq (c->program_us, 0);

  ck_assert_uint_eq (g->ndevices, 1);
  dev = g->devices[0];
  ck_assert_str_eq (dev->name, "disk");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "memory");
  ck_assert_uint_eq (dev->size, 1 * MiB);
  ck_assert_ptr_eq (dev->profile, ic_engine_profile (g->engines[0]));
  ck_assert (dev->fallback_enabled);

  ck_assert_uint_eq (g->nexports, 1);
  ck_assert_str_eq (g->exports[0]->name, "");
  ck_assert_str_eq (g->exports[0]->description,
                    "inlinecrypt AES-256-XTS/4096, memory");
  ck_assert_ptr_eq (g->exports[0]->dev, dev);
  r = the_range (g);
  ck_assert_uint_eq (r.start, 0);
  ck_assert_uint_eq (r.len, 1 * MiB);
  ck_assert_ptr_eq (r.key, k);
  for (m = 0; m < IC_CRYPTO_DUN_ARRAY_SIZE; m++)
    ck_assert_uint_eq (r.dun_base[m], 0);

  ck_assert_uint_eq (g->fallback_keyslots, IC_FALLBACK_DEFAULT_KEYSLOTS);
  ck_assert (g->fallback_enabled);
  ck_assert_ptr_null (g->control_path);
  ic_graph_free (g);
}
END_TEST

START_TEST (test_size)
{
  static const char *const params[] = { "size=2G", "key=" KEY64, NULL };
  static const char *const sectors[] = { "size=4096s", "key=" KEY64, NULL };
  struct ic_graph *g = build (params);

  ck_assert_uint_eq (g->devices[0]->size, 2048ull * MiB);
  ck_assert_uint_eq (the_range (g).len, 2048ull * MiB);
  ic_graph_free (g);
  g = build (sectors);
  ck_assert_uint_eq (g->devices[0]->size, 2 * MiB);
  ic_graph_free (g);
}
END_TEST

START_TEST (test_file)
{
  static const char *const sized[] = {
    "file=@new.img", "size=2M", "key=" KEY64, NULL,
  };
  static const char *const unsized[] = {
    "file=@3m.img", "key=" KEY64, NULL,
  };
  static const char *const ro[] = {
    "file=@3m.img", "readonly=true", "key=" KEY64, NULL,
  };
  struct ic_graph *g;
  struct stat st;
  char desc[PATH_SIZE * 2];

  g = build (sized);
  ck_assert_str_eq (ic_device_to_leaf (g->devices[0])->ops->type, "file");
  ck_assert_uint_eq (g->devices[0]->size, 2 * MiB);
  ck_assert_int_eq (stat (path_in_dir ("new.img"), &st), 0);
  ck_assert_int_eq (st.st_size, 2 * MiB);
  snprintf (desc, sizeof desc, "inlinecrypt AES-256-XTS/4096, %s",
            path_in_dir ("new.img"));
  ck_assert_str_eq (g->exports[0]->description, desc);
  ic_graph_free (g);

  /* Without size=: the file's size. */
  g = build (unsized);
  ck_assert_uint_eq (g->devices[0]->size, 3 * MiB);
  ck_assert_uint_eq (the_range (g).len, 3 * MiB);
  ic_graph_free (g);

  g = build (ro);
  ck_assert_uint_eq (g->devices[0]->size, 3 * MiB);
  ic_graph_free (g);
}
END_TEST

struct mode_tv {
  const char *mode;
  const char *key;
  enum ic_crypto_mode_num num;
  const char *desc;
};

static const struct mode_tv mode_tvs[] = {
  { "mode=AES-256-XTS", "key=" KEY64, IC_ENCRYPTION_MODE_AES_256_XTS,
    "inlinecrypt AES-256-XTS/4096, memory" },
  { "mode=aes-128-cbc-essiv", "key=" KEY16,
    IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV,
    "inlinecrypt AES-128-CBC-ESSIV/4096, memory" },
  { "mode=Adiantum", "key=" KEY32, IC_ENCRYPTION_MODE_ADIANTUM,
    "inlinecrypt Adiantum/4096, memory" },
  { "mode=SM4-XTS", "key=" KEY32, IC_ENCRYPTION_MODE_SM4_XTS,
    "inlinecrypt SM4-XTS/4096, memory" },
};

START_TEST (test_mode)
{
  const struct mode_tv *tv = &mode_tvs[_i];
  const char *params[] = { "size=1M", tv->key, tv->mode, NULL };
  struct ic_graph *g = build (params);

  ck_assert_int_eq (g->keys[0]->crypto_cfg.crypto_mode, tv->num);
  assert_key_bytes (g->keys[0], tv->key + 4);
  ck_assert_str_eq (g->exports[0]->description, tv->desc);
  ic_graph_free (g);
}
END_TEST

START_TEST (test_data_unit_size)
{
  static const char *const params[] = {
    "size=1M", "key=" KEY64, "data-unit-size=512", NULL,
  };
  static const char *const k64[] = {
    "size=1M", "key=" KEY64, "data-unit-size=64K", NULL,
  };
  struct ic_graph *g = build (params);

  ck_assert_uint_eq (g->keys[0]->crypto_cfg.data_unit_size, 512);
  ck_assert_str_eq (g->exports[0]->description,
                    "inlinecrypt AES-256-XTS/512, memory");
  ic_graph_free (g);
  g = build (k64);
  ck_assert_uint_eq (g->keys[0]->crypto_cfg.data_unit_size, 65536);
  ic_graph_free (g);
}
END_TEST

START_TEST (test_dun)
{
  static const char *const bytes[] = {
    "size=1M", "key=" KEY64, "dun-bytes=4", NULL,
  };
  static const char *const hex[] = {
    "size=1M", "key=" KEY64, "dun-base=0x10", NULL,
  };
  static const char *const big[] = {
    "size=1M", "key=" KEY64, "dun-bytes=9", "dun-base=18446744073709551616",
    NULL,
  };
  /* The largest DUN base that still fits a 1M export in 2 bytes. */
  static const char *const edge[] = {
    "size=1M", "key=" KEY64, "dun-bytes=2", "dun-base=65280", NULL,
  };
  struct ic_graph *g;
  struct ic_ctx_range r;

  g = build (bytes);
  ck_assert_uint_eq (g->keys[0]->crypto_cfg.dun_bytes, 4);
  ic_graph_free (g);

  g = build (hex);
  r = the_range (g);
  ck_assert_uint_eq (r.dun_base[0], 16);
  ck_assert_uint_eq (r.dun_base[1], 0);
  ic_graph_free (g);

  g = build (big);
  r = the_range (g);
  ck_assert_uint_eq (r.dun_base[0], 0);
  ck_assert_uint_eq (r.dun_base[1], 1);
  ck_assert_uint_eq (g->keys[0]->crypto_cfg.dun_bytes, 9);
  ic_graph_free (g);

  g = build (edge);
  ck_assert_uint_eq (the_range (g).dun_base[0], 65280);
  ic_graph_free (g);
}
END_TEST

START_TEST (test_engine)
{
  static const char *const params[] = {
    "size=1M", "key=" KEY64, "keyslots=5",
    "engine-modes=AES-256-XTS:512,4096;SM4-XTS", "max-dun-bytes=16",
    "program-us=10", NULL,
  };
  static const char *const none[] = {
    "size=1M", "key=" KEY64, "engine-modes=none", "keyslots=1024", NULL,
  };
  const struct ic_engine_config *c;
  struct ic_graph *g;
  int m;

  g = build (params);
  c = engine_cfg (g);
  ck_assert_uint_eq (c->num_slots, 5);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS],
                     512 | 4096);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_SM4_XTS],
                     IC_ALL_DATA_UNIT_SIZES);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_ADIANTUM], 0);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV],
                     0);
  ck_assert_uint_eq (c->max_dun_bytes, 16);
  ck_assert_uint_eq (c->program_us, 10);
  /* The leaf advertises what its engine takes. */
  ck_assert_uint_eq (g->devices[0]->profile->max_dun_bytes_supported, 16);
  ck_assert_uint_eq (g->devices[0]->profile->modes_supported
                     [IC_ENCRYPTION_MODE_AES_256_XTS], 512 | 4096);
  ic_graph_free (g);

  /* none: an engine that takes nothing (all I/O through the fallback). */
  g = build (none);
  c = engine_cfg (g);
  ck_assert_uint_eq (c->num_slots, 1024);
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (c->modes_supported[m], 0);
  ic_graph_free (g);
}
END_TEST

START_TEST (test_fallback)
{
  static const char *const params[] = {
    "size=1M", "key=" KEY64, "fallback-keyslots=9", "fallback=false", NULL,
  };
  static const char *const on[] = {
    "size=1M", "key=" KEY64, "fallback-keyslots=65536", "fallback=yes", NULL,
  };
  struct ic_graph *g;

  g = build (params);
  ck_assert_uint_eq (g->fallback_keyslots, 9);
  ck_assert (!g->fallback_enabled);
  ck_assert (!g->devices[0]->fallback_enabled);
  ic_graph_free (g);

  g = build (on);
  ck_assert_uint_eq (g->fallback_keyslots, 65536);
  ck_assert (g->fallback_enabled);
  ck_assert (g->devices[0]->fallback_enabled);
  ic_graph_free (g);
}
END_TEST

START_TEST (test_control)
{
  static const char *const params[] = {
    "control=run/ic.sock", "size=1M", "key=" KEY64, NULL,
  };
  struct ic_params *p = ic_params_new ();
  struct ic_graph *g;

  /* Taken as given: nbdkit's working directory decides. */
  g = build (params);
  ck_assert_str_eq (g->control_path, "run/ic.sock");
  ck_assert_uint_eq (g->control_mode, 0600);
  ic_graph_free (g);

  ck_assert_ptr_null (ic_params_control (p));
  ck_assert_int_eq (ic_params_set (p, "control", "/a.sock"), 0);
  ck_assert_int_eq (ic_params_set (p, "control", "/b.sock"), -EINVAL);
  assert_error_is ("control=: given twice; each parameter is taken once");
  ck_assert_str_eq (ic_params_control (p), "/a.sock");
  ic_params_free (p);
}
END_TEST

/* ---- a parameter given twice ---- */

/* A good value of every parameter, and another one. */
static const struct {
  const char *key;
  const char *first;
  const char *second;
} twice_tvs[] = {
  { "size", "1M", "2M" },
  { "file", "a.img", "b.img" },
  { "readonly", "true", "false" },
  { "mode", "Adiantum", "SM4-XTS" },
  { "key", KEY64, KEY32 },
  { "data-unit-size", "512", "4096" },
  { "dun-bytes", "4", "8" },
  { "dun-base", "1", "2" },
  { "keyslots", "2", "3" },
  { "engine-modes", "none", "AES-256-XTS" },
  { "max-dun-bytes", "4", "8" },
  { "program-us", "1", "2" },
  { "fallback-keyslots", "2", "3" },
  { "fallback", "false", "true" },
  { "control", "/a.sock", "/b.sock" },
  { "config", "a.conf", "b.conf" },
};

START_TEST (test_twice)
{
  struct ic_params *p = ic_params_new ();
  char expect[128];

  ck_assert_int_eq (ic_params_set (p, twice_tvs[_i].key,
                                   twice_tvs[_i].first), 0);
  /* Refused before it is parsed: the same value too. */
  ck_assert_int_eq (ic_params_set (p, twice_tvs[_i].key,
                                   twice_tvs[_i].second), -EINVAL);
  snprintf (expect, sizeof expect, "%s=: given twice; each parameter is "
            "taken once", twice_tvs[_i].key);
  assert_error_is (expect);
  ck_assert_int_eq (ic_params_set (p, twice_tvs[_i].key,
                                   twice_tvs[_i].first), -EINVAL);
  ck_assert_int_eq (ic_params_check_once (p, twice_tvs[_i].key), -EINVAL);
  assert_error_is (expect);
  assert_no_key_bytes ();
  ic_params_free (p);
}
END_TEST

START_TEST (test_twice_keeps_first)
{
  static const char *const params[] = {
    "size=1M", "key=" KEY64, "data-unit-size=512", NULL,
  };
  struct ic_params *p = ic_params_new ();
  struct ic_graph *g;
  size_t i;

  /* Every parameter of the one-line form is in the table above. */
  for (i = 0; i < ARRAY_SIZE (known_params); i++)
    ck_assert_str_eq (twice_tvs[i].key, known_params[i]);
  ck_assert_uint_eq (ARRAY_SIZE (twice_tvs), ARRAY_SIZE (known_params));

  /* Not taken yet: nothing to refuse. */
  ck_assert_int_eq (ic_params_check_once (p, "size"), 0);
  ck_assert_int_eq (ic_params_check_once (p, "colour"), 0);
  /* A refused value is not taken: nbdkit stops there anyway. */
  ck_assert_int_eq (ic_params_set (p, "size", "1Q"), -EINVAL);
  ck_assert_int_eq (ic_params_check_once (p, "size"), 0);
  ck_assert_int_eq (set_all (p, params), -1);
  ck_assert_int_eq (ic_params_set (p, "size", "2M"), -EINVAL);
  ck_assert_int_eq (ic_params_set (p, "key", KEY32), -EINVAL);
  ck_assert_int_eq (ic_params_set (p, "data-unit-size", "4096"), -EINVAL);
  g = ic_params_build (p);
  ck_assert_msg (g != NULL, "%s", ic_last_error ());
  ck_assert_uint_eq (g->devices[0]->size, 1 * MiB);
  assert_key_bytes (g->keys[0], KEY64);
  ck_assert_uint_eq (g->keys[0]->crypto_cfg.data_unit_size, 512);
  ic_graph_free (g);
  ic_params_free (p);
}
END_TEST

/* ---- config= and what it conflicts with ---- */

struct conflict_tv {
  const char *params[6];
  const char *conflict;         /* NULL: none */
};

static const struct conflict_tv conflict_tvs[] = {
  { { "config=ic.conf", NULL }, NULL },
  { { "config=ic.conf", "control=/s", NULL }, NULL },
  { { "control=/s", "config=ic.conf", NULL }, NULL },
  { { "config=ic.conf", "size=1M", NULL }, "size" },
  { { "size=1M", "config=ic.conf", NULL }, "size" },
  { { "control=/s", "mode=Adiantum", "config=ic.conf", "size=1M", NULL },
    "mode" },
  { { "config=ic.conf", "fallback-keyslots=3", "keyslots=2", NULL },
    "fallback-keyslots" },
  { { "config=ic.conf", "key=" KEY64, NULL }, "key" },
  /* Without config= nothing conflicts. */
  { { "size=1M", "mode=Adiantum", NULL }, NULL },
};

START_TEST (test_config_conflict)
{
  const struct conflict_tv *tv = &conflict_tvs[_i];
  struct ic_params *p = ic_params_new ();
  const char *c;
  size_t i;

  ck_assert_ptr_null (ic_params_config_file (p));
  ck_assert_int_eq (set_all (p, tv->params), -1);
  c = ic_params_config_conflict (p);
  if (tv->conflict)
    ck_assert_str_eq (c ? c : "(null)", tv->conflict);
  else
    ck_assert_ptr_null (c);
  for (i = 0; tv->params[i]; i++)
    if (strncmp (tv->params[i], "config=", 7) == 0)
      ck_assert_str_eq (ic_params_config_file (p), tv->params[i] + 7);
  ic_params_free (p);
}
END_TEST

/* ---- refusals ---- */

struct refusal {
  const char *params[8];
  bool at_set;                  /* refused by ic_params_set (the last one) */
  int err;
  const char *message;          /* the whole message; '@' is the dir */
};

static const struct refusal refusals[] = {
  /* As in tests/test-refusals.sh. */
  { { "size=1M", "key=" KEY64, "mode=AES-512" }, true, EINVAL,
    "mode=: unknown mode 'AES-512'; expected one of AES-256-XTS, "
    "AES-128-CBC-ESSIV, Adiantum, SM4-XTS" },
  { { "size=1M", "key=" KEY32 }, false, EINVAL,
    "key=: AES-256-XTS needs a key of exactly 64 bytes (128 hex digits), got "
    "32 bytes" },
  { { "size=1M", "mode=AES-128-CBC-ESSIV", "key=" KEY64 }, false, EINVAL,
    "key=: AES-128-CBC-ESSIV needs a key of exactly 16 bytes (32 hex "
    "digits), got 64 bytes" },
  { { "size=1M", "mode=Adiantum", "key=" KEY16 }, false, EINVAL,
    "key=: Adiantum needs a key of exactly 32 bytes (64 hex digits), got 16 "
    "bytes" },
  { { "size=1M", "mode=SM4-XTS", "key=" KEY16 }, false, EINVAL,
    "key=: SM4-XTS needs a key of exactly 32 bytes (64 hex digits), got 16 "
    "bytes" },
  { { "size=1M", "key=z" HEX_A HEX_B HEX_C "123456789abcdef" }, true, EINVAL,
    "key=: character 1 is not a hexadecimal digit" },
  { { "size=1M", "key=abc" }, true, EINVAL,
    "key=: odd number of hexadecimal digits (3)" },
  { { "size=1M" }, false, EINVAL,
    "key=: a key is required (key=+FILE reads it from FILE); AES-256-XTS "
    "takes 64 bytes, 128 hex digits" },
  { { "size=1M", "mode=Adiantum" }, false, EINVAL,
    "key=: a key is required (key=+FILE reads it from FILE); Adiantum takes "
    "32 bytes, 64 hex digits" },
  { { "size=1M", "key=" WEAK64 }, false, EINVAL,
    "key=: the two halves of an AES-256-XTS key must differ" },
  { { "size=1M", "mode=SM4-XTS", "key=" WEAK32 }, false, EINVAL,
    "key=: the two halves of an SM4-XTS key must differ" },
  { { "size=1M", "key=" KEY64, "data-unit-size=1000" }, true, EINVAL,
    "data-unit-size=: expected a data unit size, a power of two from 512 to "
    "65536, got '1000'" },
  { { "size=1M", "key=" KEY64, "data-unit-size=256" }, true, EINVAL,
    "data-unit-size=: expected a data unit size, a power of two from 512 to "
    "65536, got '256'" },
  { { "size=1M", "key=" KEY64, "data-unit-size=128K" }, true, EINVAL,
    "data-unit-size=: expected a data unit size, a power of two from 512 to "
    "65536, got '128K'" },
  { { "size=2M", "key=" KEY64, "dun-bytes=1" }, false, EINVAL,
    "dun-bytes=1: too small for this export: its last data unit has DUN "
    "dun-base + 511; raise dun-bytes" },
  { { "size=1M", "key=" KEY64, "dun-bytes=17" }, false, EINVAL,
    "dun-bytes=17: AES-256-XTS takes 1 to 16 DUN bytes" },
  { { "size=1M", "key=" KEY64, "dun-bytes=0" }, true, EINVAL,
    "dun-bytes=: expected a number from 1 to 32, got '0'" },
  { { "size=4K", "key=" KEY64, "dun-bytes=1", "dun-base=256" }, false,
    EINVAL, "dun-base=: does not fit in dun-bytes=1" },
  { { "size=1M", "key=" KEY64, "dun-base=x1" }, true, EINVAL,
    "dun-base=: expected a DUN (a decimal or 0x-hex number), got 'x1'" },
  { { "size=1Q" }, true, EINVAL,
    "size=: expected a size (a number with an optional K, M, G, T, P or s "
    "suffix), got '1Q'" },
  { { "size=1000", "key=" KEY64, "data-unit-size=512" }, false, EINVAL,
    "size=1000: not a multiple of data-unit-size=512" },
  { { "size=1M", "key=" KEY64, "keyslots=0" }, true, EINVAL,
    "keyslots=: expected a number from 1 to 1024, got '0'" },
  { { "size=1M", "key=" KEY64, "keyslots=1025" }, true, EINVAL,
    "keyslots=: expected a number from 1 to 1024, got '1025'" },
  { { "size=1M", "key=" KEY64, "engine-modes=AES:4096" }, true, EINVAL,
    "engine-modes=: unknown mode 'AES'; expected one of AES-256-XTS, "
    "AES-128-CBC-ESSIV, Adiantum, SM4-XTS" },
  { { "size=1M", "key=" KEY64, "engine-modes=AES-256-XTS:4000" }, true,
    EINVAL, "engine-modes=: expected a data unit size, a power of two from "
    "512 to 65536, got '4000'" },
  { { "size=1M", "key=" KEY64, "max-dun-bytes=33" }, true, EINVAL,
    "max-dun-bytes=: expected a number from 1 to 32, got '33'" },
  { { "size=1M", "key=" KEY64, "fallback-keyslots=0" }, true, EINVAL,
    "fallback-keyslots=: expected a number from 1 to 65536, got '0'" },
  { { "size=1M", "key=" KEY64, "colour=red" }, true, EINVAL,
    "unknown parameter 'colour'; see nbdkit inlinecrypt --help" },

  /* Only reachable here. */
  { { "key=" KEY64 }, false, EINVAL,
    "size=: give size= for a memory export or file= for a file export" },
  { { "size=0", "key=" KEY64 }, false, EINVAL,
    "size=: give size= for a memory export or file= for a file export" },
  { { "size=16777216T" }, true, EINVAL, "size=: size '16777216T' is too "
    "large" },
  { { "size=5P", "key=" KEY64 }, false, EINVAL,
    "size=: disk: memory size 5629499534213120 is too large (at most 4 PiB)" },
  { { "size=1M", "key=" }, true, EINVAL,
    "key=: expected hexadecimal digits, got nothing" },
  { { "size=1M", "key=" KEY64, "size=2M" }, true, EINVAL,
    "size=: given twice; each parameter is taken once" },
  { { "size=1M", "key=" KEY64, "key=" KEY32 }, true, EINVAL,
    "key=: given twice; each parameter is taken once" },
  { { "size=1M", "key=" KEY64 KEY16 }, true, E2BIG,
    "key=: 80 bytes is too long, at most 64 bytes are accepted" },
  { { "size=1M", "key=" KEY64, "readonly=maybe" }, true, EINVAL,
    "readonly=: expected true or false, got 'maybe'" },
  { { "size=1M", "key=" KEY64, "readonly=true" }, false, EINVAL,
    "readonly=: applies to file= exports only, not to a memory export "
    "(nbdkit -r serves any export read-only)" },
  { { "readonly=false", "size=1M", "key=" KEY64 }, false, EINVAL,
    "readonly=: applies to file= exports only, not to a memory export "
    "(nbdkit -r serves any export read-only)" },
  { { "size=1M", "key=" KEY64, "fallback=2" }, true, EINVAL,
    "fallback=: expected true or false, got '2'" },
  { { "size=1M", "key=" KEY64, "program-us=10000001" }, true, EINVAL,
    "program-us=: expected a number from 0 to 10000000, got '10000001'" },
  { { "size=1M", "key=" KEY64, "fallback-keyslots=65537" }, true, EINVAL,
    "fallback-keyslots=: expected a number from 1 to 65536, got '65537'" },
  { { "size=1M", "key=" KEY64, "max-dun-bytes=0" }, true, EINVAL,
    "max-dun-bytes=: expected a number from 1 to 32, got '0'" },
  { { "size=1M", "key=" KEY64, "dun-bytes=33" }, true, EINVAL,
    "dun-bytes=: expected a number from 1 to 32, got '33'" },
  { { "size=1M", "key=" KEY64, "engine-modes=" }, true, EINVAL,
    "engine-modes=: expected MODE[:SIZE,...][;MODE...], got ''" },
  { { "size=1M", "key=" KEY64, "engine-modes=SM4-XTS:" }, true, EINVAL,
    "engine-modes=: SM4-XTS: expected data unit sizes after ':'" },
  { { "size=1M", "key=" KEY64, "engine-modes=AES-256-XTS:4096," }, true,
    EINVAL, "engine-modes=: empty data unit size in 'AES-256-XTS:4096,' (a "
    "stray ','); expected MODE:SIZE[,SIZE...]" },
  { { "size=1M", "key=" KEY64, "engine-modes=AES-256-XTS:512;"
      "AES-256-XTS:4096" }, true, EINVAL, "engine-modes=: AES-256-XTS is "
    "given twice; give each mode once, with all its data unit sizes: "
    "AES-256-XTS:512,4096" },
  { { "size=1M", "key=" KEY64, "dun-base=" DUN_2_256_DEC }, true, EINVAL,
    "dun-base=: DUN '<78 characters, not shown: they may be key bytes>' "
    "does not fit in 256 bits" },
  { { "size=1M", "key=" KEY64, "dun-base=0x1" F16 F16 F16 F16 }, true,
    EINVAL, "dun-base=: expected a DUN (a decimal or 0x-hex number), got "
    "'<67 characters, not shown: they may be key bytes>'" },
  /* The last DUN must not wrap past 2^256 either. */
  { { "size=8K", "mode=Adiantum", "key=" KEY32, "dun-bytes=32",
      "dun-base=" DUN_MAX_DEC }, false, EINVAL,
    "dun-bytes=32: too small for this export: its last data unit has DUN "
    "dun-base + 1; raise dun-bytes" },
  { { "size=1M", "key=" KEY64, "dun-bytes=2", "dun-base=65281" }, false,
    EINVAL, "dun-bytes=2: too small for this export: its last data unit has "
    "DUN dun-base + 255; raise dun-bytes" },
  /* A file's size is only known once it is open. */
  { { "file=@6k.img", "key=" KEY64 }, false, EINVAL,
    "file=@/6k.img: its size 6144 is not a multiple of data-unit-size=4096" },
  { { "file=@3m.img", "key=" KEY64, "dun-bytes=1" }, false, EINVAL,
    "dun-bytes=1: too small for this export: its last data unit has DUN "
    "dun-base + 767; raise dun-bytes" },
  { { "file=@empty.img", "key=" KEY64 }, false, EINVAL,
    "file=: disk: @/empty.img is empty: give size= to create or extend it" },
  { { "file=@no-dir/x.img", "size=1M", "key=" KEY64 }, false, ENOENT,
    "file=: disk: open @/no-dir/x.img: No such file or directory" },
  { { "file=@missing.img", "readonly=true", "key=" KEY64 }, false, ENOENT,
    "file=: disk: open @/missing.img: No such file or directory" },
  { { "file=@3m.img", "readonly=true", "size=4M", "key=" KEY64 }, false,
    EINVAL, "file=: disk: @/3m.img has 3145728 bytes, fewer than "
    "size=4194304" },
};

/* @message with each '@' replaced by the test's directory. */
static void
expand (const char *message, char *buf, size_t size)
{
  size_t used = 0;

  for (; *message && used + 1 < size; message++)
    if (*message == '@')
      used += snprintf (buf + used, size - used, "%s", dir);
    else
      buf[used++] = *message;
  buf[used] = '\0';
}

START_TEST (test_refusal)
{
  const struct refusal *tc = &refusals[_i];
  struct ic_params *p = ic_params_new ();
  char expect[1024];
  int n;
  int i;

  expand (tc->message, expect, sizeof expect);
  for (n = 0; tc->params[n]; n++)
    ;
  ic_clear_error ();
  i = set_all (p, tc->params);
  if (tc->at_set) {
    ck_assert_int_eq (i, n - 1);
    /* Again, for the return value. */
    {
      const char *last = tc->params[n - 1];
      char key[64];

      snprintf (key, sizeof key, "%.*s", (int) (strchr (last, '=') - last),
                last);
      ck_assert_int_eq (ic_params_set (p, key, strchr (last, '=') + 1),
                        -tc->err);
    }
  }
  else {
    ck_assert_msg (i == -1, "case %d: parameter %d refused: %s", _i, i,
                   ic_last_error ());
    errno = 0;
    ck_assert_ptr_null (ic_params_build (p));
    ck_assert_msg (errno == tc->err, "case %d: errno %s, expected %s", _i,
                   ic_errno_name (errno), ic_errno_name (tc->err));
  }
  assert_error_is (expect);
  assert_no_key_bytes ();
  ic_params_free (p);
}
END_TEST

/* A refused file= export creates no file: the checks that need no file
 * come first.
 */
static const char *const refused_with_file[][6] = {
  { "file=@r.img", "size=1M", "key=" KEY32 },
  { "file=@r.img", "size=1M", "key=" WEAK64 },
  { "file=@r.img", "size=2M", "key=" KEY64, "dun-bytes=1" },
  { "file=@r.img", "size=1000", "key=" KEY64 },
  { "file=@r.img", "size=4K", "key=" KEY64, "dun-bytes=1", "dun-base=256" },
  { "file=@r.img", "size=1M", "key=" KEY64, "dun-bytes=17" },
  { "file=@r.img", "size=1M" },
};

START_TEST (test_refusal_creates_nothing)
{
  struct ic_params *p = ic_params_new ();

  ck_assert_int_eq (set_all (p, refused_with_file[_i]), -1);
  ck_assert_ptr_null (ic_params_build (p));
  ck_assert_int_eq (errno, EINVAL);
  ck_assert_int_ne (access (path_in_dir ("r.img"), F_OK), 0);
  ic_params_free (p);
}
END_TEST

/* ---- ic_parse_size ---- */

struct size_tv {
  const char *str;
  uint64_t value;
  const char *error;            /* NULL: accepted */
};

#define BAD_SIZE(s) \
  { s, 0, "x: expected a size (a number with an optional K, M, G, T, P or " \
      "s suffix), got '" s "'" }

static const struct size_tv size_tvs[] = {
  { "0", 0, NULL },
  { "512", 512, NULL },
  { "3b", 3, NULL },
  { "1s", 512, NULL },
  { "2S", 1024, NULL },
  { "1K", 1024, NULL },
  { "1k", 1024, NULL },
  { "1KB", 1024, NULL },
  { "1KiB", 1024, NULL },
  { "3M", 3 * MiB, NULL },
  { "3mib", 3 * MiB, NULL },
  { "2G", 2ull << 30, NULL },
  { "2GB", 2ull << 30, NULL },
  { "5T", 5ull << 40, NULL },
  { "5TiB", 5ull << 40, NULL },
  { "7P", 7ull << 50, NULL },
  { "7pb", 7ull << 50, NULL },
  { "16777215T", 16777215ull << 40, NULL },
  { "16383P", 16383ull << 50, NULL },
  { "18446744073709551615", UINT64_MAX, NULL },
  { "16777216T", 0, "x: size '16777216T' is too large" },
  { "16384P", 0, "x: size '16384P' is too large" },
  { "36028797018963968s", 0, "x: size '36028797018963968s' is too large" },
  { "18446744073709551616", 0,
    "x: size '18446744073709551616' is too large" },
  BAD_SIZE (""),
  BAD_SIZE ("K"),
  BAD_SIZE ("-1"),
  BAD_SIZE ("+1"),
  BAD_SIZE (" 1"),
  BAD_SIZE ("1 "),
  BAD_SIZE ("1.5G"),
  BAD_SIZE ("1Q"),
  BAD_SIZE ("1KK"),
  BAD_SIZE ("0x10"),
  BAD_SIZE ("1iB"),
};

START_TEST (test_parse_size)
{
  const struct size_tv *tv = &size_tvs[_i];
  uint64_t v = 12345;
  int r = ic_parse_size ("x", tv->str, &v);

  if (!tv->error) {
    ck_assert_msg (r == 0, "'%s': %s", tv->str, ic_last_error ());
    ck_assert_uint_eq (v, tv->value);
  }
  else {
    ck_assert_int_eq (r, -EINVAL);
    ck_assert_uint_eq (v, 12345);
    assert_error_is (tv->error);
  }
}
END_TEST

START_TEST (test_parse_size_null)
{
  uint64_t v;

  ck_assert_int_eq (ic_parse_size ("x", NULL, &v), -EINVAL);
  assert_error_is ("x: expected a size (a number with an optional K, M, G, "
                   "T, P or s suffix), got ''");
}
END_TEST

/* ---- ic_parse_uint ---- */

struct uint_tv {
  const char *str;
  uint64_t min;
  uint64_t max;
  uint64_t value;
  bool ok;
};

static const struct uint_tv uint_tvs[] = {
  { "0", 0, 10, 0, true },
  { "10", 0, 10, 10, true },
  { "11", 0, 10, 0, false },
  { "0", 1, 10, 0, false },
  { "1", 1, 1, 1, true },
  { "0x10", 0, 100, 16, true },
  { "0XfF", 0, 1000, 255, true },
  { "010", 0, 100, 10, true },  /* decimal, not octal */
  { "08", 0, 100, 8, true },
  { "0x", 0, 100, 0, false },
  { "0x-1", 0, 100, 0, false },
  { "0x0x5", 0, 100, 0, false },
  { "0x 5", 0, 100, 0, false },
  { "18446744073709551615", 0, UINT64_MAX, UINT64_MAX, true },
  { "18446744073709551616", 0, UINT64_MAX, 0, false },
  { "0x10000000000000000", 0, UINT64_MAX, 0, false },
  { "-1", 0, UINT64_MAX, 0, false },
  { "+1", 0, 10, 0, false },
  { " 1", 0, 10, 0, false },
  { "1 ", 0, 10, 0, false },
  { "", 0, 10, 0, false },
  { "1a", 0, 10, 0, false },
  { "1K", 0, 10000, 0, false },
};

START_TEST (test_parse_uint)
{
  const struct uint_tv *tv = &uint_tvs[_i];
  uint64_t v = 777;
  int r = ic_parse_uint ("n=", tv->str, tv->min, tv->max, &v);
  char expect[256];

  if (tv->ok) {
    ck_assert_msg (r == 0, "'%s': %s", tv->str, ic_last_error ());
    ck_assert_uint_eq (v, tv->value);
  }
  else {
    ck_assert_int_eq (r, -EINVAL);
    ck_assert_uint_eq (v, 777);
    snprintf (expect, sizeof expect, "n=: expected a number from %" PRIu64
              " to %" PRIu64 ", got '%s'", tv->min, tv->max, tv->str);
    assert_error_is (expect);
  }
}
END_TEST

/* ---- ic_parse_bool ---- */

static const struct {
  const char *str;
  int value;                    /* -1: refused */
} bool_tvs[] = {
  { "1", 1 }, { "true", 1 }, { "yes", 1 }, { "on", 1 }, { "TRUE", 1 },
  { "Yes", 1 }, { "0", 0 }, { "false", 0 }, { "no", 0 }, { "off", 0 },
  { "OFF", 0 }, { "maybe", -1 }, { "", -1 }, { "2", -1 }, { "y", -1 },
  { "true ", -1 },
};

START_TEST (test_parse_bool)
{
  bool v = true;
  int r = ic_parse_bool ("b=", bool_tvs[_i].str, &v);
  char expect[128];

  if (bool_tvs[_i].value >= 0) {
    ck_assert_int_eq (r, 0);
    ck_assert_int_eq (v, bool_tvs[_i].value);
  }
  else {
    ck_assert_int_eq (r, -EINVAL);
    snprintf (expect, sizeof expect, "b=: expected true or false, got '%s'",
              bool_tvs[_i].str);
    assert_error_is (expect);
  }
}
END_TEST

/* ---- ic_parse_mode, ic_parse_data_unit_size ---- */

START_TEST (test_parse_mode)
{
  enum ic_crypto_mode_num m = IC_ENCRYPTION_MODE_INVALID;

  ck_assert_int_eq (ic_parse_mode ("m=", "AES-256-XTS", &m), 0);
  ck_assert_int_eq (m, IC_ENCRYPTION_MODE_AES_256_XTS);
  ck_assert_int_eq (ic_parse_mode ("m=", "aes-128-cbc-essiv", &m), 0);
  ck_assert_int_eq (m, IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV);
  ck_assert_int_eq (ic_parse_mode ("m=", "ADIANTUM", &m), 0);
  ck_assert_int_eq (m, IC_ENCRYPTION_MODE_ADIANTUM);
  ck_assert_int_eq (ic_parse_mode ("m=", "SM4-XTS", &m), 0);
  ck_assert_int_eq (m, IC_ENCRYPTION_MODE_SM4_XTS);
  ck_assert_int_eq (ic_parse_mode ("m=", "invalid", &m), -EINVAL);
  assert_error_is ("m=: unknown mode 'invalid'; expected one of "
                   "AES-256-XTS, AES-128-CBC-ESSIV, Adiantum, SM4-XTS");
  ck_assert_int_eq (m, IC_ENCRYPTION_MODE_SM4_XTS);
  ck_assert_int_eq (ic_parse_mode ("m=", "", &m), -EINVAL);
}
END_TEST

START_TEST (test_parse_data_unit_size)
{
  static const char *const bad[] = {
    "256", "1000", "4097", "128K", "0", "", "x", "-4096",
  };
  unsigned int du;
  unsigned int shift;
  size_t i;
  char str[16];
  char expect[256];

  for (shift = 9; shift <= 16; shift++) {
    snprintf (str, sizeof str, "%u", 1u << shift);
    ck_assert_int_eq (ic_parse_data_unit_size ("d=", str, &du), 0);
    ck_assert_uint_eq (du, 1u << shift);
  }
  ck_assert_int_eq (ic_parse_data_unit_size ("d=", "4K", &du), 0);
  ck_assert_uint_eq (du, 4096);
  ck_assert_int_eq (ic_parse_data_unit_size ("d=", "1s", &du), 0);
  ck_assert_uint_eq (du, 512);
  for (i = 0; i < ARRAY_SIZE (bad); i++) {
    du = 1;
    ck_assert_int_eq (ic_parse_data_unit_size ("d=", bad[i], &du), -EINVAL);
    ck_assert_uint_eq (du, 1);
    snprintf (expect, sizeof expect, "d=: expected a data unit size, a power "
              "of two from 512 to 65536, got '%s'", bad[i]);
    assert_error_is (expect);
  }
}
END_TEST

/* ---- ic_parse_modes, ic_format_modes ---- */

struct modes_tv {
  const char *str;
  unsigned int modes[IC_ENCRYPTION_MODE_MAX];
  const char *error;            /* NULL: accepted */
};

#define ALL IC_ALL_DATA_UNIT_SIZES
#define XTS IC_ENCRYPTION_MODE_AES_256_XTS
#define ESSIV IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV
#define ADI IC_ENCRYPTION_MODE_ADIANTUM
#define SM4 IC_ENCRYPTION_MODE_SM4_XTS

static const struct modes_tv modes_tvs[] = {
  { "AES-256-XTS", { [XTS] = ALL }, NULL },
  { "AES-256-XTS:512", { [XTS] = 512 }, NULL },
  { "AES-256-XTS:512,4096", { [XTS] = 512 | 4096 }, NULL },
  { "AES-256-XTS:4K,64K;adiantum", { [XTS] = 4096 | 65536, [ADI] = ALL },
    NULL },
  { "AES-128-CBC-ESSIV:4096;SM4-XTS:512,1024;Adiantum:65536",
    { [ESSIV] = 4096, [SM4] = 512 | 1024, [ADI] = 65536 }, NULL },
  { "Adiantum:65536,512;SM4-XTS", { [ADI] = 512 | 65536, [SM4] = ALL },
    NULL },
  { "none", { 0 }, NULL },
  { "", { 0 }, "m=: expected MODE[:SIZE,...][;MODE...], got ''" },
  /* Empty entries and sizes: a stray separator. */
  { ";", { 0 }, "m=: empty mode entry in ';' (a stray ';'); expected "
    "MODE[:SIZE,...][;MODE...]" },
  { "AES-256-XTS;", { 0 }, "m=: empty mode entry in 'AES-256-XTS;' (a "
    "stray ';'); expected MODE[:SIZE,...][;MODE...]" },
  { ";AES-256-XTS", { 0 }, "m=: empty mode entry in ';AES-256-XTS'" },
  { "AES-256-XTS:4096;;SM4-XTS", { 0 }, "m=: empty mode entry in "
    "'AES-256-XTS:4096;;SM4-XTS' (a stray ';'); expected "
    "MODE[:SIZE,...][;MODE...]" },
  { "AES-256-XTS:4096,", { 0 }, "m=: empty data unit size in "
    "'AES-256-XTS:4096,' (a stray ','); expected MODE:SIZE[,SIZE...]" },
  { "AES-256-XTS:,4096", { 0 }, "m=: empty data unit size in "
    "'AES-256-XTS:,4096'" },
  { "AES-256-XTS:512,,4096;SM4-XTS", { 0 }, "m=: empty data unit size in "
    "'AES-256-XTS:512,,4096;SM4-XTS'" },
  /* Given twice: a mode, whose sizes go in one entry, or a size. */
  { "AES-256-XTS:512;AES-256-XTS:4096", { 0 }, "m=: AES-256-XTS is given "
    "twice; give each mode once, with all its data unit sizes: "
    "AES-256-XTS:512,4096" },
  { "SM4-XTS:4096;Adiantum;SM4-XTS:512,4096", { 0 }, "m=: SM4-XTS is given "
    "twice; give each mode once, with all its data unit sizes: "
    "SM4-XTS:512,4096" },
  { "Adiantum;adiantum:4096", { 0 }, "m=: Adiantum is given twice; give "
    "each mode once, with all its data unit sizes: Adiantum" },
  { "AES-256-XTS:4096,4K", { 0 }, "m=: AES-256-XTS: data unit size 4096 is "
    "given twice" },
  { "AES", { 0 }, "m=: unknown mode 'AES'" },
  { "none;AES-256-XTS", { 0 }, "m=: unknown mode 'none'" },
  { "AES-256-XTS:", { 0 }, "m=: AES-256-XTS: expected data unit sizes after "
    "':'" },
  { "AES-256-XTS:4000", { 0 }, "m=: expected a data unit size, a power of "
    "two from 512 to 65536, got '4000'" },
  { "AES-256-XTS:1M", { 0 }, "m=: expected a data unit size" },
  { "AES-256-XTS:512:4096", { 0 }, "m=: expected a data unit size, a power "
    "of two from 512 to 65536, got '512:4096'" },
  { "AES-256-XTS:512;bogus:4096", { 0 }, "m=: unknown mode 'bogus'" },
};

START_TEST (test_parse_modes)
{
  const struct modes_tv *tv = &modes_tvs[_i];
  unsigned int modes[IC_ENCRYPTION_MODE_MAX];
  int m;
  int r;

  memset (modes, 0xff, sizeof modes);
  r = ic_parse_modes ("m=", tv->str, modes);
  if (!tv->error) {
    ck_assert_msg (r == 0, "'%s': %s", tv->str, ic_last_error ());
    for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++)
      ck_assert_msg (modes[m] == tv->modes[m], "'%s': mode %d: %#x, "
                     "expected %#x", tv->str, m, modes[m], tv->modes[m]);
  }
  else {
    ck_assert_int_eq (r, -EINVAL);
    assert_error_starts (tv->error);
  }
}
END_TEST

START_TEST (test_format_modes)
{
  const struct modes_tv *tv = &modes_tvs[_i];
  unsigned int modes[IC_ENCRYPTION_MODE_MAX];
  char buf[1024];
  char small[8];

  if (tv->error)
    return;
  ic_format_modes (tv->modes, buf, sizeof buf);
  if (strcmp (tv->str, "none") == 0) {
    /* Nothing formats as "", which ic_parse_modes() refuses: "none" is
     * what to write.
     */
    ck_assert_str_eq (buf, "");
    return;
  }
  ck_assert_int_eq (ic_parse_modes ("m=", buf, modes), 0);
  ck_assert_mem_eq (modes, tv->modes, sizeof modes);
  /* Truncated, still a string; size 0 writes nothing. */
  memset (small, 'x', sizeof small);
  ic_format_modes (tv->modes, small, sizeof small);
  ck_assert_uint_eq (strlen (small), sizeof small - 1);
  ck_assert_int_eq (strncmp (small, buf, sizeof small - 1), 0);
  ic_format_modes (tv->modes, small, 0);
  ck_assert_int_eq (strncmp (small, buf, sizeof small - 1), 0);
}
END_TEST

START_TEST (test_format_modes_text)
{
  unsigned int modes[IC_ENCRYPTION_MODE_MAX] = {
    [XTS] = 512 | 4096, [ADI] = 65536,
  };
  char buf[256];

  ic_format_modes (modes, buf, sizeof buf);
  ck_assert_str_eq (buf, "AES-256-XTS:512,4096;Adiantum:65536");
}
END_TEST

/* ---- ic_parse_key_types ---- */

START_TEST (test_parse_key_types)
{
  unsigned int t = 0;

  ck_assert_int_eq (ic_parse_key_types ("t=", "raw", &t), 0);
  ck_assert_uint_eq (t, IC_CRYPTO_KEY_TYPE_RAW);
  ck_assert_int_eq (ic_parse_key_types ("t=", "hw_wrapped", &t), 0);
  ck_assert_uint_eq (t, IC_CRYPTO_KEY_TYPE_HW_WRAPPED);
  ck_assert_int_eq (ic_parse_key_types ("t=", "hw_wrapped,raw", &t), 0);
  ck_assert_uint_eq (t, IC_CRYPTO_KEY_TYPE_RAW | IC_CRYPTO_KEY_TYPE_HW_WRAPPED);

  t = 99;
  ck_assert_int_eq (ic_parse_key_types ("t=", "", &t), -EINVAL);
  assert_error_is ("t=: expected raw, hw_wrapped or both, comma-separated");
  /* Empty items: a stray ','. */
  ck_assert_int_eq (ic_parse_key_types ("t=", ",", &t), -EINVAL);
  assert_error_is ("t=: empty item in ',' (a stray ','); expected raw, "
                   "hw_wrapped or both, comma-separated");
  ck_assert_int_eq (ic_parse_key_types ("t=", "raw,", &t), -EINVAL);
  assert_error_is ("t=: empty item in 'raw,' (a stray ','); expected raw, "
                   "hw_wrapped or both, comma-separated");
  ck_assert_int_eq (ic_parse_key_types ("t=", ",raw", &t), -EINVAL);
  assert_error_starts ("t=: empty item in ',raw'");
  ck_assert_int_eq (ic_parse_key_types ("t=", "raw,,hw_wrapped", &t),
                    -EINVAL);
  assert_error_starts ("t=: empty item in 'raw,,hw_wrapped'");
  /* Given twice. */
  ck_assert_int_eq (ic_parse_key_types ("t=", "raw,raw", &t), -EINVAL);
  assert_error_is ("t=: key type 'raw' is given twice");
  ck_assert_int_eq (ic_parse_key_types ("t=", "hw_wrapped,raw,hw_wrapped",
                                        &t), -EINVAL);
  assert_error_is ("t=: key type 'hw_wrapped' is given twice");
  ck_assert_int_eq (ic_parse_key_types ("t=", "raw,wrapped", &t), -EINVAL);
  assert_error_is ("t=: unknown key type 'wrapped'; expected raw, "
                   "hw_wrapped or both, comma-separated");
  ck_assert_int_eq (ic_parse_key_types ("t=", "RAW", &t), -EINVAL);
  ck_assert_uint_eq (t, 99);
}
END_TEST

/* ---- ic_parse_dun ---- */

struct dun_tv {
  const char *str;
  uint64_t dun[4];
  const char *error;            /* NULL: accepted */
};

#define BAD_DUN(s) \
  { s, { 0 }, "d=: expected a DUN (a decimal or 0x-hex number), got '" s "'" }

static const struct dun_tv dun_tvs[] = {
  { "0", { 0 }, NULL },
  { "7", { 7 }, NULL },
  { "18446744073709551615", { UINT64_MAX }, NULL },
  { "18446744073709551616", { 0, 1 }, NULL },               /* 2^64 */
  { "340282366920938463463374607431768211456", { 0, 0, 1 }, NULL },
  { "000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000042", { 42 }, NULL },      /* 100 digits */
  { DUN_MAX_DEC, { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX }, NULL },
  /* Too long to be shown: they might be key bytes (ic_shown). */
  { DUN_2_256_DEC, { 0 }, "d=: DUN '<78 characters, not shown: they may be "
    "key bytes>' does not fit in 256 bits" },
  { "1" DUN_MAX_DEC, { 0 }, "d=: DUN '<79 characters, not shown: they may "
    "be key bytes>' does not fit in 256 bits" },
  { "0x1", { 1 }, NULL },
  { "0X10", { 16 }, NULL },
  { "0xABCdef", { 0xabcdef }, NULL },
  { "0x0123456789abcdef0011223344556677",
    { 0x0011223344556677, 0x0123456789abcdef }, NULL },
  { "0x1" "0000000000000000" "0000000000000000", { 0, 0, 1 }, NULL },
  { "0x" F16 F16 F16 F16, { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX },
    NULL },
  { "0x" "0" F16 F16 F16 "fffffffffffffff",                 /* 64 digits */
    { UINT64_MAX, UINT64_MAX, UINT64_MAX, 0x0fffffffffffffff }, NULL },
  { "0x1" F16 F16 F16 F16, { 0 }, "d=: expected a DUN (a decimal or 0x-hex "
    "number), got '<67 characters, not shown: they may be key bytes>'" },
  { "0x0" F16 F16 F16 F16, { 0 }, "d=: expected a DUN (a decimal or 0x-hex "
    "number), got '<67 characters, not shown: they may be key bytes>'" },
  BAD_DUN (""),
  BAD_DUN ("0x"),
  BAD_DUN ("x1"),
  BAD_DUN ("-1"),
  BAD_DUN ("+1"),
  BAD_DUN (" 1"),
  BAD_DUN ("1 "),
  BAD_DUN ("1a"),
  BAD_DUN ("0xg"),
  BAD_DUN ("0x0x12"),
  BAD_DUN ("0x-1"),
  BAD_DUN ("0x 1"),
  BAD_DUN ("0x1" "0x00000000000000"),      /* an "0x" inside a limb */
};

START_TEST (test_parse_dun)
{
  const struct dun_tv *tv = &dun_tvs[_i];
  uint64_t dun[4] = { 5, 5, 5, 5 };
  int r = ic_parse_dun ("d=", tv->str, dun);

  if (!tv->error) {
    ck_assert_msg (r == 0, "'%s': %s", tv->str, ic_last_error ());
    ck_assert_msg (memcmp (dun, tv->dun, sizeof dun) == 0,
                   "'%s': %016" PRIx64 " %016" PRIx64 " %016" PRIx64
                   " %016" PRIx64, tv->str, dun[3], dun[2], dun[1], dun[0]);
  }
  else {
    ck_assert_int_eq (r, -EINVAL);
    assert_error_is (tv->error);
  }
}
END_TEST

/* ---- ic_shown: messages never show what may be key bytes ---- */

static const struct {
  const char *word;
  bool hidden;
} shown_tvs[] = {
  { "AES-256-XTS", false },
  { "18446744073709551616", false },               /* a number too large */
  { "1234567890123456789012345678901", false },    /* 31 digits */
  { "12345678901234567890123456789012", true },    /* 32: a key in hex? */
  { "deadbeefdeadbee", false },                    /* 15 hex digits */
  { "deadbeefdeadbeef", true },                    /* 16 with letters */
  { "key=0123456789abcdef", true },
  { "x0123456789abcde-0123456789abcdef", true },
  { "0123456789abcde-0123456789abcde", false },    /* runs of 15 */
  { "", false },
};

START_TEST (test_shown)
{
  char buf[IC_SHOWN_SIZE];
  const char *w = shown_tvs[_i].word;
  const char *r = ic_shown (w, buf, sizeof buf);
  char expect[IC_SHOWN_SIZE];

  if (!shown_tvs[_i].hidden) {
    ck_assert_ptr_eq (r, w);
    return;
  }
  snprintf (expect, sizeof expect, "<%zu characters, not shown: they may "
            "be key bytes>", strlen (w));
  ck_assert_str_eq (r, expect);
}
END_TEST

/* A key put where a value belongs is not shown back by any parser. */
START_TEST (test_shown_in_messages)
{
  static const char key[] =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  enum ic_crypto_mode_num m;
  uint64_t u;
  uint64_t dun[4];
  unsigned int du;
  bool b;

  ck_assert_int_eq (ic_parse_mode ("mode=", key, &m), -EINVAL);
  ck_assert_ptr_null (strstr (ic_last_error (), "00112233"));
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "<64 characters"));
  ck_assert_int_eq (ic_parse_size ("size=", key, &u), -EINVAL);
  ck_assert_ptr_null (strstr (ic_last_error (), "00112233"));
  ck_assert_int_eq (ic_parse_uint ("n=", key, 0, 9, &u), -EINVAL);
  ck_assert_ptr_null (strstr (ic_last_error (), "00112233"));
  ck_assert_int_eq (ic_parse_bool ("b=", key, &b), -EINVAL);
  ck_assert_ptr_null (strstr (ic_last_error (), "00112233"));
  ck_assert_int_eq (ic_parse_data_unit_size ("du=", key, &du), -EINVAL);
  ck_assert_ptr_null (strstr (ic_last_error (), "00112233"));
  ck_assert_int_eq (ic_parse_dun ("d=", "0x1" "00112233445566778899aabbccddeeff"
                                  "00112233445566778899aabbccddeeff", dun),
                    -EINVAL);
  ck_assert_ptr_null (strstr (ic_last_error (), "00112233"));
}
END_TEST

/* ---- ic_read_secret ---- */

static void
assert_secret (const char *what, const char *value, const char *expect)
{
  char *s = NULL;
  size_t size = 0;

  ck_assert_msg (ic_read_secret (what, value, &s, &size) == 0, "%s: %s",
                 value, ic_last_error ());
  ck_assert_str_eq (s, expect);
  ck_assert_uint_gt (size, strlen (expect));
  ic_secure_free (s, size);
}

START_TEST (test_secret_file)
{
  char value[PATH_SIZE + 1];
  char expect[PATH_SIZE * 2];
  char *s = NULL;
  size_t size = 0;

  write_file ("s600", "s3cret\n", 0600);
  snprintf (value, sizeof value, "+%s", path_in_dir ("s600"));
  assert_secret ("key=", value, "s3cret");

  /* Every trailing newline and CR goes; inner ones stay. */
  write_file ("s400", "a\nb\r\n\n", 0400);
  snprintf (value, sizeof value, "+%s", path_in_dir ("s400"));
  assert_secret ("key=", value, "a\nb");

  write_file ("empty", "", 0600);
  snprintf (value, sizeof value, "+%s", path_in_dir ("empty"));
  assert_secret ("key=", value, "");

  write_file ("s640", "s3cret\n", 0640);
  snprintf (value, sizeof value, "+%s", path_in_dir ("s640"));
  ck_assert_int_eq (ic_read_secret ("key=", value, &s, &size), -EACCES);
  snprintf (expect, sizeof expect, "key=: key file %s is accessible by group "
            "or others (mode 0640); chmod 600 it", path_in_dir ("s640"));
  assert_error_is (expect);

  write_file ("s604", "s3cret\n", 0604);
  snprintf (value, sizeof value, "+%s", path_in_dir ("s604"));
  ck_assert_int_eq (ic_read_secret ("key=", value, &s, &size), -EACCES);
  assert_error_starts ("key=: key file ");
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "(mode 0604); chmod 600 "
                                 "it"));

  snprintf (value, sizeof value, "+%s", path_in_dir ("none"));
  ck_assert_int_eq (ic_read_secret ("key=", value, &s, &size), -ENOENT);
  snprintf (expect, sizeof expect, "key=: open %s: No such file or "
            "directory", path_in_dir ("none"));
  assert_error_is (expect);

  /* A directory opens but cannot be read. */
  snprintf (value, sizeof value, "+%s", dir);
  ck_assert_int_eq (ic_read_secret ("key=", value, &s, &size), -EISDIR);
  assert_error_is ("key=: read: Is a directory");
}
END_TEST

START_TEST (test_secret_long)
{
  char value[PATH_SIZE + 1];
  char *s = NULL;
  size_t size = 0;
  char *big = malloc (1536 * KiB + 1);

  ck_assert_ptr_nonnull (big);
  memset (big, 'a', 1536 * KiB);
  big[1536 * KiB] = '\0';
  write_file ("big", big, 0600);
  snprintf (value, sizeof value, "+%s", path_in_dir ("big"));
  ck_assert_int_eq (ic_read_secret ("key=", value, &s, &size), -E2BIG);
  assert_error_is ("key=: secret is too long");

  /* Under 64 KiB, growing the buffer on the way. */
  big[64 * KiB] = '\0';
  write_file ("big", big, 0600);
  ck_assert_int_eq (ic_read_secret ("key=", value, &s, &size), -E2BIG);
  big[63 * KiB] = '\0';
  write_file ("big", big, 0600);
  ck_assert_int_eq (ic_read_secret ("key=", value, &s, &size), 0);
  ck_assert_uint_eq (strlen (s), 63 * KiB);
  ic_secure_free (s, size);
  free (big);
}
END_TEST

START_TEST (test_secret_fd)
{
  char value[32];
  char *s = NULL;
  size_t size = 0;
  int fds[2];
  int saved;

  ck_assert_int_eq (pipe (fds), 0);
  ck_assert_int_eq (write (fds[1], "p1pe\r\n", 6), 6);
  close (fds[1]);
  snprintf (value, sizeof value, "-%d", fds[0]);
  assert_secret ("key=", value, "p1pe");
  /* Read once and closed, as nbdkit closes a password's -FD. */
  ck_assert_int_eq (fcntl (fds[0], F_GETFD), -1);
  ck_assert_int_eq (errno, EBADF);

  /* The descriptor closed is the one read, however it was written. */
  ck_assert_int_eq (pipe (fds), 0);
  ck_assert_int_eq (write (fds[1], "h3x\n", 4), 4);
  close (fds[1]);
  snprintf (value, sizeof value, "-0x%x", fds[0]);
  assert_secret ("key=", value, "h3x");
  ck_assert_int_eq (fcntl (fds[0], F_GETFD), -1);
  ck_assert_int_ne (fcntl (0, F_GETFD), -1);

  /* 0, 1 and 2 are nbdkit's: refused, and left open. */
  ck_assert_int_eq (ic_read_secret ("key=", "-0", &s, &size), -EINVAL);
  assert_error_is ("key=: -0: file descriptors 0, 1 and 2 cannot be used "
                   "(key=- reads the terminal)");
  ck_assert_int_eq (ic_read_secret ("key=", "-2", &s, &size), -EINVAL);
  ck_assert_int_ne (fcntl (0, F_GETFD), -1);
  ck_assert_int_ne (fcntl (2, F_GETFD), -1);

  /* "-" is standard input. */
  ck_assert_int_eq (pipe (fds), 0);
  ck_assert_int_eq (write (fds[1], "std1n\n", 6), 6);
  close (fds[1]);
  saved = dup (0);
  ck_assert_int_ge (saved, 0);
  ck_assert_int_eq (dup2 (fds[0], 0), 0);
  close (fds[0]);
  assert_secret ("key=", "-", "std1n");
  ck_assert_int_eq (dup2 (saved, 0), 0);
  close (saved);

  ck_assert_int_eq (ic_read_secret ("key=", "-3x", &s, &size), -EINVAL);
  assert_error_is ("key=: expected a number from 0 to 2147483647, got '3x'");
  ck_assert_int_eq (ic_read_secret ("key=", "-2147483648", &s, &size),
                    -EINVAL);
  ck_assert_int_eq (ic_read_secret ("key=", "-999", &s, &size), -EBADF);
  assert_error_is ("key=: read: Bad file descriptor");
}
END_TEST

START_TEST (test_secret_literal)
{
  /* Anything else is the secret itself, newline and all. */
  assert_secret ("key=", "00ff", "00ff");
  assert_secret ("key=", "-abc", "-abc");
  assert_secret ("key=", "ab\n", "ab\n");
  assert_secret ("key=", "", "");
}
END_TEST

static Suite *
params_suite (void)
{
  Suite *s = suite_create ("params");
  TCase *tc;

  tc = tcase_create ("known");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_known, 0, ARRAY_SIZE (known_params));
  tcase_add_test (tc, test_unknown);
  suite_add_tcase (s, tc);

  tc = tcase_create ("accept");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_defaults);
  tcase_add_test (tc, test_size);
  tcase_add_test (tc, test_file);
  tcase_add_loop_test (tc, test_mode, 0, ARRAY_SIZE (mode_tvs));
  tcase_add_test (tc, test_data_unit_size);
  tcase_add_test (tc, test_dun);
  tcase_add_test (tc, test_engine);
  tcase_add_test (tc, test_fallback);
  tcase_add_test (tc, test_control);
  suite_add_tcase (s, tc);

  tc = tcase_create ("twice");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_twice, 0, ARRAY_SIZE (twice_tvs));
  tcase_add_test (tc, test_twice_keeps_first);
  suite_add_tcase (s, tc);

  tc = tcase_create ("config");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_config_conflict, 0, ARRAY_SIZE (conflict_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("refusals");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_refusal, 0, ARRAY_SIZE (refusals));
  tcase_add_loop_test (tc, test_refusal_creates_nothing, 0,
                       ARRAY_SIZE (refused_with_file));
  suite_add_tcase (s, tc);

  tc = tcase_create ("parse_size");
  tcase_add_loop_test (tc, test_parse_size, 0, ARRAY_SIZE (size_tvs));
  tcase_add_test (tc, test_parse_size_null);
  suite_add_tcase (s, tc);

  tc = tcase_create ("parse_uint");
  tcase_add_loop_test (tc, test_parse_uint, 0, ARRAY_SIZE (uint_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("parse_bool");
  tcase_add_loop_test (tc, test_parse_bool, 0, ARRAY_SIZE (bool_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("parse_mode");
  tcase_add_test (tc, test_parse_mode);
  tcase_add_test (tc, test_parse_data_unit_size);
  suite_add_tcase (s, tc);

  tc = tcase_create ("parse_modes");
  tcase_add_loop_test (tc, test_parse_modes, 0, ARRAY_SIZE (modes_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("format_modes");
  tcase_add_loop_test (tc, test_format_modes, 0, ARRAY_SIZE (modes_tvs));
  tcase_add_test (tc, test_format_modes_text);
  suite_add_tcase (s, tc);

  tc = tcase_create ("parse_key_types");
  tcase_add_test (tc, test_parse_key_types);
  suite_add_tcase (s, tc);

  tc = tcase_create ("shown");
  tcase_add_loop_test (tc, test_shown, 0, ARRAY_SIZE (shown_tvs));
  tcase_add_test (tc, test_shown_in_messages);
  suite_add_tcase (s, tc);

  tc = tcase_create ("parse_dun");
  tcase_add_loop_test (tc, test_parse_dun, 0, ARRAY_SIZE (dun_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("read_secret");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_secret_file);
  tcase_add_test (tc, test_secret_long);
  tcase_add_test (tc, test_secret_fd);
  tcase_add_test (tc, test_secret_literal);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (params_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

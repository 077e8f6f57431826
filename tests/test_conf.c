/* tests/test_conf.c - unit tests of config/conf.c: the configuration file
 * (ic_conf_parse(), ic_conf_load()) and the graph it builds.
 *
 * Every keyword and parameter is used once with success and the graph
 * checked object by object: keys (mode, data unit size, DUN bytes,
 * bytes), engines (ic_engine_config()), leaves (kind, size, engine
 * profile, fallback), stacked devices (ic_stacked_table_text() and the
 * profile the table gives), exports (ic_export_get_map()), the fallback
 * and the control socket.  Every message of conf.c has a case in one
 * table: the text, the errno and the message, which must start with
 * "test.conf:N: " naming the line at fault and never show key bytes.
 *
 * Key files live in a temporary directory, the @dir of every parse, so
 * relative paths resolve there.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "conf.h"
#include "error.h"
#include "leaf.h"
#include "secmem.h"
#include "table.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))
#define KiB 1024
#define MiB (1024 * 1024)

/* Key material: four distinct 16-byte blocks.  A message showing any of
 * their first bytes leaks a key.
 */
#define HEX_A "00112233445566778899aabbccddeeff"
#define HEX_B "0123456789abcdeffedcba9876543210"
#define HEX_C "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
#define HEX_D "f0e1d2c3b4a5968778695a4b3c2d1e0f"
#define KEY64 HEX_A HEX_B HEX_C HEX_D   /* AES-256-XTS */
#define KEY32 HEX_A HEX_B               /* Adiantum, SM4-XTS */
#define KEY16 HEX_C                     /* AES-128-CBC-ESSIV */
#define WEAK64 HEX_A HEX_B HEX_A HEX_B  /* XTS halves equal */
#define WEAK32 HEX_A HEX_A

/* The temporary directory of the test and the key files in it; short,
 * so that every path made from it fits the buffers below.
 */
#define DIR_TEMPLATE "/tmp/test_conf.XXXXXX"
static char dir[sizeof DIR_TEMPLATE];
#define PATH_SIZE 256

static void
write_file (const char *name, const char *content, mode_t mode)
{
  char path[PATH_SIZE];
  size_t len = strlen (content);
  int fd;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (write (fd, content, len), (ssize_t) len);
  /* fchmod, not the open mode: the umask must not decide. */
  ck_assert_int_eq (fchmod (fd, mode), 0);
  close (fd);
}

static void
setup (void)
{
  ck_assert_int_eq (ic_crypto_init (), 0);
  snprintf (dir, sizeof dir, "%s", DIR_TEMPLATE);
  ck_assert_ptr_nonnull (mkdtemp (dir));
  write_file ("k64.hex", KEY64 "\n", 0600);
  write_file ("k32.hex", KEY32 "\n", 0600);
  write_file ("k16.hex", KEY16, 0400);
  write_file ("k 32.hex", KEY32 "\r\n", 0600);
  write_file ("open.hex", KEY64 "\n", 0644);
  write_file ("group.hex", KEY64 "\n", 0640);
  write_file ("k32-as-64.hex", KEY32 "\n", 0600);
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

static struct ic_graph *
parse_flags (const char *text, unsigned int flags)
{
  return ic_conf_parse (text, strlen (text), "test.conf", dir, flags);
}

static struct ic_graph *
parse (const char *text)
{
  struct ic_graph *g = parse_flags (text, 0);

  ck_assert_msg (g != NULL, "parse failed: %s", ic_last_error ());
  return g;
}

static void
assert_no_key_bytes (const char *msg)
{
  static const char *const parts[] = {
    "00112233", "01234567", "a0a1a2a3", "f0e1d2c3",
  };
  size_t i;

  for (i = 0; i < ARRAY_SIZE (parts); i++)
    ck_assert_msg (strcasestr (msg, parts[i]) == NULL,
                   "message \"%s\" shows key bytes", msg);
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

static char *
path_in_dir (const char *name)
{
  static char path[PATH_SIZE];

  snprintf (path, sizeof path, "%s/%s", dir, name);
  return path;
}

/* ---- keys ---- */

START_TEST (test_keys)
{
  char text[4096];
  struct ic_graph *g;
  struct ic_crypto_key *k;

  snprintf (text, sizeof text,
            "key k1 mode=AES-256-XTS data-unit-size=4096 dun-bytes=8 "
            "type=raw key=+k64.hex\n"
            "key k2 mode=adiantum data-unit-size=512 dun-bytes=32 key="
            KEY32 "\n"
            "key k3 mode=AES-128-CBC-ESSIV data-unit-size=8K dun-bytes=4 "
            "key=+%s/k16.hex\n"
            "key k4 mode=SM4-XTS data-unit-size=64K dun-bytes=16 "
            "key=+\"k 32.hex\"\n"    /* quotes in a word; CRLF in the file */
            "key k5 key=" KEY64 "\n"          /* defaults */
            "leaf d0 memory size=1M\n"
            "export vol0 device=d0 key=k1\n", dir);
  g = parse (text);
  ck_assert_uint_eq (g->nkeys, 5);

  k = ic_graph_find_key (g, "k1");
  ck_assert_ptr_nonnull (k);
  ck_assert_int_eq (k->crypto_cfg.crypto_mode, IC_ENCRYPTION_MODE_AES_256_XTS);
  ck_assert_uint_eq (k->crypto_cfg.data_unit_size, 4096);
  ck_assert_uint_eq (k->crypto_cfg.dun_bytes, 8);
  ck_assert_int_eq (k->crypto_cfg.key_type, IC_CRYPTO_KEY_TYPE_RAW);
  assert_key_bytes (k, KEY64);

  k = ic_graph_find_key (g, "k2");
  ck_assert_int_eq (k->crypto_cfg.crypto_mode, IC_ENCRYPTION_MODE_ADIANTUM);
  ck_assert_uint_eq (k->crypto_cfg.data_unit_size, 512);
  ck_assert_uint_eq (k->crypto_cfg.dun_bytes, 32);
  assert_key_bytes (k, KEY32);

  k = ic_graph_find_key (g, "k3");
  ck_assert_int_eq (k->crypto_cfg.crypto_mode,
                    IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV);
  ck_assert_uint_eq (k->crypto_cfg.data_unit_size, 8192);
  ck_assert_uint_eq (k->crypto_cfg.dun_bytes, 4);
  assert_key_bytes (k, KEY16);

  k = ic_graph_find_key (g, "k4");
  ck_assert_int_eq (k->crypto_cfg.crypto_mode, IC_ENCRYPTION_MODE_SM4_XTS);
  ck_assert_uint_eq (k->crypto_cfg.data_unit_size, 65536);
  ck_assert_uint_eq (k->crypto_cfg.dun_bytes, 16);
  assert_key_bytes (k, KEY32);

  k = ic_graph_find_key (g, "k5");
  ck_assert_int_eq (k->crypto_cfg.crypto_mode, IC_ENCRYPTION_MODE_AES_256_XTS);
  ck_assert_uint_eq (k->crypto_cfg.data_unit_size, 4096);
  ck_assert_uint_eq (k->crypto_cfg.dun_bytes, 8);
  assert_key_bytes (k, KEY64);
  ic_graph_free (g);
}
END_TEST

/* ---- engines ---- */

START_TEST (test_engines)
{
  struct ic_graph *g;
  const struct ic_engine_config *c;
  struct ic_engine *e;
  int m;

  g = parse ("engine ufs keyslots=4 modes=AES-256-XTS:512,4096;Adiantum "
             "max-dun-bytes=16 program-us=5 key-types=raw\n"
             "engine emmc keyslots=0x10 modes=sm4-xts:4K\n"
             "engine dumb modes=none\n"
             "engine plain\n"
             "leaf d0 memory size=1M engine=ufs\n"
             "export vol0 device=d0\n"
             "end\n");
  ck_assert_uint_eq (g->nengines, 4);

  e = ic_graph_find_engine (g, "ufs");
  ck_assert_ptr_nonnull (e);
  c = ic_engine_config (e);
  ck_assert_str_eq (c->name, "ufs");
  ck_assert_uint_eq (c->num_slots, 4);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS],
                     512 | 4096);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_ADIANTUM],
                     IC_ALL_DATA_UNIT_SIZES);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV],
                     0);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_SM4_XTS], 0);
  ck_assert_uint_eq (c->max_dun_bytes, 16);
  ck_assert_uint_eq (c->program_us, 5);
  ck_assert_uint_eq (c->key_types, IC_CRYPTO_KEY_TYPE_RAW);

  c = ic_engine_config (ic_graph_find_engine (g, "emmc"));
  ck_assert_uint_eq (c->num_slots, 16);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_SM4_XTS], 4096);
  ck_assert_uint_eq (c->modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS], 0);

  c = ic_engine_config (ic_graph_find_engine (g, "dumb"));
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (c->modes_supported[m], 0);

  /* Defaults: 32 slots, every mode and size, 8 DUN bytes, raw, free. */
  c = ic_engine_config (ic_graph_find_engine (g, "plain"));
  ck_assert_uint_eq (c->num_slots, 32);
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    ck_assert_uint_eq (c->modes_supported[m], IC_ALL_DATA_UNIT_SIZES);
  ck_assert_uint_eq (c->max_dun_bytes, 8);
  ck_assert_uint_eq (c->key_types, IC_CRYPTO_KEY_TYPE_RAW);
  ck_assert_uint_eq (c->program_us, 0);
  ic_graph_free (g);
}
END_TEST

/* ---- leaves ---- */

START_TEST (test_leaves)
{
  struct ic_graph *g;
  struct ic_device *dev;
  struct ic_leaf *leaf;
  struct ic_engine *ufs;
  struct stat st;

  /* An existing file for readonly=true, sized by the file. */
  write_file ("ro.img", "", 0600);
  ck_assert_int_eq (truncate (path_in_dir ("ro.img"), 3 * MiB), 0);
  g = parse ("engine ufs keyslots=2\n"
             "leaf d0 file=d0.img size=1M engine=ufs\n"
             "leaf d1 memory size=2M engine=ufs fallback=false\n"
             "leaf d2 memory size=4096s fallback=yes\n"
             "leaf d3 file=ro.img readonly=true\n"
             "export vol0 device=d0\n"
             "end\n");
  ufs = ic_graph_find_engine (g, "ufs");
  ck_assert_uint_eq (g->ndevices, 4);

  dev = ic_graph_find_device (g, "d0");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "file");
  ck_assert_uint_eq (dev->size, 1 * MiB);
  ck_assert_ptr_eq (dev->profile, ic_engine_profile (ufs));
  leaf = ic_device_to_leaf (dev);
  ck_assert_ptr_nonnull (leaf);
  ck_assert_ptr_eq (leaf->engine, ufs);
  ck_assert (dev->fallback_enabled);
  /* Created relative to the file's directory, at its size. */
  ck_assert_int_eq (stat (path_in_dir ("d0.img"), &st), 0);
  ck_assert_int_eq (st.st_size, 1 * MiB);

  dev = ic_graph_find_device (g, "d1");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "memory");
  ck_assert_uint_eq (dev->size, 2 * MiB);
  ck_assert_ptr_eq (dev->profile, ic_engine_profile (ufs));
  ck_assert (!dev->fallback_enabled);

  dev = ic_graph_find_device (g, "d2");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "memory");
  ck_assert_uint_eq (dev->size, 2 * MiB);
  ck_assert_ptr_null (dev->profile);
  ck_assert_ptr_null (ic_device_to_leaf (dev)->engine);
  ck_assert (dev->fallback_enabled);

  dev = ic_graph_find_device (g, "d3");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "file");
  ck_assert_uint_eq (dev->size, 3 * MiB);
  ic_graph_free (g);

  /* readonly=true opens without creating: a missing file is an error,
   * where readonly=false (above) created d0.img.
   */
  g = parse_flags ("leaf d4 file=missing.img size=1M readonly=true\n", 0);
  ck_assert_ptr_null (g);
  ck_assert_int_eq (errno, ENOENT);
  ck_assert_int_ne (stat (path_in_dir ("missing.img"), &st), 0);
}
END_TEST

/* A read-only NBD server (nbdkit memory) for the nbd= leaves. */
static pid_t nbdkit_pid = -1;
static char nbd_uri[PATH_SIZE];

static void
setup_nbd (void)
{
  char sock[PATH_SIZE / 2];
  char pidfile[PATH_SIZE / 2];
  struct stat st;
  int i;

  setup ();
  snprintf (sock, sizeof sock, "%s/nbd.sock", dir);
  snprintf (pidfile, sizeof pidfile, "%s/nbd.pid", dir);
  snprintf (nbd_uri, sizeof nbd_uri, "nbd+unix:///?socket=%s", sock);
  nbdkit_pid = fork ();
  ck_assert_int_ge (nbdkit_pid, 0);
  if (nbdkit_pid == 0) {
    execlp ("nbdkit", "nbdkit", "-f", "-r", "-U", sock, "-P", pidfile,
            "memory", "3M", (char *) NULL);
    _exit (127);
  }
  for (i = 0; i < 1000; i++) {
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    int status;

    /* nbdkit writes its pidfile once it listens (the socket file exists
     * a moment before that).
     */
    if (stat (pidfile, &st) == 0 && st.st_size > 0)
      return;
    if (waitpid (nbdkit_pid, &status, WNOHANG) == nbdkit_pid) {
      nbdkit_pid = -1;          /* no nbdkit: the test skips */
      return;
    }
    nanosleep (&ts, NULL);
  }
  ck_abort_msg ("nbdkit did not create %s", sock);
}

static void
teardown_nbd (void)
{
  if (nbdkit_pid > 0) {
    kill (nbdkit_pid, SIGTERM);
    waitpid (nbdkit_pid, NULL, 0);
    nbdkit_pid = -1;
  }
  teardown ();
}

START_TEST (test_leaf_nbd)
{
  char text[4096];
  struct ic_graph *g;
  struct ic_device *dev;

  if (nbdkit_pid < 0) {
    fprintf (stderr, "test_leaf_nbd: nbdkit not found, skipped\n");
    return;
  }
  snprintf (text, sizeof text,
            "engine ufs\n"
            "leaf r0 nbd=%s readonly=true engine=ufs fallback=false\n"
            "leaf r1 nbd=\"%s\" size=1M readonly=on timeout=5\n"
            "export vol0 device=r0\n"
            "end\n", nbd_uri, nbd_uri);
  g = parse (text);
  dev = ic_graph_find_device (g, "r0");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "nbd");
  ck_assert_uint_eq (dev->size, 3 * MiB);
  ck_assert_ptr_eq (dev->profile,
                    ic_engine_profile (ic_graph_find_engine (g, "ufs")));
  ck_assert (!dev->fallback_enabled);
  dev = ic_graph_find_device (g, "r1");
  ck_assert_uint_eq (dev->size, 1 * MiB);
  ic_graph_free (g);

  /* The leaf's own refusals come with the line. */
  snprintf (text, sizeof text, "\nleaf r0 nbd=%s\n", nbd_uri);
  ck_assert_ptr_null (parse_flags (text, 0));
  ck_assert_int_eq (errno, EROFS);
  ck_assert_str_eq (ic_last_error () + strlen (ic_last_error ())
                    - strlen (" is read-only; give readonly=true"),
                    " is read-only; give readonly=true");
  ck_assert_msg (strncmp (ic_last_error (), "test.conf:2: r0: ", 17) == 0,
                 "%s", ic_last_error ());

  snprintf (text, sizeof text, "leaf r0 nbd=%s size=4M readonly=true\n",
            nbd_uri);
  ck_assert_ptr_null (parse_flags (text, 0));
  ck_assert_int_eq (errno, EINVAL);
  ck_assert_msg (strncmp (ic_last_error (), "test.conf:1: r0: ", 17) == 0 &&
                 strstr (ic_last_error (), "has 3145728 bytes, fewer than "
                         "size=4194304"), "%s", ic_last_error ());
}
END_TEST

/* A relative socket= of an nbd+unix URI is relative to the file's
 * directory, and made absolute: libnbd would take it from the current
 * directory at every (re)connection, and nbdkit in the background is in /.
 */
START_TEST (test_leaf_nbd_relative)
{
  char expect[PATH_SIZE * 2];

  ck_assert_ptr_null (parse_flags ("leaf r0 nbd=nbd+unix:///e?socket=no-such"
                                   ".sock timeout=1\n", 0));
  ck_assert_int_eq (errno, ENOENT);
  snprintf (expect, sizeof expect, "test.conf:1: r0: connect to "
            "nbd+unix:///e?socket=%s/no-such.sock: ", dir);
  ck_assert_msg (strncmp (ic_last_error (), expect, strlen (expect)) == 0,
                 "%s", ic_last_error ());
}
END_TEST

/* ---- stacked devices ---- */

START_TEST (test_devices)
{
  struct ic_graph *g;
  struct ic_device *dev;
  struct ic_crypto_profile *pr;
  char table[1024];

  g = parse ("engine ufs modes=AES-256-XTS:512,4096;Adiantum "
             "max-dun-bytes=16\n"
             "engine emmc modes=AES-256-XTS:4096 max-dun-bytes=8\n"
             "leaf d0 memory size=1M engine=ufs\n"
             "leaf d1 memory size=1M engine=emmc\n"
             "leaf d2 memory size=1M\n"
             "device top options=per_child_fallback\n"
             "  # the first half on d0\n"
             "  0 2048 linear d0 0\n"
             "\n"
             "  2048 2048 linear d1 0   # the second on d1\n"
             "end\n"
             "device mir\n"
             "  0 2048 mirror 2 d0 0 d1 0\n"
             "end   # comment after end\n"
             "device str\n"
             "0 2048 striped 2 8 d0 0 d1 0\n"
             " end \n"
             "device up\n"
             "0 4096 linear top 0\n"
             "end# a comment at once\n"
             "device none\n"
             "0 1024 linear d0 0\n"
             "1024 1024 linear d2 0\n"
             "end\n"
             "export vol0 device=up\n"
             "end\n");
  ck_assert_uint_eq (g->ndevices, 8);

  dev = ic_graph_find_device (g, "top");
  ck_assert_str_eq (dev->ops->type, "stacked");
  ck_assert_uint_eq (dev->size, 2 * MiB);
  ck_assert_uint_eq (ic_stacked_options (dev), IC_TABLE_PER_CHILD_FALLBACK);
  ic_stacked_table_text (dev, false, table, sizeof table);
  ck_assert_str_eq (table, "0 2048 linear d0 0\n2048 2048 linear d1 0\n");
  /* per_child_fallback: the union of the children's capabilities. */
  pr = dev->profile;
  ck_assert_ptr_nonnull (pr);
  ck_assert_uint_eq (pr->modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS],
                     512 | 4096);
  ck_assert_uint_eq (pr->modes_supported[IC_ENCRYPTION_MODE_ADIANTUM],
                     IC_ALL_DATA_UNIT_SIZES);
  ck_assert_uint_eq (pr->max_dun_bytes_supported, 16);

  /* Without the option: the intersection. */
  dev = ic_graph_find_device (g, "mir");
  ck_assert_uint_eq (dev->size, 1 * MiB);
  ck_assert_uint_eq (ic_stacked_options (dev), 0);
  ic_stacked_table_text (dev, false, table, sizeof table);
  ck_assert_str_eq (table, "0 2048 mirror 2 d0 0 d1 0\n");
  pr = dev->profile;
  ck_assert_ptr_nonnull (pr);
  ck_assert_uint_eq (pr->modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS],
                     4096);
  ck_assert_uint_eq (pr->modes_supported[IC_ENCRYPTION_MODE_ADIANTUM], 0);
  ck_assert_uint_eq (pr->max_dun_bytes_supported, 8);

  dev = ic_graph_find_device (g, "str");
  ck_assert_uint_eq (dev->size, 1 * MiB);
  ic_stacked_table_text (dev, false, table, sizeof table);
  ck_assert_str_eq (table, "0 2048 striped 2 8 d0 0 d1 0\n");

  /* Stacked on a stacked device. */
  dev = ic_graph_find_device (g, "up");
  ck_assert_uint_eq (dev->size, 2 * MiB);
  ic_stacked_table_text (dev, false, table, sizeof table);
  ck_assert_str_eq (table, "0 4096 linear top 0\n");

  /* A child without an engine: no inline encryption at all. */
  dev = ic_graph_find_device (g, "none");
  ck_assert_ptr_null (dev->profile);
  ic_graph_free (g);
}
END_TEST

/* ---- exports and their maps ---- */

START_TEST (test_exports)
{
  struct ic_graph *g;
  struct ic_export *exp;
  struct ic_ctx_range *ranges;
  size_t n;

  g = parse ("key k1 key=" KEY64 "\n"
             "key k2 mode=Adiantum data-unit-size=512 dun-bytes=32 key="
             KEY32 "\n"
             "key k3 mode=AES-128-CBC-ESSIV data-unit-size=8K key=" KEY16
             "\n"
             "leaf d0 memory size=2M\n"
             "leaf d1 memory size=2M\n"
             "leaf d2 memory size=1M\n"
             "export vol0 device=d0 description=\"two halves # and more\"\n"
             "  # a comment in the block\n"
             "\n"
             "  map 1M 1M key=k2 dun-base="
             "340282366920938463463374607431768211456\n"     /* 2^128 */
             "  map 0 512K key=k1 dun-base=0x10\n"
             "  map 512K 512K none\n"
             "end\n"
             "export vol1 device=d1 key=k3 dun-base=7\n"
             "export vol2 device=d2 key=k1\n"
             "export vol3 device=d2\n"
             "end\n"
             "export vol4 device=d2 description=a#b\n"
             "end\n");
  ck_assert_uint_eq (g->nexports, 5);
  /* The first is the default. */
  exp = g->exports[0];
  ck_assert_str_eq (exp->name, "vol0");
  ck_assert_str_eq (exp->description, "two halves # and more");
  ck_assert_ptr_eq (exp->dev, ic_graph_find_device (g, "d0"));
  ck_assert_uint_eq (exp->size, 2 * MiB);
  ck_assert_int_eq (ic_export_get_map (exp, &ranges, &n), 0);
  /* Sorted; the none line adds no range. */
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (ranges[0].start, 0);
  ck_assert_uint_eq (ranges[0].len, 512 * KiB);
  ck_assert_ptr_eq (ranges[0].key, ic_graph_find_key (g, "k1"));
  ck_assert_uint_eq (ranges[0].dun_base[0], 16);
  ck_assert_uint_eq (ranges[0].dun_base[1], 0);
  ck_assert_uint_eq (ranges[1].start, 1 * MiB);
  ck_assert_uint_eq (ranges[1].len, 1 * MiB);
  ck_assert_ptr_eq (ranges[1].key, ic_graph_find_key (g, "k2"));
  ck_assert_uint_eq (ranges[1].dun_base[0], 0);
  ck_assert_uint_eq (ranges[1].dun_base[1], 0);
  ck_assert_uint_eq (ranges[1].dun_base[2], 1);
  ck_assert_uint_eq (ranges[1].dun_base[3], 0);
  free (ranges);

  /* export ... key=: the whole device, one range. */
  exp = ic_graph_find_export (g, "vol1");
  ck_assert_str_eq (exp->description, "inlinecrypt export vol1 on d1");
  ck_assert_int_eq (ic_export_get_map (exp, &ranges, &n), 0);
  ck_assert_uint_eq (n, 1);
  ck_assert_uint_eq (ranges[0].start, 0);
  ck_assert_uint_eq (ranges[0].len, 2 * MiB);
  ck_assert_ptr_eq (ranges[0].key, ic_graph_find_key (g, "k3"));
  ck_assert_uint_eq (ranges[0].dun_base[0], 7);
  free (ranges);

  exp = ic_graph_find_export (g, "vol2");
  ck_assert_int_eq (ic_export_get_map (exp, &ranges, &n), 0);
  ck_assert_uint_eq (n, 1);
  ck_assert_uint_eq (ranges[0].dun_base[0], 0);
  free (ranges);

  /* A block without map lines: all plain. */
  exp = ic_graph_find_export (g, "vol3");
  ck_assert_int_eq (ic_export_get_map (exp, &ranges, &n), 0);
  ck_assert_uint_eq (n, 0);
  free (ranges);

  /* '#' starts a comment only at the start of a word. */
  exp = ic_graph_find_export (g, "vol4");
  ck_assert_str_eq (exp->description, "a#b");
  ic_graph_free (g);
}
END_TEST

/* A description is kept whole up to NBD's 4096 bytes, refused beyond. */
START_TEST (test_description)
{
  static const char head[] = "leaf d0 memory size=1M\n"
    "export vol0 device=d0 description=\"";
  static const char tail[] = "\"\nend\n";
  char desc[IC_EXPORT_DESCRIPTION_MAX + 2];
  char text[sizeof head + sizeof desc + sizeof tail];
  struct ic_graph *g;
  size_t i;

  ck_assert_int_eq (IC_EXPORT_DESCRIPTION_MAX, 4096);
  /* Words and spaces, and a last character that a cut would lose. */
  for (i = 0; i < IC_EXPORT_DESCRIPTION_MAX; i++)
    desc[i] = i % 10 == 9 ? ' ' : 'a' + i % 26;
  desc[IC_EXPORT_DESCRIPTION_MAX - 1] = 'Z';
  desc[IC_EXPORT_DESCRIPTION_MAX] = '\0';
  snprintf (text, sizeof text, "%s%s%s", head, desc, tail);
  g = parse (text);
  ck_assert_uint_eq (strlen (g->exports[0]->description),
                     IC_EXPORT_DESCRIPTION_MAX);
  ck_assert_str_eq (g->exports[0]->description, desc);
  ic_graph_free (g);

  /* One byte more. */
  desc[IC_EXPORT_DESCRIPTION_MAX] = 'Y';
  desc[IC_EXPORT_DESCRIPTION_MAX + 1] = '\0';
  snprintf (text, sizeof text, "%s%s%s", head, desc, tail);
  ck_assert_ptr_null (parse_flags (text, 0));
  ck_assert_int_eq (errno, EINVAL);
  ck_assert_str_eq (ic_last_error (), "test.conf:2: export vol0: "
                    "description= is 4097 bytes; NBD allows at most 4096");
}
END_TEST

/* ---- fallback and control ---- */

START_TEST (test_fallback)
{
  struct ic_graph *g;
  size_t i;

  /* Defaults. */
  g = parse ("leaf d0 memory size=1M\nexport v device=d0\nend\n");
  ck_assert_uint_eq (g->fallback_keyslots, 100);
  ck_assert (g->fallback_enabled);
  ck_assert (g->devices[0]->fallback_enabled);
  ic_graph_free (g);

  g = parse ("fallback keyslots=7 enabled=true\n"
             "leaf d0 memory size=1M\nexport v device=d0\nend\n");
  ck_assert_uint_eq (g->fallback_keyslots, 7);
  ck_assert (g->fallback_enabled);
  ic_graph_free (g);

  /* enabled=false turns it off for every device, whatever the leaf said,
   * wherever the line is.
   */
  g = parse ("leaf d0 memory size=1M fallback=true\n"
             "leaf d1 memory size=1M\n"
             "device top\n0 2048 linear d0 0\n2048 2048 linear d1 0\nend\n"
             "export v device=top\nend\n"
             "fallback enabled=off\n");
  ck_assert_uint_eq (g->fallback_keyslots, 100);
  ck_assert (!g->fallback_enabled);
  ck_assert_uint_eq (g->ndevices, 3);
  for (i = 0; i < g->ndevices; i++)
    ck_assert_msg (!g->devices[i]->fallback_enabled, "%s",
                   g->devices[i]->name);
  ic_graph_free (g);

  /* A per_child_fallback device built before the line counted on its
   * children's fallbacks: it takes what they support natively, and so
   * does one stacked on it.
   */
  g = parse ("engine ufs modes=AES-256-XTS:512,4096\n"
             "engine emmc modes=AES-256-XTS:4096\n"
             "leaf d0 memory size=1M engine=ufs\n"
             "leaf d1 memory size=1M engine=emmc\n"
             "device top options=per_child_fallback\n"
             "0 2048 linear d0 0\n2048 2048 linear d1 0\nend\n"
             "device up options=per_child_fallback\n"
             "0 4096 linear top 0\nend\n"
             "export v device=up\nend\n"
             "fallback enabled=false\n");
  for (i = 2; i < 4; i++) {
    const struct ic_crypto_profile *pr = g->devices[i]->profile;

    ck_assert_ptr_nonnull (pr);
    ck_assert_uint_eq (pr->modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS],
                       4096);
  }
  ic_graph_free (g);
}
END_TEST

START_TEST (test_control)
{
  const char *text;
  struct ic_graph *g;

  g = parse ("leaf d0 memory size=1M\nexport v device=d0\nend\n");
  ck_assert_ptr_null (g->control_path);
  ck_assert_ptr_null (g->control_at);
  ck_assert_uint_eq (g->control_mode, 0600);
  ic_graph_free (g);

  /* Relative to the file's directory. */
  g = parse ("control socket=run/ctl.sock mode=0660\n"
             "leaf d0 memory size=1M\nexport v device=d0\nend\n");
  ck_assert_str_eq (g->control_path, path_in_dir ("run/ctl.sock"));
  ck_assert_uint_eq (g->control_mode, 0660);
  ic_graph_free (g);

  /* Absolute stays. */
  g = parse ("leaf d0 memory size=1M\nexport v device=d0\nend\n"
             "control socket=/run/ic.sock mode=0\n");
  ck_assert_str_eq (g->control_path, "/run/ic.sock");
  ck_assert_uint_eq (g->control_mode, 0);
  ic_graph_free (g);

  /* Octal without the leading 0, and with more. */
  g = parse ("leaf d0 memory size=1M\nexport v device=d0\nend\n"
             "control socket=s mode=640\n");
  ck_assert_uint_eq (g->control_mode, 0640);
  ic_graph_free (g);
  g = parse ("leaf d0 memory size=1M\nexport v device=d0\nend\n"
             "control socket=s mode=000777\n");
  ck_assert_uint_eq (g->control_mode, 0777);
  ic_graph_free (g);

  /* No directory: paths stay as written. */
  text = "control socket=s.sock\nleaf d0 memory size=1M\n"
    "export v device=d0\nend\n";
  g = ic_conf_parse (text, strlen (text), "x.conf", NULL, 0);
  ck_assert_ptr_nonnull (g);
  ck_assert_str_eq (g->control_path, "s.sock");
  /* The line, for the messages of the socket's creation. */
  ck_assert_str_eq (g->control_at, "x.conf:1");
  ic_graph_free (g);
}
END_TEST

/* ---- syntax ---- */

START_TEST (test_syntax)
{
  static const char text[] =
    "# a comment\r\n"
    "   \t  \r\n"
    "key \"k1\" key=" KEY64 "   # trailing comment\r\n"
    "leaf d0 memory \"size=1M\"\r\n"
    "export vol0 device=d0 key=k1 description=\"\"\r\n"
    "export vol1 device=d0 description=\"a \"b\" c\"\r\n"
    "end\n"
    /* The longest name, of every character allowed. */
    "leaf Az09_.-3456789b123456789c123456789d123456789e123456789f12345678"
    " memory size=1M\n"
    "export e device=Az09_.-3456789b123456789c123456789d123456789e12345678"
    "9f12345678\n"
    "end";                      /* no newline at the end */
  struct ic_graph *g = parse (text);

  ck_assert_uint_eq (g->nexports, 3);
  ck_assert_str_eq (g->exports[0]->description, "");
  /* Quotes group; they do not nest. */
  ck_assert_str_eq (g->exports[1]->description, "a b c");
  ic_graph_free (g);
}
END_TEST

/* ---- dry run ---- */

START_TEST (test_dry_run)
{
  struct ic_graph *g;
  struct ic_device *dev;
  struct ic_crypto_key *k;
  struct stat st;

  g = parse_flags ("key k1 key=+no-such.hex\n"
                   "key k2 mode=Adiantum key=not-even-hex\n"
                   "leaf d0 file=nodir/d0.img size=2M\n"
                   "leaf d1 file=d1.img\n"
                   "leaf r0 nbd=nbd+unix:///?socket=/nonexistent.sock\n"
                   "export vol0 device=d0 key=k1\n", IC_CONF_DRY_RUN);
  ck_assert_msg (g != NULL, "%s", ic_last_error ());
  /* Made-up keys of the mode's size. */
  k = ic_graph_find_key (g, "k1");
  ck_assert_uint_eq (k->size, 64);
  k = ic_graph_find_key (g, "k2");
  ck_assert_uint_eq (k->size, 32);
  /* File and nbd leaves are memory, of size= or 1G. */
  dev = ic_graph_find_device (g, "d0");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "memory");
  ck_assert_uint_eq (dev->size, 2 * MiB);
  dev = ic_graph_find_device (g, "d1");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "memory");
  ck_assert_uint_eq (dev->size, 1024 * MiB);
  dev = ic_graph_find_device (g, "r0");
  ck_assert_str_eq (ic_device_to_leaf (dev)->ops->type, "memory");
  ic_graph_free (g);
  ck_assert_int_ne (stat (path_in_dir ("d1.img"), &st), 0);

  /* Syntax and references are still checked. */
  ck_assert_ptr_null (parse_flags ("leaf d0 memory size=1M engine=ufs\n",
                                   IC_CONF_DRY_RUN));
  ck_assert_int_eq (errno, EINVAL);
  ck_assert_str_eq (ic_last_error (), "test.conf:1: leaf d0: engine=ufs: no "
                    "engine of that name is defined above");
  ck_assert_ptr_null (parse_flags ("key k1 dun-bytes=17 key=+x\n",
                                   IC_CONF_DRY_RUN));
  ck_assert_str_eq (ic_last_error (), "test.conf:1: key k1: dun-bytes=17: "
                    "AES-256-XTS takes 1 to 16 DUN bytes");
}
END_TEST

/* ---- ic_conf_load ---- */

START_TEST (test_load)
{
  char path[PATH_SIZE];
  char expect[PATH_SIZE * 2];
  char cwd[PATH_MAX];
  struct ic_graph *g;

  write_file ("ic.conf",
              "key k1 key=+k64.hex\n"
              "leaf d0 file=d0.img size=1M\n"
              "export vol0 device=d0 key=k1\n"
              "control socket=ctl.sock\n", 0644);
  snprintf (path, sizeof path, "%s/ic.conf", dir);
  /* From elsewhere: the key file and the image are the file's dir's. */
  ck_assert_ptr_nonnull (getcwd (cwd, sizeof cwd));
  ck_assert_int_eq (chdir ("/"), 0);
  g = ic_conf_load (path);
  ck_assert_msg (g != NULL, "%s", ic_last_error ());
  assert_key_bytes (ic_graph_find_key (g, "k1"), KEY64);
  ck_assert_str_eq (g->control_path, path_in_dir ("ctl.sock"));
  ic_graph_free (g);
  ck_assert_int_eq (access (path_in_dir ("d0.img"), F_OK), 0);

  /* A name without a directory: the current one. */
  ck_assert_int_eq (chdir (dir), 0);
  g = ic_conf_load ("ic.conf");
  ck_assert_msg (g != NULL, "%s", ic_last_error ());
  ck_assert_str_eq (g->control_path, "./ctl.sock");
  ic_graph_free (g);
  ck_assert_int_eq (chdir (cwd), 0);

  /* Messages name the file as given. */
  write_file ("bad.conf", "leaf d0 memory size=1M\nkey k1 key=+open.hex\n",
              0600);
  snprintf (path, sizeof path, "%s/bad.conf", dir);
  ck_assert_ptr_null (ic_conf_load (path));
  ck_assert_int_eq (errno, EACCES);
  snprintf (expect, sizeof expect, "%s:2: key k1: key=: key file %s/open.hex "
            "is accessible by group or others (mode 0644); chmod 600 it",
            path, dir);
  ck_assert_str_eq (ic_last_error (), expect);

  snprintf (path, sizeof path, "%s/no-such.conf", dir);
  ck_assert_ptr_null (ic_conf_load (path));
  ck_assert_int_eq (errno, ENOENT);
  snprintf (expect, sizeof expect, "%s: No such file or directory", path);
  ck_assert_str_eq (ic_last_error (), expect);

  ck_assert_ptr_null (ic_conf_load (dir));
  ck_assert_int_eq (errno, EINVAL);
  snprintf (expect, sizeof expect, "%s: not a regular file of at most "
            "16777216 bytes", dir);
  ck_assert_str_eq (ic_last_error (), expect);
}
END_TEST

/* A file in / resolves its relative paths in /, not in the current
 * directory.  Only where / is writable (as root).
 */
START_TEST (test_load_in_root)
{
  char conf[64];
  char key[64];
  char text[256];
  char cwd[PATH_MAX];
  struct ic_graph *g;

  if (access ("/", W_OK) != 0)
    return;
  snprintf (key, sizeof key, "/test_conf.%ld.hex", (long) getpid ());
  snprintf (conf, sizeof conf, "/test_conf.%ld.conf", (long) getpid ());
  snprintf (text, sizeof text, "key k1 key=+%s\nleaf d0 memory size=1M\n"
            "export vol0 device=d0 key=k1\n", key + 1);
  ck_assert_ptr_nonnull (getcwd (cwd, sizeof cwd));
  /* The test's directory holds no such key file. */
  ck_assert_int_eq (chdir (dir), 0);
  {
    int fd = open (key, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, KEY64 "\n", 129), 129);
    close (fd);
    fd = open (conf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, text, strlen (text)),
                      (ssize_t) strlen (text));
    close (fd);
  }
  g = ic_conf_load (conf);
  unlink (key);
  unlink (conf);
  ck_assert_int_eq (chdir (cwd), 0);
  ck_assert_msg (g != NULL, "%s", ic_last_error ());
  ic_graph_free (g);
}
END_TEST

/* A key in hex is taken only from a file that group and others cannot
 * access, as a key file; key=+FILE is taken from any.
 */
#define PRE_SHARED "key k1 key=" KEY64 "\nleaf d0 memory size=1M\n" \
  "export vol0 device=d0 key=k1\n"

START_TEST (test_load_shared)
{
  static const char *const modes[] = { "0640", "0604", "0620", "0602" };
  char path[PATH_SIZE];
  struct ic_graph *g;
  size_t i;

  snprintf (path, sizeof path, "%s/shared.conf", dir);
  for (i = 0; i < 4; i++) {
    write_file ("shared.conf", "# keys\n" PRE_SHARED,
                strtol (modes[i], NULL, 8));
    errno = 0;
    ck_assert_ptr_null (ic_conf_load (path));
    ck_assert_int_eq (errno, EACCES);
    ck_assert_ptr_nonnull (strstr (ic_last_error (),
                                   "shared.conf:2: key k1: key=HEX in a "
                                   "file that group or others may access; "
                                   "chmod 600 "));
  }
  write_file ("shared.conf", "# keys\n" PRE_SHARED, 0600);
  g = ic_conf_load (path);
  ck_assert_msg (g != NULL, "%s", ic_last_error ());
  ic_graph_free (g);
  write_file ("shared.conf", "key k1 key=+k64.hex\nleaf d0 memory size=1M\n"
              "export vol0 device=d0 key=k1\n", 0644);
  g = ic_conf_load (path);
  ck_assert_msg (g != NULL, "%s", ic_last_error ());
  ic_graph_free (g);
}
END_TEST

/* A refused configuration leaves none of the files it created: a
 * wrapping key, a key blob (and a leaf's file); a later one, corrected,
 * starts from where the user was.
 */
#define WRAPPED_CONF \
  "engine e key-types=raw,hw_wrapped wrapping-key=wk\n" \
  "key k1 type=hw_wrapped engine=e blob=k1.blob generate\n" \
  "leaf d1 file=d1.img size=1M engine=e\n" \
  "export vol0 device=d1 key=k1\n"

START_TEST (test_refused_leaves_no_files)
{
  static const char *const files[] = { "wk", "k1.blob", "d1.img" };
  char path[PATH_SIZE];
  struct ic_graph *g;
  size_t i;

  g = parse_flags (WRAPPED_CONF "frobnicate\n", 0);
  ck_assert_ptr_null (g);
  for (i = 0; i < 3; i++) {
    snprintf (path, sizeof path, "%s/%s", dir, files[i]);
    ck_assert_msg (access (path, F_OK) == -1 && errno == ENOENT,
                   "%s was left behind", files[i]);
  }
  g = parse (WRAPPED_CONF);
  ic_graph_free (g);
  for (i = 0; i < 3; i++) {
    snprintf (path, sizeof path, "%s/%s", dir, files[i]);
    ck_assert_int_eq (access (path, F_OK), 0);
  }
}
END_TEST

/* A path too long to be shown whole in a message loses its start, not
 * the line number.
 */
START_TEST (test_long_path)
{
  char path[1200];
  const char *e;

  memset (path, 'd', sizeof path);
  memcpy (path, "/start", 6);
  memcpy (path + sizeof path - 12, "/x/end.conf", 12);
  ck_assert_ptr_null (ic_conf_parse ("# a\n# b\nfrobnicate\n", 20, path,
                                     dir, 0));
  e = ic_last_error ();
  ck_assert_msg (strncmp (e, "...", 3) == 0, "%s", e);
  ck_assert_ptr_nonnull (strstr (e, "/x/end.conf:3: unknown keyword "
                                 "'frobnicate'"));
  ck_assert_ptr_null (strstr (e, "/start"));
}
END_TEST

/* ---- every error ---- */

struct conf_error {
  const char *text;
  size_t len;                   /* 0: strlen (text) */
  int err;
  const char *start;            /* the message starts with this */
  const char *also;             /* and contains this (or NULL) */
};

/* Lines 1 and 2 of many cases. */
#define K1 "key k1 key=" KEY64 "\n"
#define D0 "leaf d0 memory size=1M\n"
#define PRE K1 D0
/* An engine with a key manager (its wrapping key made in the test's
 * directory).
 */
#define WE "engine e key-types=raw,hw_wrapped wrapping-key=wk\n"
#define W8 " a a a a a a a a"

static const struct conf_error conf_errors[] = {
  /* Lines and words. */
  { "frobnicate x\n", 0, EINVAL,
    "test.conf:1: unknown keyword 'frobnicate'; expected key, engine, leaf, "
    "device, export, fallback or control", NULL },
  { PRE "end\n", 0, EINVAL,
    "test.conf:3: 'end' without a device or export block", NULL },
  { "# ok\nkey k1\0 key=00\n", 20, EINVAL,
    "test.conf:2: NUL byte in the line", NULL },
  { "fallback" W8 W8 W8 W8 W8 W8 W8 W8 "\n", 0, EINVAL,
    "test.conf:1: too many words (at most 64)", NULL },
  { PRE "export vol0 device=d0 description=\"abc\n", 0, EINVAL,
    "test.conf:3: unterminated \" quote", NULL },
  { PRE, 0, EINVAL,
    "test.conf:2: no export is defined; add e.g. 'export vol0 device=NAME "
    "key=KEY'", NULL },
  { "", 0, EINVAL,
    "test.conf: no export is defined (the file is empty); add e.g. 'export "
    "vol0 device=NAME key=KEY'", NULL },
  { PRE "device top\n0 2048 linear top 0\nend\n", 0, EINVAL,
    "test.conf:4: linear: top is the device itself: a device cannot stack "
    "on itself", NULL },
  { PRE "device top\n0 2048 linear d0 0\n", 0, EINVAL,
    "test.conf:3: device block has no 'end'", NULL },
  { PRE "export vol0 device=d0\nmap 0 4K key=k1\n", 0, EINVAL,
    "test.conf:3: export block has no 'end'", NULL },
  { PRE "export vol0 device=d0\nmap 0 4K key=k1\nkey k2 key=" KEY64
    "\nend\n", 0, EINVAL,
    "test.conf:5: export vol0: expected 'map OFFSET LENGTH ...' or 'end', "
    "got 'key'", NULL },

  /* Names. */
  { "key\n", 0, EINVAL, "test.conf:1: key: expected a name after 'key'",
    NULL },
  { "engine\n", 0, EINVAL,
    "test.conf:1: engine: expected a name after 'engine'", NULL },
  { "leaf\n", 0, EINVAL, "test.conf:1: leaf: expected a name after 'leaf'",
    NULL },
  { "device\nend\n", 0, EINVAL,
    "test.conf:1: device: expected a name after 'device'", NULL },
  { "export  # no name\n", 0, EINVAL,
    "test.conf:1: export: expected a name after 'export'", NULL },
  { "leaf d/0 memory size=1M\n", 0, EINVAL,
    "test.conf:1: leaf: invalid name 'd/0': use 1 to 63 letters, digits, "
    "'_', '.' or '-'", NULL },
  { "key \"\" key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key: invalid name '': use 1 to 63 letters", NULL },
  { "engine g123456789h123456789i123456789j123456789k123456789l123456789"
    "m123\n", 0, EINVAL, "test.conf:1: engine: invalid name 'g123456789",
    NULL },
  { "key mode=AES-256-XTS key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key: invalid name 'mode=AES-256-XTS'", NULL },

  /* Parameters. */
  { "key k1 colour=red key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: unknown parameter 'colour'; expected mode=, "
    "data-unit-size=, dun-bytes=, type= or key=", NULL },
  /* A key=HEX gone wrong: what a message would echo is a key. */
  { "key k1 key=" HEX_A HEX_B " " HEX_C HEX_D "\n", 0, EINVAL,
    "test.conf:1: key k1: unknown parameter '<64 characters, not shown: "
    "they may be key bytes>'", NULL },
  { "key k1 " KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: unknown parameter '<128 characters, not shown",
    NULL },
  { "key k1 key:" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: unknown parameter '<132 characters, not shown",
    NULL },
  { "key " KEY32 "\n", 0, EINVAL,
    "test.conf:1: key: invalid name '<64 characters, not shown", NULL },
  { KEY64 "\n", 0, EINVAL,
    "test.conf:1: unknown keyword '<128 characters, not shown", NULL },
  { PRE "export vol0 device=d0 key=" KEY16 "\n", 0, EINVAL,
    "test.conf:3: export vol0: key=<32 characters, not shown: they may be "
    "key bytes>: no key of that name is defined above", NULL },
  { PRE "export vol0 device=d0\nmap 0 4K key=" KEY64 "\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: key=<128 characters, not shown", NULL },
  { PRE "export vol0 device=d0\n" KEY64 "\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: expected 'map OFFSET LENGTH ...' or 'end', "
    "got '<128 characters, not shown", NULL },
  { PRE "export vol0 device=d0\nend " KEY64 "\n", 0, EINVAL,
    "test.conf:4: export vol0: 'end' takes nothing after it, got '<128 "
    "characters, not shown", NULL },
  { PRE "device top\n0 2048 linear d0 0\nend " KEY64 "\n", 0, EINVAL,
    "test.conf:5: device top: 'end' takes nothing after it, got '<128 "
    "characters, not shown", NULL },
  { "key k1 mode=AES-256-XTS mode=Adiantum key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: mode= is given twice", NULL },
  { "key k1 key=" KEY64 " key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: key= is given twice", NULL },
  { "key k1 key\n", 0, EINVAL, "test.conf:1: key k1: expected key=VALUE",
    NULL },

  /* key */
  { "key k1 mode=AES-256-XTS\n", 0, EINVAL,
    "test.conf:1: key k1: expected key=+FILE (a file holding the key in "
    "hex) or key=HEX", NULL },
  { "key k1 mode=AES-512 key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: mode=: unknown mode 'AES-512'; expected one of "
    "AES-256-XTS, AES-128-CBC-ESSIV, Adiantum, SM4-XTS", NULL },
  { "key k1 data-unit-size=1000 key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: data-unit-size=: expected a data unit size, a "
    "power of two from 512 to 65536, got '1000'", NULL },
  { "key k1 data-unit-size=128K key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: data-unit-size=: expected a data unit size", NULL },
  { "key k1 dun-bytes=0 key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: dun-bytes=: expected a number from 1 to 32, got "
    "'0'", NULL },
  { "key k1 mode=Adiantum dun-bytes=33 key=" KEY32 "\n", 0, EINVAL,
    "test.conf:1: key k1: dun-bytes=: expected a number from 1 to 32, got "
    "'33'", NULL },
  { "key k1 type=hw_wrapped key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: key= is for raw keys; a hw_wrapped key takes "
    "blob=FILE", NULL },
  { "key k1 type=wrapped key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: type=wrapped: expected raw or hw_wrapped", NULL },
  { "key k1 type=hw_wrapped blob=b\n", 0, EINVAL,
    "test.conf:1: key k1: type=hw_wrapped: expected engine=ENGINE, the "
    "engine whose key manager wraps the key", NULL },
  { "key k1 type=hw_wrapped engine=e blob=b\n", 0, EINVAL,
    "test.conf:1: key k1: engine=e: no engine of that name is defined above",
    NULL },
  { "engine e\nkey k1 type=hw_wrapped engine=e blob=b generate\n", 0,
    EOPNOTSUPP, "test.conf:2: key k1: engine=e: the engine does not take "
    "hw_wrapped keys; give it key-types=raw,hw_wrapped wrapping-key=FILE",
    NULL },
  { WE "key k1 type=hw_wrapped engine=e\n", 0, EINVAL,
    "test.conf:2: key k1: type=hw_wrapped: expected blob=FILE", NULL },
  { WE "key k1 type=hw_wrapped engine=e mode=Adiantum blob=b\n", 0, EINVAL,
    "test.conf:2: key k1: type=hw_wrapped: mode=Adiantum: the hardware "
    "derives an AES-256-XTS key from a wrapped key", NULL },
  { WE "key k1 type=hw_wrapped engine=e blob=b generate import=+k32.hex\n",
    0, EINVAL, "test.conf:2: key k1: import= and generate exclude each other",
    NULL },
  { WE "key k1 type=hw_wrapped engine=e blob=none.blob\n", 0, ENOENT,
    "test.conf:2: key k1: blob=none.blob: no such file; add import=+RAWFILE "
    "or generate to create the key", NULL },
  { WE "key k1 type=hw_wrapped engine=e blob=k32-as-64.hex\n", 0, EBADMSG,
    "test.conf:2: key k1: blob=k32-as-64.hex: e: prepare key: invalid key: "
    "a long-term wrapped key is 61 bytes, got 32 (a blob of another "
    "wrapping key, or damaged?)", NULL },
  { WE "key k1 type=hw_wrapped engine=e blob=group.hex\n", 0, EACCES,
    "test.conf:2: key k1: blob=: key file", "is accessible by group or "
    "others" },
  { WE "key k1 type=hw_wrapped engine=e blob=new.blob import=+k64.hex "
    "generat\n", 0, EINVAL,
    "test.conf:2: key k1: unknown parameter 'generat'; expected mode=, "
    "data-unit-size=, dun-bytes=, type=, engine=, blob=, import= or "
    "generate", NULL },
  { WE "key k1 type=hw_wrapped engine=e blob=new.blob import=00112233\n", 0,
    EINVAL, "test.conf:2: key k1: import: import key: a raw key must be 16 "
    "to 64 bytes, got 4", NULL },
  { "key k1 key=" KEY32 "\n", 0, EINVAL,
    "test.conf:1: key k1: AES-256-XTS needs a key of exactly 64 bytes (128 "
    "hex digits), got 32 bytes", NULL },
  { "\nkey k1 key=+k32-as-64.hex\n", 0, EINVAL,
    "test.conf:2: key k1: AES-256-XTS needs a key of exactly 64 bytes (128 "
    "hex digits), got 32 bytes", NULL },
  { "key k1 mode=AES-128-CBC-ESSIV key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: AES-128-CBC-ESSIV needs a key of exactly 16 bytes "
    "(32 hex digits), got 64 bytes", NULL },
  { "key k1 mode=Adiantum key=" KEY16 "\n", 0, EINVAL,
    "test.conf:1: key k1: Adiantum needs a key of exactly 32 bytes (64 hex "
    "digits), got 16 bytes", NULL },
  { "key k1 mode=SM4-XTS key=+k16.hex\n", 0, EINVAL,
    "test.conf:1: key k1: SM4-XTS needs a key of exactly 32 bytes (64 hex "
    "digits), got 16 bytes", NULL },
  { "key k1 key=zz" HEX_A HEX_B HEX_C "\n", 0, EINVAL,
    "test.conf:1: key k1: key=: character 1 is not a hexadecimal digit",
    NULL },
  { "key k1 key=abc\n", 0, EINVAL,
    "test.conf:1: key k1: key=: odd number of hexadecimal digits (3)", NULL },
  { "key k1 key=\n", 0, EINVAL,
    "test.conf:1: key k1: key=: expected hexadecimal digits, got nothing",
    NULL },
  { "key k1 key=" KEY64 KEY16 "\n", 0, E2BIG,
    "test.conf:1: key k1: key=: 80 bytes is too long, at most 64 bytes are "
    "accepted", NULL },
  { "key k1 key=" WEAK64 "\n", 0, EINVAL,
    "test.conf:1: key k1: the two halves of an AES-256-XTS key must differ",
    NULL },
  { "key k1 mode=SM4-XTS key=" WEAK32 "\n", 0, EINVAL,
    "test.conf:1: key k1: the two halves of an SM4-XTS key must differ",
    NULL },
  { "key k1 dun-bytes=17 key=" KEY64 "\n", 0, EINVAL,
    "test.conf:1: key k1: dun-bytes=17: AES-256-XTS takes 1 to 16 DUN "
    "bytes", NULL },
  { "key k1 mode=AES-128-CBC-ESSIV dun-bytes=32 key=" KEY16 "\n", 0, EINVAL,
    "test.conf:1: key k1: dun-bytes=32: AES-128-CBC-ESSIV takes 1 to 16 DUN "
    "bytes", NULL },
  { "key k1 key=+no-such.hex\n", 0, ENOENT,
    "test.conf:1: key k1: key=: open ",
    "/no-such.hex: No such file or directory" },
  { "key k1 key=+open.hex\n", 0, EACCES,
    "test.conf:1: key k1: key=: key file ",
    "/open.hex is accessible by group or others (mode 0644); chmod 600 it" },
  { "key k1 key=+group.hex\n", 0, EACCES,
    "test.conf:1: key k1: key=: key file ", "(mode 0640); chmod 600 it" },
  { K1 K1, 0, EEXIST, "test.conf:2: key k1 is already defined", NULL },

  /* engine */
  { "engine e keyslots=0\n", 0, EINVAL,
    "test.conf:1: engine e: keyslots=: expected a number from 1 to 1024, "
    "got '0'", NULL },
  { "engine e keyslots=1025\n", 0, EINVAL,
    "test.conf:1: engine e: keyslots=: expected a number from 1 to 1024, "
    "got '1025'", NULL },
  { "engine e max-dun-bytes=33\n", 0, EINVAL,
    "test.conf:1: engine e: max-dun-bytes=: expected a number from 1 to 32",
    NULL },
  { "engine e program-us=10000001\n", 0, EINVAL,
    "test.conf:1: engine e: program-us=: expected a number from 0 to "
    "10000000, got '10000001'", NULL },
  { "engine e modes=AES:4096\n", 0, EINVAL,
    "test.conf:1: engine e: modes=: unknown mode 'AES'", NULL },
  { "engine e modes=AES-256-XTS:4000\n", 0, EINVAL,
    "test.conf:1: engine e: modes=: expected a data unit size, a power of "
    "two from 512 to 65536, got '4000'", NULL },
  { "engine e modes=AES-256-XTS:\n", 0, EINVAL,
    "test.conf:1: engine e: modes=: AES-256-XTS: expected data unit sizes "
    "after ':'", NULL },
  { "engine e modes=\n", 0, EINVAL,
    "test.conf:1: engine e: modes=: expected MODE[:SIZE,...][;MODE...], got "
    "''", NULL },
  { "engine e key-types=aes\n", 0, EINVAL,
    "test.conf:1: engine e: key-types=: unknown key type 'aes'; expected "
    "raw, hw_wrapped or both, comma-separated", NULL },
  { "engine e key-types=\n", 0, EINVAL,
    "test.conf:1: engine e: key-types=: expected raw, hw_wrapped or both",
    NULL },
  { "engine e key-types=raw,\n", 0, EINVAL,
    "test.conf:1: engine e: key-types=: empty item in 'raw,' (a stray ','); "
    "expected raw, hw_wrapped or both, comma-separated", NULL },
  { "engine e key-types=raw,raw\n", 0, EINVAL,
    "test.conf:1: engine e: key-types=: key type 'raw' is given twice",
    NULL },
  { "engine e modes=AES-256-XTS:4096,\n", 0, EINVAL,
    "test.conf:1: engine e: modes=: empty data unit size in "
    "'AES-256-XTS:4096,' (a stray ','); expected MODE:SIZE[,SIZE...]", NULL },
  { "engine e modes=AES-256-XTS:4096;;SM4-XTS\n", 0, EINVAL,
    "test.conf:1: engine e: modes=: empty mode entry in "
    "'AES-256-XTS:4096;;SM4-XTS' (a stray ';'); expected "
    "MODE[:SIZE,...][;MODE...]", NULL },
  { "engine e modes=AES-256-XTS:512;AES-256-XTS:4096\n", 0, EINVAL,
    "test.conf:1: engine e: modes=: AES-256-XTS is given twice; give each "
    "mode once, with all its data unit sizes: AES-256-XTS:512,4096", NULL },
  { "engine e key-types=raw,hw_wrapped\n", 0, EINVAL,
    "test.conf:1: engine e: key-types=hw_wrapped: expected "
    "wrapping-key=FILE, the key manager's long-term wrapping key", NULL },
  { "engine e wrapping-key=wk\n", 0, EINVAL,
    "test.conf:1: engine e: wrapping-key= is for hardware-wrapped keys: add "
    "key-types=raw,hw_wrapped (or hw_wrapped)", NULL },
  { "engine e key-types=hw_wrapped wrapping-key=open.hex\n", 0, EACCES,
    "test.conf:1: engine e: wrapping-key=open.hex: wrapping key ",
    "open.hex: the file is accessible by group or others (mode 0644); "
    "chmod 600 it" },
  { "engine e key-types=hw_wrapped wrapping-key=k64.hex\n", 0, EINVAL,
    "test.conf:1: engine e: wrapping-key=k64.hex: wrapping key ",
    "k64.hex: expected 64 hexadecimal digits (32 bytes)" },
  { "engine e slots=3\n", 0, EINVAL,
    "test.conf:1: engine e: unknown parameter 'slots'; expected keyslots=, "
    "modes=, max-dun-bytes=, program-us=, key-types= or wrapping-key=",
    NULL },
  { "engine e\nengine e\n", 0, EEXIST,
    "test.conf:2: engine e is already defined", NULL },

  /* leaf */
  { PRE "leaf d1 size=1M\n", 0, EINVAL,
    "test.conf:3: leaf d1: expected exactly one of memory, file=PATH or "
    "nbd=URI", NULL },
  { PRE "leaf d1 memory file=d1.img size=1M\n", 0, EINVAL,
    "test.conf:3: leaf d1: expected exactly one of memory, file=PATH or "
    "nbd=URI", NULL },
  { PRE "leaf d1 memory\n", 0, EINVAL,
    "test.conf:3: leaf d1: a memory leaf needs size=", NULL },
  { PRE "leaf d1 memory size=0\n", 0, EINVAL,
    "test.conf:3: leaf d1: a memory leaf needs size=", NULL },
  { PRE "leaf d1 memory memory size=1M\n", 0, EINVAL,
    "test.conf:3: leaf d1: memory is given twice", NULL },
  { PRE "leaf d1 file=a.img file=b.img\n", 0, EINVAL,
    "test.conf:3: leaf d1: file= is given twice", NULL },
  { PRE "leaf d1 memory size=1M engine=ufs\n", 0, EINVAL,
    "test.conf:3: leaf d1: engine=ufs: no engine of that name is defined "
    "above", NULL },
  { PRE "leaf d1 memory size=1Q\n", 0, EINVAL,
    "test.conf:3: leaf d1: size=: expected a size (a number with an "
    "optional K, M, G, T, P or s suffix), got '1Q'", NULL },
  { PRE "leaf d1 memory size=16777216T\n", 0, EINVAL,
    "test.conf:3: leaf d1: size=: size '16777216T' is too large", NULL },
  { PRE "leaf d1 memory size=18446744073709551616\n", 0, EINVAL,
    "test.conf:3: leaf d1: size=: size '18446744073709551616' is too large",
    NULL },
  { PRE "leaf d1 file=d1.img readonly=maybe\n", 0, EINVAL,
    "test.conf:3: leaf d1: readonly=: expected true or false, got 'maybe'",
    NULL },
  { PRE "leaf d1 memory size=1M readonly=true\n", 0, EINVAL,
    "test.conf:3: leaf d1: readonly= applies to file= and nbd= leaves, not "
    "to a memory leaf", NULL },
  { PRE "leaf d1 memory size=1M readonly=false\n", 0, EINVAL,
    "test.conf:3: leaf d1: readonly= applies to file= and nbd= leaves, not "
    "to a memory leaf", NULL },
  { PRE "leaf d1 memory size=1M timeout=5\n", 0, EINVAL,
    "test.conf:3: leaf d1: timeout= applies to nbd= leaves only, not to a "
    "memory leaf", NULL },
  { PRE "leaf d1 file=d1.img size=1M timeout=0\n", 0, EINVAL,
    "test.conf:3: leaf d1: timeout= applies to nbd= leaves only, not to a "
    "file= leaf", NULL },
  { PRE "leaf d1 memory size=1M timeout=x\n", 0, EINVAL,
    "test.conf:3: leaf d1: timeout=: expected a number from 0 to 3600, got "
    "'x'", NULL },
  { PRE "leaf d1 memory size=1M fallback=2\n", 0, EINVAL,
    "test.conf:3: leaf d1: fallback=: expected true or false, got '2'",
    NULL },
  { PRE "leaf d1 memory size=1M colour=red\n", 0, EINVAL,
    "test.conf:3: leaf d1: unknown parameter 'colour'; expected memory, "
    "file=, nbd=, size=, engine=, readonly=, fallback= or timeout=", NULL },
  { PRE "leaf d1 memory=yes size=1M\n", 0, EINVAL,
    "test.conf:3: leaf d1: unknown parameter 'memory'", NULL },
  { PRE "leaf d1 memory size=5P\n", 0, EINVAL,
    "test.conf:3: d1: memory size 5629499534213120 is too large (at most 4 "
    "PiB)", NULL },
  { PRE "leaf d1 file=no-dir/d1.img size=1M\n", 0, ENOENT,
    "test.conf:3: d1: open ", "/no-dir/d1.img: No such file or directory" },
  { PRE "leaf d1 file=new.img\n", 0, EINVAL,
    "test.conf:3: d1: ", "new.img does not exist: give size= to create it" },
  { PRE "leaf r0 nbd=nbd+unix:///?socket=/nonexistent/nbd.sock\n", 0, ENOENT,
    "test.conf:3: r0: connect to nbd+unix:///?socket=/nonexistent/nbd.sock: ",
    NULL },
  { PRE "leaf d0 memory size=2M\n", 0, EEXIST,
    "test.conf:3: device d0 is already defined", NULL },

  /* device */
  { PRE "device top options=fast\n0 2048 linear d0 0\nend\n", 0, EINVAL,
    "test.conf:3: device top: options=: unknown option 'fast'; expected "
    "per_child_fallback", NULL },
  { PRE "device top options=per_child_fallback,\n0 2048 linear d0 0\nend\n",
    0, EINVAL, "test.conf:3: device top: options=: empty item in "
    "'per_child_fallback,' (a stray ','); expected per_child_fallback",
    NULL },
  { PRE "device top options=\n0 2048 linear d0 0\nend\n", 0, EINVAL,
    "test.conf:3: device top: options=: expected per_child_fallback", NULL },
  { PRE "device top options=per_child_fallback,per_child_fallback\n"
    "0 2048 linear d0 0\nend\n", 0, EINVAL,
    "test.conf:3: device top: options=: option 'per_child_fallback' is "
    "given twice", NULL },
  { PRE "device top colour=red\n0 2048 linear d0 0\nend\n", 0, EINVAL,
    "test.conf:3: device top: unknown parameter 'colour'; expected options=",
    NULL },
  { PRE "device top options=a options=b\n0 2048 linear d0 0\nend\n", 0,
    EINVAL, "test.conf:3: device top: options= is given twice", NULL },
  { PRE "device d0\n0 2048 linear d0 0\nend\n", 0, EEXIST,
    "test.conf:3: device d0: a device of that name is already defined",
    NULL },
  { PRE "device top\n\n  # a comment\n0 2048 linear nosuch 0\nend\n", 0,
    EINVAL, "test.conf:6: linear: unknown device 'nosuch'", NULL },
  { PRE "device top\n0 1024 linear d0 0\n# c\n2048 1024 linear d0 0\nend\n",
    0, EINVAL,
    "test.conf:6: target starts at sector 2048 but the table so far ends at "
    "sector 1024 (targets must follow each other from sector 0 without gaps)",
    NULL },
  { PRE "device top\n0 2048 crypt d0 0\nend\n", 0, EINVAL,
    "test.conf:4: unknown target type 'crypt'", NULL },
  { PRE "device top\n0 2048\nend\n", 0, EINVAL,
    "test.conf:4: expected <start> <length> <target> <args...>", NULL },
  { PRE "device top\n0 4096 linear d0 0\nend\n", 0, EINVAL,
    "test.conf:4: linear: ", "2048" },
  { PRE "device top\n\n# nothing\nend\n", 0, EINVAL,
    "test.conf:3: top: load table: the table has no targets", NULL },
  /* A stray word after 'end' is an error at that line, not a table line
   * (which left the block without its 'end').
   */
  { PRE "device top\n0 2048 linear d0 0\nend junk\n", 0, EINVAL,
    "test.conf:5: device top: 'end' takes nothing after it, got 'junk'",
    NULL },
  { PRE "device top\n0 2048 linear d0 0\n  end\tjunk more # c\n"
    "export vol0 device=top\nend\n", 0, EINVAL,
    "test.conf:5: device top: 'end' takes nothing after it, got 'junk'",
    NULL },
  { PRE "device top\n0 2048 linear d0 0\nendx\n", 0, EINVAL,
    "test.conf:3: device block has no 'end'", NULL },

  /* export */
  { PRE "export vol0 key=k1\n", 0, EINVAL,
    "test.conf:3: export vol0: expected device=NAME", NULL },
  { PRE "export vol0 device=nosuch key=k1\n", 0, EINVAL,
    "test.conf:3: export vol0: device=nosuch: no leaf or device of that "
    "name is defined above", NULL },
  { PRE "export vol0 device=d0 dun-base=5\n", 0, EINVAL,
    "test.conf:3: export vol0: dun-base= needs key=", NULL },
  { PRE "export vol0 device=d0 key=k9\n", 0, EINVAL,
    "test.conf:3: export vol0: key=k9: no key of that name is defined above",
    NULL },
  { PRE "export vol0 device=d0 key=k1 dun-base=x1\n", 0, EINVAL,
    "test.conf:3: export vol0: dun-base=: expected a DUN (a decimal or "
    "0x-hex number), got 'x1'", NULL },
  { K1 "leaf d1 memory size=6K\nexport vol0 device=d1 key=k1\n", 0, EINVAL,
    "test.conf:3: export vol0: range 0+6144 is not aligned to the 4096-byte "
    "data units of key k1", NULL },
  { "key k1 dun-bytes=1 key=" KEY64 "\nleaf d1 memory size=2M\n"
    "export vol0 device=d1 key=k1\n", 0, EINVAL,
    "test.conf:3: export vol0: range 0+2097152 needs DUNs up to dun-base + "
    "511, more than the 1 DUN bytes of key k1 hold (raise dun-bytes)", NULL },
  { "key k1 dun-bytes=1 key=" KEY64 "\nleaf d1 memory size=4K\n"
    "export vol0 device=d1 key=k1 dun-base=256\n", 0, EINVAL,
    "test.conf:3: export vol0: dun-base does not fit in the 1 DUN bytes of "
    "key k1", NULL },
  { PRE "export vol0 device=d0 colour=red\n", 0, EINVAL,
    "test.conf:3: export vol0: unknown parameter 'colour'; expected device=, "
    "key=, dun-base=, block-size= or description=", NULL },
  { PRE "export vol0 device=d0 block-size=1000\n", 0, EINVAL,
    "test.conf:3: export vol0: block-size=1000: expected a power of two "
    "from 512 to 65536", NULL },
  { PRE "export vol0 device=d0 key=k1 block-size=0\n", 0, EINVAL,
    "test.conf:3: export vol0: block-size=0: expected a power of two "
    "from 512 to 65536", NULL },
  { PRE "export vol0 device=d0 block-size=128K\n", 0, EINVAL,
    "test.conf:3: export vol0: block-size=131072: expected a power of two "
    "from 512 to 65536", NULL },
  { K1 "leaf d1 memory size=2049s\nexport vol0 device=d1 block-size=4K\n",
    0, EINVAL, "test.conf:3: export vol0: block-size=4096 does not divide "
    "the size of d1 (1049088 bytes): clients could not reach its end", NULL },
  /* A key whose data units do not divide the export: its minimum block
   * size would not either.
   */
  { K1 "leaf d1 memory size=2049s\nexport vol0 device=d1\nmap 0 1M key=k1\n"
    "end\n", 0, EINVAL, "test.conf:4: export vol0: map: key k1's "
    "4096-byte data units do not divide the size of export vol0 (1049088 "
    "bytes): clients, told that minimum block size, could not reach its "
    "end", NULL },
  { PRE "export vol0 device=d0 key=k1\nexport vol0 device=d0 key=k1\n", 0,
    EEXIST, "test.conf:4: export vol0 is already defined", NULL },

  /* map */
  { PRE "export vol0 device=d0\nmap 0\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: expected map OFFSET LENGTH key=K "
    "[dun-base=N] or map OFFSET LENGTH none", NULL },
  { PRE "export vol0 device=d0\nmap x 4K key=k1\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: OFFSET=: expected a size", NULL },
  { PRE "export vol0 device=d0\nmap 0 4Q key=k1\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: LENGTH=: expected a size", NULL },
  { PRE "export vol0 device=d0\nmap 0 4K key=k1 none\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: expected exactly one of key=NAME or none",
    NULL },
  { PRE "export vol0 device=d0\nmap 0 4K\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: expected exactly one of key=NAME or none",
    NULL },
  { PRE "export vol0 device=d0\nmap 0 4K none none\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: none is given twice", NULL },
  { PRE "export vol0 device=d0\nmap 0 4K none dun-base=1\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: dun-base= needs key=", NULL },
  { PRE "export vol0 device=d0\nmap 0 4K key=k9\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: key=k9: no key of that name is defined "
    "above", NULL },
  { PRE "export vol0 device=d0\nmap 0 4K key=k1 dun-base=0x\nend\n", 0,
    EINVAL, "test.conf:4: export vol0: map: dun-base=: expected a DUN (a "
    "decimal or 0x-hex number), got '0x'", NULL },
  { PRE "export vol0 device=d0\nmap 0 4K key=k1 colour=red\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: unknown parameter 'colour'; expected "
    "key=, dun-base= or none", NULL },
  { PRE "export vol0 device=d0\nmap 0 8K key=k1\n\nmap 4K 8K key=k1\nend\n",
    0, EINVAL,
    "test.conf:6: export vol0: map: ranges 0+8192 and 4096+8192 overlap",
    NULL },
  { PRE "export vol0 device=d0\nmap 0 8K key=k1\nmap 4K 4K none\nend\n",
    0, EINVAL,
    "test.conf:5: export vol0: map: ranges 0+8192 and 4096+4096 overlap",
    NULL },
  { PRE "export vol0 device=d0\nmap 512K 1M key=k1\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: range 524288+1048576 goes past the end "
    "of export vol0 (1048576 bytes)", NULL },
  { PRE "export vol0 device=d0\nmap 1M 4K none\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: range 1048576+4096 goes past the end "
    "of export vol0 (1048576 bytes)", NULL },
  { PRE "export vol0 device=d0\nmap 512 4K key=k1\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: range 512+4096 is not aligned to the "
    "4096-byte data units of key k1", NULL },
  { PRE "export vol0 device=d0\nmap 0 0 key=k1\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: range at 0 is empty", NULL },
  { "key k2 dun-bytes=1 key=" KEY64 "\n" D0
    "export vol0 device=d0\nmap 0 1M key=k2 dun-base=1\nend\n", 0, EINVAL,
    "test.conf:4: export vol0: map: range 0+1048576 needs DUNs up to "
    "dun-base + 255, more than the 1 DUN bytes of key k2 hold (raise "
    "dun-bytes)", NULL },
  { PRE "export vol0 device=d0\nend now\n", 0, EINVAL,
    "test.conf:4: export vol0: 'end' takes nothing after it, got 'now'",
    NULL },
  { PRE "export vol0 device=d0\nmap 0 4K key=k1\nend \"now then\" # c\n",
    0, EINVAL, "test.conf:5: export vol0: 'end' takes nothing after it, got "
    "'now then'", NULL },

  /* fallback */
  { "fallback keyslots=0\n", 0, EINVAL,
    "test.conf:1: fallback: keyslots=: expected a number from 1 to 65536, "
    "got '0'", NULL },
  { "fallback keyslots=65537\n", 0, EINVAL,
    "test.conf:1: fallback: keyslots=: expected a number from 1 to 65536",
    NULL },
  { "fallback enabled=maybe\n", 0, EINVAL,
    "test.conf:1: fallback: enabled=: expected true or false, got 'maybe'",
    NULL },
  { "fallback slots=3\n", 0, EINVAL,
    "test.conf:1: fallback: unknown parameter 'slots'; expected keyslots= "
    "or enabled=", NULL },
  { "fallback off\n", 0, EINVAL,
    "test.conf:1: fallback: unknown parameter 'off'", NULL },
  { "fallback keyslots=7\n\nfallback enabled=false\n", 0, EINVAL,
    "test.conf:3: fallback: given twice (first at test.conf:1); give "
    "keyslots= and enabled= on one fallback line", NULL },
  { PRE "fallback\nexport vol0 device=d0 key=k1\nfallback keyslots=7\n", 0,
    EINVAL, "test.conf:5: fallback: given twice (first at test.conf:3)",
    NULL },

  /* control */
  { "control mode=0600\n", 0, EINVAL,
    "test.conf:1: control: expected socket=PATH", NULL },
  { "control socket=s mode=0800\n", 0, EINVAL,
    "test.conf:1: control: mode=0800: expected an octal file mode such as "
    "0600", NULL },
  { "control socket=s mode=1777\n", 0, EINVAL,
    "test.conf:1: control: mode=1777: expected an octal file mode", NULL },
  { "control socket=s mode=rw\n", 0, EINVAL,
    "test.conf:1: control: mode=rw: expected an octal file mode", NULL },
  { "control socket=s mode=\n", 0, EINVAL,
    "test.conf:1: control: mode=: expected an octal file mode", NULL },
  { "control socket=s mode=+600\n", 0, EINVAL,
    "test.conf:1: control: mode=+600: expected an octal file mode such as "
    "0600", NULL },
  { "control socket=s mode=\" 600\"\n", 0, EINVAL,
    "test.conf:1: control: mode= 600: expected an octal file mode", NULL },
  { "control socket=s mode=\"\t0600\"\n", 0, EINVAL,
    "test.conf:1: control: mode=\t0600: expected an octal file mode", NULL },
  { "control socket=s mode=-0\n", 0, EINVAL,
    "test.conf:1: control: mode=-0: expected an octal file mode", NULL },
  { "control socket=s mode=0600\"  \"\n", 0, EINVAL,
    "test.conf:1: control: mode=0600  : expected an octal file mode", NULL },
  { "control socket=s mode=0x180\n", 0, EINVAL,
    "test.conf:1: control: mode=0x180: expected an octal file mode", NULL },
  { "control socket=s mode=99999999999999999999999\n", 0, EINVAL,
    "test.conf:1: control: mode=99999999999999999999999: expected an octal "
    "file mode", NULL },
  { "control socket=s mode=77777777777777777777777\n", 0, EINVAL,
    "test.conf:1: control: mode=77777777777777777777777: expected an octal "
    "file mode", NULL },
  { "control socket=s owner=me\n", 0, EINVAL,
    "test.conf:1: control: unknown parameter 'owner'; expected socket= or "
    "mode=", NULL },
  { "control socket=a socket=b\n", 0, EINVAL,
    "test.conf:1: control: socket= is given twice", NULL },
  { "control socket=a.sock\n# another\ncontrol socket=b.sock mode=0660\n", 0,
    EINVAL, "test.conf:3: control: given twice (first at test.conf:1); the "
    "server has one control socket", NULL },
  { PRE "control socket=a.sock\ncontrol socket=a.sock\n", 0, EINVAL,
    "test.conf:4: control: given twice (first at test.conf:3)", NULL },
};

START_TEST (test_error)
{
  const struct conf_error *tc = &conf_errors[_i];
  size_t len = tc->len ? tc->len : strlen (tc->text);
  struct ic_graph *g;
  const char *msg;

  ic_clear_error ();
  errno = 0;
  g = ic_conf_parse (tc->text, len, "test.conf", dir, 0);
  msg = ic_last_error ();
  ck_assert_msg (g == NULL, "case %d: parsed; expected \"%s\"", _i,
                 tc->start);
  ck_assert_msg (errno == tc->err, "case %d: errno %s, expected %s (%s)", _i,
                 ic_errno_name (errno), ic_errno_name (tc->err), msg);
  ck_assert_msg (strncmp (msg, tc->start, strlen (tc->start)) == 0,
                 "case %d: message \"%s\" does not start with \"%s\"", _i,
                 msg, tc->start);
  ck_assert_msg (!tc->also || strstr (msg, tc->also),
                 "case %d: message \"%s\" does not contain \"%s\"", _i, msg,
                 tc->also);
  assert_no_key_bytes (msg);
}
END_TEST

static Suite *
conf_suite (void)
{
  Suite *s = suite_create ("conf");
  TCase *tc;

  tc = tcase_create ("keys");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_keys);
  suite_add_tcase (s, tc);

  tc = tcase_create ("engines");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_engines);
  suite_add_tcase (s, tc);

  tc = tcase_create ("leaves");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_leaves);
  suite_add_tcase (s, tc);

  tc = tcase_create ("leaf_nbd");
  tcase_add_checked_fixture (tc, setup_nbd, teardown_nbd);
  tcase_add_test (tc, test_leaf_nbd);
  tcase_add_test (tc, test_leaf_nbd_relative);
  suite_add_tcase (s, tc);

  tc = tcase_create ("devices");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_devices);
  suite_add_tcase (s, tc);

  tc = tcase_create ("exports");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_exports);
  tcase_add_test (tc, test_description);
  suite_add_tcase (s, tc);

  tc = tcase_create ("fallback");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_fallback);
  suite_add_tcase (s, tc);

  tc = tcase_create ("control");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_control);
  suite_add_tcase (s, tc);

  tc = tcase_create ("syntax");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_syntax);
  suite_add_tcase (s, tc);

  tc = tcase_create ("dry_run");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_dry_run);
  suite_add_tcase (s, tc);

  tc = tcase_create ("load");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_load);
  tcase_add_test (tc, test_load_in_root);
  tcase_add_test (tc, test_load_shared);
  tcase_add_test (tc, test_refused_leaves_no_files);
  tcase_add_test (tc, test_long_path);
  suite_add_tcase (s, tc);

  tc = tcase_create ("errors");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_error, 0, ARRAY_SIZE (conf_errors));
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (conf_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

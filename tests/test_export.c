/* tests/test_export.c - exports, their context maps and the leaves below
 * them (stack/export.h, stack/leaf.h, stack/device.h).
 *
 * A memory leaf with an engine, or without one (fallback), is read back
 * raw to check the ciphertext against ic_cipher with the DUN each range
 * should give.
 */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cipher.h"
#include "error.h"
#include "export.h"
#include "fallback.h"
#include "filemap.h"
#include "leaf.h"
#include "secmem.h"

#define MiB (1024 * 1024)

static uint8_t key_bytes[64];
static struct ic_crypto_key *k1;      /* AES-256-XTS, 4096 */
static struct ic_crypto_key *k2;      /* Adiantum, 512 */
static struct ic_engine *engine;
static struct ic_device *dev;
static struct ic_export *vol;

static void
setup_common (bool with_engine)
{
  struct ic_engine_config cfg;
  size_t i;

  ck_assert_int_eq (ic_crypto_init (), 0);
  for (i = 0; i < sizeof key_bytes; i++)
    key_bytes[i] = i * 3 + 1;
  k1 = ic_crypto_key_new ("k1", key_bytes, 64, IC_CRYPTO_KEY_TYPE_RAW,
                          IC_ENCRYPTION_MODE_AES_256_XTS, 8, 4096);
  k2 = ic_crypto_key_new ("k2", key_bytes, 32, IC_CRYPTO_KEY_TYPE_RAW,
                          IC_ENCRYPTION_MODE_ADIANTUM, 8, 512);
  ck_assert_ptr_nonnull (k1);
  ck_assert_ptr_nonnull (k2);
  engine = NULL;
  if (with_engine) {
    ic_engine_config_default (&cfg, "eng");
    cfg.num_slots = 1;
    engine = ic_engine_new (&cfg);
    ck_assert_ptr_nonnull (engine);
  }
  dev = ic_leaf_memory_new ("mem", 8 * MiB, engine);
  ck_assert_ptr_nonnull (dev);
  vol = ic_export_new ("vol", dev);
  ck_assert_ptr_nonnull (vol);
}

static void
setup_engine (void)
{
  setup_common (true);
}

static void
setup_fallback (void)
{
  setup_common (false);
}

static void
teardown (void)
{
  ic_export_free (vol);
  ic_device_destroy (dev);
  ic_engine_free (engine);
  ic_crypto_key_free (k1);
  ic_crypto_key_free (k2);
}

static uint8_t *
pattern (size_t len, unsigned int seed)
{
  uint8_t *p = malloc (len);
  size_t i;

  ck_assert_ptr_nonnull (p);
  for (i = 0; i < len; i++)
    p[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return p;
}

/* Raw bytes of the leaf, below every crypto. */
static void
raw_read (void *buf, uint64_t len, uint64_t offset)
{
  struct ic_bio bio = { .op = IC_OP_READ, .offset = offset, .len = len,
                        .buf = buf };

  ck_assert_int_eq (ic_device_submit (dev, &bio), 0);
}

/* What @len plaintext bytes at export offset @offset encrypt to with @key
 * when the range starts at @start with DUN @base.
 */
static uint8_t *
expected (const struct ic_crypto_key *key, const uint8_t *pt, uint64_t len,
          uint64_t offset, uint64_t start, uint64_t base)
{
  struct ic_cipher *c = ic_cipher_new (key->crypto_cfg.crypto_mode);
  uint64_t dun[4] = { base };
  uint8_t *ct = malloc (len);

  ck_assert_ptr_nonnull (c);
  ck_assert_int_eq (ic_cipher_setkey (c, key->bytes, key->size), 0);
  ic_crypt_dun_increment (dun, (offset - start) / key->crypto_cfg.data_unit_size);
  ck_assert_int_eq (ic_cipher_encrypt (c, ct, pt, len,
                                       key->crypto_cfg.data_unit_size, dun),
                    0);
  ic_cipher_free (c);
  return ct;
}

/* Two keyed ranges and a plain gap; a write across all three lands as
 * the right ciphertext in each, with DUNs from each range's base.
 */
START_TEST (test_map_split)
{
  struct ic_ctx_range ranges[] = {
    { .start = 0, .len = 1 * MiB, .key = k1, .dun_base = { 100 } },
    { .start = 2 * MiB, .len = 1 * MiB, .key = k2, .dun_base = { 7 } },
  };
  uint8_t *pt = pattern (3 * MiB, 1);
  uint8_t *back = malloc (3 * MiB);
  uint8_t *raw = malloc (3 * MiB);
  uint8_t *ct;

  ck_assert_int_eq (ic_export_set_map (vol, ranges, 2), 0);
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 3 * MiB, 0, 0), 0);
  raw_read (raw, 3 * MiB, 0);

  ct = expected (k1, pt, 1 * MiB, 0, 0, 100);
  ck_assert_mem_eq (raw, ct, 1 * MiB);
  free (ct);
  /* The gap is plain. */
  ck_assert_mem_eq (raw + 1 * MiB, pt + 1 * MiB, 1 * MiB);
  ct = expected (k2, pt + 2 * MiB, 1 * MiB, 2 * MiB, 2 * MiB, 7);
  ck_assert_mem_eq (raw + 2 * MiB, ct, 1 * MiB);
  free (ct);

  /* Reads across the ranges decrypt each piece with its own context. */
  ck_assert_int_eq (ic_export_pread (vol, back, 3 * MiB, 0), 0);
  ck_assert_mem_eq (back, pt, 3 * MiB);
  /* A read starting inside a range uses the DUN of that data unit. */
  ck_assert_int_eq (ic_export_pread (vol, back, 8192, 1 * MiB - 4096), 0);
  ck_assert_mem_eq (back, pt + 1 * MiB - 4096, 8192);
  free (pt);
  free (back);
  free (raw);
}
END_TEST

/* A request not aligned to the data units of a range it touches fails with
 * EINVAL and changes nothing, even in its aligned pieces.
 */
START_TEST (test_unaligned)
{
  struct ic_ctx_range ranges[] = {
    { .start = 1 * MiB, .len = 1 * MiB, .key = k1 },
  };
  uint8_t *pt = pattern (2 * MiB, 2);
  uint8_t *raw = malloc (2 * MiB);
  uint8_t *zero = calloc (1, 2 * MiB);

  ck_assert_int_eq (ic_export_set_map (vol, ranges, 1), 0);
  /* Plain part aligned to nothing, keyed part misaligned by 512. */
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 1 * MiB + 512, 1, 0), -EINVAL);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "not aligned"));
  raw_read (raw, 2 * MiB, 0);
  ck_assert_mem_eq (raw, zero, 2 * MiB);
  ck_assert_int_eq (ic_export_pread (vol, raw, 4096, 1 * MiB + 512), -EINVAL);
  ck_assert_int_eq (ic_export_zero (vol, 512, 1 * MiB, 0), -EINVAL);
  /* Plain ranges take any alignment. */
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 100, 3, 0), 0);
  free (pt);
  free (raw);
  free (zero);
}
END_TEST

/* Unwritten, zeroed and trimmed data units read back as zeros; the rest
 * is untouched.
 */
START_TEST (test_holes)
{
  struct ic_ctx_range range = { .start = 0, .len = 4 * MiB, .key = k1 };
  uint8_t *pt = pattern (4 * MiB, 3);
  uint8_t *back = malloc (4 * MiB);
  uint8_t *zero = calloc (1, 4 * MiB);

  ck_assert_int_eq (ic_export_set_map (vol, &range, 1), 0);
  ck_assert_int_eq (ic_export_pread (vol, back, 4 * MiB, 0), 0);
  ck_assert_mem_eq (back, zero, 4 * MiB);
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 4 * MiB, 0, 0), 0);
  ck_assert_int_eq (ic_export_zero (vol, 8192, 4096, IC_BIO_NOUNMAP), 0);
  ck_assert_int_eq (ic_export_trim (vol, 1 * MiB, 2 * MiB, 0), 0);
  ck_assert_int_eq (ic_export_pread (vol, back, 4 * MiB, 0), 0);
  ck_assert_mem_eq (back, pt, 4096);
  ck_assert_mem_eq (back + 4096, zero, 8192);
  ck_assert_mem_eq (back + 12288, pt + 12288, 2 * MiB - 12288);
  ck_assert_mem_eq (back + 2 * MiB, zero, 1 * MiB);
  ck_assert_mem_eq (back + 3 * MiB, pt + 3 * MiB, 1 * MiB);
  free (pt);
  free (back);
  free (zero);
}
END_TEST

/* map_range cuts the ranges around it and keeps their DUNs. */
START_TEST (test_map_range)
{
  struct ic_ctx_range range = { .start = 0, .len = 4 * MiB, .key = k1,
                                .dun_base = { 1000 } };
  uint64_t base[4] = { 5 };
  struct ic_ctx_range *got;
  uint8_t *pt = pattern (4 * MiB, 4);
  uint8_t *raw = malloc (4 * MiB);
  uint8_t *ct;
  size_t n;

  ck_assert_int_eq (ic_export_set_map (vol, &range, 1), 0);
  ck_assert_int_eq (ic_export_map_range (vol, 1 * MiB, 1 * MiB, k2, base), 0);
  ck_assert_int_eq (ic_export_get_map (vol, &got, &n), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (got[0].start, 0);
  ck_assert_uint_eq (got[0].len, 1 * MiB);
  ck_assert_uint_eq (got[0].dun_base[0], 1000);
  ck_assert_ptr_eq (got[1].key, k2);
  ck_assert_uint_eq (got[1].dun_base[0], 5);
  ck_assert_uint_eq (got[2].start, 2 * MiB);
  /* The tail keeps the DUNs it had: 1000 + 2 MiB / 4096. */
  ck_assert_uint_eq (got[2].dun_base[0], 1000 + 512);
  free (got);

  ck_assert_int_eq (ic_export_pwrite (vol, pt, 4 * MiB, 0, 0), 0);
  raw_read (raw, 4 * MiB, 0);
  ct = expected (k1, pt + 3 * MiB, 1 * MiB, 3 * MiB, 0, 1000);
  ck_assert_mem_eq (raw + 3 * MiB, ct, 1 * MiB);
  free (ct);
  ck_assert (ic_export_uses_key (vol, k2));

  /* "none" unmaps: plain I/O there from then on. */
  ck_assert_int_eq (ic_export_map_range (vol, 1 * MiB, 1 * MiB, NULL, NULL),
                    0);
  ck_assert (!ic_export_uses_key (vol, k2));
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 1 * MiB, 1 * MiB, 0), 0);
  raw_read (raw, 1 * MiB, 1 * MiB);
  ck_assert_mem_eq (raw, pt, 1 * MiB);
  ck_assert_uint_eq (ic_export_max_data_unit_size (vol), 4096);
  free (pt);
  free (raw);
}
END_TEST

/* Every refusal of a map, with its message. */
START_TEST (test_map_errors)
{
  struct ic_ctx_range over[] = {
    { .start = 0, .len = 2 * MiB, .key = k1 },
    { .start = 1 * MiB, .len = 2 * MiB, .key = k1 },
  };
  struct ic_ctx_range r;
  struct ic_crypto_key *small;

  ck_assert_int_eq (ic_export_set_map (vol, over, 2), -EINVAL);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "overlap"));

  r = (struct ic_ctx_range) { .start = 4 * MiB, .len = 8 * MiB, .key = k1 };
  ck_assert_int_eq (ic_export_set_map (vol, &r, 1), -EINVAL);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "past the end"));

  r = (struct ic_ctx_range) { .start = 512, .len = 4096, .key = k1 };
  ck_assert_int_eq (ic_export_set_map (vol, &r, 1), -EINVAL);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "not aligned"));

  r = (struct ic_ctx_range) { .start = 0, .len = 0, .key = k1 };
  ck_assert_int_eq (ic_export_set_map (vol, &r, 1), -EINVAL);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "empty"));

  /* One DUN byte holds 256 data units of 4096 bytes: 1 MiB. */
  small = ic_crypto_key_new ("small", key_bytes, 64, IC_CRYPTO_KEY_TYPE_RAW,
                             IC_ENCRYPTION_MODE_AES_256_XTS, 1, 4096);
  r = (struct ic_ctx_range) { .start = 0, .len = 1 * MiB, .key = small };
  ck_assert_int_eq (ic_export_set_map (vol, &r, 1), 0);
  r.len = 1 * MiB + 4096;
  ck_assert_int_eq (ic_export_set_map (vol, &r, 1), -EINVAL);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "raise dun-bytes"));
  r.len = 4096;
  r.dun_base[0] = 256;
  ck_assert_int_eq (ic_export_set_map (vol, &r, 1), -EINVAL);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "dun-base"));
  ic_export_set_map (vol, NULL, 0);
  ic_crypto_key_free (small);

  /* Past the end of the export. */
  ck_assert_int_eq (ic_export_pread (vol, key_bytes, 16, 8 * MiB), -EINVAL);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "past the end"));
}
END_TEST

struct map_change {
  uint64_t start;
  const struct ic_crypto_key *key;
  int r;
};

static void *
change_map (void *arg)
{
  struct map_change *c = arg;
  uint64_t base[4] = { 7 };

  c->r = ic_export_map_range (vol, c->start, 1 * MiB, c->key, base);
  return NULL;
}

static void *
read_one (void *arg)
{
  uint8_t buf[4096];

  *(int *) arg = ic_export_pread (vol, buf, sizeof buf, 0);
  return NULL;
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A change of the map waits for a slow request in flight on the old map.
 * Meanwhile ic_export_uses_key and ic_export_get_map answer at once with
 * the old map, and a second change waits for the first instead of being
 * made from the same old map and undoing it.
 */
START_TEST (test_map_change_waits)
{
  struct map_change c1 = { .start = 1 * MiB, .key = k1 };
  struct map_change c2 = { .start = 3 * MiB, .key = k2 };
  struct ic_ctx_range *got;
  pthread_t reader;
  pthread_t t1;
  pthread_t t2;
  double t0;
  size_t n;
  int r = -1;

  ic_leaf_set_io_delay (ic_device_to_leaf (dev), 1000000);
  ck_assert_int_eq (pthread_create (&reader, NULL, read_one, &r), 0);
  usleep (100000);
  ck_assert_int_eq (pthread_create (&t1, NULL, change_map, &c1), 0);
  ck_assert_int_eq (pthread_create (&t2, NULL, change_map, &c2), 0);
  usleep (100000);

  t0 = now ();
  ck_assert (!ic_export_uses_key (vol, k1));
  ck_assert (!ic_export_uses_key (vol, k2));
  ck_assert_int_eq (ic_export_get_map (vol, &got, &n), 0);
  ck_assert_uint_eq (n, 0);
  free (got);
  ck_assert_msg (now () - t0 < 0.3, "looks at the map waited %.3f s",
                 now () - t0);

  ck_assert_int_eq (pthread_join (reader, NULL), 0);
  ck_assert_int_eq (pthread_join (t1, NULL), 0);
  ck_assert_int_eq (pthread_join (t2, NULL), 0);
  ic_leaf_set_io_delay (ic_device_to_leaf (dev), 0);
  ck_assert_int_eq (r, 0);
  ck_assert_int_eq (c1.r, 0);
  ck_assert_int_eq (c2.r, 0);
  ck_assert_int_eq (ic_export_get_map (vol, &got, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_ptr_eq (got[0].key, k1);
  ck_assert_ptr_eq (got[1].key, k2);
  free (got);
  ck_assert (ic_export_uses_key (vol, k1));
  ck_assert (ic_export_uses_key (vol, k2));
}
END_TEST

/* The stats count requests and errors. */
START_TEST (test_stats)
{
  struct ic_export_stats st;
  uint8_t buf[4096] = { 1 };

  ck_assert_int_eq (ic_export_pwrite (vol, buf, 4096, 0, IC_BIO_FUA), 0);
  ck_assert_int_eq (ic_export_pread (vol, buf, 4096, 0), 0);
  ck_assert_int_eq (ic_export_flush (vol), 0);
  ck_assert_int_eq (ic_export_pread (vol, buf, 4096, 8 * MiB), -EINVAL);
  ic_export_read_stats (vol, &st, true);
  ck_assert_uint_eq (st.writes, 1);
  ck_assert_uint_eq (st.reads, 1);
  ck_assert_uint_eq (st.bytes_written, 4096);
  ck_assert_uint_eq (st.flushes, 1);
  ck_assert_uint_eq (st.errors, 1);
  ic_export_read_stats (vol, &st, false);
  ck_assert_uint_eq (st.writes, 0);
}
END_TEST

/* Injected leaf faults fail exactly the requests they should. */
START_TEST (test_leaf_faults)
{
  struct ic_leaf *leaf = ic_device_to_leaf (dev);
  uint8_t buf[4096] = { 0 };

  ck_assert_ptr_nonnull (leaf);
  ic_leaf_set_io_faults (leaf, IC_LEAF_FAULT_WRITE, 2);
  ck_assert_int_eq (ic_export_pwrite (vol, buf, 4096, 0, 0), -EIO);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "injected I/O error"));
  ck_assert_int_eq (ic_export_pread (vol, buf, 4096, 0), 0);
  ck_assert_int_eq (ic_export_pwrite (vol, buf, 4096, 0, 0), -EIO);
  ck_assert_int_eq (ic_export_pwrite (vol, buf, 4096, 0, 0), 0);
  ic_leaf_set_io_faults (leaf, IC_LEAF_FAULT_READ, -1);
  ck_assert_int_eq (ic_export_pread (vol, buf, 4096, 0), -EIO);
  ck_assert_int_eq (ic_export_pread (vol, buf, 4096, 0), -EIO);
  ic_leaf_set_io_faults (leaf, 0, 0);
  ck_assert_int_eq (ic_export_pread (vol, buf, 4096, 0), 0);
}
END_TEST

/* A file leaf: created, extended, holes read as zeros, data lands at the
 * right offsets, and FLUSH works.
 */
START_TEST (test_file_leaf)
{
  char path[] = "test_export.file.XXXXXX";
  int fd = mkstemp (path);
  struct ic_device *f;
  struct ic_export *fe;
  struct ic_ctx_range range = { .start = 0, .len = 1 * MiB, .key = k1 };
  uint8_t *pt = pattern (1 * MiB, 5);
  uint8_t *back = malloc (1 * MiB);
  uint8_t *zero = calloc (1, 1 * MiB);

  ck_assert_int_ge (fd, 0);
  close (fd);
  f = ic_leaf_file_new ("f", path, 1 * MiB, false, NULL);
  ck_assert_ptr_nonnull (f);
  ck_assert_uint_eq (f->size, 1 * MiB);
  fe = ic_export_new ("fe", f);
  ck_assert_int_eq (ic_export_set_map (fe, &range, 1), 0);
  ck_assert_int_eq (ic_export_pread (fe, back, 1 * MiB, 0), 0);
  ck_assert_mem_eq (back, zero, 1 * MiB);
  ck_assert_int_eq (ic_export_pwrite (fe, pt, 1 * MiB, 0, IC_BIO_FUA), 0);
  ck_assert_int_eq (ic_export_flush (fe), 0);
  ck_assert_int_eq (ic_export_trim (fe, 65536, 65536, 0), 0);
  ck_assert_int_eq (ic_export_pread (fe, back, 1 * MiB, 0), 0);
  ck_assert_mem_eq (back, pt, 65536);
  ck_assert_mem_eq (back + 65536, zero, 65536);
  ck_assert_mem_eq (back + 131072, pt + 131072, 1 * MiB - 131072);
  ic_export_free (fe);
  ic_device_destroy (f);

  /* Reopened without a size: the file's size.  Read-only: it reads what
   * was written, refuses writes, zeroes and trims with EROFS before
   * anything is encrypted, and says so to the export.
   */
  f = ic_leaf_file_new ("f", path, 0, true, NULL);
  ck_assert_ptr_nonnull (f);
  ck_assert_uint_eq (f->size, 1 * MiB);
  ck_assert (ic_device_is_readonly (f));
  fe = ic_export_new ("fe", f);
  ck_assert_int_eq (ic_export_set_map (fe, &range, 1), 0);
  ck_assert_int_eq (ic_export_pread (fe, back, 65536, 0), 0);
  ck_assert_mem_eq (back, pt, 65536);
  ck_assert_int_eq (ic_export_pwrite (fe, zero, 4096, 0, 0), -EROFS);
  ck_assert_int_eq (ic_export_zero (fe, 4096, 0, 0), -EROFS);
  ck_assert_int_eq (ic_export_trim (fe, 4096, 0, 0), -EROFS);
  ck_assert_int_eq (ic_export_flush (fe), 0);
  ck_assert_int_eq (ic_export_pread (fe, back, 65536, 0), 0);
  ck_assert_mem_eq (back, pt, 65536);
  ic_export_free (fe);
  ic_device_destroy (f);
  /* A read-only file shorter than size= is refused. */
  ck_assert_ptr_null (ic_leaf_file_new ("f", path, 2 * MiB, true, NULL));
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "fewer than size="));
  unlink (path);
  ck_assert_ptr_null (ic_leaf_file_new ("f", "/nonexistent/dir/x", 0, false,
                                        NULL));
  ck_assert_int_eq (errno, ENOENT);
  /* A file it created for a leaf it then refuses is removed; a file that
   * was there stays.
   */
  ck_assert_ptr_null (ic_leaf_file_new ("f", path, 0, false, NULL));
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "does not exist"));
  ck_assert_int_eq (access (path, F_OK), -1);
  fd = open (path, O_RDWR | O_CREAT | O_EXCL, 0600);
  ck_assert_int_ge (fd, 0);
  close (fd);
  ck_assert_ptr_null (ic_leaf_file_new ("f", path, 0, false, NULL));
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "is empty"));
  ck_assert_int_eq (access (path, F_OK), 0);
  unlink (path);
  /* A dangling symbolic link: the file is created through it, as with
   * O_CREAT alone; refused, the link and the file stay.
   */
  {
    char link[sizeof path + 8];

    snprintf (link, sizeof link, "%s.link", path);
    ck_assert_int_eq (symlink (path, link), 0);
    f = ic_leaf_file_new ("f", link, 1 * MiB, false, NULL);
    ck_assert_ptr_nonnull (f);
    ic_device_destroy (f);
    ck_assert_int_eq (access (path, F_OK), 0);
    unlink (path);
    ck_assert_ptr_null (ic_leaf_file_new ("f", link, 0, false, NULL));
    ck_assert_int_eq (access (path, F_OK), 0);
    unlink (path);
    unlink (link);
  }
  free (pt);
  free (back);
  free (zero);
}
END_TEST

/* A memory leaf of 1 TiB costs nothing until written. */
START_TEST (test_memory_sparse)
{
  struct ic_device *big = ic_leaf_memory_new ("big", 1ull << 40, NULL);
  struct ic_bio bio = { .op = IC_OP_WRITE, .offset = (1ull << 40) - 4096,
                        .len = 4096 };
  uint8_t buf[4096];

  ck_assert_ptr_nonnull (big);
  memset (buf, 0xab, sizeof buf);
  bio.buf = buf;
  ck_assert_int_eq (ic_device_submit (big, &bio), 0);
  memset (buf, 0, sizeof buf);
  bio.op = IC_OP_READ;
  ck_assert_int_eq (ic_device_submit (big, &bio), 0);
  ck_assert_uint_eq (buf[4095], 0xab);
  bio.offset = 1ull << 40;
  ck_assert_int_eq (ic_device_submit (big, &bio), -EINVAL);
  ic_device_destroy (big);
}
END_TEST

/* Through the fallback, the ciphertext is the same as through the engine;
 * without fallback, EOPNOTSUPP.
 */
START_TEST (test_fallback_path)
{
  struct ic_ctx_range range = { .start = 0, .len = 1 * MiB, .key = k1,
                                .dun_base = { 3 } };
  struct ic_fallback_stats st;
  uint8_t *pt = pattern (1 * MiB, 6);
  uint8_t *raw = malloc (1 * MiB);
  uint8_t *ct;

  ck_assert_ptr_null (dev->profile);
  ck_assert_int_eq (ic_export_set_map (vol, &range, 1), 0);
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 1 * MiB, 0, 0), 0);
  raw_read (raw, 1 * MiB, 0);
  ct = expected (k1, pt, 1 * MiB, 0, 0, 3);
  ck_assert_mem_eq (raw, ct, 1 * MiB);
  free (ct);
  ic_crypto_fallback_read_stats (&st, false);
  /* One request, encrypted by the leaf in four 256 KiB pieces. */
  ck_assert_uint_eq (st.encrypt_requests[IC_ENCRYPTION_MODE_AES_256_XTS], 4);
  ck_assert_uint_eq (st.encrypt_bytes[IC_ENCRYPTION_MODE_AES_256_XTS], 1 * MiB);
  ck_assert_uint_eq (dev->fallback_requests, 1);

  dev->fallback_enabled = false;
  ck_assert_int_eq (ic_export_pread (vol, raw, 4096, 0), -EOPNOTSUPP);
  ck_assert_ptr_nonnull (strstr (ic_last_error (), "fallback is off"));
  free (pt);
  free (raw);
}
END_TEST

/* En/decryptions counted so far by the fixture's cipher: the engine's,
 * or the fallback's; zeroed after reading.
 */
static uint64_t
crypt_ops (void)
{
  int m = IC_ENCRYPTION_MODE_AES_256_XTS;

  if (engine) {
    struct ic_engine_stats st;

    ic_engine_read_stats (engine, &st, true);
    return st.requests[m];
  }
  else {
    struct ic_fallback_stats st;

    ic_crypto_fallback_read_stats (&st, true);
    return st.encrypt_requests[m] + st.decrypt_requests[m];
  }
}

/* A write over 256 KiB reaches a local leaf in 256 KiB pieces, each
 * encrypted with its own DUN: the ciphertext is the whole request's, and
 * each piece counts as one encryption.  Reads are decrypted whole.
 */
START_TEST (test_pieces)
{
  const uint64_t len = 1 * MiB + 12288, offset = 8192;
  struct ic_ctx_range range = { .start = 0, .len = 4 * MiB, .key = k1,
                                .dun_base = { 1000 } };
  uint8_t *pt = pattern (len, 60);
  uint8_t *raw = malloc (len);
  uint8_t *ct;

  ck_assert_ptr_nonnull (raw);
  ck_assert_int_eq (ic_export_set_map (vol, &range, 1), 0);
  crypt_ops ();
  ck_assert_int_eq (ic_export_pwrite (vol, pt, len, offset, IC_BIO_FUA), 0);
  ck_assert_uint_eq (crypt_ops (), 5);
  raw_read (raw, len, offset);
  ct = expected (k1, pt, len, offset, 0, 1000);
  ck_assert_mem_eq (raw, ct, len);
  ck_assert_int_eq (ic_export_pread (vol, raw, len, offset), 0);
  ck_assert_uint_eq (crypt_ops (), 1);
  ck_assert_mem_eq (raw, pt, len);
  /* 256 KiB and under: whole. */
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 256 * 1024, offset, 0), 0);
  ck_assert_uint_eq (crypt_ops (), 1);
  free (ct);
  free (pt);
  free (raw);
}
END_TEST

/* An injected fault or delay applies once per request, not per piece. */
START_TEST (test_pieces_fault)
{
  struct ic_ctx_range range = { .start = 0, .len = 4 * MiB, .key = k1 };
  struct ic_leaf *leaf = ic_device_to_leaf (dev);
  uint8_t *pt = pattern (1 * MiB, 61);
  uint8_t *raw = malloc (1 * MiB);
  uint8_t *zero = calloc (1, 1 * MiB);
  struct timespec t0, t1;
  double s;

  ck_assert_ptr_nonnull (raw);
  ck_assert_ptr_nonnull (zero);
  ck_assert_int_eq (ic_export_set_map (vol, &range, 1), 0);
  ic_leaf_set_io_faults (leaf, IC_LEAF_FAULT_WRITE, 1);
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 1 * MiB, 0, 0), -EIO);
  raw_read (raw, 1 * MiB, 0);
  ck_assert_mem_eq (raw, zero, 1 * MiB);
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 1 * MiB, 0, 0), 0);
  ic_leaf_set_io_faults (leaf, IC_LEAF_FAULT_READ, 1);
  ck_assert_int_eq (ic_export_pread (vol, raw, 1 * MiB, 0), -EIO);
  ck_assert_int_eq (ic_export_pread (vol, raw, 1 * MiB, 0), 0);
  ck_assert_mem_eq (raw, pt, 1 * MiB);

  /* 0.4 s once, not four times. */
  ic_leaf_set_io_delay (leaf, 400000);
  clock_gettime (CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq (ic_export_pwrite (vol, pt, 1 * MiB, 0, 0), 0);
  clock_gettime (CLOCK_MONOTONIC, &t1);
  ic_leaf_set_io_delay (leaf, 0);
  s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  ck_assert_msg (s >= 0.4 && s < 1.6, "a 1 MiB write took %.2f s", s);
  free (pt);
  free (raw);
  free (zero);
}
END_TEST

/* A file leaf that fails a piece after earlier pieces went through: the
 * request is partial, the pieces before are written whole, the rest is
 * untouched.  RLIMIT_FSIZE at 256 KiB fails the second piece's pwrite
 * before it writes anything.
 */
START_TEST (test_pieces_partial)
{
  char path[] = "/tmp/test_export.XXXXXX";
  int fd = mkstemp (path);
  struct ic_device *f;
  struct ic_bio bio = { .op = IC_OP_WRITE, .len = 1 * MiB };
  uint8_t *pt = pattern (1 * MiB, 62);
  uint8_t *raw = malloc (1 * MiB);
  uint8_t *ct;
  struct rlimit lim;
  rlim_t saved;
  int r;

  ck_assert_int_ne (fd, -1);
  ck_assert_ptr_nonnull (raw);
  f = ic_leaf_file_new ("f", path, 2 * MiB, false, engine);
  ck_assert_ptr_nonnull (f);
  f->fallback_enabled = true;
  bio.buf = pt;
  bio.crypt_ctx.key = k1;
  ck_assert_int_eq (getrlimit (RLIMIT_FSIZE, &lim), 0);
  saved = lim.rlim_cur;
  lim.rlim_cur = 256 * 1024;
  signal (SIGXFSZ, SIG_IGN);
  ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &lim), 0);
  r = ic_device_submit (f, &bio);
  lim.rlim_cur = saved;
  ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &lim), 0);
  signal (SIGXFSZ, SIG_DFL);
  ck_assert_int_eq (r, -EFBIG);
  ck_assert (bio.partial);

  ck_assert_int_eq (pread (fd, raw, 1 * MiB, 0), 1 * MiB);
  ct = expected (k1, pt, 256 * 1024, 0, 0, 0);
  ck_assert_mem_eq (raw, ct, 256 * 1024);
  free (ct);
  memset (pt, 0, 1 * MiB);
  ck_assert_mem_eq (raw + 256 * 1024, pt, 1 * MiB - 256 * 1024);
  ic_device_destroy (f);
  close (fd);
  unlink (path);
  free (pt);
  free (raw);
}
END_TEST

/* A file leaf on tmpfs decrypts reads of 16 KiB and more straight out of
 * its mapping of the file (stack/filemap.h).  They return what pread and
 * decryption in place return; smaller reads, and ranges with holes, go
 * through pread, and reading a hole allocates nothing.  Once a fault has
 * put zeros into the mapping (the file shrunk under the leaf), the leaf
 * says so and reads go back to pread: they return the file's data, not
 * the zeros.
 */
START_TEST (test_file_view)
{
  char path[] = "/dev/shm/test_export.XXXXXX";
  int fd = mkstemp (path);
  struct ic_device *f;
  struct ic_leaf *leaf;
  struct ic_leaf_status st;
  struct ic_export *fe;
  struct ic_ctx_range range = { .start = 0, .len = 4 * MiB, .key = k1 };
  uint8_t *pt = pattern (2 * MiB, 9);
  uint8_t *back = malloc (2 * MiB);
  uint8_t *zero = calloc (1, 2 * MiB);
  const volatile uint8_t *view;
  struct stat sb;
  blkcnt_t blocks;

  ck_assert_int_ge (fd, 0);
  ck_assert_ptr_nonnull (back);
  ck_assert_ptr_nonnull (zero);
  f = ic_leaf_file_new ("f", path, 4 * MiB, false, engine);
  ck_assert_ptr_nonnull (f);
  /* The leaf keeps the file open: unlinked now, it is not left in
   * /dev/shm when a check fails.
   */
  unlink (path);
  f->fallback_enabled = true;
  leaf = ic_device_to_leaf (f);
  ic_leaf_read_status (leaf, &st);
  ck_assert_msg (st.view && strcmp (st.view, "on") == 0,
                 "no view of a file on /dev/shm");
  ck_assert_uint_eq (st.view_reads, 0);
  fe = ic_export_new ("fe", f);
  ck_assert_int_eq (ic_export_set_map (fe, &range, 1), 0);
  ck_assert_int_eq (ic_export_pwrite (fe, pt, 2 * MiB, 0, 0), 0);

  ck_assert_int_eq (ic_export_pread (fe, back, 1 * MiB, 512 * 1024), 0);
  ck_assert_mem_eq (back, pt + 512 * 1024, 1 * MiB);
  ic_leaf_read_status (leaf, &st);
  ck_assert_uint_eq (st.view_reads, 1);
  ck_assert_int_eq (ic_export_pread (fe, back, 12288, 4096), 0);
  ck_assert_mem_eq (back, pt + 4096, 12288);
  ic_leaf_read_status (leaf, &st);
  ck_assert_uint_eq (st.view_reads, 1);

  /* Holes: a trimmed range and the half never written. */
  ck_assert_int_eq (ic_export_trim (fe, 256 * 1024, 1 * MiB, 0), 0);
  ck_assert_int_eq (fstat (fd, &sb), 0);
  blocks = sb.st_blocks;
  ck_assert_int_eq (ic_export_pread (fe, back, 2 * MiB, 2 * MiB), 0);
  ck_assert_mem_eq (back, zero, 2 * MiB);
  ck_assert_int_eq (ic_export_pread (fe, back, 1 * MiB, 1 * MiB), 0);
  ck_assert_mem_eq (back, zero, 256 * 1024);
  ck_assert_mem_eq (back + 256 * 1024, pt + 1280 * 1024, 768 * 1024);
  ck_assert_int_eq (fstat (fd, &sb), 0);
  ck_assert_int_eq (sb.st_blocks, blocks);
  ic_leaf_read_status (leaf, &st);
  ck_assert_uint_eq (st.view_reads, 1);

  /* The file shrinks to 512 KiB under the leaf while a view of its first
   * MiB is out: reading past the end faults, and reads zeros instead of
   * killing the process.
   */
  view = leaf->ops->view (leaf, 1 * MiB, 0);
  ck_assert_ptr_nonnull ((const void *) view);
  ck_assert_int_eq (ftruncate (fd, 512 * 1024), 0);
  ck_assert_uint_eq (view[768 * 1024 + 5], 0);
  ck_assert (!leaf->ops->view_done (leaf));
  ic_leaf_read_status (leaf, &st);
  ck_assert_str_eq (st.view, "lost");
  ck_assert_uint_eq (st.view_reads, 2);

  /* Back to its size and written again: reads use pread, so the page of
   * zeros the fault left in the mapping is never read.
   */
  ck_assert_int_eq (ftruncate (fd, 4 * MiB), 0);
  ck_assert_int_eq (ic_export_pwrite (fe, pt, 2 * MiB, 0, 0), 0);
  ck_assert_int_eq (ic_export_pread (fe, back, 2 * MiB, 0), 0);
  ck_assert_mem_eq (back, pt, 2 * MiB);
  ic_leaf_read_status (leaf, &st);
  ck_assert_uint_eq (st.view_reads, 2);

  ic_export_free (fe);
  ic_device_destroy (f);
  close (fd);
  free (pt);
  free (back);
  free (zero);
}
END_TEST

/* A TRIM arriving while a read is decrypted out of the view of the same
 * range: each data unit read is the old data or zeros (as with pread;
 * never the decryption of the zeros the punch left, which a read through
 * the mapping would also allocate pages for), and once both are done the
 * trimmed range holds no tmpfs pages.  The trim is sent at delays spread
 * over the time a read takes.
 */
struct trim_later {
  struct ic_export *fe;
  uint64_t len, offset;
  long delay_ns;
};

static void *
trim_later (void *arg)
{
  struct trim_later *t = arg;
  struct timespec ts = { 0, t->delay_ns };

  nanosleep (&ts, NULL);
  ck_assert_int_eq (ic_export_trim (t->fe, t->len, t->offset, 0), 0);
  return NULL;
}

static double
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

START_TEST (test_file_view_trim_race)
{
  char path[] = "/dev/shm/test_export.XXXXXX";
  int fd = mkstemp (path);
  const uint64_t len = 16 * MiB;
  struct ic_device *f;
  struct ic_export *fe;
  struct ic_ctx_range range = { .start = 0, .len = len, .key = k1 };
  uint8_t *pt = pattern (len, 5);
  uint8_t *back = malloc (len);
  static const uint8_t zero[4096];
  unsigned int bad = 0, left = 0;
  double read_ns;
  int i;

  ck_assert_int_ge (fd, 0);
  ck_assert_ptr_nonnull (back);
  f = ic_leaf_file_new ("f", path, len, false, engine);
  ck_assert_ptr_nonnull (f);
  /* The leaf keeps the file open: unlinked now, it is not left in
   * /dev/shm when a check fails.
   */
  unlink (path);
  f->fallback_enabled = true;
  fe = ic_export_new ("fe", f);
  ck_assert_int_eq (ic_export_set_map (fe, &range, 1), 0);
  ck_assert_int_eq (ic_export_pwrite (fe, pt, len, 0, 0), 0);
  read_ns = now_ns ();
  ck_assert_int_eq (ic_export_pread (fe, back, len, 0), 0);
  read_ns = now_ns () - read_ns;

  for (i = 0; i < 40; i++) {
    struct trim_later t = { fe, len / 2, len / 2,
                            (long) (read_ns * (i % 20) / 20) };
    pthread_t th;
    uint64_t off;
    off_t data;

    ck_assert_int_eq (ic_export_pwrite (fe, pt, len, 0, 0), 0);
    ck_assert_int_eq (pthread_create (&th, NULL, trim_later, &t), 0);
    ck_assert_int_eq (ic_export_pread (fe, back, len, 0), 0);
    ck_assert_int_eq (pthread_join (th, NULL), 0);
    for (off = 0; off < len; off += 4096)
      if (memcmp (back + off, pt + off, 4096) != 0 &&
          memcmp (back + off, zero, 4096) != 0)
        bad++;
    data = lseek (fd, len / 2, SEEK_DATA);
    if (data != -1 && (uint64_t) data < len)
      left++;
  }
  ck_assert_msg (bad == 0, "%u data units read neither as written nor as "
                 "zeros", bad);
  ck_assert_msg (left == 0, "%d of 40 trims left pages in the file", left);

  ic_export_free (fe);
  ic_device_destroy (f);
  close (fd);
  free (pt);
  free (back);
}
END_TEST

static void
exit_42 (int sig)
{
  (void) sig;
  _exit (42);
}

/* How a child process ends that installs @handler for SIGBUS (SIG_DFL:
 * none), makes a view of a file and maps the file a second time, outside
 * every view; then, if @send, sends itself SIGBUS with kill() (no
 * fault); then, if @fault, shrinks the file and reads past its end
 * through the second mapping (a fault outside every view).
 */
static int
sigbus_child (void (*handler) (int), bool send, bool fault)
{
  pid_t pid = fork ();
  int status;

  ck_assert_int_ne (pid, -1);
  if (pid == 0) {
    char path[] = "/dev/shm/test_export.XXXXXX";
    int fd = mkstemp (path);
    struct ic_filemap *map;
    volatile uint8_t *p;

    signal (SIGBUS, handler);
    if (fd == -1 || ftruncate (fd, 1 * MiB) == -1)
      _exit (1);
    map = ic_filemap_new (fd, 1 * MiB);
    p = mmap (NULL, 1 * MiB, PROT_READ, MAP_SHARED, fd, 0);
    unlink (path);
    if (!map || p == MAP_FAILED)
      _exit (1);
    if (send)
      kill (getpid (), SIGBUS);
    if (fault) {
      if (ftruncate (fd, 4096) == -1)
        _exit (1);
      (void) p[65536];
    }
    _exit (0);
  }
  ck_assert_int_eq (waitpid (pid, &status, 0), pid);
  return status;
}

/* A SIGBUS outside every view is not ours: it goes to the handler there
 * was before the first view, or kills the process as it would have.
 */
START_TEST (test_file_view_foreign_fault)
{
  int status;

  status = sigbus_child (exit_42, false, true);
  ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 42,
                 "status %#x", status);
  /* With no handler before, SIGBUS kills it. */
  status = sigbus_child (SIG_DFL, false, true);
  ck_assert_msg (!(WIFEXITED (status) && WEXITSTATUS (status) <= 1),
                 "status %#x", status);
}
END_TEST

/* SIGBUS sent by kill() (no fault, si_code <= 0) to a process with a view:
 * with no handler before, it kills the process as it would have; one
 * ignored before is still ignored, and a fault still kills.
 */
START_TEST (test_file_view_sent_sigbus)
{
  int status;

  status = sigbus_child (SIG_DFL, true, false);
  ck_assert_msg (WIFSIGNALED (status) && WTERMSIG (status) == SIGBUS,
                 "kill -BUS: status %#x", status);
  status = sigbus_child (SIG_IGN, true, false);
  ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                 "kill -BUS, ignored: status %#x", status);
  status = sigbus_child (SIG_IGN, true, true);
  ck_assert_msg (WIFSIGNALED (status) && WTERMSIG (status) == SIGBUS,
                 "kill -BUS ignored, then a fault: status %#x", status);
}
END_TEST

static Suite *
export_suite (void)
{
  Suite *s = suite_create ("export");
  TCase *tc;

  tc = tcase_create ("engine");
  tcase_add_checked_fixture (tc, setup_engine, teardown);
  tcase_add_test (tc, test_map_split);
  tcase_add_test (tc, test_unaligned);
  tcase_add_test (tc, test_holes);
  tcase_add_test (tc, test_map_range);
  tcase_add_test (tc, test_map_errors);
  tcase_add_test (tc, test_map_change_waits);
  tcase_add_test (tc, test_stats);
  tcase_add_test (tc, test_leaf_faults);
  tcase_add_test (tc, test_file_leaf);
  tcase_add_test (tc, test_memory_sparse);
  tcase_add_test (tc, test_pieces);
  tcase_add_test (tc, test_pieces_fault);
  tcase_add_test (tc, test_pieces_partial);
  tcase_add_test (tc, test_file_view);
  tcase_add_test (tc, test_file_view_trim_race);
  tcase_add_test (tc, test_file_view_foreign_fault);
  tcase_add_test (tc, test_file_view_sent_sigbus);
  suite_add_tcase (s, tc);

  tc = tcase_create ("fallback");
  tcase_add_checked_fixture (tc, setup_fallback, teardown);
  tcase_add_test (tc, test_map_split);
  tcase_add_test (tc, test_holes);
  tcase_add_test (tc, test_fallback_path);
  tcase_add_test (tc, test_pieces);
  tcase_add_test (tc, test_pieces_fault);
  tcase_add_test (tc, test_pieces_partial);
  tcase_add_test (tc, test_file_view);
  tcase_add_test (tc, test_file_view_trim_race);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (export_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

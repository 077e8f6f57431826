/* bench/readpath.c - CPU per GiB of encrypted reads from a file leaf on
 * tmpfs, read with pread and decrypted in place, against decrypted
 * straight out of the leaf's mapping of the file (stack/filemap.h).
 *
 * Two exports over the same file on /dev/shm, each with its own file
 * leaf and engine (AES-256-XTS, 4096-byte data units): one made with
 * IC_NO_FILEMAP=1 (pread), one without (the view).  For each request
 * size, reads at random aligned offsets through ic_export_pread() on one
 * thread, the two paths alternating for --rounds rounds, and prints the
 * median CPU time per GiB of each and their ratio.  The file is written
 * whole first, so every page is in memory and the view takes every read
 * it may (reads under 16 KiB never do: leaf.c's VIEW_MIN).
 *
 *   bench/readpath [--size-mib N] [--seconds S] [--rounds R] [--json]
 */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "key.h"
#include "engine.h"
#include "error.h"
#include "export.h"
#include "leaf.h"
#include "secmem.h"

#define MiB (1024u * 1024)

static uint64_t file_size = 256 * MiB;
static double seconds = 0.5;
static int rounds = 5;
static bool json;
static char file_path[] = "/dev/shm/readpath.XXXXXX";

/* The file is memory: never left behind, whatever way we exit. */
static void
remove_file (void)
{
  unlink (file_path);
}

static double
thread_cpu (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU ms per GiB of reads of @len bytes through @exp for about @seconds
 * of CPU.
 */
static double
measure (struct ic_export *exp, uint8_t *buf, uint64_t len, unsigned *seed)
{
  uint64_t slots = file_size / len;
  double start = thread_cpu ();
  double now;
  uint64_t bytes = 0;

  do {
    uint64_t off = (uint64_t) (rand_r (seed) % slots) * len;
    int n;

    for (n = 0; n < 16; n++) {
      if (ic_export_pread (exp, buf, len, off) < 0) {
        fprintf (stderr, "readpath: read failed\n");
        exit (1);
      }
      bytes += len;
      off = (uint64_t) (rand_r (seed) % slots) * len;
    }
    now = thread_cpu ();
  } while (now - start < seconds);
  return (now - start) * 1000 / (bytes / (double) (1u << 30));
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static double
median (double *v, int n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static struct ic_export *
make_export (const char *name, const char *path, bool view,
             struct ic_crypto_key *key, struct ic_engine **engine,
             struct ic_device **leaf)
{
  struct ic_engine_config cfg;
  struct ic_ctx_range range = { .start = 0, .len = file_size, .key = key };
  struct ic_leaf_status st;
  struct ic_export *exp;

  ic_engine_config_default (&cfg, name);
  *engine = ic_engine_new (&cfg);
  if (view)
    unsetenv ("IC_NO_FILEMAP");
  else
    setenv ("IC_NO_FILEMAP", "1", 1);
  *leaf = ic_leaf_file_new (name, path, file_size, false, *engine);
  unsetenv ("IC_NO_FILEMAP");
  if (!*engine || !*leaf) {
    fprintf (stderr, "readpath: %s\n", ic_last_error ());
    exit (1);
  }
  ic_leaf_read_status (ic_device_to_leaf (*leaf), &st);
  if ((st.view != NULL) != view) {
    fprintf (stderr, "readpath: %s: %s on /dev/shm\n", name,
             view ? "no view of the file" : "a view despite IC_NO_FILEMAP");
    exit (1);
  }
  exp = ic_export_new (name, *leaf);
  if (!exp || ic_export_set_map (exp, &range, 1) < 0) {
    fprintf (stderr, "readpath: %s\n", ic_last_error ());
    exit (1);
  }
  return exp;
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "size-mib", required_argument, NULL, 'm' },
    { "seconds", required_argument, NULL, 's' },
    { "rounds", required_argument, NULL, 'r' },
    { "json", no_argument, NULL, 'j' },
    { NULL, 0, NULL, 0 },
  };
  static const uint64_t sizes[] = {
    4096, 16384, 65536, 262144, 1048576,
  };
  uint8_t key_bytes[64];
  struct ic_crypto_key *key;
  struct ic_engine *engines[2];
  struct ic_device *leaves[2];
  struct ic_export *exps[2];
  uint8_t *buf;
  unsigned seed = 1;
  size_t i;
  int c, fd;

  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'm': file_size = strtoull (optarg, NULL, 0) * MiB; break;
    case 's': seconds = atof (optarg); break;
    case 'r': rounds = atoi (optarg); break;
    case 'j': json = true; break;
    default:
      fprintf (stderr, "usage: readpath [--size-mib N] [--seconds S] "
               "[--rounds R] [--json]\n");
      return 2;
    }
  }
  if (file_size < MiB || seconds <= 0 || rounds < 1 || rounds > 99) {
    fprintf (stderr, "readpath: bad arguments\n");
    return 2;
  }
  if (ic_crypto_init () < 0)
    return 1;
  fd = mkstemp (file_path);
  if (fd == -1) {
    perror ("readpath: /dev/shm");
    return 1;
  }
  close (fd);
  atexit (remove_file);
  for (i = 0; i < sizeof key_bytes; i++)
    key_bytes[i] = i * 7 + 1;
  key = ic_crypto_key_new ("k", key_bytes, sizeof key_bytes,
                           IC_CRYPTO_KEY_TYPE_RAW,
                           IC_ENCRYPTION_MODE_AES_256_XTS, 8, 4096);
  buf = aligned_alloc (4096, MiB);
  if (!key || !buf)
    return 1;
  exps[0] = make_export ("pread", file_path, false, key, &engines[0],
                         &leaves[0]);
  exps[1] = make_export ("view", file_path, true, key, &engines[1],
                         &leaves[1]);
  memset (buf, 0x5a, MiB);
  for (i = 0; i < file_size / MiB; i++)
    if (ic_export_pwrite (exps[0], buf, MiB, i * MiB, 0) < 0) {
      fprintf (stderr, "readpath: write failed\n");
      return 1;
    }

  if (json)
    printf ("{\"file_mib\": %" PRIu64 ", \"results\": [",
            file_size / MiB);
  else
    printf ("%9s %14s %14s %7s\n", "request", "pread ms/GiB",
            "view ms/GiB", "ratio");
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    double v[2][99], m[2];
    int r, k, p;

    /* The two paths alternate, each first in every other round. */
    for (r = 0; r < rounds; r++)
      for (k = 0; k < 2; k++) {
        p = (k + r) % 2;
        v[p][r] = measure (exps[p], buf, sizes[i], &seed);
      }
    for (p = 0; p < 2; p++)
      m[p] = median (v[p], rounds);
    if (json)
      printf ("%s{\"request_bytes\": %" PRIu64 ", \"pread_ms_per_gib\": "
              "%.1f, \"view_ms_per_gib\": %.1f, \"ratio\": %.3f}",
              i ? ", " : "", sizes[i], m[0], m[1], m[1] / m[0]);
    else
      printf ("%9" PRIu64 " %14.0f %14.0f %7.2f\n", sizes[i], m[0], m[1],
              m[1] / m[0]);
  }
  if (json)
    printf ("]}\n");

  for (i = 0; i < 2; i++) {
    ic_export_free (exps[i]);
    ic_device_destroy (leaves[i]);
    ic_engine_free (engines[i]);
  }
  ic_crypto_key_free (key);
  free (buf);
  return 0;
}

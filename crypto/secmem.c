/* crypto/secmem.c - see secmem.h. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gcrypt.h>

#include "error.h"
#include "secmem.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;
static bool pool_locked;

/* The mappings that libgcrypt locked for its pool.  Memory locks are not
 * inherited by a child of fork(2), and nbdkit forks to go into the
 * background after loading us, keys and all: the child locks them again
 * (relock_in_child).
 */
#define MAX_POOL_RANGES 8

struct range {
  uintptr_t start;
  uintptr_t end;
};

static struct range pool_ranges[MAX_POOL_RANGES];
static unsigned int npool_ranges;
static size_t pool_size;

/* The mappings of secure memory marked MADV_DONTDUMP, so that a core dump
 * holds no key: the pool, and what libgcrypt adds when it grows it.
 * Protected by nodump_lock.
 */
static pthread_mutex_t nodump_lock = PTHREAD_MUTEX_INITIALIZER;
static struct range nodump[MAX_POOL_RANGES];
static unsigned int nnodump;

/* The locked mappings of this process (Locked: > 0 in /proc/self/smaps),
 * at most @max of them.  Return: how many, or -1.
 */
static int
locked_ranges (struct range *r, unsigned int max)
{
  FILE *fp = fopen ("/proc/self/smaps", "re");
  char line[4096];
  uintptr_t start = 0;
  uintptr_t end = 0;
  uintptr_t s;
  uintptr_t e;
  unsigned int n = 0;
  long kib;

  if (!fp)
    return -1;
  while (fgets (line, sizeof line, fp)) {
    /* A mapping's first line; sscanf may fill @s from other lines. */
    if (sscanf (line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) == 2) {
      start = s;
      end = e;
      continue;
    }
    if (sscanf (line, "Locked: %ld kB", &kib) == 1 && kib > 0 && n < max) {
      r[n].start = start;
      r[n].end = end;
      n++;
    }
  }
  fclose (fp);
  return n;
}

/* The mapping of this process that holds @addr, from /proc/self/maps.
 * Return: true and *r set, or false.
 */
static bool
mapping_of (uintptr_t addr, struct range *r)
{
  FILE *fp = fopen ("/proc/self/maps", "re");
  char line[4096];
  uintptr_t s;
  uintptr_t e;
  bool found = false;

  if (!fp)
    return false;
  while (!found && fgets (line, sizeof line, fp))
    if (sscanf (line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) == 2 &&
        s <= addr && addr < e) {
      r->start = s;
      r->end = e;
      found = true;
    }
  fclose (fp);
  return found;
}

/* Keep the secure memory holding @p out of core dumps (MADV_DONTDUMP),
 * once per mapping.  Failure is reported, not fatal: the keys are still
 * locked and wiped.
 */
static void
no_dump (const void *p)
{
  uintptr_t a = (uintptr_t) p;
  struct range r;
  unsigned int i;

  pthread_mutex_lock (&nodump_lock);
  for (i = 0; i < nnodump; i++)
    if (a >= nodump[i].start && a < nodump[i].end)
      goto out;
  if (!mapping_of (a, &r)) {
    ic_error ("secure memory at %p: not found in /proc/self/maps", p);
    goto out;
  }
  if (madvise ((void *) r.start, r.end - r.start, MADV_DONTDUMP) == -1)
    ic_error ("madvise (MADV_DONTDUMP) of secure memory: %s",
              ic_strerror (errno));
  else if (nnodump < MAX_POOL_RANGES)
    nodump[nnodump++] = r;
out:
  pthread_mutex_unlock (&nodump_lock);
}

/* True if the process has CAP_IPC_LOCK (bit 14 of CapEff): then it may
 * lock memory beyond RLIMIT_MEMLOCK.  Being root is not enough: a root
 * without it is held to the limit like anyone.
 */
static bool
has_cap_ipc_lock (void)
{
  FILE *fp = fopen ("/proc/self/status", "re");
  char line[256];
  unsigned long long caps = 0;
  bool found = false;

  if (!fp)
    return geteuid () == 0;
  while (!found && fgets (line, sizeof line, fp))
    found = sscanf (line, "CapEff: %llx", &caps) == 1;
  fclose (fp);
  return found ? (caps >> 14 & 1) != 0 : geteuid () == 0;
}

/* pthread_atfork child handler: lock the pool again.  Only mlock(2)
 * here: the parent may have had threads.
 */
static void
relock_in_child (void)
{
  unsigned int i;

  if (npool_ranges == 0)
    pool_locked = false;        /* the pool was not found: not locked */
  for (i = 0; i < npool_ranges; i++)
    if (mlock ((void *) pool_ranges[i].start,
               pool_ranges[i].end - pool_ranges[i].start) == -1)
      pool_locked = false;
}

/* Locked memory of this process, in KiB, from /proc/self/status. */
static long
locked_kib (void)
{
  FILE *fp = fopen ("/proc/self/status", "re");
  char line[256];
  long kib = -1;

  if (!fp)
    return -1;
  while (fgets (line, sizeof line, fp))
    if (sscanf (line, "VmLck: %ld kB", &kib) == 1)
      break;
  fclose (fp);
  return kib;
}

/* How big a pool we can lock: IC_SECMEM_SIZE with CAP_IPC_LOCK or a
 * generous RLIMIT_MEMLOCK, else half the limit in whole pages, at least
 * IC_SECMEM_MIN.  (A pool larger than the limit would not be locked at
 * all: libgcrypt locks it in one go.)
 */
static size_t
secmem_size (void)
{
  struct rlimit rl;

  if (has_cap_ipc_lock () || getrlimit (RLIMIT_MEMLOCK, &rl) == -1 ||
      rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 2 * IC_SECMEM_SIZE)
    return IC_SECMEM_SIZE;
  if (rl.rlim_cur / 2 < IC_SECMEM_MIN)
    return IC_SECMEM_MIN;
  return rl.rlim_cur / 2 & ~(size_t) 4095;
}

static void
init_libgcrypt (void)
{
  struct range old[MAX_POOL_RANGES];
  struct range now[MAX_POOL_RANGES];
  int nbefore;
  int n;
  int i;
  int j;
  long before;
  void *probe;

  if (!gcry_check_version ("1.10.0")) {
    ic_error ("libgcrypt: version %s is too old, 1.10.0 or later is needed",
              gcry_check_version (NULL));
    init_result = -ENOPKG;
    return;
  }
  /* Someone else in the process (a host program) may have initialised it
   * already; then its secure memory settings stand.
   */
  if (gcry_control (GCRYCTL_INITIALIZATION_FINISHED_P)) {
    /* Whether it locked its pool we can only guess from the process. */
    pool_locked = locked_kib () > 0;
    return;
  }

  /* Without CAP_IPC_LOCK, libgcrypt can lock only up to RLIMIT_MEMLOCK; it
   * then warns and goes on with unlocked pages.  Keep it quiet and record
   * the fact for status reports.
   */
  gcry_control (GCRYCTL_DISABLE_SECMEM_WARN);
  pool_size = secmem_size ();
  before = locked_kib ();
  nbefore = locked_ranges (old, MAX_POOL_RANGES);
  gcry_control (GCRYCTL_AUTO_EXPAND_SECMEM, (unsigned int) pool_size);
  /* GCRYCTL_INIT_SECMEM also fails when it could not lock the pool, which
   * it made all the same: what matters is that secure memory works
   * (tried below) and whether it is locked (pool_locked).
   */
  gcry_control (GCRYCTL_INIT_SECMEM, (unsigned int) pool_size, 0);
  gcry_control (GCRYCTL_INITIALIZATION_FINISHED, 0);
  probe = gcry_malloc_secure (1);
  if (!probe || !gcry_is_secure (probe)) {
    gcry_free (probe);
    ic_error ("libgcrypt: cannot initialise secure memory");
    init_result = -ENOMEM;
    return;
  }
  no_dump (probe);
  gcry_free (probe);
  pool_locked = locked_kib () - before >= (long) (pool_size / 1024);
  if (pool_locked) {
    /* The pool is the locked mapping that was not locked before. */
    n = locked_ranges (now, MAX_POOL_RANGES);
    for (i = 0; i < n; i++) {
      for (j = 0; j < nbefore; j++)
        if (old[j].start == now[i].start && old[j].end == now[i].end)
          break;
      if (j == nbefore && npool_ranges < MAX_POOL_RANGES)
        pool_ranges[npool_ranges++] = now[i];
    }
    pthread_atfork (NULL, NULL, relock_in_child);
  }
  if (!pool_locked)
    ic_debug ("libgcrypt: secure memory is not locked (RLIMIT_MEMLOCK too "
              "small?); key material may be swapped out");
}

int
ic_crypto_init (void)
{
  pthread_once (&init_once, init_libgcrypt);
  return init_result;
}

void *
ic_secure_alloc (size_t size)
{
  void *p = gcry_calloc_secure (1, size ? size : 1);

  if (!p) {
    errno = ENOMEM;
    return NULL;
  }
  ic_secmem_check (p);
  no_dump (p);
  return p;
}

void
ic_memzero_explicit (void *p, size_t size)
{
  explicit_bzero (p, size);
}

int
ic_sha256_secure (unsigned char out[32], const void *in, size_t len)
{
  gcry_md_hd_t h;

  if (gcry_md_open (&h, GCRY_MD_SHA256, GCRY_MD_FLAG_SECURE) != 0) {
    ic_error ("SHA-256: out of secure memory");
    return -ENOMEM;
  }
  gcry_md_write (h, in, len);
  memcpy (out, gcry_md_read (h, GCRY_MD_SHA256), 32);
  gcry_md_close (h);            /* wipes the state */
  return 0;
}

void
ic_secure_free (void *p, size_t size)
{
  if (!p)
    return;
  explicit_bzero (p, size);
  gcry_free (p);
}

bool
ic_secmem_locked (void)
{
  return __atomic_load_n (&pool_locked, __ATOMIC_RELAXED);
}

void
ic_secmem_check (const void *p)
{
  uintptr_t a = (uintptr_t) p;
  unsigned int i;

  if (!p || !__atomic_load_n (&pool_locked, __ATOMIC_RELAXED))
    return;
  for (i = 0; i < npool_ranges; i++)
    if (a >= pool_ranges[i].start && a < pool_ranges[i].end)
      return;
  /* To the log even from the control server's thread, which keeps its
   * errors for its replies: a key add that overflows the pool succeeds.
   */
  if (__atomic_exchange_n (&pool_locked, false, __ATOMIC_RELAXED))
    ic_log_error ("libgcrypt: the locked pool of %zu KiB is full: key "
                  "material now goes to memory that is not locked",
                  pool_size / 1024);
}

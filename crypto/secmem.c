/* crypto/secmem.c - see secmem.h. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <stdio.h>

#include <gcrypt.h>

#include "error.h"
#include "secmem.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;
static bool pool_locked;

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

static void
init_libgcrypt (void)
{
  long before;

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
  before = locked_kib ();
  gcry_control (GCRYCTL_AUTO_EXPAND_SECMEM, (unsigned int) IC_SECMEM_INITIAL);
  if (gcry_control (GCRYCTL_INIT_SECMEM, IC_SECMEM_INITIAL, 0)) {
    ic_error ("libgcrypt: cannot initialise secure memory");
    init_result = -ENOMEM;
    return;
  }
  gcry_control (GCRYCTL_INITIALIZATION_FINISHED, 0);
  pool_locked = locked_kib () - before >= IC_SECMEM_INITIAL / 1024;
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

  if (!p)
    errno = ENOMEM;
  return p;
}

void
ic_memzero_explicit (void *p, size_t size)
{
  explicit_bzero (p, size);
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
  return pool_locked;
}

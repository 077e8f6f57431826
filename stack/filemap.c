/* stack/filemap.c - read-only mappings of tmpfs files (filemap.h), and
 * the SIGBUS handler that keeps a file shrunk under the server from
 * killing it.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "error.h"
#include "filemap.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

/* Maps at once: more file leaves than this read with pread. */
#define MAX_MAPS 64

/* Pages mincore() looks at per call. */
#define MINCORE_BATCH 512

struct ic_filemap {
  uint8_t *base;
  uint64_t size;
  int slot;                     /* in maps[] */
  bool lost;                    /* atomic: a fault put zeros in */
};

/* What the SIGBUS handler looks at: each map's range, published before
 * the map is used and cleared before it is unmapped.
 */
static struct {
  uintptr_t start;              /* atomic; 0: free */
  uintptr_t len;                /* atomic */
  struct ic_filemap *map;       /* atomic */
} maps[MAX_MAPS];

static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
static bool handler_installed;  /* under maps_lock */
static struct sigaction old_action;
static uintptr_t page_size;

/* A fault in one of our maps: zeros in place of the page, the map
 * marked lost, and the faulting read goes on.  Anything else goes to the
 * handler there was before, or gets what SIG_DFL or SIG_IGN would have
 * done: a fault happens again when we return, and kills the process; a
 * SIGBUS someone sent (kill, sigqueue: si_code <= 0, si_addr means
 * nothing) is raised again with SIG_DFL, or ignored.  Async-signal-safe.
 */
static void
on_sigbus (int sig, siginfo_t *info, void *uc)
{
  uintptr_t addr = (uintptr_t) info->si_addr;
  bool fault = info->si_code > 0;
  unsigned int i;

  for (i = 0; fault && i < MAX_MAPS; i++) {
    uintptr_t start = __atomic_load_n (&maps[i].start, __ATOMIC_ACQUIRE);
    uintptr_t len = __atomic_load_n (&maps[i].len, __ATOMIC_ACQUIRE);
    struct ic_filemap *map;

    if (start == 0 || addr - start >= len)
      continue;
    map = __atomic_load_n (&maps[i].map, __ATOMIC_ACQUIRE);
    if (!map)
      break;
    __atomic_store_n (&map->lost, true, __ATOMIC_SEQ_CST);
    if (mmap ((void *) (addr & ~(page_size - 1)), page_size, PROT_READ,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED)
      return;
    break;
  }
  if (old_action.sa_handler == SIG_IGN && !fault)
    return;
  if (old_action.sa_handler != SIG_DFL && old_action.sa_handler != SIG_IGN) {
    if (old_action.sa_flags & SA_SIGINFO)
      old_action.sa_sigaction (sig, info, uc);
    else
      old_action.sa_handler (sig);
  }
  else {
    struct sigaction dfl;
    int saved = errno;

    memset (&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction (SIGBUS, &dfl, NULL);
    if (!fault)
      raise (sig);
    errno = saved;
  }
}

/* Called with maps_lock held. */
static int
install_handler (void)
{
  struct sigaction sa;

  if (handler_installed)
    return 0;
  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset (&sa.sa_mask);
  if (sigaction (SIGBUS, &sa, &old_action) == -1)
    return -errno;
  handler_installed = true;
  return 0;
}

static bool
wanted (int fd)
{
  const char *off = getenv ("IC_NO_FILEMAP");
  struct statfs fs;
  struct stat st;

  if (off && *off && strcmp (off, "0") != 0)
    return false;
  return fstat (fd, &st) == 0 && S_ISREG (st.st_mode) &&
    fstatfs (fd, &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

struct ic_filemap *
ic_filemap_new (int fd, uint64_t size)
{
  struct ic_filemap *map;
  void *base;
  int i;

  if (size == 0 || size > SIZE_MAX || !wanted (fd))
    return NULL;
  if (page_size == 0) {
    long ps = sysconf (_SC_PAGESIZE);

    __atomic_store_n (&page_size, ps > 0 ? (uintptr_t) ps : 4096,
                      __ATOMIC_RELAXED);
  }
  map = calloc (1, sizeof *map);
  if (!map)
    return NULL;
  base = mmap (NULL, size, PROT_READ, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    free (map);
    return NULL;
  }
  map->base = base;
  map->size = size;
  pthread_mutex_lock (&maps_lock);
  for (i = 0; i < MAX_MAPS && maps[i].start; i++)
    ;
  if (i == MAX_MAPS || install_handler () < 0) {
    pthread_mutex_unlock (&maps_lock);
    munmap (base, size);
    free (map);
    return NULL;
  }
  map->slot = i;
  __atomic_store_n (&maps[i].map, map, __ATOMIC_RELEASE);
  __atomic_store_n (&maps[i].len, (uintptr_t) size, __ATOMIC_RELEASE);
  __atomic_store_n (&maps[i].start, (uintptr_t) base, __ATOMIC_RELEASE);
  pthread_mutex_unlock (&maps_lock);
  return map;
}

/* True if every page of [@p, @p + @len) is in memory. */
static bool
resident (const uint8_t *p, uint64_t len)
{
  uintptr_t start = (uintptr_t) p & ~(page_size - 1);
  uintptr_t end = (uintptr_t) p + len;

  while (start < end) {
    unsigned char vec[MINCORE_BATCH];
    uintptr_t n = (end - start + page_size - 1) / page_size;
    uintptr_t i;

    if (n > MINCORE_BATCH)
      n = MINCORE_BATCH;
    if (mincore ((void *) start, n * page_size, vec) == -1)
      return false;
    for (i = 0; i < n; i++)
      if (!(vec[i] & 1))
        return false;
    start += n * page_size;
  }
  return true;
}

const void *
ic_filemap_get (struct ic_filemap *map, uint64_t len, uint64_t offset)
{
  if (!map || offset > map->size || len > map->size - offset ||
      !ic_filemap_intact (map) || !resident (map->base + offset, len))
    return NULL;
  return map->base + offset;
}

bool
ic_filemap_intact (const struct ic_filemap *map)
{
  return !__atomic_load_n (&map->lost, __ATOMIC_SEQ_CST);
}

void
ic_filemap_free (struct ic_filemap *map)
{
  if (!map)
    return;
  pthread_mutex_lock (&maps_lock);
  __atomic_store_n (&maps[map->slot].start, 0, __ATOMIC_RELEASE);
  __atomic_store_n (&maps[map->slot].len, 0, __ATOMIC_RELEASE);
  __atomic_store_n (&maps[map->slot].map, NULL, __ATOMIC_RELEASE);
  pthread_mutex_unlock (&maps_lock);
  munmap (map->base, map->size);
  free (map);
}

/* stack/leaf-memory.c - a sparse memory leaf.
 *
 * Data lives in 64 KiB chunks found through a radix tree of 512-way nodes;
 * both are allocated on first write, so a 1 TiB device costs nothing until
 * written, and a chunk that is trimmed or zeroed whole is freed.  Unwritten
 * ranges read as zeros.
 *
 * Threading: nodes and chunks are published with compare-and-swap, so
 * concurrent first writes need no lock.  A chunk may only be freed while
 * nobody copies to or from it: each chunk index maps to one of
 * LOCK_STRIPES reader/writer locks, taken shared by reads and writes (which
 * therefore all run in parallel) and exclusively only to free a chunk.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "leaf.h"

#define CHUNK_SHIFT 16
#define CHUNK_SIZE (UINT64_C (1) << CHUNK_SHIFT)
#define NODE_SHIFT 9
#define NODE_SIZE (1u << NODE_SHIFT)
#define LEVELS 4                /* 16 + 4 * 9 = 52 bits: 4 PiB */
#define LOCK_STRIPES 256

struct node {
  void *slot[NODE_SIZE];        /* struct node * or chunk data; CAS */
};

struct memory {
  struct ic_leaf leaf;
  struct node root;
  pthread_rwlock_t locks[LOCK_STRIPES];
  uint64_t chunks;              /* allocated chunks; atomic */
};

static pthread_rwlock_t *
chunk_lock (struct memory *m, uint64_t chunk)
{
  return &m->locks[(chunk * 0x9E3779B97F4A7C15ull) >> 56];
}

/* The address of the tree slot for @chunk; with @create, allocate the
 * nodes on the way.  NULL if absent (or out of memory when creating).
 */
static void **
chunk_slot (struct memory *m, uint64_t chunk, bool create)
{
  struct node *node = &m->root;
  int level;

  for (level = LEVELS - 1; level > 0; level--) {
    void **slot = &node->slot[(chunk >> (level * NODE_SHIFT)) &
                              (NODE_SIZE - 1)];
    void *next = __atomic_load_n (slot, __ATOMIC_ACQUIRE);

    if (!next) {
      void *fresh;

      if (!create)
        return NULL;
      fresh = calloc (1, sizeof (struct node));
      if (!fresh)
        return NULL;
      if (__atomic_compare_exchange_n (slot, &next, fresh, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        next = fresh;
      else
        free (fresh);         /* someone else was first; next is theirs */
    }
    node = next;
  }
  return &node->slot[chunk & (NODE_SIZE - 1)];
}

/* The data of @chunk, allocated if @create.  Context: chunk lock held. */
static char *
chunk_data (struct memory *m, uint64_t chunk, bool create)
{
  void **slot = chunk_slot (m, chunk, create);
  void *data;

  if (!slot)
    return NULL;
  data = __atomic_load_n (slot, __ATOMIC_ACQUIRE);
  if (data || !create)
    return data;
  {
    void *fresh = calloc (1, CHUNK_SIZE);

    if (!fresh)
      return NULL;
    if (__atomic_compare_exchange_n (slot, &data, fresh, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      __atomic_fetch_add (&m->chunks, 1, __ATOMIC_RELAXED);
      return fresh;
    }
    free (fresh);
    return data;
  }
}

static int
memory_pread (struct ic_leaf *leaf, void *buf, uint64_t len, uint64_t offset)
{
  struct memory *m = (struct memory *) leaf;
  char *p = buf;

  while (len > 0) {
    uint64_t chunk = offset >> CHUNK_SHIFT;
    uint64_t in = offset & (CHUNK_SIZE - 1);
    uint64_t n = CHUNK_SIZE - in < len ? CHUNK_SIZE - in : len;
    pthread_rwlock_t *lock = chunk_lock (m, chunk);
    char *data;

    pthread_rwlock_rdlock (lock);
    data = chunk_data (m, chunk, false);
    if (data)
      memcpy (p, data + in, n);
    else
      memset (p, 0, n);
    pthread_rwlock_unlock (lock);
    p += n;
    offset += n;
    len -= n;
  }
  return 0;
}

/* Allocate every chunk of [@offset, @offset+@len) before a write that
 * spans several, so that running out of memory fails it before anything
 * changes.  Only a TRIM or WRITE_ZEROES racing with the write on the same
 * range can free a chunk again before the copy, and what that leaves is
 * undefined anyway.
 */
static int
allocate_chunks (struct memory *m, uint64_t len, uint64_t offset)
{
  uint64_t chunk = offset >> CHUNK_SHIFT;
  uint64_t last = (offset + len - 1) >> CHUNK_SHIFT;

  for (; chunk <= last; chunk++) {
    pthread_rwlock_t *lock = chunk_lock (m, chunk);
    char *data;

    pthread_rwlock_rdlock (lock);
    data = chunk_data (m, chunk, true);
    pthread_rwlock_unlock (lock);
    if (!data) {
      ic_error ("%s: write: out of memory", m->leaf.dev.name);
      return -ENOMEM;
    }
  }
  return 0;
}

static int
memory_reserve (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
                unsigned int unit)
{
  struct memory *m = (struct memory *) leaf;

  if (len > 0 &&
      (offset >> CHUNK_SHIFT) != ((offset + len - 1) >> CHUNK_SHIFT))
    return allocate_chunks (m, len, offset);
  return 0;
}

static int
memory_pwrite (struct ic_leaf *leaf, const void *buf, uint64_t len,
               uint64_t offset, unsigned int unit, bool fua, bool *partial)
{
  struct memory *m = (struct memory *) leaf;
  const char *p = buf;
  int r;

  /* All or nothing for the whole write, not only its data units: plain
   * writes too, the check costs a tree walk per chunk.
   */
  r = memory_reserve (leaf, len, offset, unit);
  if (r < 0)
    return r;
  while (len > 0) {
    uint64_t chunk = offset >> CHUNK_SHIFT;
    uint64_t in = offset & (CHUNK_SIZE - 1);
    uint64_t n = CHUNK_SIZE - in < len ? CHUNK_SIZE - in : len;
    pthread_rwlock_t *lock = chunk_lock (m, chunk);
    char *data;

    pthread_rwlock_rdlock (lock);
    data = chunk_data (m, chunk, true);
    if (data)
      memcpy (data + in, p, n);
    pthread_rwlock_unlock (lock);
    if (!data) {
      /* Only if a TRIM freed a chunk after allocate_chunks(). */
      if (p != buf)
        *partial = true;
      ic_error ("%s: write: out of memory", leaf->dev.name);
      return -ENOMEM;
    }
    p += n;
    offset += n;
    len -= n;
  }
  return 0;
}

static int
memory_flush (struct ic_leaf *leaf)
{
  return 0;
}

/* Zero a range: whole chunks are freed, partial ones cleared. */
static int
memory_zero (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
             bool may_trim, bool fua)
{
  struct memory *m = (struct memory *) leaf;

  while (len > 0) {
    uint64_t chunk = offset >> CHUNK_SHIFT;
    uint64_t in = offset & (CHUNK_SIZE - 1);
    uint64_t n = CHUNK_SIZE - in < len ? CHUNK_SIZE - in : len;
    pthread_rwlock_t *lock = chunk_lock (m, chunk);
    void **slot;

    if (n == CHUNK_SIZE) {
      pthread_rwlock_wrlock (lock);
      slot = chunk_slot (m, chunk, false);
      if (slot && __atomic_load_n (slot, __ATOMIC_ACQUIRE)) {
        free (*slot);
        __atomic_store_n (slot, NULL, __ATOMIC_RELEASE);
        __atomic_fetch_sub (&m->chunks, 1, __ATOMIC_RELAXED);
      }
      pthread_rwlock_unlock (lock);
    }
    else {
      char *data;

      pthread_rwlock_rdlock (lock);
      data = chunk_data (m, chunk, false);
      if (data)
        memset (data + in, 0, n);
      pthread_rwlock_unlock (lock);
    }
    offset += n;
    len -= n;
  }
  return 0;
}

static int
memory_trim (struct ic_leaf *leaf, uint64_t len, uint64_t offset, bool fua)
{
  return memory_zero (leaf, len, offset, true, fua);
}

/* Free what @node points to: nodes of the level below, or at level 0 the
 * chunks.
 */
static void
free_node (struct node *node, int level)
{
  unsigned int i;

  for (i = 0; i < NODE_SIZE; i++)
    if (node->slot[i]) {
      if (level > 0)
        free_node (node->slot[i], level - 1);
      free (node->slot[i]);
    }
}

static void
memory_destroy (struct ic_leaf *leaf)
{
  struct memory *m = (struct memory *) leaf;
  unsigned int i;

  free_node (&m->root, LEVELS - 1);
  for (i = 0; i < LOCK_STRIPES; i++)
    pthread_rwlock_destroy (&m->locks[i]);
  free (m);
}

static const struct ic_leaf_ops memory_ops = {
  .type = "memory",
  .pread = memory_pread,
  .pwrite = memory_pwrite,
  .reserve = memory_reserve,
  .flush = memory_flush,
  .trim = memory_trim,
  .zero = memory_zero,
  .destroy = memory_destroy,
};

struct ic_device *
ic_leaf_memory_new (const char *name, uint64_t size, struct ic_engine *engine)
{
  struct memory *m;
  unsigned int i;

  if (size > (UINT64_C (1) << (CHUNK_SHIFT + LEVELS * NODE_SHIFT))) {
    ic_error ("%s: memory size %" PRIu64 " is too large (at most 4 PiB)",
              name, size);
    errno = EINVAL;
    return NULL;
  }
  m = calloc (1, sizeof *m);
  if (!m) {
    ic_error ("%s: out of memory", name);
    errno = ENOMEM;
    return NULL;
  }
  for (i = 0; i < LOCK_STRIPES; i++)
    pthread_rwlock_init (&m->locks[i], NULL);
  ic_leaf_init (&m->leaf, name, size, &memory_ops, engine,
                IC_DEV_CAN_FUA | IC_DEV_CAN_TRIM | IC_DEV_CAN_ZERO |
                IC_DEV_CAN_MULTI_CONN);
  return &m->leaf.dev;
}

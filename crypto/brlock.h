/* crypto/brlock.h - a reader/writer lock for read-mostly data whose read
 * side shares no cache line between threads (Linux percpu_rw_semaphore,
 * brlock).  The keyslot fast path takes it for reading on every request:
 * with pthread_rwlock_t, two threads doing so bounced the lock's cache
 * line between cores and a get+put cost 15 times more than alone.
 *
 * Readers count themselves in one of IC_BRLOCK_SHARDS padded counters
 * (fixed per thread) and back off while a writer is active; a writer
 * raises its flag, then waits for every counter to drain.  Writers are
 * preferred, as with a rw_semaphore: new readers wait for a waiting
 * writer.  A writer first yields, then sleeps while it waits, so read
 * sections may be long (a request's I/O) as long as writers are rare (a
 * reset, a map change).  Not recursive.
 */
#ifndef IC_BRLOCK_H
#define IC_BRLOCK_H

#include <pthread.h>
#include <stdbool.h>

#define IC_BRLOCK_SHARDS 16

/* 64 bytes of padding on each side of a counter keep it alone on its
 * cache line wherever the lock lies in memory: the structures that embed
 * one are not allocated cache-line aligned.
 */
struct ic_brlock_shard {
  char pad_before[64];
  unsigned int readers;         /* atomic */
  char pad_after[64 - sizeof (unsigned int)];
};

struct ic_brlock {
  struct ic_brlock_shard shards[IC_BRLOCK_SHARDS];
  int writer;                   /* atomic: a writer holds or waits */
  /* Readers asleep on wait_cond (atomic): a writer that sees none
   * leaves without taking wait_lock, whose line every miss would
   * otherwise drag from the core that last took it.
   */
  unsigned int sleepers;
  pthread_mutex_t writer_lock;  /* one writer at a time */
  pthread_mutex_t wait_lock;    /* the mutex of wait_cond */
  pthread_cond_t wait_cond;     /* readers wait here for the writer */
};

void ic_brlock_init (struct ic_brlock *l);
void ic_brlock_destroy (struct ic_brlock *l);

/* Context: may wait for a writer. */
void ic_brlock_read_lock (struct ic_brlock *l);
void ic_brlock_read_unlock (struct ic_brlock *l);

/* Context: may wait for readers and writers. */
void ic_brlock_write_lock (struct ic_brlock *l);
void ic_brlock_write_unlock (struct ic_brlock *l);

/* The shard of the calling thread, 0 .. IC_BRLOCK_SHARDS-1: other per
 * thread counters may use it to stay off each other's cache lines.
 */
unsigned int ic_brlock_shard (void);

/* How many shards threads have taken so far (they are taken in order, so
 * shards 0 .. n-1): per-shard counters beyond it are still zero, except
 * for what a thread that has just taken one is writing there now.
 */
unsigned int ic_brlock_shards_used (void);

/* True if some thread holds (or waits for) the lock for writing.  For
 * assertions in tests.
 */
bool ic_brlock_write_locked (struct ic_brlock *l);

#endif /* IC_BRLOCK_H */

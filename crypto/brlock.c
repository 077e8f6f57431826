/* crypto/brlock.c - see brlock.h.
 *
 * The handshake: a reader increments its counter, then looks at the
 * writer flag; a writer sets the flag, then looks at the counters.  With
 * sequentially consistent atomics at least one of them sees the other, so
 * a reader never runs inside a writer's section.  A writer looks only at
 * the counters of the shards taken so far (ic_brlock_shards_used()): a
 * thread takes its shard (a sequentially consistent increment of next)
 * before its first increment of a counter, so a reader that does not see
 * the flag has taken its shard before the writer reads next.
 *
 * The same handshake for sleep: a reader about to sleep counts itself in
 * sleepers, then looks at the flag; a writer clears the flag, then looks
 * at sleepers, and only if some reader sleeps (or is about to) takes
 * wait_lock to wake it.  The reader holds wait_lock from before it counts
 * itself in until pthread_cond_wait() releases it, so that wake-up cannot
 * come before it waits.
 */
#include <config.h>

#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "brlock.h"

/* Most sections, read or write, are a hash lookup or a keyslot program:
 * far shorter than a sleep and a wake-up.  Spin this many times before
 * yielding or sleeping.
 */
#define SPINS 200

static inline void
cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#elif defined(__aarch64__)
  __asm__ __volatile__ ("yield");
#endif
}

/* Spin while the writer flag is up; true if it came down. */
static bool
spin_while_writer (struct ic_brlock *l)
{
  unsigned int i;

  for (i = 0; i < SPINS; i++) {
    if (!__atomic_load_n (&l->writer, __ATOMIC_ACQUIRE))
      return true;
    cpu_relax ();
  }
  return false;
}

/* Threads that have taken a shard so far.  64 bits: it must never wrap,
 * or ic_brlock_shards_used() would go back below the shards in use and
 * the per-shard counters beyond it (keyslot references) would be missed;
 * a server that starts threads for every connection could make 2^32 in
 * months.
 */
static uint64_t next;

/* This thread's counter, picked round robin at its first use. */
unsigned int
ic_brlock_shard (void)
{
  static __thread unsigned int shard_plus_one;

  if (!shard_plus_one)
    /* Sequentially consistent, as the reader increments that follow:
     * a scan that reads next after seeing a reader also sees its shard.
     */
    shard_plus_one = __atomic_fetch_add (&next, 1, __ATOMIC_SEQ_CST) %
                     IC_BRLOCK_SHARDS + 1;
  return shard_plus_one - 1;
}

unsigned int
ic_brlock_shards_used (void)
{
  uint64_t n = __atomic_load_n (&next, __ATOMIC_SEQ_CST);

  return n < IC_BRLOCK_SHARDS ? n : IC_BRLOCK_SHARDS;
}

void
ic_brlock_init (struct ic_brlock *l)
{
  pthread_mutexattr_t attr;

  memset (l->shards, 0, sizeof l->shards);
  l->writer = 0;
  l->sleepers = 0;
  /* Writers queue on writer_lock for short sections too: let it spin a
   * little before sleeping where glibc can.
   */
  pthread_mutexattr_init (&attr);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
  pthread_mutexattr_settype (&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
  pthread_mutex_init (&l->writer_lock, &attr);
  pthread_mutexattr_destroy (&attr);
  pthread_mutex_init (&l->wait_lock, NULL);
  pthread_cond_init (&l->wait_cond, NULL);
}

void
ic_brlock_destroy (struct ic_brlock *l)
{
  pthread_mutex_destroy (&l->writer_lock);
  pthread_mutex_destroy (&l->wait_lock);
  pthread_cond_destroy (&l->wait_cond);
}

void
ic_brlock_read_lock (struct ic_brlock *l)
{
  unsigned int *readers = &l->shards[ic_brlock_shard ()].readers;

  for (;;) {
    __atomic_fetch_add (readers, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n (&l->writer, __ATOMIC_SEQ_CST))
      return;
    /* A writer holds or wants the lock: step back and wait for it, first
     * spinning, then asleep.
     */
    __atomic_fetch_sub (readers, 1, __ATOMIC_RELEASE);
    if (spin_while_writer (l))
      continue;
    pthread_mutex_lock (&l->wait_lock);
    __atomic_fetch_add (&l->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n (&l->writer, __ATOMIC_SEQ_CST))
      pthread_cond_wait (&l->wait_cond, &l->wait_lock);
    __atomic_fetch_sub (&l->sleepers, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock (&l->wait_lock);
  }
}

void
ic_brlock_read_unlock (struct ic_brlock *l)
{
  __atomic_fetch_sub (&l->shards[ic_brlock_shard ()].readers, 1, __ATOMIC_RELEASE);
}

void
ic_brlock_write_lock (struct ic_brlock *l)
{
  unsigned int tries = 0;
  unsigned int shards;
  unsigned int i;

  pthread_mutex_lock (&l->writer_lock);
  __atomic_store_n (&l->writer, 1, __ATOMIC_SEQ_CST);
  /* Only the shards taken so far: the others' counters are zero, and a
   * thread that takes one now sees the flag (see the top of this file).
   */
  shards = ic_brlock_shards_used ();
  /* Most read sections are a hash lookup: spin, then yield to them; some
   * hold the lock across I/O: then sleep a little at a time.
   */
  for (i = 0; i < shards; i++)
    while (__atomic_load_n (&l->shards[i].readers, __ATOMIC_SEQ_CST)) {
      if (++tries < SPINS)
        cpu_relax ();
      else if (tries < SPINS + 100)
        sched_yield ();
      else {
        struct timespec ts = { 0, 20 * 1000 };

        nanosleep (&ts, NULL);
      }
    }
}

void
ic_brlock_write_unlock (struct ic_brlock *l)
{
  __atomic_store_n (&l->writer, 0, __ATOMIC_SEQ_CST);
  /* Readers that spin see the flag come down; wake the sleeping ones. */
  if (__atomic_load_n (&l->sleepers, __ATOMIC_SEQ_CST)) {
    pthread_mutex_lock (&l->wait_lock);
    pthread_cond_broadcast (&l->wait_cond);
    pthread_mutex_unlock (&l->wait_lock);
  }
  pthread_mutex_unlock (&l->writer_lock);
}

bool
ic_brlock_write_locked (struct ic_brlock *l)
{
  return __atomic_load_n (&l->writer, __ATOMIC_ACQUIRE) != 0;
}

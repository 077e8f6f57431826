/* tests/test_bounce.c - bounce buffers: sizes, alignment, reuse, and the
 * budget that bounds the large buffers in use.
 */
#include <config.h>

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounce.h"

#define MiB (1024u * 1024u)

static void
sleep_ms (unsigned int ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

  nanosleep (&ts, NULL);
}

/* Any size: page-aligned, writable to its end; a small buffer comes back
 * to the thread that gave it, a large one through the pool.
 */
START_TEST (test_sizes)
{
  static const size_t lens[] = {
    1, 512, 4096, 4097, 65536, 65537, 1 * MiB, 3 * MiB + 512, 32 * MiB,
  };
  unsigned int i;

  for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    uint8_t *p = ic_bounce_get (lens[i]);
    uint8_t *q;

    ck_assert_ptr_nonnull (p);
    ck_assert_uint_eq ((uintptr_t) p % 4096, 0);
    memset (p, 0xa5, lens[i]);
    ic_bounce_put (p, lens[i]);
    q = ic_bounce_get (lens[i]);
    ck_assert_ptr_nonnull (q);
    /* Reused: small ones by this thread, large ones from the pool (the
     * last, 32 MiB, does not fit beside the idle ones already there).
     */
    if (lens[i] < 32 * MiB)
      ck_assert_ptr_eq (q, p);
    ic_bounce_put (q, lens[i]);
  }
  ic_bounce_put (NULL, 0);
}
END_TEST

/* Only buffers of up to 8 KiB stay with their thread: nbdkit's 1024
 * threads for 64 connections would otherwise keep a 64 KiB buffer each
 * after one 64 KiB write (68 MiB).  A larger one is counted in the pool's
 * budget while it is out.
 */
START_TEST (test_small_is_small)
{
  size_t in_use;
  size_t idle;
  uint8_t *p;

  ck_assert_uint_le (IC_BOUNCE_SMALL, 8 * 1024);
  p = ic_bounce_get (8 * 1024);
  ic_bounce_usage (&in_use, &idle);
  ck_assert_uint_eq (in_use, 0);
  ic_bounce_put (p, 8 * 1024);
  p = ic_bounce_get (64 * 1024);
  ic_bounce_usage (&in_use, &idle);
  ck_assert_uint_eq (in_use, 64 * 1024);
  ic_bounce_put (p, 64 * 1024);
  ic_bounce_usage (&in_use, &idle);
  ck_assert_uint_eq (in_use, 0);
}
END_TEST

/* Idle buffers in the pool count against the budget too: mapping a new
 * size gives back idle ones of other sizes.
 */
START_TEST (test_pool_within_budget)
{
  static const size_t lens[] = { 1 * MiB, 2 * MiB, 4 * MiB, 8 * MiB,
                                 12 * MiB, 3 * MiB };
  size_t in_use;
  size_t idle;
  unsigned int round;
  unsigned int i;

  for (round = 0; round < 2; round++)
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
      uint8_t *p = ic_bounce_get (lens[i]);

      ck_assert_ptr_nonnull (p);
      ic_bounce_usage (&in_use, &idle);
      ck_assert_uint_ge (in_use, lens[i]);
      ck_assert_uint_le (in_use + idle, IC_BOUNCE_BUDGET);
      ic_bounce_put (p, lens[i]);
      ic_bounce_usage (&in_use, &idle);
      ck_assert_uint_eq (in_use, 0);
      ck_assert_uint_le (idle, IC_BOUNCE_POOL_MAX);
    }
}
END_TEST

/* Many threads asking for more than the budget at once: the large
 * buffers out never add up to more than IC_BOUNCE_BUDGET.
 */
#define THREADS 8
#define ROUNDS 40
#define BIG (6 * MiB)           /* an 8 MiB size class */

static atomic_size_t out;
static atomic_size_t max_out;

static void *
budget_worker (void *arg)
{
  unsigned int i;

  (void) arg;
  for (i = 0; i < ROUNDS; i++) {
    uint8_t *p = ic_bounce_get (BIG);
    size_t now;
    size_t m;

    ck_assert_ptr_nonnull (p);
    now = atomic_fetch_add (&out, 8 * MiB) + 8 * MiB;
    m = atomic_load (&max_out);
    while (now > m && !atomic_compare_exchange_weak (&max_out, &m, now))
      ;
    p[0] = p[BIG - 1] = (uint8_t) i;
    sleep_ms (1);
    atomic_fetch_sub (&out, 8 * MiB);
    ic_bounce_put (p, BIG);
  }
  return NULL;
}

START_TEST (test_budget)
{
  pthread_t t[THREADS];
  unsigned int i;

  for (i = 0; i < THREADS; i++)
    ck_assert_int_eq (pthread_create (&t[i], NULL, budget_worker, NULL), 0);
  for (i = 0; i < THREADS; i++)
    ck_assert_int_eq (pthread_join (t[i], NULL), 0);
  ck_assert_uint_le (atomic_load (&max_out), IC_BOUNCE_BUDGET);
  /* It did run more than one at a time. */
  ck_assert_uint_ge (atomic_load (&max_out), 16 * MiB);
}
END_TEST

/* A request larger than the budget waits until it is alone, then gets
 * its buffer.
 */
static atomic_bool huge_done;

static void *
huge_worker (void *arg)
{
  uint8_t *p = ic_bounce_get (48 * MiB);

  (void) arg;
  ck_assert_ptr_nonnull (p);
  p[48 * MiB - 1] = 1;
  atomic_store (&huge_done, true);
  ic_bounce_put (p, 48 * MiB);
  return NULL;
}

START_TEST (test_larger_than_budget)
{
  uint8_t *p = ic_bounce_get (1 * MiB);
  pthread_t t;
  unsigned int i;

  ck_assert_int_eq (pthread_create (&t, NULL, huge_worker, NULL), 0);
  sleep_ms (100);
  ck_assert (!atomic_load (&huge_done));
  ic_bounce_put (p, 1 * MiB);
  for (i = 0; i < 500 && !atomic_load (&huge_done); i++)
    sleep_ms (10);
  ck_assert (atomic_load (&huge_done));
  ck_assert_int_eq (pthread_join (t, NULL), 0);
}
END_TEST

/* ... and is not starved by a stream of smaller ones: once it waits,
 * later gets queue behind it, so it gets its turn as soon as those out
 * come back (the old wait let every new 64 KiB get past, and a 20 MiB
 * one waited 9 s to for ever).
 */
#define STREAM_THREADS 8

static atomic_bool stream_stop;

static void *
stream_worker (void *arg)
{
  (void) arg;
  while (!atomic_load (&stream_stop)) {
    uint8_t *p = ic_bounce_get (64 * 1024);

    ck_assert_ptr_nonnull (p);
    p[0] = 1;
    ic_bounce_put (p, 64 * 1024);
  }
  return NULL;
}

START_TEST (test_no_starvation)
{
  pthread_t t[STREAM_THREADS];
  pthread_t huge;
  unsigned int idle_samples;
  unsigned int round;
  unsigned int i;

  for (i = 0; i < STREAM_THREADS; i++)
    ck_assert_int_eq (pthread_create (&t[i], NULL, stream_worker, NULL), 0);
  sleep_ms (50);
  for (round = 0; round < 3; round++) {
    atomic_store (&huge_done, false);
    ck_assert_int_eq (pthread_create (&huge, NULL, huge_worker, NULL), 0);
    for (i = 0; i < 500 && !atomic_load (&huge_done); i++)
      sleep_ms (10);
    ck_assert (atomic_load (&huge_done));
    ck_assert_int_eq (pthread_join (huge, NULL), 0);
    /* The queue that formed behind it drains, and the stream no longer
     * waits: a get that fits goes ahead unless the first in line does
     * not fit.  (When every get queued while anyone waited, a queue, once
     * formed, seldom drained: the threads that had just put came back
     * and queued again, and throughput fell 13 to 150 times.)
     */
    sleep_ms (20);
    idle_samples = 0;
    for (i = 0; i < 100; i++) {
      if (ic_bounce_waiting () == 0)
        idle_samples++;
      sleep_ms (1);
    }
    ck_assert_uint_ge (idle_samples, 50);
  }
  atomic_store (&stream_stop, true);
  for (i = 0; i < STREAM_THREADS; i++)
    ck_assert_int_eq (pthread_join (t[i], NULL), 0);
}
END_TEST

/* A thread that holds a large buffer gets a second one without waiting
 * for the budget (it would wait for itself).
 */
START_TEST (test_nested)
{
  uint8_t *a = ic_bounce_get (24 * MiB);
  uint8_t *b;

  ck_assert_ptr_nonnull (a);
  b = ic_bounce_get (2 * MiB);
  ck_assert_ptr_nonnull (b);
  ic_bounce_put (b, 2 * MiB);
  ic_bounce_put (a, 24 * MiB);
}
END_TEST

/* Between ic_bounce_nowait_begin() and _end(), a get never waits for
 * the budget, even when other threads hold all of it: a mirror's write
 * registered for overlapping ones to wait on takes its bounce buffers so
 * (test-bounce-deadlock.sh has the cycle this breaks).  After _end(), a
 * get waits again.
 */
static atomic_bool nowait_done;
static atomic_bool nowait_mode;

static void *
nowait_worker (void *arg)
{
  uint8_t *p;

  (void) arg;
  if (atomic_load (&nowait_mode))
    ic_bounce_nowait_begin ();
  p = ic_bounce_get (256 * 1024);
  if (atomic_load (&nowait_mode))
    ic_bounce_nowait_end ();
  ck_assert_ptr_nonnull (p);
  p[0] = 1;
  atomic_store (&nowait_done, true);
  ic_bounce_put (p, 256 * 1024);
  return NULL;
}

START_TEST (test_nowait)
{
  uint8_t *all = ic_bounce_get (IC_BOUNCE_BUDGET);
  pthread_t t;
  unsigned int i;

  ck_assert_ptr_nonnull (all);
  /* nowait: served at once, beyond the budget. */
  atomic_store (&nowait_mode, true);
  atomic_store (&nowait_done, false);
  ck_assert_int_eq (pthread_create (&t, NULL, nowait_worker, NULL), 0);
  for (i = 0; i < 500 && !atomic_load (&nowait_done); i++)
    sleep_ms (10);
  ck_assert_msg (atomic_load (&nowait_done), "a nowait get waited");
  ck_assert_int_eq (pthread_join (t, NULL), 0);
  /* Otherwise it waits until the budget has room. */
  atomic_store (&nowait_mode, false);
  atomic_store (&nowait_done, false);
  ck_assert_int_eq (pthread_create (&t, NULL, nowait_worker, NULL), 0);
  sleep_ms (100);
  ck_assert (!atomic_load (&nowait_done));
  ic_bounce_put (all, IC_BOUNCE_BUDGET);
  for (i = 0; i < 500 && !atomic_load (&nowait_done); i++)
    sleep_ms (10);
  ck_assert (atomic_load (&nowait_done));
  ck_assert_int_eq (pthread_join (t, NULL), 0);
}
END_TEST

static Suite *
bounce_suite (void)
{
  Suite *s = suite_create ("bounce");
  TCase *tc = tcase_create ("bounce");

  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_sizes);
  tcase_add_test (tc, test_small_is_small);
  tcase_add_test (tc, test_pool_within_budget);
  tcase_add_test (tc, test_budget);
  tcase_add_test (tc, test_larger_than_budget);
  tcase_add_test (tc, test_no_starvation);
  tcase_add_test (tc, test_nested);
  tcase_add_test (tc, test_nowait);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (bounce_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* crypto/histogram.c - see histogram.h. */
#include <config.h>

#include <stdbool.h>
#include <time.h>

#include "histogram.h"

static unsigned int
bucket_of (uint64_t ns)
{
  unsigned int log2;
  unsigned int sub;

  if (ns < (1u << IC_HISTOGRAM_SUB_BITS))
    return ns;
  log2 = 63 - __builtin_clzll (ns);
  sub = (ns >> (log2 - IC_HISTOGRAM_SUB_BITS)) &
        ((1u << IC_HISTOGRAM_SUB_BITS) - 1);
  return ((log2 - IC_HISTOGRAM_SUB_BITS + 1) << IC_HISTOGRAM_SUB_BITS) + sub;
}

/* The largest value that falls in bucket @b. */
static uint64_t
bucket_upper (unsigned int b)
{
  unsigned int log2;
  unsigned int sub;

  if (b < (1u << IC_HISTOGRAM_SUB_BITS))
    return b;
  log2 = (b >> IC_HISTOGRAM_SUB_BITS) + IC_HISTOGRAM_SUB_BITS - 1;
  sub = b & ((1u << IC_HISTOGRAM_SUB_BITS) - 1);
  if (log2 >= 63)
    return UINT64_MAX;
  return ((uint64_t) ((1u << IC_HISTOGRAM_SUB_BITS) + sub + 1)
          << (log2 - IC_HISTOGRAM_SUB_BITS)) - 1;
}

void
ic_histogram_add (struct ic_histogram *h, uint64_t ns)
{
  uint64_t max = __atomic_load_n (&h->max_ns, __ATOMIC_RELAXED);

  __atomic_fetch_add (&h->count, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add (&h->total_ns, ns, __ATOMIC_RELAXED);
  __atomic_fetch_add (&h->buckets[bucket_of (ns)], 1, __ATOMIC_RELAXED);
  while (ns > max &&
         !__atomic_compare_exchange_n (&h->max_ns, &max, ns, true,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    ;
}

void
ic_histogram_read (const struct ic_histogram *h, struct ic_histogram *dst)
{
  unsigned int i;

  dst->count = __atomic_load_n (&h->count, __ATOMIC_RELAXED);
  dst->total_ns = __atomic_load_n (&h->total_ns, __ATOMIC_RELAXED);
  dst->max_ns = __atomic_load_n (&h->max_ns, __ATOMIC_RELAXED);
  for (i = 0; i < IC_HISTOGRAM_BUCKETS; i++)
    dst->buckets[i] = __atomic_load_n (&h->buckets[i], __ATOMIC_RELAXED);
}

uint64_t
ic_histogram_percentile (const struct ic_histogram *h, double pct)
{
  struct ic_histogram snap;
  uint64_t total = 0;
  uint64_t want;
  uint64_t seen = 0;
  unsigned int i;

  ic_histogram_read (h, &snap);
  for (i = 0; i < IC_HISTOGRAM_BUCKETS; i++)
    total += snap.buckets[i];
  if (total == 0)
    return 0;
  want = (uint64_t) (pct / 100.0 * total + 0.999999);
  if (want == 0)
    want = 1;
  for (i = 0; i < IC_HISTOGRAM_BUCKETS; i++) {
    seen += snap.buckets[i];
    if (seen >= want) {
      uint64_t upper = bucket_upper (i);
      return upper < snap.max_ns ? upper : snap.max_ns;
    }
  }
  return snap.max_ns;
}

void
ic_histogram_read_reset (struct ic_histogram *h, struct ic_histogram *dst)
{
  unsigned int i;

  /* Each field exchanged for zero: a sample added meanwhile is in this
   * copy or left for the next one, never lost (it may be in the count of
   * one and the buckets of the other).
   */
  dst->count = __atomic_exchange_n (&h->count, 0, __ATOMIC_RELAXED);
  dst->total_ns = __atomic_exchange_n (&h->total_ns, 0, __ATOMIC_RELAXED);
  dst->max_ns = __atomic_exchange_n (&h->max_ns, 0, __ATOMIC_RELAXED);
  for (i = 0; i < IC_HISTOGRAM_BUCKETS; i++)
    dst->buckets[i] = __atomic_exchange_n (&h->buckets[i], 0,
                                           __ATOMIC_RELAXED);
}

void
ic_histogram_reset (struct ic_histogram *h)
{
  unsigned int i;

  __atomic_store_n (&h->count, 0, __ATOMIC_RELAXED);
  __atomic_store_n (&h->total_ns, 0, __ATOMIC_RELAXED);
  __atomic_store_n (&h->max_ns, 0, __ATOMIC_RELAXED);
  for (i = 0; i < IC_HISTOGRAM_BUCKETS; i++)
    __atomic_store_n (&h->buckets[i], 0, __ATOMIC_RELAXED);
}

uint64_t
ic_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* crypto/histogram.h - a lock-free log-linear histogram of durations, for
 * the p50/p99 of keyslot waits.  Four sub-buckets per power of two of
 * nanoseconds, so a percentile is known to within 19%.  Thread-safe
 * (relaxed atomics); readers may see a sample in flight.
 */
#ifndef IC_HISTOGRAM_H
#define IC_HISTOGRAM_H

#include <stdint.h>

#define IC_HISTOGRAM_SUB_BITS 2
#define IC_HISTOGRAM_BUCKETS (64 << IC_HISTOGRAM_SUB_BITS)

struct ic_histogram {
  uint64_t count;
  uint64_t total_ns;
  uint64_t max_ns;
  uint64_t buckets[IC_HISTOGRAM_BUCKETS];
};

/* Record one duration. */
void ic_histogram_add (struct ic_histogram *h, uint64_t ns);

/* The @pct-th percentile (0 < pct <= 100), as the upper bound of its
 * bucket; 0 if empty.
 */
uint64_t ic_histogram_percentile (const struct ic_histogram *h, double pct);

/* Copy @h into @dst (each field read atomically). */
void ic_histogram_read (const struct ic_histogram *h, struct ic_histogram *dst);

/* Copy @h into @dst and zero it, field by field atomically, so that no
 * sample recorded meanwhile is lost (what a read then a reset would do).
 */
void ic_histogram_read_reset (struct ic_histogram *h,
                              struct ic_histogram *dst);

/* Zero every field. */
void ic_histogram_reset (struct ic_histogram *h);

/* Monotonic clock in nanoseconds. */
uint64_t ic_now_ns (void);

/* A cheap, monotonically increasing stamp for ordering events (not a
 * duration): the time stamp counter where it is invariant (x86-64), else
 * the monotonic clock.
 */
#if defined (__x86_64__)
static inline uint64_t
ic_ticks (void)
{
  return __builtin_ia32_rdtsc ();
}
#else
static inline uint64_t
ic_ticks (void)
{
  return ic_now_ns ();
}
#endif

#endif /* IC_HISTOGRAM_H */

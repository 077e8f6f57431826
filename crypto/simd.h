/* crypto/simd.h - picking, once, the fastest implementation of a
 * primitive that the CPU can run (ChaCha12, NH, SM4): the portable C one,
 * or SIMD versions chosen at run time (__builtin_cpu_supports in their own
 * files).  IC_NO_SIMD=1 in the environment (any value but "" and "0")
 * keeps the portable code, for tests and for comparison.
 *
 * An implementation is a struct whose first member is a struct ic_impl.
 * Thread-safe: the choice is made by the first caller; tests may change it
 * at any time (callers then see the old or the new one).
 */
#ifndef IC_SIMD_H
#define IC_SIMD_H

#include <stdbool.h>
#include <stddef.h>

struct ic_impl {
  const char *name;             /* "avx2", "generic", ... */
  bool (*usable) (void);        /* can this CPU run it? */
};

/* The implementations of one primitive, best first; the last one is the
 * portable one and always usable.
 */
struct ic_impl_choice {
  const char *what;             /* "chacha", for the debug line */
  const struct ic_impl *const *impls;
  size_t n;
  const struct ic_impl *current; /* atomic; NULL until chosen */
};

/* For the portable implementations. */
bool ic_impl_always (void);

/* The implementation in use, chosen on first call. */
const struct ic_impl *ic_impl_current (struct ic_impl_choice *choice);

/* Use the best usable implementation (@enable) or the portable one. */
void ic_impl_use_simd (struct ic_impl_choice *choice, bool enable);

/* Use the implementation called @name.
 * Return: 0, -ENOENT (no such name) or -ENOTSUP (the CPU cannot run it).
 */
int ic_impl_use (struct ic_impl_choice *choice, const char *name);

#endif /* IC_SIMD_H */

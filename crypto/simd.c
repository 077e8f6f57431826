/* crypto/simd.c - see simd.h. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "simd.h"

bool
ic_impl_always (void)
{
  return true;
}

static bool
simd_disabled (void)
{
  const char *env = getenv ("IC_NO_SIMD");

  return env && *env && strcmp (env, "0") != 0;
}

static const struct ic_impl *
best (const struct ic_impl_choice *c)
{
  size_t i;

  if (simd_disabled ())
    return c->impls[c->n - 1];
  for (i = 0; i < c->n - 1 && !c->impls[i]->usable (); i++)
    ;
  return c->impls[i];
}

const struct ic_impl *
ic_impl_current (struct ic_impl_choice *c)
{
  const struct ic_impl *impl = __atomic_load_n (&c->current,
                                                __ATOMIC_ACQUIRE);
  const struct ic_impl *none = NULL;

  if (impl)
    return impl;
  /* First use: choose.  Two threads may both get here; both choose the
   * same, and only one says so.
   */
  impl = best (c);
  if (__atomic_compare_exchange_n (&c->current, &none, impl, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    ic_debug ("%s: using the %s implementation", c->what, impl->name);
  return __atomic_load_n (&c->current, __ATOMIC_ACQUIRE);
}

void
ic_impl_use_simd (struct ic_impl_choice *c, bool enable)
{
  __atomic_store_n (&c->current, enable ? best (c) : c->impls[c->n - 1],
                    __ATOMIC_RELEASE);
}

int
ic_impl_use (struct ic_impl_choice *c, const char *name)
{
  size_t i;

  for (i = 0; i < c->n; i++) {
    if (strcmp (c->impls[i]->name, name) != 0)
      continue;
    if (!c->impls[i]->usable ())
      return -ENOTSUP;
    __atomic_store_n (&c->current, c->impls[i], __ATOMIC_RELEASE);
    return 0;
  }
  return -ENOENT;
}

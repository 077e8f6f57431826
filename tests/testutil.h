/* tests/testutil.h - helpers the Check unit tests of crypto/ share: hex
 * test vectors, a reproducible pseudo-random sequence and buffers of exact
 * sizes (so that ASan catches a read or write past their end).
 *
 * Header-only, every function static: include it once per test program,
 * after <check.h>.
 */
#ifndef IC_TESTUTIL_H
#define IC_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "error.h"
#include "secmem.h"

static inline int
hex_nibble (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  ck_abort_msg ("bad hex digit '%c' in a test vector", c);
  return -1;
}

/* Decode @hex, which must be @len bytes, into @buf. */
static inline void
unhex_into (uint8_t *buf, const char *hex, size_t len)
{
  size_t i;

  ck_assert_uint_eq (strlen (hex), 2 * len);
  for (i = 0; i < len; i++)
    buf[i] = hex_nibble (hex[2 * i]) << 4 | hex_nibble (hex[2 * i + 1]);
}

/* A buffer of exactly @len bytes (at least one), never NULL. */
static inline uint8_t *
xmalloc (size_t len)
{
  uint8_t *p = malloc (len ? len : 1);

  ck_assert_ptr_nonnull (p);
  return p;
}

/* Decode @hex, which must be @len bytes, into a new buffer. */
static inline uint8_t *
unhex (const char *hex, size_t len)
{
  uint8_t *buf = xmalloc (len);

  unhex_into (buf, hex, len);
  return buf;
}

/* A fixed pseudo-random sequence (splitmix64), so failures reproduce. */
static uint64_t rng_state;

static inline void
rng_seed (uint64_t seed)
{
  rng_state = seed;
}

static inline uint64_t
rng_next (void)
{
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline void
rng_fill (uint8_t *p, size_t len)
{
  size_t i;

  for (i = 0; i < len; i++)
    p[i] = rng_next () >> 56;
}

/* @len random bytes in a buffer of exactly that size. */
static inline uint8_t *
rng_alloc (size_t len)
{
  uint8_t *p = xmalloc (len);

  rng_fill (p, len);
  return p;
}

/* ic_crypto_init() for test program @prog.  Return: false, with the reason
 * on stderr, if it failed.
 */
static inline bool
crypto_test_init (const char *prog)
{
  int r = ic_crypto_init ();

  if (r < 0)
    fprintf (stderr, "%s: %s\n", prog, ic_last_error ());
  return r == 0;
}

/* Run every test of @s as CK_RUN_SUITE, CK_RUN_CASE and CK_FORK say.
 * Return: the program's exit status.
 */
static inline int
run_suite (Suite *s)
{
  SRunner *sr = srunner_create (s);
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif /* IC_TESTUTIL_H */

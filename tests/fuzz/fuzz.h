/* tests/fuzz/fuzz.h - what the libFuzzer harnesses of tests/fuzz/ share.
 *
 * Each harness is one fuzz_<name>.c defining LLVMFuzzerInitialize() and
 * LLVMFuzzerTestOneInput(); tests/fuzz/build.sh links it with the
 * project's sources.  A property that does not hold is a crash:
 * FUZZ_CHECK() prints why and aborts, so that libFuzzer keeps the input.
 */
#ifndef IC_FUZZ_H
#define IC_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "secmem.h"

#define FUZZ_CHECK(cond, ...)                                           \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf (stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
               #cond);                                                  \
      fprintf (stderr, __VA_ARGS__);                                    \
      fprintf (stderr, "\n");                                           \
      abort ();                                                         \
    }                                                                   \
  } while (0)

/* For a harness's model code: its loops over every byte would cost more
 * than the code under test and give libFuzzer no useful feedback.
 */
#define FUZZ_MODEL __attribute__ ((no_sanitize ("coverage"), noinline))

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* True if IC_FUZZ_VERBOSE is set: harnesses then say what each input
 * did (to check seeds by hand).
 */
static inline int
fuzz_verbose (void)
{
  static int v = -1;

  if (v < 0)
    v = getenv ("IC_FUZZ_VERBOSE") != NULL;
  return v;
}

static inline void
fuzz_log (const char *msg)
{
  fprintf (stderr, "ic: %s\n", msg);
}

/* libgcrypt and the locked pool, once.  Errors stay per thread (no
 * sink), except with IC_FUZZ_VERBOSE, when every error and debug message
 * of every thread is printed.
 */
static inline void
fuzz_init_crypto (void)
{
  int r;

  if (fuzz_verbose ())
    ic_error_set_sink (fuzz_log, fuzz_log);
  r = ic_crypto_init ();

  FUZZ_CHECK (r == 0, "ic_crypto_init: %s", ic_last_error ());
}

#endif /* IC_FUZZ_H */

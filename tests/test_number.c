/* tests/test_number.c - config/number.c: the sizes and numbers that the
 * plugin and inlinecryptctl share.  Linked with number.c alone (and
 * Check), which shows that inlinecryptctl can link it without the engine
 * or libgcrypt.  The messages the callers add are tested with them
 * (test_params for ic_parse_size(), test-control.sh for inlinecryptctl).
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <check.h>

#include "number.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))
#define MiB (1024ull * 1024)

/* ---- ic_number_parse_size ---- */

static const struct {
  const char *str;
  int r;                        /* 0, -EINVAL or -ERANGE */
  uint64_t value;
} size_tvs[] = {
  { "0", 0, 0 },
  { "512", 0, 512 },
  { "0100000", 0, 100000 },     /* decimal, not octal */
  { "3b", 0, 3 },
  { "3B", 0, 3 },
  { "1s", 0, 512 },
  { "2S", 0, 1024 },
  { "1K", 0, 1024 },
  { "1k", 0, 1024 },
  { "1KB", 0, 1024 },
  { "1KiB", 0, 1024 },
  { "1kIb", 0, 1024 },
  { "3M", 0, 3 * MiB },
  { "3mib", 0, 3 * MiB },
  { "2G", 0, 2ull << 30 },
  { "2GB", 0, 2ull << 30 },
  { "5T", 0, 5ull << 40 },
  { "5TiB", 0, 5ull << 40 },
  { "7P", 0, 7ull << 50 },
  { "7pb", 0, 7ull << 50 },
  { "16777215T", 0, 16777215ull << 40 },
  { "16383P", 0, 16383ull << 50 },
  { "36028797018963967s", 0, 36028797018963967ull << 9 },
  { "18446744073709551615", 0, UINT64_MAX },
  { "18446744073709551615b", 0, UINT64_MAX },
  { "16777216T", -ERANGE, 0 },
  { "16384P", -ERANGE, 0 },
  { "36028797018963968s", -ERANGE, 0 },
  { "18446744073709551616", -ERANGE, 0 },
  { "99999999999999999999", -ERANGE, 0 },
  { "99999999999999999999K", -ERANGE, 0 },
  { "", -EINVAL, 0 },
  { "K", -EINVAL, 0 },
  { "-1", -EINVAL, 0 },
  { "+1", -EINVAL, 0 },
  { " 1", -EINVAL, 0 },
  { "1 ", -EINVAL, 0 },
  { "1.5G", -EINVAL, 0 },
  { "1Q", -EINVAL, 0 },
  { "1KK", -EINVAL, 0 },
  { "1iB", -EINVAL, 0 },
  { "0x10", -EINVAL, 0 },
  { "1e3", -EINVAL, 0 },
};

START_TEST (test_parse_size)
{
  uint64_t v = 12345;
  int r = ic_number_parse_size (size_tvs[_i].str, &v);

  ck_assert_msg (r == size_tvs[_i].r, "'%s': returned %d, expected %d",
                 size_tvs[_i].str, r, size_tvs[_i].r);
  ck_assert_uint_eq (v, r == 0 ? size_tvs[_i].value : 12345);
}
END_TEST

START_TEST (test_parse_size_null)
{
  uint64_t v = 12345;

  ck_assert_int_eq (ic_number_parse_size (NULL, &v), -EINVAL);
  ck_assert_uint_eq (v, 12345);
}
END_TEST

/* ---- ic_number_parse_uint ---- */

static const struct {
  const char *str;
  uint64_t min;
  uint64_t max;
  int r;                        /* 0 or -EINVAL */
  uint64_t value;
} uint_tvs[] = {
  { "0", 0, 10, 0, 0 },
  { "10", 0, 10, 0, 10 },
  { "11", 0, 10, -EINVAL, 0 },
  { "0", 1, 10, -EINVAL, 0 },
  { "1", 1, 1, 0, 1 },
  { "0x10", 0, 100, 0, 16 },
  { "0XfF", 0, 1000, 0, 255 },
  { "010", 0, 100, 0, 10 },     /* decimal, not octal */
  { "08", 0, 100, 0, 8 },
  { "0x", 0, 100, -EINVAL, 0 },
  { "0x-1", 0, 100, -EINVAL, 0 },
  { "0x0x5", 0, 100, -EINVAL, 0 },
  { "0x 5", 0, 100, -EINVAL, 0 },
  { "18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX },
  { "0xffffffffffffffff", 0, UINT64_MAX, 0, UINT64_MAX },
  { "18446744073709551616", 0, UINT64_MAX, -EINVAL, 0 },
  { "0x10000000000000000", 0, UINT64_MAX, -EINVAL, 0 },
  { "-1", 0, UINT64_MAX, -EINVAL, 0 },
  { "+1", 0, 10, -EINVAL, 0 },
  { " 1", 0, 10, -EINVAL, 0 },
  { "1 ", 0, 10, -EINVAL, 0 },
  { "", 0, 10, -EINVAL, 0 },
  { "1a", 0, 10, -EINVAL, 0 },
  { "1K", 0, 10000, -EINVAL, 0 },
};

START_TEST (test_parse_uint)
{
  uint64_t v = 777;
  int r = ic_number_parse_uint (uint_tvs[_i].str, uint_tvs[_i].min,
                                uint_tvs[_i].max, &v);

  ck_assert_msg (r == uint_tvs[_i].r, "'%s': returned %d, expected %d",
                 uint_tvs[_i].str, r, uint_tvs[_i].r);
  ck_assert_uint_eq (v, r == 0 ? uint_tvs[_i].value : 777);
}
END_TEST

START_TEST (test_parse_uint_null)
{
  uint64_t v = 777;

  ck_assert_int_eq (ic_number_parse_uint (NULL, 0, 10, &v), -EINVAL);
  ck_assert_uint_eq (v, 777);
}
END_TEST

static Suite *
number_suite (void)
{
  Suite *s = suite_create ("number");
  TCase *tc;

  tc = tcase_create ("parse_size");
  tcase_add_loop_test (tc, test_parse_size, 0, ARRAY_SIZE (size_tvs));
  tcase_add_test (tc, test_parse_size_null);
  suite_add_tcase (s, tc);

  tc = tcase_create ("parse_uint");
  tcase_add_loop_test (tc, test_parse_uint, 0, ARRAY_SIZE (uint_tvs));
  tcase_add_test (tc, test_parse_uint_null);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (number_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* config/number.c - see number.h. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "number.h"

#define HEX_DIGITS "0123456789abcdefABCDEF"

int
ic_number_parse_size (const char *str, uint64_t *out)
{
  static const struct { const char *suffix; unsigned int shift; } units[] = {
    { "", 0 }, { "b", 0 },
    { "s", 9 },
    { "k", 10 }, { "kb", 10 }, { "kib", 10 },
    { "m", 20 }, { "mb", 20 }, { "mib", 20 },
    { "g", 30 }, { "gb", 30 }, { "gib", 30 },
    { "t", 40 }, { "tb", 40 }, { "tib", 40 },
    { "p", 50 }, { "pb", 50 }, { "pib", 50 },
  };
  char *end;
  unsigned long long v;
  size_t i;

  if (!str || !isdigit ((unsigned char) *str))
    return -EINVAL;
  errno = 0;
  v = strtoull (str, &end, 10);
  if (errno == ERANGE)
    return -ERANGE;
  if (errno)
    return -EINVAL;
  for (i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcasecmp (end, units[i].suffix) == 0) {
      if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
        return -ERANGE;
      *out = (uint64_t) v << units[i].shift;
      return 0;
    }
  return -EINVAL;
}

int
ic_number_parse_uint (const char *str, uint64_t min, uint64_t max,
                      uint64_t *out)
{
  char *end;
  unsigned long long v;

  if (!str || !*str || isspace ((unsigned char) *str) || *str == '-' ||
      *str == '+')
    return -EINVAL;
  /* Base 10 unless 0x: base 0 would read "010" as octal 8 and refuse
   * "08", which nobody writing keyslots=010 means.  After 0x only hex
   * digits (strtoull would take a sign or a second "0x").
   */
  errno = 0;
  if (str[0] == '0' && (str[1] == 'x' || str[1] == 'X')) {
    if (!str[2] || strspn (str + 2, HEX_DIGITS) != strlen (str + 2))
      return -EINVAL;
    v = strtoull (str + 2, &end, 16);
  }
  else
    v = strtoull (str, &end, 10);
  if (errno || *end || v < min || v > max)
    return -EINVAL;
  *out = v;
  return 0;
}

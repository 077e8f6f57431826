/* config/shown.c - see shown.h. */
#include <config.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "shown.h"

const char *
ic_shown (const char *word, char *buf, size_t size)
{
  size_t run = 0;
  bool letter = false;
  size_t i;

  if (!word)
    return "";
  for (i = 0; word[i]; i++) {
    if (!isxdigit ((unsigned char) word[i])) {
      run = 0;
      letter = false;
      continue;
    }
    run++;
    letter |= !isdigit ((unsigned char) word[i]);
    if (run >= 32 || (run >= 16 && letter)) {
      snprintf (buf, size, "<%zu characters, not shown: they may be key "
                "bytes>", strlen (word));
      return buf;
    }
  }
  return word;
}

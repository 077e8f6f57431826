/* config/shown.h - what a message may show of a word the user gave.
 * libc only: inlinecryptctl links it too.
 */
#ifndef IC_SHOWN_H
#define IC_SHOWN_H

#include <stddef.h>

/* @word as a message may show it: itself, or, if it may hold key bytes, a
 * stand-in giving its length, made in @buf.  Messages never show key
 * bytes, and a key put where a name, a parameter or a value belongs (a
 * key=HEX split by a space, a key given as mode=) must not be shown back:
 * a word is hidden when it holds a run of 32 or more hex digits (the
 * shortest key in hex), or of 16 or more with a letter among them (a
 * piece of one).  Decimal numbers up to 31 digits are shown.
 */
const char *ic_shown (const char *word, char *buf, size_t size);

/* ic_shown() with a buffer that lives until the end of the enclosing
 * block, for a message's arguments.
 */
#define IC_SHOWN_SIZE 80
#define IC_SHOWN(word) \
  ic_shown ((word), (char[IC_SHOWN_SIZE]) { 0 }, IC_SHOWN_SIZE)

#endif /* IC_SHOWN_H */

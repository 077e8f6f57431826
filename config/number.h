/* config/number.h - the sizes and numbers that both the plugin
 * (config/parse.h) and the client inlinecryptctl read, so that they read
 * them alike.  No messages: each caller words its own, ic_parse_size()
 * through ic_error(), inlinecryptctl on standard error.  Plain C and libc
 * only (no engine, no libgcrypt), so that the client links it alone.
 * Pure functions; thread-safe.
 */
#ifndef IC_NUMBER_H
#define IC_NUMBER_H

#include <stdint.h>

/* A size in bytes: a decimal number with an optional suffix K, M, G, T, P
 * (powers of 1024, also as KiB...; "KB" is accepted as 1024 too) or s
 * (512-byte sectors), in any case.  No sign, no white space, no octal, no
 * hex.  @str may be NULL (refused).  *@out is set only on success.
 *
 * Return: 0; -ERANGE if the number is a size beyond 2^64-1, with or
 * without suffix; else -EINVAL.
 */
int ic_number_parse_size (const char *str, uint64_t *out);

/* An unsigned decimal (or 0x hex) number in [@min, @max].  "010" is ten,
 * not octal eight.  No sign, no white space, no suffix.  @str may be NULL
 * (refused).  *@out is set only on success.
 *
 * Return: 0, or -EINVAL (out of range too).
 */
int ic_number_parse_uint (const char *str, uint64_t min, uint64_t max,
                          uint64_t *out);

#endif /* IC_NUMBER_H */

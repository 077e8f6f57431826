/* config/parse.h - parsing of the values that the one-line parameters,
 * the configuration file and the control protocol share: sizes, numbers,
 * modes, capability lists.  Each parser names what it parsed (@what,
 * e.g. "size=" or "ic.conf:12: size=") in its one message.  Sizes and
 * numbers are read by number.h, which inlinecryptctl shares; here they get
 * their messages.  Pure functions; thread-safe.
 */
#ifndef IC_PARSE_H
#define IC_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mode.h"
#include "shown.h"

/* A size in bytes: a decimal number with an optional suffix K, M, G, T, P
 * (powers of 1024, also as KiB...; "KB" is accepted as 1024 too) or s
 * (512-byte sectors).  Beyond 2^64-1, with or without suffix, it is "too
 * large".
 *
 * Return: 0, or -EINVAL with the reason in ic_last_error().
 */
int ic_parse_size (const char *what, const char *str, uint64_t *out);

/* An unsigned decimal (or 0x hex) number in [@min, @max]. */
int ic_parse_uint (const char *what, const char *str, uint64_t min,
                   uint64_t max, uint64_t *out);

/* A boolean: 1/0, true/false, yes/no, on/off. */
int ic_parse_bool (const char *what, const char *str, bool *out);

/* A mode name (ic_crypto_modes[]); the message lists the valid ones. */
int ic_parse_mode (const char *what, const char *str,
                   enum ic_crypto_mode_num *out);

/* A data unit size: a power of two from 512 to 65536. */
int ic_parse_data_unit_size (const char *what, const char *str,
                             unsigned int *out);

/* A capability list "MODE:SIZE,SIZE;MODE:SIZE" into per-mode masks of data
 * unit sizes (bit i => 2^i bytes).  A mode without ":" gets every size from
 * 512 to 65536.  Modes not named get 0; "none" names none.  Each mode is
 * named once, with all its sizes ("AES-256-XTS:512;AES-256-XTS:4096" is
 * refused, the message giving "AES-256-XTS:512,4096"); an empty entry or
 * size (a stray ';' or ',') and a size given twice are refused.
 */
int ic_parse_modes (const char *what, const char *str,
                    unsigned int modes[IC_ENCRYPTION_MODE_MAX]);

/* A comma-separated list of names from @names (NULL-terminated) into a
 * mask: names[i] sets @bits[i].  Unknown names, empty items ("raw,") and
 * names given twice are refused; @noun is what an item is called in
 * messages ("key type"), @expected what the list may hold.
 */
int ic_parse_flag_list (const char *what, const char *str, const char *noun,
                        const char *const names[], const unsigned int bits[],
                        const char *expected, unsigned int *out);

/* Key types "raw", "hw_wrapped" or both, comma-separated, into a mask
 * (ic_parse_flag_list()).
 */
int ic_parse_key_types (const char *what, const char *str,
                        unsigned int *out);

/* Write @modes in the syntax of ic_parse_modes() ("" if none). */
void ic_format_modes (const unsigned int modes[IC_ENCRYPTION_MODE_MAX],
                      char *buf, size_t size);

/* A DUN: a decimal or 0x-hex number of up to 256 bits, into four
 * little-endian limbs.
 */
int ic_parse_dun (const char *what, const char *str, uint64_t dun[4]);

/* Read a secret the way nbdkit reads passwords, without nbdkit:
 * "+FILE" reads FILE (which must not be readable by group or others),
 * "-FD" reads file descriptor FD (not 0, 1 or 2) and closes it, as nbdkit
 * does, "-" reads standard input; anything else is the secret itself.  The result (trailing newline removed) is put in
 * locked memory: free it with ic_secure_free (*out, *out_size).
 */
int ic_read_secret (const char *what, const char *value, char **out,
                    size_t *out_size);

#endif /* IC_PARSE_H */

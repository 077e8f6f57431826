/* config/parse.c - see parse.h. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "error.h"
#include "number.h"
#include "parse.h"
#include "secmem.h"

#define HEX_DIGITS "0123456789abcdefABCDEF"

/* The longest secret read_fd_secret() takes, buffer and NUL included: a
 * hex key is at most 128 digits, and the locked pool cannot give one
 * block bigger than its pool increment (libgcrypt expands it by pools of
 * that size), so 1 MiB would only ever fail as "out of locked memory".
 */
#define MAX_SECRET_SIZE (64 * 1024)

/* The numbers themselves are read by number.c, which inlinecryptctl
 * shares; here they get their messages.
 */
int
ic_parse_uint (const char *what, const char *str, uint64_t min, uint64_t max,
               uint64_t *out)
{
  if (ic_number_parse_uint (str, min, max, out) < 0) {
    ic_error ("%s: expected a number from %" PRIu64 " to %" PRIu64
              ", got '%s'", what, min, max, IC_SHOWN (str));
    return -EINVAL;
  }
  return 0;
}

int
ic_parse_size (const char *what, const char *str, uint64_t *out)
{
  int r = ic_number_parse_size (str, out);

  if (r == -ERANGE)
    ic_error ("%s: size '%s' is too large", what, IC_SHOWN (str));
  else if (r < 0)
    ic_error ("%s: expected a size (a number with an optional K, M, G, T, "
              "P or s suffix), got '%s'", what, IC_SHOWN (str));
  return r < 0 ? -EINVAL : 0;
}

int
ic_parse_bool (const char *what, const char *str, bool *out)
{
  static const char *const yes[] = { "1", "true", "yes", "on" };
  static const char *const no[] = { "0", "false", "no", "off" };
  size_t i;

  for (i = 0; i < 4; i++) {
    if (strcasecmp (str, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcasecmp (str, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  ic_error ("%s: expected true or false, got '%s'", what, IC_SHOWN (str));
  return -EINVAL;
}

int
ic_parse_mode (const char *what, const char *str,
               enum ic_crypto_mode_num *out)
{
  enum ic_crypto_mode_num m = ic_crypto_mode_from_name (str);

  if (m == IC_ENCRYPTION_MODE_INVALID) {
    ic_error ("%s: unknown mode '%s'; expected one of AES-256-XTS, "
              "AES-128-CBC-ESSIV, Adiantum, SM4-XTS", what, IC_SHOWN (str));
    return -EINVAL;
  }
  *out = m;
  return 0;
}

static int
data_unit_size (const char *what, const char *str, unsigned int *out)
{
  uint64_t v;

  if (ic_parse_size (what, str, &v) < 0 ||
      v < IC_CRYPTO_MIN_DATA_UNIT_SIZE || v > IC_CRYPTO_MAX_DATA_UNIT_SIZE ||
      (v & (v - 1))) {
    ic_error ("%s: expected a data unit size, a power of two from 512 to "
              "65536, got '%s'", what, IC_SHOWN (str));
    return -EINVAL;
  }
  *out = v;
  return 0;
}

int
ic_parse_data_unit_size (const char *what, const char *str,
                         unsigned int *out)
{
  return data_unit_size (what, str, out);
}

/* Write "MODE:SIZE,..." for one mode, or "MODE" alone for every size. */
static void
format_mode (enum ic_crypto_mode_num m, unsigned int mask, char *buf,
             size_t size)
{
  unsigned int one[IC_ENCRYPTION_MODE_MAX] = { 0 };

  if (mask == IC_ALL_DATA_UNIT_SIZES) {
    snprintf (buf, size, "%s", ic_crypto_mode_name (m));
    return;
  }
  one[m] = mask;
  ic_format_modes (one, buf, size);
}

/* One "MODE[:SIZE,...]" entry of the list @list into @modes; @entry is
 * modified.
 */
static int
parse_mode_entry (const char *what, const char *list, char *entry,
                  unsigned int modes[IC_ENCRYPTION_MODE_MAX])
{
  char *sizes = strchr (entry, ':');
  enum ic_crypto_mode_num m;
  unsigned int mask = 0;
  char *size;
  int r;

  if (!*entry) {
    ic_error ("%s: empty mode entry in '%s' (a stray ';'); expected "
              "MODE[:SIZE,...][;MODE...]", what, IC_SHOWN (list));
    return -EINVAL;
  }
  if (sizes)
    *sizes++ = '\0';
  r = ic_parse_mode (what, entry, &m);
  if (r < 0)
    return r;
  if (!sizes)
    mask = IC_ALL_DATA_UNIT_SIZES;
  else if (!*sizes) {
    ic_error ("%s: %s: expected data unit sizes after ':'", what,
              ic_crypto_mode_name (m));
    return -EINVAL;
  }
  while (sizes && (size = strsep (&sizes, ",")) != NULL) {
    unsigned int du;

    if (!*size) {
      ic_error ("%s: empty data unit size in '%s' (a stray ','); expected "
                "MODE:SIZE[,SIZE...]", what, IC_SHOWN (list));
      return -EINVAL;
    }
    r = data_unit_size (what, size, &du);
    if (r < 0)
      return r;
    if (mask & du) {
      ic_error ("%s: %s: data unit size %u is given twice", what,
                ic_crypto_mode_name (m), du);
      return -EINVAL;
    }
    mask |= du;
  }
  /* The syntax is one entry per mode, its sizes after one ':'; say what
   * this one should have been.
   */
  if (modes[m]) {
    char merged[128];

    format_mode (m, modes[m] | mask, merged, sizeof merged);
    ic_error ("%s: %s is given twice; give each mode once, with all its "
              "data unit sizes: %s", what, ic_crypto_mode_name (m), merged);
    return -EINVAL;
  }
  modes[m] = mask;
  return 0;
}

int
ic_parse_modes (const char *what, const char *str,
                unsigned int modes[IC_ENCRYPTION_MODE_MAX])
{
  char *copy;
  char *rest;
  char *entry;
  int r = 0;

  memset (modes, 0, IC_ENCRYPTION_MODE_MAX * sizeof modes[0]);
  if (strcmp (str, "none") == 0)
    /* An engine that takes nothing: every context goes to the fallback. */
    return 0;
  if (!*str) {
    ic_error ("%s: expected MODE[:SIZE,...][;MODE...], got ''", what);
    return -EINVAL;
  }
  copy = strdup (str);
  if (!copy) {
    ic_error ("%s: out of memory", what);
    return -ENOMEM;
  }
  /* strsep, not strtok_r: an empty entry is an error, not skipped.  Each
   * entry sets at least one size of its mode, so a list that passes
   * names one mode at least.
   */
  rest = copy;
  while (r == 0 && (entry = strsep (&rest, ";")) != NULL)
    r = parse_mode_entry (what, str, entry, modes);
  free (copy);
  return r;
}

int
ic_parse_flag_list (const char *what, const char *str, const char *noun,
                    const char *const names[], const unsigned int bits[],
                    const char *expected, unsigned int *out)
{
  char *copy;
  char *rest;
  char *item;
  unsigned int mask = 0;
  int r = 0;

  if (!*str) {
    ic_error ("%s: expected %s", what, expected);
    return -EINVAL;
  }
  copy = strdup (str);
  if (!copy) {
    ic_error ("%s: out of memory", what);
    return -ENOMEM;
  }
  rest = copy;
  /* strsep, not strtok_r: an empty item is an error, not skipped. */
  while (r == 0 && (item = strsep (&rest, ",")) != NULL) {
    size_t i;

    if (!*item) {
      ic_error ("%s: empty item in '%s' (a stray ','); expected %s", what,
                IC_SHOWN (str), expected);
      r = -EINVAL;
      break;
    }
    for (i = 0; names[i] && strcmp (item, names[i]) != 0; i++)
      ;
    if (!names[i]) {
      ic_error ("%s: unknown %s '%s'; expected %s", what, noun,
                IC_SHOWN (item), expected);
      r = -EINVAL;
    }
    else if (mask & bits[i]) {
      ic_error ("%s: %s '%s' is given twice", what, noun, IC_SHOWN (item));
      r = -EINVAL;
    }
    else
      mask |= bits[i];
  }
  free (copy);
  if (r == 0)
    *out = mask;
  return r;
}

int
ic_parse_key_types (const char *what, const char *str, unsigned int *out)
{
  static const char *const names[] = { "raw", "hw_wrapped", NULL };
  static const unsigned int bits[] = {
    IC_CRYPTO_KEY_TYPE_RAW, IC_CRYPTO_KEY_TYPE_HW_WRAPPED,
  };

  return ic_parse_flag_list (what, str, "key type", names, bits,
                             "raw, hw_wrapped or both, comma-separated",
                             out);
}

void
ic_format_modes (const unsigned int modes[IC_ENCRYPTION_MODE_MAX], char *buf,
                 size_t size)
{
  size_t used = 0;
  int m;

  if (size)                     /* as snprintf, @size 0 writes nothing */
    buf[0] = '\0';
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++) {
    unsigned int mask = modes[m];
    bool first = true;
    int bit;

    if (!mask)
      continue;
    used += snprintf (buf + used, used < size ? size - used : 0, "%s%s:",
                      used ? ";" : "", ic_crypto_mode_name (m));
    for (bit = 0; bit < 32; bit++)
      if (mask & (1u << bit)) {
        used += snprintf (buf + used, used < size ? size - used : 0, "%s%u",
                          first ? "" : ",", 1u << bit);
        first = false;
      }
  }
}

int
ic_parse_dun (const char *what, const char *str, uint64_t dun[4])
{
  const char *p = str;
  int i;

  memset (dun, 0, 4 * sizeof dun[0]);
  if (!*p)
    goto bad;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    size_t n;

    p += 2;
    n = strlen (p);
    /* Only hex digits: strtoull would also take the "0x" of "0x0x12". */
    if (n == 0 || n > 64 || strspn (p, HEX_DIGITS) != n)
      goto bad;
    /* Hex digits from the least significant end, 16 per limb. */
    for (i = 0; n > 0; i++) {
      size_t take = n < 16 ? n : 16;
      char limb[17];

      memcpy (limb, p + n - take, take);
      limb[take] = '\0';
      dun[i] = strtoull (limb, NULL, 16);
      n -= take;
    }
    return 0;
  }
  /* Decimal: multiply-and-add across the limbs. */
  for (; *p; p++) {
    unsigned __int128 carry;

    if (!isdigit ((unsigned char) *p))
      goto bad;
    carry = *p - '0';
    for (i = 0; i < 4; i++) {
      unsigned __int128 v = (unsigned __int128) dun[i] * 10 + carry;

      dun[i] = (uint64_t) v;
      carry = v >> 64;
    }
    if (carry) {
      ic_error ("%s: DUN '%s' does not fit in 256 bits", what, IC_SHOWN (str));
      return -EINVAL;
    }
  }
  return 0;

bad:
  ic_error ("%s: expected a DUN (a decimal or 0x-hex number), got '%s'",
            what, IC_SHOWN (str));
  return -EINVAL;
}

/* Read all of @fd into locked memory. */
static int
read_fd_secret (const char *what, int fd, char **out, size_t *out_size)
{
  size_t cap = 4096;
  size_t len = 0;
  char *buf = ic_secure_alloc (cap);

  if (!buf)
    goto out_nomem;
  for (;;) {
    ssize_t r;

    if (len + 1 == cap) {
      char *bigger;

      /* Refuse before asking for the bigger buffer: locked memory is
       * scarce, and its failure would hide the real reason.
       */
      if (cap * 2 > MAX_SECRET_SIZE) {
        ic_error ("%s: secret is too long", what);
        ic_secure_free (buf, cap);
        return -E2BIG;
      }
      /* Grow in locked memory; the old copy is wiped. */
      bigger = ic_secure_alloc (cap * 2);
      if (!bigger) {
        ic_secure_free (buf, cap);
        goto out_nomem;
      }
      memcpy (bigger, buf, len);
      ic_secure_free (buf, cap);
      buf = bigger;
      cap *= 2;
    }
    r = read (fd, buf + len, cap - 1 - len);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      int err = errno;

      ic_error ("%s: read: %s", what, ic_strerror (err));
      ic_secure_free (buf, cap);
      return -err;
    }
    if (r == 0)
      break;
    len += r;
  }
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
    buf[--len] = '\0';
  *out = buf;
  *out_size = cap;
  return 0;

out_nomem:
  ic_error ("%s: out of locked memory", what);
  return -ENOMEM;
}

int
ic_read_secret (const char *what, const char *value, char **out,
                size_t *out_size)
{
  int fd;
  int r;

  if (value[0] == '+') {
    struct stat st;

    fd = open (value + 1, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
      r = errno;
      ic_error ("%s: open %s: %s", what, value + 1, ic_strerror (r));
      return -r;
    }
    if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) &&
        (st.st_mode & (S_IRWXG | S_IRWXO))) {
      ic_error ("%s: key file %s is accessible by group or others (mode "
                "%04o); chmod 600 it", what, value + 1,
                (unsigned int) (st.st_mode & 07777));
      close (fd);
      return -EACCES;
    }
    r = read_fd_secret (what, fd, out, out_size);
    close (fd);
    return r;
  }
  if (strcmp (value, "-") == 0)
    return read_fd_secret (what, 0, out, out_size);
  if (value[0] == '-' && isdigit ((unsigned char) value[1])) {
    uint64_t n;

    r = ic_parse_uint (what, value + 1, 0, INT32_MAX, &n);
    if (r < 0)
      return r;
    /* As nbdkit_read_password: 0, 1 and 2 are nbdkit's own (reading
     * them would take the NBD stream of -s, and closing them lose its
     * messages).
     */
    if (n <= 2) {
      ic_error ("%s: -%" PRIu64 ": file descriptors 0, 1 and 2 cannot be "
                "used (key=- reads the terminal)", what, n);
      return -EINVAL;
    }
    r = read_fd_secret (what, (int) n, out, out_size);
    /* Read once, then closed, as nbdkit does with -FD. */
    close ((int) n);
    return r;
  }
  *out_size = strlen (value) + 1;
  *out = ic_secure_alloc (*out_size);
  if (!*out) {
    ic_error ("%s: out of locked memory", what);
    return -ENOMEM;
  }
  memcpy (*out, value, *out_size);
  return 0;
}

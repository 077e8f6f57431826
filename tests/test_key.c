/* tests/test_key.c - unit tests of crypto/key.c: key validation
 * (ic_crypto_init_key() and ic_crypto_key_new(), after Linux
 * blk_crypto_init_key()), ic_hex_decode(), ic_crypto_key_free() and
 * ic_crypto_key_type_name().
 *
 * Every refusal has a case, run through both constructors: the errno (the
 * return value of ic_crypto_init_key(), errno after ic_crypto_key_new())
 * and a distinctive part of the message in ic_last_error(), which never
 * carries key bytes or the text of a key.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "error.h"
#include "key.h"
#include "mode.h"
#include "secmem.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

/* Key material for every case: distinctive bytes, so that a message that
 * leaked them would be caught.
 */
static uint8_t key_bytes[2 * IC_CRYPTO_MAX_ANY_KEY_SIZE];

static void
fill_key_bytes (void)
{
  size_t i;

  for (i = 0; i < sizeof key_bytes; i++)
    key_bytes[i] = 0xa5 ^ (uint8_t) (i * 37 + 11);
}

static bool
is_all (const void *buf, size_t len, uint8_t value)
{
  const uint8_t *p = buf;
  size_t i;

  for (i = 0; i < len; i++)
    if (p[i] != value)
      return false;
  return true;
}

/* Assert that the last error contains @part. */
static void
assert_error_has (const char *part)
{
  const char *msg = ic_last_error ();

  ck_assert_msg (strstr (msg, part) != NULL,
                 "last error \"%s\" does not contain \"%s\"", msg, part);
}

/* Assert that the last error does not show the first bytes of the key
 * material, in either case of hex.
 */
static void
assert_error_has_no_key_bytes (void)
{
  const char *msg = ic_last_error ();
  char hex[9];

  snprintf (hex, sizeof hex, "%02x%02x%02x%02x",
            key_bytes[0], key_bytes[1], key_bytes[2], key_bytes[3]);
  ck_assert_msg (strcasestr (msg, hex) == NULL,
                 "last error \"%s\" shows key bytes", msg);
}

/* Arguments of one ic_crypto_init_key() call. */
struct key_args {
  const char *name;
  size_t key_size;
  int key_type;
  int mode;
  unsigned int dun_bytes;
  unsigned int data_unit_size;
};

static int
init_key (struct ic_crypto_key *key, const struct key_args *a)
{
  return ic_crypto_init_key (key, a->name, key_bytes, a->key_size,
                             (enum ic_crypto_key_type) a->key_type,
                             (enum ic_crypto_mode_num) a->mode,
                             a->dun_bytes, a->data_unit_size);
}

static struct ic_crypto_key *
key_new (const struct key_args *a)
{
  return ic_crypto_key_new (a->name, key_bytes, a->key_size,
                            (enum ic_crypto_key_type) a->key_type,
                            (enum ic_crypto_mode_num) a->mode,
                            a->dun_bytes, a->data_unit_size);
}

/* Both constructors refuse @a with EINVAL and a message containing @part.
 * Like blk_crypto_init_key(), ic_crypto_init_key() clears the key first,
 * so a refused key holds nothing, stale key bytes least of all.
 */
static void
expect_refusal (const struct key_args *a, const char *part)
{
  struct ic_crypto_key *key = ic_crypto_key_alloc ();

  ck_assert_ptr_nonnull (key);
  memset (key, 0x5a, sizeof *key);
  ic_clear_error ();
  ck_assert_int_eq (init_key (key, a), -EINVAL);
  assert_error_has (part);
  assert_error_has_no_key_bytes ();
  ck_assert_msg (is_all (key, sizeof *key, 0),
                 "a refused key is not left all zero");
  ic_crypto_key_free (key);

  ic_clear_error ();
  errno = 0;
  key = key_new (a);
  ck_assert_ptr_null (key);
  ck_assert_int_eq (errno, EINVAL);
  assert_error_has (part);
  assert_error_has_no_key_bytes ();
}

/* A valid raw configuration of @mode, to be spoilt by one field. */
static struct key_args
valid_args (int mode)
{
  struct key_args a = {
    .name = "k1",
    .key_size = ic_crypto_modes[mode].keysize,
    .key_type = IC_CRYPTO_KEY_TYPE_RAW,
    .mode = mode,
    .dun_bytes = 8,
    .data_unit_size = 4096,
  };

  return a;
}

/* Invalid modes, refused before anything else is looked at. */
static const int bad_modes[] = {
  IC_ENCRYPTION_MODE_INVALID, IC_ENCRYPTION_MODE_MAX,
  IC_ENCRYPTION_MODE_MAX + 1, -1, 255,
};

START_TEST (test_invalid_mode)
{
  struct key_args a = valid_args (IC_ENCRYPTION_MODE_AES_256_XTS);
  char part[80];

  a.mode = bad_modes[_i];
  snprintf (part, sizeof part, "k1: init key: invalid crypto mode %d",
            a.mode);
  expect_refusal (&a, part);
}
END_TEST

struct size_tv {
  int mode;
  size_t size;
};

/* Raw keys must be exactly the mode's key size. */
static const struct size_tv raw_size_tvs[] = {
  { IC_ENCRYPTION_MODE_AES_256_XTS, 0 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, 32 },       /* AES-256 without K2 */
  { IC_ENCRYPTION_MODE_AES_256_XTS, 63 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, 65 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 0 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 15 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 17 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 32 },
  { IC_ENCRYPTION_MODE_ADIANTUM, 0 },
  { IC_ENCRYPTION_MODE_ADIANTUM, 31 },
  { IC_ENCRYPTION_MODE_ADIANTUM, 33 },
  { IC_ENCRYPTION_MODE_ADIANTUM, 64 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 0 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 16 },           /* SM4 without K2 */
  { IC_ENCRYPTION_MODE_SM4_XTS, 31 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 33 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 64 },
};

START_TEST (test_raw_size)
{
  const struct size_tv *tv = &raw_size_tvs[_i];
  const struct ic_crypto_mode *m = &ic_crypto_modes[tv->mode];
  struct key_args a = valid_args (tv->mode);
  char part[120];

  a.key_size = tv->size;
  snprintf (part, sizeof part, "k1: init key: %s needs a key of exactly %u "
            "bytes (%u hex digits), got %zu bytes",
            m->name, m->keysize, 2 * m->keysize, tv->size);
  expect_refusal (&a, part);
}
END_TEST

/* Wrapped keys: security strength to 128 bytes. */
static const struct size_tv wrapped_size_tvs[] = {
  { IC_ENCRYPTION_MODE_AES_256_XTS, 0 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, 31 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, 129 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 15 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 129 },
  { IC_ENCRYPTION_MODE_ADIANTUM, 31 },
  { IC_ENCRYPTION_MODE_ADIANTUM, 129 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 15 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 129 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 256 },
};

START_TEST (test_wrapped_size)
{
  const struct size_tv *tv = &wrapped_size_tvs[_i];
  const struct ic_crypto_mode *m = &ic_crypto_modes[tv->mode];
  struct key_args a = valid_args (tv->mode);
  char part[120];

  a.key_type = IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  a.key_size = tv->size;
  snprintf (part, sizeof part, "k1: init key: a hw_wrapped %s key must be "
            "%u to %u bytes, got %zu bytes", m->name, m->security_strength,
            IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE, tv->size);
  expect_refusal (&a, part);
}
END_TEST

/* Key types are single bits; anything else is refused. */
static const int bad_key_types[] = {
  0, IC_CRYPTO_KEY_TYPE_RAW | IC_CRYPTO_KEY_TYPE_HW_WRAPPED, 4, -1,
};

START_TEST (test_invalid_key_type)
{
  struct key_args a = valid_args (IC_ENCRYPTION_MODE_AES_256_XTS);
  char part[80];

  a.key_type = bad_key_types[_i];
  snprintf (part, sizeof part, "k1: init key: invalid key type %d",
            a.key_type);
  expect_refusal (&a, part);
}
END_TEST

struct dun_bytes_tv {
  int mode;
  unsigned int dun_bytes;
};

/* 1 <= dun_bytes <= the mode's IV size: 16 for XTS and ESSIV, 32 for
 * Adiantum.
 */
static const struct dun_bytes_tv dun_bytes_tvs[] = {
  { IC_ENCRYPTION_MODE_AES_256_XTS, 0 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, 17 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, 32 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 0 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 17 },
  { IC_ENCRYPTION_MODE_ADIANTUM, 0 },
  { IC_ENCRYPTION_MODE_ADIANTUM, 33 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 0 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 17 },
  { IC_ENCRYPTION_MODE_SM4_XTS, 1000 },
};

START_TEST (test_dun_bytes)
{
  const struct dun_bytes_tv *tv = &dun_bytes_tvs[_i];
  const struct ic_crypto_mode *m = &ic_crypto_modes[tv->mode];
  struct key_args a = valid_args (tv->mode);
  char part[120];

  a.dun_bytes = tv->dun_bytes;
  snprintf (part, sizeof part, "k1: init key: dun-bytes %u out of range: "
            "%s takes 1 to %u", tv->dun_bytes, m->name, m->ivsize);
  expect_refusal (&a, part);
}
END_TEST

/* Data unit sizes that are not powers of two (upstream's only check). */
static const unsigned int not_power_of_2[] = {
  0, 3, 513, 1536, 4095, 4097, 65535, 0x80000001u, UINT32_MAX,
};

START_TEST (test_data_unit_size_not_power_of_2)
{
  struct key_args a = valid_args (IC_ENCRYPTION_MODE_AES_256_XTS);
  char part[80];

  a.data_unit_size = not_power_of_2[_i];
  snprintf (part, sizeof part, "k1: init key: data unit size %u is not a "
            "power of two", a.data_unit_size);
  expect_refusal (&a, part);
}
END_TEST

/* Powers of two outside 512 .. 65536, the range this project serves. */
static const unsigned int out_of_range[] = {
  1, 2, 16, 256, 131072, 1u << 20, 1u << 31,
};

START_TEST (test_data_unit_size_out_of_range)
{
  struct key_args a = valid_args (IC_ENCRYPTION_MODE_ADIANTUM);
  char part[80];

  a.data_unit_size = out_of_range[_i];
  snprintf (part, sizeof part, "k1: init key: data unit size %u out of "
            "range: 512 to 65536", a.data_unit_size);
  expect_refusal (&a, part);
}
END_TEST

/* With several faults, the first in the documented order is reported:
 * mode, key size (by type), dun_bytes, power of two, range.
 */
struct order_tv {
  struct key_args args;
  const char *part;
};

static const struct order_tv order_tvs[] = {
  { { "k1", 3, 7, 0, 0, 3 }, "invalid crypto mode 0" },
  { { "k1", 3, 7, IC_ENCRYPTION_MODE_SM4_XTS, 0, 3 }, "invalid key type 7" },
  { { "k1", 3, IC_CRYPTO_KEY_TYPE_RAW, IC_ENCRYPTION_MODE_SM4_XTS, 0, 3 },
    "SM4-XTS needs a key of exactly 32 bytes" },
  { { "k1", 3, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, IC_ENCRYPTION_MODE_SM4_XTS, 0,
      3 }, "a hw_wrapped SM4-XTS key must be 16 to 128 bytes" },
  { { "k1", 32, IC_CRYPTO_KEY_TYPE_RAW, IC_ENCRYPTION_MODE_SM4_XTS, 0, 3 },
    "dun-bytes 0 out of range" },
  { { "k1", 32, IC_CRYPTO_KEY_TYPE_RAW, IC_ENCRYPTION_MODE_SM4_XTS, 4, 3 },
    "data unit size 3 is not a power of two" },
  { { "k1", 32, IC_CRYPTO_KEY_TYPE_RAW, IC_ENCRYPTION_MODE_SM4_XTS, 4, 0 },
    "data unit size 0 is not a power of two" },
};

START_TEST (test_order)
{
  expect_refusal (&order_tvs[_i].args, order_tvs[_i].part);
}
END_TEST

/* Accepted configurations, the boundaries of each range included. */
struct success_tv {
  int mode;
  int key_type;
  size_t key_size;
  unsigned int dun_bytes;
  unsigned int data_unit_size;
  unsigned int data_unit_size_bits;
};

static const struct success_tv success_tvs[] = {
  { IC_ENCRYPTION_MODE_AES_256_XTS, IC_CRYPTO_KEY_TYPE_RAW, 64, 8,
    4096, 12 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, IC_CRYPTO_KEY_TYPE_RAW, 64, 1,
    512, 9 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, IC_CRYPTO_KEY_TYPE_RAW, 64, 16,
    65536, 16 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, IC_CRYPTO_KEY_TYPE_RAW, 16, 4,
    1024, 10 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, IC_CRYPTO_KEY_TYPE_RAW, 16, 16,
    2048, 11 },
  { IC_ENCRYPTION_MODE_ADIANTUM, IC_CRYPTO_KEY_TYPE_RAW, 32, 32,
    4096, 12 },
  { IC_ENCRYPTION_MODE_ADIANTUM, IC_CRYPTO_KEY_TYPE_RAW, 32, 17,
    8192, 13 },
  { IC_ENCRYPTION_MODE_SM4_XTS, IC_CRYPTO_KEY_TYPE_RAW, 32, 16,
    16384, 14 },
  { IC_ENCRYPTION_MODE_SM4_XTS, IC_CRYPTO_KEY_TYPE_RAW, 32, 5,
    32768, 15 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, 32, 8,
    4096, 12 },
  { IC_ENCRYPTION_MODE_AES_256_XTS, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, 128, 8,
    4096, 12 },
  { IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, 16,
    8, 512, 9 },
  { IC_ENCRYPTION_MODE_ADIANTUM, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, 32, 32,
    4096, 12 },
  { IC_ENCRYPTION_MODE_ADIANTUM, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, 128, 32,
    4096, 12 },
  { IC_ENCRYPTION_MODE_SM4_XTS, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, 16, 8,
    4096, 12 },
  { IC_ENCRYPTION_MODE_SM4_XTS, IC_CRYPTO_KEY_TYPE_HW_WRAPPED, 100, 8,
    4096, 12 },
};

/* @key holds exactly what @tv and @name describe. */
static void
check_filled (const struct ic_crypto_key *key, const struct success_tv *tv,
              const char *name)
{
  ck_assert_int_eq (key->crypto_cfg.crypto_mode, tv->mode);
  ck_assert_int_eq (key->crypto_cfg.key_type, tv->key_type);
  ck_assert_uint_eq (key->crypto_cfg.dun_bytes, tv->dun_bytes);
  ck_assert_uint_eq (key->crypto_cfg.data_unit_size, tv->data_unit_size);
  ck_assert_uint_eq (key->data_unit_size_bits, tv->data_unit_size_bits);
  ck_assert_uint_eq (1u << key->data_unit_size_bits, tv->data_unit_size);
  ck_assert_uint_eq (key->size, tv->key_size);
  ck_assert_str_eq (key->name, name);
  ck_assert_mem_eq (key->bytes, key_bytes, tv->key_size);
  ck_assert_msg (is_all (key->bytes + tv->key_size,
                         sizeof key->bytes - tv->key_size, 0),
                 "bytes past the key are not zero");
}

START_TEST (test_success)
{
  const struct success_tv *tv = &success_tvs[_i];
  struct key_args a = {
    .name = "k1",
    .key_size = tv->key_size,
    .key_type = tv->key_type,
    .mode = tv->mode,
    .dun_bytes = tv->dun_bytes,
    .data_unit_size = tv->data_unit_size,
  };
  struct ic_crypto_key *key = ic_crypto_key_alloc ();

  ck_assert_ptr_nonnull (key);
  memset (key, 0x5a, sizeof *key);
  ck_assert_msg (init_key (key, &a) == 0, "%s", ic_last_error ());
  check_filled (key, tv, "k1");
  ic_crypto_key_free (key);

  key = key_new (&a);
  ck_assert_msg (key != NULL, "%s", ic_last_error ());
  check_filled (key, tv, "k1");
  ic_crypto_key_free (key);
}
END_TEST

/* The name labels messages ("key" if NULL or empty) and is kept, cut to
 * IC_CRYPTO_KEY_NAME_MAX - 1 characters.
 */
START_TEST (test_name)
{
  struct key_args a = valid_args (IC_ENCRYPTION_MODE_ADIANTUM);
  char long_name[IC_CRYPTO_KEY_NAME_MAX + 40];
  struct ic_crypto_key *key;

  a.name = NULL;
  key = key_new (&a);
  ck_assert_ptr_nonnull (key);
  ck_assert_str_eq (key->name, "");
  ic_crypto_key_free (key);
  a.dun_bytes = 0;
  expect_refusal (&a, "key: init key: dun-bytes 0");
  ck_assert_msg (strncmp (ic_last_error (), "key: ", 5) == 0,
                 "\"%s\" does not start with \"key: \"", ic_last_error ());

  a.name = "";
  expect_refusal (&a, "key: init key: dun-bytes 0");
  ck_assert_msg (strncmp (ic_last_error (), "key: ", 5) == 0,
                 "\"%s\" does not start with \"key: \"", ic_last_error ());

  a.name = "backup-2";
  expect_refusal (&a, "backup-2: init key: dun-bytes 0");

  memset (long_name, 'n', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  a.name = long_name;
  a.dun_bytes = 8;
  key = key_new (&a);
  ck_assert_ptr_nonnull (key);
  ck_assert_uint_eq (strlen (key->name), IC_CRYPTO_KEY_NAME_MAX - 1);
  ck_assert (strncmp (key->name, long_name, IC_CRYPTO_KEY_NAME_MAX - 1) == 0);
  ic_crypto_key_free (key);
}
END_TEST

/* ic_hex_decode(). */

struct hex_tv {
  const char *hex;
  size_t out_size;
  const char *want;             /* the bytes, lower-case hex, no space */
};

static const struct hex_tv hex_tvs[] = {
  { "00", 1, "00" },
  { "0aFf", 2, "0aff" },
  { "abcdef", 3, "abcdef" },
  { "ABCDEF", 3, "abcdef" },
  { "aBcDeF", 3, "abcdef" },
  { "0123456789", 8, "0123456789" },
  /* White space around the digits: a key file's trailing newline. */
  { "0aff\n", 2, "0aff" },
  { "0aff\r\n", 2, "0aff" },
  { "  \t0aff \t\n", 2, "0aff" },
  { "\n\n0aff", 16, "0aff" },
  /* Exactly fills the output. */
  { "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\n",
    64,
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" },
};

#define CANARY 0xa5
#define HEX_OUT_MAX 130

START_TEST (test_hex_decode)
{
  const struct hex_tv *tv = &hex_tvs[_i];
  size_t n = strlen (tv->want) / 2;
  uint8_t out[HEX_OUT_MAX];
  char got[2 * HEX_OUT_MAX + 1];
  size_t i;

  memset (out, CANARY, sizeof out);
  ck_assert_int_eq (ic_hex_decode ("key", tv->hex, out, tv->out_size), n);
  for (i = 0; i < n; i++)
    snprintf (got + 2 * i, 3, "%02x", out[i]);
  got[2 * n] = '\0';
  ck_assert_str_eq (got, tv->want);
  ck_assert_msg (is_all (out + n, sizeof out - n, CANARY),
                 "wrote past the decoded bytes");
}
END_TEST

struct hex_refusal_tv {
  const char *hex;
  size_t out_size;
  int err;
  const char *part;
};

static const struct hex_refusal_tv hex_refusal_tvs[] = {
  { "", 16, EINVAL, "key: expected hexadecimal digits, got nothing" },
  { " \t\n ", 16, EINVAL, "key: expected hexadecimal digits, got nothing" },
  { "abc", 16, EINVAL, "key: odd number of hexadecimal digits (3)" },
  { "  abc\n", 16, EINVAL, "key: odd number of hexadecimal digits (3)" },
  /* Positions count from the first digit, from 1. */
  { "00g1", 16, EINVAL, "key: character 3 is not a hexadecimal digit" },
  { "  00g1\n", 16, EINVAL, "key: character 5 is not a hexadecimal digit" },
  { "00 11", 16, EINVAL, "key: character 3 is not a hexadecimal digit" },
  { "0x00", 16, EINVAL, "key: character 2 is not a hexadecimal digit" },
  { "-0aff", 16, EINVAL, "key: character 1 is not a hexadecimal digit" },
  /* A bad character is reported before an odd length. */
  { "abg", 16, EINVAL, "key: character 3 is not a hexadecimal digit" },
  { "001122334455", 4, E2BIG,
    "key: 6 bytes is too long, at most 4 bytes are accepted" },
  { "00112233445566778899aabbccddeeff00", 16, E2BIG,
    "key: 17 bytes is too long, at most 16 bytes are accepted" },
  /* Too long and odd: odd. */
  { "0011223344556", 4, EINVAL, "key: odd number of hexadecimal digits (13)" },
};

START_TEST (test_hex_refusal)
{
  const struct hex_refusal_tv *tv = &hex_refusal_tvs[_i];
  uint8_t out[HEX_OUT_MAX];

  memset (out, CANARY, sizeof out);
  ic_clear_error ();
  ck_assert_int_eq (ic_hex_decode ("key", tv->hex, out, tv->out_size),
                    -tv->err);
  assert_error_has (tv->part);
  ck_assert_msg (is_all (out + tv->out_size, sizeof out - tv->out_size,
                         CANARY), "wrote past the output");
}
END_TEST

/* Key text that is refused never reaches the message: no four consecutive
 * characters of it appear there.
 */
static const char *const secret_hex[] = {
  "5ec2e711c0ffee42deadbeefZ0123456789abcdef",        /* bad character */
  "5ec2e711c0ffee42deadbeef0123456789abcdef7",        /* odd */
  "5ec2e711c0ffee42deadbeef0123456789abcdef77",       /* too long */
  "  5ec2e711 c0ffee42\n",                            /* inner space */
};

START_TEST (test_hex_secret)
{
  const char *hex = secret_hex[_i];
  uint8_t out[16];
  const char *msg;
  char window[5];
  size_t len = strlen (hex);
  size_t i;

  ic_clear_error ();
  ck_assert_int_lt (ic_hex_decode ("k1", hex, out, sizeof out), 0);
  msg = ic_last_error ();
  ck_assert_msg (strncmp (msg, "k1: ", 4) == 0, "message \"%s\"", msg);
  for (i = 0; i + 4 <= len; i++) {
    memcpy (window, hex + i, 4);
    window[4] = '\0';
    if (strpbrk (window, " \t\n") != NULL)
      continue;
    ck_assert_msg (strstr (msg, window) == NULL,
                   "message \"%s\" echoes \"%s\" of the key", msg, window);
  }
}
END_TEST

/* Every byte value, in lower and in upper case. */
START_TEST (test_hex_all_bytes)
{
  char lower[2 * 256 + 1];
  char upper[2 * 256 + 1];
  uint8_t out[256];
  size_t i;

  for (i = 0; i < 256; i++) {
    snprintf (lower + 2 * i, 3, "%02x", (unsigned int) i);
    snprintf (upper + 2 * i, 3, "%02X", (unsigned int) i);
  }
  memset (out, 0, sizeof out);
  ck_assert_int_eq (ic_hex_decode ("key", lower, out, sizeof out), 256);
  for (i = 0; i < 256; i++)
    ck_assert_uint_eq (out[i], i);
  memset (out, 0, sizeof out);
  ck_assert_int_eq (ic_hex_decode ("key", upper, out, sizeof out), 256);
  for (i = 0; i < 256; i++)
    ck_assert_uint_eq (out[i], i);
}
END_TEST

/* Allocation and freeing. */

START_TEST (test_free_null)
{
  ic_crypto_key_free (NULL);
}
END_TEST

START_TEST (test_alloc_zeroed)
{
  struct ic_crypto_key *key = ic_crypto_key_alloc ();

  ck_assert_ptr_nonnull (key);
  ck_assert (is_all (key, sizeof *key, 0));
  ic_crypto_key_free (key);
}
END_TEST

START_TEST (test_type_name)
{
  ck_assert_str_eq (ic_crypto_key_type_name (IC_CRYPTO_KEY_TYPE_RAW), "raw");
  ck_assert_str_eq (ic_crypto_key_type_name (IC_CRYPTO_KEY_TYPE_HW_WRAPPED),
                    "hw_wrapped");
  ck_assert_str_eq (ic_crypto_key_type_name ((enum ic_crypto_key_type) 0),
                    "invalid");
  ck_assert_str_eq (ic_crypto_key_type_name ((enum ic_crypto_key_type) 3),
                    "invalid");
}
END_TEST

static Suite *
key_suite (void)
{
  Suite *s = suite_create ("key");
  TCase *tc;

  tc = tcase_create ("invalid_mode");
  tcase_add_loop_test (tc, test_invalid_mode, 0, ARRAY_SIZE (bad_modes));
  suite_add_tcase (s, tc);

  tc = tcase_create ("raw_size");
  tcase_add_loop_test (tc, test_raw_size, 0, ARRAY_SIZE (raw_size_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("wrapped_size");
  tcase_add_loop_test (tc, test_wrapped_size, 0,
                       ARRAY_SIZE (wrapped_size_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("key_type");
  tcase_add_loop_test (tc, test_invalid_key_type, 0,
                       ARRAY_SIZE (bad_key_types));
  tcase_add_test (tc, test_type_name);
  suite_add_tcase (s, tc);

  tc = tcase_create ("dun_bytes");
  tcase_add_loop_test (tc, test_dun_bytes, 0, ARRAY_SIZE (dun_bytes_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("data_unit_size");
  tcase_add_loop_test (tc, test_data_unit_size_not_power_of_2, 0,
                       ARRAY_SIZE (not_power_of_2));
  tcase_add_loop_test (tc, test_data_unit_size_out_of_range, 0,
                       ARRAY_SIZE (out_of_range));
  suite_add_tcase (s, tc);

  tc = tcase_create ("order");
  tcase_add_loop_test (tc, test_order, 0, ARRAY_SIZE (order_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("success");
  tcase_add_loop_test (tc, test_success, 0, ARRAY_SIZE (success_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("name");
  tcase_add_test (tc, test_name);
  suite_add_tcase (s, tc);

  tc = tcase_create ("hex");
  tcase_add_loop_test (tc, test_hex_decode, 0, ARRAY_SIZE (hex_tvs));
  tcase_add_loop_test (tc, test_hex_refusal, 0, ARRAY_SIZE (hex_refusal_tvs));
  tcase_add_loop_test (tc, test_hex_secret, 0, ARRAY_SIZE (secret_hex));
  tcase_add_test (tc, test_hex_all_bytes);
  suite_add_tcase (s, tc);

  tc = tcase_create ("alloc");
  tcase_add_test (tc, test_alloc_zeroed);
  tcase_add_test (tc, test_free_null);
  suite_add_tcase (s, tc);

  return s;
}

int
main (void)
{
  SRunner *sr;
  int failed;
  int r;

  r = ic_crypto_init ();
  if (r < 0) {
    fprintf (stderr, "test_key: %s\n", ic_last_error ());
    return EXIT_FAILURE;
  }
  fill_key_bytes ();
  sr = srunner_create (key_suite ());
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

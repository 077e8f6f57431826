/* bench/cipher.c - throughput of crypto/ against raw libgcrypt.
 *
 * For each mode and data unit size, en/decrypts the same buffer with
 * ic_cipher (what the engine and the fallback run) and with libgcrypt used
 * directly in the cheapest correct way (one handle, one setiv per request
 * for XTS, one per data unit for ESSIV), and prints MiB/s and the ratio.
 * Adiantum has no libgcrypt counterpart; its reference column is
 * libgcrypt's ChaCha20 keystream over the same bytes, for scale.  Where
 * crypto/ has SIMD code of its own (AES-256-XTS on VAES/AVX-512, SM4-XTS,
 * Adiantum's ChaCha12 and NH), the ratio is its gain over libgcrypt;
 * IC_NO_SIMD=1 measures the portable paths instead.
 *
 *   bench/cipher [--seconds S] [--size BYTES] [--json]
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "cipher.h"
#include "crypt-ctx.h"
#include "histogram.h"
#include "secmem.h"

static double seconds = 0.5;
static size_t size = 1 << 20;
static bool json;

typedef int (*crypt_fn) (void *opaque, uint8_t *buf, size_t len,
                         unsigned int du, bool enc);

/* MiB/s of @fn over @buf for about @seconds. */
static double
measure (crypt_fn fn, void *opaque, uint8_t *buf, unsigned int du, bool enc)
{
  uint64_t start = ic_now_ns ();
  uint64_t deadline = start + (uint64_t) (seconds * 1e9);
  uint64_t bytes = 0;
  uint64_t now;

  do {
    if (fn (opaque, buf, size, du, enc) < 0) {
      fprintf (stderr, "cipher: en/decryption failed\n");
      exit (1);
    }
    bytes += size;
    now = ic_now_ns ();
  } while (now < deadline);
  return bytes / 1048576.0 / ((now - start) / 1e9);
}

static int
ours (void *opaque, uint8_t *buf, size_t len, unsigned int du, bool enc)
{
  static const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 1000 };

  return enc ? ic_cipher_encrypt (opaque, buf, buf, len, du, dun)
             : ic_cipher_decrypt (opaque, buf, buf, len, du, dun);
}

struct raw {
  enum ic_crypto_mode_num mode;
  gcry_cipher_hd_t hd;
  gcry_cipher_hd_t essiv;
};

static int
raw_crypt (void *opaque, uint8_t *buf, size_t len, unsigned int du, bool enc)
{
  struct raw *r = opaque;
  uint8_t iv[16] = { 0xe8, 0x03 };      /* DUN 1000 */
  uint64_t n = 1000;
  size_t off;
  gcry_error_t err = 0;

  switch (r->mode) {
  case IC_ENCRYPTION_MODE_AES_256_XTS:
  case IC_ENCRYPTION_MODE_SM4_XTS:
    err = gcry_cipher_setiv (r->hd, iv, 16);
    for (off = 0; !err && off < len; off += du)
      err = enc ? gcry_cipher_encrypt (r->hd, buf + off, du, NULL, 0)
                : gcry_cipher_decrypt (r->hd, buf + off, du, NULL, 0);
    break;
  case IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV:
    for (off = 0; !err && off < len; off += du, n++) {
      memset (iv, 0, sizeof iv);
      memcpy (iv, &n, sizeof n);
      err = gcry_cipher_encrypt (r->essiv, iv, 16, NULL, 0);
      if (!err)
        err = gcry_cipher_setiv (r->hd, iv, 16);
      if (!err)
        err = enc ? gcry_cipher_encrypt (r->hd, buf + off, du, NULL, 0)
                  : gcry_cipher_decrypt (r->hd, buf + off, du, NULL, 0);
    }
    break;
  case IC_ENCRYPTION_MODE_ADIANTUM:
    err = gcry_cipher_setiv (r->hd, iv, 12);
    if (!err)
      err = gcry_cipher_encrypt (r->hd, buf, len, NULL, 0);
    break;
  default:
    abort ();
  }
  return err ? -EIO : 0;
}

static void
raw_open (struct raw *r, enum ic_crypto_mode_num mode, const uint8_t *key)
{
  uint8_t salt[32];

  memset (r, 0, sizeof *r);
  r->mode = mode;
  switch (mode) {
  case IC_ENCRYPTION_MODE_AES_256_XTS:
    gcry_cipher_open (&r->hd, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_XTS, 0);
    gcry_cipher_setkey (r->hd, key, 64);
    break;
  case IC_ENCRYPTION_MODE_SM4_XTS:
    gcry_cipher_open (&r->hd, GCRY_CIPHER_SM4, GCRY_CIPHER_MODE_XTS, 0);
    gcry_cipher_setkey (r->hd, key, 32);
    break;
  case IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV:
    gcry_cipher_open (&r->hd, GCRY_CIPHER_AES128, GCRY_CIPHER_MODE_CBC, 0);
    gcry_cipher_setkey (r->hd, key, 16);
    gcry_md_hash_buffer (GCRY_MD_SHA256, salt, key, 16);
    gcry_cipher_open (&r->essiv, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_ECB, 0);
    gcry_cipher_setkey (r->essiv, salt, 32);
    break;
  case IC_ENCRYPTION_MODE_ADIANTUM:
    gcry_cipher_open (&r->hd, GCRY_CIPHER_CHACHA20, GCRY_CIPHER_MODE_STREAM,
                      0);
    gcry_cipher_setkey (r->hd, key, 32);
    break;
  default:
    abort ();
  }
}

static void
usage (int status)
{
  fprintf (status ? stderr : stdout,
           "usage: cipher [--seconds S] [--size BYTES] [--json]\n"
           "MiB/s of crypto/ against raw libgcrypt, per mode and data "
           "unit size.\n");
  exit (status);
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "seconds", required_argument, NULL, 's' },
    { "size", required_argument, NULL, 'b' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  static const unsigned int dus[] = { 512, 4096 };
  uint8_t key[64];
  uint8_t *buf;
  bool first = true;
  int c;
  int m;
  size_t i;

  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 's': seconds = atof (optarg); break;
    case 'b': size = strtoull (optarg, NULL, 0); break;
    case 'j': json = true; break;
    case 'h': usage (0); break;
    default: usage (2);
    }
  }
  if (seconds <= 0 || size < 65536 || size % 65536) {
    fprintf (stderr, "cipher: --seconds must be > 0 and --size a multiple "
             "of 65536\n");
    return 2;
  }
  if (ic_crypto_init () < 0)
    return 1;
  buf = malloc (size);
  if (!buf)
    return 1;
  for (i = 0; i < size; i++)
    buf[i] = i * 7;
  for (i = 0; i < sizeof key; i++)
    key[i] = i * 13 + 1;

  if (json)
    printf ("[");
  else
    printf ("%-18s %6s %4s %12s %12s %7s\n", "mode", "du", "dir",
            "ours MiB/s", "raw MiB/s", "ratio");
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    for (i = 0; i < sizeof dus / sizeof dus[0]; i++) {
      struct ic_cipher *cipher = ic_cipher_new (m);
      struct raw raw;
      int enc;

      if (!cipher ||
          ic_cipher_setkey (cipher, key, ic_crypto_modes[m].keysize) < 0) {
        fprintf (stderr, "cipher: cannot set up %s\n",
                 ic_crypto_mode_name (m));
        return 1;
      }
      raw_open (&raw, m, key);
      for (enc = 1; enc >= 0; enc--) {
        double a = measure (ours, cipher, buf, dus[i], enc);
        double b = measure (raw_crypt, &raw, buf, dus[i], enc);

        if (json)
          printf ("%s\n {\"mode\": \"%s\", \"data_unit_size\": %u, "
                  "\"op\": \"%s\", \"ours_mib_s\": %.1f, "
                  "\"libgcrypt_mib_s\": %.1f, \"ratio\": %.3f, "
                  "\"reference\": \"%s\"}", first ? "" : ",",
                  ic_crypto_mode_name (m), dus[i],
                  enc ? "encrypt" : "decrypt", a, b, a / b,
                  m == IC_ENCRYPTION_MODE_ADIANTUM ? "chacha20" : "same");
        else
          printf ("%-18s %6u %4s %12.1f %12.1f %7.2f%s\n",
                  ic_crypto_mode_name (m), dus[i], enc ? "enc" : "dec", a,
                  b, a / b,
                  m == IC_ENCRYPTION_MODE_ADIANTUM ? "  (raw: ChaCha20)" : "");
        first = false;
      }
      ic_cipher_free (cipher);
      gcry_cipher_close (raw.hd);
      if (raw.essiv)
        gcry_cipher_close (raw.essiv);
    }
  if (json)
    printf ("\n]\n");
  free (buf);
  return 0;
}

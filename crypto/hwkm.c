/* crypto/hwkm.c - see hwkm.h.  The operations mirror what
 * drivers/soc/qcom/ice.c asks of TrustZone (qcom_ice_import_key,
 * _generate_key, _prepare_key, _derive_sw_secret) and the KDF is the one
 * of Documentation/block/inline-encryption.rst, as xfstests'
 * src/fscrypt-crypt-util.c hw_kdf() replicates it.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gcrypt.h>

#include "error.h"
#include "hwkm.h"
#include "key.h"
#include "secmem.h"

/* Offsets in a blob. */
#define BLOB_NONCE 1
#define BLOB_CIPHERTEXT (BLOB_NONCE + IC_HWKM_NONCE_SIZE)
#define BLOB_TAG (BLOB_CIPHERTEXT + IC_HWKM_MASTER_KEY_SIZE)

/* The longest wrapping-key file we read: 64 hex digits and some white
 * space.
 */
#define MAX_KEY_FILE 256

/* The additional authenticated data of each form, after the version
 * byte.
 */
enum blob_form { LONG_TERM, EPHEMERAL };
static const char *const form_label[] = {
  [LONG_TERM] = "inlinecrypt-hwkm long-term",
  [EPHEMERAL] = "inlinecrypt-hwkm ephemeral",
};
static const char *const form_name[] = {
  [LONG_TERM] = "a long-term",
  [EPHEMERAL] = "an ephemerally",
};

/* The two wrapping keys, in locked memory. */
struct wrapping_keys {
  uint8_t lt[IC_HWKM_WRAPPING_KEY_SIZE];
  uint8_t eph[IC_HWKM_WRAPPING_KEY_SIZE];
};

struct ic_hwkm {
  struct wrapping_keys *keys;   /* immutable once created */
  unsigned int refs;            /* protected by registry_lock */
  /* The file's identity, for sharing; unset for a volatile one. */
  bool registered;
  dev_t dev;
  ino_t ino;
  struct ic_hwkm *next;         /* protected by registry_lock */
  char *name;                   /* not secret */
};

/* Covers the list of open key managers and every reference count. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ic_hwkm *registry;        /* protected by registry_lock */

/* ---- the hardware KDF ---- */

/* SP 800-108 counter mode with AES-256-CMAC, label and layout of
 * xfstests' hw_kdf().
 */
int
ic_hw_kdf (const uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE],
           const uint8_t *context, size_t context_size, uint8_t *out,
           size_t out_size)
{
  static const uint8_t label[11] = {
    0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20,
  };
  uint8_t info[4 + sizeof label + 1 + 64 + 4];
  gcry_mac_hd_t h;
  gcry_error_t err;
  size_t i;
  int r = 0;

  if (out_size == 0 || out_size % 16 != 0 || context_size > 64) {
    ic_error ("hw kdf: %zu output bytes for a %zu-byte context: expected a "
              "multiple of 16 and at most 64", out_size, context_size);
    return -EINVAL;
  }
  r = ic_crypto_init ();
  if (r < 0)
    return r;
  err = gcry_mac_open (&h, GCRY_MAC_CMAC_AES, GCRY_MAC_FLAG_SECURE, NULL);
  if (err) {
    ic_error ("hw kdf: AES-256-CMAC: %s", gcry_strerror (err));
    return -EIO;
  }
  /* A 32-byte key makes the CMAC an AES-256-CMAC. */
  err = gcry_mac_setkey (h, master_key, IC_HWKM_MASTER_KEY_SIZE);
  if (err) {
    ic_error ("hw kdf: AES-256-CMAC: %s", gcry_strerror (err));
    gcry_mac_close (h);
    return -EIO;
  }
  for (i = 0; i < out_size && r == 0; i += 16) {
    uint32_t counter = i / 16 + 1;
    uint32_t bits = out_size * 8;
    size_t len = 16;
    size_t n = 0;

    info[n++] = counter >> 24;
    info[n++] = counter >> 16;
    info[n++] = counter >> 8;
    info[n++] = counter;
    memcpy (info + n, label, sizeof label);
    n += sizeof label;
    info[n++] = 0x00;
    memcpy (info + n, context, context_size);
    n += context_size;
    info[n++] = bits >> 24;
    info[n++] = bits >> 16;
    info[n++] = bits >> 8;
    info[n++] = bits;
    err = gcry_mac_write (h, info, n);
    if (!err)
      err = gcry_mac_read (h, out + i, &len);
    if (!err)
      err = gcry_mac_reset (h);
    if (err || len != 16) {
      ic_error ("hw kdf: AES-256-CMAC: %s", gcry_strerror (err));
      ic_memzero_explicit (out, out_size);
      r = -EIO;
    }
  }
  gcry_mac_close (h);
  return r;
}

int
ic_hw_kdf_inline_key (const uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE],
                      uint8_t inline_key[IC_HWKM_INLINE_KEY_SIZE])
{
  static const uint8_t context[36] =
    "inline encryption key\0\0\0\0\0\0\x02\x43\0\x82\x50\0\0\0\0";

  return ic_hw_kdf (master_key, context, sizeof context, inline_key,
                    IC_HWKM_INLINE_KEY_SIZE);
}

int
ic_hw_kdf_sw_secret (const uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE],
                     uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE])
{
  static const uint8_t context[28] =
    "raw secret\0\0\0\0\0\0\0\0\0\x02\x17\0\x80\x50\0\0\0\0";

  return ic_hw_kdf (master_key, context, sizeof context, sw_secret,
                    IC_CRYPTO_SW_SECRET_SIZE);
}

int
ic_hwkm_master_key_from_raw (const uint8_t *raw_key, size_t raw_key_size,
                             uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE])
{
  if (raw_key_size < IC_HWKM_MIN_RAW_KEY_SIZE ||
      raw_key_size > IC_HWKM_MAX_RAW_KEY_SIZE) {
    ic_error ("import key: a raw key must be %u to %u bytes, got %zu",
              IC_HWKM_MIN_RAW_KEY_SIZE, IC_HWKM_MAX_RAW_KEY_SIZE,
              raw_key_size);
    return -EINVAL;
  }
  /* The KDF's own size is taken as it is: what xfstests verifies. */
  if (raw_key_size == IC_HWKM_MASTER_KEY_SIZE) {
    memcpy (master_key, raw_key, IC_HWKM_MASTER_KEY_SIZE);
    return 0;
  }
  return ic_sha256_secure (master_key, raw_key, raw_key_size);
}

/* ---- wrapping: AES-256-GCM ---- */

static size_t
make_aad (uint8_t *aad, uint8_t version, enum blob_form form)
{
  size_t n = strlen (form_label[form]);

  aad[0] = version;
  memcpy (aad + 1, form_label[form], n);
  return n + 1;
}

/* Wrap @master_key under @wrapping_key as a blob of @form. */
static int
wrap (const char *who, const char *op,
      const uint8_t wrapping_key[IC_HWKM_WRAPPING_KEY_SIZE],
      enum blob_form form, const uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE],
      uint8_t blob[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  uint8_t aad[64];
  size_t aad_len;
  gcry_cipher_hd_t h;
  gcry_error_t err;

  blob[0] = IC_HWKM_BLOB_VERSION;
  gcry_create_nonce (blob + BLOB_NONCE, IC_HWKM_NONCE_SIZE);
  aad_len = make_aad (aad, blob[0], form);
  err = gcry_cipher_open (&h, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_GCM,
                          GCRY_CIPHER_SECURE);
  if (err)
    goto out_error;
  err = gcry_cipher_setkey (h, wrapping_key, IC_HWKM_WRAPPING_KEY_SIZE);
  if (!err)
    err = gcry_cipher_setiv (h, blob + BLOB_NONCE, IC_HWKM_NONCE_SIZE);
  if (!err)
    err = gcry_cipher_authenticate (h, aad, aad_len);
  if (!err)
    err = gcry_cipher_encrypt (h, blob + BLOB_CIPHERTEXT,
                               IC_HWKM_MASTER_KEY_SIZE, master_key,
                               IC_HWKM_MASTER_KEY_SIZE);
  if (!err)
    err = gcry_cipher_gettag (h, blob + BLOB_TAG, IC_HWKM_TAG_SIZE);
  gcry_cipher_close (h);
  if (err)
    goto out_error;
  return IC_HWKM_BLOB_SIZE;

out_error:
  ic_memzero_explicit (blob, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  ic_error ("%s: %s: AES-256-GCM: %s", who, op, gcry_strerror (err));
  return -EIO;
}

/* Open a blob of @form: -EBADMSG unless it is one of ours, unchanged. */
static int
unwrap (const char *who, const char *op,
        const uint8_t wrapping_key[IC_HWKM_WRAPPING_KEY_SIZE],
        enum blob_form form, const uint8_t *blob, size_t blob_size,
        uint8_t master_key[IC_HWKM_MASTER_KEY_SIZE])
{
  uint8_t aad[64];
  size_t aad_len;
  gcry_cipher_hd_t h;
  gcry_error_t err;

  if (blob_size != IC_HWKM_BLOB_SIZE) {
    ic_error ("%s: %s: invalid key: %s wrapped key is %u bytes, got %zu",
              who, op, form_name[form], IC_HWKM_BLOB_SIZE, blob_size);
    return -EBADMSG;
  }
  if (blob[0] != IC_HWKM_BLOB_VERSION) {
    ic_error ("%s: %s: invalid key: unknown format version %u (expected "
              "%u)", who, op, blob[0], IC_HWKM_BLOB_VERSION);
    return -EBADMSG;
  }
  aad_len = make_aad (aad, blob[0], form);
  err = gcry_cipher_open (&h, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_GCM,
                          GCRY_CIPHER_SECURE);
  if (err)
    goto out_error;
  err = gcry_cipher_setkey (h, wrapping_key, IC_HWKM_WRAPPING_KEY_SIZE);
  if (!err)
    err = gcry_cipher_setiv (h, blob + BLOB_NONCE, IC_HWKM_NONCE_SIZE);
  if (!err)
    err = gcry_cipher_authenticate (h, aad, aad_len);
  if (!err)
    err = gcry_cipher_decrypt (h, master_key, IC_HWKM_MASTER_KEY_SIZE,
                               blob + BLOB_CIPHERTEXT,
                               IC_HWKM_MASTER_KEY_SIZE);
  if (!err)
    err = gcry_cipher_checktag (h, blob + BLOB_TAG, IC_HWKM_TAG_SIZE);
  gcry_cipher_close (h);
  if (gcry_err_code (err) == GPG_ERR_CHECKSUM) {
    ic_memzero_explicit (master_key, IC_HWKM_MASTER_KEY_SIZE);
    /* Another key manager's, the other form, or altered: all the same to
     * the hardware.
     */
    ic_error ("%s: %s: invalid key: not %s wrapped key of this key "
              "manager (authentication failed)", who, op, form_name[form]);
    return -EBADMSG;
  }
  if (err)
    goto out_error;
  return 0;

out_error:
  ic_memzero_explicit (master_key, IC_HWKM_MASTER_KEY_SIZE);
  ic_error ("%s: %s: AES-256-GCM: %s", who, op, gcry_strerror (err));
  return -EIO;
}

/* ---- the operations ---- */

/* Random bytes of the quality a hardware key needs.  For this level
 * libgcrypt also polls its jitter entropy collector, whose 128 KiB it would
 * otherwise keep until exit, reachable only from its secure memory (a
 * leak to LeakSanitizer); closing the random device releases it
 * (_gcry_rndjent_fini).  The next such call sets it up again, a few
 * milliseconds: these calls are rare (a new wrapping key, generate).
 */
static void
very_strong_random (void *buf, size_t size)
{
  gcry_randomize (buf, size, GCRY_VERY_STRONG_RANDOM);
  gcry_control (GCRYCTL_CLOSE_RANDOM_DEVICE, 0);
}

/* A master key in locked memory, or NULL after ic_error(). */
static uint8_t *
master_alloc (const char *who, const char *op)
{
  uint8_t *m = ic_secure_alloc (IC_HWKM_MASTER_KEY_SIZE);

  if (!m)
    ic_error ("%s: %s: out of locked memory", who, op);
  return m;
}

int
ic_hwkm_import_key (struct ic_hwkm *hwkm, const char *who,
                    const uint8_t *raw_key, size_t raw_key_size,
                    uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  uint8_t *master;
  int r;

  if (raw_key_size < IC_HWKM_MIN_RAW_KEY_SIZE ||
      raw_key_size > IC_HWKM_MAX_RAW_KEY_SIZE) {
    ic_error ("%s: import key: a raw key must be %u to %u bytes, got %zu",
              who, IC_HWKM_MIN_RAW_KEY_SIZE, IC_HWKM_MAX_RAW_KEY_SIZE,
              raw_key_size);
    return -EINVAL;
  }
  master = master_alloc (who, "import key");
  if (!master)
    return -ENOMEM;
  r = ic_hwkm_master_key_from_raw (raw_key, raw_key_size, master);
  if (r == 0)
    r = wrap (who, "import key", hwkm->keys->lt, LONG_TERM, master,
              lt_key);
  ic_secure_free (master, IC_HWKM_MASTER_KEY_SIZE);
  return r;
}

int
ic_hwkm_generate_key (struct ic_hwkm *hwkm, const char *who,
                      uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  uint8_t *master = master_alloc (who, "generate key");
  int r;

  if (!master)
    return -ENOMEM;
  /* The hardware's RNG. */
  very_strong_random (master, IC_HWKM_MASTER_KEY_SIZE);
  r = wrap (who, "generate key", hwkm->keys->lt, LONG_TERM, master,
            lt_key);
  ic_secure_free (master, IC_HWKM_MASTER_KEY_SIZE);
  return r;
}

int
ic_hwkm_prepare_key (struct ic_hwkm *hwkm, const char *who,
                     const uint8_t *lt_key, size_t lt_key_size,
                     uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  uint8_t *master = master_alloc (who, "prepare key");
  int r;

  if (!master)
    return -ENOMEM;
  r = unwrap (who, "prepare key", hwkm->keys->lt, LONG_TERM, lt_key,
              lt_key_size, master);
  if (r == 0)
    r = wrap (who, "prepare key", hwkm->keys->eph, EPHEMERAL, master,
              eph_key);
  ic_secure_free (master, IC_HWKM_MASTER_KEY_SIZE);
  return r;
}

int
ic_hwkm_derive_sw_secret (struct ic_hwkm *hwkm, const char *who,
                          const uint8_t *eph_key, size_t eph_key_size,
                          uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE])
{
  uint8_t *master = master_alloc (who, "derive software secret");
  int r;

  if (!master)
    return -ENOMEM;
  r = unwrap (who, "derive software secret", hwkm->keys->eph,
              EPHEMERAL, eph_key, eph_key_size, master);
  if (r == 0)
    r = ic_hw_kdf_sw_secret (master, sw_secret);
  ic_secure_free (master, IC_HWKM_MASTER_KEY_SIZE);
  return r;
}

int
ic_hwkm_derive_inline_key (struct ic_hwkm *hwkm, const char *who,
                           const uint8_t *eph_key, size_t eph_key_size,
                           uint8_t inline_key[IC_HWKM_INLINE_KEY_SIZE])
{
  uint8_t *master = master_alloc (who, "program key");
  int r;

  if (!master)
    return -ENOMEM;
  r = unwrap (who, "program key", hwkm->keys->eph, EPHEMERAL,
              eph_key, eph_key_size, master);
  if (r == 0)
    r = ic_hw_kdf_inline_key (master, inline_key);
  if (r < 0)
    ic_memzero_explicit (inline_key, IC_HWKM_INLINE_KEY_SIZE);
  ic_secure_free (master, IC_HWKM_MASTER_KEY_SIZE);
  return r;
}

/* ---- key managers ---- */

static void
hwkm_free (struct ic_hwkm *hwkm)
{
  ic_secure_free (hwkm->keys, sizeof *hwkm->keys);
  free (hwkm->name);
  free (hwkm);
}

static struct ic_hwkm *
hwkm_alloc (const char *name)
{
  struct ic_hwkm *hwkm;
  int r = ic_crypto_init ();

  if (r < 0) {
    errno = -r;
    return NULL;
  }
  hwkm = calloc (1, sizeof *hwkm);
  if (!hwkm)
    goto out_nomem;
  hwkm->keys = ic_secure_alloc (sizeof *hwkm->keys);
  hwkm->name = strdup (name);
  if (!hwkm->keys || !hwkm->name)
    goto out_free;
  hwkm->refs = 1;
  /* Per process, as per boot on real hardware. */
  gcry_randomize (hwkm->keys->eph, IC_HWKM_WRAPPING_KEY_SIZE,
                  GCRY_STRONG_RANDOM);
  return hwkm;

out_free:
  hwkm_free (hwkm);
out_nomem:
  ic_error ("wrapping key %s: out of locked memory", name);
  errno = ENOMEM;
  return NULL;
}


struct ic_hwkm *
ic_hwkm_new_volatile (void)
{
  struct ic_hwkm *hwkm = hwkm_alloc ("(volatile)");

  if (hwkm)
    gcry_randomize (hwkm->keys->lt, IC_HWKM_WRAPPING_KEY_SIZE,
                    GCRY_STRONG_RANDOM);
  return hwkm;
}

/* Write a new random wrapping key to @path, which must not exist.
 * Return: 0, or -errno (-EEXIST: someone else made it meanwhile).
 */
static int
create_key_file (const char *path)
{
  uint8_t *key = ic_secure_alloc (IC_HWKM_WRAPPING_KEY_SIZE);
  char *hex = ic_secure_alloc (2 * IC_HWKM_WRAPPING_KEY_SIZE + 2);
  size_t len = 2 * IC_HWKM_WRAPPING_KEY_SIZE + 1;
  size_t done = 0;
  size_t i;
  int fd;
  int r = 0;

  if (!key || !hex) {
    ic_error ("wrapping key %s: out of locked memory", path);
    r = -ENOMEM;
    goto out_free;
  }
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
             0600);
  if (fd == -1) {
    r = -errno;
    if (r != -EEXIST)
      ic_error ("wrapping key %s: create: %s", path, ic_strerror (-r));
    goto out_free;
  }
  very_strong_random (key, IC_HWKM_WRAPPING_KEY_SIZE);
  for (i = 0; i < IC_HWKM_WRAPPING_KEY_SIZE; i++)
    snprintf (hex + 2 * i, 3, "%02x", key[i]);
  hex[len - 1] = '\n';
  while (done < len) {
    ssize_t n = write (fd, hex + done, len - done);

    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      r = n == 0 ? -EIO : -errno;
      break;
    }
    done += n;
  }
  if (r == 0 && fsync (fd) == -1)
    r = -errno;
  if (close (fd) == -1 && r == 0)
    r = -errno;
  if (r < 0) {
    ic_error ("wrapping key %s: write: %s", path, ic_strerror (-r));
    unlink (path);
  }
  else
    ic_debug ("wrapping key %s: created a new long-term wrapping key", path);
out_free:
  ic_secure_free (key, IC_HWKM_WRAPPING_KEY_SIZE);
  ic_secure_free (hex, 2 * IC_HWKM_WRAPPING_KEY_SIZE + 2);
  return r;
}

/* Read the key in @fd (64 hex digits) into @key. */
static int
read_key_file (const char *path, int fd,
               uint8_t key[IC_HWKM_WRAPPING_KEY_SIZE])
{
  char *text = ic_secure_alloc (MAX_KEY_FILE + 1);
  char what[512];
  size_t len = 0;
  int r = 0;

  if (!text) {
    ic_error ("wrapping key %s: out of locked memory", path);
    return -ENOMEM;
  }
  while (len < MAX_KEY_FILE) {
    ssize_t n = read (fd, text + len, MAX_KEY_FILE - len);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      r = -errno;
      ic_error ("wrapping key %s: read: %s", path, ic_strerror (-r));
      goto out_free;
    }
    if (n == 0)
      break;
    len += n;
  }
  text[len] = '\0';
  if (len == MAX_KEY_FILE || strlen (text) != len) {
    ic_error ("wrapping key %s: expected 64 hexadecimal digits (32 bytes)",
              path);
    r = -EINVAL;
    goto out_free;
  }
  snprintf (what, sizeof what, "wrapping key %s", path);
  r = ic_hex_decode (what, text, key, IC_HWKM_WRAPPING_KEY_SIZE);
  if (r == -E2BIG || (r >= 0 && r != IC_HWKM_WRAPPING_KEY_SIZE)) {
    ic_error ("wrapping key %s: expected 64 hexadecimal digits (32 bytes)",
              path);
    r = -EINVAL;
  }
  else if (r > 0)
    r = 0;
out_free:
  ic_secure_free (text, MAX_KEY_FILE + 1);
  return r;
}

struct ic_hwkm *
ic_hwkm_open (const char *path, bool *created)
{
  struct ic_hwkm *hwkm = NULL;
  struct stat st;
  int fd = -1;
  int tries;
  int r = ic_crypto_init ();

  if (created)
    *created = false;
  if (r < 0) {
    errno = -r;
    return NULL;
  }
  pthread_mutex_lock (&registry_lock);
  /* Create it if missing; if someone else creates it meanwhile, read
   * theirs.
   */
  for (tries = 0; tries < 3 && fd == -1; tries++) {
    fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
      break;
    r = -errno;
    if (r != -ENOENT) {
      ic_error ("wrapping key %s: open: %s", path, ic_strerror (-r));
      goto out_unlock;
    }
    r = create_key_file (path);
    if (r < 0 && r != -EEXIST)
      goto out_unlock;
    if (r == 0 && created)
      *created = true;
  }
  if (fd == -1) {
    r = -ENOENT;
    ic_error ("wrapping key %s: open: %s", path, ic_strerror (-r));
    goto out_unlock;
  }
  if (fstat (fd, &st) == -1) {
    r = -errno;
    ic_error ("wrapping key %s: stat: %s", path, ic_strerror (-r));
    goto out_close;
  }
  if (!S_ISREG (st.st_mode)) {
    ic_error ("wrapping key %s: not a regular file", path);
    r = -EINVAL;
    goto out_close;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    ic_error ("wrapping key %s: the file is accessible by group or others "
              "(mode %04o); chmod 600 it", path,
              (unsigned int) (st.st_mode & 07777));
    r = -EACCES;
    goto out_close;
  }

  hwkm = hwkm_alloc (path);
  if (!hwkm) {
    r = -errno;
    goto out_close;
  }
  r = read_key_file (path, fd, hwkm->keys->lt);
  if (r < 0) {
    hwkm_free (hwkm);
    hwkm = NULL;
    goto out_close;
  }

  /* One key manager per file: engines sharing it share blobs.  The key
   * is compared too: a file replaced since may have the old inode number.
   */
  {
    struct ic_hwkm *old;

    for (old = registry; old; old = old->next)
      if (old->dev == st.st_dev && old->ino == st.st_ino &&
          memcmp (old->keys->lt, hwkm->keys->lt,
                  IC_HWKM_WRAPPING_KEY_SIZE) == 0) {
        hwkm_free (hwkm);
        hwkm = old;
        hwkm->refs++;
        goto out_close;
      }
  }
  hwkm->registered = true;
  hwkm->dev = st.st_dev;
  hwkm->ino = st.st_ino;
  hwkm->next = registry;
  registry = hwkm;
out_close:
  close (fd);
out_unlock:
  pthread_mutex_unlock (&registry_lock);
  if (r < 0)
    errno = -r;
  return r < 0 ? NULL : hwkm;
}

struct ic_hwkm *
ic_hwkm_get (struct ic_hwkm *hwkm)
{
  pthread_mutex_lock (&registry_lock);
  hwkm->refs++;
  pthread_mutex_unlock (&registry_lock);
  return hwkm;
}

void
ic_hwkm_put (struct ic_hwkm *hwkm)
{
  struct ic_hwkm **pp;
  bool last;

  if (!hwkm)
    return;
  pthread_mutex_lock (&registry_lock);
  last = --hwkm->refs == 0;
  if (last && hwkm->registered)
    for (pp = &registry; *pp; pp = &(*pp)->next)
      if (*pp == hwkm) {
        *pp = hwkm->next;
        break;
      }
  pthread_mutex_unlock (&registry_lock);
  if (last)
    hwkm_free (hwkm);
}

const char *
ic_hwkm_name (const struct ic_hwkm *hwkm)
{
  return hwkm->name;
}

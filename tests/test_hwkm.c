/* tests/test_hwkm.c - hardware-wrapped keys (crypto/hwkm.c, the engine's
 * wrapped-key ll_ops and programming, the ioctl-level checks of
 * crypto/profile.c, the fallback's refusal, and the forwarding of
 * stacked devices in stack/table.c).
 *
 * The KDF's known answers come from tests/hwkdf.py, which computes them
 * with python3-cryptography's CMAC, independently of libgcrypt; the
 * ciphertext of a wrapped key is checked against ic_cipher keyed with
 * those inline keys.
 */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cipher.h"
#include "conf.h"
#include "crypt-ctx.h"
#include "engine.h"
#include "error.h"
#include "fallback.h"
#include "hwkm.h"
#include "key.h"
#include "leaf.h"
#include "profile.h"
#include "secmem.h"
#include "table.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))
#define XTS IC_ENCRYPTION_MODE_AES_256_XTS
#define DU 4096
#define MAXW IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE

/* ---- helpers ---- */

static char tmpdir[64];

static void
setup (void)
{
  ck_assert_int_eq (ic_crypto_init (), 0);
  ic_clear_error ();
  snprintf (tmpdir, sizeof tmpdir, "test_hwkm.XXXXXX");
  ck_assert_ptr_nonnull (mkdtemp (tmpdir));
}

static void
teardown (void)
{
  char cmd[128];

  snprintf (cmd, sizeof cmd, "rm -rf %s", tmpdir);
  ck_assert_int_eq (system (cmd), 0);
}

static void
hex_to (const char *hex, uint8_t *out, size_t size)
{
  ck_assert_int_eq (ic_hex_decode ("test", hex, out, size), (int) size);
}

#define assert_error_has(part)                                          \
  ck_assert_msg (strstr (ic_last_error (), (part)) != NULL,            \
                 "error '%s' lacks '%s'", ic_last_error (), (part))

static void
path_in_tmp (char *buf, size_t size, const char *name)
{
  snprintf (buf, size, "%s/%s", tmpdir, name);
}

/* Import @raw of @n bytes: a long-term blob of IC_HWKM_BLOB_SIZE bytes. */
static void
import_ok (struct ic_hwkm *hwkm, const uint8_t *raw, size_t n,
           uint8_t lt[MAXW])
{
  int r = ic_hwkm_import_key (hwkm, "hw", raw, n, lt);

  ck_assert_msg (r == IC_HWKM_BLOB_SIZE, "import: %d: %s", r,
                 ic_last_error ());
}

static void
prepare_ok (struct ic_hwkm *hwkm, const uint8_t *lt, uint8_t eph[MAXW])
{
  int r = ic_hwkm_prepare_key (hwkm, "hw", lt, IC_HWKM_BLOB_SIZE, eph);

  ck_assert_msg (r == IC_HWKM_BLOB_SIZE, "prepare: %d: %s", r,
                 ic_last_error ());
}

/* An engine taking AES-256-XTS/4096 with raw and (if @wrapped) wrapped
 * keys, with @hwkm (NULL: its own volatile one).
 */
static struct ic_engine *
engine_new (const char *name, bool wrapped, struct ic_hwkm *hwkm,
            unsigned int slots)
{
  struct ic_engine_config cfg;
  struct ic_engine *e;

  ic_engine_config_default (&cfg, name);
  memset (cfg.modes_supported, 0, sizeof cfg.modes_supported);
  cfg.modes_supported[XTS] = 0x1000 | 0x200;
  cfg.modes_supported[IC_ENCRYPTION_MODE_ADIANTUM] = 0x1000;
  cfg.num_slots = slots;
  cfg.key_types = IC_CRYPTO_KEY_TYPE_RAW |
                  (wrapped ? IC_CRYPTO_KEY_TYPE_HW_WRAPPED : 0);
  cfg.hwkm = hwkm;
  e = ic_engine_new (&cfg);
  ck_assert_msg (e != NULL, "engine: %s", ic_last_error ());
  return e;
}

/* A hw_wrapped AES-256-XTS/4096 key from the raw key @raw_hex, imported
 * and prepared through @profile.
 */
static struct ic_crypto_key *
wrapped_key (struct ic_crypto_profile *profile, const char *name,
             const char *raw_hex)
{
  uint8_t raw[64];
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];
  size_t n = strlen (raw_hex) / 2;
  size_t lt_size = sizeof lt;
  size_t eph_size = sizeof eph;
  struct ic_crypto_key *key;

  hex_to (raw_hex, raw, n);
  ck_assert_int_eq (ic_crypto_ioctl_import_key (profile, raw, n, lt,
                                                &lt_size), 0);
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (profile, lt, lt_size, eph,
                                                 &eph_size), 0);
  key = ic_crypto_key_new (name, eph, eph_size, IC_CRYPTO_KEY_TYPE_HW_WRAPPED,
                           XTS, 8, DU);
  ck_assert_ptr_nonnull (key);
  return key;
}

static void
fill (uint8_t *buf, size_t len, unsigned int seed)
{
  size_t i;

  for (i = 0; i < len; i++)
    buf[i] = (i * 13 + seed * 101) >> 2;
}

/* AES-256-XTS of @len bytes under the inline key @inline_hex from @dun. */
static void
xts_reference (const char *inline_hex, uint8_t *dst, const uint8_t *src,
               size_t len, uint64_t dun)
{
  struct ic_cipher *c = ic_cipher_new (XTS);
  uint64_t d[IC_CRYPTO_DUN_ARRAY_SIZE] = { dun };
  uint8_t k[64];

  hex_to (inline_hex, k, 64);
  ck_assert_ptr_nonnull (c);
  ck_assert_int_eq (ic_cipher_setkey (c, k, 64), 0);
  ck_assert_int_eq (ic_cipher_encrypt (c, dst, src, len, DU, d), 0);
  ic_cipher_free (c);
}

/* Encrypt through @e's keyslot for @key; return the result of the get or
 * of the encryption.
 */
static int
engine_encrypt (struct ic_engine *e, const struct ic_crypto_key *key,
                uint8_t *dst, const uint8_t *src, size_t len, uint64_t dun)
{
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx = { .key = key };
  int r;

  ic_crypt_dun_set_u64 (ctx.dun, dun);
  ic_engine_enter (e);
  r = ic_crypto_get_keyslot (ic_engine_profile (e), key, &slot);
  if (r == 0) {
    r = ic_engine_encrypt (e, slot, &ctx, dst, src, len);
    ic_crypto_put_keyslot (slot);
  }
  ic_engine_exit (e);
  return r;
}

static int
engine_decrypt (struct ic_engine *e, const struct ic_crypto_key *key,
                uint8_t *buf, size_t len, uint64_t dun)
{
  struct ic_crypto_keyslot *slot;
  struct ic_crypt_ctx ctx = { .key = key };
  int r;

  ic_crypt_dun_set_u64 (ctx.dun, dun);
  ic_engine_enter (e);
  r = ic_crypto_get_keyslot (ic_engine_profile (e), key, &slot);
  if (r == 0) {
    r = ic_engine_decrypt (e, slot, &ctx, buf, buf, len);
    ic_crypto_put_keyslot (slot);
  }
  ic_engine_exit (e);
  return r;
}

/* ---- kdf: known answers from tests/hwkdf.py ---- */

static const struct kdf_vector {
  const char *raw;              /* hex, 16..64 bytes */
  const char *master;
  const char *inline_key;
  const char *sw_secret;
} kdf_vectors[] = {
  { "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "16317c8fe3133e7aef46bdede2b39f09a81e9fbe0c095f906c5c1341da6eaf17"
    "f151e2982f4f14a5495f78761066cafa5ebb995997d3fb5c8678bb394b6b57dc",
    "48b69fb100fda3d600b75d7f25e2b8f1cf95e5de1bd624b9273d537519270c65" },
  { "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "53ef96bb39166d21caab5f9f680251acde7465ace4e31774fa2c557e12678999"
    "5dfef43617fe3fa2d1f286b4865f185dd69f2a9cca395a75cd07e2320f181bd9",
    "51b8b2840c297e885e5f65d4c639cab4a78d3feaae329a890be42800ced21d10" },
  /* Not 32 bytes: master = SHA-256 (raw). */
  { "000102030405060708090a0b0c0d0e0f",
    "be45cb2605bf36bebde684841a28f0fd43c69850a3dce5fedba69928ee3a8991",
    "13ddda4c0e068d250dd1592762d00484098ada5e2c9dc168fb082bf3f0d5d195"
    "e024fb3fd9531c8a960832aaa9ced9d98b8f9ebd7045215d61114b4b02e3828f",
    "e76cc643a62698a3f607f38cce5934624a23c5f94347fcfb537a57cf0bc800c7" },
  { "6465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80818283"
    "84",
    "05fdfbdd837065b958785506c54fd8bb63473a1ea78602a0781ceca3902bd727",
    "45cfe237a156a70c21085972cadbd688fd68e070593f89b5c800e5705692b4a8"
    "0bff927a46c92a274e644a752bc847be133e195b2c58a4e5e52ed5deaba7a184",
    "8a34f296d9e2e51bc9dfc12f0f939883540e262af1e20a1c4335a0088ec09ea9" },
  { "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
    "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108",
    "4c62b914a8a03fcc2ec3dedcd6d53d238f709ab6a69731e3f23b2081c24eeaa0"
    "eee32713ae11ee0db67825d1a2ef0de2a5a80f13be9575e00392b3dbcd4e6eb9",
    "83472ca5ae96d347c1893411429ffa778e7ea344284f84af56945fd580a1dbed" },
};

/* The KDF itself, from the master key. */
START_TEST (test_kdf_vectors)
{
  const struct kdf_vector *v = &kdf_vectors[_i];
  uint8_t raw[64];
  uint8_t master[32];
  uint8_t want_master[32];
  uint8_t inline_key[64];
  uint8_t want_inline[64];
  uint8_t sw[32];
  uint8_t want_sw[32];
  size_t n = strlen (v->raw) / 2;

  hex_to (v->raw, raw, n);
  hex_to (v->master, want_master, 32);
  hex_to (v->inline_key, want_inline, 64);
  hex_to (v->sw_secret, want_sw, 32);
  ck_assert_int_eq (ic_hwkm_master_key_from_raw (raw, n, master), 0);
  ck_assert_mem_eq (master, want_master, 32);
  ck_assert_int_eq (ic_hw_kdf_inline_key (master, inline_key), 0);
  ck_assert_mem_eq (inline_key, want_inline, 64);
  ck_assert_int_eq (ic_hw_kdf_sw_secret (master, sw), 0);
  ck_assert_mem_eq (sw, want_sw, 32);
}
END_TEST

/* Through a key manager: import, prepare, derive; the same answers. */
START_TEST (test_kdf_through_hwkm)
{
  const struct kdf_vector *v = &kdf_vectors[_i];
  struct ic_hwkm *hwkm = ic_hwkm_new_volatile ();
  uint8_t raw[64];
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];
  uint8_t inline_key[64];
  uint8_t want_inline[64];
  uint8_t sw[32];
  uint8_t want_sw[32];
  size_t n = strlen (v->raw) / 2;

  ck_assert_ptr_nonnull (hwkm);
  hex_to (v->raw, raw, n);
  hex_to (v->inline_key, want_inline, 64);
  hex_to (v->sw_secret, want_sw, 32);
  import_ok (hwkm, raw, n, lt);
  prepare_ok (hwkm, lt, eph);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph,
                                              IC_HWKM_BLOB_SIZE, sw), 0);
  ck_assert_mem_eq (sw, want_sw, 32);
  ck_assert_int_eq (ic_hwkm_derive_inline_key (hwkm, "hw", eph,
                                               IC_HWKM_BLOB_SIZE,
                                               inline_key), 0);
  ck_assert_mem_eq (inline_key, want_inline, 64);
  /* No form holds the raw key or the master key in the clear. */
  ck_assert (memmem (lt, IC_HWKM_BLOB_SIZE, raw, 16) == NULL);
  ck_assert (memmem (eph, IC_HWKM_BLOB_SIZE, raw, 16) == NULL);
  ic_hwkm_put (hwkm);
}
END_TEST

static const size_t bad_kdf_sizes[][2] = {
  /* out_size, context_size */
  { 0, 16 }, { 15, 16 }, { 17, 16 }, { 32, 65 },
};

START_TEST (test_kdf_bad_sizes)
{
  uint8_t master[32] = { 1 };
  uint8_t ctx[80] = { 0 };
  uint8_t out[64];

  ck_assert_int_eq (ic_hw_kdf (master, ctx, bad_kdf_sizes[_i][1], out,
                               bad_kdf_sizes[_i][0]), -EINVAL);
  assert_error_has ("hw kdf: ");
}
END_TEST

/* ---- blobs ---- */

/* Blob layout: version 1, 61 bytes, fresh nonces; the same key imported
 * twice gives two blobs with one secret.
 */
START_TEST (test_blob_format)
{
  struct ic_hwkm *hwkm = ic_hwkm_new_volatile ();
  uint8_t raw[32];
  uint8_t lt1[MAXW];
  uint8_t lt2[MAXW];
  uint8_t eph1[MAXW];
  uint8_t eph2[MAXW];
  uint8_t sw1[32];
  uint8_t sw2[32];

  ck_assert_int_eq (IC_HWKM_BLOB_SIZE, 61);
  fill (raw, sizeof raw, 3);
  import_ok (hwkm, raw, 32, lt1);
  import_ok (hwkm, raw, 32, lt2);
  ck_assert_uint_eq (lt1[0], IC_HWKM_BLOB_VERSION);
  ck_assert_mem_ne (lt1 + 1, lt2 + 1, IC_HWKM_NONCE_SIZE);
  ck_assert_mem_ne (lt1, lt2, IC_HWKM_BLOB_SIZE);
  prepare_ok (hwkm, lt1, eph1);
  prepare_ok (hwkm, lt2, eph2);
  ck_assert_uint_eq (eph1[0], IC_HWKM_BLOB_VERSION);
  ck_assert_mem_ne (eph1, eph2, IC_HWKM_BLOB_SIZE);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph1,
                                              IC_HWKM_BLOB_SIZE, sw1), 0);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph2,
                                              IC_HWKM_BLOB_SIZE, sw2), 0);
  ck_assert_mem_eq (sw1, sw2, 32);
  /* An ephemeral blob is a valid hw_wrapped AES-256-XTS key. */
  {
    struct ic_crypto_key *key =
      ic_crypto_key_new ("kw", eph1, IC_HWKM_BLOB_SIZE,
                         IC_CRYPTO_KEY_TYPE_HW_WRAPPED, XTS, 8, DU);

    ck_assert_ptr_nonnull (key);
    ic_crypto_key_free (key);
  }
  ic_hwkm_put (hwkm);
}
END_TEST

/* Generated keys: random, prepared like imported ones. */
START_TEST (test_generate)
{
  struct ic_hwkm *hwkm = ic_hwkm_new_volatile ();
  uint8_t lt1[MAXW];
  uint8_t lt2[MAXW];
  uint8_t eph[MAXW];
  uint8_t sw1[32];
  uint8_t sw2[32];

  ck_assert_int_eq (ic_hwkm_generate_key (hwkm, "hw", lt1),
                    IC_HWKM_BLOB_SIZE);
  ck_assert_int_eq (ic_hwkm_generate_key (hwkm, "hw", lt2),
                    IC_HWKM_BLOB_SIZE);
  prepare_ok (hwkm, lt1, eph);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph,
                                              IC_HWKM_BLOB_SIZE, sw1), 0);
  prepare_ok (hwkm, lt2, eph);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph,
                                              IC_HWKM_BLOB_SIZE, sw2), 0);
  ck_assert_mem_ne (sw1, sw2, 32);
  ic_hwkm_put (hwkm);
}
END_TEST

/* ---- errors: every errno of the operations ---- */

static const size_t bad_raw_sizes[] = { 0, 1, 15, 65, 128 };

START_TEST (test_import_bad_size)
{
  struct ic_hwkm *hwkm = ic_hwkm_new_volatile ();
  uint8_t raw[128] = { 0 };
  uint8_t lt[MAXW];

  ck_assert_int_eq (ic_hwkm_import_key (hwkm, "hw", raw, bad_raw_sizes[_i],
                                        lt), -EINVAL);
  assert_error_has ("hw: import key: a raw key must be 16 to 64 bytes");
  ic_hwkm_put (hwkm);
}
END_TEST

/* Damage at each part of a blob: version, nonce, ciphertext, tag. */
static const size_t damage_at[] = { 0, 1, 12, 13, 30, 44, 45, 60 };

START_TEST (test_prepare_damaged)
{
  struct ic_hwkm *hwkm = ic_hwkm_new_volatile ();
  uint8_t raw[32];
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];

  fill (raw, sizeof raw, 1);
  import_ok (hwkm, raw, 32, lt);
  lt[damage_at[_i]] ^= 0x01;
  memset (eph, 0xaa, sizeof eph);
  ck_assert_int_eq (ic_hwkm_prepare_key (hwkm, "hw", lt, IC_HWKM_BLOB_SIZE,
                                         eph), -EBADMSG);
  assert_error_has ("hw: prepare key: invalid key: ");
  lt[damage_at[_i]] ^= 0x01;
  prepare_ok (hwkm, lt, eph);
  /* The same for an ephemeral blob at derive and at programming. */
  eph[damage_at[_i]] ^= 0x80;
  {
    uint8_t sw[32];
    uint8_t ik[64];

    ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph,
                                                IC_HWKM_BLOB_SIZE, sw),
                      -EBADMSG);
    assert_error_has ("hw: derive software secret: invalid key: ");
    memset (ik, 0x55, sizeof ik);
    ck_assert_int_eq (ic_hwkm_derive_inline_key (hwkm, "hw", eph,
                                                 IC_HWKM_BLOB_SIZE, ik),
                      -EBADMSG);
    /* Nothing of a failed derivation is left. */
    {
      uint8_t zero[64] = { 0 };

      ck_assert_mem_eq (ik, zero, 64);
    }
  }
  ic_hwkm_put (hwkm);
}
END_TEST

static const size_t bad_blob_sizes[] = { 0, 1, 32, 60, 62, 128 };

START_TEST (test_bad_blob_size)
{
  struct ic_hwkm *hwkm = ic_hwkm_new_volatile ();
  uint8_t blob[MAXW] = { IC_HWKM_BLOB_VERSION };
  uint8_t out[MAXW];

  ck_assert_int_eq (ic_hwkm_prepare_key (hwkm, "hw", blob, bad_blob_sizes[_i],
                                         out), -EBADMSG);
  assert_error_has ("hw: prepare key: invalid key: a long-term wrapped key "
                    "is 61 bytes");
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", blob,
                                              bad_blob_sizes[_i], out),
                    -EBADMSG);
  assert_error_has ("hw: derive software secret: invalid key: an "
                    "ephemerally wrapped key is 61 bytes");
  ic_hwkm_put (hwkm);
}
END_TEST

/* One form never passes for the other (the GCM additional data). */
START_TEST (test_wrong_form)
{
  struct ic_hwkm *hwkm = ic_hwkm_new_volatile ();
  uint8_t raw[32];
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];
  uint8_t out[MAXW];

  fill (raw, sizeof raw, 2);
  import_ok (hwkm, raw, 32, lt);
  prepare_ok (hwkm, lt, eph);
  /* An ephemeral blob given to prepare. */
  ck_assert_int_eq (ic_hwkm_prepare_key (hwkm, "hw", eph, IC_HWKM_BLOB_SIZE,
                                         out), -EBADMSG);
  assert_error_has ("hw: prepare key: invalid key: not a long-term wrapped "
                    "key of this key manager (authentication failed)");
  /* A long-term blob given to derive or programmed. */
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", lt,
                                              IC_HWKM_BLOB_SIZE, out),
                    -EBADMSG);
  assert_error_has ("not an ephemerally wrapped key of this key manager");
  ck_assert_int_eq (ic_hwkm_derive_inline_key (hwkm, "hw", lt,
                                               IC_HWKM_BLOB_SIZE, out),
                    -EBADMSG);
  ic_hwkm_put (hwkm);
}
END_TEST

/* A blob of another key manager, of either form. */
START_TEST (test_other_hwkm)
{
  struct ic_hwkm *a = ic_hwkm_new_volatile ();
  struct ic_hwkm *b = ic_hwkm_new_volatile ();
  uint8_t raw[32];
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];
  uint8_t out[MAXW];

  fill (raw, sizeof raw, 4);
  import_ok (a, raw, 32, lt);
  prepare_ok (a, lt, eph);
  ck_assert_int_eq (ic_hwkm_prepare_key (b, "hw", lt, IC_HWKM_BLOB_SIZE,
                                         out), -EBADMSG);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (b, "hw", eph,
                                              IC_HWKM_BLOB_SIZE, out),
                    -EBADMSG);
  ic_hwkm_put (a);
  ic_hwkm_put (b);
}
END_TEST

/* ---- ioctl-level checks (crypto/profile.c) ---- */

START_TEST (test_ioctl_sizes)
{
  struct ic_engine *e = engine_new ("ufs", true, NULL, 4);
  struct ic_crypto_profile *p = ic_engine_profile (e);
  uint8_t raw[129] = { 0 };
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];
  size_t size;

  fill (raw, 64, 9);
  /* EINVAL before the hardware sees it. */
  size = sizeof lt;
  ck_assert_int_eq (ic_crypto_ioctl_import_key (p, raw, 15, lt, &size),
                    -EINVAL);
  assert_error_has ("import key: a raw key must be 16 to 64 bytes, got 15");
  ck_assert_int_eq (ic_crypto_ioctl_import_key (p, raw, 65, lt, &size),
                    -EINVAL);
  ck_assert_uint_eq (size, sizeof lt);
  /* EOVERFLOW: one byte short; nothing written, size unchanged. */
  size = IC_HWKM_BLOB_SIZE - 1;
  memset (lt, 0xee, sizeof lt);
  ck_assert_int_eq (ic_crypto_ioctl_import_key (p, raw, 64, lt, &size),
                    -EOVERFLOW);
  assert_error_has ("import key: the key is 61 bytes, the buffer only 60");
  ck_assert_uint_eq (size, IC_HWKM_BLOB_SIZE - 1);
  ck_assert_uint_eq (lt[0], 0xee);
  size = IC_HWKM_BLOB_SIZE - 1;
  ck_assert_int_eq (ic_crypto_ioctl_generate_key (p, lt, &size),
                    -EOVERFLOW);
  /* Exactly enough. */
  size = IC_HWKM_BLOB_SIZE;
  ck_assert_int_eq (ic_crypto_ioctl_import_key (p, raw, 64, lt, &size), 0);
  ck_assert_uint_eq (size, IC_HWKM_BLOB_SIZE);
  /* prepare: more than 128 bytes is EINVAL; a small buffer EOVERFLOW. */
  size = sizeof eph;
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (p, raw, 129, eph, &size),
                    -EINVAL);
  assert_error_has ("prepare key: a long-term wrapped key is at most 128 "
                    "bytes, got 129");
  size = 16;
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (p, lt, IC_HWKM_BLOB_SIZE,
                                                 eph, &size), -EOVERFLOW);
  size = sizeof eph;
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (p, lt, IC_HWKM_BLOB_SIZE,
                                                 eph, &size), 0);
  ck_assert_uint_eq (size, IC_HWKM_BLOB_SIZE);
  /* EBADMSG passes through. */
  lt[20] ^= 1;
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (p, lt, IC_HWKM_BLOB_SIZE,
                                                 eph, &size), -EBADMSG);
  ic_engine_free (e);
}
END_TEST

/* EOPNOTSUPP: no profile, a profile without HW_WRAPPED (raw-only engine),
 * the fallback's.
 */
START_TEST (test_ioctl_unsupported)
{
  struct ic_engine *e = engine_new ("ufs", false, NULL, 4);
  struct ic_crypto_profile *profiles[3];
  uint8_t raw[32] = { 1 };
  uint8_t buf[MAXW];
  uint8_t sw[32];
  size_t size;
  size_t i;

  ck_assert_int_eq (ic_crypto_fallback_init (), 0);
  profiles[0] = NULL;
  profiles[1] = ic_engine_profile (e);
  profiles[2] = ic_crypto_fallback_profile ();
  ck_assert_ptr_null (profiles[1]->ll_ops.import_key);
  for (i = 0; i < ARRAY_SIZE (profiles); i++) {
    size = sizeof buf;
    ck_assert_int_eq (ic_crypto_ioctl_import_key (profiles[i], raw, 32, buf,
                                                  &size), -EOPNOTSUPP);
    assert_error_has ("import key: no hardware-wrapped key support");
    ck_assert_int_eq (ic_crypto_ioctl_generate_key (profiles[i], buf, &size),
                      -EOPNOTSUPP);
    ck_assert_int_eq (ic_crypto_ioctl_prepare_key (profiles[i], buf, 61, buf,
                                                   &size), -EOPNOTSUPP);
    ck_assert_int_eq (ic_crypto_derive_sw_secret (profiles[i], buf, 61, sw),
                      -EOPNOTSUPP);
  }
  /* Without a profile, EOPNOTSUPP comes before the argument checks
   * (blk_crypto_ioctl() returns it before dispatching).
   */
  size = sizeof buf;
  ck_assert_int_eq (ic_crypto_ioctl_import_key (NULL, raw, 8, buf, &size),
                    -EOPNOTSUPP);
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (NULL, buf, 129, buf, &size),
                    -EOPNOTSUPP);
  /* With one, the argument checks come first, as upstream. */
  ck_assert_int_eq (ic_crypto_ioctl_import_key (profiles[1], raw, 8, buf,
                                                &size), -EINVAL);
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (profiles[1], buf, 129, buf,
                                                 &size), -EINVAL);
  ic_engine_free (e);
}
END_TEST

/* ---- the wrapping-key file ---- */

START_TEST (test_file_created)
{
  char path[128];
  char text[128];
  struct stat st;
  struct ic_hwkm *a;
  struct ic_hwkm *b;
  FILE *fp;
  size_t n;
  size_t i;

  path_in_tmp (path, sizeof path, "wk");
  a = ic_hwkm_open (path, NULL);
  ck_assert_msg (a != NULL, "open: %s", ic_last_error ());
  ck_assert_str_eq (ic_hwkm_name (a), path);
  ck_assert_int_eq (stat (path, &st), 0);
  ck_assert_uint_eq (st.st_mode & 07777, 0600);
  fp = fopen (path, "r");
  ck_assert_ptr_nonnull (fp);
  n = fread (text, 1, sizeof text - 1, fp);
  fclose (fp);
  text[n] = '\0';
  ck_assert_uint_eq (n, 65);
  ck_assert_int_eq (text[64], '\n');
  for (i = 0; i < 64; i++)
    ck_assert (strchr ("0123456789abcdef", text[i]) != NULL);
  /* The same file again: the same key manager. */
  b = ic_hwkm_open (path, NULL);
  ck_assert_ptr_eq (a, b);
  ic_hwkm_put (b);
  ic_hwkm_put (a);
}
END_TEST

/* The long-term key persists; the ephemeral one is per key manager
 * (per process, as per boot).
 */
START_TEST (test_file_persists)
{
  char path[128];
  struct ic_hwkm *hwkm;
  uint8_t raw[32];
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];
  uint8_t eph2[MAXW];
  uint8_t sw[32];
  uint8_t sw2[32];

  path_in_tmp (path, sizeof path, "wk");
  fill (raw, sizeof raw, 5);
  hwkm = ic_hwkm_open (path, NULL);
  ck_assert_ptr_nonnull (hwkm);
  import_ok (hwkm, raw, 32, lt);
  prepare_ok (hwkm, lt, eph);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph,
                                              IC_HWKM_BLOB_SIZE, sw), 0);
  ic_hwkm_put (hwkm);

  /* "After a reboot". */
  hwkm = ic_hwkm_open (path, NULL);
  ck_assert_ptr_nonnull (hwkm);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph,
                                              IC_HWKM_BLOB_SIZE, sw2),
                    -EBADMSG);
  prepare_ok (hwkm, lt, eph2);
  ck_assert_int_eq (ic_hwkm_derive_sw_secret (hwkm, "hw", eph2,
                                              IC_HWKM_BLOB_SIZE, sw2), 0);
  ck_assert_mem_eq (sw, sw2, 32);
  ic_hwkm_put (hwkm);
}
END_TEST

/* Another file: another key manager, whose blobs are not ours. */
START_TEST (test_file_other)
{
  char p1[128];
  char p2[128];
  struct ic_hwkm *a;
  struct ic_hwkm *b;
  uint8_t raw[32];
  uint8_t lt[MAXW];
  uint8_t out[MAXW];

  path_in_tmp (p1, sizeof p1, "wk1");
  path_in_tmp (p2, sizeof p2, "wk2");
  a = ic_hwkm_open (p1, NULL);
  b = ic_hwkm_open (p2, NULL);
  ck_assert_ptr_nonnull (a);
  ck_assert_ptr_nonnull (b);
  ck_assert_ptr_ne (a, b);
  fill (raw, sizeof raw, 6);
  import_ok (a, raw, 32, lt);
  ck_assert_int_eq (ic_hwkm_prepare_key (b, "hw", lt, IC_HWKM_BLOB_SIZE,
                                         out), -EBADMSG);
  ic_hwkm_put (a);
  ic_hwkm_put (b);
}
END_TEST

/* A file made by the user, with a key we know. */
START_TEST (test_file_given)
{
  char path[128];
  struct ic_hwkm *hwkm;
  int fd;
  const char *key =
    "  00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";

  path_in_tmp (path, sizeof path, "wk");
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (write (fd, key, strlen (key)), (ssize_t) strlen (key));
  close (fd);
  hwkm = ic_hwkm_open (path, NULL);
  ck_assert_msg (hwkm != NULL, "open: %s", ic_last_error ());
  ic_hwkm_put (hwkm);
}
END_TEST

static const struct bad_file {
  const char *content;          /* NULL: a directory */
  mode_t mode;
  int err;
  const char *msg;
} bad_files[] = {
  { "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    0640, EACCES, "the file is accessible by group or others (mode 0640); "
    "chmod 600 it" },
  { "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    0604, EACCES, "(mode 0604)" },
  { "00112233445566778899aabbccddeeff00112233445566778899aabbccdd\n", 0600,
    EINVAL, "expected 64 hexadecimal digits (32 bytes)" },
  { "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\n",
    0600, EINVAL, "expected 64 hexadecimal digits (32 bytes)" },
  { "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    0600, EINVAL, "character 1 is not a hexadecimal digit" },
  { "", 0600, EINVAL, "expected hexadecimal digits, got nothing" },
  { NULL, 0700, EINVAL, "not a regular file" },
};

START_TEST (test_file_refused)
{
  const struct bad_file *bf = &bad_files[_i];
  char path[128];
  struct ic_hwkm *hwkm;
  char want[256];

  path_in_tmp (path, sizeof path, "wk");
  if (bf->content) {
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL, 0600);

    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, bf->content, strlen (bf->content)),
                      (ssize_t) strlen (bf->content));
    close (fd);
    ck_assert_int_eq (chmod (path, bf->mode), 0);
  }
  else
    ck_assert_int_eq (mkdir (path, bf->mode), 0);
  errno = 0;
  hwkm = ic_hwkm_open (path, NULL);
  ck_assert_ptr_null (hwkm);
  ck_assert_int_eq (errno, bf->err);
  snprintf (want, sizeof want, "wrapping key %s", path);
  assert_error_has (want);
  assert_error_has (bf->msg);
}
END_TEST

START_TEST (test_file_unreachable)
{
  char path[128];

  path_in_tmp (path, sizeof path, "no/such/dir/wk");
  errno = 0;
  ck_assert_ptr_null (ic_hwkm_open (path, NULL));
  ck_assert_int_eq (errno, ENOENT);
  assert_error_has ("create: No such file or directory");
}
END_TEST

/* ---- the engine ---- */

/* The profile advertises wrapped keys and has the four ops; a raw-only
 * engine has neither.
 */
START_TEST (test_engine_caps)
{
  struct ic_engine *e = engine_new ("ufs", true, NULL, 4);
  struct ic_engine *r = engine_new ("emmc", false, NULL, 4);
  struct ic_crypto_profile *p = ic_engine_profile (e);

  ck_assert_uint_eq (p->key_types_supported,
                     IC_CRYPTO_KEY_TYPE_RAW | IC_CRYPTO_KEY_TYPE_HW_WRAPPED);
  ck_assert_ptr_nonnull (p->ll_ops.derive_sw_secret);
  ck_assert_ptr_nonnull (p->ll_ops.import_key);
  ck_assert_ptr_nonnull (p->ll_ops.generate_key);
  ck_assert_ptr_nonnull (p->ll_ops.prepare_key);
  /* The config is kept as given (no key manager was given). */
  ck_assert_ptr_null (ic_engine_config (e)->hwkm);
  p = ic_engine_profile (r);
  ck_assert_uint_eq (p->key_types_supported, IC_CRYPTO_KEY_TYPE_RAW);
  ck_assert_ptr_null (p->ll_ops.derive_sw_secret);
  ck_assert_ptr_null (p->ll_ops.prepare_key);
  ic_engine_free (e);
  ic_engine_free (r);
}
END_TEST

/* Data through a keyslot programmed with a wrapped key is AES-256-XTS
 * under the inline key hwkdf.py derives; a reset reprograms the slot from
 * the ephemeral blob, and the data stays readable.
 */
START_TEST (test_engine_crypt_and_reset)
{
  const struct kdf_vector *v = &kdf_vectors[_i];
  struct ic_engine *e = engine_new ("ufs", true, NULL, 2);
  struct ic_crypto_key *key;
  struct ic_engine_stats st;
  static uint8_t pt[3 * DU];
  static uint8_t ct[3 * DU];
  static uint8_t want[3 * DU];

  key = wrapped_key (ic_engine_profile (e), "kw", v->raw);
  fill (pt, sizeof pt, _i);
  xts_reference (v->inline_key, want, pt, sizeof pt, 77);
  ck_assert_int_eq (engine_encrypt (e, key, ct, pt, sizeof pt, 77), 0);
  ck_assert_mem_eq (ct, want, sizeof ct);

  ck_assert_uint_eq (ic_engine_reset (e), 0);
  ic_engine_read_stats (e, &st, false);
  ck_assert_uint_eq (st.resets, 1);
  ck_assert_uint_eq (st.slots.programs, 2);     /* first + after reset */
  ck_assert_int_eq (engine_decrypt (e, key, ct, sizeof ct, 77), 0);
  ck_assert_mem_eq (ct, pt, sizeof ct);
  /* No reprogramming on the way: the reset did it. */
  ic_engine_read_stats (e, &st, false);
  ck_assert_uint_eq (st.slots.programs, 2);
  ck_assert_uint_eq (st.slots.hits, 1);

  ck_assert_int_eq (ic_crypto_evict_key (ic_engine_profile (e), key), 0);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* Slots change hands between raw and wrapped keys, with one slot: each
 * key still gets its own ciphertext.
 */
START_TEST (test_engine_mixed_slots)
{
  const struct kdf_vector *v = &kdf_vectors[0];
  struct ic_engine *e = engine_new ("ufs", true, NULL, 1);
  struct ic_crypto_key *kw;
  struct ic_crypto_key *kr;
  struct ic_crypto_key *kw2;
  uint8_t raw64[64];
  static uint8_t pt[DU];
  static uint8_t ct[DU];
  static uint8_t want[DU];
  int round;

  hex_to (v->inline_key, raw64, 64);
  /* A raw key with the bytes of the wrapped key's inline key. */
  kr = ic_crypto_key_new ("kr", raw64, 64, IC_CRYPTO_KEY_TYPE_RAW, XTS, 8,
                          DU);
  kw = wrapped_key (ic_engine_profile (e), "kw", v->raw);
  kw2 = wrapped_key (ic_engine_profile (e), "kw2", kdf_vectors[1].raw);
  ck_assert_ptr_nonnull (kr);
  fill (pt, sizeof pt, 1);
  for (round = 0; round < 3; round++) {
    xts_reference (v->inline_key, want, pt, DU, round);
    ck_assert_int_eq (engine_encrypt (e, kw, ct, pt, DU, round), 0);
    ck_assert_mem_eq (ct, want, DU);
    ck_assert_int_eq (engine_encrypt (e, kr, ct, pt, DU, round), 0);
    ck_assert_mem_eq (ct, want, DU);
    xts_reference (kdf_vectors[1].inline_key, want, pt, DU, round);
    ck_assert_int_eq (engine_encrypt (e, kw2, ct, pt, DU, round), 0);
    ck_assert_mem_eq (ct, want, DU);
  }
  ic_crypto_evict_key (ic_engine_profile (e), kw2);
  ic_crypto_key_free (kw);
  ic_crypto_key_free (kw2);
  ic_crypto_key_free (kr);
  ic_engine_free (e);
}
END_TEST

/* Programming refusals: an invalid blob (EBADMSG), a mode the hardware
 * cannot derive (EINVAL), a wrapped key on a raw-only engine
 * (EOPNOTSUPP).  A refused key leaves the slot with its old key.
 */
START_TEST (test_engine_refusals)
{
  struct ic_engine *e = engine_new ("ufs", true, NULL, 1);
  struct ic_engine *r = engine_new ("emmc", false, NULL, 1);
  struct ic_crypto_key *good;
  struct ic_crypto_key *bad;
  struct ic_crypto_key *adiantum;
  uint8_t blob[MAXW];
  static uint8_t pt[DU];
  static uint8_t ct[DU];
  static uint8_t want[DU];

  good = wrapped_key (ic_engine_profile (e), "good", kdf_vectors[0].raw);
  fill (pt, sizeof pt, 2);
  xts_reference (kdf_vectors[0].inline_key, want, pt, DU, 5);
  ck_assert_int_eq (engine_encrypt (e, good, ct, pt, DU, 5), 0);

  memcpy (blob, good->bytes, good->size);
  blob[30] ^= 4;
  bad = ic_crypto_key_new ("bad", blob, IC_HWKM_BLOB_SIZE,
                           IC_CRYPTO_KEY_TYPE_HW_WRAPPED, XTS, 8, DU);
  ck_assert_ptr_nonnull (bad);
  ck_assert_int_eq (engine_encrypt (e, bad, ct, pt, DU, 5), -EBADMSG);
  assert_error_has ("ufs: program key: invalid key: not an ephemerally "
                    "wrapped key of this key manager");
  adiantum = ic_crypto_key_new ("adi", good->bytes, good->size,
                                IC_CRYPTO_KEY_TYPE_HW_WRAPPED,
                                IC_ENCRYPTION_MODE_ADIANTUM, 8, DU);
  ck_assert_ptr_nonnull (adiantum);
  ck_assert_int_eq (engine_encrypt (e, adiantum, ct, pt, DU, 5), -EINVAL);
  assert_error_has ("ufs: program keyslot 0: key adi: a hardware-wrapped "
                    "key derives an AES-256-XTS inline key, not a Adiantum "
                    "key");
  /* The one slot still holds the good key: a hit, same ciphertext. */
  ck_assert_int_eq (engine_encrypt (e, good, ct, pt, DU, 5), 0);
  ck_assert_mem_eq (ct, want, DU);

  ck_assert_int_eq (engine_encrypt (r, good, ct, pt, DU, 5), -EOPNOTSUPP);
  assert_error_has ("emmc: program keyslot 0: AES-256-XTS/4096 is not "
                    "supported");

  ic_crypto_evict_key (ic_engine_profile (e), good);
  ic_crypto_key_free (good);
  ic_crypto_key_free (bad);
  ic_crypto_key_free (adiantum);
  ic_engine_free (e);
  ic_engine_free (r);
}
END_TEST

/* Engines sharing a wrapping-key file share blobs; a reset of one does
 * not disturb the other.
 */
START_TEST (test_engine_shared_hwkm)
{
  char path[128];
  struct ic_hwkm *h1;
  struct ic_hwkm *h2;
  struct ic_engine *e1;
  struct ic_engine *e2;
  struct ic_crypto_key *key;
  static uint8_t pt[DU];
  static uint8_t ct1[DU];
  static uint8_t ct2[DU];

  path_in_tmp (path, sizeof path, "wk");
  h1 = ic_hwkm_open (path, NULL);
  h2 = ic_hwkm_open (path, NULL);
  ck_assert_ptr_nonnull (h1);
  ck_assert_ptr_eq (h1, h2);
  e1 = engine_new ("ufs0", true, h1, 2);
  e2 = engine_new ("ufs1", true, h2, 2);
  /* The engines hold their own references. */
  ic_hwkm_put (h1);
  ic_hwkm_put (h2);
  key = wrapped_key (ic_engine_profile (e1), "kw", kdf_vectors[2].raw);
  fill (pt, sizeof pt, 3);
  ck_assert_int_eq (engine_encrypt (e1, key, ct1, pt, DU, 9), 0);
  ck_assert_int_eq (engine_encrypt (e2, key, ct2, pt, DU, 9), 0);
  ck_assert_mem_eq (ct1, ct2, DU);
  ck_assert_uint_eq (ic_engine_reset (e2), 0);
  ck_assert_int_eq (engine_decrypt (e2, key, ct2, DU, 9), 0);
  ck_assert_mem_eq (ct2, pt, DU);
  ic_crypto_evict_key (ic_engine_profile (e1), key);
  ic_crypto_evict_key (ic_engine_profile (e2), key);
  ic_crypto_key_free (key);
  ic_engine_free (e1);
  ic_engine_free (e2);
}
END_TEST

/* The engine's derive_sw_secret through the profile wrapper. */
START_TEST (test_engine_derive)
{
  struct ic_engine *e = engine_new ("ufs", true, NULL, 1);
  struct ic_crypto_key *key;
  uint8_t sw[32];
  uint8_t want[32];

  key = wrapped_key (ic_engine_profile (e), "kw", kdf_vectors[3].raw);
  hex_to (kdf_vectors[3].sw_secret, want, 32);
  ck_assert_int_eq (ic_crypto_derive_sw_secret (ic_engine_profile (e),
                                                key->bytes, key->size, sw),
                    0);
  ck_assert_mem_eq (sw, want, 32);
  key->bytes[50] ^= 1;
  ck_assert_int_eq (ic_crypto_derive_sw_secret (ic_engine_profile (e),
                                                key->bytes, key->size, sw),
                    -EBADMSG);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* ---- the fallback never handles wrapped keys ---- */

START_TEST (test_fallback_refuses)
{
  struct ic_engine *e = engine_new ("ufs", true, NULL, 1);
  struct ic_crypto_key *key;
  struct ic_crypt_ctx ctx = { 0 };
  struct ic_device *leaf;
  struct ic_bio bio = { .op = IC_OP_WRITE, .offset = 0, .len = DU };
  static uint8_t buf[DU];

  key = wrapped_key (ic_engine_profile (e), "kw", kdf_vectors[0].raw);
  ctx.key = key;
  ck_assert (!ic_crypto_fallback_supports (&key->crypto_cfg));
  ck_assert_int_eq (ic_crypto_fallback_encrypt (&ctx, buf, buf, DU),
                    -EOPNOTSUPP);
  assert_error_has ("fallback: kw: hardware-wrapped keys can only be used "
                    "with inline encryption hardware");
  ck_assert_int_eq (ic_crypto_fallback_decrypt (&ctx, buf, buf, DU),
                    -EOPNOTSUPP);
  /* A device without inline encryption sends it to the fallback. */
  leaf = ic_leaf_memory_new ("plain", 1 << 20, NULL);
  ck_assert_ptr_nonnull (leaf);
  bio.buf = buf;
  bio.crypt_ctx.key = key;
  ck_assert_int_eq (ic_device_submit (leaf, &bio), -EOPNOTSUPP);
  bio.op = IC_OP_READ;
  ck_assert_int_eq (ic_device_submit (leaf, &bio), -EOPNOTSUPP);
  ic_device_destroy (leaf);
  ic_crypto_key_free (key);
  ic_engine_free (e);
}
END_TEST

/* ---- stacked devices: the first child only ---- */

static int (*real_prepare) (struct ic_crypto_profile *, const uint8_t *,
                            size_t, uint8_t *);
static unsigned int second_calls;

static int
counting_prepare (struct ic_crypto_profile *profile, const uint8_t *lt_key,
                  size_t lt_key_size,
                  uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  second_calls++;
  return real_prepare (profile, lt_key, lt_key_size, eph_key);
}

static struct ic_device *leaves[4];

static struct ic_device *
lookup (void *opaque, const char *name)
{
  size_t i;

  for (i = 0; i < ARRAY_SIZE (leaves); i++)
    if (leaves[i] && strcmp (leaves[i]->name, name) == 0)
      return leaves[i];
  return NULL;
}

static struct ic_device *
stack_on (const char *name, const char *table)
{
  struct ic_device *dev = ic_stacked_new (name);

  ck_assert_ptr_nonnull (dev);
  ck_assert_msg (ic_stacked_load (dev, table, 0, NULL, 0, lookup, NULL) == 0,
                 "load: %s", ic_last_error ());
  ck_assert_int_eq (ic_stacked_resume (dev), 0);
  return dev;
}

/* Two leaves on engines with different key managers under a linear
 * table: every op reaches the first only (the first child's blobs), and
 * an invalid key costs the second nothing.
 */
START_TEST (test_stacked_first_child)
{
  struct ic_engine *e0 = engine_new ("ufs0", true, NULL, 2);
  struct ic_engine *e1 = engine_new ("ufs1", true, NULL, 2);
  struct ic_crypto_profile *p0 = ic_engine_profile (e0);
  struct ic_crypto_profile *p1 = ic_engine_profile (e1);
  struct ic_crypto_profile *top;
  struct ic_device *dev;
  uint8_t raw[32];
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];
  uint8_t sw[32];
  uint8_t want[32];
  size_t lt_size = sizeof lt;
  size_t eph_size = sizeof eph;

  leaves[0] = ic_leaf_memory_new ("d0", 1 << 20, e0);
  leaves[1] = ic_leaf_memory_new ("d1", 1 << 20, e1);
  real_prepare = p1->ll_ops.prepare_key;
  p1->ll_ops.prepare_key = counting_prepare;
  second_calls = 0;
  dev = stack_on ("top", "0 2048 linear d0 0\n2048 2048 linear d1 0\n");
  top = dev->profile;
  ck_assert_ptr_nonnull (top);
  ck_assert_uint_eq (top->key_types_supported,
                     IC_CRYPTO_KEY_TYPE_RAW | IC_CRYPTO_KEY_TYPE_HW_WRAPPED);
  ck_assert_uint_eq (ic_crypto_profile_num_slots (top), 0);

  hex_to (kdf_vectors[0].raw, raw, 32);
  hex_to (kdf_vectors[0].sw_secret, want, 32);
  ck_assert_int_eq (ic_crypto_ioctl_import_key (top, raw, 32, lt, &lt_size),
                    0);
  /* Made by the first child's key manager. */
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (p0, lt, lt_size, eph,
                                                 &eph_size), 0);
  eph_size = sizeof eph;
  ck_assert_int_eq (real_prepare (p1, lt, lt_size, eph), -EBADMSG);
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (top, lt, lt_size, eph,
                                                 &eph_size), 0);
  ck_assert_int_eq (ic_crypto_derive_sw_secret (top, eph, eph_size, sw), 0);
  ck_assert_mem_eq (sw, want, 32);
  ck_assert_int_eq (ic_crypto_derive_sw_secret (p0, eph, eph_size, sw), 0);
  ck_assert_int_eq (ic_crypto_derive_sw_secret (p1, eph, eph_size, sw),
                    -EBADMSG);
  lt_size = sizeof lt;
  ck_assert_int_eq (ic_crypto_ioctl_generate_key (top, lt, &lt_size), 0);
  ck_assert_int_eq (real_prepare (p1, lt, lt_size, eph), -EBADMSG);
  ck_assert_int_gt (real_prepare (p0, lt, lt_size, eph), 0);

  /* An invalid key: EBADMSG from the first child; the second is never
   * asked (upstream once tried every device).
   */
  lt[40] ^= 1;
  eph_size = sizeof eph;
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (top, lt, lt_size, eph,
                                                 &eph_size), -EBADMSG);
  ck_assert_uint_eq (second_calls, 0);

  ic_device_destroy (dev);
  ic_device_destroy (leaves[1]);
  ic_device_destroy (leaves[0]);
  leaves[0] = leaves[1] = NULL;
  ic_engine_free (e0);
  ic_engine_free (e1);
}
END_TEST

/* A child without wrapped keys takes them out of the intersection: the
 * stacked device answers EOPNOTSUPP without asking anyone.  A stack of
 * stacks forwards down to the first leaf.
 */
START_TEST (test_stacked_caps)
{
  struct ic_engine *e0 = engine_new ("ufs0", true, NULL, 2);
  struct ic_engine *e1 = engine_new ("emmc", false, NULL, 2);
  struct ic_device *narrow;
  struct ic_device *lower;
  struct ic_device *upper;
  uint8_t raw[32] = { 3 };
  uint8_t lt[MAXW];
  uint8_t eph[MAXW];
  size_t size = sizeof lt;
  size_t eph_size = sizeof eph;

  leaves[0] = ic_leaf_memory_new ("d0", 1 << 20, e0);
  leaves[1] = ic_leaf_memory_new ("d1", 1 << 20, e1);
  narrow = stack_on ("narrow", "0 2048 linear d0 0\n2048 2048 linear d1 0\n");
  ck_assert_uint_eq (narrow->profile->key_types_supported,
                     IC_CRYPTO_KEY_TYPE_RAW);
  ck_assert_int_eq (ic_crypto_ioctl_import_key (narrow->profile, raw, 32, lt,
                                                &size), -EOPNOTSUPP);

  lower = stack_on ("lower", "0 2048 linear d0 0\n");
  leaves[2] = lower;
  upper = stack_on ("upper", "0 2048 linear lower 0\n");
  ck_assert_uint_eq (upper->profile->key_types_supported,
                     IC_CRYPTO_KEY_TYPE_RAW | IC_CRYPTO_KEY_TYPE_HW_WRAPPED);
  size = sizeof lt;
  ck_assert_int_eq (ic_crypto_ioctl_import_key (upper->profile, raw, 32, lt,
                                                &size), 0);
  ck_assert_int_eq (ic_crypto_ioctl_prepare_key (ic_engine_profile (e0), lt,
                                                 size, eph, &eph_size), 0);

  ic_device_destroy (upper);
  ic_device_destroy (lower);
  ic_device_destroy (narrow);
  ic_device_destroy (leaves[1]);
  ic_device_destroy (leaves[0]);
  memset (leaves, 0, sizeof leaves);
  ic_engine_free (e0);
  ic_engine_free (e1);
}
END_TEST

/* I/O with a wrapped key through a mirror over two engines that share a
 * key manager: both legs hold the inline key's ciphertext; an engine
 * reset under it changes nothing.
 */
START_TEST (test_stacked_io)
{
  char path[128];
  struct ic_hwkm *hwkm;
  struct ic_engine *e0;
  struct ic_engine *e1;
  struct ic_crypto_key *key;
  struct ic_device *dev;
  struct ic_bio bio = { 0 };
  static uint8_t pt[4 * DU];
  static uint8_t buf[4 * DU];
  static uint8_t want[4 * DU];
  int leg;

  path_in_tmp (path, sizeof path, "wk");
  hwkm = ic_hwkm_open (path, NULL);
  ck_assert_ptr_nonnull (hwkm);
  e0 = engine_new ("ufs0", true, hwkm, 2);
  e1 = engine_new ("ufs1", true, hwkm, 2);
  ic_hwkm_put (hwkm);
  leaves[0] = ic_leaf_memory_new ("d0", 1 << 20, e0);
  leaves[1] = ic_leaf_memory_new ("d1", 1 << 20, e1);
  dev = stack_on ("m0", "0 2048 mirror 2 d0 0 d1 0\n");
  key = wrapped_key (dev->profile, "kw", kdf_vectors[1].raw);

  fill (pt, sizeof pt, 8);
  bio.op = IC_OP_WRITE;
  bio.offset = 8 * DU;
  bio.len = sizeof pt;
  bio.buf = pt;
  bio.crypt_ctx.key = key;
  ic_crypt_dun_set_u64 (bio.crypt_ctx.dun, 1000);
  ck_assert_msg (ic_device_submit (dev, &bio) == 0, "write: %s",
                 ic_last_error ());
  xts_reference (kdf_vectors[1].inline_key, want, pt, sizeof pt, 1000);
  for (leg = 0; leg < 2; leg++) {
    struct ic_bio rd = { .op = IC_OP_READ, .offset = 8 * DU,
                         .len = sizeof buf, .buf = buf };

    ck_assert_int_eq (ic_device_submit (leaves[leg], &rd), 0);
    ck_assert_mem_eq (buf, want, sizeof buf);
  }
  ck_assert_uint_eq (ic_engine_reset (e0), 0);
  ck_assert_uint_eq (ic_engine_reset (e1), 0);
  /* The submit consumed the bio (a stacked device splits it). */
  memset (&bio, 0, sizeof bio);
  bio.op = IC_OP_READ;
  bio.offset = 8 * DU;
  bio.len = sizeof buf;
  bio.buf = buf;
  bio.crypt_ctx.key = key;
  ic_crypt_dun_set_u64 (bio.crypt_ctx.dun, 1000);
  ck_assert_int_eq (ic_device_submit (dev, &bio), 0);
  ck_assert_mem_eq (buf, pt, sizeof buf);

  ic_device_evict_key (dev, key);
  ic_crypto_key_free (key);
  ic_device_destroy (dev);
  ic_device_destroy (leaves[1]);
  ic_device_destroy (leaves[0]);
  memset (leaves, 0, sizeof leaves);
  ic_engine_free (e0);
  ic_engine_free (e1);
}
END_TEST

/* ---- the configuration file ---- */

static void
write_tmp (const char *name, const char *content, mode_t mode)
{
  char path[128];
  int fd;

  path_in_tmp (path, sizeof path, name);
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (write (fd, content, strlen (content)),
                    (ssize_t) strlen (content));
  ck_assert_int_eq (fchmod (fd, mode), 0);
  close (fd);
}

static const char conf_text[] =
  "engine e key-types=raw,hw_wrapped wrapping-key=wk keyslots=2\n"
  "key k1 type=hw_wrapped engine=e blob=k1.blob import=+raw.hex\n"
  "key k2 type=hw_wrapped engine=e blob=k2.blob generate "
  "data-unit-size=512 dun-bytes=4\n"
  "leaf d0 memory size=1M engine=e\n"
  "export vol0 device=d0 key=k1\n";

static struct ic_graph *
conf_parse (unsigned int flags)
{
  struct ic_graph *g = ic_conf_parse (conf_text, strlen (conf_text),
                                      "test.conf", tmpdir, flags);

  ck_assert_msg (g != NULL, "parse: %s", ic_last_error ());
  return g;
}

static void
conf_sw_secret (struct ic_graph *g, const char *name, uint8_t sw[32])
{
  struct ic_crypto_key *key = ic_graph_find_key (g, name);
  struct ic_engine *e = ic_graph_find_engine (g, "e");

  ck_assert_ptr_nonnull (key);
  ck_assert_ptr_nonnull (e);
  ck_assert_int_eq (ic_crypto_derive_sw_secret (ic_engine_profile (e),
                                                key->bytes, key->size, sw),
                    0);
}

/* import and generate create the blob files (0600) at the first parse;
 * later parses load them and give the same keys, though the ephemeral
 * blobs differ.
 */
START_TEST (test_conf_create_then_load)
{
  struct ic_graph *g;
  struct ic_crypto_key *k1;
  struct ic_crypto_key *k2;
  uint8_t sw1[32];
  uint8_t sw2[32];
  uint8_t again[32];
  uint8_t want[32];
  uint8_t eph1[MAXW];
  char path[128];
  struct stat st;

  write_tmp ("raw.hex", kdf_vectors[0].raw, 0600);
  g = conf_parse (0);
  k1 = ic_graph_find_key (g, "k1");
  k2 = ic_graph_find_key (g, "k2");
  ck_assert_ptr_nonnull (k1);
  ck_assert_ptr_nonnull (k2);
  ck_assert_int_eq (k1->crypto_cfg.key_type, IC_CRYPTO_KEY_TYPE_HW_WRAPPED);
  ck_assert_int_eq (k1->crypto_cfg.crypto_mode, XTS);
  ck_assert_uint_eq (k1->size, IC_HWKM_BLOB_SIZE);
  ck_assert_str_eq (k1->engine, "e");
  ck_assert_uint_eq (k2->crypto_cfg.data_unit_size, 512);
  ck_assert_uint_eq (k2->crypto_cfg.dun_bytes, 4);
  memcpy (eph1, k1->bytes, k1->size);
  conf_sw_secret (g, "k1", sw1);
  conf_sw_secret (g, "k2", sw2);
  hex_to (kdf_vectors[0].sw_secret, want, 32);
  ck_assert_mem_eq (sw1, want, 32);
  ic_graph_free (g);
  path_in_tmp (path, sizeof path, "k1.blob");
  ck_assert_int_eq (stat (path, &st), 0);
  ck_assert_uint_eq (st.st_mode & 07777, 0600);
  ck_assert_uint_eq (st.st_size, 2 * IC_HWKM_BLOB_SIZE + 1);
  path_in_tmp (path, sizeof path, "wk");
  ck_assert_int_eq (stat (path, &st), 0);
  ck_assert_uint_eq (st.st_mode & 07777, 0600);

  /* The raw key is no longer needed once the blob exists. */
  path_in_tmp (path, sizeof path, "raw.hex");
  ck_assert_int_eq (unlink (path), 0);
  g = conf_parse (0);
  k1 = ic_graph_find_key (g, "k1");
  ck_assert_mem_ne (k1->bytes, eph1, IC_HWKM_BLOB_SIZE);
  conf_sw_secret (g, "k1", again);
  ck_assert_mem_eq (again, sw1, 32);
  conf_sw_secret (g, "k2", again);
  ck_assert_mem_eq (again, sw2, 32);
  ic_graph_free (g);
}
END_TEST

/* A dry run reads and writes no file. */
START_TEST (test_conf_dry_run)
{
  struct ic_graph *g = conf_parse (IC_CONF_DRY_RUN);
  char path[128];

  ck_assert_ptr_nonnull (ic_graph_find_key (g, "k1"));
  ic_graph_free (g);
  path_in_tmp (path, sizeof path, "wk");
  ck_assert_int_eq (access (path, F_OK), -1);
  path_in_tmp (path, sizeof path, "k2.blob");
  ck_assert_int_eq (access (path, F_OK), -1);
}
END_TEST

/* A blob of another wrapping key: EBADMSG naming the line. */
START_TEST (test_conf_wrong_blob)
{
  struct ic_graph *g;
  char wk[128];

  write_tmp ("raw.hex", kdf_vectors[0].raw, 0600);
  g = conf_parse (0);
  ic_graph_free (g);
  path_in_tmp (wk, sizeof wk, "wk");
  ck_assert_int_eq (unlink (wk), 0);
  errno = 0;
  g = ic_conf_parse (conf_text, strlen (conf_text), "test.conf", tmpdir, 0);
  ck_assert_ptr_null (g);
  ck_assert_int_eq (errno, EBADMSG);
  assert_error_has ("test.conf:2: key k1: blob=k1.blob: e: prepare key: "
                    "invalid key: not a long-term wrapped key of this key "
                    "manager (authentication failed) (a blob of another "
                    "wrapping key, or damaged?)");
}
END_TEST

static Suite *
hwkm_suite (void)
{
  Suite *s = suite_create ("hwkm");
  TCase *tc;

  tc = tcase_create ("kdf");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_kdf_vectors, 0, ARRAY_SIZE (kdf_vectors));
  tcase_add_loop_test (tc, test_kdf_through_hwkm, 0,
                       ARRAY_SIZE (kdf_vectors));
  tcase_add_loop_test (tc, test_kdf_bad_sizes, 0, ARRAY_SIZE (bad_kdf_sizes));
  suite_add_tcase (s, tc);

  tc = tcase_create ("blob");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_blob_format);
  tcase_add_test (tc, test_generate);
  suite_add_tcase (s, tc);

  tc = tcase_create ("errors");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_loop_test (tc, test_import_bad_size, 0,
                       ARRAY_SIZE (bad_raw_sizes));
  tcase_add_loop_test (tc, test_prepare_damaged, 0, ARRAY_SIZE (damage_at));
  tcase_add_loop_test (tc, test_bad_blob_size, 0,
                       ARRAY_SIZE (bad_blob_sizes));
  tcase_add_test (tc, test_wrong_form);
  tcase_add_test (tc, test_other_hwkm);
  suite_add_tcase (s, tc);

  tc = tcase_create ("ioctl");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_ioctl_sizes);
  tcase_add_test (tc, test_ioctl_unsupported);
  suite_add_tcase (s, tc);

  tc = tcase_create ("wrapping_key");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_file_created);
  tcase_add_test (tc, test_file_persists);
  tcase_add_test (tc, test_file_other);
  tcase_add_test (tc, test_file_given);
  tcase_add_loop_test (tc, test_file_refused, 0, ARRAY_SIZE (bad_files));
  tcase_add_test (tc, test_file_unreachable);
  suite_add_tcase (s, tc);

  tc = tcase_create ("engine");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_engine_caps);
  tcase_add_loop_test (tc, test_engine_crypt_and_reset, 0,
                       ARRAY_SIZE (kdf_vectors));
  tcase_add_test (tc, test_engine_mixed_slots);
  tcase_add_test (tc, test_engine_refusals);
  tcase_add_test (tc, test_engine_shared_hwkm);
  tcase_add_test (tc, test_engine_derive);
  suite_add_tcase (s, tc);

  tc = tcase_create ("fallback");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_fallback_refuses);
  suite_add_tcase (s, tc);

  tc = tcase_create ("config");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_conf_create_then_load);
  tcase_add_test (tc, test_conf_dry_run);
  tcase_add_test (tc, test_conf_wrong_blob);
  suite_add_tcase (s, tc);

  tc = tcase_create ("stacked");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_stacked_first_child);
  tcase_add_test (tc, test_stacked_caps);
  tcase_add_test (tc, test_stacked_io);
  suite_add_tcase (s, tc);

  return s;
}

int
main (void)
{
  SRunner *sr;
  int failed;

  sr = srunner_create (hwkm_suite ());
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* stack/device.c - see device.h. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bounce.h"
#include "device.h"
#include "error.h"
#include "fallback.h"
#include "table.h"

#define COUNT(field, n) __atomic_fetch_add (&(field), (n), __ATOMIC_RELAXED)

const char *
ic_bio_op_name (enum ic_bio_op op)
{
  switch (op) {
  case IC_OP_READ: return "read";
  case IC_OP_WRITE: return "write";
  case IC_OP_FLUSH: return "flush";
  case IC_OP_TRIM: return "trim";
  case IC_OP_WRITE_ZEROES: return "write-zeroes";
  }
  return "?";
}

void
ic_device_init (struct ic_device *dev, const char *name, uint64_t size,
                const struct ic_device_ops *ops)
{
  memset (dev, 0, sizeof *dev);
  snprintf (dev->name, sizeof dev->name, "%s", name);
  dev->size = size;
  dev->ops = ops;
  dev->fallback_enabled = true;
}

bool
ic_device_supports_natively (const struct ic_device *dev,
                             const struct ic_crypto_config *cfg)
{
  /* A stacked device gets its profile at a resume, under running
   * requests: read the pointer atomically.
   */
  return ic_crypto_cfg_supported (__atomic_load_n (&dev->profile,
                                                   __ATOMIC_ACQUIRE), cfg);
}

/* bio_crypt_check_alignment: every data unit whole.  As upstream, what
 * counts is the length of the data, not where it lands on the device (the
 * DUN travels with the request, so a linear target may remap it to any
 * sector), and a bio that breaks it fails with BLK_STS_IOERR: EIO, not
 * EINVAL.  Exports refuse misaligned NBD requests with EINVAL before they
 * get here; this catches a table that splits a data unit (a striped chunk
 * smaller than the data unit).
 */
static int
check_alignment (const struct ic_device *dev, const struct ic_bio *bio)
{
  const struct ic_crypto_key *key = bio->crypt_ctx.key;
  uint64_t mask = key->crypto_cfg.data_unit_size - 1;

  if (bio->len & mask) {
    ic_error ("%s: %s: %" PRIu64 " bytes at %" PRIu64 " are not aligned to "
              "the %u-byte data units of key %s", dev->name,
              ic_bio_op_name (bio->op), bio->len, bio->offset,
              key->crypto_cfg.data_unit_size, key->name);
    return -EIO;
  }
  return 0;
}

static unsigned int
key_unit (const struct ic_bio *bio)
{
  return bio->crypt_ctx.key->crypto_cfg.data_unit_size;
}

int
ic_device_refuse_cut (const char *name, uint64_t offset,
                      const struct ic_bio *bio, uint64_t bytes)
{
  ic_error ("%s: %s: %" PRIu64 " bytes at %" PRIu64 ": a boundary %" PRIu64
            " bytes in would cut one of its %u-byte data units in two; "
            "refused", name, ic_bio_op_name (bio->op), bio->len, offset,
            bytes, ic_bio_unit (bio));
  return -EINVAL;
}

/* blk_crypto_fallback_bio_prep for one READ or WRITE: the devices below
 * see plain I/O, with the data unit size in bio->unit so that they keep
 * each unit whole (upstream splits such bios anywhere).  A device with
 * its own submit_fallback (a leaf) does this itself.
 *
 * A write goes down in pieces of IC_BIO_PIECE bytes, each encrypted into
 * one bounce buffer just before it is submitted, as upstream splits a bio
 * of more than 256 pages before encrypting it: the bounce memory a write
 * holds is one piece however large the request, also while it waits at a
 * suspended device below.  A piece failing after others went through
 * leaves the write partial, its data units whole.  Every piece carries
 * the request's FUA: below may be a remote leaf, whose FUA covers only its
 * own command.  A read is read whole and decrypted in place.
 */
_Static_assert (IC_BIO_PIECE % IC_CRYPTO_MAX_DATA_UNIT_SIZE == 0,
                "pieces of an encrypted write are whole data units");

static int
fallback_bounce (struct ic_device *dev, struct ic_bio *bio)
{
  struct ic_bio plain = *bio;
  struct ic_bio rest;
  struct ic_bio piece;
  uint64_t most = bio->len < IC_BIO_PIECE ? bio->len : IC_BIO_PIECE;
  bool done = false;
  void *bounce;
  int r = 0;

  plain.crypt_ctx.key = NULL;
  plain.unit = key_unit (bio);
  if (bio->op != IC_OP_WRITE) {
    r = dev->ops->submit (dev, &plain);
    /* Decrypt only what was read: a failed read is passed up as it is. */
    if (r == 0)
      r = ic_crypto_fallback_decrypt (&bio->crypt_ctx, bio->buf, bio->buf,
                                      bio->len);
    if (r < 0)
      ic_bio_part_failed (bio, &plain, false);
    return r;
  }
  /* A boundary that cuts a data unit, here or below, refuses the write
   * before its first piece goes down, as it would refuse it whole.
   */
  r = ic_device_check_cuts (dev, &plain);
  if (r < 0)
    return r;
  /* Never encrypt the caller's data in place. */
  bounce = ic_bounce_get (most);
  if (!bounce) {
    ic_error ("%s: fallback: out of memory for a %" PRIu64 "-byte bounce "
              "buffer", dev->name, most);
    return -ENOMEM;
  }
  rest = *bio;
  while (rest.len > 0) {
    ic_bio_split (&rest, rest.len < most ? rest.len : most, &piece);
    plain.offset = piece.offset;
    plain.len = piece.len;
    plain.buf = bounce;
    plain.partial = false;
    r = ic_crypto_fallback_encrypt (&piece.crypt_ctx, bounce, piece.buf,
                                    piece.len);
    if (r == 0)
      r = dev->ops->submit (dev, &plain);
    if (r < 0) {
      ic_bio_part_failed (bio, &plain, done);
      break;
    }
    done = true;
  }
  ic_bounce_put (bounce, most);
  return r;
}

static int
fallback_submit (struct ic_device *dev, struct ic_bio *bio)
{
  int r;

  if (dev->ops->submit_fallback)
    r = dev->ops->submit_fallback (dev, bio);
  else
    r = fallback_bounce (dev, bio);
  if (r == 0) {
    COUNT (dev->fallback_requests, 1);
    COUNT (dev->fallback_bytes, bio->len);
  }
  return r;
}

int
ic_device_check_cuts (struct ic_device *dev, const struct ic_bio *bio)
{
  if (!ic_bio_unit (bio) || !dev->ops->check_cuts)
    return 0;
  return dev->ops->check_cuts (dev, bio);
}

int
ic_device_submit (struct ic_device *dev, struct ic_bio *bio)
{
  const struct ic_crypto_key *key = bio->crypt_ctx.key;
  int r;

  if (bio->offset > dev->size || bio->len > dev->size - bio->offset) {
    ic_error ("%s: %s: %" PRIu64 " bytes at %" PRIu64 " go past the end of "
              "the device (%" PRIu64 " bytes)", dev->name,
              ic_bio_op_name (bio->op), bio->len, bio->offset, dev->size);
    return -EINVAL;
  }
  if (!key)
    return dev->ops->submit (dev, bio);
  if (bio->op != IC_OP_READ && bio->op != IC_OP_WRITE) {
    /* FLUSH, TRIM and WRITE_ZEROES carry no context. */
    bio->crypt_ctx.key = NULL;
    return dev->ops->submit (dev, bio);
  }
  r = check_alignment (dev, bio);
  if (r < 0)
    return r;
  if (ic_device_supports_natively (dev, &key->crypto_cfg))
    return dev->ops->submit (dev, bio);
  if (!dev->fallback_enabled) {
    ic_error ("%s: %s/%u with %u DUN bytes is not supported and the "
              "fallback is off", dev->name,
              ic_crypto_mode_name (key->crypto_cfg.crypto_mode),
              key->crypto_cfg.data_unit_size, key->crypto_cfg.dun_bytes);
    return -EOPNOTSUPP;
  }
  return fallback_submit (dev, bio);
}

int
ic_device_evict_key (struct ic_device *dev, const struct ic_crypto_key *key)
{
  int r;

  if (ic_device_supports_natively (dev, &key->crypto_cfg))
    r = ic_crypto_evict_key (__atomic_load_n (&dev->profile,
                                              __ATOMIC_ACQUIRE), key);
  else
    r = ic_crypto_fallback_evict_key (key);
  if (r < 0 && r != -EBUSY)
    ic_debug ("%s: error %d evicting key %s", dev->name, r, key->name);
  return r;
}

void
ic_device_destroy (struct ic_device *dev)
{
  if (dev && dev->ops->destroy)
    dev->ops->destroy (dev);
}

void
ic_device_read_fallback_stats (struct ic_device *dev, uint64_t *requests,
                               uint64_t *bytes, bool reset)
{
  if (reset) {
    *requests = __atomic_exchange_n (&dev->fallback_requests, 0,
                                     __ATOMIC_RELAXED);
    *bytes = __atomic_exchange_n (&dev->fallback_bytes, 0, __ATOMIC_RELAXED);
  }
  else {
    *requests = __atomic_load_n (&dev->fallback_requests, __ATOMIC_RELAXED);
    *bytes = __atomic_load_n (&dev->fallback_bytes, __ATOMIC_RELAXED);
  }
}

static int
readonly_child (struct ic_target *ti, struct ic_device *dev, uint64_t start,
                uint64_t len, void *data)
{
  return ic_device_is_readonly (dev);
}

bool
ic_device_is_readonly (struct ic_device *dev)
{
  if (dev->features & IC_DEV_READONLY)
    return true;
  /* 0 for a device that is not stacked, or has no live table. */
  return ic_stacked_iterate_devices (dev, readonly_child, NULL) != 0;
}

int
ic_device_max_min_block (struct ic_target *ti, struct ic_device *dev,
                         uint64_t start, uint64_t len, void *data)
{
  uint32_t *min = data;
  uint32_t m = ic_device_min_block (dev);

  if (m > *min)
    *min = m;
  return 0;
}

uint32_t
ic_device_min_block (struct ic_device *dev)
{
  uint32_t min = dev->min_block ? dev->min_block : 1;

  ic_stacked_iterate_devices (dev, ic_device_max_min_block, &min);
  return min;
}

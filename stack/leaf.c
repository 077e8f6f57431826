/* stack/leaf.c - see leaf.h.  The submit of every leaf: faults, the
 * engine's keyslot and en/decryption, then the backend.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "bounce.h"
#include "error.h"
#include "leaf.h"

#define COUNT(field, n) __atomic_fetch_add (&(field), (n), __ATOMIC_RELAXED)

/* Consume one injected fault for @kind, if any. */
static bool
take_fault (struct ic_leaf *leaf, unsigned int kind)
{
  int64_t n;

  if (!(__atomic_load_n (&leaf->fault_kinds, __ATOMIC_RELAXED) & kind))
    return false;
  n = __atomic_load_n (&leaf->fault_count, __ATOMIC_RELAXED);
  for (;;) {
    if (n < 0)
      return true;
    if (n == 0)
      return false;
    if (__atomic_compare_exchange_n (&leaf->fault_count, &n, n - 1, true,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return true;
  }
}

static int
io_fault (struct ic_leaf *leaf, const struct ic_bio *bio)
{
  COUNT (leaf->io_errors, 1);
  ic_error ("%s: %s: %" PRIu64 " bytes at %" PRIu64 ": injected I/O error",
            leaf->dev.name, ic_bio_op_name (bio->op), bio->len, bio->offset);
  return -EIO;
}

/* The backend part of a bio, plain or already encrypted (@data).  A
 * backend that fails a write says whether it may have written part of it
 * (pwrite some bytes; NBD leaves a failed write's range undefined), which
 * marks the bio partial; a failed TRIM or WRITE_ZEROES always does.  An
 * injected fault fails before.
 */
static int
backend_io (struct ic_leaf *leaf, struct ic_bio *bio, void *data)
{
  bool fua = bio->flags & IC_BIO_FUA;
  unsigned int delay = __atomic_load_n (&leaf->io_delay_us, __ATOMIC_RELAXED);
  int r;

  if (delay && bio->op != IC_OP_FLUSH) {
    struct timespec ts = { delay / 1000000, (delay % 1000000) * 1000L };

    while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
      ;
  }

  switch (bio->op) {
  case IC_OP_READ:
    if (take_fault (leaf, IC_LEAF_FAULT_READ))
      return io_fault (leaf, bio);
    return leaf->ops->pread (leaf, data, bio->len, bio->offset);
  case IC_OP_WRITE:
    if (take_fault (leaf, IC_LEAF_FAULT_WRITE))
      return io_fault (leaf, bio);
    return leaf->ops->pwrite (leaf, data, bio->len, bio->offset,
                              ic_bio_unit (bio), fua, &bio->partial);
  case IC_OP_FLUSH:
    return leaf->ops->flush (leaf);
  case IC_OP_TRIM:
    if (take_fault (leaf, IC_LEAF_FAULT_WRITE))
      return io_fault (leaf, bio);
    r = leaf->ops->trim (leaf, bio->len, bio->offset, fua);
    break;
  case IC_OP_WRITE_ZEROES:
    if (take_fault (leaf, IC_LEAF_FAULT_WRITE))
      return io_fault (leaf, bio);
    r = leaf->ops->zero (leaf, bio->len, bio->offset,
                         !(bio->flags & IC_BIO_NOUNMAP), fua);
    break;
  default:
    return -EINVAL;
  }
  if (r < 0)
    bio->partial = true;
  return r;
}

/* A bio with a context the engine supports: hold a keyslot for the whole
 * request, like blk-mq; release it before returning, i.e. before the
 * completion is reported (Linux 6.4, "blk-mq: release crypto keyslot
 * before reporting I/O complete").
 */
static int
engine_io (struct ic_leaf *leaf, struct ic_bio *bio)
{
  struct ic_engine *engine = leaf->engine;
  struct ic_crypto_keyslot *slot;
  void *bounce = NULL;
  int r;

  ic_engine_enter (engine);
  r = ic_crypto_get_keyslot (ic_engine_profile (engine), bio->crypt_ctx.key,
                             &slot);
  if (r < 0)
    goto out_exit;

  if (bio->op == IC_OP_WRITE) {
    bounce = ic_bounce_get (bio->len);
    if (!bounce) {
      ic_error ("%s: out of memory for a %" PRIu64 "-byte bounce buffer",
                leaf->dev.name, bio->len);
      r = -ENOMEM;
      goto out_put_slot;
    }
    r = ic_engine_encrypt (engine, slot, &bio->crypt_ctx, bounce, bio->buf,
                           bio->len);
    if (r == 0)
      r = backend_io (leaf, bio, bounce);
    ic_bounce_put (bounce, bio->len);
  }
  else {
    r = backend_io (leaf, bio, bio->buf);
    if (r == 0)
      r = ic_engine_decrypt (engine, slot, &bio->crypt_ctx, bio->buf,
                             bio->len);
  }

out_put_slot:
  ic_crypto_put_keyslot (slot);
out_exit:
  ic_engine_exit (engine);
  return r;
}

static int
leaf_submit (struct ic_device *dev, struct ic_bio *bio)
{
  struct ic_leaf *leaf = (struct ic_leaf *) dev;

  /* Before anything is encrypted.  A read-only export never sends writes
   * (nbdkit refuses them); a mirror's resync into a read-only leg does.
   */
  if (bio->op != IC_OP_READ && bio->op != IC_OP_FLUSH &&
      (dev->features & IC_DEV_READONLY)) {
    ic_error ("%s: %s: %" PRIu64 " bytes at %" PRIu64 ": the leaf is "
              "read-only", dev->name, ic_bio_op_name (bio->op), bio->len,
              bio->offset);
    return -EROFS;
  }
  /* ic_device_submit() only lets a context through if our profile, the
   * engine's, supports it.
   */
  if (ic_bio_has_crypt_ctx (bio))
    return engine_io (leaf, bio);
  return backend_io (leaf, bio, bio->buf);
}

static void
leaf_destroy (struct ic_device *dev)
{
  struct ic_leaf *leaf = (struct ic_leaf *) dev;

  if (leaf->ops->destroy)
    leaf->ops->destroy (leaf);
}

static const struct ic_device_ops leaf_device_ops = {
  .type = "leaf",
  .submit = leaf_submit,
  .destroy = leaf_destroy,
};

void
ic_leaf_init (struct ic_leaf *leaf, const char *name, uint64_t size,
              const struct ic_leaf_ops *ops, struct ic_engine *engine,
              unsigned int features)
{
  memset (leaf, 0, sizeof *leaf);
  ic_device_init (&leaf->dev, name, size, &leaf_device_ops);
  leaf->dev.features = features;
  leaf->ops = ops;
  leaf->engine = engine;
  if (engine)
    leaf->dev.profile = ic_engine_profile (engine);
}

struct ic_leaf *
ic_device_to_leaf (struct ic_device *dev)
{
  return dev && dev->ops == &leaf_device_ops ? (struct ic_leaf *) dev : NULL;
}

void
ic_leaf_read_status (struct ic_leaf *leaf, struct ic_leaf_status *st)
{
  memset (st, 0, sizeof *st);
  if (leaf->ops->status)
    leaf->ops->status (leaf, st);
}

void
ic_leaf_set_io_delay (struct ic_leaf *leaf, unsigned int us)
{
  __atomic_store_n (&leaf->io_delay_us, us, __ATOMIC_RELAXED);
}

void
ic_leaf_set_io_faults (struct ic_leaf *leaf, unsigned int kinds,
                       int64_t count)
{
  __atomic_store_n (&leaf->fault_count, kinds ? count : 0, __ATOMIC_RELAXED);
  __atomic_store_n (&leaf->fault_kinds, kinds, __ATOMIC_RELAXED);
}

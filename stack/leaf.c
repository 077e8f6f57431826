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
#include "fallback.h"
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

/* A local backend takes an encrypted write larger than IC_BIO_PIECE in
 * pieces of that size (bio.h).
 */
#define PIECE IC_BIO_PIECE

/* Wait out an injected delay, then take an injected fault of @bio's kind:
 * once per bio, even for one carried out in pieces.
 * Return: 0, or -EIO for a fault.
 */
static int
inject (struct ic_leaf *leaf, const struct ic_bio *bio)
{
  unsigned int delay = __atomic_load_n (&leaf->io_delay_us, __ATOMIC_RELAXED);
  unsigned int kind;

  if (delay && bio->op != IC_OP_FLUSH) {
    struct timespec ts = { delay / 1000000, (delay % 1000000) * 1000L };

    while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
      ;
  }
  switch (bio->op) {
  case IC_OP_READ:
    kind = IC_LEAF_FAULT_READ;
    break;
  case IC_OP_WRITE:
  case IC_OP_TRIM:
  case IC_OP_WRITE_ZEROES:
    kind = IC_LEAF_FAULT_WRITE;
    break;
  default:
    return 0;
  }
  return take_fault (leaf, kind) ? io_fault (leaf, bio) : 0;
}

/* The backend part of a bio, plain or already encrypted (@data).  A
 * backend that fails a write says whether it may have written part of it
 * (pwrite some bytes; NBD leaves a failed write's range undefined), which
 * marks the bio partial; a failed TRIM or WRITE_ZEROES always does.
 */
static int
backend_op (struct ic_leaf *leaf, struct ic_bio *bio, void *data)
{
  bool fua = bio->flags & IC_BIO_FUA;
  int r;

  switch (bio->op) {
  case IC_OP_READ:
    return leaf->ops->pread (leaf, data, bio->len, bio->offset);
  case IC_OP_WRITE:
    return leaf->ops->pwrite (leaf, data, bio->len, bio->offset,
                              ic_bio_unit (bio), fua, &bio->partial);
  case IC_OP_FLUSH:
    return leaf->ops->flush (leaf);
  case IC_OP_TRIM:
    r = leaf->ops->trim (leaf, bio->len, bio->offset, fua);
    break;
  case IC_OP_WRITE_ZEROES:
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

/* A plain bio: faults, then the backend. */
static int
backend_io (struct ic_leaf *leaf, struct ic_bio *bio)
{
  int r = inject (leaf, bio);

  return r < 0 ? r : backend_op (leaf, bio, bio->buf);
}

/* Who en/decrypts a bio with a context: the leaf's engine, with the
 * keyslot the bio holds, or (engine NULL) the software fallback.
 */
struct cipher_path {
  struct ic_engine *engine;
  struct ic_crypto_keyslot *slot;
};

static int
path_encrypt (const struct cipher_path *path, const struct ic_crypt_ctx *ctx,
              void *dst, const void *src, uint64_t len)
{
  if (path->engine)
    return ic_engine_encrypt (path->engine, path->slot, ctx, dst, src, len);
  return ic_crypto_fallback_encrypt (ctx, dst, src, len);
}

static int
path_decrypt (const struct cipher_path *path, const struct ic_crypt_ctx *ctx,
              void *dst, const void *src, uint64_t len)
{
  if (path->engine)
    return ic_engine_decrypt (path->engine, path->slot, ctx, dst, src, len);
  return ic_crypto_fallback_decrypt (ctx, dst, src, len);
}

/* An encrypted read of at least this many bytes is decrypted straight out
 * of the backend's view of its data when it has one (ic_leaf_ops.view):
 * one copy less.  bench/readpath measures both paths (bench/RESULTS.md);
 * at 4 KiB the copy saved is hardly more than the check that the pages
 * are in memory.
 */
#define VIEW_MIN (16u << 10)

/* The backend part of an encrypted read, decrypted into @bio's buffer:
 * out of the backend's view, or read there and decrypted in place.
 */
static int
read_decrypt (struct ic_leaf *leaf, struct ic_bio *bio,
              const struct cipher_path *path)
{
  const void *src = NULL;
  int r;

  if (leaf->ops->view && bio->len >= VIEW_MIN)
    src = leaf->ops->view (leaf, bio->len, bio->offset);
  if (src) {
    bool intact;

    r = path_decrypt (path, &bio->crypt_ctx, bio->buf, src, bio->len);
    intact = leaf->ops->view_done (leaf);
    /* A fault put zeros in the view while it was read (the file shrank
     * under the server): read again, and pread tells what is there.
     */
    if (r < 0 || intact)
      return r;
  }
  r = backend_op (leaf, bio, bio->buf);
  if (r == 0)
    r = path_decrypt (path, &bio->crypt_ctx, bio->buf, bio->buf, bio->len);
  return r;
}

/* The bytes a READ or WRITE with a context goes to the backend in: a
 * local backend takes a write in pieces of PIECE bytes; a remote one takes
 * it whole (a piece would cost a round trip), and reads are always whole.
 */
static uint64_t
piece_size (const struct ic_leaf *leaf, const struct ic_bio *bio)
{
  return bio->op == IC_OP_READ || leaf->ops->remote ||
    bio->len < PIECE ? bio->len : PIECE;
}

/* The bounce buffer of a write (*@bounce = NULL for a read), taken before
 * anything else the request holds (a keyslot, the engine's gate): a get
 * may wait for the budget of bounce buffers, and a holder of them may be
 * waiting for a keyslot of this engine (a mirror's write that a device's
 * fallback bounced waits for the overlapping writes in flight, which wait
 * for their keyslots), so waiting with a keyslot could close a cycle.
 * Give it back with ic_bounce_put (*@bounce, piece_size (leaf, bio)).
 */
static int
get_bounce (struct ic_leaf *leaf, const struct ic_bio *bio, void **bounce)
{
  uint64_t most = piece_size (leaf, bio);

  *bounce = NULL;
  if (bio->op != IC_OP_WRITE)
    return 0;
  *bounce = ic_bounce_get (most);
  if (!*bounce) {
    ic_error ("%s: out of memory for a %" PRIu64 "-byte bounce buffer",
              leaf->dev.name, most);
    return -ENOMEM;
  }
  return 0;
}

/* A READ or WRITE with a context, en/decrypted through @path: writes are
 * encrypted into @bounce (never in place; from get_bounce()), reads
 * decrypted in place once read, in pieces of piece_size().  Space or
 * memory for the whole write is reserved first, so that running out fails
 * it unchanged; a write failing after a piece went through is partial,
 * every unit whole (a piece is whole units).  FUA goes with the last piece
 * only: a local backend's FUA (a sync of its file) makes everything
 * written before it durable too.  (An NBD FUA covers its own command only;
 * a remote write is whole.)
 */
static int
crypt_io (struct ic_leaf *leaf, struct ic_bio *bio,
          const struct cipher_path *path, void *bounce)
{
  uint64_t most = piece_size (leaf, bio);
  struct ic_bio rest = *bio, piece;
  bool done = false;
  int r;

  r = inject (leaf, bio);
  if (r < 0)
    return r;
  if (bio->op == IC_OP_WRITE && most < bio->len && leaf->ops->reserve) {
    r = leaf->ops->reserve (leaf, bio->len, bio->offset, ic_bio_unit (bio));
    if (r < 0)
      return r;
  }
  while (rest.len > 0) {
    ic_bio_split (&rest, rest.len < most ? rest.len : most, &piece);
    if (rest.len > 0)
      piece.flags &= ~IC_BIO_FUA;
    if (bio->op == IC_OP_WRITE) {
      r = path_encrypt (path, &piece.crypt_ctx, bounce, piece.buf, piece.len);
      if (r == 0)
        r = backend_op (leaf, &piece, bounce);
    }
    else
      r = read_decrypt (leaf, &piece, path);
    if (r < 0) {
      ic_bio_part_failed (bio, &piece, done);
      break;
    }
    done = true;
  }
  return r;
}

/* A bio with a context the engine supports: hold a keyslot for the whole
 * request, like blk-mq; release it before returning, i.e. before the
 * completion is reported (Linux 6.4, "blk-mq: release crypto keyslot
 * before reporting I/O complete").  The bounce buffer comes first
 * (get_bounce()).
 */
static int
engine_io (struct ic_leaf *leaf, struct ic_bio *bio)
{
  struct cipher_path path = { leaf->engine, NULL };
  void *bounce;
  int r;

  r = get_bounce (leaf, bio, &bounce);
  if (r < 0)
    return r;
  ic_engine_enter (leaf->engine);
  r = ic_crypto_get_keyslot (ic_engine_profile (leaf->engine),
                             bio->crypt_ctx.key, &path.slot);
  if (r == 0) {
    r = crypt_io (leaf, bio, &path, bounce);
    ic_crypto_put_keyslot (path.slot);
  }
  ic_engine_exit (leaf->engine);
  ic_bounce_put (bounce, piece_size (leaf, bio));
  return r;
}

/* A read-only export never sends writes (nbdkit refuses them); a mirror's
 * resync into a read-only leg does.  Refused before anything is
 * encrypted.
 */
static int
refuse_readonly (struct ic_device *dev, const struct ic_bio *bio)
{
  if (bio->op == IC_OP_READ || bio->op == IC_OP_FLUSH ||
      !(dev->features & IC_DEV_READONLY))
    return 0;
  ic_error ("%s: %s: %" PRIu64 " bytes at %" PRIu64 ": the leaf is "
            "read-only", dev->name, ic_bio_op_name (bio->op), bio->len,
            bio->offset);
  return -EROFS;
}

static int
leaf_submit (struct ic_device *dev, struct ic_bio *bio)
{
  struct ic_leaf *leaf = (struct ic_leaf *) dev;
  int r = refuse_readonly (dev, bio);

  if (r < 0)
    return r;
  /* ic_device_submit() only lets a context through if our profile, the
   * engine's, supports it.
   */
  if (ic_bio_has_crypt_ctx (bio))
    return engine_io (leaf, bio);
  return backend_io (leaf, bio);
}

/* A READ or WRITE whose context the engine (if any) does not support:
 * the fallback en/decrypts it here, writes in pieces like the engine's.
 */
static int
leaf_submit_fallback (struct ic_device *dev, struct ic_bio *bio)
{
  static const struct cipher_path fallback = { NULL, NULL };
  struct ic_leaf *leaf = (struct ic_leaf *) dev;
  int r = refuse_readonly (dev, bio);
  void *bounce;

  if (r == 0)
    r = get_bounce (leaf, bio, &bounce);
  if (r < 0)
    return r;
  r = crypt_io (leaf, bio, &fallback, bounce);
  ic_bounce_put (bounce, piece_size (leaf, bio));
  return r;
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
  .submit_fallback = leaf_submit_fallback,
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
ic_leaf_discard (struct ic_leaf *leaf)
{
  if (leaf->ops->discard)
    leaf->ops->discard (leaf);
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

/* stack/target-striped.c - the striped target: chunks dealt round-robin
 * over several children.  Follows Linux drivers/md/dm-stripe.c, which
 * passes inline crypto through since 6.15 ("dm: Enable inline crypto
 * passthrough for striped target"): each chunk-sized piece keeps the DUN
 * of its data, advanced by the data units before it.
 *
 *   <start> <length> striped <#stripes> <chunk_sectors> <dev> <offset>...
 *
 * As dm-stripe: the length must divide by the number of stripes and each
 * stripe's share by the chunk size.  A request with a crypto context whose
 * data units straddle a chunk boundary fails with EIO at the child, as
 * blk-crypto fails a misaligned bio
 * (the chunk size should be a multiple of the data unit size).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "table.h"

#define MAX_STRIPES 64

struct stripe {
  struct ic_device *dev;
  uint64_t start;               /* bytes into dev */
};

struct striped {
  unsigned int n;
  uint64_t chunk;               /* bytes */
  struct stripe stripes[];
};

static int
striped_ctr (struct ic_target *ti, int argc, char **argv,
             ic_device_lookup_fn lookup, void *opaque)
{
  struct striped *sc;
  uint64_t chunk;
  uint64_t share;
  char *end;
  unsigned long n;
  unsigned int i;
  uint32_t min;

  if (argc < 2) {
    ic_target_set_error (ti, "expected <#stripes> <chunk_sectors> "
                         "<dev> <offset>...");
    return -EINVAL;
  }
  n = strtoul (argv[0], &end, 10);
  if (*end || n < 1 || n > MAX_STRIPES) {
    ic_target_set_error (ti, "number of stripes '%s' must be 1 to %d",
                         argv[0], MAX_STRIPES);
    return -EINVAL;
  }
  if (!ic_parse_sectors (argv[1], &chunk) || chunk == 0) {
    ic_target_set_error (ti, "chunk size '%s' is not a positive number of "
                         "sectors", argv[1]);
    return -EINVAL;
  }
  if ((unsigned long) argc != 2 + 2 * n) {
    ic_target_set_error (ti, "%lu stripes need %lu <dev> <offset> pairs, "
                         "got %d arguments after the chunk size", n, n,
                         argc - 2);
    return -EINVAL;
  }
  /* In sectors: a share of half a sector would pass a test in bytes. */
  if ((ti->len >> 9) % n) {
    ic_target_set_error (ti, "target length (%" PRIu64 " sectors) not "
                         "divisible by the number of stripes (%lu)",
                         ti->len >> 9, n);
    return -EINVAL;
  }
  share = ti->len / n;
  if (share % chunk) {
    ic_target_set_error (ti, "each stripe's share (%" PRIu64 " sectors) not "
                         "divisible by the chunk size (%" PRIu64 ")",
                         share >> 9, chunk >> 9);
    return -EINVAL;
  }
  sc = calloc (1, sizeof *sc + n * sizeof sc->stripes[0]);
  if (!sc) {
    ic_target_set_error (ti, "out of memory");
    return -ENOMEM;
  }
  sc->n = n;
  sc->chunk = chunk;
  for (i = 0; i < n; i++) {
    sc->stripes[i].dev = ic_target_get_device (ti, argv[2 + 2 * i],
                                               argv[3 + 2 * i], share,
                                               lookup, opaque,
                                               &sc->stripes[i].start);
    if (!sc->stripes[i].dev) {
      free (sc);
      return -EINVAL;
    }
    /* A chunk boundary cuts requests for the stripe: on its blocks. */
    min = ic_device_min_block (sc->stripes[i].dev);
    if (chunk % min) {
      ic_target_set_error (ti, "chunk size (%" PRIu64 " sectors) not "
                           "aligned to %s's %" PRIu32 "-byte minimum block "
                           "size", chunk >> 9, argv[2 + 2 * i], min);
      free (sc);
      return -EINVAL;
    }
  }
  ti->private = sc;
  return 0;
}

static void
striped_dtr (struct ic_target *ti)
{
  free (ti->private);
}

/* Refuse @bio if a chunk boundary cuts one of its data units (a chunk
 * smaller than the unit, or the unit not aligned in the chunk): all the
 * boundaries inside it lie chunk bytes apart from the first.
 */
static int
check_cuts (struct ic_target *ti, const struct striped *sc,
            const struct ic_bio *bio)
{
  unsigned int unit = ic_bio_unit (bio);
  uint64_t first;

  if (!unit)
    return 0;
  first = sc->chunk - bio->offset % sc->chunk;
  if (first >= bio->len)
    return 0;
  if (ic_bio_cuts_unit (bio, first))
    return ic_device_refuse_cut (ic_target_device_name (ti),
                                 ti->begin + bio->offset, bio, first);
  if (first + sc->chunk < bio->len && sc->chunk % unit)
    return ic_device_refuse_cut (ic_target_device_name (ti),
                                 ti->begin + bio->offset, bio,
                                 first + sc->chunk);
  return 0;
}

/* The stripe of the chunk @bio starts in, and the piece of @bio that
 * goes there (split off @bio), at its offset on the stripe.
 */
static const struct stripe *
next_chunk (const struct striped *sc, struct ic_bio *bio,
            struct ic_bio *piece)
{
  uint64_t chunk_no = bio->offset / sc->chunk;
  uint64_t in_chunk = bio->offset % sc->chunk;
  uint64_t n = sc->chunk - in_chunk;
  const struct stripe *st = &sc->stripes[chunk_no % sc->n];

  ic_bio_split (bio, bio->len < n ? bio->len : n, piece);
  piece->offset = st->start + (chunk_no / sc->n) * sc->chunk + in_chunk;
  return st;
}

/* The chunk boundaries, then each chunk's piece on a stripe that checks
 * its own (a stacked device; leaves cut nothing).
 */
static int
striped_check_cuts (struct ic_target *ti, const struct ic_bio *bio)
{
  const struct striped *sc = ti->private;
  struct ic_bio rest = *bio;
  unsigned int i;
  int r = check_cuts (ti, sc, bio);

  for (i = 0; i < sc->n; i++)
    if (sc->stripes[i].dev->ops->check_cuts)
      break;
  if (i == sc->n)
    return r;
  while (r == 0 && rest.len > 0) {
    struct ic_bio piece;
    const struct stripe *st = next_chunk (sc, &rest, &piece);

    r = ic_device_check_cuts (st->dev, &piece);
  }
  return r;
}

static int
striped_map (struct ic_target *ti, struct ic_bio *bio)
{
  struct striped *sc = ti->private;
  bool done = false;
  unsigned int i;
  int r = 0;

  if (bio->op == IC_OP_FLUSH) {
    /* Every stripe, also after one failed (dm-stripe: one flush per
     * stripe); the first error is returned.
     */
    for (i = 0; i < sc->n; i++) {
      struct ic_bio clone = *bio;
      int e = ic_device_submit (sc->stripes[i].dev, &clone);

      if (e < 0 && r == 0)
        r = e;
    }
    return r;
  }
  r = check_cuts (ti, sc, bio);
  if (r < 0)
    return r;
  /* One piece per chunk, each split off with its DUN advanced; one that
   * fails after others went through leaves the request part done.
   */
  while (r == 0 && bio->len > 0) {
    struct ic_bio piece;
    const struct stripe *st = next_chunk (sc, bio, &piece);

    r = ic_device_submit (st->dev, &piece);
    if (r < 0)
      ic_bio_part_failed (bio, &piece, done);
    done = true;
  }
  return r;
}

static int
striped_iterate_devices (struct ic_target *ti, ic_iterate_devices_fn fn,
                         void *data)
{
  struct striped *sc = ti->private;
  unsigned int i;
  int r = 0;

  for (i = 0; i < sc->n && r == 0; i++)
    r = fn (ti, sc->stripes[i].dev, sc->stripes[i].start, ti->len / sc->n,
            data);
  return r;
}

/* Only a range inside one chunk lies on one stripe, straight (or any
 * range when there is one stripe).
 */
static bool
striped_holds (struct ic_target *ti, uint64_t offset, uint64_t len,
               struct ic_device *dev, uint64_t dev_offset)
{
  struct striped *sc = ti->private;
  uint64_t chunk_no = offset / sc->chunk;
  uint64_t in_chunk = offset % sc->chunk;
  struct stripe *st = &sc->stripes[chunk_no % sc->n];

  if (sc->n > 1 && len > sc->chunk - in_chunk)
    return false;
  return dev == st->dev &&
    dev_offset == st->start + (chunk_no / sc->n) * sc->chunk + in_chunk;
}

static void
striped_table_args (struct ic_target *ti, char *buf, size_t size)
{
  struct striped *sc = ti->private;
  size_t used;
  unsigned int i;

  used = snprintf (buf, size, "%u %" PRIu64, sc->n, sc->chunk >> 9);
  for (i = 0; i < sc->n; i++)
    used += snprintf (buf + used, used < size ? size - used : 0,
                      " %s %" PRIu64, sc->stripes[i].dev->name,
                      sc->stripes[i].start >> 9);
}

const struct ic_target_type ic_striped_target = {
  .name = "striped",
  .features = IC_TARGET_PASSES_CRYPTO,
  .ctr = striped_ctr,
  .dtr = striped_dtr,
  .map = striped_map,
  .check_cuts = striped_check_cuts,
  .iterate_devices = striped_iterate_devices,
  .table_args = striped_table_args,
  .holds = striped_holds,
};

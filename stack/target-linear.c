/* stack/target-linear.c - the linear target: one child, shifted.  Follows
 * Linux drivers/md/dm-linear.c, which passes inline crypto through
 * (DM_TARGET_PASSES_CRYPTO): the remapped request keeps its DUN.
 *
 *   <start> <length> linear <dev> <offset>
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "table.h"

struct linear {
  struct ic_device *dev;
  uint64_t start;               /* bytes into dev */
};

static int
linear_ctr (struct ic_target *ti, int argc, char **argv,
            ic_device_lookup_fn lookup, void *opaque)
{
  struct linear *lc;

  if (argc != 2) {
    ic_target_set_error (ti, "expected <dev> <offset>, got %d argument%s",
                         argc, argc == 1 ? "" : "s");
    return -EINVAL;
  }
  lc = calloc (1, sizeof *lc);
  if (!lc) {
    ic_target_set_error (ti, "out of memory");
    return -ENOMEM;
  }
  lc->dev = ic_target_get_device (ti, argv[0], argv[1], ti->len, lookup,
                                  opaque, &lc->start);
  if (!lc->dev) {
    free (lc);
    return -EINVAL;
  }
  ti->private = lc;
  return 0;
}

static void
linear_dtr (struct ic_target *ti)
{
  free (ti->private);
}

static int
linear_map (struct ic_target *ti, struct ic_bio *bio)
{
  struct linear *lc = ti->private;
  struct ic_bio clone = *bio;   /* bio_crypt_clone: same key, same DUN */
  int r;

  if (bio->op != IC_OP_FLUSH)
    clone.offset += lc->start;
  r = ic_device_submit (lc->dev, &clone);
  if (r < 0)
    ic_bio_part_failed (bio, &clone, false);
  return r;
}

static int
linear_check_cuts (struct ic_target *ti, const struct ic_bio *bio)
{
  struct linear *lc = ti->private;
  struct ic_bio clone = *bio;

  clone.offset += lc->start;
  return ic_device_check_cuts (lc->dev, &clone);
}

static int
linear_iterate_devices (struct ic_target *ti, ic_iterate_devices_fn fn,
                        void *data)
{
  struct linear *lc = ti->private;

  return fn (ti, lc->dev, lc->start, ti->len, data);
}

static bool
linear_holds (struct ic_target *ti, uint64_t offset, uint64_t len,
              struct ic_device *dev, uint64_t dev_offset)
{
  struct linear *lc = ti->private;

  return dev == lc->dev && dev_offset == lc->start + offset;
}

static void
linear_table_args (struct ic_target *ti, char *buf, size_t size)
{
  struct linear *lc = ti->private;

  snprintf (buf, size, "%s %" PRIu64, lc->dev->name, lc->start >> 9);
}

const struct ic_target_type ic_linear_target = {
  .name = "linear",
  .features = IC_TARGET_PASSES_CRYPTO,
  .ctr = linear_ctr,
  .dtr = linear_dtr,
  .map = linear_map,
  .check_cuts = linear_check_cuts,
  .iterate_devices = linear_iterate_devices,
  .table_args = linear_table_args,
  .holds = linear_holds,
};

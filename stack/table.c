/* stack/table.c - stacked devices and their tables; see table.h.  Follows
 * Linux drivers/md/dm-table.c and dm.c for the inline-encryption parts.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "fallback.h"
#include "table.h"

/* The largest device, in bytes: as dm_table_add_target() refuses a
 * device past LLONG_MAX >> SECTOR_SHIFT sectors ("too large device"),
 * which also keeps the size an NBD server can give (int64_t) and the sums
 * of target lengths from wrapping.
 */
#define MAX_DEVICE_BYTES (((uint64_t) INT64_MAX >> 9) << 9)

/* Words on a table line: the longest is a striped target with its 64
 * stripes, 3 + 2 + 2 * 64.
 */
#define MAX_ARGS 133

/* The arguments of a target as table_args() writes them back: each a
 * device name (at most 63 characters) or a number (at most 20 digits),
 * with its separating space.
 */
#define MAX_ARGS_TEXT ((MAX_ARGS - 3) * 64)

/* Where snprintf appends to @buf of @size once @used bytes are (or would
 * have been) written: no pointer past the buffer, nor into a NULL one.
 */
#define TAIL(buf, used, size)                           \
  (used) < (size) ? (buf) + (used) : NULL,              \
  (used) < (size) ? (size) - (used) : 0

struct ic_table {
  unsigned int refs;            /* atomic */
  struct ic_stacked *md;
  unsigned int options;         /* IC_TABLE_* */
  uint64_t size;                /* bytes: end of the last target */
  size_t ntargets;
  struct ic_target *targets;    /* sorted by begin, contiguous */
  /* dm_table_construct_crypto_profile's result: capabilities only. */
  struct ic_crypto_profile caps;
  bool has_profile;             /* false: NULL profile */
};

struct ic_stacked {
  struct ic_device dev;         /* first: a stacked device is a device */
  /* The live profile object: keyslot-less, created at the first resume of
   * a table with capabilities, then only grown.  dev.profile points here
   * once it exists.
   */
  struct ic_crypto_profile profile;
  pthread_mutex_t load_lock;    /* serialises load, resume, clear */
  pthread_mutex_t table_lock;   /* covers live, inactive, suspended */
  struct ic_table *live;        /* protected by table_lock */
  struct ic_table *inactive;    /* protected by table_lock */
  /* While a resume swaps tables, new requests wait (dm_suspend) and the
   * resume waits for those on the live table to finish: table_cond, with
   * table_lock, signals both.  Set under table_lock; also read atomically
   * by table_put().
   */
  bool suspended;
  pthread_cond_t table_cond;
};

static const struct ic_device_ops stacked_ops;

static const struct ic_target_type *const target_types[] = {
  &ic_linear_target,
  &ic_striped_target,
  &ic_mirror_target,
};

/* Serialises, across devices, a load's cycle check with the installing
 * of its inactive table: loads of different devices run at once (each
 * has its own load_lock), and two of them, A using B and B using A, would
 * each find no cycle before the other's table is in.  Taken after
 * load_lock, never while waiting for I/O.
 */
static pthread_mutex_t deps_lock = PTHREAD_MUTEX_INITIALIZER;

/* Types added by ic_target_register(), after the built-in ones. */
static pthread_mutex_t types_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct ic_target_type *extra_types[IC_MAX_TARGET_TYPES];
                                /* protected by types_lock */

/* The type called @name, or NULL.  Context: types_lock held. */
static const struct ic_target_type *
find_type_locked (const char *name)
{
  size_t i;

  for (i = 0; i < sizeof target_types / sizeof target_types[0]; i++)
    if (strcmp (name, target_types[i]->name) == 0)
      return target_types[i];
  for (i = 0; i < IC_MAX_TARGET_TYPES; i++)
    if (extra_types[i] && strcmp (name, extra_types[i]->name) == 0)
      return extra_types[i];
  return NULL;
}

static const struct ic_target_type *
find_type (const char *name)
{
  const struct ic_target_type *type;

  pthread_mutex_lock (&types_lock);
  type = find_type_locked (name);
  pthread_mutex_unlock (&types_lock);
  return type;
}

/* The names of the known types, for the message about an unknown one. */
static void
type_names (char *buf, size_t size)
{
  size_t used = 0;
  size_t i;

  buf[0] = '\0';
  for (i = 0; i < sizeof target_types / sizeof target_types[0]; i++)
    used += snprintf (TAIL (buf, used, size), "%s%s",
                      used ? ", " : "", target_types[i]->name);
  pthread_mutex_lock (&types_lock);
  for (i = 0; i < IC_MAX_TARGET_TYPES; i++)
    if (extra_types[i])
      used += snprintf (TAIL (buf, used, size), ", %s",
                        extra_types[i]->name);
  pthread_mutex_unlock (&types_lock);
}

int
ic_target_register (const struct ic_target_type *type)
{
  size_t i;
  int r = -ENOSPC;

  pthread_mutex_lock (&types_lock);
  if (find_type_locked (type->name)) {
    ic_error ("target type %s: register: a type of that name exists",
              type->name);
    r = -EEXIST;
    goto out_unlock;
  }
  for (i = 0; i < IC_MAX_TARGET_TYPES; i++)
    if (!extra_types[i]) {
      extra_types[i] = type;
      r = 0;
      goto out_unlock;
    }
  ic_error ("target type %s: register: already %d extra types",
            type->name, IC_MAX_TARGET_TYPES);
out_unlock:
  pthread_mutex_unlock (&types_lock);
  return r;
}

void
ic_target_unregister (const struct ic_target_type *type)
{
  size_t i;

  pthread_mutex_lock (&types_lock);
  for (i = 0; i < IC_MAX_TARGET_TYPES; i++)
    if (extra_types[i] == type)
      extra_types[i] = NULL;
  pthread_mutex_unlock (&types_lock);
}

void
ic_target_set_error (struct ic_target *ti, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (ti->error, sizeof ti->error, fmt, ap);
  va_end (ap);
}

const char *
ic_target_device_name (const struct ic_target *ti)
{
  return ti->table->md->dev.name;
}

bool
ic_parse_sectors (const char *str, uint64_t *bytes)
{
  char *end;
  unsigned long long v;

  if (!isdigit ((unsigned char) *str))
    return false;
  errno = 0;
  v = strtoull (str, &end, 10);
  if (errno || *end || v > (UINT64_MAX >> 9))
    return false;
  *bytes = (uint64_t) v << 9;
  return true;
}

struct ic_device *
ic_target_get_device (struct ic_target *ti, const char *name,
                      const char *offset_str, uint64_t len,
                      ic_device_lookup_fn lookup, void *opaque,
                      uint64_t *offset)
{
  struct ic_device *dev = lookup (opaque, name);
  uint32_t min;

  if (!dev) {
    ic_target_set_error (ti, "unknown device '%s'", name);
    return NULL;
  }
  if (!ic_parse_sectors (offset_str, offset)) {
    ic_target_set_error (ti, "offset '%s' on %s is not a number of "
                         "sectors", offset_str, name);
    return NULL;
  }
  /* A device being defined has no size yet: a device that names itself
   * is told so (a sized one is refused as a cycle, ELOOP, by the load).
   */
  if (dev->size == 0 && ti->table && dev == &ti->table->md->dev) {
    ic_target_set_error (ti, "%s is the device itself: a device cannot "
                         "stack on itself", name);
    return NULL;
  }
  if (*offset > dev->size || len > dev->size - *offset) {
    ic_target_set_error (ti, "%s has %" PRIu64 " sectors, but the target "
                         "needs sectors %" PRIu64 " to %" PRIu64, name,
                         dev->size >> 9, *offset >> 9,
                         ((*offset + len) >> 9) - 1);
    return NULL;
  }
  /* device_area_is_invalid: the area must start and end on the child's
   * logical blocks (here its minimum block size, which an NBD peer may
   * set above a sector), or requests aligned for the device above would
   * reach the child unaligned.
   */
  min = ic_device_min_block (dev);
  if (*offset % min || len % min) {
    ic_target_set_error (ti, "sectors %" PRIu64 " to %" PRIu64 " of %s are "
                         "not aligned to its %" PRIu32 "-byte minimum block "
                         "size", *offset >> 9, ((*offset + len) >> 9) - 1,
                         name, min);
    return NULL;
  }
  return dev;
}

static struct ic_table *
table_get (struct ic_table *t)
{
  if (t)
    __atomic_fetch_add (&t->refs, 1, __ATOMIC_RELAXED);
  return t;
}

static void
table_put (struct ic_table *t)
{
  struct ic_stacked *md;
  unsigned int refs;
  size_t i;

  if (!t)
    return;
  /* Once our reference is gone a resume may free @t: read md first. */
  md = t->md;
  /* Sequentially consistent with the resume that sets suspended and then
   * reads refs: either it sees our decrement or we see it waiting.
   */
  refs = __atomic_sub_fetch (&t->refs, 1, __ATOMIC_SEQ_CST);
  if (refs == 1 && __atomic_load_n (&md->suspended, __ATOMIC_SEQ_CST)) {
    pthread_mutex_lock (&md->table_lock);
    pthread_cond_broadcast (&md->table_cond);
    pthread_mutex_unlock (&md->table_lock);
  }
  if (refs != 0)
    return;
  for (i = 0; i < t->ntargets; i++)
    if (t->targets[i].type && t->targets[i].type->dtr)
      t->targets[i].type->dtr (&t->targets[i]);
  ic_crypto_profile_destroy (&t->caps);
  free (t->targets);
  free (t);
}

/* A reference to the live table, or NULL. */
static struct ic_table *
get_live (struct ic_stacked *md)
{
  struct ic_table *t;

  pthread_mutex_lock (&md->table_lock);
  t = table_get (md->live);
  pthread_mutex_unlock (&md->table_lock);
  return t;
}

/* The same for a request: waits while a resume swaps tables, as bios wait
 * on a suspended mapped device.  No lock is held while waiting.
 */
static struct ic_table *
get_live_io (struct ic_stacked *md)
{
  struct ic_table *t;

  pthread_mutex_lock (&md->table_lock);
  while (md->suspended)
    pthread_cond_wait (&md->table_cond, &md->table_lock);
  t = table_get (md->live);
  pthread_mutex_unlock (&md->table_lock);
  return t;
}

struct ic_stacked *
ic_device_to_stacked (struct ic_device *dev)
{
  return dev && dev->ops == &stacked_ops ? (struct ic_stacked *) dev : NULL;
}

/* The target containing byte @offset (which is inside the table). */
static struct ic_target *
find_target (struct ic_table *t, uint64_t offset)
{
  size_t lo = 0;
  size_t hi = t->ntargets;

  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;

    if (t->targets[mid].begin <= offset)
      lo = mid;
    else
      hi = mid;
  }
  return &t->targets[lo];
}

bool
ic_table_holds (struct ic_table *t, uint64_t begin, uint64_t len,
                struct ic_device *dev, uint64_t dev_offset)
{
  uint64_t end = begin + len;
  uint64_t pos;

  if (begin > t->size || len > t->size - begin)
    return false;
  for (pos = begin; pos < end;) {
    struct ic_target *ti = find_target (t, pos);
    uint64_t next = ti->begin + ti->len < end ? ti->begin + ti->len : end;

    if (!ti->type->holds ||
        !ti->type->holds (ti, pos - ti->begin, next - pos, dev,
                          dev_offset + (pos - begin)))
      return false;
    pos = next;
  }
  return true;
}

/* Refuse @bio if a target boundary of @t would cut one of its data units.
 * Return: 0 or -EINVAL (reported).
 */
static int
check_cuts (struct ic_table *t, struct ic_device *dev,
            const struct ic_bio *bio)
{
  uint64_t end = bio->offset + bio->len;
  uint64_t pos = bio->offset;

  if (!ic_bio_unit (bio))
    return 0;
  for (;;) {
    struct ic_target *ti = find_target (t, pos);

    pos = ti->begin + ti->len;
    if (pos >= end)
      return 0;
    if (ic_bio_cuts_unit (bio, pos - bio->offset))
      return ic_device_refuse_cut (dev->name, bio->offset, bio,
                                   pos - bio->offset);
  }
}

/* check_cuts() of @t, then of every target's piece of @bio and below. */
static int
check_cuts_below (struct ic_table *t, struct ic_device *dev,
                  const struct ic_bio *bio)
{
  struct ic_bio rest = *bio;
  int r = check_cuts (t, dev, bio);

  while (r == 0 && rest.len > 0) {
    struct ic_target *ti = find_target (t, rest.offset);
    uint64_t left = ti->begin + ti->len - rest.offset;
    struct ic_bio piece;

    ic_bio_split (&rest, rest.len < left ? rest.len : left, &piece);
    piece.offset -= ti->begin;
    if (ti->type->check_cuts)
      r = ti->type->check_cuts (ti, &piece);
  }
  return r;
}

/* ic_device_ops.check_cuts: against the live table (not waiting for a
 * resume: a table resumed meanwhile is checked again as the pieces go
 * down).
 */
static int
stacked_check_cuts (struct ic_device *dev, const struct ic_bio *bio)
{
  struct ic_stacked *md = (struct ic_stacked *) dev;
  struct ic_table *t = get_live (md);
  int r;

  if (!t)
    return 0;
  r = check_cuts_below (t, dev, bio);
  table_put (t);
  return r;
}

static int
stacked_submit (struct ic_device *dev, struct ic_bio *bio)
{
  struct ic_stacked *md = (struct ic_stacked *) dev;
  struct ic_table *t = get_live_io (md);
  bool done = false;
  int r = 0;
  size_t i;

  if (!t) {
    ic_error ("%s: %s: the device has no live table", dev->name,
              ic_bio_op_name (bio->op));
    return -ENXIO;
  }
  if (bio->op == IC_OP_FLUSH) {
    /* Every target flushes its children, also after one failed (as dm
     * sends a flush to every target); the first error is returned.
     */
    for (i = 0; i < t->ntargets; i++) {
      int e = t->targets[i].type->map (&t->targets[i], bio);

      if (e < 0 && r == 0)
        r = e;
    }
    table_put (t);
    return r;
  }
  /* No target boundary may cut a data unit: checked for the whole bio
   * before any piece goes down; for a write, all the way down, so that a
   * device below that would refuse a later piece refuses it before an
   * earlier one changed anything.
   */
  r = bio->op == IC_OP_WRITE ? check_cuts_below (t, dev, bio)
                             : check_cuts (t, dev, bio);
  if (r < 0) {
    table_put (t);
    return r;
  }
  /* Split at target boundaries (bio_split keeps the DUN right).  A piece
   * that fails after others went through leaves the request part done,
   * its data units whole.
   */
  while (r == 0 && bio->len > 0) {
    struct ic_target *ti = find_target (t, bio->offset);
    uint64_t left = ti->begin + ti->len - bio->offset;
    struct ic_bio piece;

    ic_bio_split (bio, bio->len < left ? bio->len : left, &piece);
    piece.offset -= ti->begin;
    r = ti->type->map (ti, &piece);
    if (r < 0)
      ic_bio_part_failed (bio, &piece, done);
    done = true;
  }
  table_put (t);
  return r;
}

/* Evicting from a stacked device goes to every child of the live table
 * (dm_keyslot_evict).  As upstream since 6.4, errors of the children are
 * logged there and this returns 0.
 */
static int
evict_child (struct ic_target *ti, struct ic_device *child, uint64_t start,
             uint64_t len, void *data)
{
  const struct ic_crypto_key *key = data;
  int r = ic_device_evict_key (child, key);

  if (r < 0)
    ic_debug ("%s: error %d evicting key %s from %s",
              ic_target_device_name (ti), r, key->name, child->name);
  return 0;
}

static int
stacked_keyslot_evict (struct ic_crypto_profile *profile,
                       const struct ic_crypto_key *key, int slot)
{
  struct ic_stacked *md = profile->priv;
  int r;

  ic_stacked_iterate_devices (&md->dev, evict_child, (void *) key);
  /* The key may be in the fallback too: used through it at this device
   * while the profile lacked its config, before a wider table made it
   * native.  Its slot there would keep the key's bytes and a pointer the
   * caller is about to free (a later key at that address would then be
   * taken for it).
   */
  r = ic_crypto_fallback_evict_key (key);
  if (r < 0)
    ic_debug ("%s: error %d evicting key %s from the fallback",
              md->dev.name, r, key->name);
  return 0;
}

/* Wrapped-key operations go to the first underlying device of the live
 * table only (dm_exec_wrappedkey_op, "dm: pass through operations on
 * wrapped inline crypto keys" with its stable fix): as upstream assumes,
 * all children share one wrapped-key implementation, and asking every one
 * would flood the key manager with unwrap requests for an invalid key.
 * The profile wrappers only call these when the device's capabilities
 * include hardware-wrapped keys.
 */
enum wrappedkey_op {
  DERIVE_SW_SECRET,
  IMPORT_KEY,
  GENERATE_KEY,
  PREPARE_KEY,
};

struct wrappedkey_op_args {
  enum wrappedkey_op op;
  const uint8_t *in;
  size_t in_size;
  uint8_t *out;
  int err;
};

static int
wrappedkey_op_child (struct ic_target *ti, struct ic_device *child,
                     uint64_t start, uint64_t len, void *data)
{
  struct wrappedkey_op_args *args = data;
  /* A stacked child gets its profile at its first resume. */
  struct ic_crypto_profile *profile =
    __atomic_load_n (&child->profile, __ATOMIC_ACQUIRE);

  switch (args->op) {
  case DERIVE_SW_SECRET:
    args->err = ic_crypto_derive_sw_secret (profile, args->in, args->in_size,
                                            args->out);
    break;
  case IMPORT_KEY:
    args->err = ic_crypto_import_key (profile, args->in, args->in_size,
                                      args->out);
    break;
  case GENERATE_KEY:
    args->err = ic_crypto_generate_key (profile, args->out);
    break;
  case PREPARE_KEY:
    args->err = ic_crypto_prepare_key (profile, args->in, args->in_size,
                                       args->out);
    break;
  }
  /* The first device only: stop. */
  return 1;
}

static int
exec_wrappedkey_op (struct ic_crypto_profile *profile,
                    struct wrappedkey_op_args *args)
{
  struct ic_stacked *md = profile->priv;

  args->err = -EOPNOTSUPP;
  ic_stacked_iterate_devices (&md->dev, wrappedkey_op_child, args);
  return args->err;
}

/* dm_derive_sw_secret */
static int
stacked_derive_sw_secret (struct ic_crypto_profile *profile,
                          const uint8_t *eph_key, size_t eph_key_size,
                          uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE])
{
  struct wrappedkey_op_args args = { .op = DERIVE_SW_SECRET, .in = eph_key,
                                     .in_size = eph_key_size,
                                     .out = sw_secret };

  return exec_wrappedkey_op (profile, &args);
}

/* dm_import_key */
static int
stacked_import_key (struct ic_crypto_profile *profile,
                    const uint8_t *raw_key, size_t raw_key_size,
                    uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  struct wrappedkey_op_args args = { .op = IMPORT_KEY, .in = raw_key,
                                     .in_size = raw_key_size,
                                     .out = lt_key };

  return exec_wrappedkey_op (profile, &args);
}

/* dm_generate_key */
static int
stacked_generate_key (struct ic_crypto_profile *profile,
                      uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  struct wrappedkey_op_args args = { .op = GENERATE_KEY, .out = lt_key };

  return exec_wrappedkey_op (profile, &args);
}

/* dm_prepare_key */
static int
stacked_prepare_key (struct ic_crypto_profile *profile,
                     const uint8_t *lt_key, size_t lt_key_size,
                     uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  struct wrappedkey_op_args args = { .op = PREPARE_KEY, .in = lt_key,
                                     .in_size = lt_key_size,
                                     .out = eph_key };

  return exec_wrappedkey_op (profile, &args);
}

static void
table_free_all (struct ic_stacked *md)
{
  struct ic_table *live;
  struct ic_table *inactive;
  size_t i;

  pthread_mutex_lock (&md->table_lock);
  live = md->live;
  inactive = md->inactive;
  md->live = md->inactive = NULL;
  pthread_mutex_unlock (&md->table_lock);
  if (live)
    for (i = 0; i < live->ntargets; i++)
      if (live->targets[i].type->suspend)
        live->targets[i].type->suspend (&live->targets[i]);
  table_put (live);
  table_put (inactive);
}

static void
stacked_destroy (struct ic_device *dev)
{
  struct ic_stacked *md = (struct ic_stacked *) dev;

  table_free_all (md);
  ic_crypto_profile_destroy (&md->profile);
  pthread_mutex_destroy (&md->load_lock);
  pthread_mutex_destroy (&md->table_lock);
  pthread_cond_destroy (&md->table_cond);
  free (md);
}

static const struct ic_device_ops stacked_ops = {
  .type = "stacked",
  .submit = stacked_submit,
  .check_cuts = stacked_check_cuts,
  .destroy = stacked_destroy,
};

struct ic_device *
ic_stacked_new (const char *name)
{
  struct ic_stacked *md = calloc (1, sizeof *md);

  if (!md || ic_crypto_profile_init (&md->profile, 0) < 0) {
    free (md);
    ic_error ("%s: out of memory", name);
    errno = ENOMEM;
    return NULL;
  }
  ic_device_init (&md->dev, name, 0, &stacked_ops);
  md->dev.features = IC_DEV_CAN_FUA | IC_DEV_CAN_TRIM | IC_DEV_CAN_ZERO |
                     IC_DEV_CAN_MULTI_CONN;
  md->profile.ll_ops.keyslot_evict = stacked_keyslot_evict;
  /* Used only while the capabilities include hardware-wrapped keys. */
  md->profile.ll_ops.derive_sw_secret = stacked_derive_sw_secret;
  md->profile.ll_ops.import_key = stacked_import_key;
  md->profile.ll_ops.generate_key = stacked_generate_key;
  md->profile.ll_ops.prepare_key = stacked_prepare_key;
  md->profile.priv = md;
  snprintf (md->profile.name, sizeof md->profile.name, "%s", name);
  pthread_mutex_init (&md->load_lock, NULL);
  pthread_mutex_init (&md->table_lock, NULL);
  pthread_cond_init (&md->table_cond, NULL);
  return &md->dev;
}

int
ic_stacked_iterate_devices (struct ic_device *dev, ic_iterate_devices_fn fn,
                            void *data)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct ic_table *t;
  size_t i;
  int r = 0;

  if (!md)
    return 0;
  t = get_live (md);
  if (!t)
    return 0;
  for (i = 0; i < t->ntargets && r == 0; i++)
    r = t->targets[i].type->iterate_devices (&t->targets[i], fn, data);
  table_put (t);
  return r;
}

struct depends_ctx {
  struct ic_device *ancestor;
  bool found;
};

static bool depends_on_table (struct ic_table *t, struct depends_ctx *ctx);

static int
depends_child (struct ic_target *ti, struct ic_device *child, uint64_t start,
               uint64_t len, void *data)
{
  struct depends_ctx *ctx = data;

  if (ic_device_depends_on (child, ctx->ancestor)) {
    ctx->found = true;
    return 1;
  }
  return 0;
}

static bool
depends_on_table (struct ic_table *t, struct depends_ctx *ctx)
{
  size_t i;

  for (i = 0; t && i < t->ntargets && !ctx->found; i++)
    t->targets[i].type->iterate_devices (&t->targets[i], depends_child, ctx);
  return ctx->found;
}

bool
ic_device_depends_on (struct ic_device *dev, struct ic_device *ancestor)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct depends_ctx ctx = { .ancestor = ancestor };
  struct ic_table *live;
  struct ic_table *inactive;

  if (dev == ancestor)
    return true;
  if (!md)
    return false;
  pthread_mutex_lock (&md->table_lock);
  live = table_get (md->live);
  inactive = table_get (md->inactive);
  pthread_mutex_unlock (&md->table_lock);
  depends_on_table (live, &ctx);
  depends_on_table (inactive, &ctx);
  table_put (live);
  table_put (inactive);
  return ctx.found;
}

unsigned int
ic_stacked_options (struct ic_device *dev)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct ic_table *t = md ? get_live (md) : NULL;
  unsigned int options = t ? t->options : 0;

  table_put (t);
  return options;
}

/* Split a line into words; returns the count or -1 if too many. */
static int
split_words (char *line, char **argv, int max)
{
  int argc = 0;
  char *p = line;

  for (;;) {
    while (*p && isspace ((unsigned char) *p))
      p++;
    if (!*p)
      return argc;
    if (argc == max)
      return -1;
    argv[argc++] = p;
    while (*p && !isspace ((unsigned char) *p))
      p++;
    if (*p)
      *p++ = '\0';
  }
}

/* Where messages about line @lineno of a table come from. */
static void
where (char *buf, size_t size, struct ic_stacked *md, const char *source,
       unsigned int lineno)
{
  if (source)
    snprintf (buf, size, "%s:%u", source, lineno);
  else
    snprintf (buf, size, "%s: table line %u", md->dev.name, lineno);
}

/* validate_hardware_logical_block_alignment: every target starts and ends
 * on the largest minimum block size of the table's children, which the
 * device advertises above.  Return: 0 or -EINVAL (reported).
 */
static int
check_block_alignment (struct ic_table *t, struct ic_stacked *md,
                       const char *source, uint32_t *minp)
{
  uint32_t children = 1;
  uint32_t min;
  char at[512];
  size_t i;

  for (i = 0; i < t->ntargets; i++)
    t->targets[i].type->iterate_devices (&t->targets[i],
                                         ic_device_max_min_block, &children);
  /* Targets are in sectors: aligned to 512 bytes whatever the children. */
  min = children > 512 ? children : 512;
  for (i = 0; i < t->ntargets; i++) {
    const struct ic_target *ti = &t->targets[i];

    if (ti->begin % min == 0 && ti->len % min == 0)
      continue;
    where (at, sizeof at, md, source, ti->lineno);
    ic_error ("%s: the target (start %" PRIu64 ", length %" PRIu64 " "
              "sectors) is not aligned to %" PRIu32 " bytes, the largest "
              "minimum block size of the table's devices", at,
              ti->begin >> 9, ti->len >> 9, min);
    return -EINVAL;
  }
  /* The children's own minimum, which the device advertises above (an
   * export tells its clients 1 byte when nothing below needs more).
   */
  *minp = children;
  return 0;
}

/* Build one target from a line.  Return: 0, 1 for a blank or comment
 * line, or -errno (reported).
 */
static int
parse_line (struct ic_table *t, char *line, const char *at,
            unsigned int lineno, ic_device_lookup_fn lookup, void *opaque)
{
  char *argv[MAX_ARGS];
  struct ic_target *ti;
  struct ic_target *bigger;
  uint64_t begin;
  uint64_t len;
  char *hash = strchr (line, '#');
  int argc;
  int r;

  if (hash)
    *hash = '\0';
  argc = split_words (line, argv, MAX_ARGS);
  if (argc == 0)
    return 1;
  if (argc < 0) {
    ic_error ("%s: too many words (at most %d)", at, MAX_ARGS);
    return -EINVAL;
  }
  if (argc < 3) {
    ic_error ("%s: expected <start> <length> <target> <args...>", at);
    return -EINVAL;
  }
  if (!ic_parse_sectors (argv[0], &begin)) {
    ic_error ("%s: start '%s' is not a number of sectors", at, argv[0]);
    return -EINVAL;
  }
  if (!ic_parse_sectors (argv[1], &len) || len == 0) {
    ic_error ("%s: length '%s' is not a positive number of sectors", at,
              argv[1]);
    return -EINVAL;
  }
  if (begin != t->size) {
    ic_error ("%s: target starts at sector %" PRIu64 " but the table so far "
              "ends at sector %" PRIu64 " (targets must follow each other "
              "from sector 0 without %s)", at, begin >> 9, t->size >> 9,
              begin > t->size ? "gaps" : "overlaps");
    return -EINVAL;
  }
  if (len > MAX_DEVICE_BYTES - begin) {
    ic_error ("%s: the device would have more than %" PRIu64 " sectors, the "
              "largest size (too large device)", at, MAX_DEVICE_BYTES >> 9);
    return -EINVAL;
  }

  bigger = realloc (t->targets, (t->ntargets + 1) * sizeof *bigger);
  if (!bigger)
    return -ENOMEM;
  t->targets = bigger;
  ti = &t->targets[t->ntargets];
  memset (ti, 0, sizeof *ti);
  ti->table = t;
  ti->begin = begin;
  ti->len = len;
  ti->lineno = lineno;
  ti->type = find_type (argv[2]);
  if (!ti->type) {
    char names[512];

    type_names (names, sizeof names);
    ic_error ("%s: unknown target type '%s'; expected one of %s", at,
              argv[2], names);
    return -EINVAL;
  }
  r = ti->type->ctr (ti, argc - 3, argv + 3, lookup, opaque);
  if (r < 0) {
    ic_error ("%s: %s: %s", at, ti->type->name,
              ti->error[0] ? ti->error : "invalid arguments");
    ti->type = NULL;
    return r;
  }
  t->ntargets++;
  t->size = begin + len;
  return 0;
}

/* dm_table_construct_crypto_profile: intersect the children's
 * capabilities; a target that does not pass crypto wipes them all.
 *
 * With per-child fallback, a context is advertised when some child
 * supports it natively (the union) and every child can take it, natively
 * or through its own fallback (the reach, an intersection).  A child
 * without a fallback (its fallback=false, or "fallback enabled=false")
 * reaches only what it supports natively, so it narrows the device as in
 * an intersection; a child with one reaches its native capabilities plus
 * the fallback's (every mode, raw keys only).  Otherwise a request would
 * land on a child that can neither encrypt it nor fall back: EOPNOTSUPP,
 * and in a mirror a failed leg.
 */
struct caps_ctx {
  struct ic_crypto_profile *caps;
  struct ic_crypto_profile *reach;      /* per-child fallback only: */
  struct ic_crypto_profile *native;     /* what every child does itself */
  bool per_child;
};

static int
caps_child (struct ic_target *ti, struct ic_device *child, uint64_t start,
            uint64_t len, void *data)
{
  struct caps_ctx *ctx = data;
  /* A stacked child gets its profile at its first resume. */
  const struct ic_crypto_profile *profile =
    __atomic_load_n (&child->profile, __ATOMIC_ACQUIRE);
  struct ic_crypto_profile takes;

  if (!ctx->per_child) {
    ic_crypto_intersect_capabilities (ctx->caps, profile);
    return 0;
  }
  ic_crypto_union_capabilities (ctx->caps, profile);
  ic_crypto_intersect_capabilities (ctx->native, profile);
  if (child->fallback_enabled) {
    memset (&takes, 0, sizeof takes);
    ic_crypto_fallback_capabilities (&takes);
    ic_crypto_union_capabilities (&takes, profile);
    ic_crypto_intersect_capabilities (ctx->reach, &takes);
  }
  else
    ic_crypto_intersect_capabilities (ctx->reach, profile);
  return 0;
}

static void
construct_crypto_profile (struct ic_table *t)
{
  struct ic_crypto_profile reach;
  struct ic_crypto_profile native;
  struct caps_ctx ctx = { .caps = &t->caps, .reach = &reach,
                          .native = &native };
  size_t i;

  ctx.per_child = t->options & IC_TABLE_PER_CHILD_FALLBACK;

  if (ctx.per_child) {
    /* Nothing yet in the union, everything in the reach. */
    ic_crypto_intersect_capabilities (&t->caps, NULL);
    memset (&reach, 0, sizeof reach);
    ic_crypto_set_all_capabilities (&reach);
    memset (&native, 0, sizeof native);
    ic_crypto_set_all_capabilities (&native);
  }
  else
    ic_crypto_set_all_capabilities (&t->caps);
  for (i = 0; i < t->ntargets; i++) {
    struct ic_target *ti = &t->targets[i];

    if (!(ti->type->features & IC_TARGET_PASSES_CRYPTO)) {
      ic_crypto_intersect_capabilities (&t->caps, NULL);
      break;
    }
    ti->type->iterate_devices (ti, caps_child, &ctx);
  }
  if (ctx.per_child) {
    ic_crypto_intersect_capabilities (&t->caps, &reach);
    /* No fallback takes a wrapped key, so every child must take it
     * natively, in whatever mode, unit size and DUN size it comes.  A
     * profile states key types apart from modes: wrapped keys stay only
     * if every child supports natively all that is advertised.
     */
    if (!ic_crypto_has_capabilities (&native, &t->caps))
      t->caps.key_types_supported &= ~IC_CRYPTO_KEY_TYPE_HW_WRAPPED;
  }
  /* An empty intersection is no profile at all. */
  t->has_profile = !ic_crypto_profile_is_empty (&t->caps);
}

/* Describe what @new lacks of @live, for the refusal of a narrower
 * table: "AES-256-XTS/4096,8192, 8 DUN bytes (it has 4), raw keys".  Data
 * unit sizes are grouped per mode so that a table without any profile
 * still fits, DUN bytes and key types included.
 */
static void
describe_missing (const struct ic_crypto_profile *new_caps,
                  const struct ic_crypto_profile *live, char *buf,
                  size_t size)
{
  size_t used = 0;
  unsigned int lost_types;
  int m;
  int bit;

#define ADD(...) \
  (used += snprintf (TAIL (buf, used, size), __VA_ARGS__))
  buf[0] = '\0';
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++) {
    unsigned int lost = live->modes_supported[m] &
      ~(new_caps ? new_caps->modes_supported[m] : 0);
    const char *sep = "";

    if (!lost)
      continue;
    ADD ("%s%s/", used ? ", " : "", ic_crypto_mode_name (m));
    for (bit = 0; bit < 32; bit++)
      if (lost & (1u << bit)) {
        ADD ("%s%u", sep, 1u << bit);
        sep = ",";
      }
  }
  if (!new_caps || new_caps->max_dun_bytes_supported <
      live->max_dun_bytes_supported)
    ADD ("%s%u DUN bytes (it has %u)", used ? ", " : "",
         live->max_dun_bytes_supported,
         new_caps ? new_caps->max_dun_bytes_supported : 0);
  lost_types = live->key_types_supported &
    ~(new_caps ? new_caps->key_types_supported : 0);
  if (lost_types & IC_CRYPTO_KEY_TYPE_RAW)
    ADD ("%sraw keys", used ? ", " : "");
  if (lost_types & IC_CRYPTO_KEY_TYPE_HW_WRAPPED)
    ADD ("%shw_wrapped keys", used ? ", " : "");
#undef ADD
}

static int
readonly_child (struct ic_target *ti, struct ic_device *child,
                uint64_t start, uint64_t len, void *data)
{
  return ic_device_is_readonly (child);
}

/* True if a device of @t is read-only (ic_device_is_readonly()). */
static bool
table_is_readonly (struct ic_table *t)
{
  size_t i;

  for (i = 0; i < t->ntargets; i++)
    if (t->targets[i].type->iterate_devices (&t->targets[i], readonly_child,
                                             NULL))
      return true;
  return false;
}

struct cycle_ctx {
  struct ic_device *dev;
  const char *child;
};

static int
cycle_child (struct ic_target *ti, struct ic_device *child, uint64_t start,
             uint64_t len, void *data)
{
  struct cycle_ctx *ctx = data;

  if (ic_device_depends_on (child, ctx->dev)) {
    ctx->child = child->name;
    return 1;
  }
  return 0;
}

/* The target of @old that @ti lies in, or NULL. */
static struct ic_target *
find_prev (struct ic_table *old, const struct ic_target *ti)
{
  size_t j;

  for (j = 0; old && j < old->ntargets; j++)
    if (old->targets[j].begin <= ti->begin &&
        ti->begin + ti->len <= old->targets[j].begin + old->targets[j].len)
      return &old->targets[j];
  return NULL;
}

int
ic_stacked_load (struct ic_device *dev, const char *text,
                 unsigned int options, const char *source,
                 unsigned int first_line, ic_device_lookup_fn lookup,
                 void *opaque)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct cycle_ctx cycle = { .dev = dev };
  struct ic_table *t;
  struct ic_table *live;
  struct ic_table *old = NULL;
  char *copy = NULL;
  char *line;
  char *next;
  char at[512];
  unsigned int lineno = first_line ? first_line : 1;
  uint32_t min_block = 0;
  uint32_t live_min;
  bool deps_locked = false;
  size_t i;
  int r = 0;

  if (!md) {
    ic_error ("%s: load table: not a stacked device", dev->name);
    return -EINVAL;
  }
  t = calloc (1, sizeof *t);
  copy = strdup (text);
  if (!t || !copy || ic_crypto_profile_init (&t->caps, 0) < 0) {
    free (t);
    free (copy);
    ic_error ("%s: load table: out of memory", dev->name);
    return -ENOMEM;
  }
  t->refs = 1;
  t->md = md;
  t->options = options;

  pthread_mutex_lock (&md->load_lock);
  for (line = copy; line && r >= 0; line = next, lineno++) {
    next = strchr (line, '\n');
    if (next)
      *next++ = '\0';
    where (at, sizeof at, md, source, lineno);
    r = parse_line (t, line, at, lineno, lookup, opaque);
    if (r == -ENOMEM)
      ic_error ("%s: out of memory", at);
  }
  if (r < 0)
    goto out_put;
  r = 0;
  if (t->ntargets == 0) {
    ic_error ("%s: load table: the table has no targets", dev->name);
    r = -EINVAL;
    goto out_put;
  }

  r = check_block_alignment (t, md, source, &min_block);
  if (r < 0)
    goto out_put;

  /* No child may be this device or stack on it; until the table is in,
   * no other load may add a dependency (deps_lock).
   */
  pthread_mutex_lock (&deps_lock);
  deps_locked = true;
  for (i = 0; i < t->ntargets && !cycle.child; i++)
    t->targets[i].type->iterate_devices (&t->targets[i], cycle_child,
                                         &cycle);
  if (cycle.child) {
    ic_error ("%s: load table: the table uses %s, which is %s or stacks on "
              "it: that would be a cycle", dev->name, cycle.child, dev->name);
    r = -ELOOP;
    goto out_put;
  }

  live = get_live (md);
  if (live && live->size != t->size) {
    ic_error ("%s: load table: the table has %" PRIu64 " sectors but the "
              "device has %" PRIu64 "; resizing is not supported (NBD "
              "clients cannot follow it)", dev->name, t->size >> 9,
              live->size >> 9);
    table_put (live);
    r = -EINVAL;
    goto out_put;
  }
  /* Nor can they follow a larger minimum block size: they were told the
   * live one (beyond Linux, whose block layer could).
   */
  live_min = ic_device_min_block (dev);
  if (live && min_block > live_min) {
    ic_error ("%s: load table: the table's devices take blocks of %" PRIu32
              " bytes at least, but the device's are %" PRIu32 " bytes; "
              "raising the minimum block size is not supported (NBD "
              "clients cannot follow it)", dev->name, min_block,
              live_min);
    table_put (live);
    r = -EINVAL;
    goto out_put;
  }
  /* Nor can they follow a writable device turning read-only: they were
   * told they may write (as Linux opens a read-write mapped device's
   * children for writing, and refuses the table of a read-only one).
   */
  if (live && !table_is_readonly (live) && table_is_readonly (t)) {
    ic_error ("%s: load table: the table uses a read-only device but %s "
              "is writable; making it read-only is not supported (NBD "
              "clients cannot follow it)", dev->name, dev->name);
    table_put (live);
    r = -EROFS;
    goto out_put;
  }
  /* Nor can a target lose the data the live table holds (a mirror
   * listing none of the legs in sync).  The live table stays live while
   * load_lock is held.
   */
  for (i = 0; live && i < t->ntargets && r == 0; i++)
    if (t->targets[i].type->check_reload)
      r = t->targets[i].type->check_reload (&t->targets[i], live,
                                            find_prev (live,
                                                       &t->targets[i]));
  table_put (live);
  if (r < 0)
    goto out_put;

  construct_crypto_profile (t);
  /* The superset rule: a new table must not support less than the live
   * profile advertises, since requests may already rely on it.
   */
  if (dev->profile &&
      !ic_crypto_has_capabilities (t->has_profile ? &t->caps : NULL,
                                   dev->profile)) {
    char missing[512];

    describe_missing (t->has_profile ? &t->caps : NULL, dev->profile,
                      missing, sizeof missing);
    ic_error ("%s: load table: the new table's inline encryption "
              "capabilities are narrower than the live table's (it lacks "
              "%s); a device cannot shrink them while in use, as Linux "
              "refuses too; the live table is unchanged", dev->name,
              missing);
    r = -EINVAL;
    goto out_put;
  }

  pthread_mutex_lock (&md->table_lock);
  old = md->inactive;
  md->inactive = t;
  pthread_mutex_unlock (&md->table_lock);
  t = old;
out_put:
  if (deps_locked)
    pthread_mutex_unlock (&deps_lock);
  pthread_mutex_unlock (&md->load_lock);
  table_put (t);
  free (copy);
  return r;
}

/* dm suspend + swap + resume.  The swap waits for the requests on the old
 * table while new ones wait: targets that take state over from the old
 * table (a mirror's leg states, its resync progress) must see all of it,
 * and once a mirror starts copying to a new leg no write may still go
 * through the old table, which does not know that leg (it would be lost
 * there).  Requests are synchronous, so the wait is short.
 */
int
ic_stacked_resume (struct ic_device *dev)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct ic_table *t;
  struct ic_table *old;
  size_t i;

  if (!md) {
    ic_error ("%s: resume: not a stacked device", dev->name);
    return -EINVAL;
  }
  pthread_mutex_lock (&md->load_lock);
  pthread_mutex_lock (&md->table_lock);
  t = md->inactive;
  old = md->live;
  if (!t) {
    pthread_mutex_unlock (&md->table_lock);
    pthread_mutex_unlock (&md->load_lock);
    ic_error ("%s: resume: there is no inactive table to resume (load one "
              "first)", dev->name);
    return -EINVAL;
  }
  if (old) {
    /* Hold new requests; wait until ours is the last reference. */
    __atomic_store_n (&md->suspended, true, __ATOMIC_SEQ_CST);
    while (__atomic_load_n (&old->refs, __ATOMIC_SEQ_CST) > 1)
      pthread_cond_wait (&md->table_cond, &md->table_lock);
  }
  pthread_mutex_unlock (&md->table_lock);

  /* Stop the old targets' background work (a mirror's resync, which
   * would go on copying behind the new table's back) before the new
   * targets take over from them.
   */
  if (old)
    for (i = 0; i < old->ntargets; i++)
      if (old->targets[i].type->suspend)
        old->targets[i].type->suspend (&old->targets[i]);

  /* Targets taking over from the old target they lie in, if one does. */
  for (i = 0; i < t->ntargets; i++) {
    struct ic_target *ti = &t->targets[i];

    if (ti->type->resume)
      ti->type->resume (ti, old, find_prev (old, ti));
  }

  /* dm_update_crypto_profile: create the profile, or grow it.  The
   * profile object persists: it is published once.
   */
  if (t->has_profile) {
    ic_crypto_update_capabilities (&md->profile, &t->caps);
    if (!dev->profile)
      __atomic_store_n (&dev->profile, &md->profile, __ATOMIC_RELEASE);
  }
  if (!old)
    dev->size = t->size;

  pthread_mutex_lock (&md->table_lock);
  md->live = t;
  md->inactive = NULL;
  __atomic_store_n (&md->suspended, false, __ATOMIC_SEQ_CST);
  pthread_cond_broadcast (&md->table_cond);
  pthread_mutex_unlock (&md->table_lock);
  pthread_mutex_unlock (&md->load_lock);
  /* Only non-I/O users (status, eviction) may still hold the old table. */
  table_put (old);
  return 0;
}

int
ic_stacked_update_capabilities (struct ic_device *dev)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct ic_table *t;

  if (!md) {
    ic_error ("%s: update capabilities: not a stacked device", dev->name);
    return -EINVAL;
  }
  pthread_mutex_lock (&md->load_lock);
  t = md->live;                 /* only a resume changes it: load_lock */
  if (t) {
    construct_crypto_profile (t);
    if (t->has_profile) {
      ic_crypto_update_capabilities (&md->profile, &t->caps);
      __atomic_store_n (&dev->profile, &md->profile, __ATOMIC_RELEASE);
    }
    else
      __atomic_store_n (&dev->profile, NULL, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock (&md->load_lock);
  return 0;
}

int
ic_stacked_clear (struct ic_device *dev)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct ic_table *t;

  if (!md) {
    ic_error ("%s: clear: not a stacked device", dev->name);
    return -EINVAL;
  }
  pthread_mutex_lock (&md->load_lock);
  pthread_mutex_lock (&md->table_lock);
  t = md->inactive;
  md->inactive = NULL;
  pthread_mutex_unlock (&md->table_lock);
  pthread_mutex_unlock (&md->load_lock);
  table_put (t);
  return 0;
}

size_t
ic_stacked_table_text (struct ic_device *dev, bool inactive, char *buf,
                       size_t size)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct ic_table *t;
  size_t used = 0;
  size_t i;

  if (size)
    buf[0] = '\0';
  if (!md)
    return 0;
  pthread_mutex_lock (&md->table_lock);
  t = table_get (inactive ? md->inactive : md->live);
  pthread_mutex_unlock (&md->table_lock);
  for (i = 0; t && i < t->ntargets; i++) {
    struct ic_target *ti = &t->targets[i];
    char args[MAX_ARGS_TEXT];

    ti->type->table_args (ti, args, sizeof args);
    used += snprintf (TAIL (buf, used, size),
                      "%" PRIu64 " %" PRIu64 " %s %s\n", ti->begin >> 9,
                      ti->len >> 9, ti->type->name, args);
  }
  table_put (t);
  return used;
}

const char *
ic_leg_state_name (enum ic_leg_state state)
{
  switch (state) {
  case IC_LEG_ACTIVE: return "active";
  case IC_LEG_RESYNC: return "resync";
  case IC_LEG_FAILED: return "failed";
  }
  return "?";
}

/* The legs of @t's mirrors into @legs, up to @max; return how many. */
static size_t
table_leg_status (struct ic_table *t, struct ic_leg_status *legs, size_t max)
{
  size_t n = 0;
  size_t i;

  for (i = 0; t && i < t->ntargets; i++)
    if (t->targets[i].type->leg_status)
      n += t->targets[i].type->leg_status (&t->targets[i],
                                           n < max ? legs + n : NULL,
                                           n < max ? max - n : 0);
  return n;
}

size_t
ic_stacked_mirror_status (struct ic_device *dev, struct ic_leg_status *legs,
                          size_t max)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct ic_table *t = md ? get_live (md) : NULL;
  size_t n = table_leg_status (t, legs, max);

  table_put (t);
  return n;
}

struct ic_leg_status *
ic_stacked_mirror_status_all (struct ic_device *dev, size_t *np)
{
  struct ic_stacked *md = ic_device_to_stacked (dev);
  struct ic_table *t = md ? get_live (md) : NULL;
  size_t n = table_leg_status (t, NULL, 0);
  struct ic_leg_status *legs = calloc (n ? n : 1, sizeof *legs);

  *np = 0;
  if (legs)
    *np = table_leg_status (t, legs, n);  /* the same table: the same n */
  else {
    ic_error ("%s: mirror status: out of memory", dev->name);
    errno = ENOMEM;
  }
  table_put (t);
  return legs;
}

int
ic_stacked_wait_resync (struct ic_device *dev, unsigned int timeout_ms)
{
  struct timespec ts = { 0, 10 * 1000000 };
  unsigned int waited = 0;

  for (;;) {
    size_t n;
    struct ic_leg_status *legs = ic_stacked_mirror_status_all (dev, &n);
    bool syncing = false;
    size_t i;

    if (!legs)
      return -ENOMEM;
    for (i = 0; i < n; i++)
      syncing |= legs[i].state == IC_LEG_RESYNC;
    free (legs);
    if (!syncing)
      return 0;
    if (waited >= timeout_ms)
      return -ETIMEDOUT;
    nanosleep (&ts, NULL);
    waited += 10;
  }
}

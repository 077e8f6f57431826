/* stack/export.c - see export.h. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "export.h"

struct ic_ctx_map {
  size_t n;
  struct ic_ctx_range ranges[]; /* sorted by start, disjoint */
};

#define COUNT(field, n) __atomic_fetch_add (&(field), (n), __ATOMIC_RELAXED)

static struct ic_ctx_map *
map_alloc (size_t n)
{
  struct ic_ctx_map *map = calloc (1, sizeof *map + n * sizeof map->ranges[0]);

  if (map)
    map->n = n;
  return map;
}

/* The current map, for the duration of a request: map_lock held for
 * reading (map_put releases it).  Waits while a change of the map waits
 * for the requests on the old one.
 */
static struct ic_ctx_map *
map_get (struct ic_export *exp)
{
  ic_brlock_read_lock (&exp->map_lock);
  return exp->map;
}

static void
map_put (struct ic_export *exp)
{
  ic_brlock_read_unlock (&exp->map_lock);
}

/* The map's references on its keys (see ic_crypto_key.refs). */
static void
map_ref_keys (struct ic_ctx_map *map, int delta)
{
  size_t i;

  for (i = 0; i < map->n; i++)
    if (map->ranges[i].key)
      __atomic_add_fetch (&((struct ic_crypto_key *) map->ranges[i].key)
                          ->refs, delta, __ATOMIC_ACQ_REL);
}

static void
map_free (struct ic_ctx_map *map)
{
  if (map) {
    map_ref_keys (map, -1);
    free (map);
  }
}

struct ic_export *
ic_export_new (const char *name, struct ic_device *dev)
{
  struct ic_export *exp = NULL;

  /* Cache-line aligned: the per-shard counters are. */
  if (posix_memalign ((void **) &exp, 64, sizeof *exp) == 0)
    memset (exp, 0, sizeof *exp);
  else
    exp = NULL;
  if (!exp || !(exp->map = map_alloc (0))) {
    free (exp);
    ic_error ("%s: out of memory", name);
    errno = ENOMEM;
    return NULL;
  }
  snprintf (exp->name, sizeof exp->name, "%s", name);
  exp->dev = dev;
  exp->size = dev->size;
  pthread_mutex_init (&exp->update_lock, NULL);
  ic_brlock_init (&exp->map_lock);
  pthread_mutex_init (&exp->peek_lock, NULL);
  return exp;
}

void
ic_export_free (struct ic_export *exp)
{
  if (!exp)
    return;
  map_free (exp->map);
  pthread_mutex_destroy (&exp->update_lock);
  ic_brlock_destroy (&exp->map_lock);
  pthread_mutex_destroy (&exp->peek_lock);
  free (exp);
}

static int
cmp_range (const void *a, const void *b)
{
  const struct ic_ctx_range *ra = a;
  const struct ic_ctx_range *rb = b;

  return ra->start < rb->start ? -1 : ra->start > rb->start;
}

/* Check one range on its own. */
static int
check_range (const struct ic_export *exp, const char *what,
             const struct ic_ctx_range *r)
{
  const struct ic_crypto_key *key = r->key;
  uint64_t last[IC_CRYPTO_DUN_ARRAY_SIZE];
  unsigned int du;

  if (r->len == 0) {
    ic_error ("%s: range at %" PRIu64 " is empty", what, r->start);
    return -EINVAL;
  }
  if (r->start > exp->size || r->len > exp->size - r->start) {
    ic_error ("%s: range %" PRIu64 "+%" PRIu64 " goes past the end of "
              "export %s (%" PRIu64 " bytes)", what, r->start, r->len,
              exp->name, exp->size);
    return -EINVAL;
  }
  if (!key)
    return 0;
  du = key->crypto_cfg.data_unit_size;
  if (r->start % du || r->len % du) {
    ic_error ("%s: range %" PRIu64 "+%" PRIu64 " is not aligned to the "
              "%u-byte data units of key %s", what, r->start, r->len, du,
              key->name);
    return -EINVAL;
  }
  if (exp->size % du) {
    ic_error ("%s: key %s's %u-byte data units do not divide the size of "
              "export %s (%" PRIu64 " bytes): clients, told that minimum "
              "block size, could not reach its end", what, key->name, du,
              exp->name, exp->size);
    return -EINVAL;
  }
  /* blk_crypto_start_using_key(): a config the device cannot take
   * natively goes to the fallback, which never handles wrapped keys.
   * Refused here rather than by every request (EOPNOTSUPP, which NBD
   * clients see as EINVAL).
   */
  if (key->crypto_cfg.key_type == IC_CRYPTO_KEY_TYPE_HW_WRAPPED &&
      exp->dev && !ic_device_supports_natively (exp->dev, &key->crypto_cfg)) {
    ic_error ("%s: key %s is hardware-wrapped and device %s cannot take it "
              "natively (%s, %u-byte data units, %u DUN bytes); the "
              "fallback never handles wrapped keys", what, key->name,
              exp->dev->name, ic_crypto_mode_name (key->crypto_cfg.crypto_mode),
              du, key->crypto_cfg.dun_bytes);
    return -EOPNOTSUPP;
  }
  if (ic_crypt_dun_exceeds (r->dun_base, key->crypto_cfg.dun_bytes)) {
    ic_error ("%s: dun-base does not fit in the %u DUN bytes of key %s",
              what, key->crypto_cfg.dun_bytes, key->name);
    return -EINVAL;
  }
  /* The DUN of the last data unit must fit too; so must it not wrap
   * past 2^256 (only possible with 32 DUN bytes).
   */
  memcpy (last, r->dun_base, sizeof last);
  ic_crypt_dun_increment (last, r->len / du - 1);
  if (ic_crypt_dun_exceeds (last, key->crypto_cfg.dun_bytes) ||
      ic_crypt_dun_cmp (last, r->dun_base) < 0) {
    ic_error ("%s: range %" PRIu64 "+%" PRIu64 " needs DUNs up to "
              "dun-base + %" PRIu64 ", more than the %u DUN bytes of key %s "
              "hold (raise dun-bytes)", what, r->start, r->len,
              r->len / du - 1, key->crypto_cfg.dun_bytes, key->name);
    return -EINVAL;
  }
  return 0;
}

int
ic_export_check_ranges (const struct ic_export *exp, const char *what,
                        const struct ic_ctx_range *ranges, size_t n)
{
  struct ic_ctx_range *sorted;
  size_t i;
  int r;

  for (i = 0; i < n; i++) {
    r = check_range (exp, what, &ranges[i]);
    if (r < 0)
      return r;
  }
  if (n < 2)
    return 0;
  sorted = malloc (n * sizeof *sorted);
  if (!sorted)
    return -ENOMEM;
  memcpy (sorted, ranges, n * sizeof *sorted);
  qsort (sorted, n, sizeof *sorted, cmp_range);
  for (i = 1; i < n; i++)
    if (sorted[i].start < sorted[i - 1].start + sorted[i - 1].len) {
      ic_error ("%s: ranges %" PRIu64 "+%" PRIu64 " and %" PRIu64 "+%"
                PRIu64 " overlap", what, sorted[i - 1].start,
                sorted[i - 1].len, sorted[i].start, sorted[i].len);
      free (sorted);
      return -EINVAL;
    }
  free (sorted);
  return 0;
}

/* Install @map as the current map: wait for the requests on the old one
 * to finish (new ones wait meanwhile), then free it.
 *
 * Context: update_lock held.
 */
static void
map_install_locked (struct ic_export *exp, struct ic_ctx_map *map)
{
  struct ic_ctx_map *old;

  ic_brlock_write_lock (&exp->map_lock);
  pthread_mutex_lock (&exp->peek_lock);
  old = exp->map;
  exp->map = map;
  pthread_mutex_unlock (&exp->peek_lock);
  ic_brlock_write_unlock (&exp->map_lock);
  map_free (old);
}

static unsigned int
log2_floor (uint32_t v)
{
  return 31 - __builtin_clz (v);
}

/* Refuse data units of @du bytes if a connected client was told a
 * smaller minimum block size.  Context: update_lock held.
 */
static int
check_told_locked (struct ic_export *exp, unsigned int du)
{
  unsigned int i;

  for (i = 0; i < 32 && (1u << i) < du; i++)
    if (exp->told[i]) {
      ic_error ("%s: %u connected client(s) were told a minimum block size "
                "of %u bytes, which %u-byte data units would refuse "
                "requests aligned to; disconnect them first, or give the "
                "export block-size=%u", exp->name, exp->told[i], 1u << i,
                du, du);
      return -EBUSY;
    }
  return 0;
}

/* Context: update_lock held. */
static int
set_map_locked (struct ic_export *exp, const struct ic_ctx_range *ranges,
                size_t n)
{
  struct ic_ctx_map *map;
  size_t i;
  int r;

  r = ic_export_check_ranges (exp, exp->name, ranges, n);
  if (r < 0)
    return r;
  for (i = 0; i < n; i++)
    if (ranges[i].key &&
        (r = check_told_locked (exp, ranges[i].key->crypto_cfg
                                .data_unit_size)) < 0)
      return r;
  map = map_alloc (n);
  if (!map) {
    ic_error ("%s: set map: out of memory", exp->name);
    return -ENOMEM;
  }
  if (n) {
    memcpy (map->ranges, ranges, n * sizeof *ranges);
    qsort (map->ranges, n, sizeof *ranges, cmp_range);
  }
  map_ref_keys (map, 1);
  map_install_locked (exp, map);
  return 0;
}

int
ic_export_set_map (struct ic_export *exp, const struct ic_ctx_range *ranges,
                   size_t n)
{
  int r;

  pthread_mutex_lock (&exp->update_lock);
  r = set_map_locked (exp, ranges, n);
  pthread_mutex_unlock (&exp->update_lock);
  return r;
}

int
ic_export_map_range (struct ic_export *exp, uint64_t start, uint64_t len,
                     const struct ic_crypto_key *key,
                     const uint64_t dun_base[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  struct ic_ctx_range fresh = { .start = start, .len = len, .key = key };
  struct ic_ctx_range *out;
  struct ic_ctx_map *old;
  uint64_t end = start + len;
  size_t n = 0;
  size_t i;
  int r;

  if (dun_base)
    memcpy (fresh.dun_base, dun_base, sizeof fresh.dun_base);
  r = check_range (exp, exp->name, &fresh);
  if (r < 0)
    return r;

  /* Every old range minus [start, end): at most one more piece.  The map
   * stays the current one until ours replaces it: only changes, which
   * wait for update_lock, replace it.
   */
  pthread_mutex_lock (&exp->update_lock);
  old = exp->map;
  out = calloc (old->n + 2, sizeof *out);
  if (!out) {
    pthread_mutex_unlock (&exp->update_lock);
    return -ENOMEM;
  }
  for (i = 0; i < old->n; i++) {
    const struct ic_ctx_range *o = &old->ranges[i];
    uint64_t o_end = o->start + o->len;

    if (o_end <= start || o->start >= end) {
      out[n++] = *o;
      continue;
    }
    if (o->start < start) {
      out[n] = *o;
      out[n++].len = start - o->start;
    }
    if (o_end > end) {
      out[n] = *o;
      out[n].start = end;
      out[n].len = o_end - end;
      if (o->key)
        ic_crypt_dun_increment (out[n].dun_base,
                                (end - o->start) /
                                o->key->crypto_cfg.data_unit_size);
      n++;
    }
  }
  if (key)
    out[n++] = fresh;
  /* Cutting old ranges can misalign them when keys differ in data unit
   * size; the check says so.
   */
  r = set_map_locked (exp, out, n);
  pthread_mutex_unlock (&exp->update_lock);
  free (out);
  return r;
}

int
ic_export_get_map (struct ic_export *exp, struct ic_ctx_range **rangesp,
                   size_t *np)
{
  struct ic_ctx_map *map;
  int r = 0;

  pthread_mutex_lock (&exp->peek_lock);
  map = exp->map;
  *rangesp = malloc ((map->n ? map->n : 1) * sizeof **rangesp);
  if (!*rangesp)
    r = -ENOMEM;
  else {
    if (map->n)
      memcpy (*rangesp, map->ranges, map->n * sizeof **rangesp);
    *np = map->n;
  }
  pthread_mutex_unlock (&exp->peek_lock);
  return r;
}

bool
ic_export_uses_key (struct ic_export *exp, const struct ic_crypto_key *key)
{
  struct ic_ctx_map *map;
  bool used = false;
  size_t i;

  pthread_mutex_lock (&exp->peek_lock);
  map = exp->map;
  for (i = 0; i < map->n && !used; i++)
    used = map->ranges[i].key == key;
  pthread_mutex_unlock (&exp->peek_lock);
  return used;
}

unsigned int
ic_export_max_data_unit_size (struct ic_export *exp)
{
  struct ic_ctx_map *map = map_get (exp);
  unsigned int max = 0;
  size_t i;

  for (i = 0; i < map->n; i++)
    if (map->ranges[i].key &&
        map->ranges[i].key->crypto_cfg.data_unit_size > max)
      max = map->ranges[i].key->crypto_cfg.data_unit_size;
  map_put (exp);
  return max;
}

uint32_t
ic_export_tell_block_size (struct ic_export *exp, uint32_t dev_min)
{
  uint32_t min = exp->block_floor > dev_min ? exp->block_floor : dev_min;
  uint32_t du;

  /* Under update_lock, no map with larger data units comes between the
   * look at the map and the count.
   */
  pthread_mutex_lock (&exp->update_lock);
  du = ic_export_max_data_unit_size (exp);
  if (du > min)
    min = du;
  if (min == 0)
    min = 1;
  exp->told[log2_floor (min)]++;
  pthread_mutex_unlock (&exp->update_lock);
  return min;
}

void
ic_export_forget_block_size (struct ic_export *exp, uint32_t told)
{
  pthread_mutex_lock (&exp->update_lock);
  exp->told[log2_floor (told)]--;
  pthread_mutex_unlock (&exp->update_lock);
}

/* The piece of [offset, offset+len) that starts at @offset and lies in one
 * range or one gap: its length, and in *rangep the range (NULL: a gap).
 */
static uint64_t
next_piece (const struct ic_ctx_map *map, uint64_t offset, uint64_t len,
            const struct ic_ctx_range **rangep)
{
  size_t lo = 0;
  size_t hi = map->n;

  /* The first range ending after @offset. */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (map->ranges[mid].start + map->ranges[mid].len <= offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < map->n && map->ranges[lo].start <= offset) {
    uint64_t left = map->ranges[lo].start + map->ranges[lo].len - offset;

    *rangep = &map->ranges[lo];
    return left < len ? left : len;
  }
  *rangep = NULL;
  if (lo < map->n && map->ranges[lo].start - offset < len)
    return map->ranges[lo].start - offset;
  return len;
}

/* Make the bio of one piece. */
static void
piece_bio (struct ic_bio *bio, enum ic_bio_op op, unsigned int flags,
           void *buf, uint64_t offset, uint64_t len,
           const struct ic_ctx_range *range)
{
  memset (bio, 0, sizeof *bio);
  bio->op = op;
  bio->flags = flags;
  bio->offset = offset;
  bio->len = len;
  bio->buf = buf;
  if (range && range->key) {
    bio->crypt_ctx.key = range->key;
    memcpy (bio->crypt_ctx.dun, range->dun_base, sizeof bio->crypt_ctx.dun);
    ic_crypt_dun_increment (bio->crypt_ctx.dun,
                            (offset - range->start) >>
                            range->key->data_unit_size_bits);
  }
}

/* Split a request over the map, check every piece, then submit them in
 * order.  READ and WRITE pieces of a keyed range carry its context; the
 * others go down plain.
 */
static int
do_request (struct ic_export *exp, enum ic_bio_op op, unsigned int flags,
            void *buf, uint64_t len, uint64_t offset)
{
  struct ic_ctx_map *map;
  const struct ic_ctx_range *range;
  uint64_t o;
  uint64_t n;
  int r = 0;

  if (offset > exp->size || len > exp->size - offset) {
    ic_error ("%s: %s: %" PRIu64 " bytes at %" PRIu64 " go past the end of "
              "the export (%" PRIu64 " bytes)", exp->name,
              ic_bio_op_name (op), len, offset, exp->size);
    COUNT (exp->stats[ic_brlock_shard ()].s.errors, 1);
    return -EINVAL;
  }
  map = map_get (exp);

  /* Alignment first, so that a bad request changes nothing. */
  for (o = offset; o < offset + len; o += n) {
    n = next_piece (map, o, offset + len - o, &range);
    if (range && range->key) {
      unsigned int du = range->key->crypto_cfg.data_unit_size;

      if (o % du || n % du) {
        ic_error ("%s: %s: %" PRIu64 " bytes at %" PRIu64 " are not aligned "
                  "to the %u-byte data units of key %s", exp->name,
                  ic_bio_op_name (op), len, offset, du, range->key->name);
        r = -EINVAL;
        goto out;
      }
    }
  }

  for (o = offset; r == 0 && o < offset + len; o += n) {
    struct ic_bio bio;

    n = next_piece (map, o, offset + len - o, &range);
    piece_bio (&bio, op, flags, buf ? (char *) buf + (o - offset) : NULL, o,
               n, (op == IC_OP_READ || op == IC_OP_WRITE) ? range : NULL);
    r = ic_device_submit (exp->dev, &bio);
  }
out:
  map_put (exp);
  if (r < 0)
    COUNT (exp->stats[ic_brlock_shard ()].s.errors, 1);
  return r;
}

int
ic_export_pread (struct ic_export *exp, void *buf, uint64_t len,
                 uint64_t offset)
{
  int r = do_request (exp, IC_OP_READ, 0, buf, len, offset);

  if (r == 0) {
    COUNT (exp->stats[ic_brlock_shard ()].s.reads, 1);
    COUNT (exp->stats[ic_brlock_shard ()].s.bytes_read, len);
  }
  return r;
}

int
ic_export_pwrite (struct ic_export *exp, const void *buf, uint64_t len,
                  uint64_t offset, unsigned int flags)
{
  /* The buffer is only read: writes are encrypted into bounce buffers. */
  int r = do_request (exp, IC_OP_WRITE, flags & IC_BIO_FUA, (void *) buf,
                      len, offset);

  if (r == 0) {
    COUNT (exp->stats[ic_brlock_shard ()].s.writes, 1);
    COUNT (exp->stats[ic_brlock_shard ()].s.bytes_written, len);
  }
  return r;
}

int
ic_export_zero (struct ic_export *exp, uint64_t len, uint64_t offset,
                unsigned int flags)
{
  int r = do_request (exp, IC_OP_WRITE_ZEROES,
                      flags & (IC_BIO_FUA | IC_BIO_NOUNMAP), NULL, len,
                      offset);

  if (r == 0)
    COUNT (exp->stats[ic_brlock_shard ()].s.zeroes, 1);
  return r;
}

int
ic_export_trim (struct ic_export *exp, uint64_t len, uint64_t offset,
                unsigned int flags)
{
  /* TRIM must read back as zeros (see export.h): zero, allowing the
   * backend to deallocate.
   */
  int r = do_request (exp, IC_OP_WRITE_ZEROES, flags & IC_BIO_FUA, NULL,
                      len, offset);

  if (r == 0)
    COUNT (exp->stats[ic_brlock_shard ()].s.trims, 1);
  return r;
}

int
ic_export_flush (struct ic_export *exp)
{
  struct ic_bio bio = { .op = IC_OP_FLUSH };
  int r = ic_device_submit (exp->dev, &bio);

  if (r == 0)
    COUNT (exp->stats[ic_brlock_shard ()].s.flushes, 1);
  else
    COUNT (exp->stats[ic_brlock_shard ()].s.errors, 1);
  return r;
}

void
ic_export_read_stats (struct ic_export *exp, struct ic_export_stats *st,
                      bool reset)
{
  unsigned int i;

  memset (st, 0, sizeof *st);
  for (i = 0; i < IC_BRLOCK_SHARDS; i++) {
    struct ic_export_stats *sh = &exp->stats[i].s;

#define READ(field)                                                     \
    st->field += reset                                                  \
      ? __atomic_exchange_n (&sh->field, 0, __ATOMIC_RELAXED)           \
      : __atomic_load_n (&sh->field, __ATOMIC_RELAXED)
    READ (reads);
    READ (writes);
    READ (bytes_read);
    READ (bytes_written);
    READ (zeroes);
    READ (trims);
    READ (flushes);
    READ (errors);
#undef READ
  }
}

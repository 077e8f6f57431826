/* stack/table.h - stacked devices, their tables and targets: the
 * device-mapper of this project.  Follows Linux drivers/md/dm-table.c and
 * drivers/md/dm.c for inline encryption: a table's crypto profile is built
 * when it is loaded (dm_table_construct_crypto_profile), it must not be
 * narrower than the live one (else EINVAL and the live table stays), it is
 * applied when the table is resumed, growing the live profile object that
 * persists across tables (dm_update_crypto_profile), and an eviction from
 * the stacked device goes to every child of the live table
 * (dm_keyslot_evict).  Hardware-wrapped key operations (import, generate,
 * prepare, derive_sw_secret) go to the first child of the live table only
 * (dm_exec_wrappedkey_op, after its stable fix), when the device's
 * capabilities include hardware-wrapped keys.
 *
 * Tables are text in dmsetup's syntax, one target per line, sizes in
 * 512-byte sectors:
 *   <start> <length> linear <dev> <offset>
 *   <start> <length> striped <#stripes> <chunk_sectors> <dev> <offset>...
 *   <start> <length> mirror <#legs> <dev> <offset>...
 * Targets must cover the device from sector 0 without gaps or overlaps.
 *
 * linear, striped and mirror pass inline crypto through
 * (IC_TARGET_PASSES_CRYPTO); the remapped requests keep their DUN.
 * Upstream dm-raid1 does not pass crypto (hot-added legs would need the
 * same capabilities); here mirror does, and a narrower hot-added leg is
 * refused like any narrower table, unless the table has the option
 * per_child_fallback.
 *
 * Beyond upstream, table option per_child_fallback: the device advertises
 * the union of its children's capabilities, and a request landing on a
 * child that lacks its context is encrypted by the fallback at that
 * child's boundary only.  A child without a fallback (fallback_enabled
 * false) cannot do that: it contributes only its native capabilities, as
 * in an intersection, and wrapped keys, which the fallback never takes,
 * need native support on every child.
 *
 * Threading: requests run in parallel on the live table, each holding a
 * reference to it.  A resume swaps tables as dm does, suspended: new
 * requests wait (holding no lock) while those in flight finish on the old
 * table, then the old targets are suspended, the new ones resumed and the
 * new table goes live; so a target taking state over from the old table
 * (mirror legs) sees all of it, and no write goes through the old table
 * once the new one runs.  table_lock covers the live and inactive
 * pointers and is never held across I/O.  Load, resume and clear are
 * serialised by load_lock.
 */
#ifndef IC_TABLE_H
#define IC_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"

struct ic_table;
struct ic_target;
struct ic_stacked;

/* Target type features. */
#define IC_TARGET_PASSES_CRYPTO 0x1

/* Table options. */
#define IC_TABLE_PER_CHILD_FALLBACK 0x1

/* Mirror leg states, for status. */
enum ic_leg_state {
  IC_LEG_ACTIVE,                /* in sync, serves reads and writes */
  IC_LEG_RESYNC,                /* hot-added: takes writes, being copied */
  IC_LEG_FAILED,                /* failed I/O; takes nothing */
};

struct ic_leg_status {
  char device[64];
  uint64_t offset;              /* bytes */
  enum ic_leg_state state;
  uint64_t resync_done;         /* bytes copied so far (RESYNC) */
  uint64_t errors;
};

/* Finds devices by name for a table being loaded. */
typedef struct ic_device *(*ic_device_lookup_fn) (void *opaque,
                                                  const char *name);

/* Called for each child device of a target (iterate_devices). */
typedef int (*ic_iterate_devices_fn) (struct ic_target *ti,
                                      struct ic_device *dev,
                                      uint64_t start, uint64_t len,
                                      void *data);

struct ic_target_type {
  const char *name;
  unsigned int features;        /* IC_TARGET_* */
  /* Parse @argc arguments (after the type) for @ti; on failure set the
   * reason with ic_target_set_error() and return -errno.
   */
  int (*ctr) (struct ic_target *ti, int argc, char **argv,
              ic_device_lookup_fn lookup, void *opaque);
  void (*dtr) (struct ic_target *ti);
  /* Carry out @bio, whose offset is relative to the target's start and
   * which lies inside the target.  A write that fails after changing part
   * of its range sets bio->partial (ic_bio_part_failed() for the pieces
   * and clones it submits).  Return: 0 or -errno.
   */
  int (*map) (struct ic_target *ti, struct ic_bio *bio);
  /* Refuse (-EINVAL, reported) @bio, as map() would receive it, if a
   * boundary of the target or of a device below it would cut one of its
   * data units (ic_device_check_cuts() for the children).  Optional:
   * without it nothing is checked ahead (mirror: a leg that refuses a
   * write others took is failed, as for any write it cannot take).
   */
  int (*check_cuts) (struct ic_target *ti, const struct ic_bio *bio);
  /* Call @fn for each child; stop at the first non-zero result. */
  int (*iterate_devices) (struct ic_target *ti, ic_iterate_devices_fn fn,
                          void *data);
  /* The table line's arguments, normalised (for table show). */
  void (*table_args) (struct ic_target *ti, char *buf, size_t size);
  /* Called when the table goes live, with the table it replaces (@old,
   * NULL for the device's first table) and the target of @old that the
   * new one lies in, the same or larger (@prev, or NULL).  @old's
   * targets are suspended and no request runs on @old any more (mirror:
   * take the legs' states over, start a resync).  Optional.
   */
  void (*resume) (struct ic_target *ti, struct ic_table *old,
                  struct ic_target *prev);
  /* Called when the table stops being live.  Optional. */
  void (*suspend) (struct ic_target *ti);
  /* Called when the table is loaded, with the live table (@live) and the
   * target of it that the new one lies in (@prev, or NULL), as resume()
   * will be: refuse (-EINVAL, with ic_error()) a table that would lose
   * data the live table holds (mirror: no leg listed is in sync, while
   * the mirror it replaces has one).  Optional.
   */
  int (*check_reload) (struct ic_target *ti, struct ic_table *live,
                       struct ic_target *prev);
  /* True if the target's bytes [@offset, @offset+@len) are stored one for
   * one on @dev from @dev_offset and read from there, so that what @dev
   * holds there is the target's data (linear; striped within one stripe;
   * mirror on a leg in sync there).  Asked of a suspended table only (see
   * ic_table_holds()).  Optional: without it, false.
   */
  bool (*holds) (struct ic_target *ti, uint64_t offset, uint64_t len,
                 struct ic_device *dev, uint64_t dev_offset);
  /* Mirror legs: fill up to @max of @legs; return how many there are.
   * Optional.
   */
  size_t (*leg_status) (struct ic_target *ti, struct ic_leg_status *legs,
                        size_t max);
};

struct ic_target {
  /* public: */
  const struct ic_target_type *type;
  struct ic_table *table;
  uint64_t begin;               /* bytes */
  uint64_t len;                 /* bytes */
  void *private;
  /* private: */
  char error[256];              /* ic_target_set_error() */
  unsigned int lineno;          /* of the table, for messages */
};

/* Set the reason a constructor fails; the table loader reports it with
 * the table's file and line.
 */
void ic_target_set_error (struct ic_target *ti, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* The stacked device a target belongs to (for messages). */
const char *ic_target_device_name (const struct ic_target *ti);

/* Parse a number of 512-byte sectors into bytes; false if not a number or
 * too large.
 */
bool ic_parse_sectors (const char *str, uint64_t *bytes);

/* Look a child device up for a target and check that [@offset,
 * @offset+@len) lies inside it; on failure set ti->error.
 */
struct ic_device *ic_target_get_device (struct ic_target *ti,
                                        const char *name,
                                        const char *offset_str,
                                        uint64_t len,
                                        ic_device_lookup_fn lookup,
                                        void *opaque, uint64_t *offset);

/* True if @dev from @dev_offset holds the data of bytes [@begin,
 * @begin+@len) of table @t: every target of @t over that range says so
 * (its holds()), for the piece that falls on it.  A mirror taking over
 * from @t uses it to tell which legs are in sync.
 *
 * Context: @t is suspended (no request runs on it), as in resume().
 */
bool ic_table_holds (struct ic_table *t, uint64_t begin, uint64_t len,
                     struct ic_device *dev, uint64_t dev_offset);

/* The target types. */
extern const struct ic_target_type ic_linear_target;
extern const struct ic_target_type ic_striped_target;
extern const struct ic_target_type ic_mirror_target;

/* Make @type known to the table loader besides the built-in types
 * (dm_register_target), e.g. a test's target that does not pass crypto.
 * @type must stay valid until unregistered.
 *
 * Context: takes types_lock.
 * Return: 0, -EEXIST if a type of that name is known, or -ENOSPC if
 * IC_MAX_TARGET_TYPES extra types are registered.
 */
#define IC_MAX_TARGET_TYPES 16
int ic_target_register (const struct ic_target_type *type);

/* Forget a type registered with ic_target_register()
 * (dm_unregister_target).  No table may still use it.  An unknown @type
 * is ignored.
 *
 * Context: takes types_lock.
 */
void ic_target_unregister (const struct ic_target_type *type);

/* Make a stacked device with no table (size 0).
 *
 * Return: the device, or NULL with errno = ENOMEM.
 */
struct ic_device *ic_stacked_new (const char *name);

/* The stacked device of @dev, or NULL if it is not one. */
struct ic_stacked *ic_device_to_stacked (struct ic_device *dev);


/* Parse and verify a table for @dev and keep it as the inactive table
 * (dm_table_load + dm_table_complete).  @text holds target lines; blank
 * lines and # comments are skipped.  @options is a mask of IC_TABLE_*.
 * @source and @first_line place messages ("ic.conf:12: ..."); @source
 * NULL gives "<dev>: table line N: ...".  Checks: syntax, known target
 * types and devices, no gaps or overlaps, targets inside their children,
 * no cycles (a child that is @dev or stacks on it), the same size as the
 * live table, and capabilities no narrower than the live ones.
 *
 * Context: takes load_lock; never waits for I/O.
 * Return: 0, or -errno with the reason in ic_last_error(); the live
 * table is untouched either way, and an older inactive table is kept on
 * failure.
 */
int ic_stacked_load (struct ic_device *dev, const char *text,
                     unsigned int options, const char *source,
                     unsigned int first_line,
                     ic_device_lookup_fn lookup, void *opaque);

/* Swap the inactive table in (dm suspend + resume): new requests wait
 * until requests in flight have finished on the old table, then use the
 * new one.  The old targets are suspended before the new ones are resumed
 * (a mirror's resync moves from one to the other).  The device's profile
 * is created or grown to the new table's capabilities.
 *
 * Context: takes load_lock; waits for the requests in flight.
 * Return: 0, or -EINVAL if there is no inactive table.
 */
int ic_stacked_resume (struct ic_device *dev);

/* Drop the inactive table (dmsetup clear). */
int ic_stacked_clear (struct ic_device *dev);

/* Work the live table's capabilities out again after the children's
 * fallback_enabled changed: the configuration's "fallback enabled=false"
 * turns every device's fallback off once the whole file is read, after
 * the devices above were built.  Unlike a load, this may narrow the
 * profile (or drop it), so it is only for a device that serves no I/O
 * yet.  Call it on children before their parents.
 *
 * Context: takes load_lock.
 * Return: 0, or -EINVAL if @dev is not a stacked device.
 */
int ic_stacked_update_capabilities (struct ic_device *dev);

/* Write the live (@inactive false) or inactive table as text into @buf;
 * "" if none.  Return: the length needed (as snprintf).
 */
size_t ic_stacked_table_text (struct ic_device *dev, bool inactive,
                              char *buf, size_t size);

/* Call @fn for every child of every target of the live table. */
int ic_stacked_iterate_devices (struct ic_device *dev,
                                ic_iterate_devices_fn fn, void *data);

/* True if @dev is @ancestor or stacks (live or inactive table) on it. */
bool ic_device_depends_on (struct ic_device *dev, struct ic_device *ancestor);

/* The table options of the live table (IC_TABLE_*). */
unsigned int ic_stacked_options (struct ic_device *dev);

/* Status of the mirror legs of the live table, target by target: up to
 * @max legs into @legs.
 *
 * Return: the number of legs (which may exceed @max).
 */
size_t ic_stacked_mirror_status (struct ic_device *dev,
                                 struct ic_leg_status *legs, size_t max);

/* The same for every leg, however many: a malloc'd array of *@np legs
 * (free() it), taken from one live table.
 *
 * Return: the array, or NULL (ENOMEM) with *@np 0.
 */
struct ic_leg_status *ic_stacked_mirror_status_all (struct ic_device *dev,
                                                    size_t *np);

/* Wait until no mirror leg of the live table is resynchronising, or
 * @timeout_ms passes.  Return: 0, or -ETIMEDOUT.
 */
int ic_stacked_wait_resync (struct ic_device *dev, unsigned int timeout_ms);

/* The name of a leg state ("active", "resync", "failed"). */
const char *ic_leg_state_name (enum ic_leg_state state);

#endif /* IC_TABLE_H */

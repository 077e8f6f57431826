/* stack/target-mirror.c - the mirror target: the same data on every leg.
 *
 *   <start> <length> mirror <#legs> <dev> <offset>...
 *
 * Writes (and WRITE_ZEROES, TRIM) go to every leg that has not failed,
 * the in-sync (active) legs first, and complete when all did; reads go to
 * one active leg, taken in turn.  A leg whose I/O fails is marked failed
 * and reported; the mirror goes on with the others, and a request fails
 * only when no active leg could serve it.  EINVAL, EOPNOTSUPP and ENOMEM
 * say nothing about a leg's health and are passed up without failing it,
 * as long as nothing changed: no other active leg took the write, and the
 * leg itself did not fail part-way (a striped or multi-target leg whose
 * first pieces went through, a leaf whose backend failed while writing;
 * struct ic_bio's partial).  Otherwise the leg no longer holds the same
 * data as the others and is failed like any other, so reads never
 * alternate between old and new.  A resynchronising leg gets a write only
 * once an active leg took it, so that it never decides an active leg's
 * fate.
 *
 * Beyond upstream: Linux dm-raid1 does not pass inline crypto through
 * (DM_TARGET_PASSES_CRYPTO), because a hot-added leg would need the same
 * capabilities.  Here it does: each leg's own engine (or the fallback at
 * the leg, with per_child_fallback) encrypts its copy, so the ciphertext
 * on every leg is the same, and a narrower leg added by a table reload is
 * refused by the superset rule unless per_child_fallback is on (and the
 * leg has a fallback of its own).
 *
 * Hot-add: when a table goes live, a leg is taken as in sync only when it
 * is known to hold the data (see mirror_resume): it was in sync at the
 * same place in an old mirror, or the old table mapped the whole range
 * straight onto it (linear targets onto its device at its offset).  Any
 * other leg starts in resync: it takes writes at once, and a background
 * thread copies the data (raw ciphertext, no crypto) from an in-sync leg
 * region by region before it serves reads.  A leg that was
 * resynchronising at the same place carries on where it stopped.  If no
 * leg is known to hold the data, the source is the leg that failed last
 * while in sync, or, when none did, the first leg, as dm-raid1 without
 * nosync.  In a device's first table every leg is taken as in sync
 * (nosync).
 *
 * Threading: legs' states and counters are atomics.  mirror->lock covers
 * the list of in-flight writes and the region the resync is copying; it is
 * held only to register, never across I/O.  A write that overlaps the
 * region being copied waits for that copy (one region, REGION bytes), and
 * the copy of a region waits for the writes already inside it, so the copy
 * never puts back older data over a newer write.  A write that overlaps
 * another in flight waits for it, so that every leg gets overlapping
 * writes in the same order.  A leg turns in sync only while no write is
 * in flight (end_resync).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"
#include "error.h"
#include "table.h"

#define MAX_LEGS 9              /* as dm-raid1's MAX_NR_MIRRORS */
#define REGION (1024 * 1024)

struct leg {
  struct ic_device *dev;
  uint64_t start;               /* bytes into dev */
  int state;                    /* enum ic_leg_state; atomic */
  uint64_t resync_done;         /* bytes; atomic */
  uint64_t errors;              /* atomic */
  /* When the leg failed while in sync (failure_seq), 0 if it did not or
   * is not failed: the leg failed last held every write acknowledged
   * before it failed.  Read by the resume of the next table.  atomic
   */
  uint64_t failed_seq;
};

/* Orders the failures of in-sync legs, across mirrors and tables.  atomic */
static uint64_t failure_seq;

/* A write in flight, on its submitter's stack. */
struct inflight {
  uint64_t start;
  uint64_t end;
  struct inflight *next;
};

struct mirror {
  unsigned int n;
  unsigned int read_next;       /* atomic: round robin */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct inflight *writes;      /* protected by lock */
  uint64_t busy_start;          /* protected by lock: region being copied */
  uint64_t busy_end;            /* protected by lock; == start: none */
  pthread_t resync_thread;
  bool resync_running;          /* only touched by resume/suspend */
  bool stop;                    /* atomic */
  struct leg legs[];
};

static enum ic_leg_state
leg_state (const struct leg *leg)
{
  return __atomic_load_n (&leg->state, __ATOMIC_ACQUIRE);
}

static void
set_leg_state (struct leg *leg, enum ic_leg_state state)
{
  __atomic_store_n (&leg->state, state, __ATOMIC_RELEASE);
}

/* Errors that condemn a leg, as opposed to the request. */
static bool
is_leg_error (int r)
{
  return r < 0 && r != -EINVAL && r != -EOPNOTSUPP && r != -ENOMEM;
}

/* Mark @leg failed.  An in-sync leg gets the next failure number: which
 * in-sync leg failed last decides the source when every leg has failed
 * (mirror_resume); a leg that fails while resynchronising gets none.  The
 * state is set whatever it became meanwhile: the end of a resync at the
 * same time does not undo the failure.
 */
static void
fail_leg (struct ic_target *ti, struct leg *leg, int r, const char *op)
{
  int state = leg_state (leg);

  __atomic_fetch_add (&leg->errors, 1, __ATOMIC_RELAXED);
  while (state != IC_LEG_FAILED &&
         !__atomic_compare_exchange_n (&leg->state, &state, IC_LEG_FAILED,
                                       false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE))
    ;                           /* state is the new one: again */
  if (state == IC_LEG_FAILED)
    return;                     /* failed already */
  if (state == IC_LEG_ACTIVE)
    __atomic_store_n (&leg->failed_seq,
                      __atomic_add_fetch (&failure_seq, 1, __ATOMIC_RELAXED),
                      __ATOMIC_RELAXED);
  ic_error ("%s: mirror leg %s failed on %s (%s); the mirror goes on with "
            "the other legs", ic_target_device_name (ti), leg->dev->name, op,
            ic_strerror (-r));
}

static int
mirror_ctr (struct ic_target *ti, int argc, char **argv,
            ic_device_lookup_fn lookup, void *opaque)
{
  struct mirror *mc;
  char *end;
  unsigned long n;
  unsigned int i;
  unsigned int j;

  if (argc < 1) {
    ic_target_set_error (ti, "expected <#legs> <dev> <offset>...");
    return -EINVAL;
  }
  n = strtoul (argv[0], &end, 10);
  if (*end || n < 1 || n > MAX_LEGS) {
    ic_target_set_error (ti, "number of legs '%s' must be 1 to %d", argv[0],
                         MAX_LEGS);
    return -EINVAL;
  }
  if ((unsigned long) argc != 1 + 2 * n) {
    ic_target_set_error (ti, "%lu legs need %lu <dev> <offset> pairs, got "
                         "%d arguments after the number of legs", n, n,
                         argc - 1);
    return -EINVAL;
  }
  mc = calloc (1, sizeof *mc + n * sizeof mc->legs[0]);
  if (!mc) {
    ic_target_set_error (ti, "out of memory");
    return -ENOMEM;
  }
  mc->n = n;
  for (i = 0; i < n; i++) {
    struct leg *leg = &mc->legs[i];

    leg->dev = ic_target_get_device (ti, argv[1 + 2 * i], argv[2 + 2 * i],
                                     ti->len, lookup, opaque, &leg->start);
    if (!leg->dev)
      goto out_free;
    for (j = 0; j < i; j++)
      if (mc->legs[j].dev == leg->dev && mc->legs[j].start == leg->start) {
        ic_target_set_error (ti, "leg %s %s is given twice", argv[1 + 2 * i],
                             argv[2 + 2 * i]);
        goto out_free;
      }
    leg->state = IC_LEG_ACTIVE;
  }
  pthread_mutex_init (&mc->lock, NULL);
  pthread_cond_init (&mc->cond, NULL);
  ti->private = mc;
  return 0;

out_free:
  free (mc);
  return -EINVAL;
}

static void mirror_suspend (struct ic_target *ti);

static void
mirror_dtr (struct ic_target *ti)
{
  struct mirror *mc = ti->private;

  mirror_suspend (ti);
  pthread_mutex_destroy (&mc->lock);
  pthread_cond_destroy (&mc->cond);
  free (mc);
}

static struct ic_bio
leg_bio (const struct ic_bio *bio, const struct leg *leg)
{
  struct ic_bio clone = *bio;   /* bio_crypt_clone: same key, same DUN */

  if (bio->op != IC_OP_FLUSH)
    clone.offset += leg->start;
  return clone;
}

static bool
overlaps_write (const struct mirror *mc, const struct inflight *me)
{
  const struct inflight *w;

  for (w = mc->writes; w; w = w->next)
    if (w->start < me->end && me->start < w->end)
      return true;
  return false;
}

/* A write waits for the region being copied, and for the writes in
 * flight it overlaps: the legs are written one after the other, so two
 * overlapping writes at once could reach them in opposite orders and
 * leave them different for good, the reads alternating.  (dm-raid1
 * leaves that to the layers above; an NBD client may send both.)
 */
static void
register_write (struct mirror *mc, struct inflight *me)
{
  pthread_mutex_lock (&mc->lock);
  while ((me->start < mc->busy_end && mc->busy_start < me->end) ||
         overlaps_write (mc, me))
    pthread_cond_wait (&mc->cond, &mc->lock);
  me->next = mc->writes;
  mc->writes = me;
  pthread_mutex_unlock (&mc->lock);
}

static void
unregister_write (struct mirror *mc, struct inflight *me)
{
  struct inflight **pp;

  pthread_mutex_lock (&mc->lock);
  for (pp = &mc->writes; *pp != me; pp = &(*pp)->next)
    ;
  *pp = me->next;
  /* The resync, or an overlapping write, may wait for this one. */
  pthread_cond_broadcast (&mc->cond);
  pthread_mutex_unlock (&mc->lock);
}

/* Write @bio to @leg.  Return: as ic_device_submit(), with *partialp set
 * if the leg failed part-way.
 */
static int
write_leg (struct leg *leg, const struct ic_bio *bio, bool *partialp)
{
  struct ic_bio clone = leg_bio (bio, leg);
  int r = ic_device_submit (leg->dev, &clone);

  *partialp = clone.partial;
  return r;
}

/* Every leg that has not failed; success if an in-sync leg succeeded.
 * The in-sync (active) legs are written first, then the resynchronising
 * ones, and those only once an in-sync leg took the write: a leg that is
 * still being copied holds nothing the mirror can lean on, so a write it
 * alone took must not condemn an in-sync leg, and a write no in-sync leg
 * took is not written to it either (the copy will bring it the data the
 * in-sync legs hold).  Linux dm-raid1 likewise serves nothing from a leg
 * being recovered and keeps its default mirror on a leg in sync.
 *
 * A leg whose write fails is failed, as dm-raid1 fails a leg on any write
 * error, except for an error that says nothing about its health
 * (is_leg_error) when nothing changed anywhere: no in-sync leg took the
 * write and the leg did not fail part-way (a stacked leg, say striped,
 * whose first chunk went through; bio->partial).  Then the request fails
 * as it is and no leg is failed.  Once an in-sync leg took it, every leg
 * that did not is failed, resynchronising or not.
 */
static int
write_all (struct ic_target *ti, struct mirror *mc, struct ic_bio *bio)
{
  enum ic_leg_state states[MAX_LEGS];
  unsigned int took = 0;        /* bit i: leg i took the write in pass 1 */
  bool changed = false;
  int first_err = 0;
  unsigned int i;

  /* One snapshot: a leg whose resync ends meanwhile is written once. */
  for (i = 0; i < mc->n; i++)
    states[i] = leg_state (&mc->legs[i]);

  for (i = 0; i < mc->n; i++) {
    struct leg *leg = &mc->legs[i];
    bool partial;
    int r;

    /* The snapshot says which pass a leg is in; whether another request
     * failed it since is asked now.
     */
    if (states[i] != IC_LEG_ACTIVE || leg_state (leg) == IC_LEG_FAILED)
      continue;
    r = write_leg (leg, bio, &partial);
    if (r < 0 && !is_leg_error (r) && !partial && !took)
      return r;                 /* no leg changed: nothing diverged */
    if (r < 0) {
      fail_leg (ti, leg, r, ic_bio_op_name (bio->op));
      changed |= partial;
      if (!first_err)
        first_err = r;
      continue;
    }
    took |= 1u << i;
  }
  /* Acknowledged only if a leg that took the write is in sync now, once
   * every in-sync leg that did not take it has been failed.  The leg
   * that fails last is the one a later resync trusts (mirror_resume),
   * and it must hold every write the mirror acknowledged: a leg that
   * fails from now on fails after those, and a resynchronising leg gets
   * no failure number (it turns in sync only once no write that found it
   * resynchronising is in flight; see end_resync).  Another request may
   * have failed the legs that took it since, and a leg that failed after
   * them, without the write, would be trusted.
   */
  for (i = 0; i < mc->n; i++)
    if ((took >> i & 1) && leg_state (&mc->legs[i]) == IC_LEG_ACTIVE)
      break;
  if (i == mc->n) {
    /* The resynchronising legs keep what the in-sync legs held; a leg
     * that failed part-way, or took the write and was failed since, is
     * out.  Pass its tearing up.
     */
    if ((changed || took) && ic_bio_op_is_write (bio->op))
      bio->partial = true;
    if (!first_err)
      ic_error ("%s: mirror: %s: no active leg left",
                ic_target_device_name (ti), ic_bio_op_name (bio->op));
    return first_err ? first_err : -EIO;
  }

  for (i = 0; i < mc->n; i++) {
    struct leg *leg = &mc->legs[i];
    bool partial;
    int r;

    if (states[i] != IC_LEG_RESYNC || leg_state (leg) == IC_LEG_FAILED)
      continue;
    r = write_leg (leg, bio, &partial);
    if (r < 0)
      fail_leg (ti, leg, r, ic_bio_op_name (bio->op));
  }
  return 0;
}

/* One active leg, taken in turn; a leg whose read fails is failed and the
 * next one tried.  A leg that refuses the read with an error that says
 * nothing about its health (is_leg_error: a context it cannot take, no
 * keyslot) is not failed, but the next leg is tried too: another leg may
 * well take it.
 *
 * Return: 0, the refusal if no leg took the read, or the last leg error.
 */
static int
read_one (struct ic_target *ti, struct mirror *mc, struct ic_bio *bio)
{
  unsigned int first = __atomic_fetch_add (&mc->read_next, 1,
                                           __ATOMIC_RELAXED);
  int refused = 0;
  int last_err = 0;
  unsigned int i;

  for (i = 0; i < mc->n; i++) {
    struct leg *leg = &mc->legs[(first + i) % mc->n];
    struct ic_bio clone;
    int r;

    if (leg_state (leg) != IC_LEG_ACTIVE)
      continue;
    clone = leg_bio (bio, leg);
    r = ic_device_submit (leg->dev, &clone);
    if (r == 0)
      return 0;
    if (!is_leg_error (r)) {
      if (!refused)
        refused = r;
      continue;
    }
    fail_leg (ti, leg, r, "read");
    last_err = r;
  }
  if (refused)
    return refused;
  if (!last_err)
    ic_error ("%s: mirror: read: no active leg left",
              ic_target_device_name (ti));
  return last_err ? last_err : -EIO;
}

static int
mirror_map (struct ic_target *ti, struct ic_bio *bio)
{
  struct mirror *mc = ti->private;
  struct inflight me;
  int r;

  switch (bio->op) {
  case IC_OP_READ:
    return read_one (ti, mc, bio);
  case IC_OP_FLUSH:
    return write_all (ti, mc, bio);
  default:
    me.start = bio->offset;
    me.end = bio->offset + bio->len;
    register_write (mc, &me);
    /* Overlapping writes wait for this one, maybe holding bounce buffers
     * (a device's fallback above): its own bounce buffers must not wait
     * for theirs.
     */
    ic_bounce_nowait_begin ();
    r = write_all (ti, mc, bio);
    ic_bounce_nowait_end ();
    unregister_write (mc, &me);
    return r;
  }
}

/* Copy [pos, pos+len) raw from an active leg to @dst.
 *
 * Return: 0, or -errno (a failed leg is marked).
 */
static int
copy_region (struct ic_target *ti, struct mirror *mc, struct leg *dst,
             uint64_t pos, uint64_t len, void *buf)
{
  struct ic_bio bio = { .op = IC_OP_READ, .offset = pos, .len = len,
                        .buf = buf };
  struct ic_bio clone;
  int r;

  r = read_one (ti, mc, &bio);
  if (r < 0)
    return r;
  bio.op = IC_OP_WRITE;
  clone = leg_bio (&bio, dst);
  r = ic_device_submit (dst->dev, &clone);
  if (r < 0)
    fail_leg (ti, dst, r, "resync write");
  return r;
}

static bool
overlaps_writes (struct mirror *mc)
{
  struct inflight *w;

  for (w = mc->writes; w; w = w->next)
    if (w->start < mc->busy_end && mc->busy_start < w->end)
      return true;
  return false;
}

/* Turn @leg in sync once no write in flight took it as resynchronising
 * (false if a write failed it meanwhile): new writes wait meanwhile (the
 * whole target is the busy region), for an instant at the end of each
 * resync.  A write that found the leg
 * resynchronising writes it after the in-sync legs and may fail it; were
 * the leg in sync by then, it would get a failure number without holding
 * the write (fail_leg), or the write's check of its in-sync legs
 * (write_all) would not cover it.
 */
static bool
end_resync (struct ic_target *ti, struct mirror *mc, struct leg *leg)
{
  int state = IC_LEG_RESYNC;
  bool in_sync;

  pthread_mutex_lock (&mc->lock);
  mc->busy_start = 0;
  mc->busy_end = ti->len;
  while (overlaps_writes (mc))
    pthread_cond_wait (&mc->cond, &mc->lock);
  /* A write that failed the leg meanwhile keeps it failed. */
  in_sync = __atomic_compare_exchange_n (&leg->state, &state, IC_LEG_ACTIVE,
                                         false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE);
  mc->busy_start = mc->busy_end = 0;
  pthread_cond_broadcast (&mc->cond);
  pthread_mutex_unlock (&mc->lock);
  return in_sync;
}

static void *
resync_thread (void *arg)
{
  struct ic_target *ti = arg;
  struct mirror *mc = ti->private;
  void *buf = malloc (REGION);
  unsigned int i;

  if (!buf) {
    ic_error ("%s: mirror resync: out of memory", ic_target_device_name (ti));
    return NULL;
  }
  for (i = 0; i < mc->n && !__atomic_load_n (&mc->stop, __ATOMIC_ACQUIRE);
       i++) {
    struct leg *leg = &mc->legs[i];
    uint64_t pos = __atomic_load_n (&leg->resync_done, __ATOMIC_RELAXED);
    int r = 0;

    if (leg_state (leg) != IC_LEG_RESYNC)
      continue;
    ic_debug ("%s: mirror: resynchronising leg %s from %" PRIu64,
              ic_target_device_name (ti), leg->dev->name, pos);
    while (r == 0 && pos < ti->len &&
           !__atomic_load_n (&mc->stop, __ATOMIC_ACQUIRE)) {
      uint64_t n = ti->len - pos < REGION ? ti->len - pos : REGION;

      pthread_mutex_lock (&mc->lock);
      mc->busy_start = pos;
      mc->busy_end = pos + n;
      while (overlaps_writes (mc))
        pthread_cond_wait (&mc->cond, &mc->lock);
      pthread_mutex_unlock (&mc->lock);

      r = copy_region (ti, mc, leg, pos, n, buf);

      pthread_mutex_lock (&mc->lock);
      mc->busy_start = mc->busy_end = 0;
      pthread_cond_broadcast (&mc->cond);
      pthread_mutex_unlock (&mc->lock);
      if (r == 0) {
        pos += n;
        __atomic_store_n (&leg->resync_done, pos, __ATOMIC_RELAXED);
      }
    }
    if (r == 0 && pos == ti->len) {
      /* What was copied is durable before the leg counts as holding it
       * (a later reload trusts an in-sync leg; dm-raid1 flushes too).
       */
      struct ic_bio flush = { .op = IC_OP_FLUSH };

      r = ic_device_submit (leg->dev, &flush);
    }
    if (r == 0 && pos == ti->len) {
      if (end_resync (ti, mc, leg))
        ic_debug ("%s: mirror: leg %s is in sync",
                  ic_target_device_name (ti), leg->dev->name);
    }
    else if (r < 0) {
      /* No in-sync leg to copy from (or the new leg itself failed): the
       * leg cannot be brought in sync, so it is failed rather than left
       * resynchronising for ever; re-adding it by a reload starts over.
       */
      int state = IC_LEG_RESYNC;

      __atomic_compare_exchange_n (&leg->state, &state, IC_LEG_FAILED, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
      ic_error ("%s: mirror: resync of leg %s stopped at %" PRIu64 " bytes "
                "(%s); the leg is failed", ic_target_device_name (ti),
                leg->dev->name, pos, ic_strerror (-r));
    }
  }
  free (buf);
  return NULL;
}

static const struct leg *
find_leg (const struct mirror *mc, const struct ic_device *dev,
          uint64_t start)
{
  unsigned int i;

  for (i = 0; mc && i < mc->n; i++)
    if (mc->legs[i].dev == dev && mc->legs[i].start == start)
      return &mc->legs[i];
  return NULL;
}

/* A leg holds the mirror's data where it is in sync: all of it when
 * active, what the resync has copied when resynchronising (every write
 * since reached it too).
 */
static bool
mirror_holds (struct ic_target *ti, uint64_t offset, uint64_t len,
              struct ic_device *dev, uint64_t dev_offset)
{
  struct mirror *mc = ti->private;
  const struct leg *leg;

  if (dev_offset < offset)
    return false;
  leg = find_leg (mc, dev, dev_offset - offset);
  if (!leg)
    return false;
  switch (leg_state (leg)) {
  case IC_LEG_ACTIVE:
    return true;
  case IC_LEG_RESYNC:
    return offset + len <= __atomic_load_n (&leg->resync_done,
                                            __ATOMIC_RELAXED);
  default:
    return false;
  }
}

/* Which legs hold the data when the table goes live.  dm-raid1 keeps a
 * region log for this; we know what the table being replaced held where:
 * - the device's first table: every leg, as with dm-raid1's nosync (the
 *   legs are created alike);
 * - a mirror at the same place before, or one this mirror is a part of
 *   (a split): a leg keeps its state (active, or resync with its
 *   progress); a leg that had failed starts over, and keeps when it
 *   failed if it was in sync then (failed_seq);
 * - otherwise a leg is in sync only if the old table held the whole range
 *   on it, straight (ic_table_holds: one or more linear targets onto its
 *   device at the matching offsets, mirrors on which it was in sync
 *   there); the other legs resynchronise from an in-sync one;
 * - no leg known to hold the data, because every leg failed: the leg
 *   that failed last while in sync is the source, as dm-raid1 moves its
 *   default mirror to a leg still in sync when the default fails; that
 *   leg holds every write acknowledged before it failed, and after that
 *   no write was acknowledged (write_all writes no leg being copied
 *   without an in-sync one).  A leg that failed while being copied holds
 *   part of the data and is never the source over one that was in sync;
 * - no leg known to hold the data and none failed in sync (a new layout
 *   over the legs' devices): as dm-raid1 without nosync, the first leg
 *   (the default mirror) is the source.
 * Every other leg is then copied from the source from the start.
 */
static void
mirror_resume (struct ic_target *ti, struct ic_table *old,
               struct ic_target *prev)
{
  struct mirror *mc = ti->private;
  const struct mirror *prev_mc = NULL;
  struct leg *source = &mc->legs[0];
  uint64_t shift = 0;
  bool in_sync = false;
  bool syncing = false;
  /* What is said here are warnings of a resume that succeeds (it cannot
   * fail): the control server captures the errors of a command for its
   * reply and drops them when the command succeeds, so they would be
   * shown nowhere.  Log them.
   */
  bool captured = ic_error_capture (false);
  unsigned int i;
  int err;

  /* The old mirror this one lies in: the same, or a part of it (a split
   * of the table); @shift is where in it this one starts.
   */
  if (prev && prev->type == &ic_mirror_target) {
    prev_mc = prev->private;
    shift = ti->begin - prev->begin;
  }

  for (i = 0; i < mc->n; i++) {
    struct leg *leg = &mc->legs[i];
    const struct leg *was = leg->start >= shift ?
      find_leg (prev_mc, leg->dev, leg->start - shift) : NULL;
    enum ic_leg_state state = IC_LEG_ACTIVE;

    leg->resync_done = 0;
    leg->failed_seq = 0;
    if (was) {
      uint64_t done;

      state = leg_state (was);
      if (state == IC_LEG_FAILED) {
        state = IC_LEG_RESYNC;
        leg->failed_seq = __atomic_load_n (&was->failed_seq,
                                           __ATOMIC_RELAXED);
      }
      else if (state == IC_LEG_RESYNC) {
        /* What the old resync copied of our part. */
        done = __atomic_load_n (&was->resync_done, __ATOMIC_RELAXED);
        done = done > shift ? done - shift : 0;
        leg->resync_done = done < ti->len ? done : ti->len;
      }
      leg->errors = __atomic_load_n (&was->errors, __ATOMIC_RELAXED);
    }
    else if (old && !ic_table_holds (old, ti->begin, ti->len, leg->dev,
                                     leg->start))
      state = IC_LEG_RESYNC;
    set_leg_state (leg, state);
    in_sync |= state == IC_LEG_ACTIVE;
  }

  if (!in_sync) {
    for (i = 1; i < mc->n; i++)
      if (mc->legs[i].failed_seq > source->failed_seq)
        source = &mc->legs[i];
    if (source->failed_seq)
      ic_error ("%s: mirror: no leg is known to hold the data; %s, the "
                "leg that stayed in sync longest, is the source",
                ic_target_device_name (ti), source->dev->name);
    else
      ic_error ("%s: mirror: no leg is known to hold the data; %s, the "
                "first leg, is the source", ic_target_device_name (ti),
                source->dev->name);
    set_leg_state (source, IC_LEG_ACTIVE);
    for (i = 0; i < mc->n; i++)
      mc->legs[i].resync_done = 0;
  }
  /* No leg is failed now: a leg being copied that fails again holds part
   * of the data, so it must not keep the number of its old failure.
   */
  for (i = 0; i < mc->n; i++)
    mc->legs[i].failed_seq = 0;
  for (i = 0; i < mc->n; i++)
    syncing |= leg_state (&mc->legs[i]) == IC_LEG_RESYNC;
  if (syncing) {
    __atomic_store_n (&mc->stop, false, __ATOMIC_RELEASE);
    err = pthread_create (&mc->resync_thread, NULL, resync_thread, ti);
    if (err)
      ic_error ("%s: mirror: cannot start the resync: %s",
                ic_target_device_name (ti), ic_strerror (err));
    else
      mc->resync_running = true;
  }
  ic_error_capture (captured);
}

/* A table whose mirror keeps legs of the live mirror it lies in, but
 * none that is in sync there while that mirror has one, is refused: the
 * resume would take a kept leg that failed before, or one only part
 * copied, as the source and copy it over the others, losing acknowledged
 * writes (a leg that failed last while in sync is the source only when
 * every leg failed).  A mirror keeping none of its legs is a new layout,
 * left to mirror_resume as before (its legs may be stacked devices over
 * the old ones).  Legs may still fail between the load and the resume;
 * mirror_resume copes with that as it can.
 */
static int
mirror_check_reload (struct ic_target *ti, struct ic_table *live,
                     struct ic_target *prev)
{
  struct mirror *mc = ti->private;
  const struct mirror *prev_mc;
  uint64_t shift;
  bool kept = false;
  unsigned int i;

  if (!prev || prev->type != &ic_mirror_target)
    return 0;
  prev_mc = prev->private;
  shift = ti->begin - prev->begin;
  for (i = 0; i < mc->n; i++) {
    const struct leg *leg = &mc->legs[i];
    const struct leg *was = leg->start >= shift ?
      find_leg (prev_mc, leg->dev, leg->start - shift) : NULL;

    if (was && leg_state (was) == IC_LEG_ACTIVE)
      return 0;
    kept |= was != NULL;
  }
  for (i = 0; kept && i < prev_mc->n; i++) {
    const struct leg *in_sync = &prev_mc->legs[i];

    if (leg_state (in_sync) != IC_LEG_ACTIVE)
      continue;
    ic_error ("%s: load table: the mirror at sectors %" PRIu64 " to %"
              PRIu64 " keeps legs of the live one but none in sync, while "
              "leg %s %" PRIu64 " is; list it too: a leg that failed or is "
              "still being copied does not hold the data",
              ic_target_device_name (ti), ti->begin >> 9,
              ((ti->begin + ti->len) >> 9) - 1, in_sync->dev->name,
              (in_sync->start + shift) >> 9);
    return -EINVAL;
  }
  return 0;
}

static void
mirror_suspend (struct ic_target *ti)
{
  struct mirror *mc = ti->private;

  if (!mc->resync_running)
    return;
  __atomic_store_n (&mc->stop, true, __ATOMIC_RELEASE);
  pthread_join (mc->resync_thread, NULL);
  mc->resync_running = false;
}

static int
mirror_iterate_devices (struct ic_target *ti, ic_iterate_devices_fn fn,
                        void *data)
{
  struct mirror *mc = ti->private;
  unsigned int i;
  int r = 0;

  for (i = 0; i < mc->n && r == 0; i++)
    r = fn (ti, mc->legs[i].dev, mc->legs[i].start, ti->len, data);
  return r;
}

static void
mirror_table_args (struct ic_target *ti, char *buf, size_t size)
{
  struct mirror *mc = ti->private;
  size_t used;
  unsigned int i;

  used = snprintf (buf, size, "%u", mc->n);
  for (i = 0; i < mc->n; i++)
    used += snprintf (buf + used, used < size ? size - used : 0,
                      " %s %" PRIu64, mc->legs[i].dev->name,
                      mc->legs[i].start >> 9);
}

static size_t
mirror_leg_status (struct ic_target *ti, struct ic_leg_status *legs,
                   size_t max)
{
  struct mirror *mc = ti->private;
  unsigned int i;

  for (i = 0; i < mc->n && i < max; i++) {
    struct leg *leg = &mc->legs[i];
    enum ic_leg_state state = leg_state (leg);

    snprintf (legs[i].device, sizeof legs[i].device, "%s", leg->dev->name);
    legs[i].offset = leg->start;
    legs[i].state = state;
    legs[i].resync_done = state == IC_LEG_ACTIVE ? ti->len :
      __atomic_load_n (&leg->resync_done, __ATOMIC_RELAXED);
    legs[i].errors = __atomic_load_n (&leg->errors, __ATOMIC_RELAXED);
  }
  return mc->n;
}

const struct ic_target_type ic_mirror_target = {
  .name = "mirror",
  .features = IC_TARGET_PASSES_CRYPTO,
  .ctr = mirror_ctr,
  .dtr = mirror_dtr,
  .map = mirror_map,
  .iterate_devices = mirror_iterate_devices,
  .table_args = mirror_table_args,
  .resume = mirror_resume,
  .suspend = mirror_suspend,
  .check_reload = mirror_check_reload,
  .holds = mirror_holds,
  .leg_status = mirror_leg_status,
};

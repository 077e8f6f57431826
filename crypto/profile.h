/* crypto/profile.h - crypto profiles and their keyslots.  Follows Linux
 * include/linux/blk-crypto-profile.h and block/blk-crypto-profile.c point by
 * point; the comments name the upstream function each one mirrors.
 *
 * A profile is what an inline-encryption device tells the layers above: its
 * capabilities (per mode a mask of data unit sizes, bit i => 2^i bytes; the
 * DUN bytes it takes; the key types), and, if it has keyslots, the keyslot
 * manager that programs keys into them through the driver's ll_ops.  A
 * profile with num_slots == 0 has no keyslots ("passthrough"): it advertises
 * capabilities and forwards evictions with slot -1 (stacked devices).
 *
 * Threading (as upstream): profile->lock is a reader/writer lock.  The fast
 * path (the key is already in a slot) takes it for reading; programming,
 * eviction and reprogramming take it for writing, so the ll_ops are
 * serialised.  Unlike a pthread_rwlock_t, its read side touches no cache
 * line that other threads write (crypto/brlock.h), so that requests on
 * different keys scale across cores; for the same reason hits are counted
 * per shard.  Upstream keeps idle slots on an LRU list under a spinlock
 * taken on every 0 <-> 1 reference change; here each slot records when it
 * last became idle, and programming takes the idle slot idle the longest:
 * the same choice, without a lock on the fast path.  idle_wait_lock is the
 * mutex of the wait for an idle slot.  Lock order: lock, then
 * idle_wait_lock.  No lock is held while data is en/decrypted: a keyslot
 * reference keeps the slot's key in place, and that is all a request
 * holds.
 *
 * A request must never wait for a keyslot while holding another one (a
 * split request takes and releases its slots piece by piece): with one slot
 * that would deadlock, as it would upstream.
 */
#ifndef IC_PROFILE_H
#define IC_PROFILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "brlock.h"
#include "histogram.h"
#include "key.h"
#include "list.h"

struct ic_crypto_profile;
struct ic_crypto_keyslot;

/* The driver's operations (struct blk_crypto_ll_ops).  Each may sleep, is
 * called with profile->lock held for writing (so calls are serialised), and
 * returns 0 or -errno unless stated.
 */
struct ic_crypto_ll_ops {
  /* Program @key into keyslot @slot. */
  int (*keyslot_program) (struct ic_crypto_profile *profile,
                          const struct ic_crypto_key *key,
                          unsigned int slot);
  /* Evict @key from keyslot @slot; @slot is -1 for a keyslot-less profile,
   * which then forwards the eviction (stacked devices).
   */
  int (*keyslot_evict) (struct ic_crypto_profile *profile,
                        const struct ic_crypto_key *key, int slot);
  /* Hardware-wrapped keys (Linux 6.15), optional.  derive_sw_secret
   * returns 0 or -errno (-EBADMSG: invalid key); the others return the
   * size of the key they wrote or -errno.
   */
  int (*derive_sw_secret) (struct ic_crypto_profile *profile,
                           const uint8_t *eph_key, size_t eph_key_size,
                           uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE]);
  int (*import_key) (struct ic_crypto_profile *profile,
                     const uint8_t *raw_key, size_t raw_key_size,
                     uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);
  int (*generate_key) (struct ic_crypto_profile *profile,
                       uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);
  int (*prepare_key) (struct ic_crypto_profile *profile,
                      const uint8_t *lt_key, size_t lt_key_size,
                      uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);
};

/* Counters of a keyslot manager; all monotonic until reset. */
struct ic_keyslot_stats {
  uint64_t hits;                /* get found the key in a slot */
  uint64_t misses;              /* get had to program a slot */
  uint64_t programs;            /* successful keyslot_program calls */
  uint64_t program_failures;    /* failed keyslot_program calls */
  uint64_t evictions;           /* keys unlinked by ic_crypto_evict_key */
  uint64_t evict_busy;          /* of which the key was still in use */
  uint64_t reprograms;          /* ic_crypto_reprogram_all_keys calls */
  uint64_t waits;               /* gets that waited for an idle slot */
  struct ic_histogram wait;     /* time spent waiting, per waiting get */
};

struct ic_crypto_profile {
  /* public: set by the driver after ic_crypto_profile_init(), before use. */
  struct ic_crypto_ll_ops ll_ops;
  /* Supported DUNs are 0 .. 2^(8 * max_dun_bytes_supported) - 1. */
  unsigned int max_dun_bytes_supported;
  /* Mask of enum ic_crypto_key_type. */
  unsigned int key_types_supported;
  /* Per mode, bit i set <=> data unit size 2^i bytes supported. */
  unsigned int modes_supported[IC_ENCRYPTION_MODE_MAX];
  /* The driver's object (engine, fallback, stacked device). */
  void *priv;
  /* For messages ("ufs", "fallback", "dev0"). */
  char name[64];

  /* private: */
  unsigned int num_slots;
  /* Serialises the ll_ops; covers slot->key and the hash table. */
  struct ic_brlock lock;
  /* The mutex of idle_slots_wait_queue. */
  pthread_mutex_t idle_wait_lock;
  pthread_cond_t idle_slots_wait_queue;
  unsigned int idle_waiters;            /* atomic */
  struct ic_hlist_head *slot_hashtable; /* protected by lock */
  unsigned int log_slot_ht_size;
  struct ic_crypto_keyslot *slots;
  /* The slots' references, split like percpu refcounts: per brlock shard
   * (ic_brlock_shard), per slot, the references its threads took minus
   * those they dropped (atomic, modulo 2^32), and when one of them last
   * dropped one (ic_ticks, atomic).  A slot's count is the sum over the
   * shards, exact under lock held for writing (no get can add to it
   * then); it became idle at the latest of its stamps.  Shard s's arrays
   * start at s * ref_stride: threads of different shards share no line.
   */
  uint32_t *shard_refs;
  uint64_t *shard_put_at;
  unsigned int ref_stride;
  /* The counters are written on every miss: padding keeps them off the
   * lines of the fields above, which every request reads.
   */
  char stats_pad_before[64];
  /* Atomics; hits, misses and programs are in hit_shards. */
  struct ic_keyslot_stats stats;
  char stats_pad_after[64];
  /* Per shard too, the counters every request or miss writes: with
   * shared ones each miss would drag their line from the core that
   * missed last.
   */
  struct {                              /* padded as brlock's shards */
    char pad_before[64];
    uint64_t hits;                      /* atomic */
    uint64_t misses;                    /* atomic */
    uint64_t programs;                  /* atomic */
    char pad_after[64 - 3 * sizeof (uint64_t)];
  } hit_shards[IC_BRLOCK_SHARDS];
};

/* Initialise @profile with @num_slots keyslots, all idle and in index
 * order, and a key hash of roundup_pow_of_two(num_slots) (at least 2)
 * buckets (blk_crypto_profile_init).  @num_slots == 0 makes a passthrough
 * profile.  Capabilities start empty.
 *
 * Return: 0, or -ENOMEM.
 */
int ic_crypto_profile_init (struct ic_crypto_profile *profile,
                            unsigned int num_slots);

/* Free the slots and wipe the profile, including every key reference
 * (blk_crypto_profile_destroy).  No request may hold a slot.  NULL is
 * ignored.
 */
void ic_crypto_profile_destroy (struct ic_crypto_profile *profile);

/* Find or program a slot holding @key; waits (unbounded, as upstream)
 * while no slot is idle (blk_crypto_get_keyslot).  A key already in a slot
 * is reused without reprogramming; otherwise the least-recently-used idle
 * slot is programmed.  A programming failure fails this call and wakes the
 * other waiters.
 *
 * Context: takes and releases profile->lock; may block.  The caller must
 * hold no other keyslot.
 * Return: 0 with *slotp set (NULL if the profile has no slots), or the
 * -errno of keyslot_program.
 */
int ic_crypto_get_keyslot (struct ic_crypto_profile *profile,
                           const struct ic_crypto_key *key,
                           struct ic_crypto_keyslot **slotp);

/* Release a reference taken by ic_crypto_get_keyslot()
 * (blk_crypto_put_keyslot).  The last reference puts the slot at the tail
 * of the idle slots and wakes waiters.  NULL is ignored.
 *
 * Context: any; takes idle_wait_lock briefly if a get is waiting.
 */
void ic_crypto_put_keyslot (struct ic_crypto_keyslot *slot);

/* The 0-based index of @slot in its profile (blk_crypto_keyslot_index). */
unsigned int ic_crypto_keyslot_index (const struct ic_crypto_keyslot *slot);

/* The key that @slot's profile believes is in it, or NULL.  For the
 * engine's consistency check; the caller holds a reference to @slot.
 */
const struct ic_crypto_key *
ic_crypto_keyslot_key (const struct ic_crypto_keyslot *slot);

/* Evict @key from @profile (__blk_crypto_evict_key):
 * - no slots: call keyslot_evict(key, -1) if there is one, else 0;
 * - key in no slot: 0 (there can be more keys than slots);
 * - key's slot still referenced by I/O: -EBUSY, and the key is unlinked
 *   anyway (callers free it), but the driver is not asked to evict it:
 *   the slot's hardware still holds it (see ic_crypto_purge_key());
 * - else the driver's result; the key is unlinked even if it failed.
 *
 * Context: takes profile->lock for writing; may block.
 */
int ic_crypto_evict_key (struct ic_crypto_profile *profile,
                         const struct ic_crypto_key *key);

/* Beyond upstream: @key is about to be freed, and no request uses it any
 * more.  Evict it (keyslot_evict) from every slot it was unlinked from by
 * an eviction that found it busy (-EBUSY above), whose hardware still
 * holds it, so that no key material, nor a pointer to the freed key,
 * stays behind.  Call it after ic_crypto_evict_key().  A profile without
 * slots: nothing.
 *
 * Context: takes profile->lock for writing; may block.
 */
void ic_crypto_purge_key (struct ic_crypto_profile *profile,
                          const struct ic_crypto_key *key);

/* Program every slot that should hold a key again, after the hardware lost
 * them (blk_crypto_reprogram_all_keys).  Failures are logged, not returned,
 * as upstream (which WARNs); beyond upstream, an idle slot that failed is
 * unlinked from its key, so that the key is programmed again when next
 * used.
 *
 * Context: takes profile->lock for writing; may block.
 * Return: the number of slots that failed.
 */
unsigned int ic_crypto_reprogram_all_keys (struct ic_crypto_profile *profile);

/* Take and release profile->lock for writing, as the profile does around
 * every ll_op (blk_crypto_hw_enter/exit): for drivers that change their
 * hardware state outside an ll_op (an engine losing its keys).
 */
void ic_crypto_hw_enter (struct ic_crypto_profile *profile);
void ic_crypto_hw_exit (struct ic_crypto_profile *profile);

/* True if profile->lock is held for writing (for assertions). */
bool ic_crypto_hw_entered (struct ic_crypto_profile *profile);

/* The number of idle keyslots (no reference), and of gets waiting for
 * one.  For tests; a snapshot.
 */
unsigned int ic_crypto_profile_idle_slots (struct ic_crypto_profile *profile,
                                           unsigned int *waiters);

/* The number of keyslots (0: passthrough). */
unsigned int ic_crypto_profile_num_slots (const struct ic_crypto_profile *p);

/* True if @profile natively supports @cfg: mode and data unit size, DUN
 * bytes and key type (__blk_crypto_cfg_supported).  NULL profile: false.
 */
bool ic_crypto_cfg_supported (const struct ic_crypto_profile *profile,
                              const struct ic_crypto_config *cfg);

/* Clear every capability of @parent that @child lacks; @child NULL clears
 * them all (blk_crypto_intersect_capabilities).
 */
void ic_crypto_intersect_capabilities (struct ic_crypto_profile *parent,
                                       const struct ic_crypto_profile *child);

/* Beyond upstream, for per-child fallback: add every capability of @child
 * to @parent (@child NULL adds nothing).
 */
void ic_crypto_union_capabilities (struct ic_crypto_profile *parent,
                                   const struct ic_crypto_profile *child);

/* Give @profile every capability (the start of an intersection). */
void ic_crypto_set_all_capabilities (struct ic_crypto_profile *profile);

/* True if @target supports everything @reference does; true if @reference
 * is NULL, false if only @target is (blk_crypto_has_capabilities).
 */
bool ic_crypto_has_capabilities (const struct ic_crypto_profile *target,
                                 const struct ic_crypto_profile *reference);

/* Copy the capabilities (not the ops) of @src into @dst
 * (blk_crypto_update_capabilities).  Safe while requests run only if the
 * capabilities grow: stale reads then just cause fallback use.
 */
void ic_crypto_update_capabilities (struct ic_crypto_profile *dst,
                                    const struct ic_crypto_profile *src);

/* True if no mode has any data unit size. */
bool ic_crypto_profile_is_empty (const struct ic_crypto_profile *profile);

/* Wrapped-key operations (blk_crypto_derive_sw_secret, _import_key,
 * _generate_key, _prepare_key): -EOPNOTSUPP if @profile is NULL, lacks
 * IC_CRYPTO_KEY_TYPE_HW_WRAPPED or lacks the op; else the op's result,
 * called under profile->lock.
 */
int ic_crypto_derive_sw_secret (struct ic_crypto_profile *profile,
                                const uint8_t *eph_key, size_t eph_key_size,
                                uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE]);
int ic_crypto_import_key (struct ic_crypto_profile *profile,
                          const uint8_t *raw_key, size_t raw_key_size,
                          uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);
int ic_crypto_generate_key (struct ic_crypto_profile *profile,
                            uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);
int ic_crypto_prepare_key (struct ic_crypto_profile *profile,
                           const uint8_t *lt_key, size_t lt_key_size,
                           uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE]);

/* The wrapped-key ioctls of a block device (blk_crypto_ioctl_import_key,
 * _generate_key, _prepare_key for BLKCRYPTOIMPORTKEY, BLKCRYPTOGENERATEKEY,
 * BLKCRYPTOPREPAREKEY), on @profile: the output size is in/out, the
 * capacity of the output buffer in, the size of the key written out.
 * Checked first, as blk_crypto_ioctl() does: a NULL @profile (a device
 * without inline encryption) is -EOPNOTSUPP whatever the arguments.
 * Then: an import takes 16..64 raw bytes, a prepare at most 128
 * long-term bytes (-EINVAL).  Then the op as the wrappers above
 * (-EOPNOTSUPP, -EBADMSG, ...); a key larger than the capacity is
 * -EOVERFLOW and nothing is written.  Temporaries are wiped.
 *
 * Return: 0 with *@lt_key_size / *@eph_key_size set, or -errno.
 */
int ic_crypto_ioctl_import_key (struct ic_crypto_profile *profile,
                                const uint8_t *raw_key, size_t raw_key_size,
                                uint8_t *lt_key, size_t *lt_key_size);
int ic_crypto_ioctl_generate_key (struct ic_crypto_profile *profile,
                                  uint8_t *lt_key, size_t *lt_key_size);
int ic_crypto_ioctl_prepare_key (struct ic_crypto_profile *profile,
                                 const uint8_t *lt_key, size_t lt_key_size,
                                 uint8_t *eph_key, size_t *eph_key_size);

/* Copy the keyslot counters into @dst; with @reset, zero them after. */
void ic_crypto_profile_read_stats (struct ic_crypto_profile *profile,
                                   struct ic_keyslot_stats *dst, bool reset);

#endif /* IC_PROFILE_H */

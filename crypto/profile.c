/* crypto/profile.c - see profile.h.  Mirrors Linux
 * block/blk-crypto-profile.c; each function names its upstream twin.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "profile.h"
#include "secmem.h"

/* A keyslot.  Its references (upstream's slot_refs) and the time it last
 * became idle (for the least-recently-used choice) are kept per shard in
 * the profile (profile->shard_refs, ->shard_put_at), so that the fast
 * path writes no line another thread writes, even when every request
 * uses the same key; this part is read-mostly.
 */
struct ic_crypto_keyslot {
  struct ic_hlist_node hash_node;       /* protected by profile->lock */
  /* Written under profile->lock held for writing; read under it, or
   * atomically by a holder of a reference.
   */
  const struct ic_crypto_key *key;
  /* A key unlinked from this slot while I/O still used it (the -EBUSY of
   * ic_crypto_evict_key): the driver was not asked to evict it, so the
   * hardware may still hold it.  ic_crypto_purge_key(), when the key is
   * removed, evicts it from here once the slot is idle; reprogramming the
   * slot clears it.  Protected by profile->lock.
   */
  const struct ic_crypto_key *busy_evicted;
  struct ic_crypto_profile *profile;
} __attribute__ ((aligned (64)));

#define STAT_INC(profile, field) \
  __atomic_fetch_add (&(profile)->stats.field, 1, __ATOMIC_RELAXED)
/* The counters of every request or miss, in this thread's shard. */
#define SHARD_STAT_INC(profile, field) \
  __atomic_fetch_add (&(profile)->hit_shards[ic_brlock_shard ()].field, 1, \
                      __ATOMIC_RELAXED)

/* --- slot references, per shard --- */

static uint32_t *
ref_of (struct ic_crypto_profile *profile, unsigned int shard,
        unsigned int slot)
{
  return &profile->shard_refs[(size_t) shard * profile->ref_stride + slot];
}

static uint64_t *
put_at_of (struct ic_crypto_profile *profile, unsigned int shard,
           unsigned int slot)
{
  return &profile->shard_put_at[(size_t) shard * profile->ref_stride + slot];
}

static void
slot_get (struct ic_crypto_profile *profile, unsigned int slot)
{
  __atomic_fetch_add (ref_of (profile, ic_brlock_shard (), slot), 1,
                      __ATOMIC_SEQ_CST);
}

/* The references of @slot: exact with profile->lock held for writing
 * (puts may still drop some meanwhile, which only makes it smaller);
 * without it, a hint for waiters and status.  Only the shards taken so
 * far are read: a get takes its shard before it adds a reference there,
 * and under the write lock no get is adding one; a put on a shard taken
 * since is missed, which only makes the count larger for a moment.
 */
static uint32_t
slot_refs_in (struct ic_crypto_profile *profile, unsigned int shards,
              unsigned int slot)
{
  uint32_t n = 0;
  unsigned int s;

  for (s = 0; s < shards; s++)
    n += __atomic_load_n (ref_of (profile, s, slot), __ATOMIC_SEQ_CST);
  return n;
}

static uint32_t
slot_refs (struct ic_crypto_profile *profile, unsigned int slot)
{
  return slot_refs_in (profile, ic_brlock_shards_used (), slot);
}

/* When @slot last became idle: the last put. */
static uint64_t
slot_idle_since (struct ic_crypto_profile *profile, unsigned int shards,
                 unsigned int slot)
{
  uint64_t t = 0;
  unsigned int s;

  for (s = 0; s < shards; s++) {
    uint64_t u = __atomic_load_n (put_at_of (profile, s, slot),
                                  __ATOMIC_RELAXED);
    if (u > t)
      t = u;
  }
  return t;
}

/* blk_crypto_hw_enter / _exit: no runtime PM here, only the lock. */
static void
hw_enter (struct ic_crypto_profile *profile)
{
  ic_brlock_write_lock (&profile->lock);
}

static void
hw_exit (struct ic_crypto_profile *profile)
{
  ic_brlock_write_unlock (&profile->lock);
}

void
ic_crypto_hw_enter (struct ic_crypto_profile *profile)
{
  hw_enter (profile);
}

void
ic_crypto_hw_exit (struct ic_crypto_profile *profile)
{
  hw_exit (profile);
}

bool
ic_crypto_hw_entered (struct ic_crypto_profile *profile)
{
  return ic_brlock_write_locked (&profile->lock);
}

static unsigned int
roundup_pow_of_two (unsigned int n)
{
  unsigned int p = 1;

  while (p < n)
    p <<= 1;
  return p;
}

/* IC_BRLOCK_SHARDS zeroed arrays of @n elements of @size bytes, one after
 * the other from a cache-line boundary, or NULL.  Each starts on a line
 * of its own when @n * @size is a multiple of 64.
 */
static void *
shard_arrays (size_t n, size_t size)
{
  size_t bytes = (size_t) IC_BRLOCK_SHARDS * n * size;
  void *p;

  if (posix_memalign (&p, 64, bytes) != 0)
    return NULL;
  return memset (p, 0, bytes);
}

/* blk_crypto_profile_init */
int
ic_crypto_profile_init (struct ic_crypto_profile *profile,
                        unsigned int num_slots)
{
  unsigned int ht_size;
  unsigned int i;

  memset (profile, 0, sizeof *profile);
  /* Like a rw_semaphore, a waiting writer (a miss, an eviction) holds off
   * new readers.
   */
  ic_brlock_init (&profile->lock);
  pthread_mutex_init (&profile->idle_wait_lock, NULL);
  pthread_cond_init (&profile->idle_slots_wait_queue, NULL);

  if (num_slots == 0)
    return 0;

  if (posix_memalign ((void **) &profile->slots, 64,
                      num_slots * sizeof profile->slots[0]) != 0) {
    profile->slots = NULL;
    goto out_destroy;
  }
  memset (profile->slots, 0, num_slots * sizeof profile->slots[0]);
  profile->num_slots = num_slots;
  for (i = 0; i < num_slots; i++)
    profile->slots[i].profile = profile;

  /* Each shard's arrays on lines of their own: 16 references are a line
   * (and 16 stamps two).
   */
  profile->ref_stride = (num_slots + 15) & ~15u;
  profile->shard_refs = shard_arrays (profile->ref_stride, sizeof (uint32_t));
  profile->shard_put_at = shard_arrays (profile->ref_stride,
                                        sizeof (uint64_t));
  if (!profile->shard_refs || !profile->shard_put_at)
    goto out_destroy;
  /* Idle slots are first taken in index order, as upstream's idle list
   * starts; ic_ticks() is far above num_slots.
   */
  for (i = 0; i < num_slots; i++)
    *put_at_of (profile, 0, i) = i;

  /* A hash of at least 2 buckets, as upstream (hash_ptr needs bits > 0). */
  ht_size = roundup_pow_of_two (num_slots);
  if (ht_size < 2)
    ht_size = 2;
  profile->log_slot_ht_size = __builtin_ctz (ht_size);
  profile->slot_hashtable = calloc (ht_size, sizeof (struct ic_hlist_head));
  if (!profile->slot_hashtable)
    goto out_destroy;
  return 0;

out_destroy:
  ic_crypto_profile_destroy (profile);
  ic_error ("profile: init: out of memory for %u keyslots", num_slots);
  return -ENOMEM;
}

/* blk_crypto_profile_destroy */
void
ic_crypto_profile_destroy (struct ic_crypto_profile *profile)
{
  if (!profile)
    return;
  ic_brlock_destroy (&profile->lock);
  pthread_mutex_destroy (&profile->idle_wait_lock);
  pthread_cond_destroy (&profile->idle_slots_wait_queue);
  free (profile->slot_hashtable);
  if (profile->slots)
    ic_memzero_explicit (profile->slots,
                         profile->num_slots * sizeof profile->slots[0]);
  free (profile->slots);
  free (profile->shard_refs);
  free (profile->shard_put_at);
  ic_memzero_explicit (profile, sizeof *profile);
}

/* hash_ptr(): golden-ratio multiplicative hash of the key's address. */
static struct ic_hlist_head *
hash_bucket_for_key (struct ic_crypto_profile *profile,
                     const struct ic_crypto_key *key)
{
  uint64_t h = (uint64_t) (uintptr_t) key * 0x61C8864680B583EBull;

  return &profile->slot_hashtable[h >> (64 - profile->log_slot_ht_size)];
}

/* blk_crypto_find_keyslot.  Context: profile->lock held. */
static struct ic_crypto_keyslot *
find_keyslot (struct ic_crypto_profile *profile,
              const struct ic_crypto_key *key)
{
  struct ic_hlist_node *node;

  for (node = hash_bucket_for_key (profile, key)->first; node;
       node = node->next) {
    struct ic_crypto_keyslot *slot =
      ic_container_of (node, struct ic_crypto_keyslot, hash_node);

    if (slot->key == key)
      return slot;
  }
  return NULL;
}

/* blk_crypto_find_and_grab_keyslot.  Context: profile->lock held.  (The
 * first reference needs no list work: a slot with references is simply
 * not idle.)
 */
static struct ic_crypto_keyslot *
find_and_grab_keyslot (struct ic_crypto_profile *profile,
                       const struct ic_crypto_key *key)
{
  struct ic_crypto_keyslot *slot = find_keyslot (profile, key);

  if (slot)
    slot_get (profile, ic_crypto_keyslot_index (slot));
  return slot;
}

unsigned int
ic_crypto_keyslot_index (const struct ic_crypto_keyslot *slot)
{
  return slot - slot->profile->slots;
}

const struct ic_crypto_key *
ic_crypto_keyslot_key (const struct ic_crypto_keyslot *slot)
{
  return __atomic_load_n (&slot->key, __ATOMIC_ACQUIRE);
}

/* The idle slot that has been idle the longest (upstream: the head of the
 * idle list), or NULL.  Context: profile->lock held for writing, so no
 * slot can gain a reference meanwhile.
 */
static struct ic_crypto_keyslot *
lru_idle_slot (struct ic_crypto_profile *profile)
{
  struct ic_crypto_keyslot *best = NULL;
  uint64_t best_since = UINT64_MAX;
  unsigned int shards = ic_brlock_shards_used ();
  unsigned int i;

  for (i = 0; i < profile->num_slots; i++) {
    uint64_t since;

    if (slot_refs_in (profile, shards, i) != 0)
      continue;
    since = slot_idle_since (profile, shards, i);
    if (since < best_since) {
      best = &profile->slots[i];
      best_since = since;
    }
  }
  return best;
}

static bool
any_idle_slot (struct ic_crypto_profile *profile)
{
  unsigned int i;

  for (i = 0; i < profile->num_slots; i++)
    if (slot_refs (profile, i) == 0)
      return true;
  return false;
}

/* Wait until some slot is idle (the wait_event() of upstream).  Unbounded,
 * as upstream: a slot comes back when a request completes.  The caller
 * counts the wait: a get may wait more than once.
 *
 * The waiter counts itself in, then looks; a put makes a slot idle, then
 * looks for waiters: with sequentially consistent atomics one of them
 * sees the other, so no wake-up is lost.
 */
static void
wait_for_idle_slot (struct ic_crypto_profile *profile)
{
  pthread_mutex_lock (&profile->idle_wait_lock);
  __atomic_fetch_add (&profile->idle_waiters, 1, __ATOMIC_SEQ_CST);
  while (!any_idle_slot (profile))
    pthread_cond_wait (&profile->idle_slots_wait_queue,
                       &profile->idle_wait_lock);
  __atomic_fetch_sub (&profile->idle_waiters, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock (&profile->idle_wait_lock);
}

/* Record the time a get spent waiting since @wait_start (0: no wait). */
static void
count_wait (struct ic_crypto_profile *profile, uint64_t wait_start)
{
  if (wait_start)
    ic_histogram_add (&profile->stats.wait, ic_now_ns () - wait_start);
}

static void
wake_up_waiters (struct ic_crypto_profile *profile)
{
  if (__atomic_load_n (&profile->idle_waiters, __ATOMIC_SEQ_CST) == 0)
    return;
  pthread_mutex_lock (&profile->idle_wait_lock);
  pthread_cond_broadcast (&profile->idle_slots_wait_queue);
  pthread_mutex_unlock (&profile->idle_wait_lock);
}

/* blk_crypto_get_keyslot */
int
ic_crypto_get_keyslot (struct ic_crypto_profile *profile,
                       const struct ic_crypto_key *key,
                       struct ic_crypto_keyslot **slotp)
{
  struct ic_crypto_keyslot *slot;
  uint64_t wait_start = 0;
  int err;

  *slotp = NULL;

  /* A device without keyslots takes the context as it is. */
  if (profile->num_slots == 0)
    return 0;

  ic_brlock_read_lock (&profile->lock);
  slot = find_and_grab_keyslot (profile, key);
  ic_brlock_read_unlock (&profile->lock);
  if (slot)
    goto hit;

  for (;;) {
    hw_enter (profile);
    /* Someone may have programmed the key meanwhile. */
    slot = find_and_grab_keyslot (profile, key);
    if (slot) {
      hw_exit (profile);
      count_wait (profile, wait_start);
      goto hit;
    }
    /* The least recently used idle slot. */
    slot = lru_idle_slot (profile);
    if (slot)
      break;
    hw_exit (profile);
    /* Another get may take the slot we wake up for: count this get once,
     * for its whole wait.
     */
    if (!wait_start) {
      STAT_INC (profile, waits);
      wait_start = ic_now_ns ();
    }
    wait_for_idle_slot (profile);
  }
  count_wait (profile, wait_start);

  SHARD_STAT_INC (profile, misses);
  err = profile->ll_ops.keyslot_program (profile, key,
                                         ic_crypto_keyslot_index (slot));
  if (err) {
    STAT_INC (profile, program_failures);
    /* Let the others try: the slot is still idle. */
    hw_exit (profile);
    wake_up_waiters (profile);
    return err < 0 ? err : -EIO;
  }
  SHARD_STAT_INC (profile, programs);

  /* Move this slot to the hash list of the new key. */
  if (slot->key)
    ic_hlist_del (&slot->hash_node);
  slot->busy_evicted = NULL;
  __atomic_store_n (&slot->key, key, __ATOMIC_RELEASE);
  ic_hlist_add_head (&slot->hash_node, hash_bucket_for_key (profile, key));
  slot_get (profile, ic_crypto_keyslot_index (slot));
  hw_exit (profile);
  *slotp = slot;
  return 0;

hit:
  /* Counted per shard: a shared counter would be the one cache line that
   * every request on every key writes.
   */
  SHARD_STAT_INC (profile, hits);
  *slotp = slot;
  return 0;
}

/* blk_crypto_put_keyslot */
void
ic_crypto_put_keyslot (struct ic_crypto_keyslot *slot)
{
  struct ic_crypto_profile *profile;
  unsigned int shard;
  unsigned int i;

  if (!slot)
    return;
  profile = slot->profile;
  i = ic_crypto_keyslot_index (slot);
  shard = ic_brlock_shard ();
  /* Whether this was the last reference only the sum over the shards
   * says; every put stamps its time, and the slot became idle at the
   * latest stamp: the back of the LRU order.  The stamp goes first, so
   * a scan that sees the slot idle sees when it became so.
   */
  __atomic_store_n (put_at_of (profile, shard, i), ic_ticks (),
                    __ATOMIC_RELAXED);
  __atomic_fetch_sub (ref_of (profile, shard, i), 1, __ATOMIC_SEQ_CST);
  wake_up_waiters (profile);
}

unsigned int
ic_crypto_profile_idle_slots (struct ic_crypto_profile *profile,
                              unsigned int *waiters)
{
  unsigned int n = 0;
  unsigned int i;

  for (i = 0; i < profile->num_slots; i++)
    n += slot_refs (profile, i) == 0;
  *waiters = __atomic_load_n (&profile->idle_waiters, __ATOMIC_SEQ_CST);
  return n;
}

void
ic_crypto_purge_key (struct ic_crypto_profile *profile,
                     const struct ic_crypto_key *key)
{
  unsigned int i;
  int err;

  if (profile->num_slots == 0)
    return;
  hw_enter (profile);
  for (i = 0; i < profile->num_slots; i++) {
    struct ic_crypto_keyslot *slot = &profile->slots[i];

    if (slot->busy_evicted != key || slot->key ||
        slot_refs (profile, i) != 0)
      continue;
    slot->busy_evicted = NULL;
    err = profile->ll_ops.keyslot_evict
      ? profile->ll_ops.keyslot_evict (profile, key, i) : 0;
    if (err)
      ic_debug ("%s: error %d evicting key %s from keyslot %u",
                profile->name, err, key->name, i);
  }
  hw_exit (profile);
}

/* __blk_crypto_evict_key */
int
ic_crypto_evict_key (struct ic_crypto_profile *profile,
                     const struct ic_crypto_key *key)
{
  struct ic_crypto_keyslot *slot;
  int err;

  if (profile->num_slots == 0) {
    if (profile->ll_ops.keyslot_evict) {
      hw_enter (profile);
      err = profile->ll_ops.keyslot_evict (profile, key, -1);
      hw_exit (profile);
      return err;
    }
    return 0;
  }

  hw_enter (profile);
  slot = find_keyslot (profile, key);
  if (!slot) {
    /* Not an error: a key not in use by I/O need not be in a keyslot;
     * there can be more keys than keyslots.
     */
    err = 0;
    goto out;
  }
  STAT_INC (profile, evictions);
  if (slot_refs (profile, ic_crypto_keyslot_index (slot)) != 0) {
    /* Upstream WARNs: the caller evicts a key that I/O still uses. */
    STAT_INC (profile, evict_busy);
    ic_error ("%s: evict %s: key is still in use by I/O in keyslot %u",
              profile->name, key->name[0] ? key->name : "key",
              ic_crypto_keyslot_index (slot));
    err = -EBUSY;
    slot->busy_evicted = key;
    goto out_remove;
  }
  err = profile->ll_ops.keyslot_evict
    ? profile->ll_ops.keyslot_evict (profile, key,
                                     ic_crypto_keyslot_index (slot))
    : 0;
  if (err)
    ic_debug ("%s: error %d evicting key %s", profile->name, err, key->name);
out_remove:
  /* Callers free the key even on error: unlink it regardless. */
  ic_hlist_del (&slot->hash_node);
  __atomic_store_n (&slot->key, NULL, __ATOMIC_RELEASE);
out:
  hw_exit (profile);
  return err;
}

/* blk_crypto_reprogram_all_keys */
unsigned int
ic_crypto_reprogram_all_keys (struct ic_crypto_profile *profile)
{
  unsigned int failed = 0;
  unsigned int i;

  if (profile->num_slots == 0)
    return 0;
  STAT_INC (profile, reprograms);
  hw_enter (profile);
  for (i = 0; i < profile->num_slots; i++) {
    const struct ic_crypto_key *key = profile->slots[i].key;
    int err;

    if (!key)
      continue;
    err = profile->ll_ops.keyslot_program (profile, key, i);
    if (err) {
      /* Upstream WARNs, goes on with the other slots, and leaves the key
       * linked to a slot that does not hold it.  Beyond upstream: an idle
       * slot is unlinked, so that the next request for the key programs
       * it again instead of failing until it is evicted.
       */
      failed++;
      STAT_INC (profile, program_failures);
      ic_debug ("%s: reprogram keyslot %u: error %d", profile->name, i, err);
      if (slot_refs (profile, i) == 0) {
        ic_hlist_del (&profile->slots[i].hash_node);
        __atomic_store_n (&profile->slots[i].key, NULL, __ATOMIC_RELEASE);
      }
    }
    else
      SHARD_STAT_INC (profile, programs);
  }
  hw_exit (profile);
  return failed;
}

unsigned int
ic_crypto_profile_num_slots (const struct ic_crypto_profile *profile)
{
  return profile->num_slots;
}

/* Capabilities of a live profile may grow under running requests
 * (ic_crypto_update_capabilities); read and write them atomically.
 */
#define CAP_LOAD(x) __atomic_load_n (&(x), __ATOMIC_RELAXED)
#define CAP_STORE(x, v) __atomic_store_n (&(x), (v), __ATOMIC_RELAXED)

/* __blk_crypto_cfg_supported */
bool
ic_crypto_cfg_supported (const struct ic_crypto_profile *profile,
                         const struct ic_crypto_config *cfg)
{
  if (!profile)
    return false;
  if (!ic_crypto_mode_is_valid (cfg->crypto_mode))
    return false;
  if (!(CAP_LOAD (profile->modes_supported[cfg->crypto_mode]) &
        cfg->data_unit_size))
    return false;
  if (CAP_LOAD (profile->max_dun_bytes_supported) < cfg->dun_bytes)
    return false;
  if (!(CAP_LOAD (profile->key_types_supported) & cfg->key_type))
    return false;
  return true;
}

/* blk_crypto_intersect_capabilities */
void
ic_crypto_intersect_capabilities (struct ic_crypto_profile *parent,
                                  const struct ic_crypto_profile *child)
{
  unsigned int i;

  if (child) {
    if (CAP_LOAD (child->max_dun_bytes_supported) <
        parent->max_dun_bytes_supported)
      parent->max_dun_bytes_supported =
        CAP_LOAD (child->max_dun_bytes_supported);
    for (i = 0; i < IC_ENCRYPTION_MODE_MAX; i++)
      parent->modes_supported[i] &= CAP_LOAD (child->modes_supported[i]);
    parent->key_types_supported &= CAP_LOAD (child->key_types_supported);
  }
  else {
    parent->max_dun_bytes_supported = 0;
    memset (parent->modes_supported, 0, sizeof parent->modes_supported);
    parent->key_types_supported = 0;
  }
}

void
ic_crypto_union_capabilities (struct ic_crypto_profile *parent,
                              const struct ic_crypto_profile *child)
{
  unsigned int i;

  if (!child)
    return;
  if (CAP_LOAD (child->max_dun_bytes_supported) >
      parent->max_dun_bytes_supported)
    parent->max_dun_bytes_supported =
      CAP_LOAD (child->max_dun_bytes_supported);
  for (i = 0; i < IC_ENCRYPTION_MODE_MAX; i++)
    parent->modes_supported[i] |= CAP_LOAD (child->modes_supported[i]);
  parent->key_types_supported |= CAP_LOAD (child->key_types_supported);
}

void
ic_crypto_set_all_capabilities (struct ic_crypto_profile *profile)
{
  unsigned int i;

  /* As dm_table_construct_crypto_profile() starts: everything. */
  profile->max_dun_bytes_supported = UINT32_MAX;
  for (i = 0; i < IC_ENCRYPTION_MODE_MAX; i++)
    profile->modes_supported[i] = UINT32_MAX;
  profile->key_types_supported = UINT32_MAX;
}

/* blk_crypto_has_capabilities */
bool
ic_crypto_has_capabilities (const struct ic_crypto_profile *target,
                            const struct ic_crypto_profile *reference)
{
  unsigned int i;

  if (!reference)
    return true;
  if (!target)
    return false;
  for (i = 0; i < IC_ENCRYPTION_MODE_MAX; i++)
    if (CAP_LOAD (reference->modes_supported[i]) &
        ~CAP_LOAD (target->modes_supported[i]))
      return false;
  if (CAP_LOAD (reference->max_dun_bytes_supported) >
      CAP_LOAD (target->max_dun_bytes_supported))
    return false;
  if (CAP_LOAD (reference->key_types_supported) &
      ~CAP_LOAD (target->key_types_supported))
    return false;
  return true;
}

/* blk_crypto_update_capabilities */
void
ic_crypto_update_capabilities (struct ic_crypto_profile *dst,
                               const struct ic_crypto_profile *src)
{
  unsigned int i;

  for (i = 0; i < IC_ENCRYPTION_MODE_MAX; i++)
    CAP_STORE (dst->modes_supported[i], CAP_LOAD (src->modes_supported[i]));
  CAP_STORE (dst->max_dun_bytes_supported,
             CAP_LOAD (src->max_dun_bytes_supported));
  CAP_STORE (dst->key_types_supported, CAP_LOAD (src->key_types_supported));
}

bool
ic_crypto_profile_is_empty (const struct ic_crypto_profile *profile)
{
  unsigned int i;

  for (i = 0; i < IC_ENCRYPTION_MODE_MAX; i++)
    if (CAP_LOAD (profile->modes_supported[i]))
      return false;
  return true;
}

static bool
supports_wrapped (const struct ic_crypto_profile *profile)
{
  return profile &&
    (CAP_LOAD (profile->key_types_supported) & IC_CRYPTO_KEY_TYPE_HW_WRAPPED);
}

/* blk_crypto_derive_sw_secret */
int
ic_crypto_derive_sw_secret (struct ic_crypto_profile *profile,
                            const uint8_t *eph_key, size_t eph_key_size,
                            uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE])
{
  int err;

  if (!supports_wrapped (profile) || !profile->ll_ops.derive_sw_secret)
    return -EOPNOTSUPP;
  hw_enter (profile);
  err = profile->ll_ops.derive_sw_secret (profile, eph_key, eph_key_size,
                                          sw_secret);
  hw_exit (profile);
  return err;
}

/* blk_crypto_import_key */
int
ic_crypto_import_key (struct ic_crypto_profile *profile,
                      const uint8_t *raw_key, size_t raw_key_size,
                      uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  int ret;

  if (!supports_wrapped (profile) || !profile->ll_ops.import_key)
    return -EOPNOTSUPP;
  hw_enter (profile);
  ret = profile->ll_ops.import_key (profile, raw_key, raw_key_size, lt_key);
  hw_exit (profile);
  return ret;
}

/* blk_crypto_generate_key */
int
ic_crypto_generate_key (struct ic_crypto_profile *profile,
                        uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  int ret;

  if (!supports_wrapped (profile) || !profile->ll_ops.generate_key)
    return -EOPNOTSUPP;
  hw_enter (profile);
  ret = profile->ll_ops.generate_key (profile, lt_key);
  hw_exit (profile);
  return ret;
}

/* blk_crypto_prepare_key */
int
ic_crypto_prepare_key (struct ic_crypto_profile *profile,
                       const uint8_t *lt_key, size_t lt_key_size,
                       uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  int ret;

  if (!supports_wrapped (profile) || !profile->ll_ops.prepare_key)
    return -EOPNOTSUPP;
  hw_enter (profile);
  ret = profile->ll_ops.prepare_key (profile, lt_key, lt_key_size, eph_key);
  hw_exit (profile);
  return ret;
}

/* Copy @size bytes of @key into the caller's buffer of *@capacity bytes
 * (copy_to_user of the ioctls).
 */
static int
copy_out (const char *op, const uint8_t *key, int size, uint8_t *out,
          size_t *capacity)
{
  if ((size_t) size > *capacity) {
    ic_error ("%s: the key is %d bytes, the buffer only %zu", op, size,
              *capacity);
    return -EOVERFLOW;
  }
  memcpy (out, key, size);
  *capacity = size;
  return 0;
}

/* The EOPNOTSUPP of blk_crypto_ioctl() for a block device without a
 * crypto profile, which it returns before looking at the argument.
 */
static int
no_profile (const char *op)
{
  ic_error ("device: %s: no hardware-wrapped key support", op);
  return -EOPNOTSUPP;
}

/* blk_crypto_ioctl_import_key */
int
ic_crypto_ioctl_import_key (struct ic_crypto_profile *profile,
                            const uint8_t *raw_key, size_t raw_key_size,
                            uint8_t *lt_key, size_t *lt_key_size)
{
  uint8_t *buf;
  int ret;

  /* blk_crypto_ioctl(): a device without a profile, before anything. */
  if (!profile)
    return no_profile ("import key");
  if (raw_key_size < 16 || raw_key_size > IC_CRYPTO_MAX_RAW_KEY_SIZE) {
    ic_error ("import key: a raw key must be 16 to %u bytes, got %zu",
              IC_CRYPTO_MAX_RAW_KEY_SIZE, raw_key_size);
    return -EINVAL;
  }
  buf = ic_secure_alloc (IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  if (!buf)
    return -ENOMEM;
  ret = ic_crypto_import_key (profile, raw_key, raw_key_size, buf);
  if (ret > 0)
    ret = copy_out ("import key", buf, ret, lt_key, lt_key_size);
  else if (ret == -EOPNOTSUPP)
    ic_error ("%s: import key: no hardware-wrapped key support",
              profile ? profile->name : "device");
  ic_secure_free (buf, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  return ret;
}

/* blk_crypto_ioctl_generate_key */
int
ic_crypto_ioctl_generate_key (struct ic_crypto_profile *profile,
                              uint8_t *lt_key, size_t *lt_key_size)
{
  uint8_t *buf = ic_secure_alloc (IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  int ret;

  if (!buf)
    return -ENOMEM;
  ret = ic_crypto_generate_key (profile, buf);
  if (ret > 0)
    ret = copy_out ("generate key", buf, ret, lt_key, lt_key_size);
  else if (ret == -EOPNOTSUPP)
    ic_error ("%s: generate key: no hardware-wrapped key support",
              profile ? profile->name : "device");
  ic_secure_free (buf, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  return ret;
}

/* blk_crypto_ioctl_prepare_key */
int
ic_crypto_ioctl_prepare_key (struct ic_crypto_profile *profile,
                             const uint8_t *lt_key, size_t lt_key_size,
                             uint8_t *eph_key, size_t *eph_key_size)
{
  uint8_t *buf;
  int ret;

  if (!profile)
    return no_profile ("prepare key");
  if (lt_key_size > IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE) {
    ic_error ("prepare key: a long-term wrapped key is at most %u bytes, "
              "got %zu", IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE, lt_key_size);
    return -EINVAL;
  }
  buf = ic_secure_alloc (IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  if (!buf)
    return -ENOMEM;
  ret = ic_crypto_prepare_key (profile, lt_key, lt_key_size, buf);
  if (ret > 0)
    ret = copy_out ("prepare key", buf, ret, eph_key, eph_key_size);
  else if (ret == -EOPNOTSUPP)
    ic_error ("%s: prepare key: no hardware-wrapped key support",
              profile ? profile->name : "device");
  ic_secure_free (buf, IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE);
  return ret;
}

void
ic_crypto_profile_read_stats (struct ic_crypto_profile *profile,
                              struct ic_keyslot_stats *dst, bool reset)
{
  struct ic_keyslot_stats *s = &profile->stats;

#define READ(field) \
  dst->field = reset ? __atomic_exchange_n (&s->field, 0, __ATOMIC_RELAXED) \
                     : __atomic_load_n (&s->field, __ATOMIC_RELAXED)
#define READ_SHARDS(field) \
  do { \
    unsigned int i; \
    \
    dst->field = 0; \
    for (i = 0; i < IC_BRLOCK_SHARDS; i++) \
      dst->field += reset \
        ? __atomic_exchange_n (&profile->hit_shards[i].field, 0, \
                               __ATOMIC_RELAXED) \
        : __atomic_load_n (&profile->hit_shards[i].field, __ATOMIC_RELAXED); \
  } while (0)
  READ_SHARDS (hits);
  READ_SHARDS (misses);
  READ_SHARDS (programs);
#undef READ_SHARDS
  READ (program_failures);
  READ (evictions);
  READ (evict_busy);
  READ (reprograms);
  READ (waits);
#undef READ
  if (reset)
    ic_histogram_read_reset (&s->wait, &dst->wait);
  else
    ic_histogram_read (&s->wait, &dst->wait);
}

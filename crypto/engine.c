/* crypto/engine.c - see engine.h. */
#include <config.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cipher-pool.h"
#include "engine.h"
#include "error.h"
#include "hwkm.h"
#include "secmem.h"

/* One keyslot of the emulated hardware. */
struct hw_slot {
  /* The key this slot is really programmed with, or NULL.  Written under
   * the profile's lock (programming, eviction, reset); read atomically by
   * requests holding the slot.
   */
  const struct ic_crypto_key *key;
  struct ic_cipher_pool ciphers;
  /* Hardware-wrapped keys: two AES-256-XTS inline keys derived inside the
   * "hardware" (locked memory, allocated at the first wrapped key), the
   * current one being what the ciphers point at.  A new key is derived
   * into the other, so that a refused programming leaves the slot's key
   * as it was.  Written under the profile's lock while the slot is idle.
   */
  uint8_t *inline_keys;
  unsigned int inline_key_cur;  /* 0 or 1 */
};

struct ic_engine {
  struct ic_engine_config cfg;
  struct ic_crypto_profile profile;
  struct hw_slot *slots;
  /* The key manager, if key_types has HW_WRAPPED; immutable. */
  struct ic_hwkm *hwkm;
  /* Whether faults may make a program fail or wait (atomic; written
   * under fault_lock): if not, a program does not take fault_lock, whose
   * line would otherwise come from the core that programmed last.
   */
  bool program_faults;

  /* The gate (blk_mq_quiesce_queue of a reset): see ic_engine_enter(). */
  struct ic_brlock gate;
  pthread_mutex_t reset_lock;   /* one reset at a time */

  pthread_mutex_t fault_lock;   /* covers faults */
  struct ic_engine_faults faults;

  /* Counters: atomics. */
  uint64_t resets;
  uint64_t hw_evictions;
  /* Per shard (ic_brlock_shard), so that requests of different threads
   * write different cache lines.
   */
  struct {
    uint64_t requests[IC_ENCRYPTION_MODE_MAX];
    uint64_t bytes[IC_ENCRYPTION_MODE_MAX];
  } __attribute__ ((aligned (64))) io[IC_BRLOCK_SHARDS];
  uint64_t key_mismatches;
};

#define COUNT(field, n) __atomic_fetch_add (&(field), (n), __ATOMIC_RELAXED)

void
ic_engine_config_default (struct ic_engine_config *cfg, const char *name)
{
  int m;

  memset (cfg, 0, sizeof *cfg);
  snprintf (cfg->name, sizeof cfg->name, "%s", name ? name : "engine");
  cfg->num_slots = 32;
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    cfg->modes_supported[m] = IC_ALL_DATA_UNIT_SIZES;
  cfg->max_dun_bytes = 8;
  cfg->key_types = IC_CRYPTO_KEY_TYPE_RAW;
  cfg->program_us = 0;
}

/* Take @us microseconds, as precisely as a test rig expects: sleep for
 * all but the last 200 microseconds (nanosleep oversleeps by tens of
 * them), then spin to the deadline.
 */
static void
sleep_us (unsigned int us)
{
  uint64_t deadline = ic_now_ns () + (uint64_t) us * 1000;

  if (us > 200) {
    unsigned int coarse = us - 200;
    struct timespec ts = { coarse / 1000000, (coarse % 1000000) * 1000L };

    while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
      ;
  }
  while (ic_now_ns () < deadline)
    ;
}

/* A cheap per-thread random number in [0, 1). */
static double
random_unit (void)
{
  static __thread uint64_t state;

  if (state == 0)
    state = ic_now_ns () ^ (uint64_t) (uintptr_t) &state;
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return (state >> 11) * (1.0 / 9007199254740992.0);
}

/* Context: fault_lock held. */
static void
update_program_faults (struct ic_engine *e)
{
  __atomic_store_n (&e->program_faults,
                    e->faults.program_fail_count > 0 ||
                    e->faults.program_fail_prob > 0 ||
                    e->faults.program_delay_us > 0, __ATOMIC_RELEASE);
}

/* Decide whether this program fails, per the injected faults.
 *
 * Return: 0, or the -errno to fail with; *delay_us gets the extra delay.
 */
static int
program_fault (struct ic_engine *e, unsigned int *delay_us)
{
  int err = 0;

  if (!__atomic_load_n (&e->program_faults, __ATOMIC_ACQUIRE)) {
    *delay_us = 0;
    return 0;
  }
  pthread_mutex_lock (&e->fault_lock);
  *delay_us = e->faults.program_delay_us;
  if (e->faults.program_fail_count > 0) {
    e->faults.program_fail_count--;
    err = e->faults.program_errno ? e->faults.program_errno : EIO;
  }
  else if (e->faults.program_fail_prob > 0 &&
           random_unit () < e->faults.program_fail_prob)
    err = e->faults.program_errno ? e->faults.program_errno : EIO;
  update_program_faults (e);
  pthread_mutex_unlock (&e->fault_lock);
  return -err;
}

static void
wipe_inline_keys (struct hw_slot *hs)
{
  if (hs->inline_keys)
    ic_memzero_explicit (hs->inline_keys, 2 * IC_HWKM_INLINE_KEY_SIZE);
}

/* Program a hardware-wrapped key: unwrap its ephemeral blob and derive
 * the inline key inside the "hardware" (what ufs-qcom's program_key asks
 * of ICE), then key the slot's ciphers with it.
 *
 * Context: profile->lock held for writing; the slot is idle.
 */
static int
program_wrapped (struct ic_engine *e, struct hw_slot *hs,
                 const struct ic_crypto_key *key, unsigned int slot)
{
  uint8_t *spare;
  int err;

  /* All known hardware derives an AES-256-XTS key from a wrapped key. */
  if (key->crypto_cfg.crypto_mode != IC_ENCRYPTION_MODE_AES_256_XTS) {
    ic_error ("%s: program keyslot %u: key %s: a hardware-wrapped key "
              "derives an AES-256-XTS inline key, not a %s key", e->cfg.name,
              slot, key->name[0] ? key->name : "(unnamed)",
              ic_crypto_mode_name (key->crypto_cfg.crypto_mode));
    return -EINVAL;
  }
  if (!hs->inline_keys) {
    hs->inline_keys = ic_secure_alloc (2 * IC_HWKM_INLINE_KEY_SIZE);
    if (!hs->inline_keys) {
      ic_error ("%s: program keyslot %u: out of locked memory", e->cfg.name,
                slot);
      return -ENOMEM;
    }
  }
  spare = hs->inline_keys + (hs->inline_key_cur ^ 1) * IC_HWKM_INLINE_KEY_SIZE;
  err = ic_hwkm_derive_inline_key (e->hwkm, e->cfg.name, key->bytes,
                                   key->size, spare);
  if (err)
    return err;
  err = ic_cipher_pool_program (&hs->ciphers, IC_ENCRYPTION_MODE_AES_256_XTS,
                                spare, IC_HWKM_INLINE_KEY_SIZE);
  if (err) {
    ic_memzero_explicit (spare, IC_HWKM_INLINE_KEY_SIZE);
    return err;
  }
  /* The ciphers use the new one now: the old one goes. */
  hs->inline_key_cur ^= 1;
  ic_memzero_explicit (hs->inline_keys +
                       (hs->inline_key_cur ^ 1) * IC_HWKM_INLINE_KEY_SIZE,
                       IC_HWKM_INLINE_KEY_SIZE);
  __atomic_store_n (&hs->key, key, __ATOMIC_RELEASE);
  return 0;
}

/* ll_ops.keyslot_program.  Context: profile->lock held for writing. */
static int
engine_keyslot_program (struct ic_crypto_profile *profile,
                        const struct ic_crypto_key *key, unsigned int slot)
{
  struct ic_engine *e = profile->priv;
  struct hw_slot *hs = &e->slots[slot];
  unsigned int delay_us;
  int err;

  err = program_fault (e, &delay_us);
  /* The hardware takes its time, fault or not. */
  if (e->cfg.program_us + delay_us)
    sleep_us (e->cfg.program_us + delay_us);
  if (err) {
    ic_error ("%s: program keyslot %u: injected fault: %s", e->cfg.name,
              slot, ic_strerror (-err));
    return err;
  }
  if (!ic_crypto_cfg_supported (profile, &key->crypto_cfg)) {
    /* The block layer only sends what the profile advertises. */
    ic_error ("%s: program keyslot %u: %s/%u is not supported", e->cfg.name,
              slot, ic_crypto_mode_name (key->crypto_cfg.crypto_mode),
              key->crypto_cfg.data_unit_size);
    return -EOPNOTSUPP;
  }

  if (key->crypto_cfg.key_type == IC_CRYPTO_KEY_TYPE_HW_WRAPPED)
    return program_wrapped (e, hs, key, slot);

  /* A refused key leaves the slot as it was. */
  err = ic_cipher_pool_program (&hs->ciphers, key->crypto_cfg.crypto_mode,
                                key->bytes, key->size);
  if (err)
    return err;
  /* No derived key of an earlier wrapped key stays behind. */
  wipe_inline_keys (hs);
  __atomic_store_n (&hs->key, key, __ATOMIC_RELEASE);
  return 0;
}

/* ll_ops.keyslot_evict.  Context: profile->lock held for writing. */
static int
engine_keyslot_evict (struct ic_crypto_profile *profile,
                      const struct ic_crypto_key *key, int slot)
{
  struct ic_engine *e = profile->priv;
  struct hw_slot *hs;

  if (slot < 0 || (unsigned int) slot >= e->cfg.num_slots)
    return -EINVAL;
  hs = &e->slots[slot];
  __atomic_store_n (&hs->key, NULL, __ATOMIC_RELEASE);
  ic_cipher_pool_clear (&hs->ciphers);
  /* The slot is idle: no request reads the derived key. */
  wipe_inline_keys (hs);
  COUNT (e->hw_evictions, 1);
  return 0;
}

/* The wrapped-key ll_ops: the key manager does the work. */
static int
engine_derive_sw_secret (struct ic_crypto_profile *profile,
                         const uint8_t *eph_key, size_t eph_key_size,
                         uint8_t sw_secret[IC_CRYPTO_SW_SECRET_SIZE])
{
  struct ic_engine *e = profile->priv;

  return ic_hwkm_derive_sw_secret (e->hwkm, e->cfg.name, eph_key,
                                   eph_key_size, sw_secret);
}

static int
engine_import_key (struct ic_crypto_profile *profile, const uint8_t *raw_key,
                   size_t raw_key_size,
                   uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  struct ic_engine *e = profile->priv;

  return ic_hwkm_import_key (e->hwkm, e->cfg.name, raw_key, raw_key_size,
                             lt_key);
}

static int
engine_generate_key (struct ic_crypto_profile *profile,
                     uint8_t lt_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  struct ic_engine *e = profile->priv;

  return ic_hwkm_generate_key (e->hwkm, e->cfg.name, lt_key);
}

static int
engine_prepare_key (struct ic_crypto_profile *profile, const uint8_t *lt_key,
                    size_t lt_key_size,
                    uint8_t eph_key[IC_CRYPTO_MAX_HW_WRAPPED_KEY_SIZE])
{
  struct ic_engine *e = profile->priv;

  return ic_hwkm_prepare_key (e->hwkm, e->cfg.name, lt_key, lt_key_size,
                              eph_key);
}

struct ic_engine *
ic_engine_new (const struct ic_engine_config *cfg)
{
  struct ic_engine *e;
  unsigned int i;
  int m;

  if (cfg->num_slots < 1 || cfg->num_slots > IC_ENGINE_MAX_SLOTS) {
    ic_error ("%s: keyslots=%u out of range: 1 to %u", cfg->name,
              cfg->num_slots, IC_ENGINE_MAX_SLOTS);
    errno = EINVAL;
    return NULL;
  }
  if (cfg->max_dun_bytes < 1 || cfg->max_dun_bytes > IC_CRYPTO_MAX_IV_SIZE) {
    ic_error ("%s: max-dun-bytes=%u out of range: 1 to %u", cfg->name,
              cfg->max_dun_bytes, IC_CRYPTO_MAX_IV_SIZE);
    errno = EINVAL;
    return NULL;
  }
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    if (cfg->modes_supported[m] & ~IC_ALL_DATA_UNIT_SIZES) {
      ic_error ("%s: %s: data unit sizes must be 512 to 65536", cfg->name,
                ic_crypto_mode_name (m));
      errno = EINVAL;
      return NULL;
    }

  /* Cache-line aligned: the per-shard counters are. */
  if (posix_memalign ((void **) &e, 64, sizeof *e) != 0)
    goto out_nomem;
  memset (e, 0, sizeof *e);
  e->cfg = *cfg;
  if (ic_crypto_profile_init (&e->profile, cfg->num_slots) < 0)
    goto out_free;
  e->slots = calloc (cfg->num_slots, sizeof e->slots[0]);
  if (!e->slots)
    goto out_destroy_profile;
  for (i = 0; i < cfg->num_slots; i++)
    ic_cipher_pool_init (&e->slots[i].ciphers);

  e->profile.ll_ops.keyslot_program = engine_keyslot_program;
  e->profile.ll_ops.keyslot_evict = engine_keyslot_evict;
  if (cfg->key_types & IC_CRYPTO_KEY_TYPE_HW_WRAPPED) {
    e->hwkm = cfg->hwkm ? ic_hwkm_get (cfg->hwkm) : ic_hwkm_new_volatile ();
    if (!e->hwkm)
      goto out_free_slots;
    e->profile.ll_ops.derive_sw_secret = engine_derive_sw_secret;
    e->profile.ll_ops.import_key = engine_import_key;
    e->profile.ll_ops.generate_key = engine_generate_key;
    e->profile.ll_ops.prepare_key = engine_prepare_key;
  }
  e->profile.max_dun_bytes_supported = cfg->max_dun_bytes;
  e->profile.key_types_supported = cfg->key_types;
  memcpy (e->profile.modes_supported, cfg->modes_supported,
          sizeof e->profile.modes_supported);
  e->profile.modes_supported[IC_ENCRYPTION_MODE_INVALID] = 0;
  e->profile.priv = e;
  snprintf (e->profile.name, sizeof e->profile.name, "%s", cfg->name);

  ic_brlock_init (&e->gate);
  pthread_mutex_init (&e->reset_lock, NULL);
  pthread_mutex_init (&e->fault_lock, NULL);
  e->faults.program_errno = EIO;
  return e;

out_free_slots:
  for (i = 0; i < cfg->num_slots; i++)
    ic_cipher_pool_destroy (&e->slots[i].ciphers);
  free (e->slots);
out_destroy_profile:
  ic_crypto_profile_destroy (&e->profile);
out_free:
  free (e);
out_nomem:
  ic_error ("%s: out of memory", cfg->name);
  errno = ENOMEM;
  return NULL;
}

void
ic_engine_free (struct ic_engine *e)
{
  unsigned int i;

  if (!e)
    return;
  for (i = 0; i < e->cfg.num_slots; i++) {
    ic_cipher_pool_destroy (&e->slots[i].ciphers);
    ic_secure_free (e->slots[i].inline_keys, 2 * IC_HWKM_INLINE_KEY_SIZE);
  }
  free (e->slots);
  ic_hwkm_put (e->hwkm);
  ic_crypto_profile_destroy (&e->profile);
  ic_brlock_destroy (&e->gate);
  pthread_mutex_destroy (&e->reset_lock);
  pthread_mutex_destroy (&e->fault_lock);
  free (e);
}

const char *
ic_engine_name (const struct ic_engine *e)
{
  return e->cfg.name;
}

const struct ic_engine_config *
ic_engine_config (const struct ic_engine *e)
{
  return &e->cfg;
}

struct ic_crypto_profile *
ic_engine_profile (struct ic_engine *e)
{
  return &e->profile;
}

/* The gate is a brlock: requests hold it for reading (no shared cache
 * line), a reset for writing, which holds new requests and waits for those
 * inside to finish, as blk_mq_quiesce_queue does.
 */
void
ic_engine_enter (struct ic_engine *e)
{
  ic_brlock_read_lock (&e->gate);
}

void
ic_engine_exit (struct ic_engine *e)
{
  ic_brlock_read_unlock (&e->gate);
}

/* Every slot forgets its key.  With @drained (a reset: no request is
 * inside the engine), the derived keys of wrapped keys are wiped too;
 * otherwise a request may still be keying a cipher from one, and it stays
 * in locked memory until the slot is programmed again or freed.
 */
static void
lose_keys (struct ic_engine *e, bool drained)
{
  unsigned int i;

  /* Under the profile lock, like every change of hardware state. */
  ic_crypto_hw_enter (&e->profile);
  for (i = 0; i < e->cfg.num_slots; i++) {
    __atomic_store_n (&e->slots[i].key, NULL, __ATOMIC_RELEASE);
    ic_cipher_pool_clear (&e->slots[i].ciphers);
    if (drained)
      wipe_inline_keys (&e->slots[i]);
  }
  ic_crypto_hw_exit (&e->profile);
}

unsigned int
ic_engine_reset (struct ic_engine *e)
{
  unsigned int failed;

  pthread_mutex_lock (&e->reset_lock);
  ic_brlock_write_lock (&e->gate);

  /* The controller comes back with empty keyslots ... */
  lose_keys (e, true);
  /* ... and the driver programs them again (ufshcd_crypto_enable). */
  failed = ic_crypto_reprogram_all_keys (&e->profile);
  COUNT (e->resets, 1);
  if (failed)
    ic_error ("%s: reset: %u keyslot(s) could not be reprogrammed",
              e->cfg.name, failed);

  ic_brlock_write_unlock (&e->gate);
  pthread_mutex_unlock (&e->reset_lock);
  return failed;
}

void
ic_engine_lose_keys (struct ic_engine *e)
{
  lose_keys (e, false);
}

void
ic_engine_set_faults (struct ic_engine *e,
                      const struct ic_engine_faults *faults)
{
  pthread_mutex_lock (&e->fault_lock);
  e->faults = *faults;
  if (!e->faults.program_errno)
    e->faults.program_errno = EIO;
  update_program_faults (e);
  pthread_mutex_unlock (&e->fault_lock);
}

void
ic_engine_get_faults (struct ic_engine *e, struct ic_engine_faults *faults)
{
  pthread_mutex_lock (&e->fault_lock);
  *faults = e->faults;
  pthread_mutex_unlock (&e->fault_lock);
}

static int
engine_crypt (struct ic_engine *e, struct ic_crypto_keyslot *slot,
              const struct ic_crypt_ctx *ctx, void *dst, const void *src,
              size_t len, bool enc)
{
  const struct ic_crypto_key *key = ctx->key;
  unsigned int du = key->crypto_cfg.data_unit_size;
  unsigned int idx = ic_crypto_keyslot_index (slot);
  struct hw_slot *hs = &e->slots[idx];
  struct ic_pooled_cipher *pc;
  uint64_t last_dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  int err;

  if (__atomic_load_n (&hs->key, __ATOMIC_ACQUIRE) != key) {
    COUNT (e->key_mismatches, 1);
    ic_error ("%s: keyslot %u does not hold key %s: the request would be "
              "%s with another key", e->cfg.name, idx,
              key->name[0] ? key->name : "(unnamed)",
              enc ? "encrypted" : "decrypted");
    return -EIO;
  }
  /* Every data unit's DUN must fit, the last one's included. */
  memcpy (last_dun, ctx->dun, sizeof last_dun);
  ic_crypt_dun_increment (last_dun, len >= du ? len / du - 1 : 0);
  if (ic_crypt_dun_exceeds (ctx->dun, e->cfg.max_dun_bytes) ||
      ic_crypt_dun_exceeds (last_dun, e->cfg.max_dun_bytes)) {
    ic_error ("%s: DUN exceeds the engine's %u bytes", e->cfg.name,
              e->cfg.max_dun_bytes);
    return -EIO;
  }

  pc = ic_cipher_pool_get (&hs->ciphers);
  if (!pc)
    return -errno;
  if (enc)
    err = ic_cipher_encrypt (ic_pooled_cipher (pc), dst, src, len,
                             key->crypto_cfg.data_unit_size, ctx->dun);
  else
    err = ic_cipher_decrypt_holes (ic_pooled_cipher (pc), dst, src, len,
                                   key->crypto_cfg.data_unit_size, ctx->dun);
  ic_cipher_pool_put (&hs->ciphers, pc);
  if (err == 0) {
    unsigned int shard = ic_brlock_shard ();

    COUNT (e->io[shard].requests[key->crypto_cfg.crypto_mode], 1);
    COUNT (e->io[shard].bytes[key->crypto_cfg.crypto_mode], len);
  }
  return err;
}

int
ic_engine_encrypt (struct ic_engine *e, struct ic_crypto_keyslot *slot,
                   const struct ic_crypt_ctx *ctx, void *dst, const void *src,
                   size_t len)
{
  return engine_crypt (e, slot, ctx, dst, src, len, true);
}

int
ic_engine_decrypt (struct ic_engine *e, struct ic_crypto_keyslot *slot,
                   const struct ic_crypt_ctx *ctx, void *dst, const void *src,
                   size_t len)
{
  return engine_crypt (e, slot, ctx, dst, src, len, false);
}

void
ic_engine_read_stats (struct ic_engine *e, struct ic_engine_stats *st,
                      bool reset)
{
  int m;

#define READ(dst, src) \
  (dst) = reset ? __atomic_exchange_n (&(src), 0, __ATOMIC_RELAXED) \
                : __atomic_load_n (&(src), __ATOMIC_RELAXED)
  ic_crypto_profile_read_stats (&e->profile, &st->slots, reset);
  READ (st->resets, e->resets);
  READ (st->hw_evictions, e->hw_evictions);
  READ (st->key_mismatches, e->key_mismatches);
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++) {
    unsigned int i;

    st->requests[m] = st->bytes[m] = 0;
    for (i = 0; i < IC_BRLOCK_SHARDS; i++) {
      uint64_t n;

      READ (n, e->io[i].requests[m]);
      st->requests[m] += n;
      READ (n, e->io[i].bytes[m]);
      st->bytes[m] += n;
    }
  }
#undef READ
}

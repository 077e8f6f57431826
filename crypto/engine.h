/* crypto/engine.h - the emulated inline-encryption hardware of a leaf
 * device: what a UFS or eMMC host controller's crypto engine is to Linux
 * (drivers/ufs/core/ufshcd-crypto.c, drivers/mmc/host/cqhci-crypto.c).
 *
 * An engine has capabilities (modes x data unit sizes, max DUN bytes, key
 * types), a number of keyslots (1..1024) managed by its crypto profile
 * (crypto/profile.h), a cost of programming a slot, and faults that a test
 * rig can inject.  Its "hardware" keeps, per slot, the key it was really
 * programmed with; en/decryption uses that key and checks it is the
 * request's (a request whose slot holds another key is a bug the engine
 * reports instead of writing wrong ciphertext).
 *
 * Reset models a host controller reset: new requests are held at the
 * engine's gate, requests inside drain, every slot loses its key, and
 * ic_crypto_reprogram_all_keys() programs them again, as UFS does on every
 * (re)initialisation.
 *
 * Hardware-wrapped keys (Linux 6.15; ufs-qcom / sdhci-msm with Qualcomm
 * ICE): an engine whose key_types include IC_CRYPTO_KEY_TYPE_HW_WRAPPED
 * has a key manager (crypto/hwkm.h) and the four wrapped-key ll_ops
 * (derive_sw_secret, import_key, generate_key, prepare_key).  Such a key
 * holds only its ephemerally-wrapped blob; programming a slot unwraps it
 * and derives the AES-256-XTS inline key inside the "hardware", into
 * locked per-slot memory the slot's ciphers use, so a reset reprograms
 * from the blobs without the raw key.  As on real hardware, the derived
 * key is always an AES-256-XTS key: a wrapped key of another mode is
 * refused with EINVAL.
 *
 * Threading: thread-safe.  The profile's lock serialises programming and
 * eviction; engine->fault_lock covers the fault settings only; the gate is
 * a counter.  No lock is held during en/decryption.
 */
#ifndef IC_ENGINE_H
#define IC_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypt-ctx.h"
#include "profile.h"

#define IC_ENGINE_MAX_SLOTS 1024

struct ic_engine;

/* What an engine is built with. */
struct ic_engine_config {
  char name[64];
  unsigned int num_slots;       /* 1 .. IC_ENGINE_MAX_SLOTS */
  /* Per mode, a mask of data unit sizes (bit i => 2^i bytes). */
  unsigned int modes_supported[IC_ENCRYPTION_MODE_MAX];
  unsigned int max_dun_bytes;   /* 1 .. 32 */
  unsigned int key_types;       /* mask of enum ic_crypto_key_type */
  unsigned int program_us;      /* cost of programming one slot */
  /* With IC_CRYPTO_KEY_TYPE_HW_WRAPPED in key_types: the hardware key
   * manager (crypto/hwkm.h) that wraps and unwraps the engine's keys; the
   * engine takes its own reference.  NULL: the engine makes a volatile
   * one (its long-term blobs die with the engine).  Ignored otherwise.
   */
  struct ic_hwkm *hwkm;
};

/* Fill @cfg with the defaults: 32 slots, every mode at every data unit
 * size from 512 to 65536, 8 DUN bytes, raw keys, free programming.
 */
void ic_engine_config_default (struct ic_engine_config *cfg,
                               const char *name);

/* Faults a test rig injects.  All zero: none. */
struct ic_engine_faults {
  unsigned int program_fail_count; /* fail the next N programs */
  double program_fail_prob;        /* fail each program with probability */
  int program_errno;               /* errno of a failed program (EIO) */
  unsigned int program_delay_us;   /* extra delay of every program */
};

/* Counters of an engine.  See also struct ic_keyslot_stats. */
struct ic_engine_stats {
  struct ic_keyslot_stats slots;
  uint64_t resets;
  uint64_t hw_evictions;        /* keyslot_evict calls that cleared a slot */
  uint64_t requests[IC_ENCRYPTION_MODE_MAX];
  uint64_t bytes[IC_ENCRYPTION_MODE_MAX];
  uint64_t key_mismatches;      /* requests whose slot held another key */
};

/* Create an engine.
 *
 * Return: the engine, or NULL with errno set (EINVAL for a bad config)
 * and the reason in ic_last_error().
 */
struct ic_engine *ic_engine_new (const struct ic_engine_config *cfg);

/* Free an engine.  No request may be inside it.  NULL is ignored. */
void ic_engine_free (struct ic_engine *engine);

const char *ic_engine_name (const struct ic_engine *engine);
const struct ic_engine_config *ic_engine_config (const struct ic_engine *e);

/* The engine's crypto profile (for ic_crypto_get_keyslot() and
 * ic_crypto_evict_key()).
 */
struct ic_crypto_profile *ic_engine_profile (struct ic_engine *engine);

/* Pass the engine's gate before taking a keyslot; leave it when the
 * request is done with the engine.  Waits while a reset is in progress.
 *
 * Context: may block in enter; exit never blocks.
 */
void ic_engine_enter (struct ic_engine *engine);
void ic_engine_exit (struct ic_engine *engine);

/* Encrypt @len bytes of @src into @dst as data units of @ctx's key from
 * @ctx's DUN, with the key in @slot.
 *
 * Context: inside the gate, holding @slot; takes no lock during the
 * en/decryption.
 * Return: 0, or -EIO if the slot does not hold @ctx's key or the DUN
 * exceeds the engine's DUN bytes (both are bugs above, reported), or
 * -errno from the cipher.
 */
int ic_engine_encrypt (struct ic_engine *engine,
                       struct ic_crypto_keyslot *slot,
                       const struct ic_crypt_ctx *ctx,
                       void *dst, const void *src, size_t len);

/* Decrypt @len bytes of @src into @dst (which may be @src); all-zero
 * data units are holes and stay zero (ic_cipher_decrypt_holes()).
 * Otherwise as ic_engine_encrypt().
 */
int ic_engine_decrypt (struct ic_engine *engine,
                       struct ic_crypto_keyslot *slot,
                       const struct ic_crypt_ctx *ctx,
                       void *dst, const void *src, size_t len);

/* Reset the engine: hold new requests, drain, lose every key, reprogram
 * them all, let requests go on.
 *
 * Context: may block (drains in-flight requests).
 * Return: the number of slots whose reprogramming failed.
 */
unsigned int ic_engine_reset (struct ic_engine *engine);

/* Emulate a buggy driver for tests: every slot loses its key and nothing
 * reprograms them.  Later requests on those slots fail with EIO and an
 * error naming the slot (what ic_engine_encrypt() checks).
 */
void ic_engine_lose_keys (struct ic_engine *engine);

/* Set / read the injected faults. */
void ic_engine_set_faults (struct ic_engine *engine,
                           const struct ic_engine_faults *faults);
void ic_engine_get_faults (struct ic_engine *engine,
                           struct ic_engine_faults *faults);

/* Copy the counters; with @reset, zero them after. */
void ic_engine_read_stats (struct ic_engine *engine,
                           struct ic_engine_stats *stats, bool reset);

/* The mask of every data unit size this project accepts (512..65536). */
#define IC_ALL_DATA_UNIT_SIZES 0x1fe00u

#endif /* IC_ENGINE_H */

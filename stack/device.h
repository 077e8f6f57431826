/* stack/device.h - a block device of the stack: a leaf (memory, file,
 * remote NBD) or a stacked device with a table of targets.  Follows the
 * crypto side of Linux block/blk-crypto.c: blk_crypto_submit_bio() decides
 * per request between the device's native inline encryption and the
 * fallback; blk_crypto_evict_key() picks the profile to evict from.
 *
 * A device has a size, optional crypto profile (NULL: no inline
 * encryption; its requests with a context go through the fallback) and a
 * submit operation.  Thread-safe: submit is called from many threads at
 * once; devices take no lock across I/O or en/decryption.
 */
#ifndef IC_DEVICE_H
#define IC_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "bio.h"
#include "profile.h"

struct ic_device;
struct ic_target;

/* Feature bits of a device. */
#define IC_DEV_CAN_FUA        0x1  /* honours IC_BIO_FUA natively */
#define IC_DEV_CAN_TRIM       0x2  /* TRIM deallocates */
#define IC_DEV_CAN_ZERO       0x4  /* WRITE_ZEROES without writing data */
#define IC_DEV_CAN_MULTI_CONN 0x8  /* flushes are visible to all users */
#define IC_DEV_READONLY       0x10 /* refuses writes (a leaf given readonly) */

struct ic_device_ops {
  const char *type;             /* "memory", "file", "nbd", "stacked" */
  /* Carry out @bio.  A bio with a crypto context reaches this only if the
   * device's profile supports the context natively.  A write that fails
   * after changing part of its range sets bio->partial.
   * Return: 0 or -errno.
   */
  int (*submit) (struct ic_device *dev, struct ic_bio *bio);
  /* Carry out a READ or WRITE whose context the profile does not support,
   * en/decrypting it with the fallback (ic_crypto_fallback_encrypt()).
   * Optional: without it ic_device_submit() encrypts a write a piece of
   * IC_BIO_PIECE bytes at a time into a bounce buffer and submits each
   * plain, and decrypts a read once it came back whole.  Leaves have it,
   * to en/decrypt at the backend (leaf.h).
   */
  int (*submit_fallback) (struct ic_device *dev, struct ic_bio *bio);
  /* Refuse (-EINVAL, reported) @bio, a READ or WRITE with a data unit
   * (ic_bio_unit()), if a boundary at this device or below would cut one
   * of its data units in two: what submitting it would find piece by
   * piece, found before any piece goes down.  Optional: devices that
   * never cut a request (leaves) have none.
   */
  int (*check_cuts) (struct ic_device *dev, const struct ic_bio *bio);
  /* Free the device.  Optional. */
  void (*destroy) (struct ic_device *dev);
};

struct ic_device {
  /* public: set by the creator. */
  char name[64];
  uint64_t size;                /* bytes */
  unsigned int features;        /* IC_DEV_* */
  /* The alignment of offsets and lengths the device itself needs (an NBD
   * export's minimum block size, a power of 2), or 0: any byte.  Stacked
   * devices leave it 0: ic_device_min_block() looks below them.
   */
  uint32_t min_block;
  /* The device's crypto profile, or NULL.  Its capabilities may grow
   * while requests run (stacked devices), never shrink.
   */
  struct ic_crypto_profile *profile;
  const struct ic_device_ops *ops;
  /* Requests the profile cannot take go through the fallback; if false
   * they fail with EOPNOTSUPP (no CONFIG_BLK_INLINE_ENCRYPTION_FALLBACK).
   */
  bool fallback_enabled;

  /* private: counters, atomics. */
  uint64_t fallback_requests;
  uint64_t fallback_bytes;
};

/* Set the common fields of a new device. */
void ic_device_init (struct ic_device *dev, const char *name, uint64_t size,
                     const struct ic_device_ops *ops);

/* ops->check_cuts of @dev, if it has one and @bio has a data unit.
 * Return: 0 or -EINVAL (reported).
 */
int ic_device_check_cuts (struct ic_device *dev, const struct ic_bio *bio);

/* Submit @bio to @dev (blk_crypto_submit_bio).  A bio with a context must
 * be data-unit aligned (else -EINVAL, nothing done); if @dev's profile
 * supports the context natively the bio goes to the device as it is,
 * otherwise through the fallback (writes encrypted into a bounce buffer,
 * reads decrypted in place after a successful read), or -EOPNOTSUPP
 * without one.  Checks the request lies inside the device (-EINVAL... the
 * caller's bug, reported).  A WRITE, WRITE_ZEROES or TRIM that fails after
 * changing part of its range sets bio->partial.
 *
 * Context: may block; holds no lock across I/O.
 * Return: 0 or -errno.
 */
int ic_device_submit (struct ic_device *dev, struct ic_bio *bio);

/* Refuse @bio, at @offset of the device named @name, because splitting
 * it @bytes in (at a target or stripe boundary) would cut a data unit
 * (ic_bio_cuts_unit()): either side could then fail alone and leave the
 * unit half old, half new.  Upstream fails such a bio with EIO on the
 * inline-encryption path (bio_crypt_check_alignment) but splits it on
 * the fallback path.  Here both fail, with EINVAL: the request does not
 * fit the layout, which says nothing about the health of the device (a
 * mirror keeps the leg).  A table refuses before any piece goes down; a
 * device further down (a striped target after a linear one) refuses its
 * piece, after earlier pieces went through whole.
 *
 * Return: -EINVAL, with the reason in ic_error().
 */
int ic_device_refuse_cut (const char *name, uint64_t offset,
                          const struct ic_bio *bio, uint64_t bytes);

/* The largest min_block of @dev and of the devices below it in the live
 * tables, at least 1: what requests to @dev must be aligned to
 * (the logical block size that blk_stack_limits() passes up).
 */
uint32_t ic_device_min_block (struct ic_device *dev);

/* An iterate_devices callback: raise *(uint32_t *)@data to @child's
 * ic_device_min_block().
 */
int ic_device_max_min_block (struct ic_target *ti, struct ic_device *child,
                             uint64_t start, uint64_t len, void *data);

/* True if @dev, or any device below it in the live tables, is read-only
 * (IC_DEV_READONLY): an export on it must not offer writes.
 */
bool ic_device_is_readonly (struct ic_device *dev);

/* True if @dev can take @cfg natively (blk_crypto_config_supported_natively). */
bool ic_device_supports_natively (const struct ic_device *dev,
                                  const struct ic_crypto_config *cfg);

/* Evict @key from @dev (blk_crypto_evict_key): from the device's profile
 * if it supports the key's config natively, else from the fallback.
 * Upstream returns void and logs; we return the result so that control
 * commands can report it: 0, -EBUSY (still in use; unlinked anyway), or a
 * driver error.
 *
 * Context: may block.
 */
int ic_device_evict_key (struct ic_device *dev,
                         const struct ic_crypto_key *key);

/* Free @dev through its ops.  NULL is ignored. */
void ic_device_destroy (struct ic_device *dev);

/* Read the fallback counters of @dev; with @reset, zero them after. */
void ic_device_read_fallback_stats (struct ic_device *dev,
                                    uint64_t *requests, uint64_t *bytes,
                                    bool reset);

#endif /* IC_DEVICE_H */

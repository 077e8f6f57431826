/* stack/export.h - an NBD export: a device plus a context map that gives
 * each range of the export its crypto context, the way fscrypt gives each
 * file its key and DUNs (Linux fs/crypto/inline_crypt.c,
 * fscrypt_set_bio_crypt_ctx).
 *
 * A map is a sorted list of disjoint ranges, each bound to a key and a DUN
 * base: the data unit at export offset o in range r has
 *   DUN = r.dun_base + (o - r.start) / data_unit_size.
 * Offsets outside every range are plain I/O.  A request crossing ranges is
 * split into one bio per piece, each with its own context, submitted one
 * after the other (each takes and releases its keyslot on its own, so no
 * piece waits for a slot while another holds one).  Inside an encrypted
 * range a request must be data-unit aligned, else the whole request fails
 * with EINVAL before anything is done.
 *
 * Unwritten, trimmed and zeroed data units read as zeros (the engine and
 * the fallback leave all-zero ciphertext undecrypted; see
 * ic_cipher_decrypt_holes()), so WRITE_ZEROES and TRIM only zero the
 * backing store.
 *
 * Threading: requests run in parallel.  The map is an immutable,
 * reference-counted snapshot; a request holds a reference for its life,
 * and a new map replaces the old one atomically: map_lock, a reader/writer
 * lock whose read side shares no cache line between threads
 * (crypto/brlock.h), is held for reading by each request for its whole
 * life, and for writing only to swap the pointer, which waits for the
 * requests on the old map to finish (like synchronize_rcu()).  Each map
 * counts itself in the refs of its keys until it is freed, so a key
 * whose refs is 0 is used by no map and no request (nor by a control
 * command, which counts itself there too).
 *
 * Changes of the map (a read of the current one, a new one made from it,
 * the swap) are serialised by update_lock, held across that wait, so
 * that two changes at once both count.  The control server's looks at the
 * map (ic_export_uses_key, ic_export_get_map) take neither: they must
 * answer while a change waits for slow or hung requests, and new requests
 * wait behind it.  They take peek_lock, which the swap takes too, only
 * for the pointer's assignment.
 */
#ifndef IC_EXPORT_H
#define IC_EXPORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "brlock.h"
#include "device.h"

struct ic_ctx_map;

/* One range of a context map. */
struct ic_ctx_range {
  uint64_t start;               /* bytes into the export */
  uint64_t len;                 /* bytes */
  const struct ic_crypto_key *key; /* NULL: plain I/O */
  uint64_t dun_base[IC_CRYPTO_DUN_ARRAY_SIZE];
};

/* Counters, all atomics. */
struct ic_export_stats {
  uint64_t reads;
  uint64_t writes;
  uint64_t bytes_read;
  uint64_t bytes_written;
  uint64_t zeroes;
  uint64_t trims;
  uint64_t flushes;
  uint64_t errors;
};

/* The longest description, in bytes: NBD's limit on its strings
 * (NBD_MAX_STRING), which nbdkit enforces too.
 */
#define IC_EXPORT_DESCRIPTION_MAX 4096

struct ic_export {
  /* public: */
  char name[64];
  char description[IC_EXPORT_DESCRIPTION_MAX + 1];
  struct ic_device *dev;        /* not owned */
  uint64_t size;                /* == dev->size */
  /* The least minimum block size told to clients (block-size=), a power
   * of two dividing size; 0: none.  Set before the export serves.
   */
  uint32_t block_floor;

  /* private: */
  /* Locks, in the order they are taken.  update_lock serialises changes
   * of the map and is held while one waits for requests.  map_lock and
   * peek_lock cover the pointer, for requests and for the control plane;
   * it is written holding both.
   */
  pthread_mutex_t update_lock;
  struct ic_brlock map_lock;
  pthread_mutex_t peek_lock;
  struct ic_ctx_map *map;       /* protected by map_lock and peek_lock */
  /* Connected clients by the minimum block size they were told, [i] for
   * 2^i bytes (ic_export_tell_block_size); protected by update_lock.
   */
  unsigned int told[32];
  /* Counters per shard (ic_brlock_shard): threads write their own line. */
  struct {
    struct ic_export_stats s;
  } __attribute__ ((aligned (64))) stats[IC_BRLOCK_SHARDS];
};

/* Create an export of all of @dev with an empty map.
 *
 * Return: the export, or NULL with errno = ENOMEM.
 */
struct ic_export *ic_export_new (const char *name, struct ic_device *dev);

/* Free an export and its map.  No request may be running.  NULL is
 * ignored.
 */
void ic_export_free (struct ic_export *exp);

/* Check @n ranges for the export: inside it, disjoint, a key's ranges
 * data-unit aligned, a key's data unit size dividing the export's size
 * (it becomes the minimum block size clients are told, and a client
 * could not reach the export's tail), and every DUN of a range within
 * its key's dun_bytes.  The ranges need not be sorted.  @what prefixes
 * messages.
 *
 * Return: 0, or -EINVAL with the reason in ic_last_error().
 */
int ic_export_check_ranges (const struct ic_export *exp, const char *what,
                            const struct ic_ctx_range *ranges, size_t n);

/* Replace the whole map with @n ranges (checked as above).  Refused
 * (EBUSY) if a key in them has data units larger than the minimum block
 * size some connected client was told: its requests, aligned to that,
 * would be refused.
 *
 * Context: takes update_lock, then map_lock for writing: waits for the
 * requests in flight on the old map to finish, and for other changes of
 * the map.
 * Return: 0, -EINVAL, -EBUSY or -ENOMEM.
 */
int ic_export_set_map (struct ic_export *exp,
                       const struct ic_ctx_range *ranges, size_t n);

/* Map [@start, @start+@len) to @key (NULL: plain) with @dun_base,
 * replacing whatever the map said for that range; ranges around it are
 * trimmed or split (their DUNs stay as they were).
 *
 * Return: as ic_export_set_map().
 */
int ic_export_map_range (struct ic_export *exp, uint64_t start, uint64_t len,
                         const struct ic_crypto_key *key,
                         const uint64_t dun_base[IC_CRYPTO_DUN_ARRAY_SIZE]);

/* Copy the current map into a new array (*rangesp, free() it) of *np
 * ranges.
 *
 * Context: takes peek_lock; never waits for requests, nor for a change
 * of the map that waits for them.
 * Return: 0 or -ENOMEM.
 */
int ic_export_get_map (struct ic_export *exp, struct ic_ctx_range **rangesp,
                       size_t *np);

/* True if some range of the current map uses @key (a change of the map
 * still waiting for requests is not current yet).
 *
 * Context: as ic_export_get_map().
 */
bool ic_export_uses_key (struct ic_export *exp,
                         const struct ic_crypto_key *key);

/* The largest data unit size of any key in the map, or 0 if none: the
 * export's minimum I/O size.
 */
unsigned int ic_export_max_data_unit_size (struct ic_export *exp);

/* The minimum block size to tell a connecting client: the largest of the
 * map's data unit size, block_floor and @dev_min (the device's); the
 * client is counted as told it until ic_export_forget_block_size(), so
 * that no map change makes its aligned requests fail (see
 * ic_export_set_map()).
 *
 * Context: takes update_lock: waits for a change of the map.
 */
uint32_t ic_export_tell_block_size (struct ic_export *exp, uint32_t dev_min);
void ic_export_forget_block_size (struct ic_export *exp, uint32_t told);

/* Requests.  @flags: IC_BIO_FUA; for zero, IC_BIO_NOUNMAP.
 *
 * Context: may block; holds a map reference, never a lock, across I/O.
 * Return: 0 or -errno (the reason in ic_last_error()).
 */
int ic_export_pread (struct ic_export *exp, void *buf, uint64_t len,
                     uint64_t offset);
int ic_export_pwrite (struct ic_export *exp, const void *buf, uint64_t len,
                      uint64_t offset, unsigned int flags);
int ic_export_zero (struct ic_export *exp, uint64_t len, uint64_t offset,
                    unsigned int flags);
int ic_export_trim (struct ic_export *exp, uint64_t len, uint64_t offset,
                    unsigned int flags);
int ic_export_flush (struct ic_export *exp);

/* Copy the counters; with @reset, zero them after. */
void ic_export_read_stats (struct ic_export *exp,
                           struct ic_export_stats *stats, bool reset);

#endif /* IC_EXPORT_H */

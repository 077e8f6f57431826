/* stack/leaf.h - leaf devices: where requests reach storage.  A leaf has a
 * backend (memory, file, remote NBD export) and optionally an emulated
 * inline-encryption engine (crypto/engine.h), whose profile becomes the
 * leaf's: then requests with a context take a keyslot of the engine for
 * their whole life (as a blk-mq request does), the engine encrypts writes
 * into a bounce buffer on the way down and decrypts reads in place on the
 * way up, and the slot is released before the request completes.  A leaf
 * without an engine has no profile.  Requests the engine cannot take are
 * en/decrypted by the fallback at the leaf the same way; on a local
 * backend both write a large request 256 KiB at a time (leaf.c), and
 * decrypt a large read straight out of a backend's view of its data
 * (a file on tmpfs, stack/filemap.h) when it has one.
 *
 * Faults: a test rig can make the next N reads and/or writes fail with EIO
 * (ic_leaf_set_io_faults()) or every request slow (ic_leaf_set_io_delay()).
 *
 * Thread-safe: backends handle concurrent calls; no lock is held across
 * I/O or en/decryption.
 */
#ifndef IC_LEAF_H
#define IC_LEAF_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "engine.h"

struct ic_leaf;

/* What a backend has to show in status, beyond what every leaf has. */
struct ic_leaf_status {
  /* Write-type commands (write, trim, zero) that timed out after the
   * server got them in full and that it has not been seen to answer: it
   * may still carry them out, so writes are fenced (they wait for the
   * answer, or fail with EIO) while this is not 0.  Only NBD leaves have
   * any.
   */
  unsigned int unanswered_writes;
  /* The first of them, when there is one: what it was, for the operator
   * ("write", "trim", "zero"; NULL if none), its length and offset.
   */
  const char *fence_op;
  uint64_t fence_len;
  uint64_t fence_offset;
  /* A backend with a view (a file leaf on tmpfs): "on", or "lost" after
   * a fault (stack/filemap.h); NULL without one.  Reads decrypted
   * straight out of the view.
   */
  const char *view;
  uint64_t view_reads;
};

/* A backend.  Offsets and lengths are in bytes, inside the device.  Each
 * I/O member returns 0 or -errno (with the reason in ic_error()).
 */
struct ic_leaf_ops {
  const char *type;
  /* Requests go over the network.  An encrypted write larger than
   * 256 KiB then reaches pwrite whole (one round trip); a local backend
   * gets it in 256 KiB pieces, each encrypted just before it is written,
   * while it is in the CPU's cache.
   */
  bool remote;
  int (*pread) (struct ic_leaf *leaf, void *buf, uint64_t len,
                uint64_t offset);
  /* Optional: a pointer to the bytes of [@offset, @offset + @len) as
   * the backend holds them, for an encrypted read to decrypt straight
   * into the client's buffer, or NULL to use pread.  Once done reading
   * through a view it got, the caller calls view_done(), always; false
   * means what it read may be wrong (a fault put zeros in), and it reads
   * again with pread.  TRIM and WRITE_ZEROES that punch holes wait for
   * the views out to be done, and no view is given while one runs.
   */
  const void *(*view) (struct ic_leaf *leaf, uint64_t len, uint64_t offset);
  bool (*view_done) (struct ic_leaf *leaf);
  /* @unit: the data unit size of the data (ic_bio_unit()), 0 if plain.
   * A backend that can fail part-way through a write should do so only
   * between units, never inside one: the file leaf allocates the holes
   * of the range first when units straddle its blocks, the memory leaf
   * allocates every chunk first (their reserve op, below).  On failure,
   * *@partial says whether the range may have changed (left alone on
   * success).
   */
  int (*pwrite) (struct ic_leaf *leaf, const void *buf, uint64_t len,
                 uint64_t offset, unsigned int unit, bool fua,
                 bool *partial);
  /* Optional: make sure a write of @len bytes at @offset will not run
   * out of space or memory part-way, as pwrite does first (the file
   * leaf allocates the holes where units straddle its blocks, the memory
   * leaf every chunk).  Called once for a write that pwrite then gets in
   * pieces, so that it fails unchanged as a whole write would.
   */
  int (*reserve) (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
                  unsigned int unit);
  int (*flush) (struct ic_leaf *leaf);
  /* Deallocate; what reads return afterwards is up to the backend. */
  int (*trim) (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
               bool fua);
  /* Make the range read as zeros; may deallocate if @may_trim. */
  int (*zero) (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
               bool may_trim, bool fua);
  void (*destroy) (struct ic_leaf *leaf);
  /* Optional: undo what making the leaf did outside the process (remove
   * a file it created), for a configuration that was refused.  Called
   * before destroy, never on a leaf that has served a request.
   */
  void (*discard) (struct ic_leaf *leaf);
  /* Optional: fill @st, which the caller has zeroed.  Must not wait for
   * I/O (the control server calls it from its loop); may take the
   * backend's lock.
   */
  void (*status) (struct ic_leaf *leaf, struct ic_leaf_status *st);
};

/* Fault kinds for ic_leaf_set_io_faults(). */
#define IC_LEAF_FAULT_READ  0x1
#define IC_LEAF_FAULT_WRITE 0x2

struct ic_leaf {
  struct ic_device dev;         /* first: a leaf is a device */
  const struct ic_leaf_ops *ops;
  struct ic_engine *engine;     /* NULL: no inline encryption */
  void *priv;                   /* the backend's */

  /* private: */
  unsigned int fault_kinds;     /* atomic */
  int64_t fault_count;          /* atomic; < 0: every request */
  unsigned int io_delay_us;     /* atomic */
  uint64_t io_errors;           /* atomic */
};

/* Set up @leaf as a device named @name of @size bytes with backend @ops,
 * and @engine (may be NULL; the leaf does not own it).
 */
void ic_leaf_init (struct ic_leaf *leaf, const char *name, uint64_t size,
                   const struct ic_leaf_ops *ops, struct ic_engine *engine,
                   unsigned int features);

/* The leaf of a device made by ic_leaf_init(), or NULL. */
struct ic_leaf *ic_device_to_leaf (struct ic_device *dev);

/* ic_leaf_ops.discard, when the backend has one. */
void ic_leaf_discard (struct ic_leaf *leaf);

/* Make the next @count requests of @kinds fail with EIO (@count < 0: all
 * of them until cleared); @kinds == 0 clears.
 */
void ic_leaf_set_io_faults (struct ic_leaf *leaf, unsigned int kinds,
                            int64_t count);

/* The backend's status (ic_leaf_ops.status); all zero when it has none.
 *
 * Context: any thread; takes the backend's lock, never waits for I/O.
 */
void ic_leaf_read_status (struct ic_leaf *leaf, struct ic_leaf_status *st);

/* Make every read, write, trim and zero of the leaf take @us microseconds
 * longer (0: no delay): slow storage, so that a test can catch requests in
 * flight.  The delay is a sleep; no lock is held.
 */
void ic_leaf_set_io_delay (struct ic_leaf *leaf, unsigned int us);

/* Leaves, by backend.  Each returns the device, or NULL with errno set
 * and the reason in ic_last_error().
 */

/* Sparse memory: costs nothing until written; trimmed ranges are freed. */
struct ic_device *ic_leaf_memory_new (const char *name, uint64_t size,
                                      struct ic_engine *engine);

/* A file, created if missing.  @size 0: the file's size; else the file is
 * extended to @size if shorter (never truncated).  FLUSH and FUA use
 * fdatasync; TRIM punches holes where the file system can.  A file on
 * tmpfs is also mapped, for reads (stack/filemap.h).
 */
struct ic_device *ic_leaf_file_new (const char *name, const char *path,
                                    uint64_t size, bool readonly,
                                    struct ic_engine *engine);

/* A remote NBD export, reached with libnbd: the way a stack spans
 * machines.  @uri is an NBD URI (nbd://host/export,
 * nbd+unix:///export?socket=PATH).  With @size 0 the leaf has the export's
 * size, else @size, which must not exceed it.  When the server allows
 * multi-conn the leaf keeps a pool of connections used in parallel; else
 * one, used by one request at a time.  A connection that breaks fails the
 * requests on it with EIO and is reopened by a later request, at most
 * once per backoff interval (100 ms doubling to 5 s).  A command the
 * server does not answer within @timeout_ms (0: no limit) fails with EIO,
 * so a hung server cannot hang clients.  A read or flush then drops its
 * connection.  A write, trim or zero the server got in full keeps it, as
 * the server may still carry it out: until it answers, writes, trims and
 * zeros wait for that answer, up to @timeout_ms more, or fail with EIO;
 * reads and flushes go on.  If that connection breaks first, the
 * command's fate is unknown, and writes go on.  ic_leaf_read_status()
 * tells whether writes are fenced, and by what.
 */
#define IC_NBD_DEFAULT_TIMEOUT_MS 30000

struct ic_device *ic_leaf_nbd_new (const char *name, const char *uri,
                                   uint64_t size, bool readonly,
                                   unsigned int timeout_ms,
                                   struct ic_engine *engine);

#endif /* IC_LEAF_H */

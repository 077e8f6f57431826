/* stack/bio.h - a request flowing down the stack: the struct bio of this
 * project.  Follows Linux include/linux/blk_types.h for the operations and
 * block/blk-crypto.c for the crypto context it carries (bio_crypt_set_ctx,
 * bio_crypt_clone, __bio_crypt_advance).
 *
 * Requests are synchronous: a device's submit returns when the request is
 * complete, with 0 or -errno, and a write that failed says whether it
 * changed part of its range (partial).  A bio is a plain value owned by its
 * submitter; cloning copies it, splitting cuts it in two.
 */
#ifndef IC_BIO_H
#define IC_BIO_H

#include <stdbool.h>
#include <stdint.h>

#include "crypt-ctx.h"

enum ic_bio_op {
  IC_OP_READ,
  IC_OP_WRITE,
  IC_OP_FLUSH,
  IC_OP_TRIM,                   /* discard; contents after it: see device */
  IC_OP_WRITE_ZEROES,
};

/* Encrypted writes larger than this go down in pieces of this size, each
 * encrypted into the bounce buffer just before it is written: by a leaf
 * with a local backend, and by a stacked device's fallback.  The piece is
 * still in the CPU's cache when the backend copies it, where a whole
 * 1 MiB bounce buffer next to 1 MiB of data is not (bench/RESULTS.md: 5-8%
 * less server CPU per GiB of 1 MiB writes, in every round of an A/B run;
 * reads in pieces gained nothing, the read brings the data into the cache
 * for the decryption in place anyway, so they stay whole), and the bounce
 * memory a write holds is bounded however large it is.  Linux's fallback
 * splits bios too, at 256 pages (blk_crypto_fallback_split_bio_if_needed).
 * A multiple of every data unit size (64 KiB at most), so pieces are whole
 * units.
 */
#define IC_BIO_PIECE (256u << 10)

/* Flags. */
#define IC_BIO_FUA     0x1      /* WRITE, WRITE_ZEROES, TRIM: durable on return */
#define IC_BIO_NOUNMAP 0x2      /* WRITE_ZEROES: do not deallocate */

struct ic_bio {
  enum ic_bio_op op;
  unsigned int flags;
  uint64_t offset;              /* bytes, in the device's address space */
  uint64_t len;                 /* bytes */
  /* READ: filled in.  WRITE: the data, never modified (en/decryption goes
   * through a bounce buffer).  Unused by the other operations.
   */
  void *buf;
  /* crypt_ctx.key == NULL: plain I/O.  Only READ and WRITE carry one. */
  struct ic_crypt_ctx crypt_ctx;
  /* Out: set by a device whose WRITE, WRITE_ZEROES or TRIM failed after
   * changing part of the range: a piece of a split request went through
   * before another failed, or a leaf's backend failed while writing.  The
   * range then reads as a mix of old and new.  Left false when the
   * request failed before changing anything (no keyslot, no bounce
   * buffer, no support for its context...).  False while the bio is in
   * flight: submitters build it so, and clones and pieces copy it.
   */
  bool partial;
  /* The data unit size of an encryption done above: the fallback of an
   * upper device encrypts, then passes the plain bio down with its key's
   * data unit size here.  0 for plain data.  See ic_bio_unit().
   */
  unsigned int unit;
};

/* True if @op changes data. */
static inline bool
ic_bio_op_is_write (enum ic_bio_op op)
{
  return op == IC_OP_WRITE || op == IC_OP_WRITE_ZEROES || op == IC_OP_TRIM;
}

/* Pass up to @bio that its clone or piece @part failed (Linux passes only
 * the error up a chain of split bios, bio_chain; a mirror must also know
 * whether its leg changed): @bio failed part-way if @part did, or if an
 * earlier piece of @bio went through (@done).
 */
static inline void
ic_bio_part_failed (struct ic_bio *bio, const struct ic_bio *part, bool done)
{
  if (ic_bio_op_is_write (bio->op) && (part->partial || done))
    bio->partial = true;
}

static inline bool
ic_bio_has_crypt_ctx (const struct ic_bio *bio)
{
  return bio->crypt_ctx.key != NULL;
}

/* The bytes of @bio that must change together: the data unit of its key,
 * or of the key an upper fallback encrypted it with; 0 for plain data.
 * Devices below keep these units whole: a split that would cut one is
 * refused before anything is written (ic_bio_cuts_unit()), and leaves
 * write each unit all or nothing where the backend lets them (leaf.h).
 */
static inline unsigned int
ic_bio_unit (const struct ic_bio *bio)
{
  return ic_bio_has_crypt_ctx (bio)
    ? bio->crypt_ctx.key->crypto_cfg.data_unit_size : bio->unit;
}

/* True if cutting @bio @bytes from its start would split one of its data
 * units in two.
 */
static inline bool
ic_bio_cuts_unit (const struct ic_bio *bio, uint64_t bytes)
{
  unsigned int unit = ic_bio_unit (bio);

  return unit && bytes > 0 && bytes < bio->len && bytes % unit != 0;
}

/* Split the first @bytes off @bio into @front; @bio keeps the rest, its
 * buffer and DUN advanced (bio_split + __bio_crypt_advance).
 */
static inline void
ic_bio_split (struct ic_bio *bio, uint64_t bytes, struct ic_bio *front)
{
  *front = *bio;
  front->len = bytes;
  bio->offset += bytes;
  bio->len -= bytes;
  if (bio->buf)
    bio->buf = (char *) bio->buf + bytes;
  if (ic_bio_has_crypt_ctx (bio))
    ic_crypt_ctx_advance (&bio->crypt_ctx, bytes);
}

const char *ic_bio_op_name (enum ic_bio_op op);

#endif /* IC_BIO_H */

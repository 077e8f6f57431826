/* stack/bio.h - a request flowing down the stack: the struct bio of this
 * project.  Follows Linux include/linux/blk_types.h for the operations and
 * block/blk-crypto.c for the crypto context it carries (bio_crypt_set_ctx,
 * bio_crypt_clone, __bio_crypt_advance).
 *
 * Requests are synchronous: a device's submit returns when the request is
 * complete, with 0 or -errno.  A bio is a plain value owned by its
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
};

static inline bool
ic_bio_has_crypt_ctx (const struct ic_bio *bio)
{
  return bio->crypt_ctx.key != NULL;
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

/* stack/leaf-file.c - a leaf backed by a regular file (or a block device
 * node).  One pread/pwrite per request, looping only on short transfers;
 * a write whose data units straddle blocks first allocates the holes in
 * its range, so that running out of space never leaves a unit half
 * written.
 * FLUSH and FUA use fdatasync; TRIM and WRITE_ZEROES punch holes or zero
 * ranges with fallocate where the file system can, and write zeros where
 * it cannot.  A file on tmpfs is mapped too, and large encrypted reads
 * are decrypted straight out of its pages (stack/filemap.h).  Stateless
 * apart from the descriptor and the map: thread-safe.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "filemap.h"
#include "leaf.h"

struct file {
  struct ic_leaf leaf;
  int fd;
  char *path;
  /* The smallest piece a write can stop after (the file system block or
   * the page, whichever is smaller); 0 for a block device, which
   * allocates nothing.
   */
  unsigned int atom;
  bool can_alloc;               /* atomic: cleared on EOPNOTSUPP */
  bool can_punch;               /* atomic: cleared on EOPNOTSUPP */
  bool can_zero_range;          /* atomic: cleared on EOPNOTSUPP */
  bool created;                 /* the leaf made the file (discard) */
  struct ic_filemap *map;       /* NULL: not on tmpfs */
  uint64_t view_reads;          /* atomic */
  /* A read through the map and a hole punched in its range at once would
   * decrypt the zeros the punch leaves (neither the old data nor zeros),
   * and the fault would allocate the punched pages again: punches and
   * views exclude each other.  Views in progress, and punches waiting or
   * in progress; a view is not given while a punch waits (pread then), and
   * a punch waits for the views out to be done.
   */
  unsigned int views_out;       /* atomic */
  unsigned int punches;         /* atomic */
};

/* Before punching a hole in @f: no view is out or given until
 * punch_end().
 */
static void
punch_begin (struct file *f)
{
  if (!f->map)
    return;
  __atomic_add_fetch (&f->punches, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n (&f->views_out, __ATOMIC_SEQ_CST) > 0) {
    struct timespec ts = { 0, 20000 };

    nanosleep (&ts, NULL);
  }
}

static void
punch_end (struct file *f)
{
  if (f->map)
    __atomic_sub_fetch (&f->punches, 1, __ATOMIC_SEQ_CST);
}

static int
file_error (struct ic_leaf *leaf, const char *op, uint64_t len,
            uint64_t offset, int err)
{
  struct file *f = (struct file *) leaf;

  ic_error ("%s: %s %" PRIu64 " bytes at %" PRIu64 " of %s: %s",
            leaf->dev.name, op, len, offset, f->path, ic_strerror (err));
  return -err;
}

static int
file_pread (struct ic_leaf *leaf, void *buf, uint64_t len, uint64_t offset)
{
  struct file *f = (struct file *) leaf;
  char *p = buf;

  while (len > 0) {
    ssize_t r = pread (f->fd, p, len, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return file_error (leaf, "read", len, offset, errno);
    }
    if (r == 0) {
      /* Past the end of a file that shrank under us: zeros. */
      memset (p, 0, len);
      return 0;
    }
    p += r;
    offset += r;
    len -= r;
  }
  return 0;
}

/* Try fallocate with @mode; false if the file system cannot. */
static int
try_fallocate (struct file *f, bool *can, int mode, uint64_t len,
               uint64_t offset)
{
  int r;

  if (!__atomic_load_n (can, __ATOMIC_RELAXED))
    return -EOPNOTSUPP;
  do
    r = fallocate (f->fd, mode, offset, len);
  while (r == -1 && errno == EINTR);
  if (r == 0)
    return 0;
  if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) {
    __atomic_store_n (can, false, __ATOMIC_RELAXED);
    return -EOPNOTSUPP;
  }
  return -errno;
}

/* True if a data unit of a write at @offset straddles two atoms: a write
 * that runs out of space can stop inside it.
 */
static bool
unit_straddles (const struct file *f, uint64_t offset, unsigned int unit)
{
  return f->atom && unit && (unit > f->atom || offset % unit != 0);
}

/* True if [@offset, @offset+@len) may have a hole: what a write could
 * need space for.  A file system without SEEK_HOLE reports none.
 */
static bool
may_have_hole (const struct file *f, uint64_t len, uint64_t offset)
{
  off_t hole = lseek (f->fd, offset, SEEK_HOLE);

  return hole == -1 || (uint64_t) hole < offset + len;
}

/* A pwrite that runs out of space (ENOSPC, EDQUOT) stops at a block:
 * allocate first, so that it fails before changing anything.  Only when a
 * data unit would be cut (otherwise a short write still leaves every unit
 * whole, old or new), and only over holes: XFS reserves space for the
 * whole range even where it is allocated, so on a full file system it
 * would refuse overwrites that need nothing.  A copy-on-write file system
 * (btrfs, a reflinked XFS file) can still run out while writing.
 */
static int
file_reserve (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
              unsigned int unit)
{
  struct file *f = (struct file *) leaf;
  int err;

  if (unit_straddles (f, offset, unit) && may_have_hole (f, len, offset)) {
    err = try_fallocate (f, &f->can_alloc, 0, len, offset);
    if (err < 0 && err != -EOPNOTSUPP)
      return file_error (leaf, "allocate", len, offset, -err);
  }
  return 0;
}

static int
file_pwrite (struct ic_leaf *leaf, const void *buf, uint64_t len,
             uint64_t offset, unsigned int unit, bool fua, bool *partial)
{
  struct file *f = (struct file *) leaf;
  const char *p = buf;
  int err;

  err = file_reserve (leaf, len, offset, unit);
  if (err < 0)
    return err;
  while (len > 0) {
    ssize_t r = pwrite (f->fd, p, len, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      /* A pwrite that fails wrote nothing, but the ones before did. */
      if (p != buf)
        *partial = true;
      return file_error (leaf, "write", len, offset, errno);
    }
    p += r;
    offset += r;
    len -= r;
  }
  if (fua && fdatasync (f->fd) == -1) {
    *partial = true;
    return file_error (leaf, "sync", 0, 0, errno);
  }
  return 0;
}

static int
file_flush (struct ic_leaf *leaf)
{
  struct file *f = (struct file *) leaf;

  if (fdatasync (f->fd) == -1)
    return file_error (leaf, "flush", 0, 0, errno);
  return 0;
}

static int
write_zeros (struct ic_leaf *leaf, uint64_t len, uint64_t offset)
{
  static const char zeros[65536];
  int r;

  while (len > 0) {
    uint64_t n = len < sizeof zeros ? len : sizeof zeros;

    bool partial = false;

    r = file_pwrite (leaf, zeros, n, offset, 0, false, &partial);
    if (r < 0)
      return r;
    offset += n;
    len -= n;
  }
  return 0;
}

static int
file_zero (struct ic_leaf *leaf, uint64_t len, uint64_t offset,
           bool may_trim, bool fua)
{
  struct file *f = (struct file *) leaf;
  int r = -EOPNOTSUPP;

  if (may_trim) {
    punch_begin (f);
    r = try_fallocate (f, &f->can_punch,
                       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, len,
                       offset);
    punch_end (f);
  }
  if (r == -EOPNOTSUPP)
    r = try_fallocate (f, &f->can_zero_range,
                       FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, len,
                       offset);
  if (r == -EOPNOTSUPP)
    r = write_zeros (leaf, len, offset);
  else if (r < 0)
    return file_error (leaf, "zero", len, offset, -r);
  if (r == 0 && fua)
    r = file_flush (leaf);
  return r;
}

static int
file_trim (struct ic_leaf *leaf, uint64_t len, uint64_t offset, bool fua)
{
  struct file *f = (struct file *) leaf;
  int r;

  punch_begin (f);
  r = try_fallocate (f, &f->can_punch,
                     FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, len, offset);
  punch_end (f);
  /* TRIM is advisory: a file system that cannot punch keeps the data. */
  if (r == -EOPNOTSUPP)
    return 0;
  if (r < 0)
    return file_error (leaf, "trim", len, offset, -r);
  return fua ? file_flush (leaf) : 0;
}

static const void *
file_view (struct ic_leaf *leaf, uint64_t len, uint64_t offset)
{
  struct file *f = (struct file *) leaf;
  const void *p = NULL;

  if (!f->map)
    return NULL;
  __atomic_add_fetch (&f->views_out, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n (&f->punches, __ATOMIC_SEQ_CST) == 0)
    p = ic_filemap_get (f->map, len, offset);
  if (p)
    __atomic_add_fetch (&f->view_reads, 1, __ATOMIC_RELAXED);
  else
    __atomic_sub_fetch (&f->views_out, 1, __ATOMIC_SEQ_CST);
  return p;
}

static bool
file_view_done (struct ic_leaf *leaf)
{
  struct file *f = (struct file *) leaf;
  bool intact = ic_filemap_intact (f->map);

  __atomic_sub_fetch (&f->views_out, 1, __ATOMIC_SEQ_CST);
  return intact;
}

static void
file_status (struct ic_leaf *leaf, struct ic_leaf_status *st)
{
  struct file *f = (struct file *) leaf;

  if (!f->map)
    return;
  st->view = ic_filemap_intact (f->map) ? "on" : "lost";
  st->view_reads = __atomic_load_n (&f->view_reads, __ATOMIC_RELAXED);
}

static void unlink_if_same (const char *path, int fd);

static void
file_discard (struct ic_leaf *leaf)
{
  struct file *f = (struct file *) leaf;

  if (f->created)
    unlink_if_same (f->path, f->fd);
}

static void
file_destroy (struct ic_leaf *leaf)
{
  struct file *f = (struct file *) leaf;

  ic_filemap_free (f->map);
  close (f->fd);
  free (f->path);
  free (f);
}

static const struct ic_leaf_ops file_ops = {
  .type = "file",
  .pread = file_pread,
  .view = file_view,
  .view_done = file_view_done,
  .pwrite = file_pwrite,
  .reserve = file_reserve,
  .flush = file_flush,
  .trim = file_trim,
  .zero = file_zero,
  .destroy = file_destroy,
  .discard = file_discard,
  .status = file_status,
};

/* Remove @path if it still names the file open on @fd. */
static void
unlink_if_same (const char *path, int fd)
{
  struct stat mine, now;

  if (fstat (fd, &mine) == 0 && lstat (path, &now) == 0 &&
      mine.st_dev == now.st_dev && mine.st_ino == now.st_ino)
    unlink (path);
}

struct ic_device *
ic_leaf_file_new (const char *name, const char *path, uint64_t size,
                  bool readonly, struct ic_engine *engine)
{
  struct file *f;
  struct stat st;
  struct rlimit fsize;
  bool created = false;
  int fd;
  int err;

  fd = open (path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  /* Create it only if it is missing, and know we did: a file we created
   * is removed again if the leaf is refused below.
   */
  if (fd == -1 && errno == ENOENT && !readonly) {
    fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    created = fd != -1;
    /* Someone else just made it, or @path is a dangling symbolic link
     * (O_EXCL never follows one): create through it, as without O_EXCL,
     * but then it is not ours to remove.
     */
    if (fd == -1 && errno == EEXIST)
      fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  }
  if (fd == -1) {
    err = errno;
    ic_error ("%s: open %s: %s", name, path, ic_strerror (err));
    errno = err;
    return NULL;
  }
  if (fstat (fd, &st) == -1) {
    err = errno;
    ic_error ("%s: stat %s: %s", name, path, ic_strerror (err));
    goto out_close;
  }
  if (S_ISBLK (st.st_mode)) {
    off_t end = lseek (fd, 0, SEEK_END);

    if (end == -1) {
      err = errno;
      ic_error ("%s: size of %s: %s", name, path, ic_strerror (err));
      goto out_close;
    }
    st.st_size = end;
  }
  else if (!S_ISREG (st.st_mode)) {
    err = EINVAL;
    ic_error ("%s: %s is neither a regular file nor a block device", name,
              path);
    goto out_close;
  }
  if (size == 0)
    size = st.st_size;
  /* Before extending: past RLIMIT_FSIZE, ftruncate and writes raise
   * SIGXFSZ (which kills the server) and writes across it are cut short.
   */
  if (S_ISREG (st.st_mode) && !readonly &&
      getrlimit (RLIMIT_FSIZE, &fsize) == 0 &&
      fsize.rlim_cur != RLIM_INFINITY && size > fsize.rlim_cur) {
    err = EFBIG;
    ic_error ("%s: %s: the leaf's %" PRIu64 " bytes go past the server's "
              "file size limit (RLIMIT_FSIZE, %" PRIu64 " bytes)", name,
              path, size, (uint64_t) fsize.rlim_cur);
    goto out_close;
  }
  if ((uint64_t) st.st_size < size) {
    if (readonly || S_ISBLK (st.st_mode)) {
      err = EINVAL;
      ic_error ("%s: %s has %" PRIu64 " bytes, fewer than size=%" PRIu64,
                name, path, (uint64_t) st.st_size, size);
      goto out_close;
    }
    if (ftruncate (fd, size) == -1) {
      err = errno;
      ic_error ("%s: extend %s to %" PRIu64 " bytes: %s", name, path, size,
                ic_strerror (err));
      goto out_close;
    }
  }
  if (size == 0) {
    err = EINVAL;
    ic_error (created ? "%s: %s does not exist: give size= to create it" :
              "%s: %s is empty: give size= to create or extend it", name,
              path);
    goto out_close;
  }

  f = calloc (1, sizeof *f);
  if (!f || !(f->path = strdup (path))) {
    free (f);
    err = ENOMEM;
    ic_error ("%s: out of memory", name);
    goto out_close;
  }
  f->fd = fd;
  f->created = created;
  if (S_ISREG (st.st_mode)) {
    long page = sysconf (_SC_PAGESIZE);

    if (page <= 0)
      page = 4096;
    f->atom = st.st_blksize > 0 && st.st_blksize < page ? st.st_blksize
                                                        : page;
    f->map = ic_filemap_new (fd, size);
  }
  f->can_alloc = true;
  f->can_punch = true;
  f->can_zero_range = true;
  ic_leaf_init (&f->leaf, name, size, &file_ops, engine,
                IC_DEV_CAN_TRIM | IC_DEV_CAN_ZERO | IC_DEV_CAN_MULTI_CONN |
                (readonly ? IC_DEV_READONLY : 0));
  return &f->leaf.dev;

out_close:
  if (created)
    unlink_if_same (path, fd);
  close (fd);
  errno = err;
  return NULL;
}

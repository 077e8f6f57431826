/* stack/filemap.h - a read-only mapping of a file leaf's file on tmpfs,
 * so that an encrypted read is decrypted straight out of the file's pages
 * into the client's buffer, instead of being copied into it by pread and
 * decrypted there.  On tmpfs there is no I/O to wait for, and that copy
 * is what a read costs beside the cipher: bench/readpath measured 486 ms
 * of CPU per GiB of 1 MiB reads with pread, 313 through the mapping, on
 * a CPU without VAES (bench/RESULTS.md, run H).  Beyond upstream
 * (Linux's fallback and inline encryption decrypt a bio's pages in
 * place).
 *
 * Only tmpfs, where the data is in memory anyway and a page table entry
 * costs 0.2% of the page it maps; a file on a disk would gain nothing
 * against its I/O, and its mapping's page tables would grow with
 * everything ever read.  A range is read through the mapping only if all
 * of its pages are in memory (mincore): reading a hole of a tmpfs file
 * through a mapping would allocate a page for it, where pread reads zeros
 * for free.
 *
 * A file shrunk under the server (by another process; the server never
 * shrinks one) would make a read through the mapping fault (SIGBUS)
 * instead of coming up short.  The first map installs a SIGBUS handler
 * that puts a page of zeros in place of a faulting page of any map, marks
 * that map lost and lets the read go on; the reader sees the map lost
 * (ic_filemap_intact()) and reads again with pread, which reads zeros
 * past the end; the lost map is not used again.  A SIGBUS outside every
 * map, or sent by another process, goes to the handler that was there
 * before, or does what SIG_DFL or SIG_IGN would have done.  A file that
 * another process truncates and extends again during a read faults in
 * nothing: that read decrypts the zeros the file then holds, and no one
 * can tell (documented in inlinecrypt.conf(5)).  Holes the server itself
 * punches (TRIM, WRITE_ZEROES) wait for the views out (leaf-file.c).
 *
 * The pages mapped count in the server's RSS (as RssShmem in
 * /proc/PID/status), like a memory leaf's data: they are the file's
 * tmpfs pages, in memory whether mapped or not.
 *
 * IC_NO_FILEMAP=1 in the environment turns this off (every read uses
 * pread).  Thread-safe.
 */
#ifndef IC_FILEMAP_H
#define IC_FILEMAP_H

#include <stdbool.h>
#include <stdint.h>

struct ic_filemap;

/* Map the first @size bytes of the file open on @fd, if it is a regular
 * file on tmpfs and IC_NO_FILEMAP is not set.
 * Return: the map, or NULL (the file is read with pread).
 */
struct ic_filemap *ic_filemap_new (int fd, uint64_t size);

/* A pointer to the bytes [@offset, @offset + @len) of the file, or NULL
 * if the map does not cover all of them, was lost, or some of their
 * pages are not in memory (holes, or swapped out): then use pread.
 * After reading through it, check ic_filemap_intact().
 */
const void *ic_filemap_get (struct ic_filemap *map, uint64_t len,
                            uint64_t offset);

/* False once a fault has put zeros in place of some of the file's pages
 * in @map: what was read through it since ic_filemap_get() may be wrong.
 */
bool ic_filemap_intact (const struct ic_filemap *map);

/* Unmap.  No read through @map may be in progress. */
void ic_filemap_free (struct ic_filemap *map);

#endif /* IC_FILEMAP_H */

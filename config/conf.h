/* config/conf.h - the configuration file: keys, engines, leaves, stacked
 * devices with their tables, exports with their context maps, the
 * fallback and the control socket, in one file:
 *
 *   # comments and blank lines anywhere
 *   key    k1  mode=AES-256-XTS data-unit-size=4096 dun-bytes=8 key=+k1.hex
 *   engine ufs keyslots=32 modes=AES-256-XTS:512,4096 max-dun-bytes=8
 *              [key-types=raw,hw_wrapped wrapping-key=ufs.wkey]
 *   key    k2  type=hw_wrapped [mode=AES-256-XTS] data-unit-size=4096
 *              engine=ufs blob=k2.blob [import=+k2.raw | generate]
 *   leaf   d0  file=d0.img size=1G engine=ufs
 *   leaf   d1  memory size=1G
 *   leaf   r0  nbd=nbd+unix:///disk?socket=/run/peer.sock
 *   device top [options=per_child_fallback]
 *     0 2097152 linear d0 0
 *   end
 *   export vol0 device=top
 *     map 0 1G key=k1 dun-base=0
 *     map 1G 512M none
 *   end
 *   export vol1 device=d1 key=k1 [dun-base=N]
 *   fallback keyslots=100 [enabled=true]
 *   control socket=/run/inlinecrypt.sock mode=0600
 *
 * A hw_wrapped key names the engine whose key manager (crypto/hwkm.h)
 * wraps it, defined above; blob= holds its long-term wrapped form in hex.
 * With import= or generate and no blob file yet, the key is created
 * through that engine and the blob file written (0600); otherwise the blob
 * is loaded.  Either way the engine prepares it, and the key object holds
 * the ephemerally-wrapped blob.  Engines with the same wrapping-key file
 * share one key manager.
 *
 * See docs/inlinecrypt.conf.5 for every keyword and parameter.  Every
 * error names "file:line: " and what was expected; unknown keywords and
 * parameters are errors.  Relative paths are relative to the file's
 * directory.
 *
 * Not thread-safe: used while nbdkit reads its command line.
 */
#ifndef IC_CONF_H
#define IC_CONF_H

#include <stddef.h>

#include "graph.h"

/* Flags for ic_conf_parse. */
#define IC_CONF_DRY_RUN 0x1     /* build file and nbd leaves as memory
                                 * leaves and read no key files: checks
                                 * syntax and references only (fuzzing) */
#define IC_CONF_SHARED 0x2      /* the text is in a file that group or
                                 * others may access (mode & 077): it may
                                 * hold no key in hex (key=HEX), as a key
                                 * file may not be accessible to them */

/* Build a graph from the configuration text @text of @len bytes, named
 * @path in messages; relative paths are taken relative to @dir.
 *
 * Return: the graph, or NULL with errno set and the reason, starting with
 * "path:line: ", in ic_last_error().
 */
struct ic_graph *ic_conf_parse (const char *text, size_t len,
                                const char *path, const char *dir,
                                unsigned int flags);

/* Read the file @path and build its graph.
 *
 * Return: as ic_conf_parse().
 */
struct ic_graph *ic_conf_load (const char *path);

#endif /* IC_CONF_H */

/* server/control.h - the control server: the protocol of
 * server/protocol.h on a Unix socket, for inlinecryptctl and test rigs.
 *
 * One thread runs a libev loop that accepts clients and reads and answers
 * their requests, line by line; many clients at once.  Commands that may
 * wait (ic_protocol_is_slow: engine reset, key removal, resync, map and
 * table changes) run on a worker thread each and post their reply back to
 * the loop through an ev_async, so they stall neither other clients nor
 * I/O.  Each client's replies come in the order
 * of its requests: nothing more of its input is run while a command of
 * its own runs, or while many of its replies wait to be written (it is
 * not read from meanwhile: back-pressure, nothing is dropped).  A client
 * that half-closes after sending still gets every reply; it is closed
 * once the last one is written.  The socket is created with the
 * configured mode (0600 by default); a peer whose uid (SO_PEERCRED) is
 * neither ours nor root's is told so and disconnected.  A malformed,
 * oversized or unknown request gets an error reply and the connection goes
 * on.
 *
 * Lifecycle, for nbdkit: ic_control_listen() in .get_ready (so that a bad
 * socket path fails the start, before nbdkit forks), ic_control_start() in
 * .after_fork (threads do not survive a fork), ic_control_stop() at unload
 * (the socket is removed).
 */
#ifndef IC_CONTROL_H
#define IC_CONTROL_H

#include <sys/types.h>

#include "graph.h"

struct ic_control;

/* Create, bind and listen on @path with @mode.  An existing socket that
 * nobody answers on is replaced; one that answers, or anything at @path
 * that is not a socket, is an error (EADDRINUSE, EEXIST).  @what
 * says where the socket was asked for and starts every message
 * ("ic.conf:12: control", "control="), as a configuration error names its
 * line.
 *
 * Return: the server, or NULL with errno set and the reason in
 * ic_last_error() ("ic.conf:12: control: bind /run/ic/ctl.sock: No such
 * file or directory").
 */
struct ic_control *ic_control_listen (struct ic_graph *graph,
                                      const char *path, mode_t mode,
                                      const char *what);

/* Start the loop thread.  Return: 0 or -errno. */
int ic_control_start (struct ic_control *ctl);

/* Stop the loop and the workers, close every client, remove the socket,
 * free.  NULL is ignored.
 */
void ic_control_stop (struct ic_control *ctl);

/* Remove the socket if it is still the one @ctl bound, and nothing
 * else: for a process that exits without stopping the server (nbdkit
 * failing after .get_ready).  NULL is ignored.
 */
void ic_control_unlink (struct ic_control *ctl);

#endif /* IC_CONTROL_H */

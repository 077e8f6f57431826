/* server/protocol.h - the control protocol: one JSON object per line each
 * way.  A request names a command and its arguments,
 *   {"cmd": "evict", "key": "k1", "device": "d0"}
 * and gets one reply,
 *   {"ok": true, ...}  or  {"ok": false, "error": "...", "errno": "EBUSY"}.
 *
 * Commands (docs/inlinecryptctl.1 has them all): ping, status, stats,
 * key-add, key-remove, key-list, key-import, key-generate, key-prepare,
 * key-derive-secret, evict, map, table-load, table-resume, table-clear,
 * table-show, engine-reset, fault, wait-resync.
 *
 * This is the transport-free part, so that it can be tested and fuzzed on
 * its own; server/control.c carries it over a Unix socket.  Replies never
 * contain key bytes: key-add and key-import take them and wipe the
 * request's copy.  Hardware-wrapped keys (crypto/hwkm.h) mirror the
 * BLKCRYPTO{IMPORT,GENERATE,PREPARE}KEY ioctls on an engine or a device
 * and return wrapped blobs in hex; key-derive-secret returns the software
 * secret of a hw_wrapped key, the one secret meant for software.
 *
 * Threading: execute may run on the control thread or on a worker thread
 * (slow commands); commands only touch the graph through its thread-safe
 * functions.  The calling thread's errors are captured for the reply.
 */
#ifndef IC_PROTOCOL_H
#define IC_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "graph.h"

/* Requests longer than this are refused. */
#define IC_PROTOCOL_MAX_LINE (64 * 1024)

/* Parse one request line (without its newline).
 *
 * Return: the request, or NULL with *reply set to the error reply.
 */
struct json_object *ic_protocol_parse (const char *line, size_t len,
                                       struct json_object **reply);

/* True if the request may wait (engine reset, key removal, resync; map,
 * table load, resume and clear, which wait for requests in flight; evict
 * and the key commands, which may wait for a keyslot being programmed):
 * the server runs it on a worker thread.  A command that waits for
 * requests drops the lock that serialises commands meanwhile, so that
 * the others go on; one that waits for the hardware keeps it.
 */
bool ic_protocol_is_slow (struct json_object *req);

/* The server is stopping: commands that wait (wait-resync, key-remove
 * waiting for requests) give up within a tenth of a second with
 * ECANCELED (key-remove's key stays), and later ones do not wait.  For
 * good: there is no undo.
 */
void ic_protocol_cancel_waits (void);

/* Carry out a parsed request on @graph.  Wipes any key bytes in @req.
 *
 * Context: waits for the command running, if any.
 * Return: the reply (never NULL; out of memory aborts).
 */
struct json_object *ic_protocol_execute (struct ic_graph *graph,
                                         struct json_object *req);

/* ic_protocol_execute(), unless another command holds the lock that
 * serialises them (ping, status and stats need none): for the event
 * loop, which must not wait.
 *
 * Return: the reply, or NULL with nothing done.
 */
struct json_object *ic_protocol_try_execute (struct ic_graph *graph,
                                             struct json_object *req);

/* Parse and execute one line; the reply as a string without newline, to
 * free().  For tests and the fuzzer.
 */
char *ic_protocol_handle_line (struct ic_graph *graph, const char *line,
                               size_t len);

/* An error reply for @err (a positive errno) with @msg. */
struct json_object *ic_protocol_error (int err, const char *msg);

/* @reply as the text to send (json-c's, owned by @reply).  A reply that
 * holds a secret (the sw_secret of key-derive-secret) is written out so
 * that json-c leaves no copy of it behind (its buffer does not grow
 * while it holds the secret); after sending, the caller wipes the text
 * and the secret with ic_protocol_wipe_secrets().
 */
const char *ic_protocol_reply_text (struct json_object *reply);

/* Wipe, in @reply, the strings that are secrets, once it has been
 * written out: json-c would free them unwiped.  Return: true if there
 * was one (the text of ic_protocol_reply_text() then holds it too: the
 * caller wipes that).
 */
bool ic_protocol_wipe_secrets (struct json_object *reply);

#endif /* IC_PROTOCOL_H */

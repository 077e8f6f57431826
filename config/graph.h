/* config/graph.h - the object graph a configuration builds: named keys,
 * engines, devices (leaves first, then stacked devices in dependency
 * order) and exports, plus the process-wide settings (fallback keyslots,
 * control socket).  The one-line nbdkit parameters and the configuration
 * file both produce one; the plugin serves it and the control server
 * changes it at run time.
 *
 * Threading: built single-threaded.  At run time the control server adds
 * and removes keys under graph->lock; other objects are never freed
 * before the graph is.
 */
#ifndef IC_GRAPH_H
#define IC_GRAPH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "device.h"
#include "engine.h"
#include "export.h"
#include "key.h"

struct ic_graph {
  pthread_mutex_t lock;         /* covers the arrays' growth */
  struct ic_crypto_key **keys;
  size_t nkeys;
  struct ic_engine **engines;
  size_t nengines;
  struct ic_device **devices;   /* creation order; freed in reverse */
  size_t ndevices;
  struct ic_export **exports;   /* the first is the default */
  size_t nexports;

  unsigned int fallback_keyslots;
  bool fallback_enabled;
  char *control_path;           /* NULL: no control socket */
  mode_t control_mode;
  /* "file:line" of the control statement, for the messages of the
   * socket's creation; NULL when the socket is control= (or none).
   */
  char *control_at;
  /* Files the configuration created besides the leaves' (wrapping keys,
   * key blobs), removed with them by ic_graph_discard_files().
   */
  char **created;
  size_t ncreated;
};

struct ic_graph *ic_graph_new (void);

/* Free everything the graph owns: exports, devices (last created first),
 * engines, keys (wiped).  NULL is ignored.
 */
void ic_graph_free (struct ic_graph *graph);

/* Free a graph that was refused before it served anything, first
 * removing the files its leaves created (ic_leaf_discard()), so that a
 * configuration with an error leaves nothing behind.  NULL is ignored.
 */
void ic_graph_discard (struct ic_graph *graph);

/* Remove the files the graph's leaves and its configuration created
 * (ic_graph_created_file()), and nothing else: for a
 * process that exits without freeing the graph, before it served
 * anything.  NULL is ignored.
 */
void ic_graph_discard_files (struct ic_graph *graph);

/* Record that building the graph created the file @path (see created).
 * Return: 0, or -ENOMEM.
 */
int ic_graph_created_file (struct ic_graph *graph, const char *path);

/* Add an object; the graph owns it from then on, even on failure (when it
 * is freed; a refused leaf first discards what it created, as in
 * ic_graph_discard()).  Names are unique per kind.
 *
 * Return: 0, or -EEXIST / -ENOMEM with the reason in ic_last_error().
 */
int ic_graph_add_key (struct ic_graph *graph, struct ic_crypto_key *key);
int ic_graph_add_engine (struct ic_graph *graph, struct ic_engine *engine);
int ic_graph_add_device (struct ic_graph *graph, struct ic_device *dev);
int ic_graph_add_export (struct ic_graph *graph, struct ic_export *exp);

/* Take @key out of the graph (the caller frees it).
 *
 * Return: 0, or -ENOENT.
 */
int ic_graph_remove_key (struct ic_graph *graph, struct ic_crypto_key *key);

/* Look up by name; NULL if absent. */
struct ic_crypto_key *ic_graph_find_key (struct ic_graph *graph,
                                         const char *name);
struct ic_engine *ic_graph_find_engine (struct ic_graph *graph,
                                        const char *name);
struct ic_device *ic_graph_find_device (struct ic_graph *graph,
                                        const char *name);
struct ic_export *ic_graph_find_export (struct ic_graph *graph,
                                        const char *name);

#endif /* IC_GRAPH_H */

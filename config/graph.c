/* config/graph.c - see graph.h. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fallback.h"
#include "graph.h"
#include "leaf.h"

struct ic_graph *
ic_graph_new (void)
{
  struct ic_graph *g = calloc (1, sizeof *g);

  if (!g) {
    ic_error ("out of memory");
    errno = ENOMEM;
    return NULL;
  }
  pthread_mutex_init (&g->lock, NULL);
  g->fallback_enabled = true;
  g->control_mode = 0600;
  return g;
}

void
ic_graph_free (struct ic_graph *g)
{
  size_t i;

  if (!g)
    return;
  for (i = 0; i < g->nexports; i++)
    ic_export_free (g->exports[i]);
  for (i = g->ndevices; i-- > 0;)
    ic_device_destroy (g->devices[i]);
  for (i = 0; i < g->nengines; i++)
    ic_engine_free (g->engines[i]);
  /* A key must be evicted from every profile before it is freed; the
   * devices are gone, the process-wide fallback is not.
   */
  for (i = 0; i < g->nkeys; i++) {
    ic_crypto_fallback_evict_key (g->keys[i]);
    ic_crypto_key_free (g->keys[i]);
  }
  free (g->exports);
  free (g->devices);
  free (g->engines);
  free (g->keys);
  free (g->control_path);
  free (g->control_at);
  for (i = 0; i < g->ncreated; i++)
    free (g->created[i]);
  free (g->created);
  pthread_mutex_destroy (&g->lock);
  free (g);
}

void
ic_graph_discard_files (struct ic_graph *g)
{
  size_t i;

  if (!g)
    return;
  for (i = 0; i < g->ndevices; i++) {
    struct ic_leaf *leaf = ic_device_to_leaf (g->devices[i]);

    if (leaf)
      ic_leaf_discard (leaf);
  }
  for (i = g->ncreated; i-- > 0;)
    unlink (g->created[i]);
}

int
ic_graph_created_file (struct ic_graph *g, const char *path)
{
  char *copy = strdup (path);
  char **bigger;

  if (!copy)
    return -ENOMEM;
  bigger = realloc (g->created, (g->ncreated + 1) * sizeof *bigger);
  if (!bigger) {
    free (copy);
    return -ENOMEM;
  }
  g->created = bigger;
  g->created[g->ncreated++] = copy;
  return 0;
}

void
ic_graph_discard (struct ic_graph *g)
{
  ic_graph_discard_files (g);
  ic_graph_free (g);
}

/* Append @obj to the array *@arrayp of *@np pointers. */
static int
append (struct ic_graph *g, void ***arrayp, size_t *np, void *obj)
{
  void **bigger;

  pthread_mutex_lock (&g->lock);
  bigger = realloc (*arrayp, (*np + 1) * sizeof *bigger);
  if (bigger) {
    bigger[*np] = obj;
    *arrayp = bigger;
    __atomic_store_n (np, *np + 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock (&g->lock);
  if (!bigger) {
    ic_error ("out of memory");
    return -ENOMEM;
  }
  return 0;
}

int
ic_graph_add_key (struct ic_graph *g, struct ic_crypto_key *key)
{
  int r = -EEXIST;

  if (ic_graph_find_key (g, key->name))
    ic_error ("key %s is already defined", key->name);
  else
    r = append (g, (void ***) &g->keys, &g->nkeys, key);
  if (r < 0)
    ic_crypto_key_free (key);
  return r;
}

int
ic_graph_add_engine (struct ic_graph *g, struct ic_engine *engine)
{
  int r = -EEXIST;

  if (ic_graph_find_engine (g, ic_engine_name (engine)))
    ic_error ("engine %s is already defined", ic_engine_name (engine));
  else
    r = append (g, (void ***) &g->engines, &g->nengines, engine);
  if (r < 0)
    ic_engine_free (engine);
  return r;
}

int
ic_graph_add_device (struct ic_graph *g, struct ic_device *dev)
{
  int r = -EEXIST;

  if (ic_graph_find_device (g, dev->name))
    ic_error ("device %s is already defined", dev->name);
  else
    r = append (g, (void ***) &g->devices, &g->ndevices, dev);
  if (r < 0) {
    struct ic_leaf *leaf = ic_device_to_leaf (dev);

    if (leaf)
      ic_leaf_discard (leaf);
    ic_device_destroy (dev);
  }
  return r;
}

int
ic_graph_add_export (struct ic_graph *g, struct ic_export *exp)
{
  int r = -EEXIST;

  if (ic_graph_find_export (g, exp->name))
    ic_error ("export %s is already defined", exp->name);
  else
    r = append (g, (void ***) &g->exports, &g->nexports, exp);
  if (r < 0)
    ic_export_free (exp);
  return r;
}

int
ic_graph_remove_key (struct ic_graph *g, struct ic_crypto_key *key)
{
  size_t i;
  int r = -ENOENT;

  pthread_mutex_lock (&g->lock);
  for (i = 0; i < g->nkeys; i++)
    if (g->keys[i] == key) {
      g->keys[i] = g->keys[--g->nkeys];
      r = 0;
      break;
    }
  pthread_mutex_unlock (&g->lock);
  return r;
}

struct ic_crypto_key *
ic_graph_find_key (struct ic_graph *g, const char *name)
{
  struct ic_crypto_key *found = NULL;
  size_t i;

  pthread_mutex_lock (&g->lock);
  for (i = 0; i < g->nkeys && !found; i++)
    if (strcmp (g->keys[i]->name, name) == 0)
      found = g->keys[i];
  pthread_mutex_unlock (&g->lock);
  return found;
}

struct ic_engine *
ic_graph_find_engine (struct ic_graph *g, const char *name)
{
  struct ic_engine *found = NULL;
  size_t i;

  pthread_mutex_lock (&g->lock);
  for (i = 0; i < g->nengines && !found; i++)
    if (strcmp (ic_engine_name (g->engines[i]), name) == 0)
      found = g->engines[i];
  pthread_mutex_unlock (&g->lock);
  return found;
}

struct ic_device *
ic_graph_find_device (struct ic_graph *g, const char *name)
{
  struct ic_device *found = NULL;
  size_t i;

  pthread_mutex_lock (&g->lock);
  for (i = 0; i < g->ndevices && !found; i++)
    if (strcmp (g->devices[i]->name, name) == 0)
      found = g->devices[i];
  pthread_mutex_unlock (&g->lock);
  return found;
}

struct ic_export *
ic_graph_find_export (struct ic_graph *g, const char *name)
{
  struct ic_export *found = NULL;
  size_t i;

  pthread_mutex_lock (&g->lock);
  for (i = 0; i < g->nexports && !found; i++)
    if (strcmp (g->exports[i]->name, name) == 0)
      found = g->exports[i];
  pthread_mutex_unlock (&g->lock);
  return found;
}

/* config/params.h - the one-line form: nbdkit parameters that make a
 * one-export graph with no configuration file:
 *
 *   nbdkit inlinecrypt size=1G mode=AES-256-XTS key=+key.hex
 *
 * One key (the hex text of key=), one engine (keyslots=, engine-modes=,
 * max-dun-bytes=, program-us=), one leaf (memory size= or file=), and one
 * export "" mapped whole to the key from dun-base=.  config=FILE instead
 * reads a configuration file (config/conf.h).
 *
 * Not thread-safe: used while nbdkit reads its command line.
 */
#ifndef IC_PARAMS_H
#define IC_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"

struct ic_params;

/* Help text for nbdkit --help (the parameter table of the README). */
extern const char ic_params_help[];

struct ic_params *ic_params_new (void);

/* Wipe and free.  NULL is ignored. */
void ic_params_free (struct ic_params *params);

/* Take one parameter.  For key=, @value is the hex text of the key
 * itself (the plugin reads +FILE, - and -FD with nbdkit_read_password);
 * it is decoded into locked memory and never echoed.  A parameter already
 * taken is refused (ic_params_check_once()): none may be repeated.
 *
 * Return: 0, or -EINVAL with a message naming the parameter.
 */
int ic_params_set (struct ic_params *params, const char *key,
                   const char *value);

/* Refuse @key if ic_params_set() has taken it already.  The plugin asks
 * before it reads key='s secret, so that a second key= is refused before
 * a prompt or a read.
 *
 * Return: 0, or -EINVAL with a message naming the parameter.
 */
int ic_params_check_once (const struct ic_params *params, const char *key);

/* True if @key is a parameter of the one-line form. */
bool ic_params_is_known (const char *key);

/* Check the parameters taken together and build the graph.
 *
 * Return: the graph, or NULL with errno set and a message naming the
 * parameter at fault.
 */
struct ic_graph *ic_params_build (struct ic_params *params);

/* The config= file, or NULL. */
const char *ic_params_config_file (const struct ic_params *params);

/* The control= socket, or NULL. */
const char *ic_params_control (const struct ic_params *params);

/* With config=, the first other parameter given besides control= (which
 * may override the file's socket), or NULL: the file says it all.
 */
const char *ic_params_config_conflict (const struct ic_params *params);

#endif /* IC_PARAMS_H */

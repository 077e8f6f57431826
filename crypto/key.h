/* crypto/key.h - inline-encryption keys.  Follows Linux
 * include/linux/blk-crypto.h (struct blk_crypto_config, struct
 * blk_crypto_key) and block/blk-crypto.c (blk_crypto_init_key).
 *
 * A key is identified by the key object, never by its bytes: two keys with
 * the same bytes are two keys and take two keyslots (as upstream).  A key is
 * immutable after init and must outlive every request that uses it.  The
 * whole object lives in locked memory (crypto/secmem.h) and is wiped when
 * freed; its bytes never reach a message, a log or a reply.
 */
#ifndef IC_KEY_H
#define IC_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "mode.h"

/* Bit values, so that a profile's key_types_supported is a mask of them. */
enum ic_crypto_key_type {
  IC_CRYPTO_KEY_TYPE_RAW = 0x1,
  IC_CRYPTO_KEY_TYPE_HW_WRAPPED = 0x2,
};

#define IC_CRYPTO_KEY_NAME_MAX 64

struct ic_crypto_config {
  enum ic_crypto_mode_num crypto_mode;
  unsigned int data_unit_size;  /* bytes, a power of two */
  unsigned int dun_bytes;       /* bytes of DUN the user needs */
  enum ic_crypto_key_type key_type;
};

struct ic_crypto_key {
  struct ic_crypto_config crypto_cfg;
  unsigned int data_unit_size_bits;
  unsigned int size;            /* bytes used in bytes[] */
  /* Beyond upstream: a name for messages ("k1"); never secret. */
  char name[IC_CRYPTO_KEY_NAME_MAX];
  /* Beyond upstream: how many context-map snapshots refer to the key
   * (stack/export.c), plus the control commands using it while they wait
   * outside the command lock (a map being made, an evict; see
   * server/protocol.c), so that a key is only freed once no request and
   * no command can still be using it.  Atomic.
   */
  unsigned int refs;
  /* Beyond upstream, hardware-wrapped keys: the name of the engine whose
   * key manager prepared the key ("" if unknown), where the control
   * server's key-derive-secret asks by default.  Never secret.
   */
  char engine[IC_CRYPTO_KEY_NAME_MAX];
  /* Raw: the key.  Hardware-wrapped: its ephemerally-wrapped blob. */
  uint8_t bytes[IC_CRYPTO_MAX_ANY_KEY_SIZE];
};

/* Validate a configuration and fill @key (blk_crypto_init_key).  Checks, in
 * this order, each with its own message: the mode is valid; a raw key has
 * exactly the mode's key size, a wrapped key security_strength..128 bytes;
 * 1 <= @dun_bytes <= the mode's IV size; @data_unit_size is a power of two
 * (upstream) in 512..65536 (beyond upstream: the range this project
 * serves).  @name labels messages and may be NULL.
 *
 * Context: any.  @key should come from ic_crypto_key_alloc().
 * Return: 0, or -EINVAL with the reason in ic_last_error().
 */
int ic_crypto_init_key (struct ic_crypto_key *key, const char *name,
                        const uint8_t *key_bytes, size_t key_size,
                        enum ic_crypto_key_type key_type,
                        enum ic_crypto_mode_num crypto_mode,
                        unsigned int dun_bytes,
                        unsigned int data_unit_size);

/* Allocate a zeroed key object in locked memory.
 *
 * Return: the key, or NULL with errno = ENOMEM.
 */
struct ic_crypto_key *ic_crypto_key_alloc (void);

/* ic_crypto_key_alloc() + ic_crypto_init_key().
 *
 * Return: the key, or NULL with errno set and the reason in ic_last_error().
 */
struct ic_crypto_key *ic_crypto_key_new (const char *name,
                                         const uint8_t *key_bytes,
                                         size_t key_size,
                                         enum ic_crypto_key_type key_type,
                                         enum ic_crypto_mode_num crypto_mode,
                                         unsigned int dun_bytes,
                                         unsigned int data_unit_size);

/* Wipe and free a key.  The caller guarantees that no request uses it and
 * that it was evicted from every profile it was programmed into.  NULL is
 * ignored.
 */
void ic_crypto_key_free (struct ic_crypto_key *key);

/* The value of the hexadecimal digit @c, or -1. */
int ic_hex_value (int c);

/* Decode hex text (upper or lower case; surrounding white space, e.g. the
 * trailing newline of a key file, is ignored) into @out of @out_size bytes.
 * @what names the source in messages ("key").  The input is never echoed.
 *
 * Return: the number of bytes decoded, or -EINVAL (odd length, non-hex
 * character at some position, empty) or -E2BIG (more than @out_size bytes).
 */
int ic_hex_decode (const char *what, const char *hex, uint8_t *out,
                   size_t out_size);

/* The name of a key type ("raw", "hw_wrapped"). */
const char *ic_crypto_key_type_name (enum ic_crypto_key_type type);

#endif /* IC_KEY_H */

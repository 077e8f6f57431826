/* crypto/cipher-pool.h - the ciphers of one keyslot.
 *
 * A keyslot of the engine or of the fallback holds one key, but many
 * requests may use it at once, and a cipher (crypto/cipher.h) has one user
 * at a time.  So a slot keeps a pool of ciphers keyed with its key: a
 * request takes one, en/decrypts without any lock, and gives it back.
 * Programming the slot re-keys the idle ciphers there and then (the
 * equivalent of the fallback's per-slot tfms prepared ahead of use), so the
 * request path never sets a key, except when more requests than ever before
 * use the slot at once and a cipher has to be added.  Evicting the slot
 * frees (and so wipes) them all.
 *
 * Threading: pool->lock covers the free list and the key; it is held for a
 * push or a pop, never across en/decryption or key set-up.
 */
#ifndef IC_CIPHER_POOL_H
#define IC_CIPHER_POOL_H

#include <pthread.h>
#include <stdint.h>

#include "cipher.h"
#include "mode.h"

struct ic_pooled_cipher;

struct ic_cipher_pool {
  pthread_mutex_t lock;
  enum ic_crypto_mode_num mode;         /* protected by lock */
  uint64_t gen;                         /* protected by lock */
  /* The key the ciphers hold; points into memory the owner keeps locked
   * and unchanged while the pool is programmed.  Protected by lock.
   */
  const uint8_t *key_bytes;
  unsigned int key_size;
  struct ic_pooled_cipher *free_list;   /* protected by lock */
  unsigned int count;                   /* ciphers in or out; lock */
};

void ic_cipher_pool_init (struct ic_cipher_pool *pool);

/* Free every cipher.  None may be out. */
void ic_cipher_pool_destroy (struct ic_cipher_pool *pool);

/* Key the pool with @size bytes at @key_bytes for @mode: idle ciphers of
 * the same mode are re-keyed, others freed; at least one keyed cipher is
 * ready on return.
 *
 * Context: the slot is idle (no cipher out); may block (allocates).
 * Return: 0, or -errno (bad key, out of memory); then the pool keeps its
 * old key, as hardware that refuses a key keeps its slot.
 */
int ic_cipher_pool_program (struct ic_cipher_pool *pool,
                            enum ic_crypto_mode_num mode,
                            const uint8_t *key_bytes, unsigned int size);

/* Forget the key: free (wipe) every idle cipher; ciphers out are freed
 * when given back.
 */
void ic_cipher_pool_clear (struct ic_cipher_pool *pool);

/* Take a cipher holding the pool's key, adding one if none is idle.
 *
 * Context: takes pool->lock briefly; may allocate.
 * Return: the cipher, or NULL with errno set (EIO if the pool has no key).
 */
struct ic_pooled_cipher *ic_cipher_pool_get (struct ic_cipher_pool *pool);

/* The cipher inside a pooled cipher. */
struct ic_cipher *ic_pooled_cipher (struct ic_pooled_cipher *pc);

/* Give a cipher back; one keyed under an older key is freed instead. */
void ic_cipher_pool_put (struct ic_cipher_pool *pool,
                         struct ic_pooled_cipher *pc);

#endif /* IC_CIPHER_POOL_H */

/* crypto/cipher-pool.c - see cipher-pool.h. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "cipher-pool.h"
#include "error.h"

struct ic_pooled_cipher {
  struct ic_cipher *cipher;
  uint64_t gen;                 /* pool->gen when keyed */
  struct ic_pooled_cipher *next;
};

void
ic_cipher_pool_init (struct ic_cipher_pool *pool)
{
  pthread_mutex_init (&pool->lock, NULL);
  pool->mode = IC_ENCRYPTION_MODE_INVALID;
  pool->gen = 0;
  pool->key_bytes = NULL;
  pool->key_size = 0;
  pool->free_list = NULL;
  pool->count = 0;
}

static void
pooled_free (struct ic_pooled_cipher *pc)
{
  ic_cipher_free (pc->cipher);
  free (pc);
}

/* Detach the free list.  Context: pool->lock held. */
static struct ic_pooled_cipher *
take_free_list_locked (struct ic_cipher_pool *pool)
{
  struct ic_pooled_cipher *list = pool->free_list;
  struct ic_pooled_cipher *pc;

  pool->free_list = NULL;
  for (pc = list; pc; pc = pc->next)
    pool->count--;
  return list;
}

static void
free_list (struct ic_pooled_cipher *list)
{
  while (list) {
    struct ic_pooled_cipher *next = list->next;

    pooled_free (list);
    list = next;
  }
}

void
ic_cipher_pool_destroy (struct ic_cipher_pool *pool)
{
  ic_cipher_pool_clear (pool);
  pthread_mutex_destroy (&pool->lock);
}

void
ic_cipher_pool_clear (struct ic_cipher_pool *pool)
{
  struct ic_pooled_cipher *list;

  pthread_mutex_lock (&pool->lock);
  pool->gen++;
  pool->key_bytes = NULL;
  pool->key_size = 0;
  list = take_free_list_locked (pool);
  pthread_mutex_unlock (&pool->lock);
  free_list (list);
}

/* A new cipher keyed with @key_bytes. */
static struct ic_pooled_cipher *
pooled_new (enum ic_crypto_mode_num mode, const uint8_t *key_bytes,
            unsigned int size, uint64_t gen)
{
  struct ic_pooled_cipher *pc = calloc (1, sizeof *pc);
  int r;

  if (!pc) {
    ic_error ("cipher pool: out of memory");
    errno = ENOMEM;
    return NULL;
  }
  pc->cipher = ic_cipher_new (mode);
  if (!pc->cipher) {
    r = errno;
    free (pc);
    errno = r;
    return NULL;
  }
  r = ic_cipher_setkey (pc->cipher, key_bytes, size);
  if (r < 0) {
    pooled_free (pc);
    errno = -r;
    return NULL;
  }
  pc->gen = gen;
  return pc;
}

int
ic_cipher_pool_program (struct ic_cipher_pool *pool,
                        enum ic_crypto_mode_num mode,
                        const uint8_t *key_bytes, unsigned int size)
{
  struct ic_pooled_cipher *fresh = NULL;
  struct ic_pooled_cipher *first = NULL;
  struct ic_pooled_cipher **pp;
  struct ic_pooled_cipher *list;
  struct ic_pooled_cipher *keep = NULL;
  struct ic_pooled_cipher *drop = NULL;
  struct ic_pooled_cipher *pc;
  const uint8_t *old_bytes;
  unsigned int old_size;
  uint64_t gen;
  int r;

  /* Refuse a bad key before touching anything: the pool then keeps its
   * old key, as hardware that rejects a key keeps its slot.
   */
  r = ic_cipher_check_key (mode, key_bytes, size);
  if (r < 0)
    return r;

  /* Re-key idle ciphers of the mode in place (no allocation, which is
   * what a miss costs most); only a pool without one gets a new cipher,
   * made first so that running out of memory changes nothing either.
   * One idle cipher of the mode is keyed first, on its own: if that
   * fails (libgcrypt out of secure memory), it gets the old key back and
   * the pool is as it was, still holding its key.
   */
  pthread_mutex_lock (&pool->lock);
  for (pp = &pool->free_list; *pp; pp = &(*pp)->next)
    if (ic_cipher_mode ((*pp)->cipher) == mode) {
      first = *pp;
      *pp = first->next;
      pool->count--;
      break;
    }
  old_bytes = pool->key_bytes;
  old_size = pool->key_size;
  pthread_mutex_unlock (&pool->lock);
  if (first) {
    r = ic_cipher_setkey (first->cipher, key_bytes, size);
    if (r < 0) {
      bool back = old_bytes &&
        ic_cipher_setkey (first->cipher, old_bytes, old_size) == 0;

      if (back) {
        pthread_mutex_lock (&pool->lock);
        first->next = pool->free_list;
        pool->free_list = first;
        pool->count++;
        pthread_mutex_unlock (&pool->lock);
      }
      else
        pooled_free (first);
      return r;
    }
  }
  else {
    fresh = pooled_new (mode, key_bytes, size, 0);
    if (!fresh)
      return -errno;
  }

  /* Take the idle ciphers out, so that keying them needs no lock.  The
   * slot is idle: nobody else touches the pool meanwhile.
   */
  pthread_mutex_lock (&pool->lock);
  gen = ++pool->gen;
  pool->key_bytes = NULL;
  list = take_free_list_locked (pool);
  pthread_mutex_unlock (&pool->lock);

  while (list) {
    pc = list;
    list = list->next;
    if (ic_cipher_mode (pc->cipher) == mode &&
        ic_cipher_setkey (pc->cipher, key_bytes, size) == 0) {
      pc->gen = gen;
      pc->next = keep;
      keep = pc;
    }
    else {
      /* One active mode per slot: ciphers of another mode go. */
      pc->next = drop;
      drop = pc;
    }
  }
  free_list (drop);
  if (!fresh)
    fresh = first;
  fresh->gen = gen;
  fresh->next = keep;
  keep = fresh;

  pthread_mutex_lock (&pool->lock);
  pool->mode = mode;
  pool->key_bytes = key_bytes;
  pool->key_size = size;
  for (pc = keep; pc; pc = pc->next)
    pool->count++;
  /* Nothing can be on the list: puts during programming see a new gen. */
  list = pool->free_list;
  pool->free_list = keep;
  pthread_mutex_unlock (&pool->lock);
  free_list (list);
  return 0;
}

struct ic_pooled_cipher *
ic_cipher_pool_get (struct ic_cipher_pool *pool)
{
  struct ic_pooled_cipher *pc;
  enum ic_crypto_mode_num mode;
  const uint8_t *key_bytes;
  unsigned int size;
  uint64_t gen;

  pthread_mutex_lock (&pool->lock);
  pc = pool->free_list;
  if (pc) {
    pool->free_list = pc->next;
    pthread_mutex_unlock (&pool->lock);
    return pc;
  }
  mode = pool->mode;
  key_bytes = pool->key_bytes;
  size = pool->key_size;
  gen = pool->gen;
  if (key_bytes)
    pool->count++;
  pthread_mutex_unlock (&pool->lock);

  if (!key_bytes) {
    ic_error ("cipher pool: keyslot holds no key");
    errno = EIO;
    return NULL;
  }
  /* More users at once than ever before: one more cipher.  The key bytes
   * stay valid: the slot cannot be reprogrammed while we hold it.
   */
  pc = pooled_new (mode, key_bytes, size, gen);
  if (!pc) {
    pthread_mutex_lock (&pool->lock);
    pool->count--;
    pthread_mutex_unlock (&pool->lock);
  }
  return pc;
}

struct ic_cipher *
ic_pooled_cipher (struct ic_pooled_cipher *pc)
{
  return pc->cipher;
}

void
ic_cipher_pool_put (struct ic_cipher_pool *pool, struct ic_pooled_cipher *pc)
{
  pthread_mutex_lock (&pool->lock);
  if (pc->gen == pool->gen && pool->key_bytes) {
    pc->next = pool->free_list;
    pool->free_list = pc;
    pc = NULL;
  }
  else
    pool->count--;
  pthread_mutex_unlock (&pool->lock);
  if (pc)
    pooled_free (pc);
}

/* crypto/fallback.c - see fallback.h.  Mirrors Linux
 * block/blk-crypto-fallback.c.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cipher-pool.h"
#include "error.h"
#include "fallback.h"
#include "secmem.h"

struct fallback_slot {
  /* What the slot was programmed with (as blk_crypto_fallback_keyslot's
   * crypto_mode); written under the profile lock.
   */
  const struct ic_crypto_key *key;
  struct ic_cipher_pool ciphers;
};

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int num_keyslots = IC_FALLBACK_DEFAULT_KEYSLOTS;
static struct ic_crypto_profile *profile;       /* set once, under init_lock */
static struct fallback_slot *slots;

/* Counters: atomics. */
static uint64_t encrypt_requests[IC_ENCRYPTION_MODE_MAX];
static uint64_t encrypt_bytes[IC_ENCRYPTION_MODE_MAX];
static uint64_t decrypt_requests[IC_ENCRYPTION_MODE_MAX];
static uint64_t decrypt_bytes[IC_ENCRYPTION_MODE_MAX];

#define COUNT(field, n) __atomic_fetch_add (&(field), (n), __ATOMIC_RELAXED)

int
ic_crypto_fallback_set_num_keyslots (unsigned int n)
{
  int r = 0;

  if (n < 1 || n > IC_FALLBACK_MAX_KEYSLOTS) {
    ic_error ("fallback: keyslots=%u out of range: 1 to %u", n,
              IC_FALLBACK_MAX_KEYSLOTS);
    return -EINVAL;
  }
  pthread_mutex_lock (&init_lock);
  if (profile && n != num_keyslots) {
    ic_error ("fallback: keyslots: the fallback is already in use with %u "
              "keyslots", num_keyslots);
    r = -EBUSY;
  }
  else
    num_keyslots = n;
  pthread_mutex_unlock (&init_lock);
  return r;
}

unsigned int
ic_crypto_fallback_num_keyslots (void)
{
  unsigned int n;

  pthread_mutex_lock (&init_lock);
  n = num_keyslots;
  pthread_mutex_unlock (&init_lock);
  return n;
}

/* blk_crypto_fallback_keyslot_program.  Context: profile lock held. */
static int
fallback_keyslot_program (struct ic_crypto_profile *p,
                          const struct ic_crypto_key *key, unsigned int slot)
{
  struct fallback_slot *s = &slots[slot];
  int err;

  /* One active mode per slot: the pool drops ciphers of another mode. */
  err = ic_cipher_pool_program (&s->ciphers, key->crypto_cfg.crypto_mode,
                                key->bytes, key->size);
  if (err)
    return err;
  __atomic_store_n (&s->key, key, __ATOMIC_RELEASE);
  return 0;
}

/* blk_crypto_fallback_keyslot_evict: upstream sets a random blank key; we
 * free the ciphers, which wipes their key schedules.
 */
static int
fallback_keyslot_evict (struct ic_crypto_profile *p,
                        const struct ic_crypto_key *key, int slot)
{
  struct fallback_slot *s = &slots[slot];

  __atomic_store_n (&s->key, NULL, __ATOMIC_RELEASE);
  ic_cipher_pool_clear (&s->ciphers);
  return 0;
}

/* blk_crypto_fallback_init */
int
ic_crypto_fallback_init (void)
{
  struct ic_crypto_profile *p;
  unsigned int i;
  int r;

  if (__atomic_load_n (&profile, __ATOMIC_ACQUIRE))
    return 0;
  r = ic_crypto_init ();
  if (r < 0)
    return r;

  pthread_mutex_lock (&init_lock);
  if (profile)
    goto out_unlock;
  p = calloc (1, sizeof *p);
  slots = calloc (num_keyslots, sizeof slots[0]);
  if (!p || !slots)
    goto out_nomem;
  r = ic_crypto_profile_init (p, num_keyslots);
  if (r < 0)
    goto out_nomem;
  for (i = 0; i < num_keyslots; i++)
    ic_cipher_pool_init (&slots[i].ciphers);
  p->ll_ops.keyslot_program = fallback_keyslot_program;
  p->ll_ops.keyslot_evict = fallback_keyslot_evict;
  ic_crypto_fallback_capabilities (p);
  strcpy (p->name, "fallback");
  __atomic_store_n (&profile, p, __ATOMIC_RELEASE);
out_unlock:
  pthread_mutex_unlock (&init_lock);
  return 0;

out_nomem:
  free (p);
  free (slots);
  slots = NULL;
  pthread_mutex_unlock (&init_lock);
  ic_error ("fallback: out of memory for %u keyslots", num_keyslots);
  return -ENOMEM;
}

void
ic_crypto_fallback_capabilities (struct ic_crypto_profile *caps)
{
  int m;

  caps->max_dun_bytes_supported = IC_CRYPTO_MAX_IV_SIZE;
  caps->modes_supported[0] = 0;
  for (m = 1; m < IC_ENCRYPTION_MODE_MAX; m++)
    caps->modes_supported[m] = 0xffffffff;
  /* The fallback never handles hardware-wrapped keys. */
  caps->key_types_supported = IC_CRYPTO_KEY_TYPE_RAW;
}

struct ic_crypto_profile *
ic_crypto_fallback_profile (void)
{
  return __atomic_load_n (&profile, __ATOMIC_ACQUIRE);
}

bool
ic_crypto_fallback_supports (const struct ic_crypto_config *cfg)
{
  return cfg->key_type == IC_CRYPTO_KEY_TYPE_RAW &&
    ic_crypto_mode_is_valid (cfg->crypto_mode);
}

static int
fallback_crypt (const struct ic_crypt_ctx *ctx, void *dst, const void *src,
                size_t len, bool enc)
{
  const struct ic_crypto_key *key = ctx->key;
  struct ic_crypto_keyslot *slot;
  struct ic_pooled_cipher *pc;
  struct fallback_slot *s;
  int err;

  if (!ic_crypto_fallback_supports (&key->crypto_cfg)) {
    ic_error ("fallback: %s: hardware-wrapped keys can only be used with "
              "inline encryption hardware", key->name);
    return -EOPNOTSUPP;
  }
  err = ic_crypto_fallback_init ();
  if (err < 0)
    return err;

  err = ic_crypto_get_keyslot (profile, key, &slot);
  if (err < 0)
    return err;
  s = &slots[ic_crypto_keyslot_index (slot)];
  pc = ic_cipher_pool_get (&s->ciphers);
  if (!pc) {
    err = -errno;
    goto out_put_slot;
  }
  if (enc)
    err = ic_cipher_encrypt (ic_pooled_cipher (pc), dst, src, len,
                             key->crypto_cfg.data_unit_size, ctx->dun);
  else
    err = ic_cipher_decrypt_holes (ic_pooled_cipher (pc), dst, src, len,
                                   key->crypto_cfg.data_unit_size, ctx->dun);
  ic_cipher_pool_put (&s->ciphers, pc);
  if (err == 0 && enc) {
    COUNT (encrypt_requests[key->crypto_cfg.crypto_mode], 1);
    COUNT (encrypt_bytes[key->crypto_cfg.crypto_mode], len);
  }
  else if (err == 0) {
    COUNT (decrypt_requests[key->crypto_cfg.crypto_mode], 1);
    COUNT (decrypt_bytes[key->crypto_cfg.crypto_mode], len);
  }
out_put_slot:
  ic_crypto_put_keyslot (slot);
  return err;
}

int
ic_crypto_fallback_encrypt (const struct ic_crypt_ctx *ctx, void *dst,
                            const void *src, size_t len)
{
  return fallback_crypt (ctx, dst, src, len, true);
}

int
ic_crypto_fallback_decrypt (const struct ic_crypt_ctx *ctx, void *dst,
                            const void *src, size_t len)
{
  return fallback_crypt (ctx, dst, src, len, false);
}

int
ic_crypto_fallback_evict_key (const struct ic_crypto_key *key)
{
  struct ic_crypto_profile *p = ic_crypto_fallback_profile ();

  return p ? ic_crypto_evict_key (p, key) : 0;
}

void
ic_crypto_fallback_read_stats (struct ic_fallback_stats *st, bool reset)
{
  struct ic_crypto_profile *p = ic_crypto_fallback_profile ();
  int m;

  memset (st, 0, sizeof *st);
  if (p)
    ic_crypto_profile_read_stats (p, &st->slots, reset);
#define READ(dst, src) \
  (dst) = reset ? __atomic_exchange_n (&(src), 0, __ATOMIC_RELAXED) \
                : __atomic_load_n (&(src), __ATOMIC_RELAXED)
  for (m = 0; m < IC_ENCRYPTION_MODE_MAX; m++) {
    READ (st->encrypt_requests[m], encrypt_requests[m]);
    READ (st->encrypt_bytes[m], encrypt_bytes[m]);
    READ (st->decrypt_requests[m], decrypt_requests[m]);
    READ (st->decrypt_bytes[m], decrypt_bytes[m]);
  }
#undef READ
}

void
ic_crypto_fallback_destroy (void)
{
  unsigned int i;

  pthread_mutex_lock (&init_lock);
  if (profile) {
    for (i = 0; i < profile->num_slots; i++)
      ic_cipher_pool_destroy (&slots[i].ciphers);
    ic_crypto_profile_destroy (profile);
    free (profile);
    free (slots);
    slots = NULL;
    __atomic_store_n (&profile, NULL, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock (&init_lock);
}

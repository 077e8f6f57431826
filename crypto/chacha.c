/* crypto/chacha.c - see chacha.h.  Written from the ChaCha and XChaCha
 * specifications (RFC 8439 section 2, draft-irtf-cfrg-xchacha) with the
 * state, IV and counter conventions of Linux lib/crypto/chacha.c and
 * crypto/chacha_generic.c.
 */
#include <config.h>

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "chacha.h"
#include "error.h"
#include "secmem.h"
#include "simd.h"

struct chacha_impl {
  struct ic_impl impl;
  void (*crypt) (uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                 const uint8_t *src, size_t len, int nrounds);
  void (*hchacha) (const uint32_t state[IC_CHACHA_STATE_WORDS],
                   uint32_t out[IC_HCHACHA_OUT_WORDS], int nrounds);
};

static const struct chacha_impl generic_impl = {
  { "generic", ic_impl_always }, ic_chacha_crypt_generic,
  ic_hchacha_block_generic,
};
static const struct chacha_impl avx2_impl = {
  { "avx2", ic_chacha_avx2_usable }, ic_chacha_crypt_avx2,
  ic_hchacha_block_avx2,
};

/* Best first. */
static const struct ic_impl *const impls[] = {
  &avx2_impl.impl, &generic_impl.impl,
};
static struct ic_impl_choice choice = {
  "chacha", impls, sizeof impls / sizeof impls[0], NULL,
};

static inline uint32_t
get_le32 (const uint8_t *p)
{
  uint32_t v;

  memcpy (&v, p, sizeof v);
  return le32toh (v);
}

static inline void
put_le32 (uint8_t *p, uint32_t v)
{
  v = htole32 (v);
  memcpy (p, &v, sizeof v);
}

static inline uint32_t
rol32 (uint32_t v, int n)
{
  return v << n | v >> (32 - n);
}

static const struct chacha_impl *
current_impl (void)
{
  return (const struct chacha_impl *) ic_impl_current (&choice);
}

void
ic_chacha_use_simd (bool enable)
{
  ic_impl_use_simd (&choice, enable);
}

const char *
ic_chacha_impl_name (void)
{
  return current_impl ()->impl.name;
}

void
ic_chacha_load_key (uint32_t key[IC_CHACHA_KEY_WORDS],
                    const uint8_t raw[IC_CHACHA_KEY_SIZE])
{
  int i;

  for (i = 0; i < IC_CHACHA_KEY_WORDS; i++)
    key[i] = get_le32 (raw + 4 * i);
}

void
ic_chacha_init (uint32_t state[IC_CHACHA_STATE_WORDS],
                const uint32_t key[IC_CHACHA_KEY_WORDS],
                const uint8_t iv[IC_CHACHA_IV_SIZE])
{
  int i;

  /* "expand 32-byte k" */
  state[0] = 0x61707865;
  state[1] = 0x3320646e;
  state[2] = 0x79622d32;
  state[3] = 0x6b206574;
  for (i = 0; i < IC_CHACHA_KEY_WORDS; i++)
    state[4 + i] = key[i];
  for (i = 0; i < 4; i++)
    state[12 + i] = get_le32 (iv + 4 * i);
}

#define QUARTERROUND(a, b, c, d)                \
  do {                                          \
    x[a] += x[b]; x[d] = rol32 (x[d] ^ x[a], 16);  \
    x[c] += x[d]; x[b] = rol32 (x[b] ^ x[c], 12);  \
    x[a] += x[b]; x[d] = rol32 (x[d] ^ x[a], 8);   \
    x[c] += x[d]; x[b] = rol32 (x[b] ^ x[c], 7);   \
  } while (0)

void
ic_chacha_permute (uint32_t x[IC_CHACHA_STATE_WORDS], int nrounds)
{
  int i;

  for (i = 0; i < nrounds; i += 2) {
    /* Column round. */
    QUARTERROUND (0, 4, 8, 12);
    QUARTERROUND (1, 5, 9, 13);
    QUARTERROUND (2, 6, 10, 14);
    QUARTERROUND (3, 7, 11, 15);
    /* Diagonal round. */
    QUARTERROUND (0, 5, 10, 15);
    QUARTERROUND (1, 6, 11, 12);
    QUARTERROUND (2, 7, 8, 13);
    QUARTERROUND (3, 4, 9, 14);
  }
}

/* One block of keystream into @x (permuted copy of @state plus @state);
 * increments the block counter.  Only word 12 counts, as in Linux: no carry
 * into word 13.
 */
static inline void
chacha_keystream (uint32_t state[IC_CHACHA_STATE_WORDS],
                  uint32_t x[IC_CHACHA_STATE_WORDS], int nrounds)
{
  int i;

  memcpy (x, state, IC_CHACHA_STATE_WORDS * sizeof x[0]);
  ic_chacha_permute (x, nrounds);
  for (i = 0; i < IC_CHACHA_STATE_WORDS; i++)
    x[i] += state[i];
  state[12]++;
}

void
ic_chacha_block (uint32_t state[IC_CHACHA_STATE_WORDS],
                 uint8_t out[IC_CHACHA_BLOCK_SIZE], int nrounds)
{
  uint32_t x[IC_CHACHA_STATE_WORDS];
  int i;

  chacha_keystream (state, x, nrounds);
  for (i = 0; i < IC_CHACHA_STATE_WORDS; i++)
    put_le32 (out + 4 * i, x[i]);
  ic_memzero_explicit (x, sizeof x);
}

void
ic_hchacha_block (const uint32_t state[IC_CHACHA_STATE_WORDS],
                  uint32_t out[IC_HCHACHA_OUT_WORDS], int nrounds)
{
  current_impl ()->hchacha (state, out, nrounds);
}

void
ic_hchacha_block_generic (const uint32_t state[IC_CHACHA_STATE_WORDS],
                          uint32_t out[IC_HCHACHA_OUT_WORDS], int nrounds)
{
  uint32_t x[IC_CHACHA_STATE_WORDS];

  memcpy (x, state, sizeof x);
  ic_chacha_permute (x, nrounds);
  memcpy (&out[0], &x[0], 4 * sizeof x[0]);
  memcpy (&out[4], &x[12], 4 * sizeof x[0]);
  ic_memzero_explicit (x, sizeof x);
}

void
ic_chacha_crypt_generic (uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                         const uint8_t *src, size_t len, int nrounds)
{
  uint32_t x[IC_CHACHA_STATE_WORDS];
  uint8_t stream[IC_CHACHA_BLOCK_SIZE];
  size_t i;

  for (; len >= IC_CHACHA_BLOCK_SIZE; len -= IC_CHACHA_BLOCK_SIZE) {
    chacha_keystream (state, x, nrounds);
    for (i = 0; i < IC_CHACHA_STATE_WORDS; i++)
      put_le32 (dst + 4 * i, get_le32 (src + 4 * i) ^ x[i]);
    dst += IC_CHACHA_BLOCK_SIZE;
    src += IC_CHACHA_BLOCK_SIZE;
  }
  if (len > 0) {
    chacha_keystream (state, x, nrounds);
    for (i = 0; i < IC_CHACHA_STATE_WORDS; i++)
      put_le32 (stream + 4 * i, x[i]);
    for (i = 0; i < len; i++)
      dst[i] = src[i] ^ stream[i];
    ic_memzero_explicit (stream, sizeof stream);
  }
  ic_memzero_explicit (x, sizeof x);
}

void
ic_chacha_crypt (uint32_t state[IC_CHACHA_STATE_WORDS], uint8_t *dst,
                 const uint8_t *src, size_t len, int nrounds)
{
  current_impl ()->crypt (state, dst, src, len, nrounds);
}

/* crypto_xchacha_crypt in Linux crypto/chacha_generic.c. */
void
ic_xchacha_crypt (const uint32_t key[IC_CHACHA_KEY_WORDS],
                  const uint8_t iv[IC_XCHACHA_IV_SIZE], uint8_t *dst,
                  const uint8_t *src, size_t len, int nrounds)
{
  uint32_t state[IC_CHACHA_STATE_WORDS];
  uint32_t subkey[IC_HCHACHA_OUT_WORDS];
  uint8_t real_iv[IC_CHACHA_IV_SIZE];

  /* The subkey from the key and the first 16 nonce bytes. */
  ic_chacha_init (state, key, iv);
  ic_hchacha_block (state, subkey, nrounds);

  /* Words 12-13: the stream position; words 14-15: nonce bytes 16-23. */
  memcpy (&real_iv[0], iv + 24, 8);
  memcpy (&real_iv[8], iv + 16, 8);
  ic_chacha_init (state, subkey, real_iv);
  ic_chacha_crypt (state, dst, src, len, nrounds);

  ic_memzero_explicit (state, sizeof state);
  ic_memzero_explicit (subkey, sizeof subkey);
}

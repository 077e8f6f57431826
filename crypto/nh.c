/* crypto/nh.c - see nh.h.  Written from the Adiantum paper (section 6.4)
 * and the UMAC NH definition, with the parameters and byte order of Linux
 * crypto/nhpoly1305.c.
 */
#include <config.h>

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "nh.h"
#include "simd.h"

struct nh_impl {
  struct ic_impl impl;
  void (*nh) (const uint32_t key[IC_NH_KEY_WORDS], const uint8_t *msg,
              size_t len, uint8_t hash[IC_NH_HASH_BYTES]);
};

static const struct nh_impl generic_impl = {
  { "generic", ic_impl_always }, ic_nh_generic,
};
static const struct nh_impl avx2_impl = {
  { "avx2", ic_nh_avx2_usable }, ic_nh_avx2,
};

/* Best first. */
static const struct ic_impl *const impls[] = {
  &avx2_impl.impl, &generic_impl.impl,
};
static struct ic_impl_choice choice = {
  "nh", impls, sizeof impls / sizeof impls[0], NULL,
};

static inline uint32_t
get_le32 (const uint8_t *p)
{
  uint32_t v;

  memcpy (&v, p, sizeof v);
  return le32toh (v);
}

static inline void
put_le64 (uint8_t *p, uint64_t v)
{
  v = htole64 (v);
  memcpy (p, &v, sizeof v);
}

static const struct nh_impl *
current_impl (void)
{
  return (const struct nh_impl *) ic_impl_current (&choice);
}

void
ic_nh_use_simd (bool enable)
{
  ic_impl_use_simd (&choice, enable);
}

const char *
ic_nh_impl_name (void)
{
  return current_impl ()->impl.name;
}

void
ic_nh_load_key (uint32_t key[IC_NH_KEY_WORDS],
                const uint8_t raw[IC_NH_KEY_BYTES])
{
  int i;

  /* Words 1 and 2 of each unit change places (see nh.h). */
  static const int from[4] = { 0, 2, 1, 3 };

  for (i = 0; i < IC_NH_KEY_WORDS; i++)
    key[i] = get_le32 (raw + 4 * (i - i % 4 + from[i % 4]));
}

void
ic_nh_generic (const uint32_t key[IC_NH_KEY_WORDS], const uint8_t *msg,
               size_t len, uint8_t hash[IC_NH_HASH_BYTES])
{
  uint64_t sums[IC_NH_NUM_PASSES] = { 0, 0, 0, 0 };
  uint32_t m0;
  uint32_t m1;
  uint32_t m2;
  uint32_t m3;
  int p;

  for (; len >= IC_NH_MESSAGE_UNIT; len -= IC_NH_MESSAGE_UNIT) {
    m0 = get_le32 (msg + 0);
    m1 = get_le32 (msg + 4);
    m2 = get_le32 (msg + 8);
    m3 = get_le32 (msg + 12);
    for (p = 0; p < IC_NH_NUM_PASSES; p++) {
      const uint32_t *k = key + 4 * p;

      /* k[1] is key word 4j+2 and k[2] word 4j+1 (see nh.h). */
      sums[p] += (uint64_t) (uint32_t) (m0 + k[0]) * (uint32_t) (m2 + k[1]);
      sums[p] += (uint64_t) (uint32_t) (m1 + k[2]) * (uint32_t) (m3 + k[3]);
    }
    key += IC_NH_MESSAGE_UNIT / sizeof key[0];
    msg += IC_NH_MESSAGE_UNIT;
  }

  for (p = 0; p < IC_NH_NUM_PASSES; p++)
    put_le64 (hash + 8 * p, sums[p]);
}

void
ic_nh (const uint32_t key[IC_NH_KEY_WORDS], const uint8_t *msg, size_t len,
       uint8_t hash[IC_NH_HASH_BYTES])
{
  current_impl ()->nh (key, msg, len, hash);
}

void
ic_nhpoly1305_setkey (struct ic_nhpoly1305_key *key,
                      const uint8_t raw[IC_NHPOLY1305_KEY_SIZE])
{
  ic_poly1305_core_setkey (&key->poly_key, raw);
  ic_nh_load_key (key->nh_key, raw + IC_POLY1305_KEY_SIZE);
}

/* crypto_nhpoly1305_update + _final of Linux, for a whole message. */
void
ic_nhpoly1305 (const struct ic_nhpoly1305_key *key, const uint8_t *msg,
               size_t len, uint8_t out[IC_NHPOLY1305_HASH_SIZE])
{
  const struct nh_impl *nh = current_impl ();
  struct ic_poly1305_state state;
  uint8_t hash[IC_NH_HASH_BYTES];
  uint8_t last[IC_NH_MESSAGE_BYTES];
  size_t n;

  ic_poly1305_core_init (&state);
  while (len > 0) {
    n = len < IC_NH_MESSAGE_BYTES ? len : IC_NH_MESSAGE_BYTES;
    if (n % IC_NH_MESSAGE_UNIT == 0)
      nh->nh (key->nh_key, msg, n, hash);
    else {
      /* The final chunk, zero-padded to whole 16-byte units.  Data units
       * (multiples of 16 bytes) never need this.
       */
      size_t padded = n + IC_NH_MESSAGE_UNIT - n % IC_NH_MESSAGE_UNIT;

      memcpy (last, msg, n);
      memset (last + n, 0, padded - n);
      nh->nh (key->nh_key, last, padded, hash);
    }
    ic_poly1305_core_blocks (&state, &key->poly_key, hash,
                             IC_NH_HASH_BYTES / IC_POLY1305_BLOCK_SIZE, 1);
    msg += n;
    len -= n;
  }
  ic_poly1305_core_emit (&state, out);
}

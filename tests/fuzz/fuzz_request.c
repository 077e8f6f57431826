/* tests/fuzz/fuzz_request.c - the request path: sequences of NBD-like
 * requests on an export over a stacked device over memory leaves with
 * engines, checked against a plain model of what reads must return.
 *
 * The stack, built for each input (byte 0 picks a variant, see below):
 *
 *   export "vol" (192 KiB) over stacked device "top":
 *     0   128 linear  L0 96                     T0: 0..64K
 *     128 128 striped 2 16 L1 0 L2 0            T1: 64K..128K, 8K chunks
 *     256 128 mirror  2 L2 128 L3 40            T2: 128K..192K
 *   leaves L0..L3: 256 KiB memory; L0, L2 on engine e0 (2 keyslots,
 *   every mode), L1 on e1 (1 keyslot), L3 on e2 (1 or 2 keyslots,
 *   AES-256-XTS/512,4096 and Adiantum/512, 4 DUN bytes).
 *   keys: k1 AES-256-XTS/4096 with 8 DUN bytes; k2 Adiantum/512 with 2
 *   DUN bytes (so that DUN overflow is reachable) or 32 (DUNs past 2^64
 *   carry into the next limb); k3 SM4-XTS/512 or AES-128-CBC-ESSIV/4096
 *   with 4 DUN bytes.
 *   context map: 16K..80K k1 (DUN 0; crosses T0/T1), 80K..88K plain gap,
 *   88K..136K k2 (DUN 5; crosses T1/T2), 136K..168K k3 (DUN 1000); the
 *   rest plain.
 *   The fallback has 2 keyslots (set once), so it evicts too.
 *
 * Input format.  Byte 0, the variant:
 *   0x01  table option per_child_fallback (else the device advertises the
 *         intersection of its children, and what that lacks goes through
 *         the fallback above the table)
 *   0x02  e1 takes every mode (else AES-256-XTS/4096 only)
 *   0x04  e2 has 2 keyslots (else 1)
 *   0x08  k3 is AES-128-CBC-ESSIV/4096 (else SM4-XTS/512)
 *   0x10  k2 has 32 DUN bytes (else 2)
 * Then operations, each an opcode byte and its arguments (little-endian;
 * an operation cut short by the end of the input is dropped), at most
 * MAX_OPS.  The opcode's low 4 bits are the operation, its high 4 bits
 * flags:
 *   0x10  FUA (WRITE, ZERO, TRIM)        0x20  NOUNMAP (ZERO)
 *   0x40  round OFF and LEN down to 512  0x80  round them down to 4096
 * OFF (u24) is taken modulo EXPORT_SIZE + 8K (so some are past the end),
 * LEN (u24) modulo EXPORT_SIZE + 1.
 *   0 READ   OFF LEN
 *   1 WRITE  OFF LEN SEED:u8   (data from SEED, the offset and the op's
 *                               number)
 *   2 ZERO   OFF LEN
 *   3 TRIM   OFF LEN
 *   4 FLUSH
 *   5 MAP    OFF LEN KEY:u8 DUN:u16   (KEY % 4: 0 plain, else kKEY;
 *                               DUN & 0x8000: the DUN base is the key's
 *                               limit (2^(8 * DUN bytes), at most 2^64)
 *                               minus DUN & 0x7fff, else DUN)
 *   6 EVICT  KEY:u8 WHERE:u8   (kKEY%3+1 from WHERE % 6: top, L0..L3,
 *                               the fallback)
 *   7 RESET  ENGINE:u8         (e(ENGINE % 3))
 *   8 FAULT  ENGINE:u8 N:u8    (its next N % 4 + 1 programs fail)
 *   9 RELOAD LEGS:u8           (the mirror's legs, LEGS % 4: {L2 L3},
 *                               {L2}, {L0@256 L2}, {L3 L0@256 L2}; load,
 *                               resume, wait for the resync unless flag
 *                               0x10: then what follows runs while new
 *                               legs resynchronise, in another thread,
 *                               the one thing an input does not
 *                               decide)
 *  10 CHECK  OFF:u24           (the ciphertext of the 4 KiB block holding
 *                               OFF % EXPORT_SIZE, see below)
 *  11..15    nothing (no arguments)
 * tests/fuzz/gen_request_seeds.py writes such inputs.
 *
 * The model: a shadow of the export's plaintext and, per byte, what is
 * known of it: DATA (written; the leaves hold its ciphertext), ZEROED
 * (zeroed or trimmed; the leaves hold zeros), SEEN (read back after it
 * became unknown) or UNKNOWN (a map change gave the byte another key or
 * DUN, or a request failed under injected faults).  A new export is all
 * ZEROED.  The harness also keeps its own copy of the context map.
 *
 * Checks (abort on any mismatch):
 * - a request fails with EINVAL exactly when it goes past the end of the
 *   export or is not aligned to the data units of a keyed range it
 *   touches; then it changes nothing a read of its surroundings sees;
 * - without injected faults, every other request, eviction, reset,
 *   table reload and resync succeeds;
 * - reads return the model's bytes where known; what is read of unknown
 *   bytes reads the same next time (mirror legs agree);
 * - a map change gives the map the harness computes (ic_export_map_range
 *   trims and splits as documented, or refuses and keeps the map);
 * - CHECK: what the leaves hold is, per data unit, ic_cipher's ciphertext
 *   of the model's plaintext with the range's key and DUN (or the
 *   plaintext in a plain range, or zeros where zeroed), on each in-sync
 *   mirror leg: the same bytes whichever engine, fallback or target
 *   carried the request.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cipher.h"
#include "export.h"
#include "fallback.h"
#include "fuzz.h"
#include "leaf.h"
#include "table.h"

#define KiB 1024
#define EXPORT_SIZE (192 * KiB)
#define LEAF_SIZE (256 * KiB)
#define MAX_OPS 256
#define MAX_INPUT 4096
#define NLEAVES 4
#define NKEYS 3
#define NENGINES 3
#define MAX_RANGES 64

enum { UNKNOWN, DATA, ZEROED, SEEN };

/* DUNs of the model: a MAP's base is at most 2^64, and what is cut off
 * a range adds at most EXPORT_SIZE / 512: 128 bits never wrap.
 */
typedef unsigned __int128 dun_t;

struct mrange {
  uint64_t start;
  uint64_t len;
  int key;                      /* 1..NKEYS */
  dun_t dun;
};

static struct {
  uint8_t variant;
  struct ic_crypto_key *keys[NKEYS + 1]; /* [0] unused: plain */
  struct ic_cipher *ciphers[NKEYS + 1];  /* the oracle's, keyed */
  struct ic_engine *engines[NENGINES];
  struct ic_device *leaves[NLEAVES];
  struct ic_device *top;
  struct ic_export *exp;
  int legs;                     /* the mirror's variant */
  bool faults;                  /* faults were injected */
  uint8_t shadow[EXPORT_SIZE];
  uint8_t state[EXPORT_SIZE];
  struct mrange map[MAX_RANGES];
  size_t nmap;
  uint8_t buf[EXPORT_SIZE];
  uint8_t raw[4 * KiB];
  unsigned int nop;
} s;

static const char *const leg_tables[4] = {
  "2 L2 128 L3 40",
  "1 L2 128",
  "2 L0 256 L2 128",
  "3 L3 40 L0 256 L2 128",
};

/* Where each leg of each variant lies: leaf index, byte offset. */
static const struct { int n; int leaf[3]; uint64_t off[3]; } legs_of[4] = {
  { 2, { 2, 3 }, { 64 * KiB, 20 * KiB } },
  { 1, { 2 }, { 64 * KiB } },
  { 2, { 0, 2 }, { 128 * KiB, 64 * KiB } },
  { 3, { 3, 0, 2 }, { 20 * KiB, 128 * KiB, 64 * KiB } },
};

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  int r;

  fuzz_init_crypto ();
  r = ic_crypto_fallback_set_num_keyslots (2);
  FUZZ_CHECK (r == 0, "fallback keyslots: %s", ic_last_error ());
  return 0;
}

static struct ic_device *
lookup (void *opaque, const char *name)
{
  int i;

  for (i = 0; i < NLEAVES; i++)
    if (strcmp (s.leaves[i]->name, name) == 0)
      return s.leaves[i];
  return NULL;
}

static void
table_text (int legs, char *buf, size_t size)
{
  snprintf (buf, size, "0 128 linear L0 96\n"
            "128 128 striped 2 16 L1 0 L2 0\n"
            "256 128 mirror %s\n", leg_tables[legs]);
}

static void
build (uint8_t variant)
{
  struct ic_engine_config cfg;
  struct ic_ctx_range ranges[3];
  uint8_t bytes[64];
  char table[256];
  int i;
  int r;

  memset (&s, 0, sizeof s);
  s.variant = variant;

  for (i = 0; i < (int) sizeof bytes; i++)
    bytes[i] = i * 13 + 1;
  s.keys[1] = ic_crypto_key_new ("k1", bytes, 64, IC_CRYPTO_KEY_TYPE_RAW,
                                 IC_ENCRYPTION_MODE_AES_256_XTS, 8, 4096);
  for (i = 0; i < (int) sizeof bytes; i++)
    bytes[i] = i * 29 + 7;
  s.keys[2] = ic_crypto_key_new ("k2", bytes, 32, IC_CRYPTO_KEY_TYPE_RAW,
                                 IC_ENCRYPTION_MODE_ADIANTUM,
                                 variant & 0x10 ? 32 : 2, 512);
  for (i = 0; i < (int) sizeof bytes; i++)
    bytes[i] = i * 71 + 3;
  if (variant & 0x08)
    s.keys[3] = ic_crypto_key_new ("k3", bytes, 16, IC_CRYPTO_KEY_TYPE_RAW,
                                   IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV, 4,
                                   4096);
  else
    s.keys[3] = ic_crypto_key_new ("k3", bytes, 32, IC_CRYPTO_KEY_TYPE_RAW,
                                   IC_ENCRYPTION_MODE_SM4_XTS, 4, 512);
  FUZZ_CHECK (s.keys[1] && s.keys[2] && s.keys[3], "keys: %s",
              ic_last_error ());
  for (i = 1; i <= NKEYS; i++) {
    s.ciphers[i] = ic_cipher_new (s.keys[i]->crypto_cfg.crypto_mode);
    FUZZ_CHECK (s.ciphers[i], "cipher");
    r = ic_cipher_setkey (s.ciphers[i], s.keys[i]->bytes, s.keys[i]->size);
    FUZZ_CHECK (r == 0, "setkey: %s", ic_last_error ());
  }

  ic_engine_config_default (&cfg, "e0");
  cfg.num_slots = 2;
  s.engines[0] = ic_engine_new (&cfg);
  ic_engine_config_default (&cfg, "e1");
  cfg.num_slots = 1;
  if (!(variant & 0x02)) {
    memset (cfg.modes_supported, 0, sizeof cfg.modes_supported);
    cfg.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 4096;
  }
  s.engines[1] = ic_engine_new (&cfg);
  ic_engine_config_default (&cfg, "e2");
  cfg.num_slots = variant & 0x04 ? 2 : 1;
  memset (cfg.modes_supported, 0, sizeof cfg.modes_supported);
  cfg.modes_supported[IC_ENCRYPTION_MODE_AES_256_XTS] = 512 | 4096;
  cfg.modes_supported[IC_ENCRYPTION_MODE_ADIANTUM] = 512;
  cfg.max_dun_bytes = 4;
  s.engines[2] = ic_engine_new (&cfg);
  FUZZ_CHECK (s.engines[0] && s.engines[1] && s.engines[2], "engines: %s",
              ic_last_error ());

  s.leaves[0] = ic_leaf_memory_new ("L0", LEAF_SIZE, s.engines[0]);
  s.leaves[1] = ic_leaf_memory_new ("L1", LEAF_SIZE, s.engines[1]);
  s.leaves[2] = ic_leaf_memory_new ("L2", LEAF_SIZE, s.engines[0]);
  s.leaves[3] = ic_leaf_memory_new ("L3", LEAF_SIZE, s.engines[2]);
  s.top = ic_stacked_new ("top");
  for (i = 0; i < NLEAVES; i++)
    FUZZ_CHECK (s.leaves[i], "leaves: %s", ic_last_error ());
  FUZZ_CHECK (s.top, "top");
  table_text (0, table, sizeof table);
  r = ic_stacked_load (s.top, table,
                       variant & 0x01 ? IC_TABLE_PER_CHILD_FALLBACK : 0,
                       NULL, 1, lookup, NULL);
  if (r == 0)
    r = ic_stacked_resume (s.top);
  FUZZ_CHECK (r == 0, "top: %s", ic_last_error ());
  FUZZ_CHECK (s.top->size == EXPORT_SIZE, "top: %llu bytes",
              (unsigned long long) s.top->size);

  s.exp = ic_export_new ("vol", s.top);
  FUZZ_CHECK (s.exp, "export");
  s.map[0] = (struct mrange) { 16 * KiB, 64 * KiB, 1, 0 };
  s.map[1] = (struct mrange) { 88 * KiB, 48 * KiB, 2, 5 };
  s.map[2] = (struct mrange) { 136 * KiB, 32 * KiB, 3, 1000 };
  s.nmap = 3;
  memset (ranges, 0, sizeof ranges);
  for (i = 0; i < 3; i++) {
    ranges[i].start = s.map[i].start;
    ranges[i].len = s.map[i].len;
    ranges[i].key = s.keys[s.map[i].key];
    ranges[i].dun_base[0] = (uint64_t) s.map[i].dun;
  }
  r = ic_export_set_map (s.exp, ranges, 3);
  FUZZ_CHECK (r == 0, "map: %s", ic_last_error ());
  memset (s.state, ZEROED, sizeof s.state);
}

static void
teardown (void)
{
  int i;

  ic_export_free (s.exp);
  ic_device_destroy (s.top);
  for (i = 0; i < NLEAVES; i++)
    ic_device_destroy (s.leaves[i]);
  for (i = 0; i < NENGINES; i++)
    ic_engine_free (s.engines[i]);
  /* The fallback outlives the input: its slots must not keep the keys
   * (ic_crypto_key_free's contract).
   */
  for (i = 1; i <= NKEYS; i++) {
    ic_cipher_free (s.ciphers[i]);
    ic_crypto_fallback_evict_key (s.keys[i]);
    ic_crypto_key_free (s.keys[i]);
  }
}

/* The model's range holding @off, or NULL. */
FUZZ_MODEL static const struct mrange *
range_at (uint64_t off)
{
  size_t i;

  for (i = 0; i < s.nmap; i++)
    if (off >= s.map[i].start && off < s.map[i].start + s.map[i].len)
      return &s.map[i];
  return NULL;
}

FUZZ_MODEL static unsigned int
du_of (int key)
{
  return s.keys[key]->crypto_cfg.data_unit_size;
}

/* Should a request on [off, off+len) fail with EINVAL?  (do_request:
 * inside the export; each piece in a keyed range aligned to its units.)
 */
FUZZ_MODEL static bool
expect_einval (uint64_t off, uint64_t len)
{
  size_t i;

  if (off > EXPORT_SIZE || len > EXPORT_SIZE - off)
    return true;
  for (i = 0; i < s.nmap; i++) {
    const struct mrange *m = &s.map[i];
    uint64_t a = off > m->start ? off : m->start;
    uint64_t b = off + len < m->start + m->len ? off + len
                                               : m->start + m->len;
    unsigned int du = du_of (m->key);

    if (a < b && (a % du || (b - a) % du))
      return true;
  }
  return false;
}

FUZZ_MODEL static void
pattern (uint8_t *buf, uint64_t off, uint64_t len, unsigned int seed)
{
  uint64_t i;

  for (i = 0; i < len; i++)
    buf[i] = (seed * 131 + (off + i) * 7 + ((off + i) >> 9) * 3) & 0xff;
}

/* Read [off, off+len) and hold it against the model. */
FUZZ_MODEL static void
read_check (uint64_t off, uint64_t len, const char *why)
{
  uint64_t i;
  int r;

  memset (s.buf, 0xee, len);
  ic_clear_error ();
  r = ic_export_pread (s.exp, s.buf, len, off);
  if (r < 0) {
    FUZZ_CHECK (s.faults, "op %u: %s: read %llu+%llu: %s", s.nop, why,
                (unsigned long long) off, (unsigned long long) len,
                ic_last_error ());
    return;
  }
  /* Runs of known bytes are compared at once; unknown ones adopted. */
  for (i = 0; i < len;) {
    const uint8_t *unknown = memchr (s.state + off + i, UNKNOWN, len - i);
    uint64_t n = unknown ? (uint64_t) (unknown - (s.state + off + i))
                         : len - i;

    if (memcmp (s.buf + i, s.shadow + off + i, n) != 0) {
      uint64_t j;

      for (j = i; s.buf[j] == s.shadow[off + j]; j++)
        ;
      FUZZ_CHECK (false, "op %u: %s: byte %llu reads 0x%02x, expected "
                  "0x%02x (state %d)", s.nop, why,
                  (unsigned long long) (off + j), s.buf[j],
                  s.shadow[off + j], s.state[off + j]);
    }
    for (i += n; i < len && s.state[off + i] == UNKNOWN; i++) {
      s.shadow[off + i] = s.buf[i];
      s.state[off + i] = SEEN;
    }
  }
}

/* After a failed request: what is around it reads as before. */
static void
read_around (uint64_t off, uint64_t len)
{
  uint64_t a;
  uint64_t b;

  if (off >= EXPORT_SIZE)
    return;
  b = len > EXPORT_SIZE - off ? EXPORT_SIZE : off + len;
  a = off & ~(uint64_t) 4095;
  b = (b + 4095) & ~(uint64_t) 4095;
  if (b > a)
    read_check (a, b - a, "after a refused request");
}

FUZZ_MODEL static void
set_state (uint64_t off, uint64_t len, int state)
{
  memset (s.state + off, state, len);
}

static void
do_io (int op, unsigned int flags, uint64_t off, uint64_t len,
       unsigned int seed)
{
  bool einval = expect_einval (off, len);
  const char *name = "";
  int r = 0;

  ic_clear_error ();
  switch (op) {
  case 0:
    name = "read";
    if (!einval) {
      read_check (off, len, "read");
      return;
    }
    r = ic_export_pread (s.exp, s.buf, len, off);
    break;
  case 1:
    name = "write";
    if (!einval)
      pattern (s.buf, off, len, seed ^ s.nop);
    r = ic_export_pwrite (s.exp, s.buf, len, off,
                          flags & 0x10 ? IC_BIO_FUA : 0);
    break;
  case 2:
    name = "zero";
    r = ic_export_zero (s.exp, len, off,
                        (flags & 0x10 ? IC_BIO_FUA : 0) |
                        (flags & 0x20 ? IC_BIO_NOUNMAP : 0));
    break;
  case 3:
    name = "trim";
    r = ic_export_trim (s.exp, len, off, flags & 0x10 ? IC_BIO_FUA : 0);
    break;
  }
  if (fuzz_verbose ())
    fprintf (stderr, "  %s %llu+%llu: %d %s\n", name,
             (unsigned long long) off, (unsigned long long) len, r,
             r ? ic_last_error () : "");
  if (einval) {
    FUZZ_CHECK (r == -EINVAL, "op %u: %s %llu+%llu: expected EINVAL, got "
                "%d", s.nop, name, (unsigned long long) off,
                (unsigned long long) len, r);
    read_around (off, len);
    return;
  }
  if (r < 0) {
    FUZZ_CHECK (s.faults, "op %u: %s %llu+%llu: %s", s.nop, name,
                (unsigned long long) off, (unsigned long long) len,
                ic_last_error ());
    /* Some pieces may have been written. */
    set_state (off, len, UNKNOWN);
    return;
  }
  if (op == 1) {
    memcpy (s.shadow + off, s.buf, len);
    set_state (off, len, DATA);
  }
  else {
    memset (s.shadow + off, 0, len);
    set_state (off, len, ZEROED);
  }
}

/* The key and DUN of byte @off under the model's map (key 0: plain). */
FUZZ_MODEL static void
identity (uint64_t off, int *key, dun_t *dun)
{
  const struct mrange *m = range_at (off);

  *key = m ? m->key : 0;
  *dun = m ? m->dun + (off - m->start) / du_of (m->key) : 0;
}

/* ic_export_map_range, by the book: trim or split what overlaps, keep
 * the DUNs of what is left, add the new range; refuse (changing
 * nothing) if a range would be empty, outside, misaligned or out of DUN
 * bytes.
 */
FUZZ_MODEL static bool
model_map (uint64_t start, uint64_t len, int key, dun_t dun,
           struct mrange *out, size_t *nout)
{
  uint64_t end = start + len;
  size_t n = 0;
  size_t i;

  if (len == 0 || start > EXPORT_SIZE || len > EXPORT_SIZE - start)
    return false;
  for (i = 0; i < s.nmap; i++) {
    const struct mrange *o = &s.map[i];
    uint64_t o_end = o->start + o->len;

    if (o_end <= start || o->start >= end) {
      out[n++] = *o;
      continue;
    }
    if (o->start < start) {
      out[n] = *o;
      out[n++].len = start - o->start;
    }
    if (o_end > end) {
      out[n] = *o;
      out[n].start = end;
      out[n].len = o_end - end;
      out[n++].dun = o->dun + (end - o->start) / du_of (o->key);
    }
  }
  if (key)
    out[n++] = (struct mrange) { start, len, key, dun };
  for (i = 0; i < n; i++) {
    unsigned int du = du_of (out[i].key);
    unsigned int bytes = s.keys[out[i].key]->crypto_cfg.dun_bytes;
    dun_t last = out[i].dun + out[i].len / du - 1;

    if (out[i].start % du || out[i].len % du)
      return false;
    if (bytes < 16 && last >> (8 * bytes))
      return false;
  }
  /* Sorted by start, as the export keeps them. */
  for (i = 1; i < n; i++) {
    size_t j;

    for (j = i; j > 0 && out[j].start < out[j - 1].start; j--) {
      struct mrange t = out[j];

      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  }
  *nout = n;
  return n <= MAX_RANGES;
}

/* Bytes whose key or DUN a map change alters now decrypt to something
 * else (called before the model's map changes).
 */
FUZZ_MODEL static void
forget_remapped (uint64_t start, uint64_t len, int key, dun_t dun)
{
  uint64_t o;

  for (o = start; o < start + len; o++) {
    int k;
    dun_t d;

    identity (o, &k, &d);
    if (k != key || (k && d != dun + (o - start) / du_of (k)))
      s.state[o] = UNKNOWN;
  }
}

static void
compare_map (void)
{
  struct ic_ctx_range *ranges;
  size_t n;
  size_t i;
  int r;

  r = ic_export_get_map (s.exp, &ranges, &n);
  FUZZ_CHECK (r == 0, "get_map");
  FUZZ_CHECK (n == s.nmap, "op %u: the map has %zu ranges, the model %zu",
              s.nop, n, s.nmap);
  for (i = 0; i < n; i++)
    FUZZ_CHECK (ranges[i].start == s.map[i].start &&
                ranges[i].len == s.map[i].len &&
                ranges[i].key == s.keys[s.map[i].key] &&
                ranges[i].dun_base[0] == (uint64_t) s.map[i].dun &&
                ranges[i].dun_base[1] == (uint64_t) (s.map[i].dun >> 64) &&
                !ranges[i].dun_base[2] && !ranges[i].dun_base[3],
                "op %u: range %zu: %llu+%llu %s dun %llu, the model "
                "%llu+%llu k%d dun %llu", s.nop, i,
                (unsigned long long) ranges[i].start,
                (unsigned long long) ranges[i].len,
                ranges[i].key ? ranges[i].key->name : "plain",
                (unsigned long long) ranges[i].dun_base[0],
                (unsigned long long) s.map[i].start,
                (unsigned long long) s.map[i].len, s.map[i].key,
                (unsigned long long) (uint64_t) s.map[i].dun);
  free (ranges);
}

static void
do_map (uint64_t start, uint64_t len, int key, unsigned int arg)
{
  unsigned int bytes = key ? s.keys[key]->crypto_cfg.dun_bytes : 8;
  dun_t limit = (dun_t) 1 << (8 * (bytes < 8 ? bytes : 8));
  dun_t dun = arg & 0x8000 ? limit - (arg & 0x7fff) : arg;
  uint64_t base[IC_CRYPTO_DUN_ARRAY_SIZE] = { (uint64_t) dun,
                                              (uint64_t) (dun >> 64) };
  struct mrange out[MAX_RANGES + 4];
  size_t n = 0;
  bool ok = model_map (start, len, key, dun, out, &n);
  int r;

  if (n > MAX_RANGES)
    return;                     /* more than the model holds: skip */
  ic_clear_error ();
  r = ic_export_map_range (s.exp, start, len, key ? s.keys[key] : NULL,
                           base);
  FUZZ_CHECK (ok ? r == 0 : r == -EINVAL, "op %u: map %llu+%llu k%d dun "
              "%llu: %d (%s), the model says %s", s.nop,
              (unsigned long long) start, (unsigned long long) len, key,
              (unsigned long long) (uint64_t) dun, r, ic_last_error (),
              ok ? "ok" : "EINVAL");
  if (fuzz_verbose ())
    fprintf (stderr, "  map %llu+%llu k%d: %d %s\n",
             (unsigned long long) start, (unsigned long long) len, key, r,
             r ? ic_last_error () : "");
  if (!ok) {
    compare_map ();
    return;
  }
  forget_remapped (start, len, key, dun);
  memcpy (s.map, out, n * sizeof out[0]);
  s.nmap = n;
  compare_map ();
}

/* Wait for the mirror's resync.  Under injected faults it may never end
 * (no leg left in sync to copy from): then do not wait long.
 */
static void
wait_resync (const char *why)
{
  int r = ic_stacked_wait_resync (s.top, s.faults ? 20 : 10000);

  FUZZ_CHECK (r == 0 || s.faults, "op %u: %s: the resync does not finish",
              s.nop, why);
}

static void
do_reload (int legs, bool wait)
{
  char table[256];
  int r;

  table_text (legs, table, sizeof table);
  ic_clear_error ();
  r = ic_stacked_load (s.top, table,
                       s.variant & 0x01 ? IC_TABLE_PER_CHILD_FALLBACK : 0,
                       NULL, 1, lookup, NULL);
  /* A table narrower than the live profile is refused: nothing changes. */
  FUZZ_CHECK (r == 0 || r == -EINVAL, "op %u: reload: %s", s.nop,
              ic_last_error ());
  if (r < 0)
    return;
  r = ic_stacked_resume (s.top);
  FUZZ_CHECK (r == 0, "op %u: resume: %s", s.nop, ic_last_error ());
  if (wait)
    wait_resync ("reload");
  s.legs = legs;
  /* With legs failed by faults, the source of the resync may be stale
   * (no leg was in sync: the first is taken).
   */
  if (s.faults)
    set_state (128 * KiB, 64 * KiB, UNKNOWN);
}

/* Read @len raw bytes of leaf @leaf at @off. */
static void
raw_read (int leaf, uint64_t off, uint64_t len)
{
  struct ic_bio bio = { .op = IC_OP_READ, .offset = off, .len = len,
                        .buf = s.raw };
  int r = ic_device_submit (s.leaves[leaf], &bio);

  FUZZ_CHECK (r == 0, "raw read: %s", ic_last_error ());
}

/* Where export offset @off lies: up to 3 (leaf, offset) places. */
static int
places (uint64_t off, int leaf[3], uint64_t loff[3])
{
  struct ic_leg_status legs[8];
  size_t n;
  int i;
  int k = 0;

  if (off < 64 * KiB) {
    leaf[0] = 0;
    loff[0] = 48 * KiB + off;
    return 1;
  }
  if (off < 128 * KiB) {
    uint64_t o = off - 64 * KiB;
    uint64_t chunk = o / (8 * KiB);

    leaf[0] = chunk % 2 ? 2 : 1;
    loff[0] = chunk / 2 * 8 * KiB + o % (8 * KiB);
    return 1;
  }
  n = ic_stacked_mirror_status (s.top, legs, 8);
  FUZZ_CHECK ((int) n == legs_of[s.legs].n, "%zu legs, expected %d", n,
              legs_of[s.legs].n);
  for (i = 0; i < legs_of[s.legs].n; i++)
    if (legs[i].state == IC_LEG_ACTIVE) {
      leaf[k] = legs_of[s.legs].leaf[i];
      loff[k++] = legs_of[s.legs].off[i] + off - 128 * KiB;
    }
  return k;
}

/* The ciphertext of the data unit at @off, by the model, into @out.
 * Return: false if the model does not know it.
 */
FUZZ_MODEL static bool
expected_raw (uint64_t off, unsigned int len, int key, dun_t dun,
              uint8_t *out)
{
  uint64_t d[IC_CRYPTO_DUN_ARRAY_SIZE] = { (uint64_t) dun,
                                           (uint64_t) (dun >> 64) };
  unsigned int i;
  int r;

  for (i = 0; i < len; i++)
    if (s.state[off + i] != DATA)
      break;
  if (i < len) {
    for (i = 0; i < len; i++)
      if (s.state[off + i] != ZEROED)
        return false;
    memset (out, 0, len);
    return true;
  }
  if (!key) {
    memcpy (out, s.shadow + off, len);
    return true;
  }
  r = ic_cipher_encrypt (s.ciphers[key], out, s.shadow + off, len, len, d);
  FUZZ_CHECK (r == 0, "encrypt: %s", ic_last_error ());
  return true;
}

static void
do_check (uint64_t off)
{
  static uint8_t want[4 * KiB];
  uint64_t block = off & ~(uint64_t) 4095;
  uint64_t o;

  if (block >= EXPORT_SIZE)
    return;
  for (o = block; o < block + 4096;) {
    const struct mrange *m = range_at (o);
    unsigned int du = m ? du_of (m->key) : 512;
    uint64_t unit = o & ~(uint64_t) (du - 1);
    int leaf[3];
    uint64_t loff[3];
    int n;
    int i;

    if (expected_raw (unit, du, m ? m->key : 0,
                      m ? m->dun + (unit - m->start) / du : 0, want)) {
      n = places (unit, leaf, loff);
      for (i = 0; i < n; i++) {
        raw_read (leaf[i], loff[i], du);
        FUZZ_CHECK (memcmp (s.raw, want, du) == 0, "op %u: check: the "
                    "%u-byte unit at %llu (%s) differs on L%d at %llu",
                    s.nop, du, (unsigned long long) unit,
                    m ? s.keys[m->key]->name : "plain", leaf[i],
                    (unsigned long long) loff[i]);
      }
    }
    o = unit + du;
  }
}

static void
do_evict (int key, int where)
{
  int r;

  if (where == 5)
    r = ic_crypto_fallback_evict_key (s.keys[key]);
  else
    r = ic_device_evict_key (where ? s.leaves[where - 1] : s.top,
                             s.keys[key]);
  FUZZ_CHECK (r == 0 || s.faults, "op %u: evict k%d from %d: %d", s.nop,
              key, where, r);
}

static void
do_fault (int engine, unsigned int n)
{
  struct ic_engine_faults f = { .program_fail_count = n,
                                .program_errno = EIO };

  ic_engine_set_faults (s.engines[engine], &f);
  s.faults = true;
}

/* Little-endian readers; false at the end of the input. */
static bool
get (const uint8_t **p, const uint8_t *end, unsigned int n, uint64_t *v)
{
  unsigned int i;

  if ((size_t) (end - *p) < n)
    return false;
  *v = 0;
  for (i = 0; i < n; i++)
    *v |= (uint64_t) (*p)[i] << (8 * i);
  *p += n;
  return true;
}

static bool
get_range (const uint8_t **p, const uint8_t *end, unsigned int flags,
           uint64_t *off, uint64_t *len)
{
  if (!get (p, end, 3, off) || !get (p, end, 3, len))
    return false;
  *off %= EXPORT_SIZE + 8 * KiB;
  *len %= EXPORT_SIZE + 1;
  if (flags & 0x80) {
    *off &= ~(uint64_t) 4095;
    *len &= ~(uint64_t) 4095;
  }
  else if (flags & 0x40) {
    *off &= ~(uint64_t) 511;
    *len &= ~(uint64_t) 511;
  }
  return true;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const uint8_t *p = data;
  const uint8_t *end = data + size;
  uint64_t a;
  uint64_t b;
  uint64_t c;
  uint64_t d;
  uint64_t off;

  if (size < 1 || size > MAX_INPUT)
    return -1;
  build (*p++);
  for (s.nop = 0; p < end && s.nop < MAX_OPS; s.nop++) {
    unsigned int op = *p & 0x0f;
    unsigned int flags = *p++ & 0xf0;

    if (fuzz_verbose ())
      fprintf (stderr, "op %u: %u flags 0x%02x\n", s.nop, op, flags);
    switch (op) {
    case 0: case 2: case 3:
      if (!get_range (&p, end, flags, &a, &b))
        goto out;
      do_io (op, flags, a, b, 0);
      break;
    case 1:
      if (!get_range (&p, end, flags, &a, &b) || !get (&p, end, 1, &c))
        goto out;
      do_io (op, flags, a, b, c);
      break;
    case 4:
      ic_clear_error ();
      FUZZ_CHECK (ic_export_flush (s.exp) == 0 || s.faults, "op %u: flush: "
                  "%s", s.nop, ic_last_error ());
      break;
    case 5:
      if (!get_range (&p, end, flags, &a, &b) || !get (&p, end, 1, &c) ||
          !get (&p, end, 2, &d))
        goto out;
      do_map (a, b, c % 4, d);
      break;
    case 6:
      if (!get (&p, end, 1, &a) || !get (&p, end, 1, &b))
        goto out;
      do_evict (a % 3 + 1, b % 6);
      break;
    case 7:
      if (!get (&p, end, 1, &a))
        goto out;
      FUZZ_CHECK (ic_engine_reset (s.engines[a % 3]) == 0 || s.faults,
                  "op %u: engine reset: %s", s.nop, ic_last_error ());
      break;
    case 8:
      if (!get (&p, end, 1, &a) || !get (&p, end, 1, &b))
        goto out;
      do_fault (a % 3, b % 4 + 1);
      break;
    case 9:
      if (!get (&p, end, 1, &a))
        goto out;
      do_reload (a % 4, !(flags & 0x10));
      break;
    case 10:
      if (!get (&p, end, 3, &off))
        goto out;
      do_check (off % EXPORT_SIZE);
      break;
    default:
      break;
    }
  }
out:
  wait_resync ("end");
  /* The whole export, once more. */
  for (off = 0; off < EXPORT_SIZE; off += 64 * KiB)
    read_check (off, 64 * KiB, "final read");
  teardown ();
  return 0;
}

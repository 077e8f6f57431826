/* crypto/aes-xts.h - AES-256-XTS, the cipher of the blk-crypto mode
 * AES_256_XTS ("xts(aes)"), over whole data units.  Byte-identical to
 * Linux crypto/xts.c over the AES library and to libgcrypt's XTS, checked
 * against IEEE Std 1619 Annex B, Linux crypto/testmgr.h and libgcrypt.
 *
 * IEEE Std 1619 XTS: a 64-byte key K1 || K2, and for each data unit with
 * 16-byte IV (the DUN, little-endian)
 *
 *   T_0 = AES-256_K2(IV),  C_j = AES-256_K1(P_j xor T_j) xor T_j,
 *   T_j+1 = T_j * x
 *
 * in GF(2^128) with the little-endian bit order of IEEE 1619 (modulus
 * x^128 + x^7 + x^2 + x + 1).  Data units are whole numbers of 16-byte
 * blocks, as blk-crypto's are; ciphertext stealing is never needed.
 *
 * Three implementations, the best the CPU has chosen once, at the first
 * setkey:
 *
 *   "vaes-avx512"  crypto/aes-xts-vaes.c: the AES-NI key schedule, then
 *                  VAES and VPCLMULQDQ on 512-bit vectors, 16 blocks at a
 *                  time with the tweaks kept in registers, the first tweaks
 *                  of 16 data units encrypted together.  What Linux's
 *                  aes-xts-avx10_512 (arch/x86/crypto/aes-xts-avx-x86_64.S)
 *                  does for dm-crypt and the fallback on such CPUs.
 *   "aesni"        crypto/aes-xts-aesni.c: AES-NI on 128-bit vectors,
 *                  eight blocks at a time, the tweaks of the next eight
 *                  made during their rounds in general-purpose registers
 *                  and the first tweaks of eight data units encrypted
 *                  together.  1.2 x libgcrypt's AES-NI XTS at 4096-byte
 *                  data units and 1.45 x at 512 on AMD Zen 1
 *                  (bench/cipher), where libgcrypt, called once per data
 *                  unit, waits for each unit's first tweak.
 *   "libgcrypt"    libgcrypt's XTS, one call per data unit.  libgcrypt
 *                  1.10 (Debian 12) has AES-NI and VAES-AVX2 code but none
 *                  for AVX-512, and a per-call cost that dominates at
 *                  512-byte data units.  For CPUs without AES-NI, and
 *                  other architectures.
 *
 * IC_NO_SIMD=1 in the environment selects "libgcrypt".  A context keeps
 * the implementation it was keyed for until it is keyed again, so tests may
 * switch implementations between contexts.
 *
 * A context keeps its expanded keys (or its libgcrypt handle) in locked
 * memory (crypto/secmem.h), wiped when freed.  Not thread-safe: a context
 * has one user at a time (crypto/cipher-pool.h).  Everything else is
 * reentrant.  ic_crypto_init() must have been called.
 */
#ifndef IC_AES_XTS_H
#define IC_AES_XTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define IC_AES_BLOCK_SIZE       16
#define IC_AES_256_KEY_SIZE     32
#define IC_AES_256_ROUNDS       14
#define IC_AES_XTS_KEY_SIZE     (2 * IC_AES_256_KEY_SIZE)
#define IC_AES_XTS_IV_SIZE      16

/* An expanded AES-256 key: the 15 round keys in the order one direction
 * uses them (FIPS 197 for encryption; the equivalent inverse cipher's,
 * InvMixColumns applied to the middle ones, for decryption).
 */
struct ic_aes256_key {
  uint8_t rk[IC_AES_256_ROUNDS + 1][IC_AES_BLOCK_SIZE];
};

struct ic_aes_xts_ctx;

/* Allocate an unkeyed AES-256-XTS context in locked memory.
 *
 * Context: may block (allocates).
 * Return: the context, or NULL with errno = ENOMEM and the reason in
 * ic_last_error().
 */
struct ic_aes_xts_ctx *ic_aes_xts_new (void);

/* Key @ctx with K1 || K2 for the implementation in use.  Equal halves are
 * not refused here: that policy (xts_verify_key) belongs to
 * crypto/cipher.c.
 *
 * Context: may block (the first libgcrypt key allocates a handle).
 * Return: 0, or -errno (libgcrypt refused the key or ran out of locked
 * memory; reason in ic_last_error()); then @ctx is unkeyed.
 */
int ic_aes_xts_setkey (struct ic_aes_xts_ctx *ctx,
                       const uint8_t key[IC_AES_XTS_KEY_SIZE]);

/* En/decrypt @len bytes from @src to @dst (which may be @src; no other
 * overlap) as @len / @data_unit_size data units.  Data unit i has the IV
 * @iv + i, a 128-bit little-endian number that wraps (libgcrypt's XTS
 * sequence number; the low 16 bytes of blk-crypto's DUN + i).
 *
 * Context: no locks taken; never blocks.
 * Return: 0, -EINVAL if @ctx is not keyed, @data_unit_size is not a
 * non-zero multiple of 16 or @len not a non-zero multiple of it, or -EIO
 * if libgcrypt fails (reason in ic_last_error()).
 */
int ic_aes_xts_encrypt (struct ic_aes_xts_ctx *ctx, uint8_t *dst,
                        const uint8_t *src, size_t len,
                        unsigned int data_unit_size,
                        const uint8_t iv[IC_AES_XTS_IV_SIZE]);
int ic_aes_xts_decrypt (struct ic_aes_xts_ctx *ctx, uint8_t *dst,
                        const uint8_t *src, size_t len,
                        unsigned int data_unit_size,
                        const uint8_t iv[IC_AES_XTS_IV_SIZE]);

/* Wipe and free @ctx.  NULL is ignored. */
void ic_aes_xts_free (struct ic_aes_xts_ctx *ctx);

/* Use the best implementation the CPU has (@enable, the default unless
 * IC_NO_SIMD=1) or libgcrypt.  For tests and benchmarks: contexts keyed
 * later use it.
 */
void ic_aes_xts_use_simd (bool enable);

/* Use the implementation called @name ("vaes-avx512", "aesni",
 * "libgcrypt").
 *
 * Return: 0, -ENOENT if no implementation has that name, or -ENOTSUP if
 * this CPU or build cannot run it (the selection is then unchanged).
 */
int ic_aes_xts_use_impl (const char *name);

/* Name of the implementation contexts keyed now get. */
const char *ic_aes_xts_impl_name (void);

/* Name of the implementation @ctx was keyed for, NULL if unkeyed. */
const char *ic_aes_xts_ctx_impl_name (const struct ic_aes_xts_ctx *ctx);

#ifdef HAVE_X86_64_SIMD
/* crypto/aes-xts-vaes.c: true if the CPU and OS support AES-NI, VAES,
 * VPCLMULQDQ, AVX-512F and AVX-512BW.
 */
bool ic_aes_xts_vaes_avx512_usable (void);

/* crypto/aes-xts-aesni.c: true if the CPU and OS support AES-NI and
 * AVX (for its three-operand encoding only).
 */
bool ic_aes_xts_aesni_usable (void);

/* Expand @key into @enc and, unless NULL, @dec with AES-NI; call only
 * when ic_aes_xts_aesni_usable() (which ic_aes_xts_vaes_avx512_usable()
 * implies).
 */
void ic_aes256_expand_key_aesni (struct ic_aes256_key *enc,
                                 struct ic_aes256_key *dec,
                                 const uint8_t key[IC_AES_256_KEY_SIZE]);

/* XTS over @len / @du data units (@len, @du checked by the caller) with
 * data key @data (encryption or decryption round keys, per @enc) and
 * tweak key @tweak (encryption round keys); call only when
 * ic_aes_xts_vaes_avx512_usable().
 */
void ic_aes_xts_crypt_vaes_avx512 (const struct ic_aes256_key *data,
                                   const struct ic_aes256_key *tweak,
                                   uint8_t *dst, const uint8_t *src,
                                   size_t len, unsigned int du,
                                   const uint8_t iv[IC_AES_XTS_IV_SIZE],
                                   bool enc);

/* The same with AES-NI on 128-bit vectors; call only when
 * ic_aes_xts_aesni_usable().
 */
void ic_aes_xts_crypt_aesni (const struct ic_aes256_key *data,
                             const struct ic_aes256_key *tweak,
                             uint8_t *dst, const uint8_t *src, size_t len,
                             unsigned int du,
                             const uint8_t iv[IC_AES_XTS_IV_SIZE], bool enc);
#else
static inline bool
ic_aes_xts_vaes_avx512_usable (void)
{
  return false;
}

static inline bool
ic_aes_xts_aesni_usable (void)
{
  return false;
}

/* Never called without x86-64 SIMD; keep callers free of #ifdefs. */
static inline void
ic_aes256_expand_key_aesni (struct ic_aes256_key *enc,
                            struct ic_aes256_key *dec,
                            const uint8_t key[IC_AES_256_KEY_SIZE])
{
  abort ();
}

static inline void
ic_aes_xts_crypt_vaes_avx512 (const struct ic_aes256_key *data,
                              const struct ic_aes256_key *tweak,
                              uint8_t *dst, const uint8_t *src, size_t len,
                              unsigned int du,
                              const uint8_t iv[IC_AES_XTS_IV_SIZE], bool enc)
{
  abort ();
}

static inline void
ic_aes_xts_crypt_aesni (const struct ic_aes256_key *data,
                        const struct ic_aes256_key *tweak, uint8_t *dst,
                        const uint8_t *src, size_t len, unsigned int du,
                        const uint8_t iv[IC_AES_XTS_IV_SIZE], bool enc)
{
  abort ();
}
#endif

#endif /* IC_AES_XTS_H */

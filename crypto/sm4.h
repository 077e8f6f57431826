/* crypto/sm4.h - the SM4 block cipher (GB/T 32907-2016) and SM4-XTS, the
 * cipher of the blk-crypto mode SM4_XTS ("xts(sm4)").  Follows Linux
 * lib/crypto/sm4.c (sm4_expandkey, sm4_crypt_block) and crypto/xts.c;
 * byte-identical output, checked against the GB/T 32907 examples, the
 * vectors of crypto/testmgr.h (sm4_xts_tv_template) and libgcrypt.
 *
 * SM4-XTS is IEEE Std 1619 XTS with SM4 in place of AES: a 32-byte key
 * K1 || K2, and for each data unit with 16-byte IV (the DUN, little-endian)
 *
 *   T_0 = SM4_K2(IV),  C_j = SM4_K1(P_j xor T_j) xor T_j,  T_j+1 = T_j * x
 *
 * in GF(2^128) with the little-endian bit order of IEEE 1619 (modulus
 * x^128 + x^7 + x^2 + x + 1).  Data units are whole numbers of 16-byte
 * blocks, as blk-crypto's are; ciphertext stealing is never needed.
 *
 * The block work runs either portable C or, on x86-64, one of two SIMD
 * implementations that encrypt many blocks at once without table look-ups:
 * "aesni-avx2" (crypto/sm4-aesni.c: up to 32 blocks, the S-box computed
 * with AESENCLAST between two affine maps as Linux's sm4-aesni-avx2 does)
 * and "gfni-avx512" (crypto/sm4-gfni.c: up to 64 blocks, the S-box as two
 * GFNI affine instructions).  The best one the CPU has is chosen once, at the
 * first call; IC_NO_SIMD=1 in the environment keeps the portable code.
 * All give the same bytes.
 *
 * An XTS context keeps the expanded keys in locked memory (crypto/secmem.h),
 * wiped when freed.  Not thread-safe: a context has one user at a time
 * (crypto/cipher.h keeps one per thread per keyslot).  Everything else is
 * reentrant.  ic_crypto_init() must have been called.
 */
#ifndef IC_SM4_H
#define IC_SM4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IC_SM4_KEY_SIZE         16
#define IC_SM4_BLOCK_SIZE       16
#define IC_SM4_ROUNDS           32
#define IC_SM4_XTS_KEY_SIZE     (2 * IC_SM4_KEY_SIZE)
#define IC_SM4_XTS_IV_SIZE      16

/* An expanded key: the 32 round keys in the order one direction uses them
 * (decryption uses the encryption keys reversed).
 */
struct ic_sm4_key {
  uint32_t rk[IC_SM4_ROUNDS];
};

/* Expand the 16-byte @key into the encryption round keys @enc and, unless
 * NULL, the decryption round keys @dec (sm4_expandkey).  The caller wipes
 * both when done.
 */
void ic_sm4_expand_key (struct ic_sm4_key *enc, struct ic_sm4_key *dec,
                        const uint8_t key[IC_SM4_KEY_SIZE]);

/* En/decrypt one block with @rk, encryption or decryption round keys
 * (sm4_crypt_block).  Portable code with S-box look-ups; @out may be @in.
 */
void ic_sm4_crypt_block (const struct ic_sm4_key *rk,
                         uint8_t out[IC_SM4_BLOCK_SIZE],
                         const uint8_t in[IC_SM4_BLOCK_SIZE]);

/* En/decrypt @nblocks blocks from @src to @dst (which may equal @src; no
 * other overlap) with @rk.  Unless @tweaks is NULL, block i is XORed with
 * the 16 bytes at @tweaks + 16 i before and after (XTS's inner step).
 *
 * Context: any thread; uses the SIMD implementation when selected.
 */
void ic_sm4_crypt_blocks (const struct ic_sm4_key *rk, uint8_t *dst,
                          const uint8_t *src, const uint8_t *tweaks,
                          size_t nblocks);

/* The portable implementation of ic_sm4_crypt_blocks (for tests). */
void ic_sm4_crypt_blocks_generic (const struct ic_sm4_key *rk, uint8_t *dst,
                                  const uint8_t *src, const uint8_t *tweaks,
                                  size_t nblocks);

struct ic_sm4_xts_ctx;

/* Allocate an unkeyed SM4-XTS context in locked memory.
 *
 * Context: may block (allocates).
 * Return: the context, or NULL with errno = ENOMEM and the reason in
 * ic_last_error().
 */
struct ic_sm4_xts_ctx *ic_sm4_xts_new (void);

/* Key @ctx with K1 || K2.  Equal halves are not refused here: that policy
 * (xts_verify_key) belongs to crypto/cipher.c.  Never fails.
 */
void ic_sm4_xts_setkey (struct ic_sm4_xts_ctx *ctx,
                        const uint8_t key[IC_SM4_XTS_KEY_SIZE]);

/* En/decrypt @len bytes from @src to @dst (which may be @src; no other
 * overlap) as @len / @data_unit_size data units.  Data unit i has the IV
 * @iv + i, a 128-bit little-endian number that wraps (libgcrypt's XTS
 * sequence number; the low 16 bytes of blk-crypto's DUN + i).  @ctx must
 * be keyed.
 *
 * Context: no locks taken; never blocks.
 * Return: 0, or -EINVAL if @data_unit_size is not a non-zero multiple of 16
 * or @len not a non-zero multiple of it (reason in ic_last_error()).
 */
int ic_sm4_xts_encrypt (struct ic_sm4_xts_ctx *ctx, uint8_t *dst,
                        const uint8_t *src, size_t len,
                        unsigned int data_unit_size,
                        const uint8_t iv[IC_SM4_XTS_IV_SIZE]);
int ic_sm4_xts_decrypt (struct ic_sm4_xts_ctx *ctx, uint8_t *dst,
                        const uint8_t *src, size_t len,
                        unsigned int data_unit_size,
                        const uint8_t iv[IC_SM4_XTS_IV_SIZE]);

/* Wipe and free @ctx.  NULL is ignored. */
void ic_sm4_xts_free (struct ic_sm4_xts_ctx *ctx);

/* Use the best SIMD implementation the CPU has (@enable, the default
 * unless IC_NO_SIMD=1) or force the portable one.  For tests and
 * benchmarks.
 *
 * Context: must not race with SM4 calls whose output matters (they may
 * use either implementation; all give the same bytes).
 */
void ic_sm4_use_simd (bool enable);

/* Use the implementation called @name ("generic", "aesni-avx2",
 * "gfni-avx512").  For tests and benchmarks; same context as
 * ic_sm4_use_simd().
 *
 * Return: 0, -ENOENT if no implementation has that name, or -ENOTSUP if
 * this CPU or build cannot run it (the selection is then unchanged).
 */
int ic_sm4_use_impl (const char *name);

/* Name of the implementation in use. */
const char *ic_sm4_impl_name (void);

#ifdef HAVE_X86_64_SIMD
/* crypto/sm4-aesni.c: true if the CPU and OS support AES-NI and AVX2. */
bool ic_sm4_aesni_avx2_usable (void);

/* ic_sm4_crypt_blocks with AES-NI and AVX2; call only when
 * ic_sm4_aesni_avx2_usable().
 */
void ic_sm4_crypt_blocks_aesni_avx2 (const struct ic_sm4_key *rk,
                                     uint8_t *dst, const uint8_t *src,
                                     const uint8_t *tweaks, size_t nblocks);

/* crypto/sm4-gfni.c: true if the CPU and OS support GFNI, AVX-512F and
 * AVX-512BW.
 */
bool ic_sm4_gfni_avx512_usable (void);

/* ic_sm4_crypt_blocks with GFNI and AVX-512; call only when
 * ic_sm4_gfni_avx512_usable().
 */
void ic_sm4_crypt_blocks_gfni_avx512 (const struct ic_sm4_key *rk,
                                      uint8_t *dst, const uint8_t *src,
                                      const uint8_t *tweaks, size_t nblocks);
#else
static inline bool
ic_sm4_aesni_avx2_usable (void)
{
  return false;
}

/* Never selected without x86-64 SIMD; keeps callers free of #ifdefs. */
static inline void
ic_sm4_crypt_blocks_aesni_avx2 (const struct ic_sm4_key *rk, uint8_t *dst,
                                const uint8_t *src, const uint8_t *tweaks,
                                size_t nblocks)
{
  ic_sm4_crypt_blocks_generic (rk, dst, src, tweaks, nblocks);
}

static inline bool
ic_sm4_gfni_avx512_usable (void)
{
  return false;
}

static inline void
ic_sm4_crypt_blocks_gfni_avx512 (const struct ic_sm4_key *rk, uint8_t *dst,
                                 const uint8_t *src, const uint8_t *tweaks,
                                 size_t nblocks)
{
  ic_sm4_crypt_blocks_generic (rk, dst, src, tweaks, nblocks);
}
#endif

#endif /* IC_SM4_H */

/* crypto/adiantum.h - Adiantum with XChaCha12 and AES-256, the cipher of
 * the blk-crypto mode ADIANTUM ("adiantum(xchacha12,aes)").  Follows Linux
 * crypto/adiantum.c; byte-identical output, checked against the vectors of
 * crypto/testmgr.h (adiantum_xchacha12_aes_tv_template).
 *
 * Adiantum is a tweakable, length-preserving wide-block cipher: a whole
 * data unit P = P_L || P_R (|P_R| = 16) with a 32-byte tweak T (the DUN as
 * four little-endian u64 limbs, crypto/crypt-ctx.h) is encrypted as
 *
 *   P_M = P_R + H(T, P_L)                     (addition mod 2^128, LE)
 *   C_M = AES-256_{K_E}(P_M)
 *   C_L = P_L xor XChaCha12_K(nonce C_M || 1 || 0^7, position 0)
 *   C_R = C_M - H(T, C_L)
 *
 * with H(T, X) = Poly1305_{K_T}(le64(8 |X|) || 0^8 || T)
 *              + NHPoly1305_{K_M, K_N}(X),
 * and K_E || K_T || K_M || K_N the first 32 + 16 + 16 + 1072 bytes of
 * XChaCha12_K(nonce 1 || 0^23, position 0) (adiantum_setkey).
 *
 * The context keeps K and the derived subkeys, all in locked memory
 * (crypto/secmem.h), wiped when freed.  Not thread-safe: a context has one
 * user at a time (crypto/cipher.h keeps one per thread per keyslot).
 * Reentrant across contexts.  ic_crypto_init() must have been called.
 */
#ifndef IC_ADIANTUM_H
#define IC_ADIANTUM_H

#include <stddef.h>
#include <stdint.h>

#define IC_ADIANTUM_KEY_SIZE    32
#define IC_ADIANTUM_TWEAK_SIZE  32
#define IC_ADIANTUM_MIN_LEN     16   /* one AES block; P_L may be empty */

struct ic_adiantum_ctx;

/* Allocate an unkeyed context in locked memory.
 *
 * Context: may block (allocates).
 * Return: the context, or NULL with errno set (ENOMEM, or EIO if libgcrypt
 * has no AES-256) and the reason in ic_last_error().
 */
struct ic_adiantum_ctx *ic_adiantum_new (void);

/* Key @ctx with the 32-byte Adiantum key @key and derive the subkeys.
 * Stack copies of derived key bytes are wiped before returning.
 *
 * Context: no locks taken; never blocks.
 * Return: 0, or -EIO if libgcrypt refuses the AES key (reason in
 * ic_last_error()).
 */
int ic_adiantum_setkey (struct ic_adiantum_ctx *ctx,
                        const uint8_t key[IC_ADIANTUM_KEY_SIZE]);

/* En/decrypt one message (one data unit) of @len >= 16 bytes from @src to
 * @dst, which may be @src (in place; any other overlap is not allowed),
 * with the 32-byte @tweak.  @ctx must be keyed; a bad @len or an unkeyed
 * context is a programming error (the caller, crypto/cipher.c, checks).
 *
 * Context: no locks taken; never blocks.
 */
void ic_adiantum_encrypt (struct ic_adiantum_ctx *ctx, uint8_t *dst,
                          const uint8_t *src, size_t len,
                          const uint8_t tweak[IC_ADIANTUM_TWEAK_SIZE]);
void ic_adiantum_decrypt (struct ic_adiantum_ctx *ctx, uint8_t *dst,
                          const uint8_t *src, size_t len,
                          const uint8_t tweak[IC_ADIANTUM_TWEAK_SIZE]);

/* Wipe and free @ctx.  NULL is ignored. */
void ic_adiantum_free (struct ic_adiantum_ctx *ctx);

#endif /* IC_ADIANTUM_H */

/* tests/test_cipher.c - unit tests of crypto/cipher.c, one keyed transform
 * per blk-crypto mode, and of the DUN arithmetic of crypto/crypt-ctx.h.
 *
 * inlinecrypt must write byte for byte what Linux writes for the same key,
 * mode, data unit size and DUN.  Each mode is therefore checked against
 * published vectors, each run as one data unit whose size is the vector's
 * length and whose DUN is the vector's IV read as little-endian u64 limbs
 * (what blk_crypto_dun_to_iv() writes):
 *
 *   AES-256-XTS        IEEE Std 1619-2007 Annex B, Vectors 10 to 14 (512-bit
 *                      keys, 512-byte data units, data unit sequence number
 *                      = DUN).  Linux crypto/testmgr.h aes_xts_tv_template
 *                      carries only Vector 10 of these (with 1 to 4); the
 *                      bytes of 11 to 14 are Annex B's as reproduced in
 *                      botan src/tests/data/modes/xts.vec.  They run on
 *                      every AES-XTS implementation the CPU has
 *                      (crypto/aes-xts.h).
 *   AES-128-CBC-ESSIV  testmgr.h essiv_aes_cbc_tv_template[0] and [1], the
 *                      only entries with 16-byte keys.  [2] to [4], the
 *                      496-byte one included, use AES-192 and AES-256 data
 *                      keys, which this mode (AES-128 only) cannot take.
 *   SM4-XTS            testmgr.h sm4_xts_tv_template[1] to [3].  [0] has an
 *                      all-zero key, whose equal halves the Linux fallback
 *                      refuses (CRYPTO_TFM_REQ_FORBID_WEAK_KEYS) and so does
 *                      ic_cipher_setkey(); [4] is 189 bytes long, i.e.
 *                      ciphertext stealing, which blk-crypto never uses: its
 *                      data units are whole numbers of 16-byte blocks.
 *   Adiantum           testmgr.h adiantum_xchacha12_aes_tv_template[0]
 *                      through ic_cipher (tweak = the four DUN limbs) as an
 *                      integration check; test_adiantum has all of them.
 *
 * The AES-XTS, ESSIV and SM4-XTS ciphertexts here were also recomputed
 * independently when the tables were written (OpenSSL through Python
 * "cryptography": AES-XTS; AES-256-ECB and AES-128-CBC for ESSIV; SM4-ECB
 * in the IEEE 1619 XTS construction).
 *
 * Built on those: a request of n data units equals n one-unit requests at
 * DUN, DUN+1, ..., also where the DUN carries from limb to limb or wraps the
 * 16-byte IV of XTS and ESSIV; holes decrypt to zeros; every error return of
 * the cipher has a case.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <gcrypt.h>

#include "aes-xts.h"
#include "cipher.h"
#include "crypt-ctx.h"
#include "error.h"
#include "key.h"
#include "mode.h"
#include "secmem.h"
#include "testutil.h"

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

/* A known answer: @len bytes of @ptext are one data unit (the data unit size
 * is @len) whose IV, as the source gives it, is @iv: the DUN written out
 * little-endian, 16 bytes for XTS and ESSIV, 32 for Adiantum.
 */
struct cipher_tv {
  const char *source;           /* which vector of which template */
  const char *key;              /* all hex */
  const char *iv;
  const char *ptext;
  const char *ctext;
  size_t len;
};

/* The plaintext of IEEE 1619-2007 Vectors 4 and 10 to 14: bytes 00 to ff,
 * twice.
 */
#define PTEXT_00_FF_TWICE \
  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" \
  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" \
  "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" \
  "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f" \
  "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f" \
  "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf" \
  "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf" \
  "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff" \
  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" \
  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" \
  "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" \
  "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f" \
  "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f" \
  "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf" \
  "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf" \
  "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"

static const struct cipher_tv aes_256_xts_tvs[] = {
  {
    .source = "IEEE 1619-2007 Vector 10",
    .key =
      "2718281828459045235360287471352662497757247093699959574966967627"
      "3141592653589793238462643383279502884197169399375105820974944592",
    .iv =
      "ff000000000000000000000000000000",
    .ptext = PTEXT_00_FF_TWICE,
    .ctext =
      "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b"
      "5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd"
      "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0"
      "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca"
      "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0"
      "b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f"
      "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec"
      "583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a"
      "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1"
      "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae"
      "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29"
      "a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac"
      "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f"
      "645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385"
      "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa"
      "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151",
    .len = 512,
  },
  {
    .source = "IEEE 1619-2007 Vector 11",
    .key =
      "2718281828459045235360287471352662497757247093699959574966967627"
      "3141592653589793238462643383279502884197169399375105820974944592",
    .iv =
      "ffff0000000000000000000000000000",
    .ptext = PTEXT_00_FF_TWICE,
    .ctext =
      "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11"
      "e1d0225438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2"
      "469ee4a4fa794e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d"
      "3d6e1dc6ca181d4b546179d55544aa7760c40d06741539c7e3cd9d2f6650b201"
      "3fd0eeb8c2b8e3d8d240ccae2d4c98320a7442e1c8d75a42d6e6cfa4c2eca179"
      "8d158c7aecdf82490f24bb9b38e108bcda12c3faf9a21141c3613b58367f922a"
      "aa26cd22f23d708dae699ad7cb40a8ad0b6e2784973dcb605684c08b8d6998c6"
      "9aac049921871ebb65301a4619ca80ecb485a31d744223ce8ddc2394828d6a80"
      "470c092f5ba413c3378fa6054255c6f9df4495862bbb3287681f931b687c888a"
      "bf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5c0c24c8ab0"
      "18bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474afb75"
      "bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c63"
      "094f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a"
      "7e20dbdf308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca68"
      "6e0d7345c69ed50cdc2a8b332b1f8824108ac937eb050585608ee734097fc090"
      "54fbff89eeaeea791f4a7ab1f9868294a4f9e27b42af8100cb9d59cef9645803",
    .len = 512,
  },
  {
    .source = "IEEE 1619-2007 Vector 12",
    .key =
      "2718281828459045235360287471352662497757247093699959574966967627"
      "3141592653589793238462643383279502884197169399375105820974944592",
    .iv =
      "ffffff00000000000000000000000000",
    .ptext = PTEXT_00_FF_TWICE,
    .ctext =
      "e387aaa58ba483afa7e8eb469778317ecf4cf573aa9d4eac23f2cdf914e4e200"
      "a8b490e42ee646802dc6ee2b471b278195d60918ececb44bf79966f83faba049"
      "9298ebc699c0c8634715a320bb4f075d622e74c8c932004f25b41e361025b5a8"
      "7815391f6108fc4afa6a05d9303c6ba68a128a55705d415985832fdeaae6c8e1"
      "9110e84d1b1f199a2692119edc96132658f09da7c623efcec712537a3d94c0bf"
      "5d7e352ec94ae5797fdb377dc1551150721adf15bd26a8efc2fcaad56881fa9e"
      "62462c28f30ae1ceaca93c345cf243b73f542e2074a705bd2643bb9f7cc79bb6"
      "e7091ea6e232df0f9ad0d6cf502327876d82207abf2115cdacf6d5a48f6c1879"
      "a65b115f0f8b3cb3c59d15dd8c769bc014795a1837f3901b5845eb491adfefe0"
      "97b1fa30a12fc1f65ba22905031539971a10f2f36c321bb51331cdefb39e3964"
      "c7ef079994f5b69b2edd83a71ef549971ee93f44eac3938fcdd61d01fa71799d"
      "a3a8091c4c48aa9ed263ff0749df95d44fef6a0bb578ec69456aa5408ae32c7a"
      "f08ad7ba8921287e3bbee31b767be06a0e705c864a769137df28292283ea81a2"
      "480241b44d9921cdbec1bc28dc1fda114bd8e5217ac9d8ebafa720e9da4f9ace"
      "231cc949e5b96fe76ffc21063fddc83a6b8679c00d35e09576a875305bed5f36"
      "ed242c8900dd1fa965bc950dfce09b132263a1eef52dd6888c309f5a7d712826",
    .len = 512,
  },
  {
    .source = "IEEE 1619-2007 Vector 13",
    .key =
      "2718281828459045235360287471352662497757247093699959574966967627"
      "3141592653589793238462643383279502884197169399375105820974944592",
    .iv =
      "ffffffff000000000000000000000000",
    .ptext = PTEXT_00_FF_TWICE,
    .ctext =
      "bf53d2dade78e822a4d949a9bc6766b01b06a8ef70d26748c6a7fc36d80ae4c5"
      "520f7c4ab0ac8544424fa405162fef5a6b7f229498063618d39f0003cb5fb8d1"
      "c86b643497da1ff945c8d3bedeca4f479702a7a735f043ddb1d6aaade3c4a0ac"
      "7ca7f3fa5279bef56f82cd7a2f38672e824814e10700300a055e1630b8f1cb0e"
      "919f5e942010a416e2bf48cb46993d3cb6a51c19bacf864785a00bc2ecff15d3"
      "50875b246ed53e68be6f55bd7e05cfc2b2ed6432198a6444b6d8c247fab941f5"
      "69768b5c429366f1d3f00f0345b96123d56204c01c63b22ce78baf116e525ed9"
      "0fdea39fa469494d3866c31e05f295ff21fea8d4e6e13d67e47ce722e9698a1c"
      "1048d68ebcde76b86fcf976eab8aa9790268b7068e017a8b9b749409514f1053"
      "027fd16c3786ea1bac5f15cb79711ee2abe82f5cf8b13ae73030ef5b9e4457e7"
      "5d1304f988d62dd6fc4b94ed38ba831da4b7634971b6cd8ec325d9c61c00f1df"
      "73627ed3745a5e8489f3a95c69639c32cd6e1d537a85f75cc844726e8a72fc00"
      "77ad22000f1d5078f6b866318c668f1ad03d5a5fced5219f2eabbd0aa5c0f460"
      "d183f04404a0d6f469558e81fab24a167905ab4c7878502ad3e38fdbe62a4155"
      "6cec37325759533ce8f25f367c87bb5578d667ae93f9e2fd99bcbc5f2fbba88c"
      "f6516139420fcff3b7361d86322c4bd84c82f335abb152c4a93411373aaa8220",
    .len = 512,
  },
  {
    .source = "IEEE 1619-2007 Vector 14",
    .key =
      "2718281828459045235360287471352662497757247093699959574966967627"
      "3141592653589793238462643383279502884197169399375105820974944592",
    .iv =
      "ffffffffff0000000000000000000000",
    .ptext = PTEXT_00_FF_TWICE,
    .ctext =
      "64497e5a831e4a932c09be3e5393376daa599548b816031d224bbf50a818ed23"
      "50eae7e96087c8a0db51ad290bd00c1ac1620857635bf246c176ab463be30b80"
      "8da548081ac847b158e1264be25bb0910bbc92647108089415d45fab1b3d2604"
      "e8a8eff1ae4020cfa39936b66827b23f371b92200be90251e6d73c5f86de5fd4"
      "a950781933d79a28272b782a2ec313efdfcc0628f43d744c2dc2ff3dcb66999b"
      "50c7ca895b0c64791eeaa5f29499fb1c026f84ce5b5c72ba1083cddb5ce45434"
      "631665c333b60b11593fb253c5179a2c8db813782a004856a1653011e93fb6d8"
      "76c18366dd8683f53412c0c180f9c848592d593f8609ca736317d356e13e2bff"
      "3a9f59cd9aeb19cd482593d8c46128bb32423b37a9adfb482b99453fbe25a41b"
      "f6feb4aa0bef5ed24bf73c762978025482c13115e4015aac992e5613a3b5c2f6"
      "85b84795cb6e9b2656d8c88157e52c42f978d8634c43d06fea928f2822e465aa"
      "6576e9bf419384506cc3ce3c54ac1a6f67dc66f3b30191e698380bc999b05abc"
      "e19dc0c6dcc2dd001ec535ba18deb2df1a101023108318c75dc98611a09dc48a"
      "0acdec676fabdf222f07e026f059b672b56e5cbc8e1d21bbd867dd9272120546"
      "81d70ea737134cdfce93b6f82ae22423274e58a0821cc5502e2d0ab4585e94de"
      "6975be5e0b4efce51cd3e70c25a1fbbbd609d273ad5b0d59631c531f6a0a57b9",
    .len = 512,
  },
};

static const struct cipher_tv aes_128_cbc_essiv_tvs[] = {
  {
    .source = "essiv_aes_cbc_tv_template[0]",
    .key =
      "06a9214036b8a15b512e03d534120006",
    .iv =
      "3dafba429d9eb4300000000000000000",
    .ptext =
      "53696e676c6520626c6f636b206d7367",
    .ctext =
      "fa59e75f415665c336ca6b72109f8cd4",
    .len = 16,
  },
  {
    .source = "essiv_aes_cbc_tv_template[1]",
    .key =
      "c286696d887c9aa0611bbb3e2025a45a",
    .iv =
      "562e17996d093d280000000000000000",
    .ptext =
      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    .ctext =
      "c8599afe79e67b20067d550a5ec7b5a70b9c80d215a1b86dc6ab7b65d9fd88eb",
    .len = 32,
  },
};

static const struct cipher_tv sm4_xts_tvs[] = {
  {
    .source = "sm4_xts_tv_template[1]",
    .key =
      "1111111111111111111111111111111122222222222222222222222222222222",
    .iv =
      "33333333330000000000000000000000",
    .ptext =
      "4444444444444444444444444444444444444444444444444444444444444444",
    .ctext =
      "a74d726c11196a32be04e001ff29d0c7932f9f3ec29bfcb64dd17f63cbd3ea31",
    .len = 32,
  },
  {
    .source = "sm4_xts_tv_template[2]",
    .key =
      "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f022222222222222222222222222222222",
    .iv =
      "33333333330000000000000000000000",
    .ptext =
      "4444444444444444444444444444444444444444444444444444444444444444",
    .ctext =
      "7f76088effadf70c02ea9f95da0628d351bfcb9eac0563bcf17b710dab0a9826",
    .len = 32,
  },
  {
    .source = "sm4_xts_tv_template[3]",
    .key =
      "2718281828459045235360287471352631415926535897932384626433832795",
    .iv =
      "00000000000000000000000000000000",
    .ptext = PTEXT_00_FF_TWICE,
    .ctext =
      "54dd65b6326faea8fad1a83c63614af39f721d8dfe177a30b66abf6a449980e1"
      "cdbe06afb73336f37a4d39de964a30d7d04a3799169c60258f6b748a61861aa5"
      "ec92a2c15b2b7c615a42aba499bbd6b71db9c789b2182089a25dd3df800ed186"
      "4d19f7ed45fd17a9480b0fb82d9b7fc3ed57e9a1140eaa778dd2dd679e3edc3d"
      "c4d55c950ebc531d9592f7c4638256d56518292a20af98fdd3a63600350a70ab"
      "5a40f4c285037ca01f251f19ecae0329ff77ad88cd5a4cdea2aeabc22148ffbd"
      "239bd10515bde1131dec8404e443dc763140d5f22bf33e0c6872d6b81d630f6f"
      "00cdd058fe80f9cbfb77707f93cee2ca92b915b8304027c190a84e2d65e018cc"
      "6a387d3766acdb28253284e8db9acf8f52280ddc6d0033d2ccaaa4f9aeff1236"
      "69bc024fd6768edf8bc1f8d622c19c609ef97f609190cd110241e7fb084ed894"
      "2da1f9b9cf1b514b61a388b30ea61a4a745b381ee7ad6c4db1275453b8413f98"
      "df6e4a40986ee4b59af5dfaecd301265179067a00d7ca35ab95abd617adea28e"
      "c1c26a97de28b8bfe30120d6aefbd258c59e42d161e8065a78106bdca5cd90fb"
      "3aac4e93866c8a7f9676860a79145bd92e02e819a90be0b97cc522b32106856f"
      "df0e54d88e4624155a2f1c14eaeaa163f858e99a806e791acd82f1b0e29f0028"
      "a4c38e976f571a93f4fd57d787c24db0e01ca304e5a5c4dd50cf8bdbf491e57c",
    .len = 512,
  },
};

static const struct cipher_tv adiantum_tvs[] = {
  {
    .source = "adiantum_xchacha12_aes_tv_template[0]",
    .key =
      "9eebb2493c1cf5f46a99c2c4dfb1f4dd752057ea2c4fcdb2a53d7b491eabfd0f",
    .iv =
      "df63d4abd249f3d8338137607dfa7308d8496d80e82f6254eb0ea9395b457f8a",
    .ptext =
      "67c9f23084418e43fbf3b33e79367fe8",
    .ctext =
      "6d32861867860f3f967c9d280d53ec9f",
    .len = 16,
  },
};

/* The modes, in enum order. */
static const enum ic_crypto_mode_num modes[] = {
  IC_ENCRYPTION_MODE_AES_256_XTS,
  IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV,
  IC_ENCRYPTION_MODE_ADIANTUM,
  IC_ENCRYPTION_MODE_SM4_XTS,
};

/* The DUN whose little-endian image is the @size bytes at @iv (the rest
 * zero), computed here rather than by crypto/crypt-ctx.c.
 */
static void
iv_to_dun (const uint8_t *iv, size_t size,
           uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE])
{
  uint8_t bytes[IC_CRYPTO_MAX_IV_SIZE] = { 0 };
  int i;
  int b;

  memcpy (bytes, iv, size);
  for (i = 0; i < IC_CRYPTO_DUN_ARRAY_SIZE; i++) {
    dun[i] = 0;
    for (b = 7; b >= 0; b--)
      dun[i] = dun[i] << 8 | bytes[8 * i + b];
  }
}

/* Fail naming @what and the first differing byte unless the @len bytes at
 * @got and @want are equal.  (ck_assert_mem_eq shows only a prefix of long
 * buffers and not which vector failed.)
 */
static void
assert_bytes_eq (const void *got, const void *want, size_t len,
                 const char *what)
{
  const uint8_t *g = got;
  const uint8_t *w = want;
  size_t i;

  for (i = 0; i < len; i++)
    if (g[i] != w[i])
      ck_abort_msg ("%s: byte %zu of %zu is %02x, expected %02x",
                    what, i, len, g[i], w[i]);
}

/* Assert that the last error contains @part. */
static void
assert_error_has (const char *part)
{
  const char *msg = ic_last_error ();

  ck_assert_msg (strstr (msg, part) != NULL,
                 "last error \"%s\" does not contain \"%s\"", msg, part);
}

static struct ic_cipher *
new_keyed_cipher (enum ic_crypto_mode_num mode, const uint8_t *key)
{
  struct ic_cipher *c = ic_cipher_new (mode);
  int r;

  ck_assert_msg (c != NULL, "ic_cipher_new (%s): %s",
                 ic_crypto_mode_name (mode), ic_last_error ());
  r = ic_cipher_setkey (c, key, ic_crypto_modes[mode].keysize);
  ck_assert_msg (r == 0, "ic_cipher_setkey (%s): %d: %s",
                 ic_crypto_mode_name (mode), r, ic_last_error ());
  return c;
}

/* A cipher for @mode with a fresh pseudo-random key (XTS halves differ with
 * overwhelming probability).
 */
static struct ic_cipher *
new_random_cipher (enum ic_crypto_mode_num mode)
{
  uint8_t key[IC_CRYPTO_MAX_RAW_KEY_SIZE];
  struct ic_cipher *c;

  rng_fill (key, sizeof key);
  c = new_keyed_cipher (mode, key);
  ic_memzero_explicit (key, sizeof key);
  return c;
}

/* Run @tv as one data unit: encrypt and decrypt, out of place (the source
 * left untouched) and in place.
 */
static void
check_kat (enum ic_crypto_mode_num mode, const struct cipher_tv *tv)
{
  const struct ic_crypto_mode *m = &ic_crypto_modes[mode];
  unsigned int du = tv->len;
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint8_t iv[IC_CRYPTO_MAX_IV_SIZE];
  uint8_t *key = unhex (tv->key, m->keysize);
  uint8_t *tv_iv = unhex (tv->iv, m->ivsize);
  uint8_t *ptext = unhex (tv->ptext, tv->len);
  uint8_t *ctext = unhex (tv->ctext, tv->len);
  uint8_t *src = xmalloc (tv->len);
  uint8_t *buf = xmalloc (tv->len);
  struct ic_cipher *c;
  char what[160];

  /* The vector's IV is the DUN written out little-endian. */
  iv_to_dun (tv_iv, m->ivsize, dun);
  ic_crypto_dun_to_iv (dun, iv);
  snprintf (what, sizeof what, "%s %s: DUN to IV", m->name, tv->source);
  assert_bytes_eq (iv, tv_iv, m->ivsize, what);

  c = new_keyed_cipher (mode, key);
  ck_assert_int_eq (ic_cipher_mode (c), mode);

  memcpy (src, ptext, tv->len);
  ck_assert_int_eq (ic_cipher_encrypt (c, buf, src, tv->len, du, dun), 0);
  snprintf (what, sizeof what, "%s %s: encrypt", m->name, tv->source);
  assert_bytes_eq (buf, ctext, tv->len, what);
  snprintf (what, sizeof what, "%s %s: encrypt changed its source",
            m->name, tv->source);
  assert_bytes_eq (src, ptext, tv->len, what);

  memcpy (src, ctext, tv->len);
  ck_assert_int_eq (ic_cipher_decrypt (c, buf, src, tv->len, du, dun), 0);
  snprintf (what, sizeof what, "%s %s: decrypt", m->name, tv->source);
  assert_bytes_eq (buf, ptext, tv->len, what);
  snprintf (what, sizeof what, "%s %s: decrypt changed its source",
            m->name, tv->source);
  assert_bytes_eq (src, ctext, tv->len, what);

  memcpy (buf, ptext, tv->len);
  ck_assert_int_eq (ic_cipher_encrypt (c, buf, buf, tv->len, du, dun), 0);
  snprintf (what, sizeof what, "%s %s: encrypt in place",
            m->name, tv->source);
  assert_bytes_eq (buf, ctext, tv->len, what);

  ck_assert_int_eq (ic_cipher_decrypt (c, buf, buf, tv->len, du, dun), 0);
  snprintf (what, sizeof what, "%s %s: decrypt in place",
            m->name, tv->source);
  assert_bytes_eq (buf, ptext, tv->len, what);

  ic_cipher_free (c);
  free (buf);
  free (src);
  free (ctext);
  free (ptext);
  free (tv_iv);
  free (key);
}

/* Every AES-XTS implementation this CPU runs (crypto/aes-xts.h). */
START_TEST (test_kat_aes_256_xts)
{
  static const char *const impls[] = { "vaes-avx512", "aesni", "libgcrypt" };
  size_t i;
  int r;

  for (i = 0; i < ARRAY_SIZE (impls); i++) {
    r = ic_aes_xts_use_impl (impls[i]);
    if (r == -ENOTSUP)
      continue;
    ck_assert_int_eq (r, 0);
    check_kat (IC_ENCRYPTION_MODE_AES_256_XTS, &aes_256_xts_tvs[_i]);
  }
  ic_aes_xts_use_simd (true);
}
END_TEST

START_TEST (test_kat_aes_128_cbc_essiv)
{
  check_kat (IC_ENCRYPTION_MODE_AES_128_CBC_ESSIV,
             &aes_128_cbc_essiv_tvs[_i]);
}
END_TEST

START_TEST (test_kat_sm4_xts)
{
  check_kat (IC_ENCRYPTION_MODE_SM4_XTS, &sm4_xts_tvs[_i]);
}
END_TEST

START_TEST (test_kat_adiantum)
{
  check_kat (IC_ENCRYPTION_MODE_ADIANTUM, &adiantum_tvs[_i]);
}
END_TEST

/* Multi-data-unit requests. */

static const unsigned int du_sizes[] = { 512, 4096 };

/* Where requests start: low; below a limb boundary, so that requests of
 * more than 4 data units carry into limb 1; and with all limbs in use, which
 * only Adiantum's 32-byte tweak sees whole.
 */
static const uint64_t multi_starts[][IC_CRYPTO_DUN_ARRAY_SIZE] = {
  { 0x2a, 0, 0, 0 },
  { UINT64_MAX - 3, 7, 0, 0 },
  { 0x0123456789abcdefULL, 0xfedcba9876543210ULL, 0x1111, 0x2222 },
};

#define MAX_UNITS 8

/* _i: mode * ARRAY_SIZE (du_sizes) + data unit size.  A request of n data
 * units from DUN d must equal n one-unit requests at d, d+1, ...
 * (blk-crypto-fallback en/decrypts each data unit with its own IV; so does
 * compliant hardware).
 */
START_TEST (test_multi_unit)
{
  enum ic_crypto_mode_num mode = modes[_i / ARRAY_SIZE (du_sizes)];
  unsigned int du = du_sizes[_i % ARRAY_SIZE (du_sizes)];
  size_t max = (size_t) MAX_UNITS * du;
  uint8_t *ptext = rng_alloc (max);
  uint8_t *whole = xmalloc (max);
  uint8_t *single = xmalloc (max);
  uint8_t *back = xmalloc (max);
  struct ic_cipher *c = new_random_cipher (mode);
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  char what[160];
  size_t s;
  size_t n;
  size_t k;

  for (s = 0; s < ARRAY_SIZE (multi_starts); s++) {
    for (n = 1; n <= MAX_UNITS; n++) {
      size_t len = n * du;

      ck_assert_int_eq (ic_cipher_encrypt (c, whole, ptext, len, du,
                                           multi_starts[s]), 0);
      memcpy (dun, multi_starts[s], sizeof dun);
      for (k = 0; k < n; k++) {
        ck_assert_int_eq (ic_cipher_encrypt (c, single + k * du,
                                             ptext + k * du, du, du, dun),
                          0);
        ic_crypt_dun_increment (dun, 1);
      }
      snprintf (what, sizeof what,
                "%s: %zu x %u bytes from start %zu: one request vs one per "
                "data unit", ic_crypto_mode_name (mode), n, du, s);
      assert_bytes_eq (whole, single, len, what);

      ck_assert_int_eq (ic_cipher_decrypt (c, back, whole, len, du,
                                           multi_starts[s]), 0);
      snprintf (what, sizeof what, "%s: %zu x %u bytes from start %zu: "
                "decrypt", ic_crypto_mode_name (mode), n, du, s);
      assert_bytes_eq (back, ptext, len, what);

      memcpy (dun, multi_starts[s], sizeof dun);
      for (k = 0; k < n; k++) {
        ck_assert_int_eq (ic_cipher_decrypt (c, back + k * du,
                                             whole + k * du, du, du, dun),
                          0);
        ic_crypt_dun_increment (dun, 1);
      }
      snprintf (what, sizeof what, "%s: %zu x %u bytes from start %zu: "
                "decrypt one data unit at a time",
                ic_crypto_mode_name (mode), n, du, s);
      assert_bytes_eq (back, ptext, len, what);
    }
  }

  /* Equal plaintext in every data unit still gives a different ciphertext
   * in each: the DUN really moves on.
   */
  for (k = 1; k < MAX_UNITS; k++)
    memcpy (ptext + k * du, ptext, du);
  ck_assert_int_eq (ic_cipher_encrypt (c, whole, ptext, max, du,
                                       multi_starts[0]), 0);
  for (k = 0; k < MAX_UNITS; k++) {
    for (n = k + 1; n < MAX_UNITS; n++)
      ck_assert_msg (memcmp (whole + k * du, whole + n * du, du) != 0,
                     "%s: data units %zu and %zu encrypt alike",
                     ic_crypto_mode_name (mode), k, n);
  }

  ic_cipher_free (c);
  free (back);
  free (single);
  free (whole);
  free (ptext);
}
END_TEST

/* DUN carry across limbs.  The IV of each data unit is computed by hand
 * here (32 bytes, the DUN's limbs little-endian, limb 0 first).
 */
struct carry_tv {
  const char *what;
  uint64_t start[IC_CRYPTO_DUN_ARRAY_SIZE];
  const char *iv[4];
};

static const struct carry_tv carry_tvs[] = {
  {
    .what = "limb 0 carries into limb 1",
    .start = { UINT64_MAX - 1, 0, 0, 0 },
    .iv = {
      "feffffffffffffff" "0000000000000000"
      "0000000000000000" "0000000000000000",
      "ffffffffffffffff" "0000000000000000"
      "0000000000000000" "0000000000000000",
      "0000000000000000" "0100000000000000"
      "0000000000000000" "0000000000000000",
      "0100000000000000" "0100000000000000"
      "0000000000000000" "0000000000000000",
    },
  },
  {
    .what = "limbs 0 and 1 carry into limb 2",
    .start = { UINT64_MAX, UINT64_MAX, 0, 0 },
    .iv = {
      "ffffffffffffffff" "ffffffffffffffff"
      "0000000000000000" "0000000000000000",
      "0000000000000000" "0000000000000000"
      "0100000000000000" "0000000000000000",
      "0100000000000000" "0000000000000000"
      "0100000000000000" "0000000000000000",
      "0200000000000000" "0000000000000000"
      "0100000000000000" "0000000000000000",
    },
  },
};

#define CARRY_DU 512

/* _i: mode * ARRAY_SIZE (carry_tvs) + case. */
START_TEST (test_carry)
{
  enum ic_crypto_mode_num mode = modes[_i / ARRAY_SIZE (carry_tvs)];
  const struct carry_tv *tv = &carry_tvs[_i % ARRAY_SIZE (carry_tvs)];
  const char *name = ic_crypto_mode_name (mode);
  size_t len = 4 * CARRY_DU;
  uint64_t want_dun[4][IC_CRYPTO_DUN_ARRAY_SIZE];
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint64_t low[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint8_t want_iv[IC_CRYPTO_MAX_IV_SIZE];
  uint8_t iv[IC_CRYPTO_MAX_IV_SIZE];
  uint8_t *ptext = rng_alloc (len);
  uint8_t *whole = xmalloc (len);
  uint8_t *unit = xmalloc (CARRY_DU);
  struct ic_cipher *c = new_random_cipher (mode);
  char what[160];
  size_t k;

  /* ic_crypt_dun_increment() and ic_crypto_dun_to_iv() reach the IVs
   * computed by hand.
   */
  memcpy (dun, tv->start, sizeof dun);
  for (k = 0; k < 4; k++) {
    unhex_into (want_iv, tv->iv[k], sizeof want_iv);
    iv_to_dun (want_iv, sizeof want_iv, want_dun[k]);
    ic_crypto_dun_to_iv (dun, iv);
    snprintf (what, sizeof what, "%s: data unit %zu: IV", tv->what, k);
    assert_bytes_eq (iv, want_iv, sizeof iv, what);
    ck_assert_int_eq (ic_crypt_dun_cmp (dun, want_dun[k]), 0);
    ic_crypt_dun_increment (dun, 1);
  }

  ck_assert_int_eq (ic_cipher_encrypt (c, whole, ptext, len, CARRY_DU,
                                       tv->start), 0);
  for (k = 0; k < 4; k++) {
    ck_assert_int_eq (ic_cipher_encrypt (c, unit, ptext + k * CARRY_DU,
                                         CARRY_DU, CARRY_DU, want_dun[k]),
                      0);
    snprintf (what, sizeof what, "%s: %s: data unit %zu", name, tv->what, k);
    assert_bytes_eq (whole + k * CARRY_DU, unit, CARRY_DU, what);

    /* XTS and ESSIV take the first 16 bytes of the IV: past 2^128 their
     * IV wraps to zero, as in Linux.  Adiantum's 32-byte tweak keeps
     * limbs 2 and 3.
     */
    memcpy (low, want_dun[k], sizeof low);
    low[2] = low[3] = 0;
    if (ic_crypt_dun_cmp (low, want_dun[k]) == 0)
      continue;
    ck_assert_int_eq (ic_cipher_encrypt (c, unit, ptext + k * CARRY_DU,
                                         CARRY_DU, CARRY_DU, low), 0);
    if (ic_crypto_modes[mode].ivsize == 16) {
      snprintf (what, sizeof what, "%s: %s: data unit %zu vs the same DUN "
                "without limbs 2 and 3", name, tv->what, k);
      assert_bytes_eq (whole + k * CARRY_DU, unit, CARRY_DU, what);
    }
    else
      ck_assert_msg (memcmp (whole + k * CARRY_DU, unit, CARRY_DU) != 0,
                     "%s: %s: data unit %zu ignores limb 2 of the DUN",
                     name, tv->what, k);
  }

  ck_assert_int_eq (ic_cipher_decrypt (c, whole, whole, len, CARRY_DU,
                                       tv->start), 0);
  snprintf (what, sizeof what, "%s: %s: decrypt", name, tv->what);
  assert_bytes_eq (whole, ptext, len, what);

  ic_cipher_free (c);
  free (unit);
  free (whole);
  free (ptext);
}
END_TEST

/* The DUN helpers of crypt-ctx.h. */

START_TEST (test_dun_to_iv)
{
  static const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = {
    0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL,
    0x1716151413121110ULL, 0x1f1e1d1c1b1a1918ULL,
  };
  uint8_t iv[IC_CRYPTO_MAX_IV_SIZE];
  size_t i;

  ic_crypto_dun_to_iv (dun, iv);
  for (i = 0; i < sizeof iv; i++)
    ck_assert_uint_eq (iv[i], i);
}
END_TEST

START_TEST (test_dun_set_u64)
{
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 1, 2, 3, 4 };

  ic_crypt_dun_set_u64 (dun, UINT64_MAX);
  ck_assert_uint_eq (dun[0], UINT64_MAX);
  ck_assert_uint_eq (dun[1], 0);
  ck_assert_uint_eq (dun[2], 0);
  ck_assert_uint_eq (dun[3], 0);
}
END_TEST

struct increment_tv {
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint64_t inc;
  uint64_t want[IC_CRYPTO_DUN_ARRAY_SIZE];
};

static const struct increment_tv increment_tvs[] = {
  { { 5, 0, 0, 0 }, 0, { 5, 0, 0, 0 } },
  { { 5, 6, 7, 8 }, 3, { 8, 6, 7, 8 } },
  { { UINT64_MAX, 0, 0, 0 }, 1, { 0, 1, 0, 0 } },
  { { 1, 0, 0, 0 }, UINT64_MAX, { 0, 1, 0, 0 } },
  { { UINT64_MAX, 0, 0, 0 }, UINT64_MAX, { UINT64_MAX - 1, 1, 0, 0 } },
  { { UINT64_MAX - 1, UINT64_MAX, 0, 0 }, 3, { 1, 0, 1, 0 } },
  { { UINT64_MAX, UINT64_MAX, UINT64_MAX, 5 }, 1, { 0, 0, 0, 6 } },
  /* Wraps at 2^256. */
  { { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX }, 2, { 1, 0, 0, 0 } },
};

START_TEST (test_dun_increment)
{
  const struct increment_tv *tv = &increment_tvs[_i];
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  int i;

  memcpy (dun, tv->dun, sizeof dun);
  ic_crypt_dun_increment (dun, tv->inc);
  for (i = 0; i < IC_CRYPTO_DUN_ARRAY_SIZE; i++)
    ck_assert_msg (dun[i] == tv->want[i],
                   "case %d: limb %d is %#" PRIx64 ", expected %#" PRIx64,
                   _i, i, dun[i], tv->want[i]);
}
END_TEST

/* A context whose key has 4096-byte data units. */
#define CTX_DU 4096

struct contiguous_tv {
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint64_t bytes;
  uint64_t next[IC_CRYPTO_DUN_ARRAY_SIZE];
  bool contiguous;
};

static const struct contiguous_tv contiguous_tvs[] = {
  { { 5, 0, 0, 0 }, 3 * CTX_DU, { 8, 0, 0, 0 }, true },
  { { 5, 0, 0, 0 }, 3 * CTX_DU, { 9, 0, 0, 0 }, false },
  { { 5, 0, 0, 0 }, 3 * CTX_DU, { 7, 0, 0, 0 }, false },
  { { 5, 0, 0, 0 }, 0, { 5, 0, 0, 0 }, true },
  /* Like upstream, a partial data unit does not count. */
  { { 5, 0, 0, 0 }, CTX_DU + 100, { 6, 0, 0, 0 }, true },
  { { 5, 0, 0, 0 }, CTX_DU - 1, { 5, 0, 0, 0 }, true },
  /* Every limb must match. */
  { { 5, 1, 2, 3 }, CTX_DU, { 6, 1, 2, 3 }, true },
  { { 5, 1, 2, 3 }, CTX_DU, { 6, 1, 2, 4 }, false },
  { { 5, 1, 2, 3 }, CTX_DU, { 6, 0, 2, 3 }, false },
  /* Carries. */
  { { UINT64_MAX, 0, 0, 0 }, CTX_DU, { 0, 1, 0, 0 }, true },
  { { UINT64_MAX, 0, 0, 0 }, CTX_DU, { 0, 0, 0, 0 }, false },
  { { UINT64_MAX - 1, 0, 0, 0 }, 3 * CTX_DU, { 1, 1, 0, 0 }, true },
  { { UINT64_MAX, UINT64_MAX, UINT64_MAX, 7 }, CTX_DU, { 0, 0, 0, 8 },
    true },
  { { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX - 1 }, CTX_DU,
    { 0, 0, 0, UINT64_MAX }, true },
  /* A wrap through zero is not contiguous (bio_crypt_dun_is_contiguous). */
  { { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX }, CTX_DU,
    { 0, 0, 0, 0 }, false },
  { { UINT64_MAX - 1, UINT64_MAX, UINT64_MAX, UINT64_MAX }, 2 * CTX_DU,
    { 0, 0, 0, 0 }, false },
  { { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX }, 0,
    { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX }, true },
  /* A byte count beyond 32 bits (upstream's is an unsigned int). */
  { { 0, 0, 0, 0 }, (uint64_t) CTX_DU << 32, { 1ULL << 32, 0, 0, 0 }, true },
};

static struct ic_crypto_key *
new_ctx_key (void)
{
  uint8_t bytes[64];
  struct ic_crypto_key *key;

  rng_fill (bytes, sizeof bytes);
  key = ic_crypto_key_new ("ctx", bytes, sizeof bytes,
                           IC_CRYPTO_KEY_TYPE_RAW,
                           IC_ENCRYPTION_MODE_AES_256_XTS, 8, CTX_DU);
  ck_assert_msg (key != NULL, "ic_crypto_key_new: %s", ic_last_error ());
  return key;
}

START_TEST (test_dun_is_contiguous)
{
  const struct contiguous_tv *tv = &contiguous_tvs[_i];
  struct ic_crypt_ctx ctx;

  ctx.key = new_ctx_key ();
  memcpy (ctx.dun, tv->dun, sizeof ctx.dun);
  ck_assert_msg (ic_crypt_dun_is_contiguous (&ctx, tv->bytes, tv->next) ==
                 tv->contiguous, "case %d: expected %s", _i,
                 tv->contiguous ? "contiguous" : "not contiguous");
  ic_crypto_key_free ((struct ic_crypto_key *) ctx.key);
}
END_TEST

struct advance_tv {
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint64_t bytes;
  uint64_t want[IC_CRYPTO_DUN_ARRAY_SIZE];
};

static const struct advance_tv advance_tvs[] = {
  { { 5, 0, 0, 0 }, 0, { 5, 0, 0, 0 } },
  { { 5, 0, 0, 0 }, 3 * CTX_DU, { 8, 0, 0, 0 } },
  { { 5, 0, 0, 0 }, CTX_DU - 1, { 5, 0, 0, 0 } },
  { { 5, 0, 0, 0 }, 2 * CTX_DU + 1, { 7, 0, 0, 0 } },
  { { UINT64_MAX, 0, 0, 0 }, CTX_DU, { 0, 1, 0, 0 } },
  { { UINT64_MAX, UINT64_MAX, 0, 0 }, 2 * CTX_DU, { 1, 0, 1, 0 } },
  { { 0, 0, 0, 0 }, UINT64_MAX, { UINT64_MAX >> 12, 0, 0, 0 } },
  /* The DUN wraps at 2^256 (a caller checks contiguity first). */
  { { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX }, CTX_DU,
    { 0, 0, 0, 0 } },
};

START_TEST (test_ctx_advance)
{
  const struct advance_tv *tv = &advance_tvs[_i];
  struct ic_crypt_ctx ctx;
  int i;

  ctx.key = new_ctx_key ();
  memcpy (ctx.dun, tv->dun, sizeof ctx.dun);
  ic_crypt_ctx_advance (&ctx, tv->bytes);
  for (i = 0; i < IC_CRYPTO_DUN_ARRAY_SIZE; i++)
    ck_assert_msg (ctx.dun[i] == tv->want[i],
                   "case %d: limb %d is %#" PRIx64 ", expected %#" PRIx64,
                   _i, i, ctx.dun[i], tv->want[i]);
  ic_crypto_key_free ((struct ic_crypto_key *) ctx.key);
}
END_TEST

struct cmp_tv {
  uint64_t a[IC_CRYPTO_DUN_ARRAY_SIZE];
  uint64_t b[IC_CRYPTO_DUN_ARRAY_SIZE];
  int sign;
};

static const struct cmp_tv cmp_tvs[] = {
  { { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, 0 },
  { { 1, 2, 3, 4 }, { 1, 2, 3, 4 }, 0 },
  { { 1, 0, 0, 0 }, { 2, 0, 0, 0 }, -1 },
  { { 2, 0, 0, 0 }, { 1, 0, 0, 0 }, 1 },
  /* A higher limb outweighs every lower one. */
  { { UINT64_MAX, 0, 0, 0 }, { 0, 1, 0, 0 }, -1 },
  { { 0, 0, 0, 1 }, { UINT64_MAX, UINT64_MAX, UINT64_MAX, 0 }, 1 },
  { { UINT64_MAX, UINT64_MAX, 0, 0 }, { 0, 0, 1, 0 }, -1 },
  /* Limbs are unsigned. */
  { { 0, 0, 0, UINT64_MAX }, { 0, 0, 0, 1 }, 1 },
};

static int
sign (int x)
{
  return (x > 0) - (x < 0);
}

START_TEST (test_dun_cmp)
{
  const struct cmp_tv *tv = &cmp_tvs[_i];

  ck_assert_int_eq (sign (ic_crypt_dun_cmp (tv->a, tv->b)), tv->sign);
  ck_assert_int_eq (sign (ic_crypt_dun_cmp (tv->b, tv->a)), -tv->sign);
}
END_TEST

struct exceeds_tv {
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  unsigned int dun_bytes;
  bool exceeds;
};

static const struct exceeds_tv exceeds_tvs[] = {
  { { 0, 0, 0, 0 }, 1, false },
  { { 0xff, 0, 0, 0 }, 1, false },
  { { 0x100, 0, 0, 0 }, 1, true },
  { { 0x100, 0, 0, 0 }, 2, false },
  { { 0xffffffffULL, 0, 0, 0 }, 4, false },
  { { 0x100000000ULL, 0, 0, 0 }, 4, true },
  { { UINT64_MAX, 0, 0, 0 }, 8, false },
  { { 0, 1, 0, 0 }, 8, true },
  { { 0, 1, 0, 0 }, 9, false },
  { { UINT64_MAX, UINT64_MAX, 0, 0 }, 16, false },
  { { 0, 0, 1, 0 }, 16, true },
  { { 0, 0, 0, 1ULL << 56 }, 31, true },
  { { 0, 0, 0, 1ULL << 56 }, 32, false },
  { { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX }, 32, false },
  /* Only the value counts, not which limbs are set. */
  { { 0, 0, 0, 0 }, 0, false },
  { { 1, 0, 0, 0 }, 0, true },
};

START_TEST (test_dun_exceeds)
{
  const struct exceeds_tv *tv = &exceeds_tvs[_i];

  ck_assert_msg (ic_crypt_dun_exceeds (tv->dun, tv->dun_bytes) ==
                 tv->exceeds, "case %d: dun-bytes %u: expected %s", _i,
                 tv->dun_bytes, tv->exceeds ? "true" : "false");
}
END_TEST

/* Holes: all-zero data units of ciphertext. */

/* Bit k set: data unit k is a hole. */
static const unsigned int hole_patterns[] = {
  0x00, 0xff, 0x99, 0x01, 0x80, 0x5a, 0x7e, 0x3c,
};

/* The second start carries into limb 1 in the middle of the request. */
static const uint64_t hole_starts[][IC_CRYPTO_DUN_ARRAY_SIZE] = {
  { 0x1000, 0, 0, 0 },
  { UINT64_MAX - 3, 0, 0, 0 },
};

#define HOLE_DU 512
#define HOLE_UNITS 8

/* _i: mode.  ic_cipher_decrypt_holes() leaves holes zero and decrypts every
 * other data unit with its own DUN, i.e. like ic_cipher_decrypt() on each
 * run of data units between holes.
 */
START_TEST (test_decrypt_holes)
{
  enum ic_crypto_mode_num mode = modes[_i];
  size_t len = HOLE_DU * HOLE_UNITS;
  uint8_t *ptext = rng_alloc (len);
  uint8_t *ctext = xmalloc (len);
  uint8_t *buf = xmalloc (len);
  uint8_t *want = xmalloc (len);
  uint8_t *src = xmalloc (len);
  uint8_t *dst = xmalloc (len);
  uint8_t *zero = calloc (1, HOLE_DU);
  struct ic_cipher *c = new_random_cipher (mode);
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE];
  char what[160];
  size_t s;
  size_t p;
  size_t k;
  size_t run;

  ck_assert_ptr_nonnull (zero);
  for (s = 0; s < ARRAY_SIZE (hole_starts); s++) {
    ck_assert_int_eq (ic_cipher_encrypt (c, ctext, ptext, len, HOLE_DU,
                                         hole_starts[s]), 0);
    for (p = 0; p < ARRAY_SIZE (hole_patterns); p++) {
      unsigned int holes = hole_patterns[p];

      memcpy (buf, ctext, len);
      for (k = 0; k < HOLE_UNITS; k++)
        if (holes & (1u << k))
          memset (buf + k * HOLE_DU, 0, HOLE_DU);

      /* The expectation: ic_cipher_decrypt() of each run of non-holes at
       * the DUN of its first data unit.
       */
      memcpy (want, buf, len);
      memcpy (dun, hole_starts[s], sizeof dun);
      for (k = 0; k < HOLE_UNITS; k += run) {
        run = 1;
        if (!(holes & (1u << k))) {
          while (k + run < HOLE_UNITS && !(holes & (1u << (k + run))))
            run++;
          ck_assert_int_eq (ic_cipher_decrypt (c, want + k * HOLE_DU,
                                               want + k * HOLE_DU,
                                               run * HOLE_DU, HOLE_DU, dun),
                            0);
        }
        ic_crypt_dun_increment (dun, run);
      }

      /* Out of place (a read decrypted straight from a file's pages):
       * holes are zeroed in @dst, @src is left as it was.
       */
      memcpy (src, buf, len);
      memset (dst, 0xa5, len);
      ck_assert_int_eq (ic_cipher_decrypt_holes (c, dst, src, len, HOLE_DU,
                                                 hole_starts[s]), 0);
      snprintf (what, sizeof what, "%s: start %zu, holes %#x, out of place",
                ic_crypto_mode_name (mode), s, holes);
      assert_bytes_eq (dst, want, len, what);
      assert_bytes_eq (src, buf, len, what);

      ck_assert_int_eq (ic_cipher_decrypt_holes (c, buf, buf, len, HOLE_DU,
                                                 hole_starts[s]), 0);
      snprintf (what, sizeof what, "%s: start %zu, holes %#x",
                ic_crypto_mode_name (mode), s, holes);
      assert_bytes_eq (buf, want, len, what);
      for (k = 0; k < HOLE_UNITS; k++) {
        snprintf (what, sizeof what, "%s: start %zu, holes %#x, data unit "
                  "%zu", ic_crypto_mode_name (mode), s, holes, k);
        if (holes & (1u << k))
          assert_bytes_eq (buf + k * HOLE_DU, zero, HOLE_DU, what);
        else
          assert_bytes_eq (buf + k * HOLE_DU, ptext + k * HOLE_DU, HOLE_DU,
                           what);
      }
    }
  }

  /* Ciphertext that is only partly zero is not a hole: data unit 0 with
   * its first 16 bytes zero, data unit 1 zero but for its last byte.
   */
  memcpy (buf, ctext, len);
  memset (buf, 0, 16);
  memset (buf + HOLE_DU, 0, HOLE_DU - 1);
  buf[2 * HOLE_DU - 1] |= 1;
  memcpy (want, buf, len);
  ck_assert_int_eq (ic_cipher_decrypt (c, want, want, len, HOLE_DU,
                                       hole_starts[1]), 0);
  ck_assert_int_eq (ic_cipher_decrypt_holes (c, buf, buf, len, HOLE_DU,
                                             hole_starts[1]), 0);
  snprintf (what, sizeof what, "%s: partly zero data units",
            ic_crypto_mode_name (mode));
  assert_bytes_eq (buf, want, len, what);

  ic_cipher_free (c);
  free (zero);
  free (dst);
  free (src);
  free (want);
  free (buf);
  free (ctext);
  free (ptext);
}
END_TEST

static const size_t zero_lengths[] = { 0, 1, 2, 15, 16, 17, 31, 32, 512 };

START_TEST (test_is_zero)
{
  size_t len = zero_lengths[_i];
  uint8_t *buf = calloc (1, len + 1);
  size_t pos[3];
  size_t j;

  ck_assert_ptr_nonnull (buf);
  buf[len] = 1;                 /* just past the end: must not be looked at */
  ck_assert (ic_is_zero (buf, len));
  if (len == 0) {
    free (buf);
    return;
  }
  pos[0] = 0;
  pos[1] = len / 2;
  pos[2] = len - 1;
  for (j = 0; j < 3; j++) {
    buf[pos[j]] = 0x80;
    ck_assert_msg (!ic_is_zero (buf, len), "length %zu, byte %zu set",
                   len, pos[j]);
    buf[pos[j]] = 0;
  }
  free (buf);
}
END_TEST

/* Rekeying replaces the whole key schedule (and the ESSIV salt). */
START_TEST (test_rekey)
{
  enum ic_crypto_mode_num mode = modes[_i];
  unsigned int keysize = ic_crypto_modes[mode].keysize;
  uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 42, 0, 0, 0 };
  uint8_t key_a[IC_CRYPTO_MAX_RAW_KEY_SIZE];
  uint8_t key_b[IC_CRYPTO_MAX_RAW_KEY_SIZE];
  uint8_t *ptext = rng_alloc (4096);
  uint8_t *ct_a = xmalloc (4096);
  uint8_t *ct_b = xmalloc (4096);
  uint8_t *ct = xmalloc (4096);
  struct ic_cipher *a;
  struct ic_cipher *b;
  struct ic_cipher *c;
  char what[160];

  rng_fill (key_a, sizeof key_a);
  rng_fill (key_b, sizeof key_b);
  a = new_keyed_cipher (mode, key_a);
  b = new_keyed_cipher (mode, key_b);
  ck_assert_int_eq (ic_cipher_encrypt (a, ct_a, ptext, 4096, 512, dun), 0);
  ck_assert_int_eq (ic_cipher_encrypt (b, ct_b, ptext, 4096, 512, dun), 0);
  ck_assert (memcmp (ct_a, ct_b, 4096) != 0);

  c = new_keyed_cipher (mode, key_a);
  ck_assert_int_eq (ic_cipher_setkey (c, key_b, keysize), 0);
  ck_assert_int_eq (ic_cipher_encrypt (c, ct, ptext, 4096, 512, dun), 0);
  snprintf (what, sizeof what, "%s: rekeyed", ic_crypto_mode_name (mode));
  assert_bytes_eq (ct, ct_b, 4096, what);

  ic_cipher_free (c);
  ic_cipher_free (b);
  ic_cipher_free (a);
  free (ct);
  free (ct_b);
  free (ct_a);
  free (ptext);
}
END_TEST

/* Errors. */

static const int bad_modes[] = {
  IC_ENCRYPTION_MODE_INVALID, IC_ENCRYPTION_MODE_MAX,
  IC_ENCRYPTION_MODE_MAX + 1, -1, 1000,
};

START_TEST (test_new_invalid_mode)
{
  struct ic_cipher *c;

  ic_clear_error ();
  errno = 0;
  c = ic_cipher_new ((enum ic_crypto_mode_num) bad_modes[_i]);
  ck_assert_ptr_null (c);
  ck_assert_int_eq (errno, EINVAL);
  assert_error_has ("invalid crypto mode");
}
END_TEST

/* Encryption by an unkeyed @c fails and leaves the destination alone. */
static void
assert_unkeyed (struct ic_cipher *c)
{
  static const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 0 };
  uint8_t *src = rng_alloc (512);
  uint8_t *dst = rng_alloc (512);
  uint8_t *orig = xmalloc (512);

  memcpy (orig, dst, 512);
  ic_clear_error ();
  ck_assert_int_eq (ic_cipher_encrypt (c, dst, src, 512, 512, dun), -EINVAL);
  assert_error_has ("no key set");
  ic_clear_error ();
  ck_assert_int_eq (ic_cipher_decrypt (c, dst, src, 512, 512, dun), -EINVAL);
  assert_error_has ("no key set");
  ic_clear_error ();
  ck_assert_int_eq (ic_cipher_decrypt_holes (c, dst, dst, 512, 512, dun),
                    -EINVAL);
  assert_error_has ("no key set");
  assert_bytes_eq (dst, orig, 512, "unkeyed cipher wrote its destination");
  free (orig);
  free (dst);
  free (src);
}

START_TEST (test_no_key)
{
  struct ic_cipher *c = ic_cipher_new (modes[_i]);

  ck_assert_ptr_nonnull (c);
  assert_unkeyed (c);
  ic_cipher_free (c);
}
END_TEST

/* _i: mode.  A key of the wrong size is refused, naming both sizes; like a
 * Linux tfm after a failed setkey (CRYPTO_TFM_NEED_KEY), the cipher is then
 * unkeyed even if it had a key before.
 */
START_TEST (test_setkey_wrong_size)
{
  enum ic_crypto_mode_num mode = modes[_i];
  unsigned int keysize = ic_crypto_modes[mode].keysize;
  const size_t sizes[] = { 0, keysize - 1, keysize + 1, 2 * keysize };
  uint8_t key[2 * IC_CRYPTO_MAX_RAW_KEY_SIZE];
  struct ic_cipher *c;
  char part[80];
  size_t j;

  rng_fill (key, sizeof key);
  for (j = 0; j < ARRAY_SIZE (sizes); j++) {
    c = new_keyed_cipher (mode, key);
    ic_clear_error ();
    ck_assert_int_eq (ic_cipher_setkey (c, key, sizes[j]), -EINVAL);
    snprintf (part, sizeof part, "%s: set key: the key must be %u bytes, "
              "not %zu", ic_crypto_mode_name (mode), keysize, sizes[j]);
    assert_error_has (part);
    assert_unkeyed (c);
    ic_cipher_free (c);
  }
}
END_TEST

static const enum ic_crypto_mode_num xts_modes[] = {
  IC_ENCRYPTION_MODE_AES_256_XTS,
  IC_ENCRYPTION_MODE_SM4_XTS,
};

/* _i: XTS mode.  Equal halves are refused (xts_verify_key() with
 * CRYPTO_TFM_REQ_FORBID_WEAK_KEYS, as the Linux fallback sets); halves
 * differing in one bit are fine.
 */
START_TEST (test_setkey_xts_equal_halves)
{
  enum ic_crypto_mode_num mode = xts_modes[_i];
  unsigned int keysize = ic_crypto_modes[mode].keysize;
  uint8_t key[IC_CRYPTO_MAX_RAW_KEY_SIZE];
  struct ic_cipher *c;

  rng_fill (key, sizeof key);
  c = new_keyed_cipher (mode, key);
  memcpy (key + keysize / 2, key, keysize / 2);
  ic_clear_error ();
  ck_assert_int_eq (ic_cipher_setkey (c, key, keysize), -EINVAL);
  assert_error_has ("the two halves of the key are equal");
  assert_unkeyed (c);

  key[keysize - 1] ^= 1;
  ck_assert_int_eq (ic_cipher_setkey (c, key, keysize), 0);
  ic_cipher_free (c);
}
END_TEST

struct bad_length_tv {
  size_t len;
  unsigned int du;
};

static const struct bad_length_tv bad_length_tvs[] = {
  { 0, 512 },                   /* nothing */
  { 511, 512 },                 /* less than one data unit */
  { 513, 512 },                 /* not a whole number of data units */
  { 4096 + 16, 4096 },
  { 1040, 520 },                /* data unit not a multiple of 16 */
  { 32, 8 },                    /* data unit shorter than a block */
  { 512, 0 },                   /* no data unit size */
};

/* _i: mode * ARRAY_SIZE (bad_length_tvs) + case.  Nothing is written. */
START_TEST (test_bad_length)
{
  enum ic_crypto_mode_num mode = modes[_i / ARRAY_SIZE (bad_length_tvs)];
  const struct bad_length_tv *tv =
    &bad_length_tvs[_i % ARRAY_SIZE (bad_length_tvs)];
  static const uint64_t dun[IC_CRYPTO_DUN_ARRAY_SIZE] = { 1, 0, 0, 0 };
  struct ic_cipher *c = new_random_cipher (mode);
  size_t size = tv->len + 16;
  uint8_t *src = rng_alloc (size);
  uint8_t *dst = rng_alloc (size);
  uint8_t *orig = xmalloc (size);
  char part[80];

  memcpy (orig, dst, size);
  snprintf (part, sizeof part, "%zu bytes is not a whole number of %u-byte "
            "data units", tv->len, tv->du);
  ic_clear_error ();
  ck_assert_int_eq (ic_cipher_encrypt (c, dst, src, tv->len, tv->du, dun),
                    -EINVAL);
  assert_error_has (part);
  ic_clear_error ();
  ck_assert_int_eq (ic_cipher_decrypt (c, dst, src, tv->len, tv->du, dun),
                    -EINVAL);
  assert_error_has (part);
  ic_clear_error ();
  ck_assert_int_eq (ic_cipher_decrypt_holes (c, dst, dst, tv->len, tv->du,
                                             dun),
                    -EINVAL);
  assert_error_has (part);
  assert_bytes_eq (dst, orig, size, "refused request wrote its destination");

  ic_cipher_free (c);
  free (orig);
  free (dst);
  free (src);
}
END_TEST

/* The locked pool of secure memory, for the tests that fill it: the first
 * mapping of libgcrypt's secure memory.
 */
static uintptr_t pool_start, pool_end;

static bool
in_pool (const void *p)
{
  return (uintptr_t) p >= pool_start && (uintptr_t) p < pool_end;
}

/* Fill the locked pool with gcry_malloc_secure() (which nobody checks, so
 * nothing notices) but for a hole of about @hole bytes; @hole 0: none.
 * Return: false if the pool is not locked here (the test is skipped).
 */
static bool
fill_pool (size_t hole)
{
  static const size_t sizes[] = { 65536, 4096, 256, 16 };
  void *probe;
  void *holep = NULL;
  char line[512];
  uintptr_t s;
  uintptr_t e;
  FILE *fp;
  size_t i;

  if (!ic_secmem_locked ()) {
    fprintf (stderr, "secure memory is not locked here: skipped\n");
    return false;
  }
  probe = gcry_malloc_secure (16);
  fp = fopen ("/proc/self/maps", "re");
  ck_assert_ptr_nonnull (fp);
  while (fgets (line, sizeof line, fp))
    if (sscanf (line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) == 2 &&
        (uintptr_t) probe >= s && (uintptr_t) probe < e) {
      pool_start = s;
      pool_end = e;
    }
  fclose (fp);
  ck_assert (in_pool (probe));
  for (i = 0; i < ARRAY_SIZE (sizes); i++)
    for (;;) {
      void *p = gcry_malloc_secure (sizes[i]);

      ck_assert_ptr_nonnull (p);
      if (!in_pool (p)) {
        gcry_free (p);
        break;
      }
      if (sizes[i] == 4096 && hole && !holep)
        holep = p;
    }
  if (holep) {
    gcry_free (holep);
    ck_assert (in_pool (gcry_malloc_secure (4096 - hole - 32)));
  }
  /* Nothing was checked: the pool still counts as locked. */
  ck_assert (ic_secmem_locked ());
  return true;
}

/* An Adiantum cipher whose libgcrypt handle (K_E's key schedule) does
 * not fit in the locked pool any more, while the cipher and its context
 * still do, says that secure memory is no longer all locked.
 */
START_TEST (test_pool_full_adiantum_handle)
{
  static const size_t holes[] = { 1300, 1500, 2000 };
  struct ic_cipher *c;

  if (!fill_pool (holes[_i]))
    return;
  c = ic_cipher_new (IC_ENCRYPTION_MODE_ADIANTUM);
  ck_assert_ptr_nonnull (c);
  ck_assert_msg (!ic_secmem_locked (),
                 "a cipher went partly out of the locked pool unnoticed");
  ic_cipher_free (c);
}
END_TEST

static char sunk[IC_ERROR_MAX];

static void
sink (const char *msg)
{
  snprintf (sunk, sizeof sunk, "%s", msg);
}

/* The pool running out is logged even by a thread that captures its
 * errors (the control server's, for a key add), and that thread's last
 * error is left alone.
 */
START_TEST (test_pool_full_logged)
{
  struct ic_cipher *c;
  bool captured;

  if (!fill_pool (0))
    return;
  ic_error_set_sink (sink, NULL);
  captured = ic_error_capture (true);
  ic_clear_error ();
  c = ic_cipher_new (IC_ENCRYPTION_MODE_AES_256_XTS);
  ck_assert_ptr_nonnull (c);
  ic_error_capture (captured);
  ic_error_set_sink (NULL, NULL);
  ck_assert (!ic_secmem_locked ());
  ck_assert_msg (strstr (sunk, "locked pool") != NULL,
                 "nothing logged; sink got '%s'", sunk);
  ck_assert_str_eq (ic_last_error (), "");
  ic_cipher_free (c);
}
END_TEST

static Suite *
cipher_suite (void)
{
  Suite *s = suite_create ("cipher");
  TCase *tc;

  tc = tcase_create ("aes_256_xts");
  tcase_add_loop_test (tc, test_kat_aes_256_xts, 0,
                       ARRAY_SIZE (aes_256_xts_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("aes_128_cbc_essiv");
  tcase_add_loop_test (tc, test_kat_aes_128_cbc_essiv, 0,
                       ARRAY_SIZE (aes_128_cbc_essiv_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("sm4_xts");
  tcase_add_loop_test (tc, test_kat_sm4_xts, 0, ARRAY_SIZE (sm4_xts_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("adiantum");
  tcase_add_loop_test (tc, test_kat_adiantum, 0, ARRAY_SIZE (adiantum_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("multi_unit");
  tcase_add_loop_test (tc, test_multi_unit, 0,
                       ARRAY_SIZE (modes) * ARRAY_SIZE (du_sizes));
  suite_add_tcase (s, tc);

  tc = tcase_create ("carry");
  tcase_add_loop_test (tc, test_carry, 0,
                       ARRAY_SIZE (modes) * ARRAY_SIZE (carry_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("dun");
  tcase_add_test (tc, test_dun_to_iv);
  tcase_add_test (tc, test_dun_set_u64);
  tcase_add_loop_test (tc, test_dun_increment, 0,
                       ARRAY_SIZE (increment_tvs));
  tcase_add_loop_test (tc, test_dun_cmp, 0, ARRAY_SIZE (cmp_tvs));
  tcase_add_loop_test (tc, test_dun_exceeds, 0, ARRAY_SIZE (exceeds_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("contiguous");
  tcase_add_loop_test (tc, test_dun_is_contiguous, 0,
                       ARRAY_SIZE (contiguous_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("advance");
  tcase_add_loop_test (tc, test_ctx_advance, 0, ARRAY_SIZE (advance_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("holes");
  tcase_add_loop_test (tc, test_decrypt_holes, 0, ARRAY_SIZE (modes));
  tcase_add_loop_test (tc, test_is_zero, 0, ARRAY_SIZE (zero_lengths));
  suite_add_tcase (s, tc);

  tc = tcase_create ("rekey");
  tcase_add_loop_test (tc, test_rekey, 0, ARRAY_SIZE (modes));
  suite_add_tcase (s, tc);

  tc = tcase_create ("errors");
  tcase_add_loop_test (tc, test_new_invalid_mode, 0, ARRAY_SIZE (bad_modes));
  tcase_add_loop_test (tc, test_no_key, 0, ARRAY_SIZE (modes));
  tcase_add_loop_test (tc, test_setkey_wrong_size, 0, ARRAY_SIZE (modes));
  tcase_add_loop_test (tc, test_setkey_xts_equal_halves, 0,
                       ARRAY_SIZE (xts_modes));
  tcase_add_loop_test (tc, test_bad_length, 0,
                       ARRAY_SIZE (modes) * ARRAY_SIZE (bad_length_tvs));
  suite_add_tcase (s, tc);

  tc = tcase_create ("pool_full");
  tcase_add_loop_test (tc, test_pool_full_adiantum_handle, 0, 3);
  tcase_add_test (tc, test_pool_full_logged);
  suite_add_tcase (s, tc);

  return s;
}

int
main (void)
{
  if (!crypto_test_init ("test_cipher"))
    return EXIT_FAILURE;
  rng_seed (0x696e6c696e656372ULL);
  return run_suite (cipher_suite ());
}

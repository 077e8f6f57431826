#!/usr/bin/env python3
# tests/oracle.py - an independent oracle for the ciphertext inlinecrypt
# stores: what Linux blk-crypto (its fallback, or compliant inline
# encryption hardware) writes for a key, mode, data unit size and DUN.
#
# It uses python3-cryptography only, never inlinecrypt's code:
#   AES-256-XTS   cryptography's XTS, tweak = DUN as 16 little-endian bytes
#   AES-128-CBC-ESSIV  CBC with IV = AES-256-ECB_{SHA-256(key)}(le128(DUN))
#   SM4-XTS       IEEE-style XTS built here from SM4-ECB (cryptography has
#                 no SM4-XTS): T = SM4_K2(tweak), C = SM4_K1(P ^ T) ^ T,
#                 T *= alpha in GF(2^128), little-endian
# Adiantum is checked by the known-answer tests instead.
#
# Usage:
#   oracle.py encrypt|decrypt --mode MODE --key-file FILE
#             [--data-unit-size N] [--dun-base N] IN OUT
#   oracle.py selftest
# IN is processed whole, as consecutive data units from DUN dun-base.
# Exit status 0 on success, 1 on a usage or data error.

import argparse
import hashlib
import sys

from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BACKEND = default_backend()


def le_bytes(n, size):
    return (n % (1 << (8 * size))).to_bytes(size, "little")


def ecb(algorithm, key, data, encrypt):
    c = Cipher(algorithm(key), modes.ECB(), backend=BACKEND)
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


def xts_aes(key, tweak, data, encrypt):
    c = Cipher(algorithms.AES(key), modes.XTS(tweak), backend=BACKEND)
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


def gf_double(t):
    # Multiply by alpha in GF(2^128), IEEE 1619 little-endian convention.
    n = int.from_bytes(t, "little")
    carry = n >> 127
    n = (n << 1) & ((1 << 128) - 1)
    if carry:
        n ^= 0x87
    return n.to_bytes(16, "little")


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def xts_sm4(key, tweak, data, encrypt):
    k1, k2 = key[:16], key[16:]
    t = ecb(algorithms.SM4, k2, tweak, True)
    tweaks = []
    for _ in range(len(data) // 16):
        tweaks.append(t)
        t = gf_double(t)
    masks = b"".join(tweaks)
    middle = ecb(algorithms.SM4, k1, xor(data, masks), encrypt)
    return xor(middle, masks)


def essiv(key, dun, data, encrypt):
    salt = hashlib.sha256(key).digest()
    iv = ecb(algorithms.AES, salt, le_bytes(dun, 16), True)
    c = Cipher(algorithms.AES(key), modes.CBC(iv), backend=BACKEND)
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


MODES = {
    "AES-256-XTS": (64, lambda k, dun, d, e: xts_aes(k, le_bytes(dun, 16), d, e)),
    "AES-128-CBC-ESSIV": (16, essiv),
    "SM4-XTS": (32, lambda k, dun, d, e: xts_sm4(k, le_bytes(dun, 16), d, e)),
}


def process(mode, key, data_unit_size, dun_base, data, encrypt):
    keysize, fn = MODES[mode]
    if len(key) != keysize:
        raise ValueError("%s needs a %d-byte key, got %d" % (mode, keysize, len(key)))
    if len(data) % data_unit_size:
        raise ValueError("input is not a whole number of data units")
    out = bytearray()
    for i in range(len(data) // data_unit_size):
        unit = data[i * data_unit_size:(i + 1) * data_unit_size]
        out += fn(key, dun_base + i, unit, encrypt)
    return bytes(out)


def selftest():
    # reference/upstream-blk-crypto.md section 9: one vector per mode.
    h = bytes.fromhex
    key = h("2718281828459045235360287471352662497757247093699959574966967627"
            "3141592653589793238462643383279502884197169399375105820974944592")
    pt = bytes(range(256)) * 2
    ct = process("AES-256-XTS", key, 512, 0xff, pt, True)
    assert ct[:32] == h("1c3b3a102f770386e4836c99e370cf9b"
                        "ea00803f5e482357a4ae12d414a3e63b"), ct[:32].hex()
    assert ct[-16:] == h("c4f36ffda9fcea70b9c6e693e148c151"), ct[-16:].hex()
    ct = essiv(h("06a9214036b8a15b512e03d534120006"), 0x30b49e9d42baaf3d,
               b"Single block msg", True)
    assert ct == h("fa59e75f415665c336ca6b72109f8cd4"), ct.hex()
    ct = xts_sm4(h("11111111111111111111111111111111"
                   "22222222222222222222222222222222"),
                 le_bytes(0x3333333333, 16), b"\x44" * 32, True)
    assert ct == h("a74d726c11196a32be04e001ff29d0c7"
                   "932f9f3ec29bfcb64dd17f63cbd3ea31"), ct.hex()
    for mode in MODES:
        k = bytes((7 * i + 1) % 256 for i in range(MODES[mode][0]))
        data = bytes(i % 251 for i in range(4096 * 3))
        c = process(mode, k, 4096, 2**64 - 2, data, True)
        assert process(mode, k, 4096, 2**64 - 2, c, False) == data
    print("oracle selftest: ok")


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "selftest":
        selftest()
        return 0
    p = argparse.ArgumentParser(description="blk-crypto ciphertext oracle")
    p.add_argument("op", choices=["encrypt", "decrypt"])
    p.add_argument("--mode", required=True, choices=sorted(MODES))
    p.add_argument("--key-file", required=True)
    p.add_argument("--data-unit-size", type=int, default=4096)
    p.add_argument("--dun-base", type=lambda s: int(s, 0), default=0)
    p.add_argument("input")
    p.add_argument("output")
    a = p.parse_args()
    with open(a.key_file) as f:
        key = bytes.fromhex(f.read().strip())
    with open(a.input, "rb") as f:
        data = f.read()
    out = process(a.mode, key, a.data_unit_size, a.dun_base, data,
                  a.op == "encrypt")
    with open(a.output, "wb") as f:
        f.write(out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as e:
        print("oracle: %s" % e, file=sys.stderr)
        sys.exit(1)

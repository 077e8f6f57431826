#!/usr/bin/env python3
# tests/hwkdf.py - an independent oracle for the hardware KDF of
# hardware-wrapped keys: from a raw (imported) key, the 64-byte
# AES-256-XTS inline encryption key that inline-encryption hardware
# programs into a keyslot, and the 32-byte software secret it returns
# (Linux Documentation/block/inline-encryption.rst, "Hardware-wrapped
# keys"; the KDF as xfstests src/fscrypt-crypt-util.c hw_kdf() replicates
# it, with the contexts of its fix "fscrypt-crypt-util: fix KDF contexts
# for SM8650").
#
# It uses python3-cryptography's CMAC only, never inlinecrypt's code:
#   NIST SP 800-108 KDF in counter mode, PRF = AES-256-CMAC keyed with the
#   32-byte master key; output block i (from 1) =
#     CMAC(be32(i) | 00 00 40 00 00 00 00 00 00 00 20 | 00 | context |
#          be32(output bits))
#   inline key context:  "inline encryption key" 00*6 02 43 00 82 50 00*4
#   software secret:     "raw secret" 00*9 02 17 00 80 50 00*4
# The master key is the raw key if it has 32 bytes (as xfstests imports),
# else SHA-256 of the raw key (inlinecrypt's rule for 16..64-byte imports,
# crypto/hwkm.h).
#
# Usage:
#   hwkdf.py inline-key|sw-secret|master-key --raw-key-file FILE [--out F]
#   hwkdf.py selftest
# The raw key file holds the key in hex.  The result is printed in hex, or
# written in hex to --out (mode 0600), e.g. as a --key-file for oracle.py.
# Exit status 0 on success, 1 on a usage or data error.

import argparse
import hashlib
import os
import sys

from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BACKEND = default_backend()

LABEL = bytes.fromhex("0000400000000000000020")
INLINE_KEY_CONTEXT = (b"inline encryption key" + bytes(6) +
                      bytes.fromhex("024300825000000000"))
SW_SECRET_CONTEXT = (b"raw secret" + bytes(9) +
                     bytes.fromhex("021700805000000000"))
assert len(INLINE_KEY_CONTEXT) == 36 and len(SW_SECRET_CONTEXT) == 28


def aes_256_cmac(key, msg):
    c = cmac.CMAC(algorithms.AES(key), backend=BACKEND)
    c.update(msg)
    return c.finalize()


def hw_kdf(master_key, context, out_size):
    if len(master_key) != 32:
        raise ValueError("the hardware KDF takes a 32-byte master key, got %d"
                         % len(master_key))
    if out_size % 16:
        raise ValueError("output size must be a multiple of 16")
    out = b""
    for i in range(out_size // 16):
        info = ((i + 1).to_bytes(4, "big") + LABEL + b"\0" + context +
                (out_size * 8).to_bytes(4, "big"))
        out += aes_256_cmac(master_key, info)
    return out


def master_key(raw_key):
    if not 16 <= len(raw_key) <= 64:
        raise ValueError("a raw key must be 16 to 64 bytes, got %d"
                         % len(raw_key))
    if len(raw_key) == 32:
        return raw_key
    return hashlib.sha256(raw_key).digest()


def inline_key(raw_key):
    return hw_kdf(master_key(raw_key), INLINE_KEY_CONTEXT, 64)


def sw_secret(raw_key):
    return hw_kdf(master_key(raw_key), SW_SECRET_CONTEXT, 32)


def cmac_by_hand(key, msg):
    # NIST SP 800-38B from AES-ECB, to check cryptography's CMAC.
    def aes(block):
        c = Cipher(algorithms.AES(key), modes.ECB(), backend=BACKEND)
        e = c.encryptor()
        return e.update(block) + e.finalize()

    def dbl(b):
        n = int.from_bytes(b, "big") << 1
        if n >> 128:
            n = (n & ((1 << 128) - 1)) ^ 0x87
        return n.to_bytes(16, "big")

    k1 = dbl(aes(bytes(16)))
    k2 = dbl(k1)
    blocks = [msg[i:i + 16] for i in range(0, len(msg), 16)] or [b""]
    last = blocks[-1]
    if len(last) == 16:
        last = bytes(a ^ b for a, b in zip(last, k1))
    else:
        last = last + b"\x80" + bytes(15 - len(last))
        last = bytes(a ^ b for a, b in zip(last, k2))
    x = bytes(16)
    for b in blocks[:-1] + [last]:
        x = aes(bytes(a ^ c for a, c in zip(x, b)))
    return x


def selftest():
    h = bytes.fromhex
    # NIST SP 800-38B, appendix D.3 (AES-256), examples 9 and 10.
    key = h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    assert aes_256_cmac(key, b"") == h("028962f61b7bf89efc6b551f4667d983")
    assert aes_256_cmac(key, h("6bc1bee22e409f96e93d7e117393172a")) == \
        h("28a7023f452e8f82bd4bf28d8c37c35c")
    # The CMAC by hand agrees, at every length the KDF uses and others.
    for n in range(0, 100):
        k = bytes((7 * i + n) % 256 for i in range(32))
        m = bytes((3 * i + 5 * n) % 256 for i in range(n))
        assert cmac_by_hand(k, m) == aes_256_cmac(k, m), n
    # Sizes and the mapping of raw keys.
    raw32 = bytes(range(32))
    assert master_key(raw32) == raw32
    raw64 = bytes(range(64))
    assert master_key(raw64) == hashlib.sha256(raw64).digest()
    assert len(inline_key(raw32)) == 64 and len(sw_secret(raw32)) == 32
    # The two halves of the inline key differ (XTS forbids equal ones), and
    # the two derivations are independent.
    ik = inline_key(raw32)
    assert ik[:32] != ik[32:] and sw_secret(raw32) != ik[:32]
    for bad in (15, 65):
        try:
            master_key(bytes(bad))
        except ValueError:
            pass
        else:
            raise AssertionError("accepted a %d-byte raw key" % bad)
    print("hwkdf selftest: ok")


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "selftest":
        selftest()
        return 0
    p = argparse.ArgumentParser(description="hardware-wrapped key KDF oracle")
    p.add_argument("what", choices=["inline-key", "sw-secret", "master-key"])
    p.add_argument("--raw-key-file", required=True)
    p.add_argument("--out")
    a = p.parse_args()
    with open(a.raw_key_file) as f:
        raw = bytes.fromhex(f.read().strip())
    fn = {"inline-key": inline_key, "sw-secret": sw_secret,
          "master-key": master_key}[a.what]
    out = fn(raw).hex()
    if a.out:
        fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(out + "\n")
    else:
        print(out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as e:
        print("hwkdf: %s" % e, file=sys.stderr)
        sys.exit(1)

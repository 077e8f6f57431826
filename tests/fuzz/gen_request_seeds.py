#!/usr/bin/env python3
# tests/fuzz/gen_request_seeds.py - write the seed corpus of fuzz_request.
#
#   tests/fuzz/gen_request_seeds.py [DIR]   (default: corpus/request here)
#
# The input format is documented at the top of fuzz_request.c; this
# script spells it out as Python, one function per operation, so the
# seeds are meaningful request sequences rather than random bytes.
import os
import struct
import sys

KiB = 1024
EXPORT_SIZE = 192 * KiB

# Flags in the opcode's high bits.
FUA, NOUNMAP, ROUND512, ROUND4K = 0x10, 0x20, 0x40, 0x80

# Variant bits (byte 0).
PCF, E1_ALL, E2_TWO, K3_ESSIV, K2_DUN32 = 0x01, 0x02, 0x04, 0x08, 0x10

# MAP's DUN argument: the key's limit (2^(8 * DUN bytes), at most 2^64)
# minus n.
def below_limit(n):
    return 0x8000 | n


def u24(v):
    return struct.pack('<I', v)[:3]


def rng(off, length):
    return u24(off) + u24(length)


def read(off, length, flags=0):
    return bytes([0 | flags]) + rng(off, length)


def write(off, length, seed=1, flags=0):
    return bytes([1 | flags]) + rng(off, length) + bytes([seed])


def zero(off, length, flags=0):
    return bytes([2 | flags]) + rng(off, length)


def trim(off, length, flags=0):
    return bytes([3 | flags]) + rng(off, length)


def flush():
    return bytes([4])


def map_(off, length, key, dun=0, flags=0):
    return bytes([5 | flags]) + rng(off, length) + bytes([key]) + \
        struct.pack('<H', dun)


def evict(key, where):
    # key 0..2 is k1..k3; where: 0 top, 1..4 L0..L3, 5 the fallback
    return bytes([6, key, where])


def reset(engine):
    return bytes([7, engine])


def fault(engine, n):
    return bytes([8, engine, n])


def reload(legs, flags=0):
    # flags 0x10: do not wait for the resync
    return bytes([9 | flags, legs])


def check(off):
    return bytes([10]) + u24(off)


def check_all():
    return b''.join(check(o) for o in range(0, EXPORT_SIZE, 4 * KiB))


# The initial map: 16K..80K k1/4096, 80K..88K plain, 88K..136K k2/512,
# 136K..168K k3 (512 or 4096), the rest plain.
def fill():
    """Aligned writes into every range and gap, across target bounds."""
    return (write(0, 16 * KiB, 1) + write(16 * KiB, 64 * KiB, 2) +
            write(80 * KiB, 8 * KiB, 3) + write(88 * KiB, 48 * KiB, 4) +
            write(136 * KiB, 32 * KiB, 5) + write(168 * KiB, 24 * KiB, 6))


def seeds():
    s = {}
    s['rw-basic'] = bytes([0]) + fill() + read(0, EXPORT_SIZE) + check_all()
    for v in range(32):
        s['variant-%02d' % v] = (bytes([v]) + fill() +
                                 read(60 * KiB, 32 * KiB) +
                                 read(120 * KiB, 24 * KiB) + check_all())
    s['unaligned'] = bytes([0]) + (
        fill() +
        write(16 * KiB + 512, 4 * KiB, 9) +      # k1: EINVAL
        write(80 * KiB + 3, 100, 9) +            # plain gap: fine
        write(88 * KiB + 512, 1024, 9) +         # k2/512: fine
        write(88 * KiB + 100, 512, 9) +          # k2: EINVAL
        read(16 * KiB, 100) +                    # EINVAL
        read(79 * KiB, 2 * KiB) +                # ends in the gap: EINVAL
        read(76 * KiB, 12 * KiB) +               # k1 + gap: fine
        zero(17 * KiB, 4 * KiB) +                # EINVAL
        trim(EXPORT_SIZE - 512, 1024) +          # past the end: EINVAL
        write(EXPORT_SIZE + 4 * KiB, 512, 1) +   # past the end: EINVAL
        read(0, EXPORT_SIZE) + check_all())
    s['zero-trim'] = bytes([PCF]) + (
        fill() + zero(20 * KiB, 8 * KiB, FUA) +
        trim(90 * KiB, 3 * KiB) + zero(81 * KiB + 7, 300, NOUNMAP) +
        trim(170 * KiB + 1, 5000, FUA) + flush() +
        read(0, EXPORT_SIZE) + check_all() +
        write(20 * KiB, 4 * KiB, 7) + check(20 * KiB) +
        read(16 * KiB, 16 * KiB))
    s['map-changes'] = bytes([E1_ALL]) + (
        fill() +
        map_(80 * KiB, 8 * KiB, 1, 100) +        # the gap gets k1
        write(80 * KiB, 8 * KiB, 11) + check(80 * KiB) +
        map_(16 * KiB, 8 * KiB, 0) +             # plain hole in k1
        read(16 * KiB, 8 * KiB) + write(16 * KiB, 8 * KiB, 12) +
        map_(90 * KiB, 4 * KiB, 3, 7) +          # k3 inside k2: split
        write(90 * KiB, 4 * KiB, 13) + read(88 * KiB, 8 * KiB) +
        map_(100 * KiB + 1, 10, 0) +             # misaligns k2: EINVAL
        map_(96 * KiB, 8 * KiB, 2, 65530) +      # k2 DUN overflow: EINVAL
        map_(96 * KiB, 2 * KiB, 2, 65532) +      # just fits
        write(96 * KiB, 2 * KiB, 14) + check(96 * KiB) +
        map_(0, 0, 1) +                          # empty: EINVAL
        map_(0, EXPORT_SIZE, 0) +                # all plain
        read(0, EXPORT_SIZE) + check_all() +
        map_(0, EXPORT_SIZE, 1, 0) + write(0, EXPORT_SIZE, 15) +
        read(0, EXPORT_SIZE) + check_all())
    s['evict-reset'] = bytes([E2_TWO]) + (
        fill() +
        b''.join(evict(k, w) for k in range(3) for w in range(6)) +
        read(0, EXPORT_SIZE) + reset(0) + reset(1) + reset(2) +
        read(0, EXPORT_SIZE) + write(88 * KiB, 48 * KiB, 21) +
        evict(1, 0) + read(88 * KiB, 48 * KiB) + check_all())
    s['keyslot-pressure'] = bytes([K3_ESSIV]) + (
        b''.join(write(o, 4 * KiB, o // KiB) +
                 read(o, 4 * KiB) for o in range(0, EXPORT_SIZE, 12 * KiB)) +
        b''.join(read(o, 8 * KiB) for o in range(EXPORT_SIZE - 8 * KiB, 0,
                                                  -16 * KiB)) + check_all())
    s['faults'] = bytes([PCF | E1_ALL]) + (
        fill() + fault(1, 1) + write(64 * KiB, 16 * KiB, 31) +
        read(64 * KiB, 16 * KiB) + fault(0, 3) +
        write(128 * KiB, 8 * KiB, 32) + read(128 * KiB, 8 * KiB) +
        reset(0) + read(0, EXPORT_SIZE) + reload(0) +
        read(0, EXPORT_SIZE) + check_all())
    s['reload'] = bytes([0]) + (
        fill() + reload(2) + read(128 * KiB, 64 * KiB) + check_all() +
        write(130 * KiB, 8 * KiB, 41) + reload(3) + check_all() +
        reload(1) + read(128 * KiB, 64 * KiB) + reload(0) +
        write(128 * KiB, 64 * KiB, 42) + check_all())
    s['reload-nowait'] = bytes([E1_ALL]) + (
        fill() + reload(2, FUA) + write(128 * KiB, 64 * KiB, 71) +
        read(128 * KiB, 64 * KiB) + reload(3, FUA) +
        write(132 * KiB, 8 * KiB, 72) + zero(140 * KiB, 4 * KiB) +
        read(128 * KiB, 64 * KiB) + reload(0) + check_all() +
        read(0, EXPORT_SIZE))
    s['reload-pcf'] = bytes([PCF | E2_TWO]) + (
        fill() + reload(3) + check_all() + reload(1) + reload(0) +
        read(0, EXPORT_SIZE) + check_all())
    s['dun-carry'] = bytes([K2_DUN32 | PCF]) + (
        fill() +
        map_(88 * KiB, 48 * KiB, 2, below_limit(20)) +  # crosses 2^64
        write(88 * KiB, 48 * KiB, 51) + read(88 * KiB, 48 * KiB) +
        check_all() +
        map_(96 * KiB, 8 * KiB, 0) +                     # cut: right piece
        write(104 * KiB, 16 * KiB, 52) + check_all())    # starts past 2^64
    s['dun-limit'] = bytes([E1_ALL]) + (
        map_(16 * KiB, 64 * KiB, 1, below_limit(16)) +   # k1: fits exactly
        write(16 * KiB, 64 * KiB, 61) + check_all() +
        map_(16 * KiB, 68 * KiB, 1, below_limit(16)) +   # one unit too many
        map_(136 * KiB, 8 * KiB, 3, below_limit(16)) +   # k3: 4 DUN bytes
        write(136 * KiB, 8 * KiB, 62) + check(136 * KiB) +
        map_(88 * KiB, 4 * KiB, 2, below_limit(7)) +     # k2: 2 bytes, 8
        read(0, EXPORT_SIZE))
    s['random-offsets'] = bytes([PCF]) + (
        write(123456, 7890, 1) + write(65535, 70000, 2) +
        write(4096, 4096, 3, ROUND4K) + write(1000, 5000, 4, ROUND512) +
        zero(150000, 20000, ROUND512) + read(0, EXPORT_SIZE) +
        read(0xffffff, 0xffffff) + check(100000) + check(190000))
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(here, 'corpus', 'request')
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
# tests/memscan.py - find byte patterns in the memory of a running process
# (as root, or as its user where ptrace rules allow), and say for each hit
# whether it lies in locked memory.
#
#   memscan.py PID NAME=HEX...      scan for each pattern, given in hex
#
# The process is stopped (SIGSTOP) while it is read, so that the picture
# is consistent, and continued afterwards.  The pages of every readable
# mapping that are in memory or swap (/proc/PID/pagemap) are read through
# /proc/PID/mem; pages never touched hold nothing.  Mappings larger than
# 1 GiB (the shadow memory of AddressSanitizer: metadata, never data) and
# [vvar]/[vsyscall] are skipped, and listed.  A mapping is "locked" when /proc/PID/smaps
# gives it a non-zero Locked: (mlock).
#
# Prints one JSON object: {"hits": {NAME: [{"addr", "mapping", "locked"}]},
# "scanned_bytes", "skipped", "locked_kib"}.
import json
import os
import signal
import struct
import sys

SKIP_LARGER = 1 << 30
CHUNK = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def mappings(pid):
    """[(start, end, perms, name, locked_kib)] from /proc/PID/smaps."""
    out = []
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
                lo, hi = parts[0].split("-")
                cur = [int(lo, 16), int(hi, 16), parts[1],
                       parts[5] if len(parts) > 5 else "", 0]
                out.append(cur)
            elif parts[0] == "Locked:" and cur is not None:
                cur[4] = int(parts[1])
    return out


def present_runs(pagemap_fd, lo, hi):
    """[(start, end)] of the pages of [lo, hi) that are in memory or in
    swap (/proc/PID/pagemap bits 63 and 62), widened by a page on each
    side so that a pattern ending in zero bytes is still found at the edge
    of a run (a page never touched reads as zeros)."""
    npages = (hi - lo) // PAGE
    runs = []
    start = None
    for first in range(0, npages, 65536):
        n = min(65536, npages - first)
        raw = os.pread(pagemap_fd, n * 8, (lo // PAGE + first) * 8)
        for i, e in enumerate(struct.iter_unpack("<Q", raw)):
            addr = lo + (first + i) * PAGE
            if e[0] & (3 << 62):
                if start is None:
                    start = addr
            elif start is not None:
                runs.append((start, addr))
                start = None
    if start is not None:
        runs.append((start, hi))
    return [(max(lo, a - PAGE), min(hi, b + PAGE)) for a, b in runs]


def scan(pid, patterns):
    maps = mappings(pid)
    hits = {name: [] for name in patterns}
    skipped = []
    scanned = 0
    fd = os.open("/proc/%d/mem" % pid, os.O_RDONLY)
    pm = os.open("/proc/%d/pagemap" % pid, os.O_RDONLY)
    try:
        for lo, hi, perms, name, locked in maps:
            if perms[0] != "r" or name in ("[vvar]", "[vsyscall]",
                                           "[vvar_vclock]"):
                continue
            if hi - lo > SKIP_LARGER:
                skipped.append("%x-%x %s" % (lo, hi, name))
                continue
            for a, b in present_runs(pm, lo, hi):
                data = bytearray()
                for off in range(a, b, CHUNK):
                    n = min(CHUNK, b - off)
                    try:
                        data += os.pread(fd, n, off)
                    except OSError:
                        data += bytes(n)   # unreadable: nothing there
                scanned += len(data)
                for pname, pat in patterns.items():
                    i = data.find(pat)
                    while i != -1:
                        hits[pname].append(dict(addr="%x" % (a + i),
                                                mapping=name or "[anon]",
                                                locked=locked > 0,
                                                mapping_range="%x-%x" %
                                                (lo, hi)))
                        i = data.find(pat, i + 1)
    finally:
        os.close(pm)
        os.close(fd)
    locked_kib = sum(m[4] for m in maps)
    return dict(hits=hits, scanned_bytes=scanned, skipped=skipped,
                locked_kib=locked_kib)


def main():
    pid = int(sys.argv[1])
    patterns = {}
    for arg in sys.argv[2:]:
        name, hexval = arg.split("=", 1)
        patterns[name] = bytes.fromhex(hexval)
    os.kill(pid, signal.SIGSTOP)
    try:
        result = scan(pid, patterns)
    finally:
        os.kill(pid, signal.SIGCONT)
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()

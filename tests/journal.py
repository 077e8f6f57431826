#!/usr/bin/env python3
# tests/journal.py - a journaling NBD writer for crash-recovery tests, and
# the verifier that checks what it journaled after the server was killed.
#
#   journal.py write JOURNAL-DIR ITERATION URI...
#       For every URI, THREADS threads (one NBD connection each) write
#       self-describing 4096-byte blocks into their own region of the
#       export, one request at a time (1 to 8 blocks, 1 in 5 with FUA),
#       and FLUSH every few writes.  Each thread appends to its own
#       journal, and only ever after the event:
#         I exp start count seq   before a write is sent (issued)
#         A exp start count seq   after a plain write returned (acked)
#         D exp start count seq   after its FLUSH, or its FUA write,
#                                 returned (durable)
#       Runs until killed (it is meant to be killed with the server).
#
#   journal.py verify JOURNAL-DIR URI...
#       Reads every block of every export and checks, against all the
#       journals of every iteration so far (run it only when no writer is
#       left: the journals it has read are summed up in JOURNAL-DIR/state
#       and not read again):
#         - every block journaled durable reads back with that sequence
#           number or a later one that was issued (never an older one,
#           never zeros);
#         - every block is zeros (never written) or one whole, intact
#           pattern of its own block and export: no data unit is half old
#           and half new, acknowledged or not;
#         - a block read twice (a mirror serves the two reads from its two
#           legs in turn) is stable when its last write was durable.
#       Prints counts; exits 1 on any violation.
#
# A block: magic, export, block number, sequence number, a BLAKE2b digest
# of the whole block, then bytes derived from (export, block, seq).  The
# sequence numbers of one block only grow: a block belongs to one thread,
# which has one request in flight, and each iteration starts higher.
import glob
import hashlib
import os
import pickle
import random
import struct
import sys
import threading
import time

import nbd

BS = 4096
MAGIC = b"ICJRNL01"
HDR = struct.Struct("<8sIIQQ")    # magic, export, pad, block, seq
THREADS = 4
MAX_BLOCKS = 8
READ_CHUNK = 1 << 20


def body(exp, blk, seq):
    seed = struct.pack("<IQQ", exp, blk, seq)
    return hashlib.shake_128(seed).digest(BS - HDR.size - 32)


def make_block(exp, blk, seq):
    head = HDR.pack(MAGIC, exp, 0, blk, seq)
    rest = body(exp, blk, seq)
    digest = hashlib.blake2b(head + rest, digest_size=32).digest()
    return head + digest + rest


def classify(buf, exp, blk):
    """0 for zeros, the sequence number of an intact block, else None."""
    if buf.count(0) == BS:
        return 0
    magic, e, _, b, seq = HDR.unpack_from(buf)
    if magic != MAGIC or e != exp or b != blk:
        return None
    head = buf[:HDR.size]
    digest = buf[HDR.size:HDR.size + 32]
    rest = buf[HDR.size + 32:]
    if hashlib.blake2b(head + rest, digest_size=32).digest() != digest:
        return None
    if rest != body(exp, blk, seq):
        return None
    return seq


def writer(jdir, iteration, exp, uri, tid, nblocks):
    h = nbd.NBD()
    h.connect_uri(uri)
    region = nblocks // THREADS
    first = tid * region
    rng = random.Random((iteration << 16) | (exp << 8) | tid)
    j = open(os.path.join(jdir, "j.%d.%d.%d" % (iteration, exp, tid)),
             "w", buffering=1)
    counter = 0
    pending = []
    until_flush = rng.randint(1, 6)
    while True:
        n = rng.randint(1, MAX_BLOCKS)
        start = first + rng.randrange(region - n + 1)
        counter += 1
        seq = (iteration << 32) | counter
        data = b"".join(make_block(exp, start + i, seq) for i in range(n))
        fua = rng.random() < 0.2
        j.write("I %d %d %d %d\n" % (exp, start, n, seq))
        j.flush()
        try:
            h.pwrite(data, start * BS,
                     nbd.CMD_FLAG_FUA if fua else 0)
        except nbd.Error:
            return              # the server is gone: journal nothing more
        if fua:
            j.write("D %d %d %d %d\n" % (exp, start, n, seq))
        else:
            j.write("A %d %d %d %d\n" % (exp, start, n, seq))
            pending.append((start, n, seq))
        j.flush()
        until_flush -= 1
        if until_flush == 0:
            try:
                h.flush()
            except nbd.Error:
                return
            for (s, c, q) in pending:
                j.write("D %d %d %d %d\n" % (exp, s, c, q))
            j.flush()
            pending = []
            until_flush = rng.randint(1, 6)


def cmd_write(jdir, iteration, uris):
    threads = []
    for exp, uri in enumerate(uris):
        h = nbd.NBD()
        h.connect_uri(uri)
        nblocks = h.get_size() // BS
        h.shutdown()
        for tid in range(THREADS):
            t = threading.Thread(target=writer, daemon=True,
                                 args=(jdir, iteration, exp, uri, tid,
                                        nblocks))
            t.start()
            threads.append(t)
    print("writing", flush=True)
    for t in threads:
        t.join()


def load_journals(jdir):
    """Per (exp, blk): the durable seq, the set of issued seqs not older
    than it, the highest acked seq.  Journals of earlier runs, which do
    not change any more, are summed up in jdir/state (so that each run
    parses only the new ones)."""
    state = os.path.join(jdir, "state")
    if os.path.exists(state):
        with open(state, "rb") as f:
            durable, issued, acked, lines, done = pickle.load(f)
    else:
        durable, issued, acked, lines, done = {}, {}, {}, 0, set()
    for path in sorted(glob.glob(os.path.join(jdir, "j.*"))):
        name = os.path.basename(path)
        if name in done:
            continue
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break       # torn by the kill: not yet happened
                kind, e, s, c, q = line.split()
                e, s, c, q = int(e), int(s), int(c), int(q)
                lines += 1
                for b in range(s, s + c):
                    k = (e, b)
                    if kind == "I":
                        issued.setdefault(k, set()).add(q)
                    elif kind == "D":
                        durable[k] = max(durable.get(k, 0), q)
                    else:
                        acked[k] = max(acked.get(k, 0), q)
        done.add(name)
    # Sequence numbers older than the durable one can never be read back
    # legitimately: forget them.
    for k, d in durable.items():
        issued[k] = {q for q in issued[k] if q >= d}
    with open(state + ".new", "wb") as f:
        pickle.dump((durable, issued, acked, lines, done), f)
    os.rename(state + ".new", state)
    return durable, issued, acked, lines


def read_all(h, size):
    out = bytearray()
    for off in range(0, size, READ_CHUNK):
        out += h.pread(min(READ_CHUNK, size - off), off)
    return bytes(out)


def cmd_verify(jdir, uris):
    durable, issued, acked, lines = load_journals(jdir)
    errors = []
    stats = []
    for exp, uri in enumerate(uris):
        st = dict(blocks=0, written=0, durable=0, newer_than_durable=0,
                  acked_unflushed_kept=0, acked_unflushed_lost=0,
                  unstable=0)
        stats.append(st)
        h = nbd.NBD()
        h.connect_uri(uri)
        size = h.get_size()
        # Two whole reads: a mirror serves them from its legs in turn.
        reads = [read_all(h, size), read_all(h, size)]
        h.shutdown()
        for blk in range(size // BS):
            k = (exp, blk)
            d = durable.get(k, 0)
            iss = issued.get(k, set())
            seen = []
            for r in reads:
                v = classify(r[blk * BS:(blk + 1) * BS], exp, blk)
                seen.append(v)
                if v is None:
                    errors.append("export %d block %d: neither zeros nor one "
                                  "intact pattern (torn or corrupt)" %
                                  (exp, blk))
                elif v == 0 and d:
                    errors.append("export %d block %d: reads as zeros, but "
                                  "seq %#x was durable" % (exp, blk, d))
                elif v and v not in iss:
                    errors.append("export %d block %d: seq %#x was never "
                                  "written there" % (exp, blk, v))
                elif v and v < d:
                    errors.append("export %d block %d: reads seq %#x, older "
                                  "than durable seq %#x" % (exp, blk, v, d))
            st["blocks"] += 1
            if seen[0]:
                st["written"] += 1
            if d:
                st["durable"] += 1
            if seen[0] and seen[0] > d:
                st["newer_than_durable"] += 1
            a = acked.get(k, 0)
            if a > d and seen[0] is not None:
                if seen[0] >= a:
                    st["acked_unflushed_kept"] += 1
                else:
                    st["acked_unflushed_lost"] += 1
            if seen[0] != seen[1]:
                # Stable is a must when nothing after the durable write
                # was ever issued; else report it (a mirror without a
                # dirty-region log cannot know which legs differ).
                if iss and max(iss) == d:
                    errors.append("export %d block %d: reads %s then %s, "
                                  "but its last write %#x was durable" %
                                  (exp, blk, hex(seen[0] or 0),
                                    hex(seen[1] or 0), d))
                else:
                    st["unstable"] += 1
    print("journal_lines=%d" % lines)
    for exp, st in enumerate(stats):
        print("export=%d %s" % (exp, " ".join("%s=%d" % kv
                                              for kv in st.items())))
    for e in errors[:50]:
        print("FAIL:", e)
    if errors:
        print("FAIL: %d violation(s)" % len(errors))
        sys.exit(1)


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "write":
        cmd_write(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "verify":
        cmd_verify(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: journal.py write DIR ITERATION URI... | "
                 "verify DIR URI...")


if __name__ == "__main__":
    main()

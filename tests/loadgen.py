#!/usr/bin/env python3
# tests/loadgen.py - a verifying NBD load generator with a watchdog, for
# the load and fault tests.  Used as a module (test-faults-load.sh) and
# from the command line (test-load.sh):
#
#   loadgen.py [--seconds S] [--conns-per-export N] [--watchdog S]
#              [--json FILE] [--seed N] [--zero-first] URI...
#
# Each worker thread has its own NBD connection and its own region of one
# export (so it knows exactly what every block must hold), and issues one
# request at a time: reads (verified), writes, and now and then FLUSH,
# TRIM and WRITE_ZEROES, of 1 to 16 blocks of 4096 bytes.  A block holds a
# 32-byte header (export tag, block, version) repeated; version 0 is
# zeros, what a fresh export holds (--zero-first zeroes each region first,
# for an export written before).  A write that fails leaves the block
# holding the old or the new version; both are accepted until the next
# successful write.
#
# The watchdog fails the run (exit 3, after printing every stuck request)
# if any request has been waiting longer than --watchdog seconds.  At the
# end every block of every worker's region is read back and checked.
# Exit status: 0, or 1 for errors/verify failures, 3 for a stuck request.
import argparse
import errno
import hashlib
import json
import os
import random
import struct
import sys
import threading
import time

import nbd

BS = 4096
HDR = struct.Struct("<8sQQQ")


def tag_of(name):
    return hashlib.sha256(name.encode()).digest()[:8]


def pattern(tag, blk, ver):
    if ver == 0:
        return bytes(BS)
    return HDR.pack(tag, blk, ver, ~blk & (2**64 - 1)) * (BS // HDR.size)


def version_of(tag, blk, buf):
    """The version a block holds, or None if it is no valid block here."""
    if buf.count(0) == BS:
        return 0
    t, b, v, nb = HDR.unpack_from(buf)
    if t != tag or b != blk or v == 0 or buf != pattern(tag, blk, v):
        return None
    return v


class Worker(threading.Thread):
    """One connection, one region [first, first + nblocks) of an export."""

    def __init__(self, name, uri, first, nblocks, seed, retries=0,
                 retry_delay=0.001, strict_failed_writes=False,
                 max_blocks=16, write_ratio=0.45, flush_ratio=0.02,
                 trim_ratio=0.02, zero_ratio=0.02, think=0.0,
                 record_events=False, zero_first=False):
        threading.Thread.__init__(self, name=name, daemon=True)
        self.uri = uri
        self.first = first
        self.nblocks = nblocks
        self.rng = random.Random(seed)
        self.tag = tag_of(uri.split("?")[0])
        self.retries = retries
        self.retry_delay = retry_delay
        self.strict_failed_writes = strict_failed_writes
        self.max_blocks = min(max_blocks, nblocks)
        self.ratios = (write_ratio, flush_ratio, trim_ratio, zero_ratio)
        self.think = think
        self.zero_first = zero_first
        self.model = {}             # blk -> set of acceptable versions
        self.version = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.h = None
        # Counters (read by other threads under self.lock).
        self.ok = {"read": 0, "write": 0, "flush": 0, "trim": 0, "zero": 0}
        self.failed = {}            # (op, errno) -> count, every attempt
        self.gave_up = {}           # (op, errno) -> count, after retries
        self.retried = 0
        self.events = [] if record_events else None  # (t0, dt, op, errno)
        self.bytes = 0
        self.verify_errors = []
        self.latencies = []         # seconds, one per attempt
        self.busy = None            # (op, offset, len, since) of the attempt
        self.fatal = None

    # -- requests --------------------------------------------------------

    def _attempt(self, op, fn, offset, length):
        """Run fn() with the watchdog watching; retry errors as told.
        Return True on success, False on a (final) error."""
        tries = 0
        while True:
            t0 = time.monotonic()
            self.busy = (op, offset, length, t0)
            try:
                fn()
                err = None
            except nbd.Error as e:
                err = e.errnum or 0
            finally:
                self.busy = None
            dt = time.monotonic() - t0
            with self.lock:
                self.latencies.append(dt)
                if self.events is not None:
                    self.events.append((t0, dt, op, err))
                if err is None:
                    self.ok[op] += 1
                    return True
                self.failed[(op, err)] = self.failed.get((op, err), 0) + 1
            if tries < self.retries and err == errno.EIO:
                tries += 1
                with self.lock:
                    self.retried += 1
                time.sleep(self.retry_delay)
                continue
            with self.lock:
                self.gave_up[(op, err)] = self.gave_up.get((op, err), 0) + 1
            return False

    def _check(self, start, data, what):
        for i in range(len(data) // BS):
            blk = start + i
            v = version_of(self.tag, blk, data[i * BS:(i + 1) * BS])
            ok = self.model.get(blk, {0})
            if v is None or v not in ok:
                msg = ("%s: %s block %d: holds %s, expected one of %s" %
                       (self.name, what, blk,
                        "garbage" if v is None else "version %d" % v,
                        sorted(ok)))
                with self.lock:
                    self.verify_errors.append(msg)

    def one(self):
        rng = self.rng
        n = rng.randint(1, self.max_blocks)
        start = self.first + rng.randrange(self.nblocks - n + 1)
        off = start * BS
        length = n * BS
        x = rng.random()
        w, f, t, z = self.ratios
        h = self.h
        if x < w:
            self.version += 1
            ver = self.version
            data = b"".join(pattern(self.tag, start + i, ver)
                            for i in range(n))
            old = {b: self.model.get(b, {0}) for b in range(start, start + n)}
            fua = rng.random() < 0.1
            if self._attempt("write",
                             lambda: h.pwrite(data, off,
                                               nbd.CMD_FLAG_FUA if fua else 0),
                             off, length):
                for b in range(start, start + n):
                    self.model[b] = {ver}
                self.bytes += length
            else:
                for b in range(start, start + n):
                    self.model[b] = old[b] | {ver}
                if self.strict_failed_writes:
                    # A failed write must have changed nothing at all.
                    got = []
                    if self._attempt("read",
                                     lambda: got.append(h.pread(length,
                                                                 off)),
                                     off, length):
                        for b in range(start, start + n):
                            self.model[b] = old[b]
                        self._check(start, got[0], "after a failed write")
                        for b in range(start, start + n):
                            self.model[b] = old[b] | {ver}
        elif x < w + f:
            self._attempt("flush", lambda: h.flush(), 0, 0)
        elif x < w + f + t + z:
            op = "trim" if x < w + f + t else "zero"
            fn = ((lambda: h.trim(length, off)) if op == "trim"
                  else (lambda: h.zero(length, off)))
            old = {b: self.model.get(b, {0}) for b in range(start, start + n)}
            if self._attempt(op, fn, off, length):
                for b in range(start, start + n):
                    self.model[b] = {0}
            else:
                for b in range(start, start + n):
                    self.model[b] = old[b] | {0}
        else:
            got = []
            if self._attempt("read", lambda: got.append(h.pread(length,
                                                                off)),
                             off, length):
                self._check(start, got[0], "read")
                self.bytes += length

    def run(self):
        try:
            self.h = nbd.NBD()
            self.h.connect_uri(self.uri)
            if self.zero_first:
                # Whatever an earlier run left: zeros, as the model says.
                self.h.zero(self.nblocks * BS, self.first * BS)
            while not self.stop.is_set():
                self.one()
                if self.think:
                    time.sleep(self.think)
        except Exception as e:   # a bug here, not an NBD error
            self.fatal = "%s: %r" % (self.name, e)

    # -- checks ----------------------------------------------------------

    def verify_all(self, chunk_blocks=256):
        """Read the whole region back (after the worker stopped)."""
        h = self.h
        for s in range(self.first, self.first + self.nblocks, chunk_blocks):
            n = min(chunk_blocks, self.first + self.nblocks - s)
            data = h.pread(n * BS, s * BS)
            self._check(s, data, "final")

    def snapshot(self):
        with self.lock:
            return dict(ok=dict(self.ok), failed=dict(self.failed),
                        gave_up=dict(self.gave_up),
                        retried=self.retried, bytes=self.bytes,
                        verify_errors=len(self.verify_errors),
                        requests=len(self.latencies),
                        max_latency=max(self.latencies, default=0.0))


class Watchdog(threading.Thread):
    """Fail the process if any request waits longer than @limit s."""

    def __init__(self, workers, limit, on_stuck=None):
        threading.Thread.__init__(self, name="watchdog", daemon=True)
        self.workers = workers
        self.limit = limit
        self.on_stuck = on_stuck
        self.stop = threading.Event()
        self.max_wait = 0.0

    def run(self):
        while not self.stop.wait(0.2):
            now = time.monotonic()
            stuck = []
            for w in self.workers:
                b = w.busy
                if b:
                    waited = now - b[3]
                    self.max_wait = max(self.max_wait, waited)
                    if waited > self.limit:
                        stuck.append("%s: %s of %d bytes at %d waiting for "
                                     "%.1f s" % (w.name, b[0], b[2], b[1],
                                                  waited))
            if stuck:
                print("WATCHDOG: requests stuck longer than %g s:" %
                      self.limit, file=sys.stderr)
                for s in stuck:
                    print("  " + s, file=sys.stderr)
                if self.on_stuck:
                    try:
                        self.on_stuck()
                    except Exception as e:
                        print("on_stuck: %r" % e, file=sys.stderr)
                sys.stderr.flush()
                sys.stdout.flush()
                os._exit(3)


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100.0))]


def summary(workers, seconds):
    lat = []
    tot = dict(requests=0, errors=0, retried=0, bytes=0, verify_errors=0)
    by_op = {}
    failed = {}
    for w in workers:
        with w.lock:
            lat.extend(w.latencies)
            for op, c in w.ok.items():
                by_op[op] = by_op.get(op, 0) + c
            for (op, e), c in w.failed.items():
                k = "%s:%s" % (op, errno.errorcode.get(e, e))
                failed[k] = failed.get(k, 0) + c
            tot["requests"] += len(w.latencies)
            tot["errors"] += sum(w.failed.values())
            tot["retried"] += w.retried
            tot["bytes"] += w.bytes
            tot["verify_errors"] += len(w.verify_errors)
    tot["ops"] = by_op
    tot["failed"] = failed
    tot["seconds"] = seconds
    tot["requests_per_s"] = tot["requests"] / seconds if seconds else 0
    tot["mib_per_s"] = tot["bytes"] / seconds / 2**20 if seconds else 0
    tot["latency_ms"] = dict(p50=percentile(lat, 50) * 1e3,
                             p99=percentile(lat, 99) * 1e3,
                             max=max(lat, default=0) * 1e3)
    return tot


def make_workers(uris, conns_per_export, seed=1, **kw):
    """conns_per_export workers per URI, splitting each export."""
    workers = []
    for e, uri in enumerate(uris):
        h = nbd.NBD()
        h.connect_uri(uri)
        nblocks = h.get_size() // BS
        h.shutdown()
        region = nblocks // conns_per_export
        for c in range(conns_per_export):
            workers.append(Worker("e%d.c%d" % (e, c), uri, c * region,
                                  region, seed * 1000003 + e * 1009 + c,
                                  **kw))
    return workers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--conns-per-export", type=int, default=8)
    ap.add_argument("--watchdog", type=float, default=10)
    ap.add_argument("--json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--zero-first", action="store_true")
    ap.add_argument("uris", nargs="+")
    a = ap.parse_args()

    workers = make_workers(a.uris, a.conns_per_export, a.seed,
                           zero_first=a.zero_first)
    dog = Watchdog(workers, a.watchdog)
    dog.start()
    t0 = time.monotonic()
    for w in workers:
        w.start()
    time.sleep(a.seconds)
    for w in workers:
        w.stop.set()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - t0
    dog.stop.set()
    s = summary(workers, elapsed)
    for w in workers:
        w.verify_all()
        w.h.shutdown()
    s["verify_errors"] = sum(len(w.verify_errors) for w in workers)
    s["max_wait_seen_s"] = dog.max_wait
    s["connections"] = len(workers)
    fatal = [w.fatal for w in workers if w.fatal]
    print(json.dumps(s, indent=1, sort_keys=True))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1, sort_keys=True)
    for w in workers:
        for m in w.verify_errors[:5]:
            print("VERIFY:", m)
    for m in fatal:
        print("FATAL:", m)
    if s["errors"] or s["verify_errors"] or fatal:
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Chaos driver for the inlinecrypt nbdkit plugin.

usage: tests/chaos.py [--seconds N] [--threads N] [--plugin SO] [--ctl BIN]
                      [--dir DIR] [--seed N] [--asan] [--strict-nbd]
                      [--no-chaos]

A long-running integration check, not part of make check (minutes to
hours; see tests/README.md).  Run it with the Python that has the nbd
module (/usr/bin/python3 on Debian).

Starts a peer nbdkit (memory 16M, unix socket) and an inlinecrypt nbdkit
built from DIR/ic.conf (2 engines with 1 and 3 keyslots, a file leaf,
memory leaves, an nbd leaf, linear/striped/mirror devices, 4 exports with
context maps of AES-256-XTS 4096/512, Adiantum and SM4-XTS keys), then for
--seconds runs client threads (random write/read/trim/zero/flush, FUA)
checking every read against an exact model, and a chaos thread
(evict, reset, faults, remaps, key add/remove, table reloads, mirror leg
failure + re-add + wait-resync, peer kill -9 + restart).  At the end it
verifies every export and the ciphertext of the file leaf with
tests/oracle.py.  Problems are printed as "PROBLEM: ..." and the exit
status is 1 if any.
"""
import argparse
import atexit
import collections
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import nbd

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import oracle  # noqa: E402

M = 1024 * 1024
BS = 4096
LOCKCHUNK = 64 * 1024
SIZE = 16 * M
UNKNOWN = None

problems = []
plock = threading.Lock()
T0 = time.monotonic()


def log(*a):
    print("[%7.2f]" % (time.monotonic() - T0), *a, flush=True)


def problem(msg):
    with plock:
        problems.append(msg)
    log("PROBLEM:", msg)


# ---------------------------------------------------------------- keys
KEYS = {   # name: (mode, du, keybytes)
    "kx4": ("AES-256-XTS", 4096, 64),
    "kx5": ("AES-256-XTS", 512, 64),
    "ka": ("Adiantum", 4096, 32),
    "ks": ("SM4-XTS", 4096, 32),
}
DYN = {   # keys added at run time
    "dx": ("AES-256-XTS", 4096, 64),
    "ds": ("SM4-XTS", 4096, 32),
    "d5": ("AES-256-XTS", 512, 64),
}
keybytes = {}

# export: (device, [(off, len, key or None, dun_base)])
EXPORTS = {
    "elin": ("lin", [(0, 4 * M, "kx4", 0), (4 * M, 4 * M, "kx5", 0),
                     (8 * M, 4 * M, "ka", 0), (12 * M, 4 * M, None, 0)]),
    "estr": ("str", [(0, 8 * M, "ks", 0), (8 * M, 8 * M, "kx4", 5000)]),
    "emir": ("mir", [(0, 4 * M, "kx5", 77), (4 * M, 4 * M, "ks", 0)]),
    "enbd": ("r0", [(0, 8 * M, "ka", 0), (8 * M, 8 * M, "kx4", 123)]),
}
EXSIZE = {"elin": 16 * M, "estr": 16 * M, "emir": 8 * M, "enbd": 16 * M}

TABLES = {
    "lin": ["0 16384 linear f0 0", "16384 16384 linear m0 0"],
    "lin2": ["0 8192 linear f0 0", "8192 8192 linear f0 8192",
             "16384 4096 linear m0 0", "20480 12288 linear m0 4096"],
    "str": ["0 32768 striped 2 128 m1 0 m2 0"],
    "str2": ["0 16384 striped 2 128 m1 0 m2 0",
             "16384 16384 striped 2 128 m1 8192 m2 8192"],
    "mir": ["0 16384 mirror 2 f0 16384 m0 16384"],
}
# what leaves / engines each export depends on (for allowed errors)
EXP_LEAVES = {"elin": {"f0", "m0"}, "estr": {"m1", "m2"},
              "emir": {"f0", "m0"}, "enbd": {"r0"}}
LEAF_ENGINE = {"f0": "e1", "m0": "e3", "m1": "e1", "m2": "e3", "r0": "e3"}
# f0's file: on tmpfs where there is one, so that its reads of 16 KiB and
# more are decrypted out of the server's mapping of it (stack/filemap.h).
F0_PATH = [None]


def write_config(d, ctlsock, peersock):
    for name, (mode, du, n) in list(KEYS.items()) + list(DYN.items()):
        kb = bytearray(os.urandom(n))
        keybytes[name] = bytes(kb)
        path = os.path.join(d, name + ".hex")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, (bytes(kb).hex() + "\n").encode())
        os.close(fd)
    lines = []
    for name, (mode, du, n) in KEYS.items():
        lines.append("key %s mode=%s data-unit-size=%d key=+%s.hex"
                     % (name, mode, du, name))
    lines += [
        "engine e1 keyslots=1 modes=AES-256-XTS:512,4096;Adiantum:4096 program-us=50",
        "engine e3 keyslots=3 modes=AES-256-XTS:4096;SM4-XTS:4096 max-dun-bytes=8",
        "leaf f0 file=%s size=16M engine=e1" % F0_PATH[0],
        "leaf m0 memory size=16M engine=e3",
        "leaf m1 memory size=8M engine=e1",
        "leaf m2 memory size=8M engine=e3",
        "leaf r0 nbd=nbd+unix:///?socket=%s engine=e3 timeout=5" % peersock,
    ]
    for dev, opt in (("lin", ""), ("str", " options=per_child_fallback"),
                     ("mir", "")):
        lines.append("device %s%s" % (dev, opt))
        lines += ["  " + l for l in TABLES[dev]]
        lines.append("end")
    for ex, (dev, maps) in EXPORTS.items():
        lines.append("export %s device=%s block-size=4096" % (ex, dev))
        for off, ln, k, db in maps:
            if k is None:
                lines.append("  map %d %d none" % (off, ln))
            else:
                lines.append("  map %d %d key=%s dun-base=%d" % (off, ln, k, db))
        lines.append("end")
    lines.append("control socket=%s mode=0600" % ctlsock)
    path = os.path.join(d, "ic.conf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, ("\n".join(lines) + "\n").encode())
    os.close(fd)
    return path


# --------------------------------------------------------------- model
HDR = struct.Struct("<4sIQQ")   # tag, sector, version, ~version: 24 bytes


def sector_pat(tag, sec, ver):
    if ver == 0:
        return bytes(512)
    h = HDR.pack(tag, sec & 0xffffffff, ver, ~ver & (2**64 - 1))
    return (h * 22)[:512 - 16] + h[:16]


def block_data(tag, blk, ver):
    return b"".join(sector_pat(tag, blk * 8 + i, ver) for i in range(8))


def sector_ver(tag, sec, buf):
    if buf.count(0) == 512:
        return 0
    t, s, v, nv = HDR.unpack_from(buf)
    if t != tag or s != sec & 0xffffffff or nv != ~v & (2**64 - 1):
        return -1
    if buf != sector_pat(tag, sec, v):
        return -1
    return v


class Export:
    def __init__(self, name):
        self.name = name
        self.tag = name[:4].encode()
        self.nblk = EXSIZE[name] // BS
        self.model = [{0} for _ in range(self.nblk)]   # set, or None
        self.du = [4096] * self.nblk     # data unit per block (512 or 4096)
        self.maps = list(EXPORTS[name][1])
        for off, ln, k, db in self.maps:
            if k and KEYS[k][1] == 512:
                for b in range(off // BS, (off + ln) // BS):
                    self.du[b] = 512
        self.locks = [threading.Lock() for _ in range(EXSIZE[name] // LOCKCHUNK)]
        self.mlock = threading.Lock()
        self.fault_gen = 0
        self.fault_active = 0
        self.ok_after = 0.0   # errors allowed until this time
        self.sticky = False   # emir: a leg may be failed until re-added
        self.ops = collections.Counter()

    def lock_range(self, off, ln):
        a, b = off // LOCKCHUNK, (off + ln - 1) // LOCKCHUNK
        for i in range(a, b + 1):
            self.locks[i].acquire()
        return (a, b)

    def unlock_range(self, r):
        for i in range(r[0], r[1] + 1):
            self.locks[i].release()

    def fault_snapshot(self):
        return (self.fault_gen, self.fault_active > 0 or
                time.monotonic() < self.ok_after)

    def errors_allowed(self, snap):
        return (snap[1] or self.fault_active > 0 or
                self.fault_gen != snap[0] or time.monotonic() < self.ok_after)

    def check(self, off, data, why, extra_ok=None):
        """Check data read at off against the model (caller holds locks)."""
        bad = []
        for i in range(len(data) // BS):
            blk = off // BS + i
            cands = self.model[blk]
            if cands is UNKNOWN:
                continue
            if extra_ok:
                cands = cands | extra_ok
            buf = data[i * BS:(i + 1) * BS]
            vers = [sector_ver(self.tag, blk * 8 + s, buf[s * 512:(s + 1) * 512])
                    for s in range(8)]
            if self.du[blk] == 512:
                good = all(v in cands for v in vers)
            else:
                good = len(set(vers)) == 1 and vers[0] in cands
            if not good:
                bad.append((blk, vers, sorted(cands)))
        if bad:
            problem("%s: data mismatch %s at %d+%d: %d blocks, first blk %d "
                    "got %s want %s" % (self.name, why, off, len(data), len(bad),
                                        bad[0][0], bad[0][1], bad[0][2][-5:]))
            for blk, vers, c in bad:
                self.model[blk] = UNKNOWN if not c else set(c) | set(
                    v for v in vers if v > 0)
        return not bad


EXP = {}
VERSION = [0]
VLOCK = threading.Lock()


def next_version():
    with VLOCK:
        VERSION[0] += 1
        return VERSION[0]


# ---------------------------------------------------------------- server
class Servers:
    def __init__(self, a):
        self.a = a
        self.d = a.dir
        self.sock = os.path.join(self.d, "ic.sock")
        self.ctlsock = os.path.join(self.d, "ctl.sock")
        self.peersock = os.path.join(self.d, "peer.sock")
        self.pidfile = os.path.join(self.d, "ic.pid")
        self.peerpid = os.path.join(self.d, "peer.pid")
        self.env = dict(os.environ)
        self.peer_env = dict(os.environ)
        if a.asan:
            self.env["LD_PRELOAD"] = subprocess.check_output(
                ["gcc", "-print-file-name=libasan.so"], text=True).strip()
            self.env["ASAN_OPTIONS"] = "log_path=%s/asan" % a.asandir
            self.env["LSAN_OPTIONS"] = "suppressions=%s/tests/lsan.supp" % SRC
            self.env["UBSAN_OPTIONS"] = "print_stacktrace=1:log_path=%s/ubsan" % a.asandir

    def start_peer(self):
        for p in (self.peersock, self.peerpid):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        subprocess.check_call(["nbdkit", "-P", self.peerpid, "-U", self.peersock,
                               "memory", "16M"], env=self.peer_env)
        for _ in range(100):
            if os.path.exists(self.peerpid) and os.path.getsize(self.peerpid):
                break
            time.sleep(0.05)

    def peer_pid(self):
        return int(open(self.peerpid).read())

    def kill_peer(self):
        os.kill(self.peer_pid(), signal.SIGKILL)
        time.sleep(0.2)

    def start(self):
        conf = write_config(self.d, self.ctlsock, self.peersock)
        self.start_peer()
        log_path = os.path.join(self.d, "nbdkit.log")
        # nbdkit forks and exits once it serves; one that fails exits, or
        # under the sanitizer runtime may hang in exit (libp11-kit's
        # destructor): not for ever.
        try:
            rc = subprocess.call(["nbdkit", "-P", self.pidfile, "-U", self.sock,
                                  "--threads=16", "--log=stderr",
                                  self.a.plugin, "config=" + conf],
                                 env=self.env, stderr=open(log_path, "a"),
                                 timeout=120)
        except subprocess.TimeoutExpired:
            rc = "a hang"
        for _ in range(200):
            if rc != 0 or (os.path.exists(self.pidfile) and
                           os.path.getsize(self.pidfile)):
                break
            time.sleep(0.05)
        if rc != 0 or not os.path.exists(self.pidfile):
            sys.stderr.write(open(log_path).read())
            sys.exit("nbdkit did not start (%s); its log is above" % rc)
        self.pid = int(open(self.pidfile).read())
        log("nbdkit pid", self.pid, "peer pid", self.peer_pid())

    def uri(self, ex):
        return "nbd+unix:///%s?socket=%s" % (ex, self.sock)

    def ctl(self, *args, timeout=90, stdin=None):
        t = time.monotonic()
        try:
            r = subprocess.run([self.a.ctl, "-s", self.ctlsock, "--json"] +
                               list(args), capture_output=True, timeout=timeout,
                               input=stdin)
        except subprocess.TimeoutExpired:
            problem("control command %s hung > %ds" % (args, timeout))
            return None, "timeout"
        dt = time.monotonic() - t
        if dt > 30:
            problem("control command %s took %.1fs" % (args, dt))
        out = r.stdout.decode(errors="replace")
        err = r.stderr.decode(errors="replace")
        if r.returncode == 2:
            problem("control %s: usage/unreachable: %s %s" % (args, out, err))
        return r.returncode, out + err

    def rss(self):
        try:
            for l in open("/proc/%d/status" % self.pid):
                if l.startswith("VmRSS"):
                    return int(l.split()[1])
        except OSError:
            return None

    def alive(self):
        try:
            st = open("/proc/%d/stat" % self.pid).read()
        except OSError:
            return False
        return st.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------- clients
PROGFAULT = {}
STRICT_NBD = [False]
busy = {}   # thread name -> (what, since)
stop = threading.Event()
UNEXPECTED_OK_ERRNO = {5}  # EIO


class Client(threading.Thread):
    def __init__(self, srv, idx, seed):
        threading.Thread.__init__(self, name="client%d" % idx, daemon=True)
        self.srv = srv
        self.rng = random.Random(seed)
        self.h = {}
        self.count = collections.Counter()

    def handle(self, ex):
        h = self.h.get(ex)
        if h is None:
            h = nbd.NBD()
            h.connect_uri(self.srv.uri(ex))
            self.h[ex] = h
        return h

    def run(self):
        try:
            while not stop.is_set():
                self.one()
        except Exception as e:
            problem("%s crashed: %s\n%s" % (self.name, e, traceback.format_exc()))

    def do(self, ex, what, fn):
        busy[self.name] = (ex.name + " " + what, time.monotonic())
        try:
            fn()
            return None
        except nbd.Error as e:
            if e.errnum is None and not self.srv.alive():
                return -1
            if e.errnum is None:
                # connection dropped: reconnect
                self.h.pop(ex.name, None)
                return e.errnum if e.errnum is not None else -2
            return e.errnum
        finally:
            busy.pop(self.name, None)

    def one(self):
        r = self.rng
        ex = EXP[r.choice(list(EXP))]
        nb = r.choice([1, 1, 1, 2, 3, 4, 8, 16, 32])
        blk = r.randrange(0, ex.nblk - nb + 1)
        off, ln = blk * BS, nb * BS
        try:
            h = self.handle(ex.name)
        except nbd.Error as e:
            if stop.is_set():
                return
            problem("%s: connect failed: %s" % (ex.name, e))
            time.sleep(1)
            return
        x = r.random()
        if x < 0.04:
            snap = ex.fault_snapshot()
            err = self.do(ex, "flush", lambda: h.flush())
            self.count["flush"] += 1
            if err is not None and not ex.errors_allowed(snap):
                problem("%s: flush failed errno %s without a fault" % (ex.name, err))
            return
        lr = ex.lock_range(off, ln)
        try:
            snap = ex.fault_snapshot()
            if x < 0.45:
                ver = next_version()
                buf = b"".join(block_data(ex.tag, blk + i, ver) for i in range(nb))
                flags = nbd.CMD_FLAG_FUA if r.random() < 0.2 else 0
                err = self.do(ex, "write %d+%d" % (off, ln),
                              lambda: h.pwrite(buf, off, flags))
                self.count["write"] += 1
                self.account(ex, off, ln, err, snap, "write", {ver})
            elif x < 0.52 or x < 0.58:
                op = "trim" if x < 0.52 else "zero"
                flags = nbd.CMD_FLAG_FUA if r.random() < 0.2 else 0
                fn = ((lambda: h.trim(ln, off, flags)) if op == "trim" else
                      (lambda: h.zero(ln, off, flags)))
                err = self.do(ex, "%s %d+%d" % (op, off, ln), fn)
                self.count[op] += 1
                self.account(ex, off, ln, err, snap, op, {0})
            else:
                got = []
                err = self.do(ex, "read %d+%d" % (off, ln),
                              lambda: got.append(h.pread(ln, off)))
                self.count["read"] += 1
                if err is not None:
                    ex.ops["failed_read_%s" % err] += 1
                if err is None:
                    ex.check(off, got[0], "on read")
                elif not ex.errors_allowed(snap):
                    problem("%s: read %d+%d failed errno %s without a fault"
                            % (ex.name, off, ln, err))
                elif err not in UNEXPECTED_OK_ERRNO and err >= 0:
                    problem("%s: read %d+%d failed with unexpected errno %s"
                            % (ex.name, off, ln, err))
        finally:
            ex.unlock_range(lr)

    def account(self, ex, off, ln, err, snap, op, newset):
        b0, n = off // BS, ln // BS
        if err is None:
            for b in range(b0, b0 + n):
                ex.model[b] = set(newset)
            return
        ex.ops["failed_%s_%s" % (op, err)] += 1
        if not ex.errors_allowed(snap):
            problem("%s: %s %d+%d failed errno %s without a fault"
                    % (ex.name, op, off, ln, err))
        elif err not in UNEXPECTED_OK_ERRNO and err >= 0:
            problem("%s: %s %d+%d failed with unexpected errno %s"
                    % (ex.name, op, off, ln, err))
        for b in range(b0, b0 + n):
            if ex.model[b] is not UNKNOWN:
                ex.model[b] = ex.model[b] | newset
        # a failed write on the nbd leaf leaves the range undefined (the
        # protocol does not say); --strict-nbd expects old or new
        if ex.name == "enbd" and not STRICT_NBD[0]:
            for b in range(b0, b0 + n):
                ex.model[b] = UNKNOWN


# ---------------------------------------------------------------- chaos
class Chaos(threading.Thread):
    def __init__(self, srv, seed, light=False):
        threading.Thread.__init__(self, name="chaos-light" if light else "chaos",
                                  daemon=True)
        self.light = light
        self.srv = srv
        self.rng = random.Random(seed)
        self.count = collections.Counter()
        self.rcs = collections.Counter()
        self.dyn_added = set()
        self.leaf_faults = set()
        self.engine_faults = set()
        self.mirror_dirty = False

    def run(self):
        try:
            while not stop.is_set():
                self.one()
                time.sleep(self.rng.uniform(0.05, 0.4))
        except Exception as e:
            problem("chaos crashed: %s\n%s" % (e, traceback.format_exc()))

    def ctl(self, *a, ok=(0,), **kw):
        busy[self.name] = (" ".join(a), time.monotonic())
        try:
            rc, out = self.srv.ctl(*a, **kw)
        finally:
            busy.pop(self.name, None)
        self.rcs[(a[0], rc, "EBUSY" in out if out else None)] += 1
        if rc is not None and rc not in ok:
            problem("control %s failed rc %s: %s" % (a, rc, out.strip()[:300]))
        return rc, out

    def exports_of_leaf(self, leaf):
        return [EXP[e] for e in EXP if leaf in EXP_LEAVES[e]]

    def exports_of_engine(self, eng):
        leaves = {l for l, e in LEAF_ENGINE.items() if e == eng}
        return [EXP[e] for e in EXP if EXP_LEAVES[e] & leaves]

    def fault_on(self, exps):
        for ex in exps:
            if ex.name == "emir" and not ex.sticky:
                ex.sticky = True
                ex.fault_active += 1
            ex.fault_gen += 1
            ex.fault_active += 1

    def fault_off(self, exps, grace=0.0):
        for ex in exps:
            ex.fault_gen += 1
            ex.fault_active -= 1
            ex.ok_after = max(ex.ok_after, time.monotonic() + grace)

    def one(self):
        r = self.rng
        if self.light:
            act = r.choice(["evict", "evict", "reset", "progdelay", "iodelay",
                            "stats", "evict"])
            self.count[act] += 1
            getattr(self, "a_" + act)()
            return
        acts = ["evict"] * 6 + ["reset"] * 3 + ["progfault"] * 2 + \
            ["progdelay"] * 2 + ["iofault"] * 2 + ["iodelay"] * 2 + \
            ["remap"] * 3 + ["keyaddrm"] * 2 + ["reload"] * 2 + \
            ["mirrorleg"] * 1 + ["stats"] * 2 + ["peer"] * 1
        act = r.choice(acts)
        self.count[act] += 1
        getattr(self, "a_" + act)()

    def a_evict(self):
        k = self.rng.choice(list(KEYS) + list(self.dyn_added))
        dev = self.rng.choice([None, "f0", "m0", "m1", "m2", "r0", "lin", "str",
                               "mir"])
        self.ctl("evict", k, *([dev] if dev else []), ok=(0, 1))

    def a_reset(self):
        eng = self.rng.choice(["e1", "e3"])
        rc, out = self.ctl("engine", "reset", eng, ok=(0, 1))
        if rc == 1 and not (PROGFAULT.get(eng) and "reprogrammed" in out):
            problem("engine reset %s failed without a program fault: %s"
                    % (eng, out.strip()[:300]))

    def a_progfault(self):
        eng = self.rng.choice(["e1", "e3"])
        exps = self.exports_of_engine(eng)
        self.fault_on(exps)
        PROGFAULT[eng] = True
        if self.rng.random() < 0.5:
            self.ctl("fault", eng, "program-fail=%d,errno=EIO" % self.rng.randint(1, 5))
        else:
            self.ctl("fault", eng, "program-fail-prob=0.3")
        time.sleep(self.rng.uniform(0.2, 1.5))
        self.ctl("fault", eng, "clear")
        PROGFAULT[eng] = False
        self.fault_off(exps, grace=0.5)
        self.mirror_dirty = True  # a program failure can fail a mirror leg

    def a_progdelay(self):
        eng = self.rng.choice(["e1", "e3"])
        self.ctl("fault", eng, "program-delay-us=%d" % self.rng.choice([100, 2000, 20000]))
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.ctl("fault", eng, "clear")

    def a_iofault(self):
        leaf = self.rng.choice(["f0", "m0", "m1", "m2", "r0"])
        exps = self.exports_of_leaf(leaf)
        self.fault_on(exps)
        kind = self.rng.choice(["read", "write", "all"])
        self.ctl("fault", leaf, "io-error=%s" % kind,
                 "count=%d" % self.rng.randint(1, 10))
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.ctl("fault", leaf, "clear")
        self.fault_off(exps, grace=0.5)
        if leaf in ("f0", "m0"):
            self.mirror_dirty = True

    def a_iodelay(self):
        leaf = self.rng.choice(["f0", "m0", "m1", "m2", "r0"])
        self.ctl("fault", leaf, "io-delay-us=%d" % self.rng.choice([100, 1000, 10000]))
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.ctl("fault", leaf, "clear")

    def a_stats(self):
        self.ctl(self.rng.choice(["stats", "status"]))

    def a_remap(self):
        ex = EXP[self.rng.choice(list(EXP))]
        keys = list(KEYS) + list(self.dyn_added) + [None]
        k = self.rng.choice(keys)
        nmb = ex.nblk * BS // M
        start = self.rng.randrange(0, nmb) * M
        ln = self.rng.choice([1, 1, 2]) * M
        ln = min(ln, ex.nblk * BS - start)
        db = self.rng.randrange(0, 100000)
        lr = ex.lock_range(start, ln)
        try:
            for b in range(start // BS, (start + ln) // BS):
                ex.model[b] = UNKNOWN
            if k is None:
                rc, out = self.ctl("map", ex.name, str(start), str(ln), "none",
                                   ok=(0, 1))
            else:
                rc, out = self.ctl("map", ex.name, str(start), str(ln),
                                   "key=" + k, "dun-base=%d" % db, ok=(0, 1))
            if rc == 0:
                du = (KEYS.get(k) or DYN.get(k))[1] if k else 4096
                for b in range(start // BS, (start + ln) // BS):
                    ex.du[b] = du
                # update the map list (for the oracle at the end)
                nm = []
                for o, l, kk, d in ex.maps:
                    if o + l <= start or o >= start + ln:
                        nm.append((o, l, kk, d))
                        continue
                    if o < start:
                        nm.append((o, start - o, kk, d))
                    if o + l > start + ln:
                        du0 = (KEYS.get(kk) or DYN.get(kk))[1] if kk else BS
                        nm.append((start + ln, o + l - start - ln, kk,
                                   d + (start + ln - o) // du0 if kk else 0))
                nm.append((start, ln, k, db if k else 0))
                ex.maps = sorted(nm)
            else:
                if "EBUSY" not in out:
                    problem("map %s failed: %s" % ((ex.name, start, ln, k), out.strip()))
        finally:
            ex.unlock_range(lr)

    def a_keyaddrm(self):
        k = self.rng.choice(list(DYN))
        if k in self.dyn_added:
            used = any(kk == k for ex in EXP.values() for (_, _, kk, _) in ex.maps)
            rc, out = self.ctl("key", "remove", k, ok=(0, 1))
            if rc == 0:
                self.dyn_added.discard(k)
                if used:
                    problem("key remove %s succeeded while a map uses it" % k)
            elif not used or "EBUSY" not in out:
                problem("key remove %s refused: %s (used=%s)" % (k, out.strip(), used))
        else:
            mode, du, n = DYN[k]
            rc, out = self.ctl("key", "add", k, "mode=" + mode,
                               "data-unit-size=%d" % du,
                               "key=+" + os.path.join(self.srv.d, k + ".hex"))
            if rc == 0:
                self.dyn_added.add(k)

    def load_resume(self, dev, table):
        path = os.path.join(self.srv.d, "t-%s.txt" % dev)
        with open(path, "w") as f:
            f.write("\n".join(TABLES[table]) + "\n")
        rc, out = self.ctl("table", "load", dev, path,
                           *(["options=per_child_fallback"] if dev == "str" else []))
        if rc == 0:
            rc, out = self.ctl("table", "resume", dev)
        return rc

    def a_reload(self):
        dev = self.rng.choice(["lin", "str", "mir"])
        if dev == "mir":
            self.readd_mirror()
            return
        table = self.rng.choice([dev, dev + "2"])
        self.load_resume(dev, table)

    def readd_mirror(self):
        ex = EXP["emir"]
        rc = self.load_resume("mir", "mir")
        if rc == 0:
            rc, out = self.ctl("wait-resync", "mir", "timeout-ms=60000", ok=(0, 1))
            if rc == 0:
                self.mirror_dirty = False
                if ex.sticky:
                    ex.sticky = False
                    ex.fault_gen += 1
                    ex.fault_active -= 1
            elif "EIO" not in out:
                problem("wait-resync: %s" % out.strip())

    def a_mirrorleg(self):
        leaf = self.rng.choice(["f0", "m0"])
        exps = self.exports_of_leaf(leaf)
        self.fault_on(exps)
        self.ctl("fault", leaf, "io-error=all", "count=1")
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.ctl("fault", leaf, "clear")
        self.fault_off(exps, grace=0.5)
        self.ctl("status", "mir")
        self.readd_mirror()

    def a_peer(self):
        ex = EXP["enbd"]
        lr = ex.lock_range(0, ex.nblk * BS)
        try:
            self.fault_on([ex])
            self.srv.kill_peer()
            time.sleep(self.rng.uniform(0.1, 2.0))
            self.srv.start_peer()
            # a fresh memory peer reads as zeros through the leaf
            for b in range(ex.nblk):
                ex.model[b] = {0} if STRICT_NBD[0] else UNKNOWN
        finally:
            ex.unlock_range(lr)
        # reconnect backoff: up to 5 s of errors allowed
        self.fault_off([ex], grace=8.0)


# ---------------------------------------------------------------- main
def watchdog(srv, a):
    rss0 = None
    last_rss = 0
    while not stop.is_set():
        time.sleep(1)
        now = time.monotonic()
        for name, (what, since) in list(busy.items()):
            if now - since > 30 and not getattr(watchdog, "rep_" + name + what, False):
                setattr(watchdog, "rep_" + name + what, True)
                problem("HANG: %s: %s for %.0fs" % (name, what, now - since))
                try:
                    subprocess.run(["gdb", "-p", str(srv.pid), "-batch", "-ex",
                                    "thread apply all bt"], timeout=60,
                                   stdout=open(os.path.join(a.dir, "hang-bt.txt"), "a"),
                                   stderr=subprocess.STDOUT)
                except Exception:
                    pass
        if not srv.alive():
            problem("nbdkit died")
            stop.set()
        if now - last_rss > 15:
            last_rss = now
            rss = srv.rss()
            if rss0 is None:
                rss0 = rss
            log("rss %s kB (start %s)" % (rss, rss0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--threads", type=int, default=12)
    ap.add_argument("--plugin", default=os.path.join(
        SRC, "_build/plugins/.libs/nbdkit-inlinecrypt-plugin.so"))
    ap.add_argument("--ctl", default=os.path.join(SRC, "_build/server/inlinecryptctl"))
    ap.add_argument("--dir", default=None,
                    help="work directory (default: a new one in /tmp)")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--asan", action="store_true")
    ap.add_argument("--asandir", default=None,
                    help="sanitizer reports (default: DIR/asan)")
    ap.add_argument("--no-chaos", action="store_true")
    ap.add_argument("--strict-nbd", action="store_true")
    a = ap.parse_args()
    STRICT_NBD[0] = a.strict_nbd
    if a.dir is None:
        a.dir = tempfile.mkdtemp(prefix="inlinecrypt-chaos-")
    os.makedirs(a.dir, exist_ok=True)
    F0_PATH[0] = os.path.join(a.dir, "f0.img")
    if os.path.isdir("/dev/shm"):
        shm = tempfile.mkdtemp(prefix="inlinecrypt-chaos-", dir="/dev/shm")
        atexit.register(shutil.rmtree, shm, True)
        F0_PATH[0] = os.path.join(shm, "f0.img")
    # Everything but directories: a socket left by an earlier run would
    # keep nbdkit from starting.
    for f in os.listdir(a.dir):
        if not os.path.isdir(os.path.join(a.dir, f)):
            os.unlink(os.path.join(a.dir, f))
    if a.asandir is None:
        a.asandir = os.path.join(a.dir, "asan")
    if a.asan:
        os.makedirs(a.asandir, exist_ok=True)
    log("seed", a.seed, "dir", a.dir)
    for name in EXPORTS:
        EXP[name] = Export(name)
    srv = Servers(a)
    srv.start()
    rss_start = srv.rss()
    clients = [Client(srv, i, a.seed * 100 + i) for i in range(a.threads)]
    chaos = Chaos(srv, a.seed)
    chaos2 = Chaos(srv, a.seed + 7, light=True)
    wd = threading.Thread(target=watchdog, args=(srv, a), daemon=True)
    wd.start()
    for c in clients:
        c.start()
    if not a.no_chaos:
        chaos.start()
        chaos2.start()
    t_end = time.monotonic() + a.seconds
    while time.monotonic() < t_end and not stop.is_set():
        time.sleep(1)
    log("stopping chaos")
    stop.set()
    for ch in (chaos, chaos2):
        if ch.is_alive():
            ch.join(120)
            if ch.is_alive():
                problem("chaos thread did not stop in 120 s")
    for c in clients:
        c.join(60)
        if c.is_alive():
            problem("%s did not stop in 60 s" % c.name)
    for c in clients:
        for h in c.h.values():
            try:
                h.shutdown()
            except nbd.Error:
                pass
        c.h.clear()
    total = collections.Counter()
    for c in clients:
        total.update(c.count)
    log("client ops", dict(total))
    log("chaos ops", dict(chaos.count), dict(chaos2.count))
    log("chaos rcs", dict(chaos.rcs), dict(chaos2.rcs))
    for ex in EXP.values():
        log("export", ex.name, dict(ex.ops))
    log("rss start %s end %s" % (rss_start, srv.rss()))
    if not srv.alive():
        problem("nbdkit not alive at the end")
        return finish(a)
    # clear all faults and re-add the mirror
    for x in ("e1", "e3", "f0", "m0", "m1", "m2", "r0"):
        srv.ctl("fault", x, "clear")
    chaos.readd_mirror()
    rc, out = srv.ctl("status")
    open(os.path.join(a.dir, "status-end.json"), "w").write(out)
    rc, out = srv.ctl("stats")
    open(os.path.join(a.dir, "stats-end.json"), "w").write(out)
    time.sleep(6)   # nbd reconnect
    verify_all(srv)
    # stop nbdkit cleanly
    t = time.monotonic()
    os.kill(srv.pid, signal.SIGTERM)
    # 10 s, then a look at a sanitized server (below), then 60 s in all.
    while srv.alive() and time.monotonic() - t < (10 if a.asan else 60):
        time.sleep(0.1)
    if srv.alive() and a.asan and not known_exit_hang(srv):
        while srv.alive() and time.monotonic() - t < 60:
            time.sleep(0.1)
    if srv.alive() and not (a.asan and known_exit_hang(srv)):
        problem("nbdkit did not exit 60 s after SIGTERM (%s)"
                % exit_backtrace(srv))
    if srv.alive():
        while srv.alive() and time.monotonic() - t < 600:
            time.sleep(1)
        log("nbdkit exit after %.1fs" % (time.monotonic() - t))
        if srv.alive():
            os.kill(srv.pid, signal.SIGKILL)
    else:
        log("nbdkit exited in %.1fs" % (time.monotonic() - t))
    verify_file(srv)
    try:
        srv.kill_peer()
    except Exception:
        pass
    return finish(a)


def exit_backtrace(srv):
    """Every thread's stack of nbdkit, into DIR/exit-bt.txt: its path."""
    bt_path = os.path.join(srv.d, "exit-bt.txt")
    with open(bt_path, "w") as f:
        subprocess.run(["gdb", "-p", str(srv.pid), "-batch", "-ex",
                        "thread apply all bt"], timeout=120, stdout=f,
                       stderr=subprocess.STDOUT)
    return bt_path


def known_exit_hang(srv):
    """Under the sanitizer runtime (preloaded into nbdkit, which is not
    built with it) glibc's locale lock is found with a reader count of -1
    from start-up, and exit may then hang in libp11-kit's destructor
    (freelocale).  The plugin is gone and the sanitizer reports are
    written by then: that hang is not ours.  If nbdkit is in it, kill it
    and say so."""
    bt = open(exit_backtrace(srv)).read()
    if not (bt.count("\nThread ") == 1 and "__freelocale" in bt
            and "_dl_fini" in bt):
        return False
    log("nbdkit hangs in exit in libp11-kit's destructor (the sanitizer "
        "runtime's known hang); killed")
    os.kill(srv.pid, signal.SIGKILL)
    for _ in range(100):
        if not srv.alive():
            break
        time.sleep(0.1)
    return True


def verify_all(srv):
    for ex in EXP.values():
        h = nbd.NBD()
        h.connect_uri(srv.uri(ex.name))
        unknown = sum(1 for m in ex.model if m is UNKNOWN)
        for off in range(0, ex.nblk * BS, M):
            try:
                data = h.pread(M, off)
            except nbd.Error as e:
                problem("final read %s %d failed: %s" % (ex.name, off, e))
                continue
            ex.check(off, data, "in final verify")
        log("verified %s (%d unknown blocks of %d) maps %s" %
            (ex.name, unknown, ex.nblk, ex.maps))
        h.shutdown()


def verify_file(srv):
    """f0.img: [0,8M) = elin [0,8M), [8M,16M) = emir [0,8M)."""
    with open(F0_PATH[0], "rb") as f:
        img = f.read()
    checked = 0
    for exname, fbase, lo, hi in (("elin", 0, 0, 8 * M), ("emir", 8 * M, 0, 8 * M)):
        ex = EXP[exname]
        for o, l, k, db in ex.maps:
            a, b = max(o, lo), min(o + l, hi)
            if a >= b:
                continue
            mode, du, _ = KEYS.get(k) or DYN.get(k) if k else (None, BS, 0)
            if mode == "Adiantum":
                continue
            for blk in range(a // BS, b // BS):
                m = ex.model[blk]
                if m is UNKNOWN or len(m) != 1:
                    continue
                v = next(iter(m))
                pt = block_data(ex.tag, blk, v)
                ct = img[fbase + blk * BS - lo: fbase + blk * BS - lo + BS]
                if k is None:
                    exp = pt
                else:
                    dun = db + (blk * BS - o) // du
                    exp = oracle.process(mode, keybytes[k], du, dun, pt, True)
                if v == 0 and ct == bytes(BS):
                    checked += 1
                    continue
                if ct != exp:
                    problem("f0.img ciphertext mismatch %s blk %d (key %s v %d)"
                            % (exname, blk, k, v))
                else:
                    checked += 1
    log("file leaf ciphertext: %d blocks checked against oracle" % checked)


def finish(a):
    if a.asan:
        for f in os.listdir(a.asandir) if os.path.isdir(a.asandir) else []:
            problem("sanitizer report %s" % os.path.join(a.asandir, f))
    log("%d problems" % len(problems))
    for p in problems[:50]:
        print("  ", p.splitlines()[0][:400])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

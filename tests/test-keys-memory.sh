#!/usr/bin/env bash
# Key bytes live only in locked memory, are wiped when freed, and never
# reach a log or a reply; key files that group or others can read are
# refused everywhere a key file is taken.
#
#  1. A running (daemonized) nbdkit has its secure memory locked (VmLck >
#     0 as root), and `status` says "locked_memory" exactly when it is;
#     started with RLIMIT_MEMLOCK 0 and without CAP_IPC_LOCK it is not,
#     and says so.
#  2. The process memory is scanned (tests/memscan.py) for every key: its
#     raw bytes, each half (an AES-256 key schedule starts with the key),
#     and its hex text in either case.  While a key is in use, raw bytes
#     may only be in locked mappings, and the hex text nowhere; after
#     `key remove` (a key added over the control socket, and a key from
#     the configuration file), after both were used for I/O, nothing of
#     either is left anywhere.
#  3. The verbose log and every control reply hold no key, hex or raw;
#     nor does the verbose log of the one-line form with key=+FILE.  With
#     key=HEX the plugin warns in that log (nbdkit logs the key there).
#  4. Key files with group or other permission bits are refused by the
#     one-line form, the configuration file and `inlinecryptctl key add`.
# That other users cannot use the control socket is test-control.sh's.
source ./functions.sh
set -e -x

requires_plugin
requires "$PYTHON" -c 'import nbd, json'

t=test-keys-memory
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/kc 64        # from the configuration file
random_key $d/kr 64        # added over the control socket
random_key $d/ka 32        # Adiantum, added over the control socket
random_key $d/ke 16        # AES-128-CBC-ESSIV (its ESSIV key is SHA-256 of it)
random_key $d/kp 64        # added in a request cut in two by the reads
random_key $d/kq 64        # added in a request whose key has escapes
random_key $d/kb 64        # evicted while busy (EBUSY), then removed
random_key $d/kl 64        # one-line form
random_key $d/kw 64        # added behind a command that waits
random_key $d/kv 64        # keys the engine for that command to wait on
cat > $d/ic.conf <<'CONF'
key kc key=+kc
engine ufs keyslots=2
leaf d0 memory size=16M engine=ufs
leaf d1 memory size=16M
export vol0 device=d0 key=kc
export vol1 device=d1 key=kc
control socket=ctl.sock
CONF
start_nbdkit -P $d/pid -U $d/sock -v $PLUGIN config=$d/ic.conf 2> $d/log
wait_for test -S $d/ctl.sock
pid=$(cat $d/pid)
replies=0
# Every control reply is kept, to be searched for keys at the end.
ctl ()
{
    replies=$((replies + 1))
    inlinecryptctl -s $d/ctl.sock "$@" > $d/reply.$replies \
        2> $d/reply.$replies.err ||
        { cat $d/reply.$replies.err; return 1; }
    cat $d/reply.$replies
}
uri0="nbd+unix:///vol0?socket=$d/sock"
uri1="nbd+unix:///vol1?socket=$d/sock"

# Reading another process's memory needs root, or kernel.yama.ptrace_scope
# 0 for a process of one's own: without it the scans are skipped.
can_scan=1
if ! "$PYTHON" "$srcdir/memscan.py" $pid probe=5ca9e1f0c0ffee0d15ea5e2b7a11ed00 > /dev/null; then
    echo "cannot read the memory of nbdkit: memory scans skipped"
    can_scan=0
    # As root (CI) the scans must run: a skipped scan proves nothing.
    test "$(id -u)" != 0
fi

# memscan PATTERN-NAMES...: scan nbdkit for the named keys' patterns.
memscan ()
{
    local args=() k
    if [ "$can_scan" = 0 ]; then echo '{"unavailable": true}'; return; fi
    for k in "$@"; do
        args+=($("$PYTHON" - $d/$k $k <<'PY'
import hashlib, sys
hexkey = open(sys.argv[1]).read().strip()
raw = bytes.fromhex(hexkey)
name = sys.argv[2]
pats = {"raw": raw, "half1": raw[:len(raw) // 2],
        "half2": raw[len(raw) // 2:],
        "sha256": hashlib.sha256(raw).digest(),
        "hex": hexkey.encode(), "HEX": hexkey.upper().encode(),
        "hexhalf1": hexkey[:len(hexkey) // 2].encode(),
        "hexhalf2": hexkey[len(hexkey) // 2:].encode()}
print(" ".join("%s.%s=%s" % (name, p, v.hex()) for p, v in pats.items()))
PY
))
    done
    "$PYTHON" "$srcdir/memscan.py" $pid "${args[@]}"
}

# I/O through @uri with several connections at once, so that the engine
# and the fallback key several ciphers.
io ()
{
    "$PYTHON" - "$1" "$2" <<'PY'
import nbd, os, sys, threading
uri, off = sys.argv[1], int(sys.argv[2])
done = []
def work(i):
    h = nbd.NBD()
    h.connect_uri(uri)
    for j in range(20):
        data = os.urandom(65536)
        o = off + (i * 4 + j % 4) * 65536     # each thread its own 256K
        h.pwrite(data, o)
        assert h.pread(65536, o) == data
    h.shutdown()
    done.append(i)
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
assert len(done) == 4, "an I/O thread failed"
PY
}

# 1. Locked memory, as the process and the server both see it.
vmlck=$(awk '/^VmLck:/ { print $2 }' /proc/$pid/status)
echo "VmLck of the running nbdkit: $vmlck kB"
ctl --json status > /dev/null
"$PYTHON" -c '
import json, sys
locked = json.load(open(sys.argv[1]))["locked_memory"]
vmlck = int(sys.argv[2])
print("locked_memory:", locked, "VmLck:", vmlck)
assert locked == (vmlck > 0), "status says locked_memory=%s, VmLck is %d kB" % (locked, vmlck)
' $d/reply.$replies $vmlck
# As root the pool must be locked; but AddressSanitizer's mlock is a
# no-op, so a sanitizer build only checks that status tells the truth.
if [ "$(id -u)" = 0 ] && [ -z "$SANITIZER_PRELOAD" ]; then
    test "$vmlck" -gt 0
fi
locked=$(test "$vmlck" -gt 0 && echo 1 || echo 0)
# The locked pool stays out of core dumps (MADV_DONTDUMP: "dd").
"$PYTHON" - $pid <<'PY'
import sys
cur, flags, bad, n = None, {}, [], 0
for line in open("/proc/%s/smaps" % sys.argv[1]):
    f = line.split()
    if "-" in f[0] and not f[0].endswith(":"):
        cur = f[0]
    elif f[0] == "Locked:" and int(f[1]) > 0:
        flags[cur] = None
    elif f[0] == "VmFlags:" and cur in flags:
        n += 1
        if "dd" not in f[1:]:
            bad.append(cur)
print("locked mappings:", n, "without dd:", bad)
assert not bad, "locked memory that a core dump would hold: %s" % bad
PY

# Without CAP_IPC_LOCK, held to RLIMIT_MEMLOCK: with 0 the pool is not
# locked and the server says so; with 1 MiB a pool that fits is locked
# (root is held to the limit like anyone), and with 128 KiB a smaller one
# (it was not: the pool had a minimum of 256 KiB).
drop=
if [ "$(id -u)" = 0 ]; then drop="setpriv --bounding-set=-ipc_lock"; fi
# locked_with KIB N: start nbdkit with RLIMIT_MEMLOCK KIB and without
# CAP_IPC_LOCK; its VmLck line goes to $d/vmlckN, its status to $d/statusN.
locked_with ()
{
    ( ulimit -l $1
      exec $drop bash -c '
        source ./functions.sh
        set -e -x
        nbdkit -U - '"$PLUGIN"' size=1M key=+'"$d"'/kl control='"$d"'/ctl'$2'.sock \
            --run "for i in \$(seq 100); do test -S '"$d"'/ctl'$2'.sock && break; sleep 0.1; done
                   grep VmLck /proc/\$PPID/status > '"$d"'/vmlck'$2';
                   '"$INLINECRYPTCTL"' -s '"$d"'/ctl'$2'.sock --json status > '"$d"'/status'$2'"
      ' )
    cat $d/vmlck$2
}
# is_locked N: the status of locked_with's server N says locked_memory.
is_locked ()
{
    "$PYTHON" -c '
import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))["locked_memory"] else 1)' $d/status$1
}
if [ -z "$drop" ] || $drop true; then
    locked_with 0 2
    grep -E '^VmLck:\s+0 kB' $d/vmlck2
    if is_locked 2; then exit 1; fi
    if [ -z "$SANITIZER_PRELOAD" ]; then
        locked_with 1024 3
        if grep -E '^VmLck:\s+0 kB' $d/vmlck3; then exit 1; fi
        is_locked 3
        locked_with 128 4
        if grep -E '^VmLck:\s+0 kB' $d/vmlck4; then exit 1; fi
        is_locked 4
    fi
fi

# 2. Keys in memory.  kr and ka come over the control socket and are
# mapped; everything is used.
ctl key add kr key=+$d/kr
ctl key add ka mode=Adiantum key=+$d/ka
ctl key add ke mode=AES-128-CBC-ESSIV key=+$d/ke
ctl map vol0 4M 4M key=kr dun-base=7
ctl map vol1 8M 4M key=ka
ctl map vol1 12M 4M key=ke
io "$uri0" 0
io "$uri0" $((4 << 20))
io "$uri1" 0
io "$uri1" $((8 << 20))
io "$uri1" $((12 << 20))

# check_scan FILE MODE KEYS...: MODE "locked" (raw bytes only in locked
# mappings, hex text nowhere), "pending" (a request not read yet: hex text
# too, but only in locked mappings) or "gone" (nothing at all).  (The key text
# of key-add is kept out of json-c, which would leave it in freed heap.)
hex_copies=""
check_scan ()
{
    local file=$1 mode=$2
    shift 2
    "$PYTHON" - $file $mode $locked "$hex_copies" "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r.get("unavailable"):
    print("memory scan skipped")
    sys.exit(0)
mode, locked = sys.argv[2], sys.argv[3] == "1"
excused, keys = sys.argv[4].split(), sys.argv[5:]
print("scanned %d MiB, locked %d KiB, skipped %s" %
      (r["scanned_bytes"] >> 20, r["locked_kib"], r["skipped"]))
bad = []
xfail = []
for name, hits in sorted(r["hits"].items()):
    key, what = name.split(".")
    if key not in keys:
        continue
    print("%-14s %d hit(s), %d in locked memory" %
          (name, len(hits), sum(h["locked"] for h in hits)))
    is_hex = what.lower().startswith("hex")
    for h in hits:
        if (is_hex and mode != "pending") or mode == "gone" or \
           (locked and not h["locked"]):
            if is_hex and key in excused and not h["locked"]:
                xfail.append((name, h))
            else:
                bad.append((name, h))
for tag, lst in (("XFAIL (known bug)", xfail), ("FAIL", bad)):
    for name, h in lst:
        print("%s: %s at %s in %s %s%s" % (tag, name, h["addr"], h["mapping"],
                                           h["mapping_range"],
                                           " (locked)" if h["locked"] else ""))
sys.exit(1 if bad else 0)
PY
}

# A one-line export's key (read by the plugin from key=+FILE) too.
start_nbdkit -P $d/pid1 -U $d/sock1 $PLUGIN size=1M key=+$d/kl
nbdkit_pid=$pid
pid=$(cat $d/pid1)
"$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"x" * 65536, 0); assert h.pread(65536, 0) == b"x" * 65536' \
    "nbd+unix:///?socket=$d/sock1"
memscan kl > $d/scan.oneline
check_scan $d/scan.oneline locked kl
pid=$nbdkit_pid

memscan kc kr ka ke > $d/scan.inuse
check_scan $d/scan.inuse locked kc kr ka ke
# The keys in use really were found (in the locked pool): the scan works.
"$PYTHON" -c '
import json, sys
h = json.load(open(sys.argv[1])).get("hits", {})
for k in h and ("kc", "kr", "ka", "ke"):
    assert h[k + ".raw"] or h[k + ".half1"], (k, "not found in memory at all")
assert not h or h["ke.sha256"], "the ESSIV key was not found in memory at all"
' $d/scan.inuse

# Remove kr and ka (unmapped first), and kc from the configuration file,
# after all of them were used.  Nothing of them is left.
if ctl key remove kr; then exit 1; fi
grep '(EBUSY)' $d/reply.$replies.err
ctl map vol0 4M 4M key=kc dun-base=1024
ctl map vol1 8M 4M key=kc dun-base=2048
ctl key remove kr
ctl key remove ka
ctl map vol1 12M 4M none
ctl key remove ke
io "$uri0" $((4 << 20))
ctl map vol0 0 16M none
ctl map vol1 0 16M none
ctl key remove kc
ctl key list
io "$uri0" 0
# A key-add whose line arrives in two reads, behind a long line: the
# control server moves the first part down its buffer to wait for the
# rest, and no copy of it may stay where it was.
"$PYTHON" - $d/ctl.sock $d/kp <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
key = open(sys.argv[2]).read().strip()
line = json.dumps({"cmd": "key-add", "name": "kp", "key": key}).encode()
cut = line.index(key.encode()) + 100
s.sendall(b'{"cmd":"key-list"}' + b" " * 2000 + b"\n" + line[:cut])
time.sleep(0.5)
s.sendall(line[cut:] + b"\n")
f = s.makefile("rb")
replies = [json.loads(f.readline()) for _ in range(2)]
assert all(r["ok"] for r in replies), replies
s.close()
PY
ctl key remove kp
# A key-add whose key string has escapes (\u for a digit, and the "\n"
# that json.dumps writes for a key file read with its newline): json-c
# would decode them in a buffer of its own and free it unwiped.
"$PYTHON" - $d/ctl.sock $d/kq <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
key = open(sys.argv[2]).read().strip()
line = json.dumps({"cmd": "key-add", "name": "kq", "key": key + "\n"})
line = line.replace('"key": "' + key[:2], '"key": "\\u%04x\\u%04x'
                    % (ord(key[0]), ord(key[1])))
assert line.count("\\") == 3, line
s.sendall(line.encode() + b"\n")
r = json.loads(s.makefile("rb").readline())
assert r == {"ok": True, "name": "kq"}, r
s.close()
PY
ctl key remove kq
# A key-add sent behind a command that waits waits in the client's input
# buffer: locked, and wiped.  The command: an engine reset, which
# reprograms the key kv that a write left in a keyslot, each program 5 s
# late (program-delay-us): it waits that long whatever the load.
ctl key add kv key=+$d/kv
ctl map vol0 0 4M key=kv
"$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"w" * 4096, 0)' "$uri0"
ctl fault ufs program-delay-us=5000000
"$PYTHON" - $d/ctl.sock $d/kw $d/pending <<'PY' &
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
key = open(sys.argv[2]).read().strip()
t0 = time.monotonic()
s.sendall(b'{"cmd":"engine-reset","engine":"ufs"}\n' +
          json.dumps({"cmd": "key-add", "name": "kw", "key": key}).encode() +
          b"\n")
time.sleep(0.5)
open(sys.argv[3], "w").close()
f = s.makefile("rb")
replies = [json.loads(f.readline()) for _ in range(2)]
assert all(r["ok"] for r in replies), replies
assert time.monotonic() - t0 >= 4.5, "the reset did not wait"
PY
waiter=$!
wait_for test -e $d/pending
memscan kw > $d/scan.pending
wait $waiter
ctl fault ufs clear
check_scan $d/scan.pending pending kw
# It was found there, unless the scans are skipped.
"$PYTHON" -c '
import json, sys
h = json.load(open(sys.argv[1])).get("hits", {})
assert not h or h["kw.hex"], "the pending request was not found in memory"
' $d/scan.pending
ctl map vol0 0 4M none
ctl key remove kv
ctl key remove kw
# A key evicted while a request holds its keyslot (EBUSY: unlinked, but
# the engine's slot still holds it), then removed: key-remove finds it in
# no slot, and must still get it out of that one.
ctl key add kb key=+$d/kb
ctl map vol0 0 16M key=kb
ctl fault d0 io-delay-us=1500000
"$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"b" * 4096, 0)' "$uri0" &
slow=$!
# EBUSY once the write holds the keyslot (io-delay-us keeps it 1.5 s):
# until the client got that far (a slow start on a loaded machine), the
# key is in no slot and evict says 0.
busy=0
for _ in $(seq 100); do
    if ! ctl evict kb d0; then
        grep '(EBUSY)' $d/reply.$replies.err
        busy=1
        break
    fi
    sleep 0.05
done
test $busy = 1
wait $slow
ctl fault d0 clear
ctl map vol0 0 16M none
ctl key remove kb
memscan kc kr ka ke kp kq kw kv kb > $d/scan.removed
check_scan $d/scan.removed gone kc kr ka ke kp kq kw kv kb

# Many keys in use at once (128 keys on the fallback's 100 keyslots, 32
# connections): their cipher contexts must all fit in the locked pool, or
# status must say the memory is not locked.
if [ "$locked" = 1 ] && [ "$can_scan" = 1 ]; then
    {
        for k in $(seq 0 127); do
            random_key $d/m$k 64
            echo "key m$k key=+m$k"
        done
        for e in 0 1 2 3; do
            echo "leaf x$e memory size=32M"
            echo "export many$e device=x$e"
            for q in $(seq 0 31); do
                echo "  map ${q}M 1M key=m$((e * 32 + q))"
            done
            echo "end"
        done
        echo "control socket=ctl3.sock"
    } > $d/many.conf
    start_nbdkit -P $d/pid3 -U $d/sock3 $PLUGIN config=$d/many.conf
    wait_for test -S $d/ctl3.sock
    "$PYTHON" "$srcdir/loadgen.py" --seconds 3 --conns-per-export 8 \
        --json $d/many.json \
        $(for e in 0 1 2 3; do echo "nbd+unix:///many$e?socket=$d/sock3"; done) \
        > /dev/null
    inlinecryptctl -s $d/ctl3.sock --json status > $d/status3
    args=()
    for k in $(seq 0 127); do args+=("m$k=$(head -c 64 $d/m$k)"); done
    "$PYTHON" "$srcdir/memscan.py" $(cat $d/pid3) "${args[@]}" > $d/scan.many
    "$PYTHON" - $d/scan.many $d/status3 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
claimed = json.load(open(sys.argv[2]))["locked_memory"]
hits = [h for v in r["hits"].values() for h in v]
out = [h for h in hits if not h["locked"]]
keys_out = sum(1 for v in r["hits"].values() if any(not h["locked"] for h in v))
print("128 keys: %d key halves found, %d of them (%d keys) outside the %d KiB "
      "of locked memory; status says locked_memory=%s" %
      (len(hits), len(out), keys_out, r["locked_kib"], claimed))
assert hits, "no key found at all: the scan is broken"
assert not (out and claimed), \
    "key bytes in unlocked memory (e.g. %s %s) while status says " \
    "locked_memory=true" % (out[0]["addr"], out[0]["mapping_range"])
PY
fi

# 3. No key in the log or in any reply: hex in either case, raw bytes.
#    The one-line form's key=+FILE is kept out of the log too; key=HEX
#    cannot be (nbdkit -v logs every parameter before the plugin sees
#    it), and the plugin says so there.
ctl --json status > /dev/null
ctl --json stats > /dev/null
ctl key list > /dev/null
nbdkit -v -U - $PLUGIN size=1M key=+$d/kl --run true 2> $d/log.oneline
fails grep -F 'given on the command line' $d/log.oneline
nbdkit -v -U - $PLUGIN size=1M key=$(cat $d/kl) --run true 2> $d/log.hex
grep -F 'key=: the key was given on the command line, so it is in this log' \
    $d/log.hex
"$PYTHON" - $d/log $d/log.oneline $d/reply.* -- $d/kc $d/kr $d/ka $d/kl <<'PY'
import sys
args = sys.argv[1:]
files, keys = args[:args.index("--")], args[args.index("--") + 1:]
bad = 0
for kf in keys:
    hexkey = open(kf).read().strip()
    raw = bytes.fromhex(hexkey)
    pats = [hexkey.encode(), hexkey.upper().encode(),
            hexkey[:32].encode(), hexkey[-32:].encode(),
            hexkey[:32].upper().encode(), raw[:16], raw[-16:]]
    for f in files:
        data = open(f, "rb").read()
        for p in pats:
            if p in data:
                print("FAIL: %s holds part of key %s" % (f, kf))
                bad += 1
print("searched %d files for %d keys" % (len(files), len(keys)))
sys.exit(1 if bad else 0)
PY
grep -c . $d/log

# 4. Key files that group or others may read are refused: the one-line
# form (mode 0644 is in test-refusals.sh), the configuration file, and
# inlinecryptctl.
for mode in 640 604 660 620 602; do
    cp $d/kl $d/open && chmod $mode $d/open
    if nbdkit -U - $PLUGIN size=1M key=+$d/open --run true 2> $d/err; then
        exit 1
    fi
    grep "key file $d/open is accessible by group or others (mode 0$mode)" $d/err
    printf 'key kx key=+open\nleaf x memory size=1M\nexport v device=x key=kx\n' \
        > $d/open.conf
    if nbdkit -U - $PLUGIN config=$d/open.conf --run true 2> $d/err; then
        exit 1
    fi
    grep "open.conf:1: .*key file $d/open is accessible by group or others" $d/err
    set +e
    inlinecryptctl -s $d/ctl.sock key add kx key=+$d/open 2> $d/err
    status=$?
    set -e
    test $status = 2
    grep "key file $d/open is accessible by group or others" $d/err
done
ctl key list
if grep -q '^kx' $d/reply.$replies; then exit 1; fi

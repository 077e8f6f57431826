#!/usr/bin/env bash
# A test rig at work while clients do I/O: evicting a key in use (EBUSY,
# then success), resetting the engine, failing keyslot programming,
# failing a mirror leg, refusing a narrower table, hot-adding a mirror leg,
# reloading a linear device as a mirror, a striped mirror leg failing
# part-way through a write.  Data stays intact throughout (fio verifies,
# nbdcopy compares).
source ./functions.sh
set -e -x

requires_plugin
requires nbdcopy --version
requires fio --version
requires "$PYTHON" -c 'import nbd'

t=test-control-faults
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k1 64
random_key $d/k2 64
cat > $d/ic.conf <<'CONF'
key k1 key=+k1
key k2 key=+k2
engine ufs keyslots=1 modes=AES-256-XTS:512,4096
engine small keyslots=4 modes=AES-256-XTS:4096
leaf d0 memory size=32M engine=ufs
leaf d1 memory size=32M engine=ufs
leaf d2 memory size=32M engine=ufs
leaf d3 memory size=32M engine=small
leaf d4 memory size=32M engine=ufs
device m0
  0 65536 mirror 2 d0 0 d1 0
end
export vol0 device=m0 key=k1
export vol1 device=d4 key=k2
export vol2 device=d2 key=k2
# Plain exports of the legs: their raw ciphertext.
export raw0 device=d0
end
export raw1 device=d1
end
export raw2 device=d2
end
# A linear device on files, reloaded as mirrors (7).
engine xe keyslots=4 modes=AES-256-XTS:4096
leaf fa file=fa.img size=4M engine=xe
leaf fb file=fb.img size=2M engine=xe
leaf fc file=fc.img size=4M engine=xe
device lin
  0 8192 linear fa 0
end
export vol3 device=lin key=k1
export rawfa device=fa
end
export rawfb device=fb
end
export rawfc device=fc
end
# Mirrors whose first leg is striped (8): y has its own engine; y2 has
# none and no fallback, so st2 advertises nothing despite
# per_child_fallback and ms2's own fallback encrypts.
engine e1 keyslots=4 modes=AES-256-XTS:4096
engine e2 keyslots=4 modes=AES-256-XTS:4096
leaf x memory size=1M engine=e1
leaf y memory size=1M engine=e2
leaf z memory size=2M engine=e1
device st
  0 4096 striped 2 8 x 0 y 0
end
device ms
  0 4096 mirror 2 st 0 z 0
end
export vol4 device=ms key=k1
leaf x2 memory size=1M engine=e1
leaf y2 memory size=1M fallback=false
leaf z2 memory size=2M engine=e1
device st2 options=per_child_fallback
  0 4096 striped 2 8 x2 0 y2 0
end
device ms2
  0 4096 mirror 2 st2 0 z2 0
end
export vol5 device=ms2 key=k1
control socket=ctl.sock
CONF
start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf
wait_for test -S $d/ctl.sock
ctl () { inlinecryptctl -s $d/ctl.sock "$@"; }
uri0="nbd+unix:///vol0?socket=$d/sock"
uri1="nbd+unix:///vol1?socket=$d/sock"
uri2="nbd+unix:///vol2?socket=$d/sock"
fio_verify ()   # uri rw seconds output
{
    fio --name=v --ioengine=nbd --uri="$1" --rw=$2 --bs=4k --iodepth=8 \
        --size=16M --verify=crc32c --verify_fatal=1 --verify_state_save=0 --do_verify=1 \
        --output=$4 >/dev/null
}

# 1. Evict k2 while fio writes with it on d4 (slow I/O keeps requests in
#    flight): EBUSY, as Linux; after fio, success, and again success when
#    the key is no longer in any slot.
ctl fault d4 io-delay-us=5000
fio_verify "$uri1" randwrite 0 $d/fio1.log &
fio_pid=$!
busy=0
for i in $(seq 100); do
    if ctl evict k2 d4 2> $d/err; then :; else
        grep -q '(EBUSY)' $d/err && { busy=1; break; }
    fi
    sleep 0.05
done
test $busy = 1
wait $fio_pid
grep -q 'err= 0' $d/fio1.log
ctl fault d4 clear
ctl evict k2 d4
ctl evict k2 d4
ctl --json stats | "$PYTHON" -c '
import json, sys
e = json.load(sys.stdin)["engines"]["ufs"]
assert e["evictions_busy"] >= 1, e
assert e["key_mismatches"] == 0, e'

# 2. Engine resets during I/O: keys come back, data is intact.
fio_verify "$uri1" randrw 0 $d/fio2.log &
fio_pid=$!
for i in $(seq 10); do ctl engine reset ufs; sleep 0.05; done
wait $fio_pid
grep -q 'err= 0' $d/fio2.log
ctl --json stats | "$PYTHON" -c '
import json, sys
e = json.load(sys.stdin)["engines"]["ufs"]
assert e["resets"] == 10, e
assert e["reprograms"] == 10, e
assert e["key_mismatches"] == 0, e'

# 3. Programming faults: with one keyslot and two keys, every switch of
#    key programs the slot.  The failing request gets EIO and writes
#    nothing; the next one succeeds.
"$PYTHON" - "$uri1" "$uri2" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import errno, nbd, subprocess, sys
uri1, uri2, sock, ctl = sys.argv[1:]
a = nbd.NBD(); a.connect_uri(uri1)
b = nbd.NBD(); b.connect_uri(uri2)
old = b"\x11" * 65536
b.pwrite(old, 0)
a.pwrite(b"\x22" * 4096, 0)          # k2 on d4... then vol2 needs k2 too
# Both exports use k2 on the same engine: make them use different keys by
# forcing a program: evict k2 so the next request must program.
subprocess.check_call([ctl, "-s", sock, "evict", "k2", "d2"])
subprocess.check_call([ctl, "-s", sock, "fault", "ufs",
                       "program-fail=2,errno=EIO"])
for _ in range(2):
    try:
        b.pwrite(b"\x33" * 65536, 0)
        raise SystemExit("write succeeded despite the program fault")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
assert b.pread(65536, 0) == old      # nothing written, not even half
b.pwrite(b"\x44" * 65536, 0)
assert b.pread(65536, 0) == b"\x44" * 65536
out = subprocess.check_output([ctl, "-s", sock, "--json", "stats"])
import json
e = json.loads(out)["engines"]["ufs"]
assert e["program_failures"] >= 2, e
PY
ctl fault ufs clear

# 4. A mirror leg fails under load: clients see no error, the leg is
#    marked failed, the data stays readable from the other leg.
head -c 32M /dev/urandom > $d/data
nbdcopy $d/data "$uri0"
ctl fault d1 io-error=all
nbdcopy "$uri0" $d/back
cmp $d/data $d/back
nbdcopy $d/data "$uri0"
ctl status m0 | grep 'leg d1 0: failed'
ctl status m0 | grep 'leg d0 0: active'
ctl fault d1 clear

# 5. A narrower table is refused; the live one keeps serving.
printf '0 65536 mirror 2 d0 0 d3 0\n' > $d/narrow
if ctl table load m0 $d/narrow 2> $d/err; then exit 1; fi
grep 'narrower than the live table' $d/err
grep 'lacks AES-256-XTS/512' $d/err
ctl table show m0 > $d/show
grep -A1 '^live:' $d/show | grep '0 65536 mirror 2 d0 0 d1 0'
test "$(sed -n '/^inactive:/,$p' $d/show | wc -l)" = 1
nbdcopy "$uri0" $d/back
cmp $d/data $d/back
# With per_child_fallback, the same narrower leg is accepted.
ctl table load m0 $d/narrow options=per_child_fallback
ctl table clear m0

# 6. Hot-add: re-add the failed leg d1 and add d2 as a third leg; both
#    resynchronise in the background while writes go on, then every leg
#    holds the same ciphertext.
printf '0 65536 mirror 3 d0 0 d1 0 d2 0\n' | ctl table load m0 -
ctl table resume m0
ctl status m0 > $d/st
grep -E 'leg d2 0: (resync|active)' $d/st
"$PYTHON" - "$uri0" <<'PY'
import nbd, os, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(64):
    off = (i * 7919 % 8192) * 4096
    h.pwrite(bytes([i]) * 4096, off)
PY
ctl wait-resync m0 timeout-ms=60000
ctl status m0 | grep 'leg d1 0: active'
ctl status m0 | grep 'leg d2 0: active'
nbdcopy "$uri0" $d/final
# Every leg holds the same ciphertext.
for leg in 0 1 2; do
    nbdcopy "nbd+unix:///raw$leg?socket=$d/sock" $d/raw$leg
done
cmp $d/raw0 $d/raw1
cmp $d/raw0 $d/raw2
fails cmp -s $d/raw0 $d/final

# 7. A mirror loaded over part of a linear device: the old table held that
#    range on fa, straight, so fa is in sync and the empty fb is copied
#    from it; reads never return fb's zeros.  Then linear targets over fa
#    become one mirror with the empty fc first: fa is still the source.
uri3="nbd+unix:///vol3?socket=$d/sock"
head -c 4M /dev/urandom > $d/data4
nbdcopy $d/data4 "$uri3"
printf '0 4096 mirror 2 fa 0 fb 0\n4096 4096 linear fa 4096\n' |
    ctl table load lin -
ctl table resume lin
ctl wait-resync lin timeout-ms=60000
ctl status lin | grep 'leg fa 0: active'
ctl status lin | grep 'leg fb 0: active'
for i in 1 2 3 4; do
    nbdcopy "$uri3" $d/back4
    cmp $d/data4 $d/back4
done
nbdcopy "nbd+unix:///rawfa?socket=$d/sock" $d/rawfa
nbdcopy "nbd+unix:///rawfb?socket=$d/sock" $d/rawfb
cmp -n 2097152 $d/rawfa $d/rawfb
printf '0 4096 linear fa 0\n4096 4096 linear fa 4096\n' | ctl table load lin -
ctl table resume lin
head -c 4M /dev/urandom > $d/data4
nbdcopy $d/data4 "$uri3"
printf '0 8192 mirror 2 fc 0 fa 0\n' | ctl table load lin -
ctl table resume lin
ctl wait-resync lin timeout-ms=60000
ctl status lin | grep 'leg fc 0: active'
for i in 1 2 3 4; do
    nbdcopy "$uri3" $d/back4
    cmp $d/data4 $d/back4
done
nbdcopy "nbd+unix:///rawfa?socket=$d/sock" $d/rawfa
nbdcopy "nbd+unix:///rawfc?socket=$d/sock" $d/rawfc
cmp $d/rawfa $d/rawfc

# 8. A mirror leg that is itself striped fails part-way through a write:
#    its first chunk went to x, the second failed on y (ENOMEM programming
#    e2's keyslot).  The leg holds a mix of old and new, so it is failed
#    and the write succeeds on the other leg; reads never alternate.  A
#    write whose failure changed nothing (only y's chunk) fails with
#    ENOMEM, and fails no leg.  With y2, which has no engine and no
#    fallback, st2 advertises no context at all, so nothing reaches y2
#    with a key: ms2's fallback encrypts and every leg stays.
"$PYTHON" - "$d/sock" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import errno, nbd, os, subprocess, sys
sock, ctlsock, ctl = sys.argv[1:]
def run(*args):
    return subprocess.check_output([ctl, "-s", ctlsock] + list(args),
                                   text=True)
def legs(dev):
    return [l.strip() for l in run("status", dev).splitlines()
            if l.strip().startswith("leg ")]
def reads(h, want):
    for _ in range(4):
        assert h.pread(len(want), 0) == want, "reads alternate"
fault = "program-fail=1,errno=ENOMEM"
h = nbd.NBD()
h.connect_uri("nbd+unix:///vol4?socket=%s" % sock)
old = os.urandom(16384)
h.pwrite(old, 0)
run("evict", "k1", "y")              # so that the next write programs
run("fault", "e2", fault)
try:
    h.pwrite(os.urandom(4096), 4096)
    raise SystemExit("a write to y alone succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOMEM, e
assert all(l.endswith(": active") for l in legs("ms")), legs("ms")
reads(h, old)
run("evict", "k1", "y")              # the reads programmed it again
run("fault", "e2", fault)
new = os.urandom(16384)
h.pwrite(new, 0)
reads(h, new)
st = legs("ms")
assert st[0].startswith("leg st") and ": failed" in st[0], st
assert st[1].endswith(": active"), st

assert "modes/" not in run("status", "st2")
h = nbd.NBD()
h.connect_uri("nbd+unix:///vol5?socket=%s" % sock)
new = os.urandom(16384)
h.pwrite(new, 0)
reads(h, new)
assert all(l.endswith(": active") for l in legs("ms2")), legs("ms2")
PY

# 9. A refused fault command changes nothing: neither the leaf's delay set
#    next to a bad io_error (or a count without io_error, or a delay over
#    the 10 s limit), nor an engine's faults next to a bad errno or
#    probability.  Each request stays fast; programming still works.
"$PYTHON" - "$uri1" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import json, nbd, socket, subprocess, sys, time
uri1, sock, ctl = sys.argv[1:]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rwb")
def ask(req):
    f.write(json.dumps(req).encode() + b"\n")
    f.flush()
    return json.loads(f.readline())
h = nbd.NBD()
h.connect_uri(uri1)
def read_time():
    subprocess.check_call([ctl, "-s", sock, "evict", "k2", "d4"])
    t0 = time.monotonic()
    h.pread(4096, 0)
    return time.monotonic() - t0
for req in [
        {"target": "d4", "io_delay_us": 2000000, "io_error": "bogus"},
        {"target": "d4", "io_delay_us": 2000000, "count": 3},
        {"target": "d4", "io_delay_us": 2000000, "errno": "EIO"},
        {"target": "d4", "io_delay_us": 2000000, "program_fail": 1},
        {"target": "d4", "io_delay_us": 20000000},
        {"target": "d4", "io_delay_us": 2000000, "clear": "yes"},
        {"target": "ufs", "program_delay_us": 2000000, "program_fail": 1,
         "errno": "ENOTANERRNO"},
        {"target": "ufs", "program_delay_us": 2000000, "program_fail": 1,
         "program_fail_prob": 7},
        {"target": "ufs", "program_fail": 1, "io_error": "read"},
        {"target": "ufs", "program_fail": 1, "count": 3},
        {"target": "ufs", "program_fail": 4294967296},
        {"target": "ufs", "program_delay_us": 10000001},
        {"target": "m0", "clear": True},
        ]:
    req["cmd"] = "fault"
    r = ask(req)
    assert r["ok"] is False and r["errno"] == "EINVAL", (req, r)
    took = read_time()
    assert took < 1, (req, r, took)
print("last:", r["error"])
assert subprocess.call([ctl, "-s", sock, "fault", "d4", "io-delay-us=2000000",
                        "io-error=bogus"]) == 1
assert read_time() < 1
# What is allowed still works: a delay, then clear.
assert ask({"cmd": "fault", "target": "d4", "io_delay_us": 300000})["ok"]
assert read_time() >= 0.3
assert ask({"cmd": "fault", "target": "d4", "clear": True})["ok"]
assert read_time() < 0.3
PY

# 10. Commands that wait for requests in flight (map, table resume) do not
#     hold up other clients: while one waits for a slow read, another
#     client's ping, key list, table show and fault clear answer at once.
#     The waiting client's own replies stay in order.
"$PYTHON" - "$uri1" "$uri0" $d/ctl.sock <<'PY'
import json, nbd, select, socket, sys, threading, time
uri1, uri0, sock = sys.argv[1:]
def client():
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    return s, s.makefile("rwb")
def send(f, req):
    f.write(json.dumps(req).encode() + b"\n")
    f.flush()
def recv(f):
    return json.loads(f.readline())
b, fb = client()
def ask(req):
    send(fb, req)
    return recv(fb)

def slow_read(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pread(4096, 0)

def check(uri, legs, waiting, quick):
    for leg in legs:
        assert ask({"cmd": "fault", "target": leg, "io_delay_us": 3000000})["ok"]
    reader = threading.Thread(target=slow_read, args=(uri,))
    reader.start()
    time.sleep(0.5)                     # the read is in flight
    a, fa = client()
    for req in waiting:
        send(fa, req)
    send(fa, {"cmd": "ping"})
    time.sleep(0.5)                     # the command waits for the read
    for req in quick:
        t0 = time.monotonic()
        r = ask(req)
        took = time.monotonic() - t0
        assert r["ok"] is True, (req, r)
        assert took < 0.5, (req, took)
        print(req["cmd"], "answered in %.3f s" % took)
    assert select.select([a], [], [], 0)[0] == [], "it did not wait"
    for leg in legs:
        t0 = time.monotonic()
        assert ask({"cmd": "fault", "target": leg, "clear": True})["ok"]
        assert time.monotonic() - t0 < 0.5
    for req in waiting:
        r = recv(fa)
        assert r["ok"] is True and "version" not in r, (req, r)
    assert "version" in recv(fa)
    reader.join()
    a.close()

check(uri1, ["d4"],
      [{"cmd": "map", "export": "vol1", "offset": 0, "length": 4096,
        "key": "k2", "dun_base": 0}],
      [{"cmd": "ping"}, {"cmd": "key-list"}, {"cmd": "status"}])

# A key being mapped while it is removed: the removal waits for the map,
# no other map may take the key meanwhile, and once the map has it the
# removal is refused (EBUSY) and the key stays.
import os
assert ask({"cmd": "key-add", "name": "k3", "key": os.urandom(64).hex()})["ok"]
assert ask({"cmd": "fault", "target": "d4", "io_delay_us": 3000000})["ok"]
reader = threading.Thread(target=slow_read, args=(uri1,))
reader.start()
time.sleep(0.5)
a, fa = client()
send(fa, {"cmd": "map", "export": "vol1", "offset": 1 << 20, "length": 4096,
          "key": "k3"})
time.sleep(0.3)
c, fc = client()
send(fc, {"cmd": "key-remove", "name": "k3"})
time.sleep(0.3)
r = ask({"cmd": "map", "export": "vol1", "offset": 2 << 20, "length": 4096,
         "key": "k3"})
assert r["errno"] == "EBUSY" and "being removed" in r["error"], r
r = ask({"cmd": "key-remove", "name": "k3"})
assert r["errno"] == "EBUSY" and "removed already" in r["error"], r
assert ask({"cmd": "fault", "target": "d4", "clear": True})["ok"]
assert recv(fa)["ok"] is True
r = recv(fc)
assert r["errno"] == "EBUSY" and "used by the map of export vol1" in r["error"], r
reader.join()
assert ask({"cmd": "map", "export": "vol1", "offset": 1 << 20, "length": 4096,
            "key": "k2", "dun_base": 256})["ok"]
assert ask({"cmd": "key-remove", "name": "k3"})["ok"]
assert "k3" not in json.dumps(ask({"cmd": "key-list"}))
table = "0 65536 mirror 3 d0 0 d1 0 d2 0\n"
assert ask({"cmd": "table-load", "device": "m0", "table": table})["ok"]
check(uri0, ["d0", "d1", "d2"],
      [{"cmd": "table-resume", "device": "m0"}],
      [{"cmd": "ping"}, {"cmd": "table-show", "device": "m0"},
       {"cmd": "status", "device": "m0"}])
PY
ctl status m0 | grep 'leg d2 0: active'

# 11. A server that stops does not wait for a wait-resync (or any waiting
#     command): its client gets ECANCELED at once, not after the resync.
cat > $d/stop.conf <<'CONF'
key k1 mode=AES-256-XTS key=+k1
engine ufs keyslots=4
leaf e0 memory size=16M engine=ufs
leaf e1 memory size=16M engine=ufs
device mx
  0 32768 mirror 1 e0 0
end
export v device=mx key=k1
control socket=stop.sock
CONF
start_nbdkit -P $d/stop.pid -U $d/stop-nbd.sock $PLUGIN config=$d/stop.conf
wait_for test -S $d/stop.sock
sctl () { inlinecryptctl -s $d/stop.sock "$@"; }
sctl fault e1 io-delay-us=2000000
printf '0 32768 mirror 2 e0 0 e1 0\n' | sctl table load mx -
sctl table resume mx
sctl status mx | grep 'leg e1 0: resync'
sctl wait-resync mx timeout-ms=600000 > $d/wait.out 2>&1 &
waiter=$!
sleep 1
kill "$(cat $d/stop.pid)"
# The resync alone needs half a minute (16 MiB at 2 s per I/O).
start=$SECONDS
if wait "$waiter"; then
    echo "wait-resync succeeded while the server stopped"; exit 1
fi
cat $d/wait.out
grep -F 'wait-resync: mx: the server is stopping (ECANCELED)' $d/wait.out
gone () { ! kill -0 "$1" 2>/dev/null; }
wait_for gone "$(cat $d/stop.pid)"
test $((SECONDS - start)) -lt 15

#!/usr/bin/env bash
# The budget of bounce buffers never closes a cycle of waits.  Two exports
# on one mirror, whose legs' engine takes k1 (AES-256-XTS) natively and
# shares its one keyslot with a third export on a leaf of its own (k3);
# k2 (SM4-XTS) goes through the mirror device's fallback:
#  1. 16 MiB writes of k2 hold bounce buffers while the mirror makes
#     them wait for the overlapping writes of k1 in flight, which need a
#     bounce buffer at the leaves;
#  2. those writes of k1 wait for the keyslot, which writes of k3 hold
#     while they need a bounce buffer too.
# Before the fix no write completed again after a second or two; here
# writes must keep completing on every export.  (Concurrent writes to one
# export never overlap: only the mirror orders overlapping writes.)
# Since the fallback writes in 256 KiB pieces, two writes of k2 no longer
# hold the whole budget, so this checks the waits through the keyslot
# and the mirror; test_bounce's test_nowait checks that a get in a
# mirror's registered write never waits for the budget.
source ./functions.sh
set -e -x

requires_plugin
requires "$PYTHON" -c 'import nbd'

t=test-bounce-deadlock
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k1 64
random_key $d/k2 32
random_key $d/k3 64
cat > $d/ic.conf <<'CONF'
key k1 mode=AES-256-XTS key=+k1
key k2 mode=SM4-XTS key=+k2
key k3 mode=AES-256-XTS key=+k3
engine e keyslots=1 modes=AES-256-XTS
leaf d0 memory size=64M engine=e
leaf d1 memory size=64M engine=e
leaf d2 memory size=64M engine=e
device m
  0 131072 mirror 2 d0 0 d1 0
end
export a device=m
  map 0 64M key=k1
end
export b device=m
  map 0 64M key=k2
end
export c device=d2
  map 0 64M key=k3
end
CONF
chmod 600 $d/ic.conf
start_nbdkit -P $d/pid -U $d/sock --threads=16 $PLUGIN config=$d/ic.conf

# Under the sanitizers a 16 MiB write takes seconds to encrypt.
stall=4 seconds=10
if [ -n "$SANITIZER_PRELOAD" ]; then stall=30 seconds=60; fi
"$PYTHON" - $d/sock $stall $seconds <<'PY'
import nbd, os, sys, threading, time

sock = sys.argv[1]
stall_limit, seconds = int(sys.argv[2]), int(sys.argv[3])
done = {"a": 0, "b": 0, "c": 0}
stop = False

def worker(name, size, off):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    buf = os.urandom(size)
    while not stop:
        h.pwrite(buf, off)
        done[name] += 1

for i in range(4):
    threading.Thread(target=worker, args=("a", 1 << 20, (i % 2) << 20),
                     daemon=True).start()
    threading.Thread(target=worker, args=("c", 1 << 20, i << 20),
                     daemon=True).start()
for i in range(2):
    threading.Thread(target=worker, args=("b", 16 << 20, 0),
                     daemon=True).start()
last = dict(done)
stalled = 0
for s in range(seconds):
    time.sleep(1)
    cur = dict(done)
    print(s, cur, flush=True)
    stalled = stalled + 1 if cur == last else 0
    last = cur
    if stalled >= stall_limit:
        print("no write completed for %d s: deadlock" % stalled, flush=True)
        os._exit(1)
stop = True
if not all(last.values()):
    print("an export never completed a write:", last, flush=True)
    os._exit(1)
# Threads blocked in pwrite are left to die with the process.
os._exit(0)
PY

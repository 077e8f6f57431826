#!/usr/bin/env bash
# The connection pool of a remote NBD leaf under concurrent requests.
# 1. A peer without multi-conn (one connection) stops answering while 8
#    requests are queued: each fails with EIO within a command timeout
#    and one reconnection timeout, not one after another (8 x timeout=).
# 2. A multi-conn peer that takes one connection only: the leaf's extra
#    connections fail, and concurrent requests must still all succeed on
#    the one that works instead of failing with EIO.
# 3. The peer's errors reach the client, but its ESHUTDOWN (the peer is
#    going away) becomes EIO: from us it would say that we are.
source ./functions.sh
set -e -x

requires_plugin
requires "$PYTHON" -c 'import nbd'
# (Not 'requires nbdkit --filter=multi-conn memory 1M --version': under
# the sanitizer build's LeakSanitizer nbdkit's filters leak at exit, which
# would skip the test; the filters come with nbdkit.)

t=test-remote-pool
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k 64
start_nbdkit -P $d/p1.pid -U $d/p1.sock --filter=multi-conn memory 8M \
    multi-conn-mode=disable
cleanup_fn kill -CONT $(cat $d/p1.pid)
start_nbdkit -P $d/p2.pid -U $d/p2.sock --filter=limit memory 8M limit=1
for e in ESHUTDOWN ENOSPC; do
    start_nbdkit -P $d/$e.pid -U $d/$e.sock --filter=error memory 8M \
        error=$e error-pread-rate=100% error-pwrite-rate=100%
done
cat > $d/ic.conf <<CONF
key k key=+k
leaf r1 nbd=nbd+unix:///?socket=$d/p1.sock timeout=2
leaf r2 nbd=nbd+unix:///?socket=$d/p2.sock timeout=2
export hang device=r1 key=k
export limited device=r2 key=k
leaf r3 nbd=nbd+unix:///?socket=$d/ESHUTDOWN.sock timeout=2
leaf r4 nbd=nbd+unix:///?socket=$d/ENOSPC.sock timeout=2
export eshutdown device=r3 key=k
export enospc device=r4 key=k
CONF
start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf

"$PYTHON" - $d/sock $(cat $d/p1.pid) <<'PY'
import errno, nbd, os, signal, sys, threading, time
sock, peer = sys.argv[1], int(sys.argv[2])
N = 8

def handles(name):
    hs = []
    for _ in range(N):
        h = nbd.NBD()
        h.set_export_name(name)
        h.connect_unix(sock)
        hs.append(h)
    return hs

def stopped(pid):
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
    return True

# 1. Queued behind a stopped peer.
hs = handles("hang")
hs[0].pwrite(os.urandom(65536), 0)
os.kill(peer, signal.SIGSTOP)
deadline = time.monotonic() + 10
while not stopped(peer):
    assert time.monotonic() < deadline, "the peer did not stop"
    time.sleep(0.01)
took = [None] * N
def read(i):
    t0 = time.monotonic()
    try:
        hs[i].pread(4096, 4096 * i)
        took[i] = "succeeded"
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
        took[i] = time.monotonic() - t0
try:
    ts = [threading.Thread(target=read, args=(i,)) for i in range(N)]
    for t in ts: t.start()
    for t in ts: t.join()
finally:
    os.kill(peer, signal.SIGCONT)
print("queued requests failed after", took)
assert all(isinstance(x, float) for x in took), took
# A command timeout (2 s) and a reconnection timeout (2 s), and slack.
assert max(took) < 6, "a queued request waited %.1f s" % max(took)

# 2. A peer that takes one connection.
hs = handles("limited")
errors = []
def io(i):
    d = os.urandom(4096)
    for _ in range(100):
        try:
            hs[i].pwrite(d, 4096 * i)
            assert hs[i].pread(4096, 4096 * i) == d
        except nbd.Error as e:
            errors.append(e)
ts = [threading.Thread(target=io, args=(i,)) for i in range(N)]
for t in ts: t.start()
for t in ts: t.join()
print("%d errors on the one-connection peer" % len(errors))
assert not errors, errors[:3]

# 3. The peer's errors.
for name, want in (("eshutdown", errno.EIO), ("enospc", errno.ENOSPC)):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    for op in (lambda: h.pread(4096, 0), lambda: h.pwrite(b"x" * 4096, 0)):
        try:
            op()
            assert False, "%s: no error" % name
        except nbd.Error as e:
            assert e.errnum == want, (name, e.errnum)
    h.shutdown()
print("the peers' errors mapped")
PY

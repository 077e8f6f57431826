#!/usr/bin/env bash
# A remote NBD leaf whose peer stops answering without closing the
# connection (a stopped process, a partition): requests fail with EIO after
# the leaf's timeout= instead of hanging, and once the peer answers again
# the leaf reconnects and the data is all there.  A server stopped while
# its peer does not answer exits after the timeout (it waited for ever for
# the peer to close the connection, and needed SIGKILL).
source ./functions.sh
set -e -x

requires_plugin
requires "$PYTHON" -c 'import nbd'

t=test-remote-hang
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k 64
truncate -s 8M $d/peer.img
start_nbdkit -P $d/peer.pid -U $d/peer.sock file $d/peer.img
cleanup_fn kill -CONT $(cat $d/peer.pid)
cat > $d/ic.conf <<CONF
key k key=+k
leaf r0 nbd=nbd+unix:///?socket=$d/peer.sock timeout=2
export vol device=r0 key=k
CONF
start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf

"$PYTHON" - "nbd+unix:///vol?socket=$d/sock" $(cat $d/peer.pid) <<'PY'
import errno, nbd, os, signal, sys, time
uri, peer = sys.argv[1], int(sys.argv[2])
h = nbd.NBD()
h.connect_uri(uri)
data = os.urandom(1 << 20)
h.pwrite(data, 0)
h.flush()

def stopped(pid):
    """True once every thread of @pid is stopped (kill() returns before
    they are: a thread already running may still answer)."""
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
    return True

os.kill(peer, signal.SIGSTOP)
deadline = time.monotonic() + 10
while not stopped(peer):
    assert time.monotonic() < deadline, "the peer did not stop"
    time.sleep(0.01)
try:
    for i in range(3):
        t0 = time.monotonic()
        try:
            h.pread(65536, 0)
            raise SystemExit("a read succeeded while the peer was stopped")
        except nbd.Error as e:
            took = time.monotonic() - t0
            assert e.errnum == errno.EIO, e
        print("request %d failed with EIO after %.2f s" % (i, took))
        # The first waits for the 2 s timeout; later ones find the peer
        # unreachable (no reconnect yet, or one that times out too).
        assert took < 6, "a request hung for %.1f s" % took
finally:
    os.kill(peer, signal.SIGCONT)

# The peer answers again: the leaf reconnects (backoff up to 5 s).
deadline = time.monotonic() + 30
while True:
    try:
        back = h.pread(1 << 20, 0)
        break
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
        assert time.monotonic() < deadline, "the leaf never reconnected"
        time.sleep(0.2)
assert back == data, "data lost across the outage"
print("reconnected; data intact")
PY

# Stop the server while the peer is stopped: its connections to the peer
# are open (the reconnect above), and the peer cannot close them.
peer=$(cat $d/peer.pid)
pid=$(cat $d/pid)
# Whether every thread of $1 has stopped (kill returns before they have:
# one still running could answer the disconnect).
stopped ()
{
    local t s
    for t in /proc/$1/task/*/stat; do
        s=$(< $t)
        case "${s##*) }" in T*|t*) ;; *) return 1 ;; esac
    done
}
kill -STOP $peer
wait_for stopped $peer
kill $pid
start=$(date +%s)
for _ in $(seq 300); do
    running $pid || break
    sleep 0.1
done
kill -CONT $peer
fails running $pid
took=$(( $(date +%s) - start ))
echo "the server exited in $took s"
# 2 s for the peer, and nbdkit's own exit.
test $took -le 10

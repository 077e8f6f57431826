#!/usr/bin/env bash
# A write to a remote NBD leaf that times out may still be carried out by
# the peer later.  It fails with EIO, and it must not land on top of a
# write acknowledged after it: until the peer has answered it, writes
# wait for it (up to the leaf's timeout=) or fail with EIO; reads go on.
#
# The peer is a second inlinecrypt server with a plain file leaf (map
# none), slowed down through its control socket: a write (then a
# WRITE_ZEROES) times out after 1 s and lands 3 s after it started.  A
# write tried meanwhile must fail with EIO, or succeed only after the old
# one landed; a read sees the old data or the new, never half of each; a
# write acknowledged after that is what reads back once the old command
# would have landed.  Meanwhile the server's status shows the leaf's
# writes fenced, by that command, and not once the fence is lifted.
# Twice: against a peer with multi-conn (a pool of connections) and one
# without (a single connection: a read during the wait must not hang
# behind the timed-out write).  Last, the peer is
# killed while such a write runs on it: writes must not wait for it for
# ever.
source ./functions.sh
set -e -x

requires_plugin
requires "$PYTHON" -c 'import nbd'
requires nbdkit --filter=multi-conn null --version

t=test-remote-timeout-write
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k 64

# Peer $1 and the server whose leaf N is an export of it.
configure ()
{
    cat > $d/peer$1.conf <<CONF
leaf RL file=$d/peer$1.img size=8M
export plain device=RL
  map 0 8M none
end
control socket=$d/peer$1-ctl.sock
CONF
    cat > $d/ic$1.conf <<CONF
key k key=+k
engine e1 modes=AES-256-XTS:4096
leaf N nbd=nbd+unix:///?socket=$d/peer$1.sock engine=e1 timeout=1
export v device=N key=k
control socket=$d/ic$1-ctl.sock
CONF
}

# Gone, or a zombie whose threads have all exited, closing its sockets
# (as in test-crash-recovery.sh).
gone ()
{
    [ -d /proc/$1 ] || return 0
    grep -q '^[0-9]* (.*) Z' /proc/$1/stat 2>/dev/null &&
        [ "$(ls /proc/$1/task 2>/dev/null | wc -l)" -le 1 ]
}

run ()
{
    "$PYTHON" - "nbd+unix:///v?socket=$d/sock$1" "$INLINECRYPTCTL" \
        $d/peer$1-ctl.sock "$2" "nbd+unix:///?socket=$d/peer$1.sock" \
        $d/ic$1-ctl.sock <<'PY'
import errno, json, nbd, subprocess, sys, time
uri, ctlbin, ctlsock, op, peer, icsock = sys.argv[1:]

p = nbd.NBD()
p.connect_uri(peer)
print("peer multi-conn: %s" % bool(p.can_multi_conn()))
p.shutdown()

def ctl(*args):
    subprocess.run([ctlbin, "-s", ctlsock] + list(args), check=True)

# The leaf N as the server's status shows it, in JSON and in text.
def status_n():
    out = subprocess.run([ctlbin, "-s", icsock, "--json", "status", "N"],
                         check=True, capture_output=True, text=True).stdout
    (n,) = json.loads(out)["devices"]
    text = subprocess.run([ctlbin, "-s", icsock, "status", "N"], check=True,
                          capture_output=True, text=True).stdout
    return n, text

def fails_eio(fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
        return True
    return False

h = nbd.NBD()
h.connect_uri(uri)
old, A, B = b"o" * 4096, b"A" * 4096, b"B" * 4096
if op == "zero":
    A = bytes(4096)
h.pwrite(old, 0)
assert h.pread(4096, 0) == old
n, text = status_n()
assert n["writes_fenced"] is False and n["unanswered_writes"] == 0, n
assert "fenced_by" not in n and "fenced" not in text, (n, text)

# The peer takes 3 s per request from now on; the leaf waits 1 s.
ctl("fault", "RL", "io-delay-us=3000000")
t0 = time.monotonic()
if op == "zero":
    assert fails_eio(h.zero, 4096, 0), "a slow zero did not time out"
else:
    assert fails_eio(h.pwrite, A, 0), "a slow write did not time out"
print("%s failed with EIO after %.2f s" % (op, time.monotonic() - t0))
ctl("fault", "RL", "clear")
landed = t0 + 3

# The fence shows in status, with the command that set it.
n, text = status_n()
print(text)
assert n["writes_fenced"] is True and n["unanswered_writes"] == 1, n
assert n["fenced_by"] == {"op": op, "offset": 0, "length": 4096}, n
assert ("writes fenced: 1 timed-out write(s) not yet answered, the first "
        "%s 4096 bytes at 0" % op) in text, text

# The old command is still running on the peer: a write must not get
# ahead of it.
ok = not fails_eio(h.pwrite, B, 0)
took = time.monotonic() - t0
print("write while fenced: %s after %.2f s" % ("ok" if ok else "EIO", took))
assert not ok or took >= 3, \
    "a write was acknowledged %.2f s in, before the old one landed" % took
# Reads are not held back: old or new data, never a mix.
t1 = time.monotonic()
back = h.pread(4096, 0)
assert time.monotonic() - t1 < 1, "a read waited for the old write"
assert back in (old, A), "a read during the wait got %r" % back[:16]

# Once the old command has landed, writes go through again.
while not ok:
    assert time.monotonic() < t0 + 30, "writes stayed fenced"
    ok = not fails_eio(h.pwrite, B, 0)
print("write ok after %.2f s" % (time.monotonic() - t0))
assert h.pread(4096, 0) == B
n, text = status_n()
assert n["writes_fenced"] is False and n["unanswered_writes"] == 0, n
assert "fenced_by" not in n and "fenced" not in text, (n, text)

# Past the time the old command would have landed, B is still there.
time.sleep(max(0, landed + 1 - time.monotonic()))
back = h.pread(4096, 0)
assert back == B, "an acknowledged write was overwritten by %r" % back[:16]
print("%s: the acknowledged write is still there" % op)
PY
}

# A peer with multi-conn: a pool of four connections.
configure 1
start_nbdkit -P $d/peer1.pid -U $d/peer1.sock $PLUGIN config=$d/peer1.conf
wait_for test -S $d/peer1-ctl.sock
start_nbdkit -P $d/pid1 -U $d/sock1 $PLUGIN config=$d/ic1.conf
run 1 write
run 1 zero

# A peer without multi-conn: one connection.
configure 2
start_nbdkit -P $d/peer2.pid -U $d/peer2.sock --filter=multi-conn $PLUGIN \
    config=$d/peer2.conf multi-conn-mode=disable
wait_for test -S $d/peer2-ctl.sock
start_nbdkit -P $d/pid2 -U $d/sock2 $PLUGIN config=$d/ic2.conf
run 2 write
run 2 zero

# The peer dies while a write that timed out is still running on it: its
# fate cannot be known any more, and writes no longer wait for it.  They
# go on once the peer is back (the leaf reconnects with backoff).
"$PYTHON" - "nbd+unix:///v?socket=$d/sock1" "$INLINECRYPTCTL" \
    $d/peer1-ctl.sock <<'PY'
import errno, nbd, subprocess, sys
uri, ctlbin, ctlsock = sys.argv[1:]
subprocess.run([ctlbin, "-s", ctlsock, "fault", "RL", "io-delay-us=3000000"],
               check=True)
h = nbd.NBD()
h.connect_uri(uri)
try:
    h.pwrite(b"A" * 4096, 0)
    raise SystemExit("a slow write did not time out")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
PY
pid=$(cat $d/peer1.pid)
kill -9 $pid
wait_for gone $pid
rm -f $d/peer1.sock
start_nbdkit -P $d/peer1.pid -U $d/peer1.sock $PLUGIN config=$d/peer1.conf
"$PYTHON" - "nbd+unix:///v?socket=$d/sock1" <<'PY'
import errno, nbd, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
B = b"C" * 4096
t0 = time.monotonic()
while True:
    try:
        h.pwrite(B, 0)
        break
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
        assert time.monotonic() < t0 + 30, "writes stayed fenced"
        time.sleep(0.2)
print("write ok after %.2f s" % (time.monotonic() - t0))
assert h.pread(4096, 0) == B
PY

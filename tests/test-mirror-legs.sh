#!/usr/bin/env bash
# Which mirror leg the data is kept on when legs fail, resynchronise and
# are re-added:
# 1. a write that only a resynchronising leg could take never fails the
#    in-sync leg that refused it, even with the resynchronising leg
#    listed first;
# 2. when every leg has failed, re-adding them resynchronises from the
#    leg that failed last, which holds every acknowledged write, even
#    when it is not the first leg;
# 3. with per_child_fallback, a leg that has no fallback (its own
#    fallback=false, or "fallback enabled=false") narrows what the mirror
#    advertises to what the leg takes natively: contexts it cannot take
#    go through the mirror's fallback, or fail at the top, and never fail
#    the leg; a reload that would narrow the live capabilities that way
#    is refused;
# 4. a write that only a leg failed meanwhile (by another request) took
#    is not acknowledged: the leg that fails after it, the one a reload
#    resynchronises from, does not hold it; nor is one whose leg that
#    took it is failed by another request after it took it;
# 5. overlapping writes reach both legs in the same order: the legs hold
#    the same data after, and reads do not alternate;
# 6. as 2, but the legs are re-added split in two mirror targets: the leg
#    that failed last is still the source of each.
# 7. a reload whose mirror keeps legs of the live one but none of those
#    in sync, while the live mirror has one, is refused: it would copy a
#    leg that failed before, or one only part copied, over the others.
source ./functions.sh
set -e -x

requires_plugin
requires "$PYTHON" -c 'import nbd'

t=test-mirror-legs
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k1 64
cat > $d/ic.conf <<'CONF'
key k1 key=+k1
control socket=ctl.sock
# 1. m1 starts with a1 alone; b1 is hot-added, listed first.
engine ea keyslots=2 modes=AES-256-XTS:4096
engine eb keyslots=2 modes=AES-256-XTS:4096
leaf a1 memory size=8M engine=ea
leaf b1 memory size=8M engine=eb
device m1
  0 16384 mirror 1 a1 0
end
export vol1 device=m1 key=k1
# 2. Both legs of m2 fail, a2 first.
leaf a2 memory size=4M engine=ea
leaf b2 memory size=4M engine=eb
device m2
  0 8192 mirror 2 a2 0 b2 0
end
export vol2 device=m2 key=k1
# 3. b3 and b4 take only 512-byte units and have no fallback.
engine e512 keyslots=2 modes=AES-256-XTS:512
leaf a3 memory size=4M engine=ea
leaf b3 memory size=4M engine=e512 fallback=false
device m3 options=per_child_fallback
  0 8192 mirror 2 b3 0 a3 0
end
export vol3 device=m3 key=k1
leaf a4 memory size=4M engine=ea
leaf b4 memory size=4M engine=e512 fallback=false
device m4 options=per_child_fallback
  0 8192 mirror 1 a4 0
end
CONF
# 4-6. Two-leg mirrors m6 to m9, each on its export (vol6 with a key),
#    the legs of m8 on exports of their own too, to read each.
for n in 6 7 8 9; do
    cat >> $d/ic.conf <<CONF
leaf a$n memory size=4M
leaf b$n memory size=4M
device m$n
  0 8192 mirror 2 a$n 0 b$n 0
end
export vol$n device=m$n
$(if [ $n = 6 ]; then echo "  map 0 4M key=k1"; fi)
end
CONF
done
cat >> $d/ic.conf <<CONF
leaf a10 memory size=4M
leaf b10 memory size=4M
leaf c10 memory size=4M
device m10
  0 8192 mirror 2 a10 0 b10 0
end
export vol10 device=m10 key=k1
export a8 device=a8
end
export b8 device=b8
end
CONF
start_nbdkit -P $d/pid -U $d/sock -v --log=stderr $PLUGIN config=$d/ic.conf 2> $d/log
wait_for test -S $d/ctl.sock
ctl () { inlinecryptctl -s $d/ctl.sock "$@"; }
export PYTHONPATH="$srcdir${PYTHONPATH:+:$PYTHONPATH}"   # nbdhelp
# Reload device $1 with the table lines $2 (printf format), and wait for
# its resync.
reload () {
    printf "$2" | ctl table load $1 -
    ctl table resume $1
    ctl wait-resync $1 timeout-ms=60000
}
# On export $1 of a mirror with legs $2 and $3: write A, then B, which
# fails $2 and is acknowledged by $3 alone, then C, which fails $3: both
# legs are failed, and $3 failed last.
fail_in_turn () {
    "$PYTHON" - "nbd+unix:///$1?socket=$d/sock" $d/ctl.sock "$INLINECRYPTCTL" \
              "$2" "$3" <<'PY'
import nbd, sys
from nbdhelp import connect, ctl_runner
uri, sock, ctl, first, last = sys.argv[1:]
run = ctl_runner(sock, ctl)
h = connect(uri)
h.pwrite(b"A" * 4096, 0)
run("fault", first, "io-error=write", "count=1")
h.pwrite(b"B" * 4096, 0)
assert h.pread(4096, 0) == b"B" * 4096
run("fault", last, "io-error=write", "count=1")
try:
    h.pwrite(b"C" * 4096, 4096)
    raise SystemExit("write C succeeded with no leg left")
except nbd.Error:
    pass
PY
}
# Every read of the 4 KiB at $2 of export $1, on both legs in turn, is
# the byte $3 repeated; else fail saying $4.
reads_back () {
    "$PYTHON" - "nbd+unix:///$1?socket=$d/sock" "$2" "$3" "$4" <<'PY'
import nbd, sys
uri, offset, byte, why = sys.argv[1:]
h = nbd.NBD(); h.connect_uri(uri)
for _ in range(4):                      # both legs, in turn
    assert h.pread(4096, int(offset)) == byte.encode() * 4096, why
PY
}

# 1. While b1, listed first, resynchronises (slowly), a write reaches
#    a1, the only in-sync leg, whose keyslot program fails with ENOMEM.
#    The write fails, a1 stays in sync, b1's resync completes, and every
#    read returns the data written before.  (Before, b1 took the write
#    first, so a1 was failed and nothing was left to copy from.)
head -c 8M /dev/urandom > $d/data1
"$PYTHON" - "nbd+unix:///vol1?socket=$d/sock" $d/data1 <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
data = open(sys.argv[2], "rb").read()
for o in range(0, len(data), 1 << 20):
    h.pwrite(data[o:o + (1 << 20)], o)
h.flush()
PY
ctl fault b1 io-delay-us=100000
printf '0 16384 mirror 2 b1 0 a1 0\n' | ctl table load m1 -
ctl table resume m1
ctl status m1 | grep 'leg b1 0: resync'
ctl evict k1 m1
ctl fault ea program-fail=1,errno=ENOMEM
"$PYTHON" - "nbd+unix:///vol1?socket=$d/sock" <<'PY'
import errno, nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
try:
    h.pwrite(b"\x55" * 4096, 6 << 20)
    raise SystemExit("the write succeeded despite a1's program fault")
except nbd.Error as e:
    assert e.errnum == errno.ENOMEM, e
PY
ctl status m1 | grep 'leg a1 0: active'
ctl fault b1 clear
ctl wait-resync m1 timeout-ms=60000
ctl status m1 | grep 'leg a1 0: active'
ctl status m1 | grep 'leg b1 0: active'
"$PYTHON" - "nbd+unix:///vol1?socket=$d/sock" $d/data1 <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
data = open(sys.argv[2], "rb").read()
for _ in range(2):                      # both legs, in turn
    for o in range(0, len(data), 1 << 20):
        assert h.pread(1 << 20, o) == data[o:o + (1 << 20)], o
PY

# 2. a2 fails on write B, b2 takes it (acknowledged), then b2 fails on
#    write C.  Re-adding both legs makes b2 the source: B reads back, on
#    either leg, and both legs end up with the same ciphertext.
fail_in_turn vol2 a2 b2
ctl status m2 | grep 'leg a2 0: failed'
ctl status m2 | grep 'leg b2 0: failed'
reload m2 '0 8192 mirror 2 a2 0 b2 0\n'
ctl status m2 | grep 'leg a2 0: active'
ctl status m2 | grep 'leg b2 0: active'
reads_back vol2 0 B "acknowledged write B lost"
#    The choice of the source is logged, although the resume that made it
#    (a control command, whose errors go to its reply) succeeded.
grep 'm2: mirror: no leg is known to hold the data; b2, the leg that stayed in sync longest, is the source' $d/log

# 3. k1 (4096-byte units) is not advertised by m3, since b3 cannot take
#    it: m3's fallback encrypts it, both legs take plain I/O, and every
#    read returns the data.  Before, b3 failed on the first write.
ctl status m3 | grep 'modes/AES-256-XTS  0x200$'
"$PYTHON" - "nbd+unix:///vol3?socket=$d/sock" <<'PY'
import nbd, os, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
data = os.urandom(1 << 20)
h.pwrite(data, 0)
for _ in range(4):                      # both legs, in turn
    assert h.pread(1 << 20, 0) == data
PY
ctl status m3 | grep 'leg a3 0: active'
ctl status m3 | grep 'leg b3 0: active'
#    Adding b4 to m4 would drop AES-256-XTS/4096 from it: refused.
printf '0 8192 mirror 2 a4 0 b4 0\n' > $d/m4
fails ctl table load m4 $d/m4 options=per_child_fallback 2> $d/err
cat $d/err
grep 'narrower than the live table' $d/err
grep 'lacks AES-256-XTS/4096' $d/err

# 4. Write A takes both legs as in sync and waits 4 s on a6.  Meanwhile
#    write B fails a6 and is acknowledged with b6 alone, and b6 is made
#    to fail writes.  A then lands on a6, failed since, and fails on b6,
#    which fails last: A must not be acknowledged, since the reload
#    copies b6, without A, over a6.  (Before, A was: it counted a6 as in
#    sync from its look at the legs before B.)
"$PYTHON" - "nbd+unix:///vol6?socket=$d/sock" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import sys, time
from nbdhelp import connect, ctl_runner, finish, start_write
uri, sock, ctl = sys.argv[1:]
run = ctl_runner(sock, ctl)
a, b = connect(uri), connect(uri)
a.pwrite(b"O" * 8192, 0)
run("fault", "a6", "io-delay-us=4000000")
cookie = start_write(a, b"A" * 4096, 0)  # reaches a6, waits
time.sleep(1.5)
run("fault", "a6", "io-delay-us=0", "io-error=write", "count=1")
b.pwrite(b"B" * 4096, 4096)             # fails a6; acknowledged by b6
run("fault", "b6", "io-error=write")
t0 = time.monotonic()
acked = finish(a, cookie)
assert time.monotonic() - t0 > 1, "A did not wait on a6: timing off"
assert not acked, "write A acknowledged with only a failed leg holding it"
PY
ctl status m6 | grep 'leg a6 0: failed'
ctl status m6 | grep 'leg b6 0: failed'
ctl fault b6 clear
reload m6 '0 8192 mirror 2 a6 0 b6 0\n'
reads_back vol6 4096 B "acknowledged write B lost"
reads_back vol6 0 O "not what b6 held"

#    Write A lands on a7 and waits 3 s on b7.  Write B fails a7 (and
#    waits on b7 too), then b7 is made to fail writes: A's write there
#    fails, b7 fails last, and only a7, failed before it, holds A.  A must
#    fail: the reload copies b7 over a7.  (Before, A was acknowledged: it
#    counted a7 as in sync right after writing it.)
"$PYTHON" - "nbd+unix:///vol7?socket=$d/sock" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import sys, time
from nbdhelp import connect, ctl_runner, finish, start_write
uri, sock, ctl = sys.argv[1:]
run = ctl_runner(sock, ctl)
a, b = connect(uri), connect(uri)
a.pwrite(b"O" * 8192, 0)
run("fault", "b7", "io-delay-us=3000000")
ca = start_write(a, b"A" * 4096, 0)
time.sleep(1)
run("fault", "a7", "io-error=write", "count=1")
cb = start_write(b, b"B" * 4096, 4096)
time.sleep(0.5)
run("fault", "b7", "io-error=write")
acked = finish(a, ca)
finish(b, cb)
assert not acked, "write A acknowledged with only a7, failed first, holding it"
PY
ctl status m7 | grep 'leg a7 0: failed'
ctl status m7 | grep 'leg b7 0: failed'
ctl fault b7 clear
reload m7 '0 8192 mirror 2 a7 0 b7 0\n'
reads_back vol7 0 O "not what b7 held"

# 5. Write 1 lands on a8 and waits 2 s on b8; write 2, to the same block,
#    goes out meanwhile.  Both are acknowledged, and both legs hold 2, the
#    later one.  (Before, 2 went to a8 then b8 while 1 waited, so a8 held
#    2 and b8 held 1, both legs in sync, and reads alternated.)
"$PYTHON" - "$d/sock" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import sys, time
from nbdhelp import connect, ctl_runner, finish, start_write
sock, ctl_sock, ctl = sys.argv[1:]
def uri(name):
    return "nbd+unix:///%s?socket=%s" % (name, sock)
run = ctl_runner(ctl_sock, ctl)
h1, h2 = connect(uri("vol8")), connect(uri("vol8"))
run("fault", "b8", "io-delay-us=2000000")
c1 = start_write(h1, b"1" * 4096, 0)
time.sleep(0.5)
run("fault", "b8", "io-delay-us=0")
c2 = start_write(h2, b"2" * 4096, 0)
assert finish(h1, c1) and finish(h2, c2)
legs = [connect(uri(name)).pread(4096, 0) for name in ("a8", "b8")]
assert legs[0] == legs[1] == b"2" * 4096, [x[:1] for x in legs]
for _ in range(4):
    assert h1.pread(4096, 0) == b"2" * 4096
PY
ctl status m8 | grep 'leg a8 0: active'
ctl status m8 | grep 'leg b8 0: active'
#    wait-resync says when a leg is failed rather than in sync: a8, made
#    to fail writes, fails on one, then in its resync (it said success).
ctl fault a8 io-error=write
"$PYTHON" -c 'import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"3" * 4096, 0)' \
    "nbd+unix:///vol8?socket=$d/sock"
ctl status m8 | grep 'leg a8 0: failed'
printf '0 8192 mirror 2 a8 0 b8 0\n' | ctl table load m8 -
ctl table resume m8
fails ctl wait-resync m8 timeout-ms=60000 2> $d/err
cat $d/err
grep 'wait-resync: m8: leg a8 0 is failed, not in sync' $d/err
ctl fault a8 clear
reload m8 '0 8192 mirror 2 a8 0 b8 0\n'
ctl status m8 | grep 'leg a8 0: active'

# 6. a9 fails on write B, b9 takes it, then b9 fails on write C.  The
#    legs come back as two mirror targets: b9 is the source of both, and
#    B reads back.  (Before, which leg failed last was kept only for a
#    mirror at the same place: a9, the first leg, was the source.)
fail_in_turn vol9 a9 b9
reload m9 '0 4096 mirror 2 a9 0 b9 0\n4096 4096 mirror 2 a9 4096 b9 4096\n'
reads_back vol9 0 B "acknowledged write B lost"

# 7. b10 fails on write Y, which a10 takes.  A table listing b10 and a new
#    leg c10 is refused (before, b10 was copied over c10: Y was lost),
#    so is one listing c10 alone while it is being copied from a10; the
#    live table stays, and Y reads back.
"$PYTHON" - "nbd+unix:///vol10?socket=$d/sock" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import sys
from nbdhelp import connect, ctl_runner
uri, sock, ctl = sys.argv[1:]
run = ctl_runner(sock, ctl)
h = connect(uri)
h.pwrite(b"X" * 4096, 0)
run("fault", "b10", "io-error=write", "count=1")
h.pwrite(b"Y" * 4096, 0)
PY
ctl status m10 | grep 'leg b10 0: failed'
printf '0 8192 mirror 2 b10 0 c10 0\n' > $d/m10
fails ctl table load m10 $d/m10 2> $d/err
cat $d/err
grep 'keeps legs of the live one but none in sync, while leg a10 0 is' $d/err
ctl table show m10 | grep -A1 live | grep 'mirror 2 a10 0 b10 0'
reads_back vol10 0 Y "acknowledged write Y lost"
ctl fault c10 io-delay-us=200000
printf '0 8192 mirror 2 a10 0 c10 0\n' | ctl table load m10 -
ctl table resume m10
ctl status m10 | grep 'leg c10 0: resync'
printf '0 8192 mirror 1 c10 0\n' > $d/m10
fails ctl table load m10 $d/m10 2> $d/err
cat $d/err
grep 'keeps legs of the live one but none in sync, while leg a10 0 is' $d/err
ctl fault c10 clear
ctl wait-resync m10 timeout-ms=60000
reads_back vol10 0 Y "acknowledged write Y lost"

#    "fallback enabled=false", after the device: m5 advertises only what
#    both legs take natively.  A 512-byte key fails at the top and fails
#    no leg; a 4096-byte key works.
random_key $d/k5 64
cat > $d/ic5.conf <<'CONF'
key k4k key=+k1
key k512 key=+k5 data-unit-size=512
engine e4k keyslots=2 modes=AES-256-XTS:4096
engine eall keyslots=2 modes=AES-256-XTS:512,4096
leaf a5 memory size=4M engine=e4k
leaf b5 memory size=4M engine=eall
device m5 options=per_child_fallback
  0 8192 mirror 2 b5 0 a5 0
end
export v4k device=m5 key=k4k
export v512 device=m5 key=k512
control socket=ctl5.sock
fallback enabled=false
CONF
start_nbdkit -P $d/pid5 -U $d/sock5 $PLUGIN config=$d/ic5.conf
wait_for test -S $d/ctl5.sock
inlinecryptctl -s $d/ctl5.sock status m5 |
    grep 'modes/AES-256-XTS  0x1000$'
"$PYTHON" - "nbd+unix:///v4k?socket=$d/sock5" \
          "nbd+unix:///v512?socket=$d/sock5" <<'PY'
import errno, nbd, os, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
data = os.urandom(65536)
h.pwrite(data, 0)
g = nbd.NBD(); g.connect_uri(sys.argv[2])
try:
    g.pwrite(os.urandom(4096), 0)
    raise SystemExit("a 512-byte key worked with no leg able to take it")
except nbd.Error as e:
    assert e.errnum in (errno.EOPNOTSUPP, errno.EINVAL), e
for _ in range(4):                      # both legs, in turn
    assert h.pread(65536, 0) == data
PY
inlinecryptctl -s $d/ctl5.sock status m5 | grep 'leg a5 0: active'
inlinecryptctl -s $d/ctl5.sock status m5 | grep 'leg b5 0: active'

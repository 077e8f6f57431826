#!/usr/bin/env bash
# Which mirror leg the data is kept on when legs fail, resynchronise and
# are re-added:
# 1. a write that only a resynchronising leg could take never fails the
#    in-sync leg that refused it, even with the resynchronising leg
#    listed first.
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
CONF
start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf
wait_for test -S $d/ctl.sock
ctl () { inlinecryptctl -s $d/ctl.sock "$@"; }

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

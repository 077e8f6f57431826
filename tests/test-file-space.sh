#!/usr/bin/env bash
# A file leaf on a file system that runs out of space.  A write whose data
# units straddle pages (8 KiB units; 4 KiB units one sector off the page
# grid, through a linear target) must fail before changing anything: a
# short write would leave a unit half new, half old, which reads back as
# garbage.  Writes whose units do not straddle need no allocation first: a
# short write stops between units.  A leaf that goes past the server's
# file size limit (RLIMIT_FSIZE) is refused at start, instead of the first
# write there killing the server with SIGXFSZ.
source ./functions.sh
set -e -x

requires_plugin
requires "$PYTHON" -c 'import nbd'

if [ "$(id -u)" != 0 ]; then
    echo "$0: mounting a small tmpfs needs root"
    exit 77
fi

t=test-file-space
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k 64

mkdir $d/small
if ! mount -t tmpfs -o size=512k tmpfs $d/small; then
    echo "$0: cannot mount a tmpfs (no CAP_SYS_ADMIN?)"
    exit 77
fi
cleanup_fn umount $d/small

cat > $d/ic.conf <<EOF
key k8 key=+$d/k data-unit-size=8192
key k4 key=+$d/k data-unit-size=4096
leaf d8 file=$d/small/d8 size=1M
leaf d4 file=$d/small/d4 size=1M
device s4
  0 2040 linear d4 1
end
export v8 device=d8 key=k8
export v4 device=s4 key=k4
EOF
start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf

# Leave 12 KiB (three pages) free.
dd if=/dev/zero of=$d/small/fill bs=4k 2>/dev/null || true
truncate -s -12K $d/small/fill
df $d/small

# export, offset of the write, bytes, where it lands in the leaf's file.
try_write ()
{
    local export=$1 offset=$2 len=$3 at=$4
    "$PYTHON" - $d/sock $export $offset $len $d/small/$5 $at <<'EOF'
import errno, sys
import nbd

sock, export, offset, length, path, at = sys.argv[1:7]
offset, length, at = int(offset), int(length), int(at)
h = nbd.NBD()
h.set_export_name(export)
h.connect_unix(sock)
with open(path, "rb") as f:
    f.seek(at)
    before = f.read(length)
try:
    h.pwrite(b"\x5a" * length, offset)
    sys.exit("the write went through with no space left")
except nbd.Error as e:
    print("refused:", e.string, e.errno)
    # libnbd's Python binding gives the errno's name.
    assert errno.errorcode.get(e.errno, e.errno) == "ENOSPC", e.errno
with open(path, "rb") as f:
    f.seek(at)
    after = f.read(length)
# Nothing of the failed write reached the file: every unit is old.
assert after == before, "the failed write changed the file"
# What is there still reads back (old data, garbage as it was zeros).
h.pread(length, offset)
h.shutdown()
EOF
}

# 16 KiB = two 8 KiB units, four pages; three are free.
try_write v8 0 16384 0 d8
# 16 KiB of 4 KiB units, one sector into the file: five pages.
try_write v4 0 16384 512 d4

# export, offset, bytes: written and read back.
round_trip ()
{
    "$PYTHON" - $d/sock "$@" <<'EOF'
import sys
import nbd

sock, export, offset, length = sys.argv[1:5]
offset, length = int(offset), int(length)
h = nbd.NBD()
h.set_export_name(export)
h.connect_unix(sock)
h.pwrite(b"\xa5" * length, offset)
assert h.pread(length, offset) == b"\xa5" * length
h.shutdown()
EOF
}

# What fits still goes through.
round_trip v8 65536 8192
# With no space left at all, overwriting it needs none and goes through
# (on XFS, allocating the range first would fail: it reserves space for
# allocated blocks too).
dd if=/dev/zero of=$d/small/fill2 bs=4k 2>/dev/null || true
df $d/small
round_trip v8 65536 8192

# With space again, the refused writes go through.
rm $d/small/fill $d/small/fill2
round_trip v8 0 16384
round_trip v4 0 16384

# A write over 256 KiB is encrypted and written 256 KiB at a time, but
# its space is allocated as a whole first: with 300 KiB free, 512 KiB of
# 8 KiB units over holes fail unchanged, not with a first piece written.
dd if=/dev/zero of=$d/small/fill bs=4k 2>/dev/null || true
truncate -s -300K $d/small/fill
df $d/small
try_write v8 262144 524288 262144 d8
rm $d/small/fill

# XFS reserves space for the whole range of an fallocate, allocated or
# not: on a full XFS, allocating before an overwrite would refuse it.  Only
# holes are allocated first.  Where loop devices work (they do on the
# machines CI runs on).
if [ -e /dev/loop-control ] && truncate -s 300M $d/xfs.img &&
   mkfs.xfs -q $d/xfs.img; then
    mkdir $d/xfs
    mount -o loop $d/xfs.img $d/xfs
    cleanup_fn umount $d/xfs
    dd if=/dev/urandom of=$d/xfs/d8 bs=1M count=16
    cat > $d/xfs.conf <<EOF
key k8 key=+$d/k data-unit-size=8192
leaf d8 file=$d/xfs/d8
export v8 device=d8 key=k8
EOF
    start_nbdkit -P $d/xfs.pid -U $d/xfs.sock $PLUGIN config=$d/xfs.conf
    dd if=/dev/zero of=$d/xfs/fill bs=64k 2>/dev/null || true
    df $d/xfs
    "$PYTHON" - $d/xfs.sock <<'EOF'
import sys
import nbd

h = nbd.NBD()
h.set_export_name("v8")
h.connect_unix(sys.argv[1])
for off in range(0, 16 << 20, 1 << 20):
    h.pwrite(b"\x3c" * (1 << 20), off)
assert h.pread(1 << 20, 15 << 20) == b"\x3c" * (1 << 20)
h.shutdown()
EOF
else
    echo "$0: no loop device or mkfs.xfs: the XFS case was not run"
fi

# RLIMIT_FSIZE below the end of a leaf: refused at start, with the reason.
if ( ulimit -f 512 &&
     nbdkit -U - $PLUGIN file=$d/big size=1M key=+$d/k --run true ) \
       2> $d/err; then
    echo "FAIL: a leaf past RLIMIT_FSIZE was accepted"
    exit 1
fi
cat $d/err
grep -F "go past the server's file size limit (RLIMIT_FSIZE, 524288 bytes)" \
     $d/err
# The file it would have created is not left behind.
test ! -e $d/big
# A read-only leaf writes nothing: the limit does not matter.
truncate -s 1M $d/big
( ulimit -f 512 &&
  nbdkit -U - $PLUGIN file=$d/big readonly=true key=+$d/k --run 'nbdinfo "$uri"' )

#!/usr/bin/env bash
# A file leaf on tmpfs decrypts reads of 16 KiB and more straight out of
# its mapping of the file (stack/filemap.h).  Through real clients, on
# the engine path and the fallback path, at 4096- and 512-byte data units:
# - reads return the data; the oracle's ciphertext put in the file reads
#   back as the oracle's plaintext; status counts the reads the view took;
# - holes read as zeros and reading them allocates nothing;
# - a file shrunk under the server reads as zeros past its end, as
#   through pread, and the server goes on serving;
# - IC_NO_FILEMAP=1 turns the view off.
source ./functions.sh
set -e -x

requires_plugin
requires nbdcopy --version
requires "$PYTHON" -c 'import nbd'
requires "$PYTHON" "$srcdir/oracle.py" selftest

t=test-file-view
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
export d
# /dev/shm is tmpfs on every Linux system this runs on; the view is only
# made on tmpfs.
shm=$(mktemp -d /dev/shm/$t.XXXXXX)
cleanup_fn rm -rf "$shm"
test "$(stat -f -c %T "$shm")" = tmpfs

ctl () { inlinecryptctl -s $d/ctl.sock "$@"; }
# Run Python with h connected to $uri (python3-libnbd, as nbdsh -c).
nbdpy () {
    "$PYTHON" -c 'import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
exec(sys.argv[2])' "$uri" "$1"
}
# view_reads of leaf $1.
view_reads () {
    ctl --json status |
        "$PYTHON" -c 'import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["name"] == sys.argv[1]:
        print(d.get("view", "none"), d.get("view_reads", 0))' "$1"
}

head -c 4M /dev/urandom > $d/data
random_key $d/key 64

# engine: keyslots; fallback: an engine without the mode.
for path in engine fallback; do
    for du in 4096 512; do
        rm -f $shm/disk $d/ctl.sock $d/sock
        if [ $path = engine ]; then eng="engine e0 keyslots=2"
        else eng="engine e0 keyslots=2 modes=none"; fi
        cat > $d/ic.conf <<EOF
key k0 mode=AES-256-XTS key=+$d/key data-unit-size=$du
$eng
leaf d0 file=$shm/disk size=8M engine=e0 fallback=true
export vol device=d0
  map 0 8M key=k0
end
control socket=$d/ctl.sock
EOF
        start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf
        wait_for test -S $d/ctl.sock
        uri="nbd+unix:///vol?socket=$d/sock"
        test "$(view_reads d0)" = "on 0"

        # Written through NBD, read back through the view.
        nbdcopy $d/data "$uri"
        nbdcopy "$uri" $d/back
        cmp <(head -c 4M $d/back) $d/data
        cmp <(tail -c 4M $d/back) <(head -c 4M /dev/zero)
        set -- $(view_reads d0)
        test $1 = on
        test $2 -ge 16

        # The oracle's ciphertext in the file reads back as its plaintext.
        head -c 4M /dev/urandom > $d/data2
        oracle encrypt --mode AES-256-XTS --key-file $d/key \
               --data-unit-size $du $d/data2 $d/ct
        dd if=$d/ct of=$shm/disk bs=1M conv=notrunc status=none
        nbdcopy "$uri" $d/back
        cmp <(head -c 4M $d/back) $d/data2

        # Reading the holes (the second half, never written) allocates
        # nothing on tmpfs.
        blocks=$(stat -c %b $shm/disk)
        nbdpy '
buf = h.pread(4 * 1024 * 1024, 4 * 1024 * 1024)
assert buf == bytearray(4 * 1024 * 1024)
'
        test "$(stat -c %b $shm/disk)" = "$blocks"

        # Shrunk under the server: past its end it reads as zeros, as
        # through pread (leaf-file.c), and the server goes on; back to
        # its size, the same.
        for size in 1M 8M; do
            truncate -s $size $shm/disk
            nbdpy '
import os
buf = h.pread(2 * 1024 * 1024, 0)
with open(os.environ["d"] + "/data2", "rb") as f:
    want = f.read(1024 * 1024)
assert buf[:1024 * 1024] == want
assert buf[1024 * 1024:] == bytearray(1024 * 1024)
'
            ctl status > /dev/null
        done
        test "$(view_reads d0 | cut -d' ' -f1)" = on
        _stop_nbdkit $d/pid
    done
done

# IC_NO_FILEMAP=1: no view, the same data.
rm -f $d/ctl.sock $d/sock
IC_NO_FILEMAP=1 start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf
wait_for test -S $d/ctl.sock
nbdcopy "$d/data" "nbd+unix:///vol?socket=$d/sock"
nbdcopy "nbd+unix:///vol?socket=$d/sock" $d/back
cmp <(head -c 4M $d/back) $d/data
test "$(view_reads d0)" = "none 0"

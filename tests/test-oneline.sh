#!/usr/bin/env bash
# The one-line export, end to end: data written through nbdcopy, qemu-img
# and qemu-io reads back through each of them; nbdinfo shows the export.
source ./functions.sh
set -e -x

requires_plugin
requires nbdcopy --version
requires nbdinfo --version
requires qemu-img --version
requires qemu-io --version

t=test-oneline
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
random_key $t.tmp/key 64
head -c 16M /dev/urandom > $t.tmp/data

start_nbdkit -P $t.tmp/pid -U $t.tmp/sock $PLUGIN size=64M key=+$t.tmp/key
uri="nbd+unix:///?socket=$t.tmp/sock"

nbdinfo "$uri" > $t.tmp/info
grep 'export-size: 67108864' $t.tmp/info
grep 'block_size_minimum: 4096' $t.tmp/info
nbdinfo --list "$uri" | grep 'description: inlinecrypt AES-256-XTS/4096'

# A fresh export reads as zeros.
nbdcopy "$uri" $t.tmp/fresh
cmp $t.tmp/fresh <(head -c 64M /dev/zero)

# nbdcopy in, nbdcopy out.
nbdcopy $t.tmp/data "$uri"
nbdcopy "$uri" $t.tmp/back
cmp $t.tmp/data <(head -c 16M $t.tmp/back)

# qemu-img compares the image with the data; qemu-io writes a pattern at an
# offset and reads it back.
qemu-img compare -f raw -F raw $t.tmp/data "$uri"
qemu-io -f raw -c 'write -P 0x5a 32M 1M' "$uri"
qemu-io -f raw -c 'read -P 0x5a 32M 1M' "$uri"
qemu-img convert -O raw "$uri" $t.tmp/converted
cmp $t.tmp/data <(head -c 16M $t.tmp/converted)
cmp <(head -c 1M /dev/zero | tr '\0' '\132') <(tail -c +$((32 * 1048576 + 1)) $t.tmp/converted | head -c 1M)

# Zero and trim read back as zeros, and leave the rest alone.
qemu-io -f raw -c 'write -z 0 1M' -c 'discard 1M 1M' "$uri"
qemu-io -f raw -c 'read -P 0 0 2M' "$uri"
nbdcopy "$uri" $t.tmp/after
cmp <(tail -c +$((2 * 1048576 + 1)) $t.tmp/data) <(head -c 16M $t.tmp/after | tail -c +$((2 * 1048576 + 1)))

# readonly=true: the export says it is read-only, reads what a writable
# export on the same file wrote, and refuses writes, zeroes and trims
# without touching the file.
start_nbdkit -P $t.tmp/rw.pid -U $t.tmp/rw.sock $PLUGIN \
    file=$t.tmp/img size=8M key=+$t.tmp/key
rw="nbd+unix:///?socket=$t.tmp/rw.sock"
nbdinfo --json "$rw" | grep '"is_read_only": false'
head -c 8M $t.tmp/data > $t.tmp/data8
nbdcopy $t.tmp/data8 "$rw"
start_nbdkit -P $t.tmp/ro.pid -U $t.tmp/ro.sock $PLUGIN \
    file=$t.tmp/img readonly=true key=+$t.tmp/key
ro="nbd+unix:///?socket=$t.tmp/ro.sock"
nbdinfo --json "$ro" | grep '"is_read_only": true'
qemu-img compare -f raw -F raw $t.tmp/data8 "$ro"
cp $t.tmp/img $t.tmp/img.before
for cmd in 'write -P 0x11 0 4k' 'write -z 0 4k' 'discard 0 4k'; do
    if qemu-io -f raw -c "$cmd" "$ro" > $t.tmp/qemu-io.out 2>&1; then
        echo "$cmd on a read-only export did not fail"; exit 1
    fi
    grep -i 'permi\|read-only\|read only' $t.tmp/qemu-io.out
done
cmp $t.tmp/img $t.tmp/img.before

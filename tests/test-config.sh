#!/usr/bin/env bash
# A configuration file with several exports and context maps, served to
# several real clients at once (nbdcopy, fio with verify, qemu-img,
# qemu-io, nbdinfo), on an engine with one keyslot that four keys compete
# for: everything reads back, and the oracle checks the ciphertext of each
# range with its own key and DUN base.
source ./functions.sh
set -e -x

requires_plugin
requires nbdcopy --version
requires nbdinfo --version
requires qemu-img --version
requires qemu-io --version
requires fio --version
requires "$PYTHON" "$srcdir/oracle.py" selftest

t=test-config
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k1 64
random_key $d/k2 64
random_key $d/k3 16
random_key $d/k4 32
random_key $d/k5 64
cat > $d/ic.conf <<'CONF'
# Four keys on one engine with a single keyslot.
key k1 mode=AES-256-XTS key=+k1
key k2 mode=AES-256-XTS data-unit-size=512 dun-bytes=4 key=+k2
key k3 mode=AES-128-CBC-ESSIV key=+k3
key k4 mode=SM4-XTS key=+k4
key k5 key=+k5
engine one keyslots=1 program-us=5
leaf d0 file=d0.img size=20M engine=one
leaf d1 file=d1.img size=16M engine=one
device top
  0 20480 linear d0 0
  20480 20480 linear d0 20480
end
export vol0 device=top description="four keys and a plain gap"
  map 0 4M key=k1
  map 4M 4M key=k2 dun-base=100
  map 8M 4M key=k3 dun-base=7
  map 12M 4M key=k4 dun-base=0x10
end
control socket=ctl.sock
CONF
# A description as long as NBD allows (4096 bytes), served whole.
long="$(printf 'description%.0s ' {1..341})tail"
test ${#long} = 4096
echo "export vol1 device=d1 key=k5 description=\"$long\"" >> $d/ic.conf
start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf
uri0="nbd+unix:///vol0?socket=$d/sock"
uri1="nbd+unix:///vol1?socket=$d/sock"

nbdinfo --list "nbd+unix://?socket=$d/sock" > $d/list
grep 'export="vol0"' $d/list
grep 'description: four keys and a plain gap' $d/list
grep 'export="vol1"' $d/list
grep -F "description: $long" $d/list
# The default export is the first one.
nbdinfo "nbd+unix://?socket=$d/sock" | grep 'export-size: 20971520'
if nbdinfo "nbd+unix:///nosuch?socket=$d/sock" 2> $d/err; then exit 1; fi

# Clients at once: nbdcopy on vol0, fio with verification on vol1.
head -c 20M /dev/urandom > $d/data
fio --name=vol1 --ioengine=nbd --uri="$uri1" --rw=randwrite --bs=4k \
    --iodepth=16 --size=16M --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
    --output=$d/fio.log &
fio_pid=$!
nbdcopy $d/data "$uri0"
wait $fio_pid
grep -q 'err= 0' $d/fio.log

nbdcopy "$uri0" $d/back
cmp $d/data $d/back
qemu-img compare -f raw -F raw $d/data "$uri0"
qemu-io -f raw -c 'write -P 0x33 16M 1M' "$uri0"
qemu-io -f raw -c 'read -P 0x33 16M 1M' "$uri0"
dd if=/dev/zero bs=1M count=1 2>/dev/null | tr '\0' '\063' |
    dd of=$d/data bs=1M seek=16 conv=notrunc 2>/dev/null

# The ciphertext of each range, checked by the oracle, with the DUN base
# of its map line; the gap is plain.
range ()    # mode key du base start_mib len_mib
{
    dd if=$d/data of=$d/pt bs=1M skip=$5 count=$6 2>/dev/null
    dd if=$d/d0.img of=$d/ct bs=1M skip=$5 count=$6 2>/dev/null
    oracle encrypt --mode $1 --key-file $d/$2 --data-unit-size $3 \
           --dun-base $4 $d/pt $d/expect
    cmp $d/ct $d/expect
}
range AES-256-XTS k1 4096 0 0 4
range AES-256-XTS k2 512 100 4 4
range AES-128-CBC-ESSIV k3 4096 7 8 4
range SM4-XTS k4 4096 16 12 4
cmp <(tail -c 4M $d/data) <(tail -c 4M $d/d0.img)

# With one keyslot and five keys, the engine reprogrammed many times and
# no request ever ran with the wrong key.
inlinecryptctl -s $d/ctl.sock --json stats > $d/stats.json
"$PYTHON" - $d/stats.json <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["engines"]["one"]
assert e["num_keyslots"] == 1
assert e["programs"] > 5, e
assert e["key_mismatches"] == 0, e
assert set(e["requests"]) == {"AES-256-XTS", "AES-128-CBC-ESSIV", "SM4-XTS"}, e
PY

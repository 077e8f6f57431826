#!/usr/bin/env bash
# The same data written through the emulated engine (keyslots=1) and
# through the software fallback (an engine without the mode) gives
# byte-identical backing files, equal to the oracle's ciphertext, for
# every mode.  fallback=false proves which path each run took: the engine
# run still works without the fallback, the fallback run fails without it.
source ./functions.sh
set -e -x

requires_plugin
requires nbdcopy --version
requires "$PYTHON" "$srcdir/oracle.py" selftest

t=test-fallback
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
head -c 2M /dev/urandom > $t.tmp/data

for c in "AES-256-XTS 64" "AES-128-CBC-ESSIV 16" "Adiantum 32" "SM4-XTS 32"; do
    set -- $c
    mode=$1 keylen=$2
    random_key $t.tmp/key $keylen
    common="size=2M mode=$mode key=+$t.tmp/key data-unit-size=4096"

    # Engine path, one keyslot, no fallback to hide behind.
    rm -f $t.tmp/engine $t.tmp/fb
    nbdkit -U - $PLUGIN file=$t.tmp/engine $common keyslots=1 \
           fallback=false --run "nbdcopy $t.tmp/data \"\$uri\""

    # Fallback path: the engine takes no mode at all.
    nbdkit -U - $PLUGIN file=$t.tmp/fb $common engine-modes=none \
           --run "nbdcopy $t.tmp/data \"\$uri\""
    cmp $t.tmp/engine $t.tmp/fb

    # Reading back through the other path gives the data.
    nbdkit -U - $PLUGIN file=$t.tmp/engine $common engine-modes=none \
           --run "nbdcopy \"\$uri\" $t.tmp/back"
    cmp $t.tmp/data $t.tmp/back
    nbdkit -U - $PLUGIN file=$t.tmp/fb $common keyslots=1 fallback=false \
           --run "nbdcopy \"\$uri\" $t.tmp/back"
    cmp $t.tmp/data $t.tmp/back

    # Without the fallback, an engine lacking the mode cannot do the I/O.
    if nbdkit -U - $PLUGIN file=$t.tmp/fb $common engine-modes=none \
              fallback=false --run "nbdcopy \"\$uri\" $t.tmp/back" \
              2> $t.tmp/err; then
        echo "FAIL: I/O without engine support or fallback succeeded"
        exit 1
    fi
    grep -F "is not supported and the fallback is off" $t.tmp/err

    if [ $mode != Adiantum ]; then
        oracle encrypt --mode $mode --key-file $t.tmp/key \
               --data-unit-size 4096 $t.tmp/data $t.tmp/expect
        cmp $t.tmp/engine $t.tmp/expect
    fi
done

# In a configuration file, "fallback enabled=false" overrides a leaf's
# fallback=true, wherever the line is.
random_key $t.tmp/key 64
for off in "" "fallback enabled=false"; do
    cat > $t.tmp/ic.conf <<CONF
$off
key k key=+key
engine e modes=none
leaf d0 file=fbconf.img size=2M engine=e fallback=true
export v device=d0 key=k
CONF
    rm -f $t.tmp/fbconf.img
    if nbdkit -U - $PLUGIN config=$t.tmp/ic.conf \
              --run "nbdcopy $t.tmp/data \"\$uri\"" 2> $t.tmp/err; then
        test -z "$off"
    else
        test -n "$off"
        grep -F "d0: AES-256-XTS/4096 with 8 DUN bytes is not supported and the fallback is off" $t.tmp/err
    fi
done

# An engine that has the mode but not the data unit size, or too few DUN
# bytes, also sends the I/O to the fallback: same bytes again.
random_key $t.tmp/key 64
rm -f $t.tmp/a $t.tmp/b $t.tmp/c
nbdkit -U - $PLUGIN file=$t.tmp/a size=2M key=+$t.tmp/key \
       engine-modes=AES-256-XTS:512 --run "nbdcopy $t.tmp/data \"\$uri\""
nbdkit -U - $PLUGIN file=$t.tmp/b size=2M key=+$t.tmp/key dun-bytes=8 \
       max-dun-bytes=4 --run "nbdcopy $t.tmp/data \"\$uri\""
nbdkit -U - $PLUGIN file=$t.tmp/c size=2M key=+$t.tmp/key keyslots=1 \
       fallback=false --run "nbdcopy $t.tmp/data \"\$uri\""
cmp $t.tmp/a $t.tmp/c
cmp $t.tmp/b $t.tmp/c

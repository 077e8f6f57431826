#!/usr/bin/env bash
# The ciphertext on the backing file is exactly what Linux writes, checked
# by an independent oracle (python3-cryptography), in both directions:
# data written through NBD lands as the oracle's ciphertext, and the
# oracle's ciphertext put in the file reads back through NBD as the data.
source ./functions.sh
set -e -x

requires_plugin
requires nbdcopy --version
requires "$PYTHON" "$srcdir/oracle.py" selftest

t=test-oracle
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp

# mode, key bytes, data unit size, dun-base
cases=(
    "AES-256-XTS 64 4096 0"
    "AES-256-XTS 64 512 0"
    "AES-256-XTS 64 4096 0xffffffffffffff00"
    "AES-128-CBC-ESSIV 16 4096 7"
    "AES-128-CBC-ESSIV 16 512 0"
    "SM4-XTS 32 4096 0"
    "SM4-XTS 32 512 123456789"
)
head -c 1M /dev/urandom > $t.tmp/data

for c in "${cases[@]}"; do
    set -- $c
    mode=$1 keylen=$2 du=$3 base=$4
    dunbytes=8
    random_key $t.tmp/key $keylen
    rm -f $t.tmp/disk
    # Data in through NBD; the file must equal the oracle's ciphertext.
    nbdkit -U - $PLUGIN file=$t.tmp/disk size=1M mode=$mode \
           key=+$t.tmp/key data-unit-size=$du dun-base=$base \
           dun-bytes=$dunbytes \
           --run "nbdcopy $t.tmp/data \"\$uri\""
    oracle encrypt --mode $mode --key-file $t.tmp/key \
           --data-unit-size $du --dun-base $base $t.tmp/data $t.tmp/expect
    cmp $t.tmp/disk $t.tmp/expect

    # The oracle's ciphertext out through NBD must be the data.
    head -c 1M /dev/urandom > $t.tmp/data2
    oracle encrypt --mode $mode --key-file $t.tmp/key \
           --data-unit-size $du --dun-base $base $t.tmp/data2 $t.tmp/disk
    nbdkit -U - $PLUGIN file=$t.tmp/disk mode=$mode key=+$t.tmp/key \
           data-unit-size=$du dun-base=$base dun-bytes=$dunbytes \
           --run "nbdcopy \"\$uri\" $t.tmp/back"
    cmp $t.tmp/data2 $t.tmp/back
done

# A DUN base that makes the data units cross from limb 0 into limb 1 of
# the DUN: 2^64 - 4 with 16 DUN bytes.
random_key $t.tmp/key 64
rm -f $t.tmp/disk
head -c 64K $t.tmp/data > $t.tmp/data64k
nbdkit -U - $PLUGIN file=$t.tmp/disk size=64K key=+$t.tmp/key \
       data-unit-size=4096 dun-bytes=16 dun-base=0xfffffffffffffffc \
       --run "nbdcopy $t.tmp/data64k \"\$uri\""
oracle encrypt --mode AES-256-XTS --key-file $t.tmp/key \
       --data-unit-size 4096 --dun-base 0xfffffffffffffffc \
       $t.tmp/data64k $t.tmp/expect
cmp $t.tmp/disk $t.tmp/expect

# Adiantum has no oracle here (the known-answer tests cover it): check the
# round trip and that the file is not the plain data.
random_key $t.tmp/key 32
rm -f $t.tmp/disk
nbdkit -U - $PLUGIN file=$t.tmp/disk size=1M mode=Adiantum \
       key=+$t.tmp/key --run "nbdcopy $t.tmp/data \"\$uri\"; nbdcopy \"\$uri\" $t.tmp/back"
cmp $t.tmp/data $t.tmp/back
fails cmp -s $t.tmp/data $t.tmp/disk

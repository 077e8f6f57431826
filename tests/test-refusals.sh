#!/usr/bin/env bash
# Every bad parameter of the one-line form makes nbdkit refuse to start,
# with one clear message naming the parameter, and changes nothing: no
# backing file is created.  No message contains key bytes.
source ./functions.sh
set -e -x

requires_plugin

t=test-refusals
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
random_key $t.tmp/key64 64
random_key $t.tmp/key32 32
random_key $t.tmp/key16 16
printf '%s' "$(cat $t.tmp/key64)" | sed 's/^./z/' > $t.tmp/badhex
chmod 600 $t.tmp/badhex
printf 'abc' > $t.tmp/odd && chmod 600 $t.tmp/odd
# An XTS key whose two halves are equal.
h=$(head -c 64 $t.tmp/key64)
printf '%s%s' "$h" "$h" > $t.tmp/weak && chmod 600 $t.tmp/weak
cp $t.tmp/key64 $t.tmp/open && chmod 644 $t.tmp/open

# Each case: expected text in the error, then the parameters.
refuse ()
{
    local expect="$1"; shift
    rm -f $t.tmp/disk $t.tmp/err
    if nbdkit -U - $PLUGIN file=$t.tmp/disk "$@" --run true 2> $t.tmp/err; then
        echo "FAIL: nbdkit started with: $*"
        exit 1
    fi
    cat $t.tmp/err
    grep -F -- "$expect" $t.tmp/err
    # Nothing was created ...
    test ! -e $t.tmp/disk
    # ... and no key leaked into the message.
    for k in $t.tmp/key64 $t.tmp/key32 $t.tmp/key16; do
        fails grep -F -i "$(head -c 16 $k)" $t.tmp/err
    done
}

refuse "mode=: unknown mode 'AES-512'" size=1M key=+$t.tmp/key64 mode=AES-512
refuse "key=: AES-256-XTS needs a key of exactly 64 bytes (128 hex digits), got 32 bytes" \
    size=1M key=+$t.tmp/key32
refuse "key=: AES-128-CBC-ESSIV needs a key of exactly 16 bytes" \
    size=1M mode=AES-128-CBC-ESSIV key=+$t.tmp/key64
refuse "key=: Adiantum needs a key of exactly 32 bytes" \
    size=1M mode=Adiantum key=+$t.tmp/key16
refuse "key=: SM4-XTS needs a key of exactly 32 bytes" \
    size=1M mode=SM4-XTS key=+$t.tmp/key16
refuse "key=: character 1 is not a hexadecimal digit" size=1M key=+$t.tmp/badhex
refuse "key=: odd number of hexadecimal digits" size=1M key=+$t.tmp/odd
refuse "key=: a key is required" size=1M
refuse "key=: the two halves of an AES-256-XTS key must differ" \
    size=1M key=+$t.tmp/weak
refuse "key=: key file $t.tmp/open is accessible by group or others" \
    size=1M key=+$t.tmp/open
refuse "data-unit-size=: expected a data unit size, a power of two from 512 to 65536, got '1000'" \
    size=1M key=+$t.tmp/key64 data-unit-size=1000
refuse "data-unit-size=: expected a data unit size" \
    size=1M key=+$t.tmp/key64 data-unit-size=256
refuse "data-unit-size=: expected a data unit size" \
    size=1M key=+$t.tmp/key64 data-unit-size=128K
refuse "dun-bytes=1: too small for this export: its last data unit has DUN dun-base + 511" \
    size=2M key=+$t.tmp/key64 dun-bytes=1
refuse "dun-bytes=17: AES-256-XTS takes 1 to 16 DUN bytes" \
    size=1M key=+$t.tmp/key64 dun-bytes=17
refuse "dun-bytes=: expected a number from 1 to 32" \
    size=1M key=+$t.tmp/key64 dun-bytes=0
refuse "dun-base=: does not fit in dun-bytes=1" \
    size=4K key=+$t.tmp/key64 dun-bytes=1 dun-base=256
refuse "dun-base=: expected a DUN" size=1M key=+$t.tmp/key64 dun-base=x1
refuse "size=: expected a size" size=1Q key=+$t.tmp/key64
refuse "size=1000: not a multiple of data-unit-size=512" \
    size=1000 key=+$t.tmp/key64 data-unit-size=512
refuse "keyslots=: expected a number from 1 to 1024" \
    size=1M key=+$t.tmp/key64 keyslots=0
refuse "keyslots=: expected a number from 1 to 1024" \
    size=1M key=+$t.tmp/key64 keyslots=1025
refuse "engine-modes=: unknown mode 'AES'" \
    size=1M key=+$t.tmp/key64 engine-modes=AES:4096
refuse "engine-modes=: expected a data unit size" \
    size=1M key=+$t.tmp/key64 'engine-modes=AES-256-XTS:4000'
refuse "engine-modes=: empty data unit size in 'AES-256-XTS:4096,'" \
    size=1M key=+$t.tmp/key64 'engine-modes=AES-256-XTS:4096,'
refuse "engine-modes=: AES-256-XTS is given twice; give each mode once, with all its data unit sizes: AES-256-XTS:512,4096" \
    size=1M key=+$t.tmp/key64 'engine-modes=AES-256-XTS:512;AES-256-XTS:4096'
refuse "max-dun-bytes=: expected a number from 1 to 32" \
    size=1M key=+$t.tmp/key64 max-dun-bytes=33
refuse "fallback-keyslots=: expected a number from 1 to 65536" \
    size=1M key=+$t.tmp/key64 fallback-keyslots=0
refuse "unknown parameter 'colour'" size=1M key=+$t.tmp/key64 colour=red
# A parameter given twice is refused, not replaced by the second.
refuse "size=: given twice; each parameter is taken once" \
    size=1M key=+$t.tmp/key64 size=2M
refuse "key=: given twice; each parameter is taken once" \
    size=1M key=+$t.tmp/key64 key=+$t.tmp/key32
refuse "file=: given twice; each parameter is taken once" \
    size=1M key=+$t.tmp/key64 file=$t.tmp/disk
refuse "engine-modes=: given twice" \
    size=1M key=+$t.tmp/key64 engine-modes=none engine-modes=none

# The same bad key passed on a file descriptor is refused too.
rm -f $t.tmp/disk
if nbdkit -U - $PLUGIN file=$t.tmp/disk size=1M key=-3 --run true \
       3< $t.tmp/key32 2> $t.tmp/err; then
    exit 1
fi
grep -F "key=: AES-256-XTS needs a key of exactly 64 bytes" $t.tmp/err

# A second key= is refused before its secret is read: the descriptor of
# the second (its offset shared with this shell's) stays unread.
rm -f $t.tmp/disk
exec 4< $t.tmp/key64
if nbdkit -U - $PLUGIN file=$t.tmp/disk size=1M key=-3 key=-4 --run true \
       3< $t.tmp/key64 2> $t.tmp/err; then
    exit 1
fi
grep -E '^pos:[[:space:]]+0$' /proc/$$/fdinfo/4
exec 4<&-
grep -F "key=: given twice; each parameter is taken once" $t.tmp/err
test ! -e $t.tmp/disk

# readonly= is for file= only: a memory export would ignore it.
if nbdkit -U - $PLUGIN size=1M key=+$t.tmp/key64 readonly=true --run true \
       2> $t.tmp/err; then
    exit 1
fi
grep -F "readonly=: applies to file= exports only, not to a memory export" \
    $t.tmp/err

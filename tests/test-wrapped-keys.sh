#!/usr/bin/env bash
# Hardware-wrapped keys end to end, checked by independent oracles: keys
# imported from known raw keys write exactly the AES-256-XTS ciphertext of
# the inline key tests/hwkdf.py derives (python3-cryptography's CMAC), and
# derive-secret gives its software secret.  Engine resets while data flows
# change nothing (slots are reprogrammed from the ephemeral blobs);
# generated keys work; the control commands mirror the ioctls; a restart
# loads the long-term blobs without the raw keys; a wrong blob, a missing
# one or an open wrapping-key file is refused with a clear message.
source ./functions.sh
set -e -x

requires_plugin
requires nbdcopy --version
requires "$PYTHON" "$srcdir/oracle.py" selftest
requires "$PYTHON" "$srcdir/hwkdf.py" selftest

t=test-wrapped-keys
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
hwkdf () { "$PYTHON" "$srcdir/hwkdf.py" "$@"; }
random_key $d/raw32 32
random_key $d/raw64 64
random_key $d/raw16 16

cat > $d/ic.conf <<'CONF'
engine ufs keyslots=2 key-types=raw,hw_wrapped wrapping-key=ufs.wkey
key kw type=hw_wrapped engine=ufs blob=kw.blob import=+raw32
key k64 type=hw_wrapped engine=ufs blob=k64.blob import=+raw64 data-unit-size=512 dun-bytes=4
key kg type=hw_wrapped engine=ufs blob=kg.blob generate
leaf d0 file=d0.img size=8M engine=ufs
export vol0 device=d0
  map 0 4M key=kw
  map 4M 2M key=k64 dun-base=0x1000
  map 6M 2M key=kg
end
engine plain keyslots=1
leaf d1 memory size=1M engine=plain
export vol1 device=d1
end
control socket=ctl.sock
CONF
start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf 2> $d/log
wait_for test -S $d/ctl.sock
ctl () { inlinecryptctl -s $d/ctl.sock "$@"; }
uri="nbd+unix:///vol0?socket=$d/sock"

# The wrapping key and the long-term blobs were created, private.
for f in ufs.wkey kw.blob k64.blob kg.blob; do
    stat -c %a $d/$f | grep -x 600
done
grep -Ex '[0-9a-f]{64}' $d/ufs.wkey
grep -Ex '[0-9a-f]{122}' $d/kw.blob

# The sysfs view: raw_keys and hw_wrapped_keys.
ctl status d0 > $d/status
cat $d/status
grep 'queue/crypto/hw_wrapped_keys  supported' $d/status
grep 'queue/crypto/raw_keys  supported' $d/status
ctl key list | grep 'kw AES-256-XTS data-unit-size=4096 dun-bytes=8 type=hw_wrapped'

# Data in while the engine is reset again and again: the two keyslots are
# reprogrammed from the ephemeral blobs each time.
head -c 8M /dev/urandom > $d/data
(
    for _ in $(seq 20); do
        ctl engine reset ufs > /dev/null
        sleep 0.02
    done
) &
resets=$!
nbdcopy $d/data "$uri"
wait $resets
ctl engine reset ufs
nbdcopy "$uri" $d/back
cmp $d/data $d/back
ctl --json stats > $d/stats.json
"$PYTHON" - $d/stats.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
e = r["engines"]["ufs"]
assert e["resets"] >= 21, e
assert e["bytes"]["AES-256-XTS"] >= 2 * (8 << 20), e
assert r["fallback"]["encrypt_bytes"].get("AES-256-XTS", 0) == 0, r["fallback"]
PY

# The ciphertext is AES-256-XTS under the inline key of the hardware KDF:
# a 32-byte raw key is the master key itself; a 64-byte one is hashed to
# it (SHA-256) first.
hwkdf inline-key --raw-key-file $d/raw32 --out $d/inline32
hwkdf inline-key --raw-key-file $d/raw64 --out $d/inline64
head -c 4M $d/data > $d/pt0
head -c 4M $d/d0.img > $d/ct0
oracle encrypt --mode AES-256-XTS --key-file $d/inline32 \
       --data-unit-size 4096 --dun-base 0 $d/pt0 $d/expect0
cmp $d/ct0 $d/expect0
tail -c +$((4 * 1048576 + 1)) $d/data | head -c 2M > $d/pt1
tail -c +$((4 * 1048576 + 1)) $d/d0.img | head -c 2M > $d/ct1
oracle encrypt --mode AES-256-XTS --key-file $d/inline64 \
       --data-unit-size 512 --dun-base 0x1000 $d/pt1 $d/expect1
cmp $d/ct1 $d/expect1
# The generated key: real ciphertext, which no raw key we know gives.
tail -c 2M $d/data > $d/pt2
tail -c 2M $d/d0.img > $d/ct2
fails cmp -s $d/pt2 $d/ct2
oracle encrypt --mode AES-256-XTS --key-file $d/inline32 \
       --data-unit-size 4096 --dun-base 0 $d/pt2 $d/expect2
fails cmp -s $d/ct2 $d/expect2

# The software secret is the KDF's, for both import sizes.
test "$(ctl key derive-secret kw)" = "$(hwkdf sw-secret --raw-key-file $d/raw32)"
test "$(ctl key derive-secret k64)" = "$(hwkdf sw-secret --raw-key-file $d/raw64)"
test "$(ctl key derive-secret kw engine=ufs)" = "$(ctl key derive-secret kw device=d0)"
ctl key derive-secret kg | grep -Ex '[0-9a-f]{64}'
# The secret, once its reply is written, is left nowhere in the server:
# not in json-c's strings, the serialised reply or the reply buffer.
secret=$(ctl key derive-secret kw)
if "$PYTHON" "$srcdir/memscan.py" $(cat $d/pid) \
       hex=$(printf %s "$secret" | od -An -v -tx1 | tr -d ' \n') \
       > $d/scan.secret; then
    "$PYTHON" -c '
import json, sys
hits = json.load(open(sys.argv[1]))["hits"]["hex"]
assert not hits, "the software secret is still in memory: %s" % hits
' $d/scan.secret
else
    # Memory can be read as root (CI), where the scan must run.
    test "$(id -u)" != 0
fi

# The ioctls through the control socket: import (a 16-byte raw key),
# prepare, add the ephemeral blob as a key, map it, write, check.
ctl key import engine=ufs key=+$d/raw16 > $d/lt16
grep -Ex '[0-9a-f]{122}' $d/lt16
chmod 600 $d/lt16
ctl key prepare device=d0 blob=+$d/lt16 > $d/eph16
chmod 600 $d/eph16
ctl key add kx type=hw_wrapped engine=ufs key=+$d/eph16
test "$(ctl key derive-secret kx)" = "$(hwkdf sw-secret --raw-key-file $d/raw16)"
ctl map vol0 6M 2M key=kx dun-base=77
# Not on a device whose engine lacks wrapped keys: the fallback could not
# serve it (blk_crypto_start_using_key), so no request could.
if ctl map vol1 0 1M key=kx 2> $d/err; then exit 1; fi
grep -F 'inlinecryptctl: vol1: key kx is hardware-wrapped and device d1 cannot take it natively (AES-256-XTS, 4096-byte data units, 8 DUN bytes); the fallback never handles wrapped keys (EOPNOTSUPP)' $d/err
ctl map vol1 0 1M key=none
nbdcopy $d/data "$uri"
hwkdf inline-key --raw-key-file $d/raw16 --out $d/inline16
tail -c 2M $d/d0.img > $d/ct2
oracle encrypt --mode AES-256-XTS --key-file $d/inline16 \
       --data-unit-size 4096 --dun-base 77 $d/pt2 $d/expect2
cmp $d/ct2 $d/expect2
ctl key generate engine=ufs | grep -Ex '[0-9a-f]{122}'

# The errno contract.
if ctl key import engine=ufs key=+$d/raw32 capacity=60 2> $d/err; then
    exit 1
fi
grep -F 'import key: the key is 61 bytes, the buffer only 60 (EOVERFLOW)' $d/err
# One hex digit of the ciphertext changed.
lt=$(cat $d/lt16)
if [ "${lt:40:1}" = f ]; then x=0; else x=f; fi
echo "${lt:0:40}$x${lt:41}" > $d/bad-lt
chmod 600 $d/bad-lt
if ctl key prepare engine=ufs blob=+$d/bad-lt 2> $d/err; then exit 1; fi
grep -F 'ufs: prepare key: invalid key: not a long-term wrapped key of this key manager (authentication failed) (EBADMSG)' $d/err
# A blob file group or others can read is refused, as a key file is.
cp $d/lt16 $d/lt16-shared && chmod 644 $d/lt16-shared
if ctl key prepare engine=ufs blob=+$d/lt16-shared > $d/out 2> $d/err; then
    exit 1
fi
grep -Fx "inlinecryptctl: blob file $d/lt16-shared is accessible by group or others (mode 0644); chmod 600 it" $d/err
test ! -s $d/out
if ctl key prepare engine=ufs blob=+$d/lt16 blob=+$d/lt16 2> $d/err; then
    exit 1
fi
grep -F 'blob= is given twice' $d/err
# An ephemeral blob is not a long-term one.
if ctl key prepare engine=ufs blob=+$d/eph16 2> $d/err; then exit 1; fi
grep -F '(EBADMSG)' $d/err
if ctl key add ky type=hw_wrapped engine=ufs key=+$d/lt16 2> $d/err; then
    exit 1
fi
grep -F 'ufs: derive software secret: invalid key: not an ephemerally wrapped key' $d/err
printf '%s' 0011 > $d/short && chmod 600 $d/short
if ctl key import engine=ufs key=+$d/short 2> $d/err; then exit 1; fi
grep -F 'import key: a raw key must be 16 to 64 bytes, got 2 (EINVAL)' $d/err
if ctl key generate 2> $d/err; then exit 1; fi
grep -F "key-generate: expected one of 'engine' or 'device' (EINVAL)" $d/err

# No key byte in any log line.
for k in raw32 raw64 raw16 inline32 inline64 ufs.wkey; do
    fails grep -F -i "$(head -c 16 $d/$k)" $d/log
done

# A restart: the blobs are loaded, the raw keys are not needed any more,
# and the data reads back (same long-term wrapping key, new ephemeral one).
_stop_nbdkit $d/pid
mv $d/raw32 $d/raw32.away
mv $d/raw64 $d/raw64.away
sed -i 's/^  map 6M 2M key=kg$/  map 6M 2M none/' $d/ic.conf
rm -f $d/sock $d/ctl.sock
start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf 2> $d/log
wait_for test -S $d/ctl.sock
nbdcopy "$uri" $d/back
cmp <(head -c 6M $d/data) <(head -c 6M $d/back)
test "$(ctl key derive-secret kw)" = "$(hwkdf sw-secret --raw-key-file $d/raw32.away)"
_stop_nbdkit $d/pid

# Refusals, each with the line and what was expected.
refuse ()
{
    local expect="$1"
    if nbdkit -U - $PLUGIN config=$d/bad.conf --run true 2> $d/err; then
        echo "FAIL: nbdkit started with a bad configuration"
        exit 1
    fi
    cat $d/err
    grep -F -- "$expect" $d/err
}
# A blob of another wrapping key.
cat > $d/bad.conf <<'CONF'
engine other key-types=hw_wrapped wrapping-key=other.wkey
key kw type=hw_wrapped engine=other blob=kw.blob
leaf d0 memory size=1M engine=other
export vol0 device=d0 key=kw
CONF
refuse "bad.conf:2: key kw: blob=kw.blob: other: prepare key: invalid key: not a long-term wrapped key of this key manager (authentication failed)"
# A missing blob without import= or generate.
sed -i 's/blob=kw.blob/blob=none.blob/' $d/bad.conf
refuse "bad.conf:2: key kw: blob=none.blob: no such file; add import=+RAWFILE or generate to create the key"
test ! -e $d/none.blob
# A wrapping key others can read.
chmod 644 $d/ufs.wkey
sed -i 's/wrapping-key=other.wkey/wrapping-key=ufs.wkey/' $d/bad.conf
refuse "bad.conf:1: engine other: wrapping-key=ufs.wkey: wrapping key $d/ufs.wkey: the file is accessible by group or others (mode 0644); chmod 600 it"
chmod 600 $d/ufs.wkey
# An engine without a wrapping key.
sed -i 's/ wrapping-key=ufs.wkey//' $d/bad.conf
refuse "bad.conf:1: engine other: key-types=hw_wrapped: expected wrapping-key=FILE"
# A wrapped key the fallback would have to handle: refused when the
# engine lacks hw_wrapped.
cat > $d/bad.conf <<'CONF'
engine raw
key kw type=hw_wrapped engine=raw blob=kw.blob
leaf d0 memory size=1M engine=raw
export vol0 device=d0 key=kw
CONF
refuse "bad.conf:2: key kw: engine=raw: the engine does not take hw_wrapped keys"
# A wrapped key of an engine that has them, mapped onto a device whose
# engine has not.
cat > $d/bad.conf <<'CONF'
engine ufs key-types=raw,hw_wrapped wrapping-key=ufs.wkey
engine raw
key kw type=hw_wrapped engine=ufs blob=kw.blob
leaf d0 memory size=1M engine=raw
export vol0 device=d0
  map 0 1M key=kw
end
CONF
refuse "bad.conf:6: export vol0: map: key kw is hardware-wrapped and device d0 cannot take it natively (AES-256-XTS, 4096-byte data units, 8 DUN bytes); the fallback never handles wrapped keys"

#!/usr/bin/env bash
# Every bad configuration file makes nbdkit refuse to start, with one
# message naming file:line and what was expected; nothing is silently
# accepted, overridden or cut.  The unit cases are in test_conf.c: these
# go through nbdkit and the plugin as a user would.
source ./functions.sh
set -e -x

requires_plugin

t=test-config-refusals
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k1 64

# The first lines of every case.
head='key k1 key=+k1
leaf d0 memory size=1M'

# Each case: the expected message after "$d/ic.conf:", then the rest of
# the file on standard input.
refuse ()
{
    { echo "$head"; cat; } > $d/ic.conf
    refuses_config $d/ic.conf "$1"
    # Said once: the objects the line makes do not report it first
    # without the line.
    test "$(grep -c 'error:' $d/ic.conf.err)" = 1
    fails grep -F -i "$(head -c 16 $d/k1)" $d/ic.conf.err
}

# Statements that may be given once.
refuse "5: control: given twice (first at $d/ic.conf:3); the server has one control socket" <<'CONF'
control socket=a.sock
export vol0 device=d0 key=k1
control socket=b.sock
CONF
refuse "4: fallback: given twice (first at $d/ic.conf:3); give keyslots= and enabled= on one fallback line" <<'CONF'
fallback keyslots=7
fallback enabled=false
export vol0 device=d0 key=k1
CONF

# Options that do not apply to a leaf's kind.
refuse "3: leaf d1: readonly= applies to file= and nbd= leaves, not to a memory leaf" <<'CONF'
leaf d1 memory size=1M readonly=true
export vol0 device=d0 key=k1
CONF
refuse "3: leaf d1: timeout= applies to nbd= leaves only, not to a memory leaf" <<'CONF'
leaf d1 memory size=1M timeout=5
export vol0 device=d0 key=k1
CONF
refuse "3: leaf d1: timeout= applies to nbd= leaves only, not to a file= leaf" <<'CONF'
leaf d1 file=d1.img size=1M timeout=5
export vol0 device=d0 key=k1
CONF
test ! -e $d/d1.img

# A description longer than NBD allows is refused, not cut.
long="$(printf 'description%.0s ' {1..341})tail!"
refuse "3: export vol0: description= is 4097 bytes; NBD allows at most 4096" <<CONF
export vol0 device=d0 key=k1 description="$long"
CONF

# Lists: no empty item (a stray separator), nothing given twice.
refuse "3: engine e: modes=: empty data unit size in 'AES-256-XTS:4096,' (a stray ','); expected MODE:SIZE[,SIZE...]" <<'CONF'
engine e modes=AES-256-XTS:4096,
CONF
refuse "3: engine e: modes=: empty mode entry in 'AES-256-XTS:4096;;SM4-XTS' (a stray ';')" <<'CONF'
engine e modes=AES-256-XTS:4096;;SM4-XTS
CONF
refuse "3: engine e: modes=: AES-256-XTS is given twice; give each mode once, with all its data unit sizes: AES-256-XTS:512,4096" <<'CONF'
engine e modes=AES-256-XTS:512;AES-256-XTS:4096
CONF
refuse "3: engine e: key-types=: empty item in 'raw,' (a stray ',')" <<'CONF'
engine e key-types=raw,
CONF
refuse "3: engine e: key-types=: key type 'raw' is given twice" <<'CONF'
engine e key-types=raw,raw
CONF
refuse "3: device top: options=: empty item in 'per_child_fallback,' (a stray ',')" <<'CONF'
device top options=per_child_fallback,
  0 2048 linear d0 0
end
CONF
refuse "3: device top: options=: option 'per_child_fallback' is given twice" <<'CONF'
device top options=per_child_fallback,per_child_fallback
  0 2048 linear d0 0
end
CONF

# A control socket's mode is octal digits only.
refuse "3: control: mode=+600: expected an octal file mode such as 0600" <<'CONF'
control socket=ctl.sock mode=+600
CONF
refuse "3: control: mode= 600: expected an octal file mode such as 0600" <<'CONF'
control socket=ctl.sock mode=" 600"
CONF

# A control socket that cannot be created stops the start, and the message
# names the control line and what went wrong: its directory is missing,
# its path is too long, another server answers on it.
refuse "3: control: bind $d/nodir/ctl.sock: No such file or directory" <<'CONF'
control socket=nodir/ctl.sock
export vol0 device=d0 key=k1
CONF
long=$(printf 'x%.0s' {1..120})
refuse "4: control: socket path $d/$long.sock is too long (at most 107 bytes)" <<CONF
export vol0 device=d0 key=k1
control socket=$long.sock
CONF
start_nbdkit -P $d/busy.pid -U $d/busy.nbd $PLUGIN size=1M \
    key=+$d/k1 control=$d/busy.sock
refuse "3: control: $d/busy.sock is in use by another server" <<'CONF'
control socket=busy.sock
export vol0 device=d0 key=k1
CONF
# control= given with config= replaces the file's socket: its errors name
# control=, not the file's line.
cat > $d/ic.conf <<CONF
$head
control socket=ctl.sock
export vol0 device=d0 key=k1
CONF
if nbdkit -U - $PLUGIN config=$d/ic.conf control=$d/nodir/ctl.sock \
       --run true 2> $d/err; then
    exit 1
fi
cat $d/err
grep -F "control=: bind $d/nodir/ctl.sock: No such file or directory" $d/err
fails grep -F "ic.conf:3" $d/err

# A stray word after 'end' is an error at its own line.
refuse "5: device top: 'end' takes nothing after it, got 'junk'" <<'CONF'
device top
  0 2048 linear d0 0
end junk
export vol0 device=top key=k1
CONF
refuse "5: export vol0: 'end' takes nothing after it, got 'junk'" <<'CONF'
export vol0 device=d0
  map 0 4K key=k1
end junk
CONF

# A file= leaf that made its file takes it away again when a later line
# is refused; a file that was there before stays, bytes and all.
refuse "4: export vol0: device=nosuch: no leaf or device of that name is defined above" <<'CONF'
leaf d1 file=new.img size=1M
export vol0 device=nosuch key=k1
CONF
test ! -e $d/new.img
printf 'kept' > $d/old.img
refuse "4: export vol0: device=nosuch: no leaf or device of that name is defined above" <<'CONF'
leaf d1 file=old.img size=1M
export vol0 device=nosuch key=k1
CONF
test "$(stat -c %s $d/old.img)" = 1048576
test "$(head -c 4 $d/old.img)" = kept
# ... also when the leaf itself is refused for its name, and when the
# start fails after the file was read (the control socket's directory is
# missing), with config= and with the one-line parameters.
refuse "3: device d0 is already defined" <<'CONF'
leaf d0 file=dup.img size=1M
export vol0 device=d0 key=k1
CONF
test ! -e $d/dup.img
refuse "4: control: bind $d/nodir/x.sock: No such file or directory" <<'CONF'
leaf d1 file=new.img size=1M
control socket=nodir/x.sock
export vol0 device=d1 key=k1
CONF
test ! -e $d/new.img
if nbdkit -U - $PLUGIN file=$d/new.img size=1M key=+$d/k1 \
       control=$d/nodir/x.sock --run true 2> $d/err; then
    exit 1
fi
cat $d/err
grep -F "control=: bind $d/nodir/x.sock: No such file or directory" $d/err
test ! -e $d/new.img
# nbdkit itself can fail after the plugin is ready (here it cannot bind
# its own socket) and exits without unloading the plugin: the file goes
# all the same, with config= and with the one-line parameters.  (Not
# under the sanitizers' runtime: nbdkit 1.32 then hangs in exit after a
# failed bind, in libp11-kit's destructor, with any plugin.)
if [ -z "${SANITIZER_PRELOAD:-}" ]; then
    { echo "$head"; echo "leaf d1 file=new.img size=1M"
      echo "export vol0 device=d1 key=k1"; } > $d/ic.conf
    fails nbdkit -U $d/nodir/nbd.sock $PLUGIN config=$d/ic.conf
    test ! -e $d/new.img
    fails nbdkit -U $d/nodir/nbd.sock $PLUGIN file=$d/new.img size=1M \
          key=+$d/k1 control=$d/late.sock
    test ! -e $d/new.img
    test ! -e $d/late.sock
fi
# ... but a server that started keeps its file: nbdkit going into the
# background (its parent exits), and at the end of --run.
start_nbdkit -P $d/nbd.pid -U $d/nbd.sock $PLUGIN file=$d/new.img size=1M \
             key=+$d/k1
$PYTHON - "nbd+unix:///?socket=$d/nbd.sock" <<'PY'
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"x" * 4096, 0)
assert h.pread(4096, 0) == b"x" * 4096
h.shutdown()
PY
_stop_nbdkit $d/nbd.pid
test "$(stat -c %s $d/new.img)" = 1048576
rm $d/new.img
nbdkit -U - $PLUGIN file=$d/new.img size=1M key=+$d/k1 --run 'nbdinfo $uri'
test "$(stat -c %s $d/new.img)" = 1048576

#!/usr/bin/env bash
# Crash recovery: kill -9 nbdkit (and its client) in the middle of a
# write-heavy run, restart it on the same backing store, and check that
# every write acknowledged before a FLUSH, or written with FUA, reads back,
# and that no data unit is half old and half new; 20 times.
#
# The client (journal.py) journals a write as durable only after its FLUSH
# or FUA write returned.  Three exports take the writes at once: a file
# leaf; a mirror of two file leaves (checked to read the same from both
# legs wherever the last write was durable); and a remote NBD leaf whose
# peer (nbdkit --filter=cache cache=writeback) keeps writes in a volatile
# cache until FLUSH or FUA and is killed too, so that a FLUSH or FUA that
# did not reach the backing store would lose data here.  The page cache
# survives a killed process, so the file leaves alone could not show that.
source ./functions.sh
set -e -x

requires_plugin
requires "$PYTHON" -c 'import nbd'
requires nbdkit --filter=cache file --version

t=test-crash-recovery
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k1 64
random_key $d/k2 64
random_key $d/k3 64
mkdir $d/journal
cat > $d/ic.conf <<CONF
key k1 key=+k1
key k2 key=+k2
key k3 key=+k3
# Two keyslots for three keys: programming goes on during the crash too.
engine ufs keyslots=2 modes=AES-256-XTS:4096
leaf f0 file=f0.img size=8M engine=ufs
leaf f1 file=f1.img size=8M engine=ufs
leaf f2 file=f2.img size=8M engine=ufs
leaf r0 nbd=nbd+unix:///?socket=$d/peer.sock size=8M engine=ufs
device m0
  0 16384 mirror 2 f1 0 f2 0
end
export vol0 device=f0 key=k1
export vol1 device=m0 key=k2
export vol2 device=r0 key=k3 dun-base=1000
control socket=ctl.sock
CONF
truncate -s 8M $d/peer.img
uris=()
for v in vol0 vol1 vol2; do uris+=("nbd+unix:///$v?socket=$d/sock"); done

# Start the peer and then inlinecrypt.  A killed nbdkit leaves its Unix
# socket behind, which nbdkit does not remove by itself; the control
# socket inlinecrypt does remove.
start ()
{
    rm -f $d/peer.sock $d/sock
    TMPDIR=$d start_nbdkit -P $d/peer.pid -U $d/peer.sock \
        --filter=cache file $d/peer.img cache=writeback
    start_nbdkit -P $d/pid -U $d/sock $PLUGIN config=$d/ic.conf
    wait_for test -S $d/ctl.sock
}

journal () { "$PYTHON" "$srcdir/journal.py" "$@"; }
# True when none of the processes has anything left: gone, or a zombie
# (not yet reaped by whoever adopted the daemon) whose other threads have
# all exited, the last of them closing its files.
gone ()
{
    local p
    for p in "$@"; do
        [ -d /proc/$p ] || continue
        grep -q '^[0-9]* (.*) Z' /proc/$p/stat 2>/dev/null || return 1
        [ "$(ls /proc/$p/task 2>/dev/null | wc -l)" -le 1 ] || return 1
    done
}
# True once iteration $1 has durable writes on every export.
all_durable ()
{
    local e
    for e in 0 1 2; do grep -qs '^D' $d/journal/j.$1.$e.0 || return 1; done
}

start
for i in $(seq 1 20); do
    journal write $d/journal $i "${uris[@]}" > $d/writer.log 2>&1 &
    wpid=$!
    # Kill while writes are in full flow: once this iteration has made
    # writes durable, after another 0.1 to 1.1 s.
    wait_for all_durable $i
    sleep 0.$(( RANDOM % 10 ))$(( RANDOM % 10 ))
    sleep 0.1
    pids="$(cat $d/pid) $(cat $d/peer.pid)"
    kill -9 $pids $wpid
    wait $wpid || true
    # A killed process holds its sockets until its last thread has gone,
    # which takes a while on a loaded machine or with a big (sanitizer)
    # address space: until then the new inlinecrypt rightly refuses to
    # take over a control socket that still accepts connections.
    wait_for gone $pids
    # The writer did not stop on its own: it was killed.
    if grep Traceback $d/writer.log; then exit 1; fi
    wc -l $d/journal/j.$i.* | tail -1
    start
    if ! journal verify $d/journal "${uris[@]}" > $d/verify.$i; then
        cat $d/verify.$i
        exit 1
    fi
    cat $d/verify.$i
done

if grep '^FAIL' $d/verify.*; then exit 1; fi
# The check had teeth: most blocks of every export were written durably,
# and acknowledged writes that were never flushed were lost on the
# volatile peer (export 2) during the run, so a FLUSH or FUA that did not
# reach it would have been caught.
field () { grep -h "^export=$1 " $d/verify.* | grep -o " $2=[0-9]*" | cut -d= -f2; }
for e in 0 1 2; do
    test "$(grep "^export=$e " $d/verify.20 | grep -o ' durable=[0-9]*' |
            cut -d= -f2)" -ge 1500
    echo "export $e: acknowledged, unflushed writes lost in all:" \
        "$(field $e acked_unflushed_lost | paste -sd+ | bc)," \
        "kept: $(field $e acked_unflushed_kept | paste -sd+ | bc)," \
        "unstable mirror reads: $(field $e unstable | paste -sd+ | bc)"
done
test "$(field 2 acked_unflushed_lost | paste -sd+ | bc)" -gt 0

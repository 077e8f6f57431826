#!/usr/bin/env bash
# The control server with real clients: status (the queue/crypto/ view),
# stats, keys and maps changed at run time while data stays right, hostile
# requests answered with errors while I/O goes on, many clients at once,
# other users refused, and no key byte in any reply or log.
source ./functions.sh
set -e -x

requires_plugin
requires nbdcopy --version
requires nbdinfo --version
requires "$PYTHON" -c 'import json, socket'

t=test-control
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp
d=$(cd $t.tmp && pwd)
random_key $d/k1 64
random_key $d/k2 64
random_key $d/k9 32
cat > $d/ic.conf <<CONF
key k1 mode=AES-256-XTS key=+k1
key k2 mode=AES-256-XTS key=+k2 data-unit-size=512
engine ufs keyslots=4 modes=AES-256-XTS:512,4096;Adiantum
leaf d0 memory size=8M engine=ufs
leaf d1 memory size=8M
device m0 options=per_child_fallback
  0 16384 mirror 2 d0 0 d1 0
end
export vol0 device=m0 key=k1
export vol1 device=d0
  map 0 4M key=k2 dun-base=1000
end
leaf d2 memory size=4M
export vol2 device=d2 block-size=4K
end
control socket=ctl.sock mode=0600
CONF
start_nbdkit -P $d/pid -U $d/sock -v $PLUGIN config=$d/ic.conf 2> $d/log
wait_for test -S $d/ctl.sock
ctl () { inlinecryptctl -s $d/ctl.sock "$@"; }
uri0="nbd+unix:///vol0?socket=$d/sock"
uri1="nbd+unix:///vol1?socket=$d/sock"

ctl ping | grep "inlinecrypt"
stat -c %a $d/ctl.sock | grep -x 600

# The sysfs view: the engine leaf, the leaf without one, the union of the
# mirror (per_child_fallback).
ctl status > $d/status
cat $d/status
grep -A3 '^d0: leaf (memory)' $d/status | grep 'num_keyslots  4'
grep -A6 '^d0: leaf' $d/status | grep -F 'modes/AES-256-XTS  0x1200'
grep -A6 '^d0: leaf' $d/status | grep -F 'modes/Adiantum  0x1fe00'
grep -A1 '^d1: leaf' $d/status | grep 'no inline encryption'
grep -A4 '^m0: stacked' $d/status | grep 'num_keyslots  0'
grep 'leg d1 0: active' $d/status
ctl --json status m0 > $d/status.json
"$PYTHON" - $d/status.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ok"] is True
(m0,) = r["devices"]
assert m0["kind"] == "stacked" and m0["options"] == "per_child_fallback"
assert m0["crypto"]["modes"] == {"AES-256-XTS": "0x1200", "Adiantum": "0x1fe00"}
assert m0["crypto"]["max_dun_bits"] == 64 and m0["crypto"]["raw_keys"] == "supported"
assert [l["state"] for l in m0["legs"]] == ["active", "active"]
PY

# Data through both exports; stats count it.
head -c 8M /dev/urandom > $d/data
nbdcopy $d/data "$uri0"
ctl stats > $d/stats
grep -A20 '^engine ufs' $d/stats | grep -E '^  programs +[1-9]'
grep -A3 '^device d1' $d/stats | grep -E '^  fallback_requests +[1-9]'
ctl --json stats > $d/stats.json
"$PYTHON" - $d/stats.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["exports"]["vol0"]["bytes_written"] == 8 << 20, r["exports"]
assert r["engines"]["ufs"]["bytes"]["AES-256-XTS"] == 8 << 20
assert r["fallback"]["encrypt_bytes"]["AES-256-XTS"] == 8 << 20
PY
ctl stats --reset > /dev/null
ctl --json stats | "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin); assert r["exports"]["vol0"]["bytes_written"] == 0'

# A key added at run time, mapped, used, refused removal while mapped,
# removed once unmapped.
ctl key add k9 mode=Adiantum key=+$d/k9
ctl key list | grep -x 'k9 Adiantum data-unit-size=4096 dun-bytes=8 type=raw'
ctl map vol0 1M 1M key=k9 dun-base=5
ctl key list | grep '^k9 .*used-by=\["vol0"\]'
head -c 1M /dev/urandom > $d/part
"$PYTHON" - "$uri0" $d/part <<'PY'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
data = open(sys.argv[2], "rb").read()
h.pwrite(data, 1 << 20)
assert h.pread(1 << 20, 1 << 20) == data
PY
if ctl key remove k9 2> $d/err; then exit 1; fi
grep 'key k9 is used by the map of export vol0' $d/err
grep '(EBUSY)' $d/err
ctl map vol0 1M 1M key=k1 dun-base=256
ctl key remove k9
ctl key list > $d/keys
fails grep k9 $d/keys
if ctl key remove k9 2> $d/err; then exit 1; fi
grep "no key named 'k9'" $d/err
# The rest of vol0 is unchanged by all this.
nbdcopy "$uri0" $d/back
cmp <(head -c 1M $d/data) <(head -c 1M $d/back)
cmp <(tail -c +$((2 * 1048576 + 1)) $d/data) <(tail -c +$((2 * 1048576 + 1)) $d/back)

# Usage errors exit 2, refusals exit 1.
set +e
ctl frobnicate; test $? = 2 || exit 1
ctl key add kx key=deadbeef; test $? = 2 || exit 1
ctl key add kx mode=Adiantum key=+$d/k9 key=+$d/k9 2> $d/err
test $? = 2 || exit 1
grep -F 'key= is given twice' $d/err || exit 1
ctl evict nokey; test $? = 1 || exit 1
# A refused command prints nothing on standard output (it is data: a
# blob, a secret, a table), only its error on standard error.
ctl table show nodev > $d/out 2> $d/err; test $? = 1 || exit 1
test ! -s $d/out || { cat $d/out; exit 1; }
grep -F "no device named 'nodev'" $d/err || exit 1
# Numbers are read as the server and the configuration file read them:
# decimal, so 0100000 is 100000 (unaligned: the server refuses it), not
# octal 32768; 0x1000, more than 2^64-1 and a bad probability are usage
# errors.
ctl map vol0 0100000 4096 key=k1 2> $d/err; test $? = 1 || exit 1
grep -F 'range 100000+4096 is not aligned' $d/err || exit 1
ctl map vol0 0x1000 4096 key=k1 2> $d/err; test $? = 2 || exit 1
grep -F 'OFFSET=0x1000: expected a decimal number' $d/err || exit 1
ctl map vol0 4096 99999999999999999999 key=k1 2> $d/err; test $? = 2 || exit 1
grep -F 'LENGTH=99999999999999999999: too large' $d/err || exit 1
ctl fault d1 io-delay-us=1e3 2> $d/err; test $? = 2 || exit 1
# A map names its key or none, once: which would a range with both get?
for args in "key=k1 none" "none key=k1" "key=k1 key=k2" \
            "key=k1 dun-base=1 dun-base=2" "dun-base=1"; do
    ctl map vol0 0 4096 $args 2> $d/err; test $? = 2 || exit 1
    grep -E 'given already|key=KEY or none is needed' $d/err || exit 1
done
for p in abc 0.5x 1.5 -0.1 0x1p-1 inf ''; do
    ctl fault ufs program-fail-prob=$p 2> $d/err; test $? = 2 || exit 1
    grep -F "program-fail-prob=$p: expected a decimal number from 0 to 1" \
        $d/err || exit 1
done
# Sizes are read by the code the server's parser uses: any case of the
# suffixes, at most 2^64-1, no sign, blank, fraction or second suffix.
for n in 16384P 36028797018963968s 18446744073709551616; do
    ctl fault ufs program-delay-us=$n 2> $d/err; test $? = 2 || exit 1
    grep -F "program-delay-us=$n: too large" $d/err || exit 1
done
for n in +1 ' 1' '1 ' 1KK 1iB 1.5k 0x10 ''; do
    ctl fault ufs program-delay-us="$n" 2> $d/err; test $? = 2 || exit 1
    grep -F "program-delay-us=$n: expected a decimal number" $d/err || exit 1
done
set -e
for n in 1s 2S 1k 1KB 1kIb 3b 0100; do
    ctl fault ufs program-delay-us=$n
done
ctl fault ufs program-fail-prob=0.25
ctl fault ufs clear

# Hostile requests: each gets an error reply on the same connection, which
# then still answers, and I/O goes on.
"$PYTHON" - $d/ctl.sock <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
bad = [
    b"{not json",
    b"[1, 2, 3]",
    b"42",
    b'{"cmd": 42}',
    b'{"nocmd": "status"}',
    b'{"cmd": "frobnicate"}',
    b'{"cmd": "status", "bogus": 1}',
    b'{"cmd": "evict", "key": 7}',
    b'{"cmd": "map", "export": "vol0", "offset": -1, "length": 4096}',
    b'{"cmd": "map", "export": "vol0", "offset": "1Q", "length": 4096}',
    # Plain I/O only when asked for, with "key": null or "none".
    b'{"cmd": "map", "export": "vol0", "offset": 0, "length": 4096}',
    b'{"cmd": "key-add", "name": "../x", "key": "00"}',
    b'{"cmd": "key-add", "name": "kk", "mode": "AES-256-XTS", "key": "zz"}',
    b'{"cmd": "fault", "target": "ufs", "program_fail_prob": 7}',
    b'{"cmd": "fault", "target": "ufs", "errno": "ENOTANERRNO"}',
    b'{"cmd": "table-load", "device": "d0", "table": "x"}',
    b'{"cmd": "table-load", "device": "m0", "table": "0 1 bogus"}',
    b'{"cmd": "status"} trailing',
    b"\x00\x01\x02\xff\xfe garbage \x80",
    b"[" * 100000,
    b'{"cmd": "status", "device": "' + b"A" * 70000 + b'"}',
    b"{" * 40 + b"}" * 40,
]
for line in bad:
    f.write(line + b"\n")
    f.flush()
    reply = json.loads(f.readline())
    assert reply["ok"] is False, (line[:40], reply)
    assert reply["errno"].startswith("E"), reply
    assert reply["error"], reply
f.write(b'{"cmd": "ping"}\n')
f.flush()
assert json.loads(f.readline())["ok"] is True
PY
nbdcopy "$uri0" $d/back2
cmp $d/back $d/back2

# Numbers are taken exactly or refused, never clamped.  A DUN base of
# 2^64-1 given as a JSON number is that DUN: data written with it reads
# back with "0xffffffffffffffff", not with 2^63-1.  Beyond 2^64-1, a
# fraction or an exponent: EINVAL, with the number in the message; an
# offset of 2^64-1 is reported as itself.
"$PYTHON" - $d/ctl.sock "$uri0" <<'PY'
import json, nbd, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
def ask(text):
    f.write(text.encode() + b"\n")
    f.flush()
    return json.loads(f.readline())
def dun(base):
    return ask('{"cmd": "map", "export": "vol0", "offset": 3145728, '
               '"length": 4096, "key": "k1", "dun_base": %s}' % base)
h = nbd.NBD()
h.connect_uri(sys.argv[2])
data = os.urandom(4096)
orig = h.pread(4096, 3 << 20)
assert dun("18446744073709551615")["ok"] is True
h.pwrite(data, 3 << 20)
assert dun('"0xffffffffffffffff"')["ok"] is True
assert h.pread(4096, 3 << 20) == data
assert dun("9223372036854775807")["ok"] is True
assert h.pread(4096, 3 << 20) != data
for bad in ["18446744073709551616", "100000000000000000000000", "1e3",
            "4096.0", "-1", "true"]:
    r = dun(bad)
    assert r["ok"] is False and r["errno"] == "EINVAL", (bad, r)
    assert bad in r["error"] or bad == "true", (bad, r)
for off, says in [("18446744073709551615", "18446744073709551615+4096 goes "
                   "past the end"),
                  ("100000000000000000000000", "100000000000000000000000 is "
                   "out of range"),
                  ('"18446744073709551616"', "'18446744073709551616' is too "
                   "large"),
                  ("-1", "expected a number >= 0, got -1"),
                  ("4096.5", "expected a whole number, got 4096.5")]:
    r = ask('{"cmd": "map", "export": "vol0", "offset": %s, "length": 4096,'
            ' "key": "k1"}' % off)
    assert r["ok"] is False and r["errno"] == "EINVAL", (off, r)
    assert says in r["error"], (off, r)
# As it was: the export's one range, DUN base 0.
assert dun("768")["ok"] is True
h.pwrite(orig, 3 << 20)
PY

# Many clients at once.
for i in $(seq 20); do ctl status > $d/many.$i & done
wait
for i in $(seq 20); do cmp $d/status $d/many.$i || grep -q . $d/many.$i; done

# Clients that half-close after their requests (shutdown (SHUT_WR), as
# socat and nc -N do) get every reply, then the end of the stream: many at
# once, one whose last line has no newline, one behind a slow command.
"$PYTHON" - $d/ctl.sock <<'PY'
import json, socket, sys

def ask(data):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    return s

def answers(s):
    s.settimeout(60)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    assert got.endswith(b"\n"), got[-80:]
    return [json.loads(line) for line in got.splitlines()]

clients = [ask(b'{"cmd": "status"}\n') for _ in range(200)]
for s in clients:
    (r,) = answers(s)
    assert r["ok"] is True and r["devices"], r
r = answers(ask(b'{"cmd": "ping"}\n{"cmd": "ping"}'))
assert [x["ok"] for x in r] == [True, True], r
r = answers(ask(b'{"cmd": "engine-reset", "engine": "ufs"}\n'
                b'{"cmd": "ping"}\n'))
assert "failed_keyslots" in r[0] and "version" in r[1], r
PY

# A keyslot program that takes 3 s holds up an evict that must wait for
# the hardware, on a worker, and a key-remove, whose evict waits the same:
# other clients' commands answer at once meanwhile, those that take the
# command lock too, and the evict and the removal answer after the
# program.
random_key $d/kr 64
ctl key add kr mode=AES-256-XTS key=+$d/kr
ctl evict k2
ctl fault ufs program-delay-us=3000000
"$PYTHON" - $d/ctl.sock "$uri1" <<'PY'
import json, nbd, socket, sys, threading, time
path, uri = sys.argv[1], sys.argv[2]
def ask(line):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(30)
    s.sendall(line + b"\n")
    r = json.loads(s.makefile("rb").readline())
    s.close()
    return r
def io():                         # programs k2 on ufs: 3 s
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pread(4096, 0)
    h.shutdown()
t = threading.Thread(target=io)
t.start()
time.sleep(0.5)
slow = {}
def timed(name, cmd):
    t0 = time.monotonic()
    slow[name] = ask(cmd)
    slow[name + " s"] = time.monotonic() - t0
e = threading.Thread(target=timed, args=("evict", b'{"cmd":"evict","key":"k1"}'))
e.start()
k = threading.Thread(target=timed,
                     args=("remove", b'{"cmd":"key-remove","name":"kr"}'))
k.start()
time.sleep(0.5)
for cmd in (b'{"cmd":"ping"}', b'{"cmd":"status"}', b'{"cmd":"key-list"}',
            b'{"cmd":"table-show","device":"m0"}',
            b'{"cmd":"fault","target":"d1","io_delay_us":0}',
            b'{"cmd":"ping"}'):
    t0 = time.monotonic()
    r = ask(cmd)
    took = time.monotonic() - t0
    assert r["ok"] is True, r
    assert took < 1.0, "%s took %.2f s behind a keyslot program" % (cmd, took)
    if b"key-list" in cmd:          # out of the graph before its evict
        assert "kr" not in [x["name"] for x in r["keys"]], r
e.join()
k.join()
t.join()
assert slow["evict"]["ok"] is True, slow
assert slow["evict s"] > 1.0, slow  # it did wait for the program
assert slow["remove"] == {"ok": True, "name": "kr"}, slow
assert slow["remove s"] > 1.0, slow
PY
ctl key list > $d/keys
if grep '^kr ' $d/keys; then exit 1; fi
ctl fault ufs clear

# Requests that json-c and the key-secret scanner could read differently
# are refused before either takes them: a key in a comment, a "key"
# member twice, an escaped member name, single quotes.  No key is added.
# Replies are UTF-8 (json.loads on bytes), also when they echo a cut name;
# a request that is not UTF-8 is refused.
KA=$(cat $d/k1) KB=$(cat $d/k2) \
"$PYTHON" - $d/ctl.sock <<'PY'
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rb")
def ask(line):
    s.sendall(line + b"\n")
    return json.loads(f.readline())
ka, kb = os.environ["KA"].encode(), os.environ["KB"].encode()
for req, why in [
        (b'{"cmd":"key-add","name":"x7",/*"key":"' + ka + b'"*/"key":"' + kb +
         b'"}', "comments are not JSON"),
        (b'{"cmd":"key-add","name":"x7","key":"' + ka + b'","key":"' + kb +
         b'"}', 'member "key" given twice'),
        (b'{"cmd":"key-add","name":"x7","k\\u0065y":"' + ka + b'"}',
         "a member name with an escape"),
        (b"{'cmd':'key-add','name':'x7','key':'" + ka + b"'}",
         "strings are in double quotes"),
        (b'{"cmd":"key-add","name":"x7","name":"x8","key":"' + ka + b'"}',
         'member "name" given twice'),
        (b'{"cmd":"ping","x":"\xff"}', "malformed request"),
        (b'{"\xff":1,"\xff":2,"cmd":"ping"}', "a member given twice"),
        (('{"%s":1,"%s":2,"cmd":"ping"}' % ("\u00e9" * 25, "\u00e9" * 25)
          ).encode(), "a member given twice")]:
    s.sendall(req + b"\n")
    r = json.loads(f.readline().decode("utf-8"))     # UTF-8, always
    assert r["ok"] is False and r["errno"] == "EINVAL", (req, r)
    assert why in r["error"], (why, r)
    assert ka.decode() not in r["error"] and kb.decode() not in r["error"]
r = ask(b'{"cmd":"key-list"}')
assert "x7" not in json.dumps(r), r
# A field of the wrong type, or a leaf where a stacked device is needed,
# is EINVAL; a name that names nothing is ENOENT.
for req, err in [(b'{"cmd":"status","device":5}', "EINVAL"),
                 (b'{"cmd":"table-show","device":"d0"}', "EINVAL"),
                 (b'{"cmd":"table-show"}', "EINVAL"),
                 (b'{"cmd":"evict","key":["k1"]}', "EINVAL"),
                 (b'{"cmd":"status","device":"nosuch"}', "ENOENT"),
                 (b'{"cmd":"evict","key":"nosuch"}', "ENOENT")]:
    r = ask(req)
    assert r["ok"] is False and r["errno"] == err, (req, r)
name = "g" * 63 + "\u00e9"
s.sendall(json.dumps({"cmd": name}, ensure_ascii=False).encode() + b"\n")
raw = f.readline()
r = json.loads(raw.decode("utf-8"))
assert "unknown command '" + "g" * 63 + "'" in r["error"], r
s.sendall(json.dumps({"cmd": "status", "g" * 63 + "\u00e9": 1},
                     ensure_ascii=False).encode() + b"\n")
r = json.loads(f.readline().decode("utf-8"))
assert r["ok"] is False and "unknown field '" + "g" * 63 + "'" in r["error"], r
PY

# A string with a NUL character (\u0000) is refused: the commands read
# C strings, so "kn\u0000x" would name kn (and remove it), and a key's
# digits after the NUL would be ignored.  Escapes elsewhere in a key name
# or in the key's hex text (a JSON encoder's "\n" after the digits) are
# read as json-c reads them.
"$PYTHON" - $d/ctl.sock $d/k9 <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rb")
def ask(line):
    s.sendall(line.encode() + b"\n")
    return json.loads(f.readline())
hexkey = open(sys.argv[2]).read().strip()
r = ask(json.dumps({"cmd": "key-add", "name": "kn", "mode": "Adiantum",
                    "key": hexkey + "\n"}))
assert r == {"ok": True, "name": "kn"}, r
for line in [r'{"cmd":"key-remove","name":"kn\u0000x"}',
             r'{"cmd":"evict","key":"kn\u0000x"}',
             r'{"cmd":"status","device":"d0\u0000x"}',
             r'{"cmd":"ping\u0000x"}',
             r'{"cmd":"map","export":"vol2","offset":"0\u0000x","length":4096}',
             r'{"cmd":"key-add","name":"ko\u0000x","mode":"Adiantum","key":"%s"}'
             % hexkey,
             r'{"cmd":"key-add","name":"ko","mode":"Adiantum","key":"%s\u0000zz"}'
             % hexkey,
             r'{"cmd":"key-add","name":"ko","mode":"Adiantum","key":"%s\x"}'
             % hexkey]:
    r = ask(line)
    assert r["ok"] is False and r["errno"] == "EINVAL", (line, r)
    assert hexkey not in r["error"], r
# Nor a "key" that is not UTF-8, as json-c refuses any other string: a
# key name is echoed in the error, and a reply must be UTF-8.
for line in [b'{"cmd":"evict","key":"k\xffn"}',
             b'{"cmd":"map","export":"vol0","offset":0,"length":4096,'
             b'"key":"k\xc3"}']:
    s.sendall(line + b"\n")
    raw = f.readline()
    r = json.loads(raw.decode("utf-8"))
    assert r["ok"] is False and r["errno"] == "EINVAL", (line, r)
names = [k["name"] for k in ask('{"cmd":"key-list"}')["keys"]]
assert "kn" in names and "ko" not in names, names
assert ask(r'{"cmd":"evict","key":"\u006bn"}')["ok"] is True
assert ask(r'{"cmd":"key-remove","name":"k\u006e"}') == \
    {"ok": True, "name": "kn"}
# A key put where something else belongs is not shown back, whole or in
# part, where the request names what is wrong.
for req in [{"cmd": "key-add", "name": "kp", "mode": hexkey, "key": hexkey},
            {"cmd": "key-add", "name": "kp", "mode": "Adiantum",
             "type": hexkey, "key": hexkey},
            {"cmd": "engine-reset", "engine": hexkey[:40]},
            {"cmd": hexkey},
            {"cmd": "status", hexkey[32:]: 1},
            {"cmd": "evict", "key": hexkey},
            {"cmd": "key-remove", "name": hexkey[:32]},
            {"cmd": "map", "export": hexkey, "offset": 0, "length": 4096,
             "key": None},
            {"cmd": "fault", "target": hexkey[:20]},
            {"cmd": "table-load", "device": "m0", "table": "",
             "options": hexkey}]:
    r = ask(json.dumps(req))
    assert r["ok"] is False, (req, r)
    assert "not shown: they may be key bytes" in r["error"], (req, r)
    for i in range(0, len(hexkey) - 16, 8):
        assert hexkey[i:i + 16] not in r["error"], (req, r)
PY
# Nor does the client show it.
ctl map vol0 0 4096 "$(cat $d/k9)" 2> $d/err && exit 1
grep 'not shown' $d/err
! grep -F "$(head -c 16 $d/k9)" $d/err

# Requests pipelined behind a slow one, in one write far beyond the 64 KiB
# of a request: each gets its reply, in order, none is taken for a line
# too long.  A line that is too long still is, in its place.  A client
# that sends without reading is not served faster than it reads, and
# loses nothing.
"$PYTHON" - $d/ctl.sock <<'PY'
import json, socket, sys, threading, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rb")
s.sendall(b'{"cmd": "engine-reset", "engine": "ufs"}\n' +
          b'{"cmd": "ping"}\n' * 5000 +
          b'{"cmd": "status", "device": "' + b"A" * 70000 + b'"}\n' +
          b'{"cmd": "key-list"}\n')
r = json.loads(f.readline())
assert r["ok"] is True and r["failed_keyslots"] == 0, r
for i in range(5000):
    r = json.loads(f.readline())
    assert r["ok"] is True and "version" in r, (i, r)
r = json.loads(f.readline())
assert r["errno"] == "EMSGSIZE", r
r = json.loads(f.readline())
assert "keys" in r, r

n = 200000
def send():
    s.sendall(b'{"cmd": "ping"}\n' * n)
    s.shutdown(socket.SHUT_WR)
sender = threading.Thread(target=send)
sender.start()
time.sleep(1)
count = 0
for line in f:
    assert json.loads(line)["ok"] is True
    count += 1
sender.join()
assert count == n, count
PY

# Another user: with mode 0600 the socket is closed to them; made 0666,
# the server itself refuses them (SO_PEERCRED).
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    chmod 755 $d
    if setpriv --reuid=65534 --regid=65534 --clear-groups \
            $INLINECRYPTCTL -s $d/ctl.sock ping 2> $d/err; then
        exit 1
    fi
    grep -i 'permission denied' $d/err
    chmod 666 $d/ctl.sock
    if setpriv --reuid=65534 --regid=65534 --clear-groups \
            $INLINECRYPTCTL -s $d/ctl.sock ping 2> $d/err; then
        exit 1
    fi
    grep 'only the server.s user and root may use the control socket' $d/err
    chmod 600 $d/ctl.sock
fi

# control= with config= overrides the file's control socket, and says so
# in the log; the file's mode= still applies to it.
cat > $d/ic2.conf <<CONF
key k1 mode=AES-256-XTS key=+k1
leaf d0 memory size=1M
export vol0 device=d0 key=k1
control socket=file.sock mode=0640
CONF
nbdkit -U - -v $PLUGIN config=$d/ic2.conf control=$d/cmdline.sock \
    --run "$INLINECRYPTCTL -s $d/cmdline.sock ping &&
           stat -c %a $d/cmdline.sock > $d/mode2 &&
           test ! -e $d/file.sock" 2> $d/log2
grep -x 640 $d/mode2
grep -F "control=$d/cmdline.sock: replaces the control socket $d/file.sock of $d/ic2.conf:4 (the file's mode=0640 still applies)" $d/log2
test ! -e $d/file.sock
# Without a control line in the file, control= adds the socket; nothing to
# override, nothing said.
grep -v '^control' $d/ic2.conf > $d/ic3.conf
nbdkit -U - -v $PLUGIN config=$d/ic3.conf control=$d/cmdline.sock \
    --run "$INLINECRYPTCTL -s $d/cmdline.sock ping" 2> $d/log3
fails grep -F 'replaces the control socket' $d/log3

# A relative control= path: nbdkit forks into the background and moves
# to /, and the socket is still removed when it stops.
rm -f $d/rel.pid
( cd $d && nbdkit -P $d/rel.pid -U $d/rel-nbd.sock $PLUGIN size=1M \
      key=+k1 control=rel.sock )
cleanup_fn _stop_nbdkit $d/rel.pid
wait_for test -S $d/rel.sock
$INLINECRYPTCTL -s $d/rel.sock ping
kill "$(cat $d/rel.pid)"
wait_for test ! -e $d/rel.sock

# A path that names something other than a socket is never removed: a
# file named by mistake keeps its bytes, and nbdkit does not start.
echo "precious" > $d/precious.txt
fails nbdkit -U - $PLUGIN size=1M key=+$d/k1 control=$d/precious.txt \
    --run true 2> $d/err
cat $d/err
grep -F "control=: $d/precious.txt exists and is not a socket; refused" $d/err
test "$(cat $d/precious.txt)" = precious

# At most 128 clients at once: one more is told EAGAIN and closed, and a
# place that frees up is taken again.  Out of file descriptors, the loop
# neither spins nor stops serving the clients it has.
"$PYTHON" - $d/ctl.sock "$(cat $d/pid)" <<'PY'
import json, os, socket, sys, time
path, pid = sys.argv[1], int(sys.argv[2])
def connect():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)           # blocking: waits while the backlog is full
    s.settimeout(10)
    return s
def ask(s, line):
    s.sendall(line.encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        assert chunk, "closed without a reply"
        buf += chunk
    return json.loads(buf)
clients = [connect() for _ in range(128)]
for c in clients:                 # every one is served
    assert ask(c, '{"cmd":"ping"}')["ok"] is True
extra = connect()
r = json.loads(extra.makefile().readline())
assert r["ok"] is False and r["errno"] == "EAGAIN", r
assert "too many clients" in r["error"], r
assert extra.recv(1) == b""      # and closed
clients.pop().close()
time.sleep(0.2)
again = connect()
assert ask(again, '{"cmd":"ping"}')["ok"] is True
PY
# The same server with 32 file descriptors: clients that cannot be
# accepted wait in the backlog; the control thread sleeps meanwhile.
( ulimit -n 32
  nbdkit -P $d/fd.pid -U $d/fd-nbd.sock $PLUGIN size=1M key=+$d/k1 \
      control=$d/fd.sock )
cleanup_fn _stop_nbdkit $d/fd.pid
# The socket may be there before nbdkit writes its pid file.
wait_for test -S $d/fd.sock
wait_for test -s $d/fd.pid
"$PYTHON" - $d/fd.sock "$(cat $d/fd.pid)" <<'PY'
import os, socket, sys, time
path, pid = sys.argv[1], int(sys.argv[2])
def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
held = []
for _ in range(60):                  # more than the server can accept
    s = socket.socket(socket.AF_UNIX)
    s.setblocking(False)
    try:
        s.connect(path)
    except BlockingIOError:
        pass
    held.append(s)
time.sleep(0.5)
t = cpu()
time.sleep(2)
used = cpu() - t
assert used < 0.5, "the server used %.2f s of CPU in 2 s" % used
for s in held:
    s.close()
time.sleep(0.5)
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.sendall(b'{"cmd":"ping"}\n')
assert b'"ok":true' in s.recv(4096).replace(b" ", b"")
PY

# A connected client was told vol1's minimum block size, 512 (k2's data
# units): a map with larger data units would refuse its aligned
# requests, so it is refused while the client stays (it went through
# before, and the client's 512-byte writes there failed with EINVAL).
# Once it has gone, the map goes through and new clients are told 4096.
"$PYTHON" - "$uri1" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import nbd, subprocess, sys
uri, sock, ctl = sys.argv[1:]
h = nbd.NBD()
h.connect_uri(uri)
assert h.get_block_size(nbd.SIZE_MINIMUM) == 512
r = subprocess.run([ctl, "-s", sock, "map", "vol1", "4M", "1M", "key=k1"],
                   capture_output=True, text=True)
print(r.stderr)
assert r.returncode == 1, r
assert "1 connected client(s) were told a minimum block size of 512 bytes" \
    in r.stderr, r.stderr
assert "block-size=4096" in r.stderr, r.stderr
h.pwrite(b"x" * 512, (4 << 20) + 512)
assert h.pread(512, (4 << 20) + 512) == b"x" * 512
h.shutdown()
PY
wait_for ctl map vol1 4M 1M key=k1
nbdinfo --json "$uri1" | grep '"block_size_minimum": 4096'
ctl map vol1 4M 1M none
# A client that does not ask for the block sizes is bound by them all
# the same (it was not counted at all): alone on vol2, told 4096, it
# keeps a key with 8 KiB data units out.
random_key $d/k8 64
ctl key add k8 mode=AES-256-XTS data-unit-size=8192 key=+$d/k8
"$PYTHON" - "nbd+unix:///vol2?socket=$d/sock" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import nbd, subprocess, sys
uri, sock, ctl = sys.argv[1:]
g = nbd.NBD()
g.set_request_block_size(False)
g.connect_uri(uri)
r = subprocess.run([ctl, "-s", sock, "map", "vol2", "0", "1M", "key=k8"],
                   capture_output=True, text=True)
print(r.stderr)
assert r.returncode == 1, r
assert "1 connected client(s) were told a minimum block size of 4096 " \
    "bytes" in r.stderr, r.stderr
g.shutdown()
PY
ctl key remove k8
# vol2, plain, tells its clients 4096 (block-size=4K): a key with 4 KiB
# data units maps while one is connected, and it reads what it wrote.
"$PYTHON" - "nbd+unix:///vol2?socket=$d/sock" $d/ctl.sock "$INLINECRYPTCTL" <<'PY'
import nbd, os, subprocess, sys
uri, sock, ctl = sys.argv[1:]
h = nbd.NBD()
h.connect_uri(uri)
assert h.get_block_size(nbd.SIZE_MINIMUM) == 4096
subprocess.check_call([ctl, "-s", sock, "map", "vol2", "1M", "1M", "key=k1"])
data = os.urandom(8192)
h.pwrite(data, (1 << 20) - 4096)
assert h.pread(8192, (1 << 20) - 4096) == data
h.shutdown()
PY

# No key byte anywhere: replies, listings, stats, the verbose log.
ctl --json status > $d/out.1
ctl --json stats > $d/out.2
ctl --json key list > $d/out.3
for k in $d/k1 $d/k2 $d/k9; do
    for f in $d/out.* $d/status $d/stats $d/keys $d/log $d/log2 $d/log3; do
        fails grep -i -F "$(head -c 16 $k)" $f
        fails grep -i -F "$(tail -c 16 $k)" $f
    done
done

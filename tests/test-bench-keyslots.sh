#!/usr/bin/env bash
# bench/keyslots counts exactly: with no more keys than keyslots each key
# is programmed once, whatever the threads; with one keyslot and two keys
# alternating on one thread every request programs.  --core-latency
# measures between two distinct CPUs.  Usage errors exit 2.
source ./functions.sh
set -e -x

: "${KEYSLOTS_BIN:=../bench/keyslots}"
: "${PYTHON:=python3}"
requires test -x "$KEYSLOTS_BIN"
requires "$PYTHON" -c 'import json'

t=test-bench-keyslots
rm -rf $t.tmp && mkdir $t.tmp
cleanup_fn rm -rf $t.tmp

# check FILE EXPR...: each Python expression on the JSON object d is true.
check ()
{
    local file="$1"
    shift
    "$PYTHON" - "$file" "$@" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
for expr in sys.argv[2:]:
    if not eval(expr, {}, {"d": d}):
        sys.exit("%s: false: %s\n%s" % (sys.argv[1], expr,
                                         json.dumps(d, indent=1)))
EOF
}

# K <= S, one thread: 8 programs, then only hits.
"$KEYSLOTS_BIN" --json --slots 8 --keys 8 --requests 1000 > $t.tmp/fit.json
check $t.tmp/fit.json \
    'd["requests"] == 1000' \
    'd["programs"] == 8' 'd["misses"] == 8' 'd["hits"] == 992' \
    'd["program_failures"] == 0' 'd["waits"] == 0' \
    'd["evictions"] == 0' 'd["key_mismatches"] == 0'

# K <= S, several threads, random keys, with data: still one program a key.
"$KEYSLOTS_BIN" --json --slots 8 --keys 5 --threads 4 --requests 2000 \
    --pattern uniform --bytes 4096 > $t.tmp/fit-mt.json
check $t.tmp/fit-mt.json \
    'd["requests"] == 8000' 'd["requests_per_thread"] == 2000' \
    'd["programs"] == 5' 'd["misses"] == 5' 'd["hits"] == 7995' \
    'd["waits"] == 0' 'd["data_unit_size"] == 4096' \
    'd["key_mismatches"] == 0'

# S = 1, two keys alternating on one thread: every request reprograms.
"$KEYSLOTS_BIN" --json --slots 1 --keys 2 --threads 1 \
    --pattern round-robin --requests 1000 > $t.tmp/thrash.json
check $t.tmp/thrash.json \
    'd["programs"] == d["requests"] == 1000' \
    'd["misses"] == 1000' 'd["hits"] == 0' 'd["hit_rate"] == 0' \
    'd["waits"] == 0' 'd["key_mismatches"] == 0'

# Zipf runs and adds up.
"$KEYSLOTS_BIN" --json --slots 4 --keys 64 --threads 2 --requests 5000 \
    --pattern zipf --zipf-s 1.2 --bytes 512 > $t.tmp/zipf.json
check $t.tmp/zipf.json \
    'd["hits"] + d["misses"] == d["requests"] == 10000' \
    'd["programs"] == d["misses"]' 'd["pattern"] == "zipf"' \
    'd["zipf_s"] == 1.2' 'd["key_mismatches"] == 0'

# The human table.
"$KEYSLOTS_BIN" --slots 2 --keys 3 --requests 10 > $t.tmp/table
grep 'requests/s' $t.tmp/table
grep 'hit rate' $t.tmp/table

# The latency between two CPUs: a median inside its range, two CPUs; with
# one CPU to run on, a clear failure.  (No bound on how long: make check
# times nothing, and a shared machine may deschedule either thread.)
if [ "$(nproc)" -ge 2 ]; then
    "$KEYSLOTS_BIN" --core-latency --json > $t.tmp/lat.json
    check $t.tmp/lat.json \
        '0 < d["min_ns"] <= d["core_latency_ns"] <= d["max_ns"]' \
        'd["cpus"][0] != d["cpus"][1]' 'd["runs"] == 7'
fi
if command -v taskset > /dev/null; then
    status=0
    taskset -c 0 "$KEYSLOTS_BIN" --core-latency 2> $t.tmp/err || status=$?
    test "$status" -eq 1
    grep 'needs two CPUs' $t.tmp/err
fi

# Usage errors exit 2 and say what is wrong.
for args in "--core-latency --slots 4" "--slots 0" "--slots 1025" "--keys x" "--threads -1" \
            "--pattern zigzag" "--bytes 100" "--zipf-s 2" \
            "--pattern zipf --zipf-s -1" "--requests" "--frobnicate" \
            "extra"; do
    status=0
    # shellcheck disable=SC2086
    "$KEYSLOTS_BIN" $args > $t.tmp/out 2> $t.tmp/err || status=$?
    test "$status" -eq 2
    grep 'keyslots: ' $t.tmp/err
    test ! -s $t.tmp/out
done
"$KEYSLOTS_BIN" --help | grep -- '--requests N'

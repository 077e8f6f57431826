#!/usr/bin/env bash
# tests/fuzz/run.sh - build the fuzzers, run each for a bounded time, then
# replay the committed corpus and regression seeds.
#
#   tests/fuzz/run.sh [--seconds N] [--build-dir DIR] [HARNESS...]
#
# HARNESS: conf, table, protocol, params, request (default: all).
# --seconds N   run each harness N seconds (default 60); 0 skips the timed
#               runs and only replays tests/fuzz/corpus/<harness>/ and
#               tests/fuzz/regressions/<harness>/
# --build-dir   where to build (kept; default: a temporary directory,
#               removed at the end).  Never the source tree.
# New corpus entries and crash inputs go to the build directory; the
# committed corpus is only read.  Exits 1 if any harness crashed (the
# input is kept as <build-dir>/artifacts/<harness>/crash-*, and printed).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
seconds=60
build_dir=
harnesses=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
        --seconds=*) seconds=${1#*=}; shift ;;
        --build-dir) build_dir=${2:?--build-dir needs a directory}; shift 2 ;;
        --build-dir=*) build_dir=${1#*=}; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) harnesses+=("$1"); shift ;;
    esac
done
case "$seconds" in
    ''|*[!0-9]*) echo "run.sh: --seconds: expected a number" >&2; exit 2 ;;
esac
if [ ${#harnesses[@]} -eq 0 ]; then
    harnesses=(conf table protocol params request)
fi

if [ -z "$build_dir" ]; then
    build_dir=$(mktemp -d "${TMPDIR:-/tmp}/inlinecrypt-fuzz.XXXXXX")
    trap 'rm -rf "$build_dir"' EXIT
fi
"$here/build.sh" "$build_dir" "${harnesses[@]}"

# Sanitizers stop at the first error; libFuzzer keeps the input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
summary=()
for h in "${harnesses[@]}"; do
    bin="$build_dir/fuzz_$h"
    seeds=()
    for d in "$here/corpus/$h" "$here/regressions/$h"; do
        [ -d "$d" ] && seeds+=("$d")
    done
    work="$build_dir/work/$h"
    art="$build_dir/artifacts/$h"
    mkdir -p "$work" "$art"

    if [ "$seconds" -gt 0 ]; then
        echo "run.sh: fuzzing $h for $seconds s"
        log="$build_dir/$h.log"
        # New inputs go to $work, the first corpus directory.
        if "$bin" -max_total_time="$seconds" -timeout=60 \
                -print_final_stats=1 -artifact_prefix="$art/" \
                "$work" "${seeds[@]}" > "$log" 2>&1; then
            stats=$(grep -E '^#[0-9]+' "$log" | tail -1 |
                    grep -oE 'cov: [0-9]+|exec/s: [0-9]+' | tr '\n' ' ')
            summary+=("$h: ok, $stats")
        else
            tail -40 "$log" >&2
            echo "run.sh: $h crashed; input: $(ls "$art"/* 2>/dev/null |
                                             head -1)" >&2
            summary+=("$h: CRASH (see $log)")
            failed+=("$h")
            continue
        fi
    fi

    # Every committed input, once.
    files=()
    for d in "${seeds[@]}"; do
        while IFS= read -r -d '' f; do
            files+=("$f")
        done < <(find "$d" -type f ! -name '.*' -print0 | sort -z)
    done
    if [ ${#files[@]} -eq 0 ]; then
        echo "run.sh: $h: no corpus to replay" >&2
        failed+=("$h")
        continue
    fi
    echo "run.sh: replaying ${#files[@]} inputs of $h"
    if ! "$bin" -timeout=60 -artifact_prefix="$art/" "${files[@]}" \
            > "$build_dir/$h-replay.log" 2>&1; then
        tail -40 "$build_dir/$h-replay.log" >&2
        echo "run.sh: $h: replaying the corpus crashed" >&2
        summary+=("$h: replay CRASH")
        failed+=("$h")
        continue
    fi
    if [ "$seconds" -eq 0 ]; then
        summary+=("$h: replayed ${#files[@]} inputs")
    fi
done

printf 'run.sh: %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "run.sh: all harnesses passed"

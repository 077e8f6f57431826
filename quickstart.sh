#!/usr/bin/env bash
# quickstart.sh - set up, build and then serve or test inlinecrypt.
#
#   ./quickstart.sh serve   install what is missing, build, and serve a
#                           1 GiB memory-backed AES-256-XTS export with a
#                           freshly generated key on nbd://127.0.0.1:10809
#   ./quickstart.sh test    install what is missing, build, and run every
#                           test: make check and a chaos run of the whole
#                           server (tests/chaos.py), both again under
#                           AddressSanitizer + UBSan, then the concurrency
#                           tests under ThreadSanitizer, then the fuzzers
#                           (tests/fuzz/run.sh) for a bounded time each
#
# Debian 12.  Installing packages needs root (or sudo).  Builds go to
# _build/, _build-asan/, _build-tsan/ and _build-fuzz/; the source tree
# stays clean.
# Environment: PORT (10809), SIZE (1G), JOBS (number of CPUs),
# IC_SANITIZERS=0 to skip the sanitizer builds of "test",
# IC_FUZZ_SECONDS (60): how long "test" runs each fuzzer; 0 only replays
# the committed corpus; IC_CHAOS_SECONDS (90): how long tests/chaos.py
# runs, after make check and again under the sanitizers.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
jobs=${JOBS:-$(nproc)}

# Everything the build and the tests use, by Debian package.
packages=(
    build-essential autoconf automake libtool pkg-config
    libgcrypt20-dev libev-dev libjson-c-dev check
    nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin python3-libnbd
    qemu-utils fio python3 python3-cryptography
    xfsprogs
    clang libclang-rt-14-dev
    gdb
)

install_packages ()
{
    local missing=() p sudo=
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "quickstart: please install as root: ${missing[*]}" >&2
            exit 1
        }
        sudo=sudo
    fi
    echo "quickstart: installing ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# build DIR [CONFIGURE-ARGS...]: configure (once) and make in DIR.
build ()
{
    local dir="$1"; shift
    [ -x "$here/configure" ] || (cd "$here" && autoreconf -fi)
    mkdir -p "$dir"
    if [ ! -f "$dir/Makefile" ]; then
        (cd "$dir" && "$here/configure" --enable-gcc-warnings "$@")
    fi
    make -C "$dir" -j"$jobs"
}

serve ()
{
    local port=${PORT:-10809} size=${SIZE:-1G} state key
    build _build
    state="$here/_build/quickstart"
    mkdir -p "$state"
    key="$state/key.hex"
    # A fresh 512-bit key (AES-256-XTS takes two 256-bit halves).
    (umask 077 && head -c 64 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$key")
    cat <<MSG

inlinecrypt: serving a $size memory-backed AES-256-XTS export
  (4096-byte data units, DUN = offset / 4096) with a new key in
  $key
Connect to:  nbd://127.0.0.1:$port
Try:         nbdinfo nbd://127.0.0.1:$port
Stop with Ctrl-C.

MSG
    exec nbdkit --foreground -i 127.0.0.1 -p "$port" \
        "$here/_build/plugins/.libs/nbdkit-inlinecrypt-plugin.so" \
        size="$size" mode=AES-256-XTS key=+"$key"
}

# check DIR: make check in DIR; if it fails, print the logs of the tests
# that did not pass (a CI log may be all there is to read).
check ()
{
    rm -f "$1/tests/test-suite.log"
    make -C "$1" -j"$jobs" check && return 0
    cat "$1/tests/test-suite.log" >&2 || true
    return 1
}

# tests/chaos.py on build $1: clients checking every read against a
# model while keys, engines, faults, maps, tables and mirror legs change.
chaos ()
{
    local b=$1; shift
    /usr/bin/python3 tests/chaos.py --seconds "${IC_CHAOS_SECONDS:-90}" \
        --strict-nbd --plugin "$b/plugins/.libs/nbdkit-inlinecrypt-plugin.so" \
        --ctl "$b/server/inlinecryptctl" "$@"
}

run_tests ()
{
    build _build
    check _build
    chaos _build
    if [ "${IC_SANITIZERS:-1}" = 1 ]; then
        build _build-asan --enable-sanitizers=address,undefined
        check _build-asan
        chaos _build-asan --asan
        build _build-tsan --enable-sanitizers=thread
        check _build-tsan
    fi
    JOBS=$jobs tests/fuzz/run.sh --seconds "${IC_FUZZ_SECONDS:-60}" \
        --build-dir _build-fuzz
    echo "quickstart: all tests passed"
}

case "${1:-}" in
    serve) install_packages; serve ;;
    test) install_packages; run_tests ;;
    *)
        echo "usage: $0 serve|test" >&2
        exit 2
        ;;
esac

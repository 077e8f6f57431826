# tests/functions.sh - sourced by every end-to-end test (set -e -x).
#
#   requires CMD ARGS...    skip (exit 77) unless CMD ARGS succeeds
#   requires_plugin         skip unless the build tree's plugin exists
#   cleanup_fn CMD ARGS...  run CMD ARGS at exit, last registered first
#   start_nbdkit -P PIDFILE ARGS...
#                           start nbdkit in the background, wait until its
#                           pidfile appears, and stop it at exit
#   random_key FILE BYTES   write BYTES random bytes as hex to FILE (0600)
#   oracle ARGS...          run tests/oracle.py with the Python that has
#                           the cryptography module
#
# Environment (from tests/Makefile.am): PLUGIN, PYTHON, srcdir,
# SANITIZER_PRELOAD.

: "${srcdir:=.}"

# nbdkit is not built with the sanitizers of a sanitizer build, so their
# runtime is preloaded into it, and only into it: not into the commands
# of --run.
nbdkit ()
{
    local args=() prev=
    if [ -z "${SANITIZER_PRELOAD:-}" ]; then
        command nbdkit "$@"
        return
    fi
    for a in "$@"; do
        if [ "$prev" = --run ]; then
            a="unset LD_PRELOAD; $a"
        fi
        args+=("$a")
        prev="$a"
    done
    LD_PRELOAD="$SANITIZER_PRELOAD" command nbdkit "${args[@]}"
}

requires ()
{
    if ! "$@" >/dev/null 2>&1; then
        echo "$0: test skipped because this failed: $*" >&2
        exit 77
    fi
}

requires_plugin ()
{
    if [ ! -f "$PLUGIN" ]; then
        echo "$0: the plugin was not built: $PLUGIN" >&2
        exit 77
    fi
}

_cleanup_fns=()

_run_cleanup ()
{
    local status=$?
    local i
    set +e
    for (( i = ${#_cleanup_fns[@]} - 1; i >= 0; i-- )); do
        eval "${_cleanup_fns[$i]}"
    done
    exit $status
}
trap _run_cleanup EXIT
trap 'exit 130' INT TERM

cleanup_fn ()
{
    local cmd
    printf -v cmd '%q ' "$@"
    _cleanup_fns+=("$cmd")
}

# Stop the nbdkit whose pid is in $1, waiting for it to go.
_stop_nbdkit ()
{
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

start_nbdkit ()
{
    local pidfile
    if [ "$1" != "-P" ] || [ -z "$2" ]; then
        echo "start_nbdkit: first arguments must be -P PIDFILE" >&2
        return 1
    fi
    pidfile="$2"
    rm -f "$pidfile"
    nbdkit "$@"
    for _ in $(seq 100); do
        [ -s "$pidfile" ] && break
        sleep 0.1
    done
    if [ ! -s "$pidfile" ]; then
        echo "start_nbdkit: nbdkit did not start" >&2
        return 1
    fi
    cleanup_fn _stop_nbdkit "$pidfile"
}

random_key ()
{
    ( umask 077 && head -c "$2" /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$1" )
}

oracle ()
{
    "$PYTHON" "$srcdir/oracle.py" "$@"
}

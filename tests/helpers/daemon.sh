# shellcheck shell=sh disable=SC2034  # tmp, pid, port are read by the caller
# tests/helpers/daemon.sh: a spacesimd on an ephemeral loopback port for the
# script tests (tests/net/rpc_interop.sh, tests/python/run.sh). Sourced, not
# run: `. "$SRCDIR/tests/helpers/daemon.sh"` after setting DAEMON (the
# spacesimd binary). Messages are prefixed with the caller's script name.
#
#   sp_daemon_setup TMPNAME SIGNAL
#       Fails (exit 1) if $DAEMON is not executable; makes the scratch
#       directory $tmp (mktemp -d, TMPNAME a word for its name) and installs
#       the EXIT trap that sends SIGNAL to a still-running daemon, waits for
#       it and removes $tmp (INT/TERM exit 130).
#   sp_daemon_start WAIT_SECONDS [spacesimd options...]
#       Starts $DAEMON --bind 127.0.0.1 --port 0 --port-file $tmp/port with
#       the options (stderr to $tmp/daemon.log) in the background ($pid), waits
#       up to WAIT_SECONDS for the port file and sets $port. Exits 1 (with the
#       log when the daemon died) if no port was published.
#   sp_daemon_stop
#       SIGTERM, wait; returns the daemon's exit status and forgets $pid.
sp_me=${0##*/}
tmp=
pid=
port=

sp_daemon_cleanup() {
    if [ -n "$pid" ]; then
        kill -"$sp_signal" "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}

sp_daemon_setup() {
    if [ ! -x "$DAEMON" ]; then
        echo "$sp_me: daemon not found at $DAEMON (build it: make src/daemon/spacesimd)" >&2
        exit 1
    fi
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/spacesim-$1.XXXXXX") || exit 1
    sp_signal=$2
    trap sp_daemon_cleanup EXIT
    trap 'exit 130' INT TERM
}

sp_daemon_start() {
    sp_wait=$1
    shift
    "$DAEMON" --bind 127.0.0.1 --port 0 --port-file "$tmp/port" "$@" 2>"$tmp/daemon.log" &
    pid=$!
    sp_i=0
    while [ ! -s "$tmp/port" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$sp_me: spacesimd exited before listening; its log:" >&2
            cat "$tmp/daemon.log" >&2
            pid=
            exit 1
        fi
        sp_i=$((sp_i + 1))
        if [ "$sp_i" -gt $((sp_wait * 20)) ]; then
            echo "$sp_me: spacesimd did not publish a port within $sp_wait s" >&2
            exit 1
        fi
        sleep 0.05
    done
    port=$(cat "$tmp/port")
}

sp_daemon_stop() {
    kill -TERM "$pid"
    wait "$pid"
    sp_st=$?
    pid=
    return $sp_st
}

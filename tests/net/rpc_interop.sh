#!/bin/sh
# tests/net/rpc_interop.sh: any MessagePack-RPC client can talk to spacesimd.
#
# Starts ${SPACESIMD} on an ephemeral loopback port (--port 0 --port-file),
# runs tests/net/rpc_interop.py (raw socket + Debian's python3-msgpack, no
# project code) against it, then stops the daemon with SIGTERM and requires
# a clean exit. Exit status: 0 pass, 1 fail (also when python3-msgpack is missing:
# quickstart.sh installs it, so a missing module is a broken setup, not a skip).
set -u

PY=/usr/bin/python3
SRCDIR=${SPACESIM_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}

if [ ! -x "$PY" ] || ! "$PY" -c 'import msgpack' 2>/dev/null; then
    echo "rpc_interop.sh: FAIL: $PY cannot import msgpack (apt-get install python3-msgpack)" >&2
    exit 1
fi
if [ ! -x "$DAEMON" ]; then
    echo "rpc_interop.sh: daemon not found at $DAEMON (build it: make src/daemon/spacesimd)" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/spacesim-interop.XXXXXX") || exit 1
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$DAEMON" --bind 127.0.0.1 --port 0 --port-file "$tmp/port" --workers 2 \
    --demo-asteroids 200 --demo-npcs 10 --world-size 1000 --checkpoint-every 0 2>"$tmp/daemon.log" &
pid=$!

i=0
while [ ! -s "$tmp/port" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "rpc_interop.sh: spacesimd exited before listening; its log:" >&2
        cat "$tmp/daemon.log" >&2
        pid=
        exit 1
    fi
    i=$((i + 1))
    if [ "$i" -gt 400 ]; then
        echo "rpc_interop.sh: spacesimd did not publish a port within 20 s" >&2
        exit 1
    fi
    sleep 0.05
done
port=$(cat "$tmp/port")

PYTHONDONTWRITEBYTECODE=1 "$PY" "$SRCDIR/tests/net/rpc_interop.py" "$port"
rc=$?

# Graceful stop: SIGTERM must give exit status 0 (under --enable-sanitizers
# that also means no leak was reported).
kill -TERM "$pid"
wait "$pid"
st=$?
pid=
if [ "$st" -ne 0 ]; then
    echo "rpc_interop.sh: spacesimd exited with status $st after SIGTERM" >&2
    rc=1
fi
if [ "$rc" -ne 0 ]; then
    echo "rpc_interop.sh: FAILED; last lines of the daemon log:" >&2
    tail -n 20 "$tmp/daemon.log" >&2
fi
exit $rc

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
. "$SRCDIR/tests/helpers/daemon.sh"
sp_daemon_setup interop KILL
sp_daemon_start 20 --workers 2 --demo-asteroids 200 --demo-npcs 10 --world-size 1000 --checkpoint-every 0 --reconnect-grace 1

# The protocol version the daemon must announce: the one it is built with.
proto=$(sed -n 's/^#define SP_PROTO_VERSION \([0-9]*\).*/\1/p' "$SRCDIR/proto/spacesim_proto.def")
PYTHONDONTWRITEBYTECODE=1 "$PY" "$SRCDIR/tests/net/rpc_interop.py" "$port" "${proto:-0}"
rc=$?

# Graceful stop: SIGTERM must give exit status 0 (under --enable-sanitizers
# that also means no leak was reported).
sp_daemon_stop
st=$?
if [ "$st" -ne 0 ]; then
    echo "rpc_interop.sh: spacesimd exited with status $st after SIGTERM" >&2
    rc=1
fi
if [ "$rc" -ne 0 ]; then
    echo "rpc_interop.sh: FAILED; last lines of the daemon log:" >&2
    tail -n 20 "$tmp/daemon.log" >&2
fi
exit $rc

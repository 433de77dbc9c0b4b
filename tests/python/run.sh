#!/bin/sh
# tests/python/run.sh: the Python client's unittest suite against a real
# spacesimd started on an ephemeral loopback port (issue 4).
#
# Uses /usr/bin/python3 (Debian's, with python3-msgpack). Prints the pass /
# fail counts (they land in run.sh.log under `make check`), stops the daemon
# and exits non-zero when a test failed or the daemon could not start.
set -u

PY=/usr/bin/python3
SRCDIR=${SPACESIM_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}

if ! "$PY" -c 'import msgpack' 2>/dev/null; then
    echo "run.sh: $PY cannot import msgpack: install python3-msgpack (apt-get install python3-msgpack)" >&2
    exit 1
fi
. "$SRCDIR/tests/helpers/daemon.sh"
sp_daemon_setup py TERM
token="py-test-$$-$(date +%s)"

# Small world, so the suite is quick (interest cells of 250: 8 per axis, so a
# small radius sees a small part of it); the token comes from the environment, never argv.
export SPACESIM_ADMIN_TOKEN="$token"
sp_daemon_start 10 --workers 2 --demo-asteroids 400 --demo-npcs 20 --world-size 2000 --interest-cell 250 --checkpoint-every 0
echo "run.sh: spacesimd pid $pid listening on 127.0.0.1:$port"

SPACESIM_PORT=$port SPACESIM_ADMIN_TOKEN=$token SPACESIM_SRCDIR=$SRCDIR \
PYTHONPATH="$SRCDIR/clients/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
    "$PY" -m unittest discover -v -s "$SRCDIR/tests/python" -t "$SRCDIR/tests/python" -p 'test_*.py' \
    >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"

ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\}.*/\1/p' "$tmp/out" | tail -n 1)
failures=$(sed -n 's/.*failures=\([0-9]*\).*/\1/p' "$tmp/out" | tail -n 1)
errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' "$tmp/out" | tail -n 1)
skipped=$(sed -n 's/.*skipped=\([0-9]*\).*/\1/p' "$tmp/out" | tail -n 1)
ran=${ran:-0}; failures=${failures:-0}; errors=${errors:-0}; skipped=${skipped:-0}
passed=$((ran - failures - errors - skipped))
echo "python client tests: $ran run, $passed passed, $failures failed, $errors errors, $skipped skipped"

if ! kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: spacesimd died during the tests; its log:" >&2
    tail -n 50 "$tmp/daemon.log" >&2
    rc=1
fi
if [ "$rc" -ne 0 ] || [ "$ran" -eq 0 ]; then
    echo "run.sh: FAILED; last lines of the daemon log:" >&2
    tail -n 20 "$tmp/daemon.log" >&2
    [ "$rc" -ne 0 ] || rc=1
fi
exit $rc

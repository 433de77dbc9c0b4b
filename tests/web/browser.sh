#!/bin/sh
# tests/web/browser.sh: the web view in a real browser (issue 11, point 5).
# Headless Chromium loads the page from a real spacesimd (--http-port) and
# the test asserts what a person sees, through the DevTools protocol
# (tests/web/browser.py): the entities drawn equal the daemon's view of the
# page's session, a spawned ship appears and moves, a client kicked from the
# operator's console leaves its list. A screenshot goes to
# tests/web/web-view.png in the build tree.
#
# Chromium absent: skipped (exit 77) with a line saying so; quickstart.sh
# test installs it (and python3-websockets), so CI runs it.
set -u
SRCDIR=${SPACESIM_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
PY=/usr/bin/python3
CHROME=${CHROMIUM:-}
if [ -z "$CHROME" ]; then
    for c in chromium chromium-browser google-chrome; do
        if command -v "$c" >/dev/null 2>&1; then CHROME=$(command -v "$c"); break; fi
    done
fi
if [ -z "$CHROME" ]; then
    echo "browser.sh: SKIP: no chromium found (apt-get install chromium, or ./quickstart.sh test)"
    exit 77
fi
if ! "$PY" -c 'import websockets, msgpack' 2>/dev/null; then
    echo "browser.sh: FAIL: python3-websockets and python3-msgpack are needed (apt-get install python3-websockets python3-msgpack)" >&2
    exit 1
fi
mkdir -p tests/web
exec "$PY" "$SRCDIR/tests/web/browser.py" "$DAEMON" "$SRCDIR" "$CHROME" "$PWD/tests/web" "${CK_TIMEOUT_MULTIPLIER:-1}"

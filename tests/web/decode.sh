#!/bin/sh
# tests/web/decode.sh: the web view's snapshot decoder (web/app.js, protocol 2
# per-cell chunks, issue 9) on hand-built messages, in node: no daemon, no
# browser (tests/web/decode.js). Skipped (77) without node; quickstart.sh test
# installs nodejs, so CI runs it.
set -u
SRCDIR=${SPACESIM_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
NODE=${NODE:-}
if [ -z "$NODE" ]; then
    for n in node nodejs; do
        if command -v "$n" >/dev/null 2>&1; then NODE=$(command -v "$n"); break; fi
    done
fi
if [ -z "$NODE" ]; then
    echo "decode.sh: SKIP: no node found (apt-get install nodejs, or ./quickstart.sh test)"
    exit 77
fi
exec "$NODE" "$SRCDIR/tests/web/decode.js" "$SRCDIR"

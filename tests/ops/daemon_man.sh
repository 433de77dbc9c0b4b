#!/bin/sh
# tests/ops/daemon_man.sh: spacesimd.1 (issue 12) renders with man -l and no
# warning, and names every option of --help and the sections operators look
# for; it is the daemon's own --man output, so it cannot drift from --help.
set -u
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
page="$(dirname "$DAEMON")/spacesimd.1"
fails=0
fail() { echo "daemon_man.sh: FAIL: $*" >&2; fails=$((fails + 1)); }
if ! command -v man >/dev/null 2>&1; then
    echo "daemon_man.sh: FAIL: man not found (apt-get install man-db; quickstart.sh installs it)" >&2
    exit 1
fi
[ -f "$page" ] || { echo "daemon_man.sh: FAIL: $page not built (make src/daemon/spacesimd.1)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spacesim-man.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
"$DAEMON" --man >"$tmp/fresh.1" || fail "--man exit"
cmp -s "$page" "$tmp/fresh.1" || fail "$page is not the binary's --man output (stale?)"
LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l "$page" >"$tmp/txt" 2>"$tmp/err"
st=$?
[ "$st" -eq 0 ] || fail "man exit $st"
[ -s "$tmp/err" ] && fail "man warnings: $(cat "$tmp/err")"
# Plain text, no overstrike, for grepping.
sed 's/.\x08//g' "$tmp/txt" >"$tmp/plain"
"$DAEMON" --help | grep -o -- '--[a-z][a-z-]*' | sort -u >"$tmp/opts"
[ -s "$tmp/opts" ] || fail "no options in --help"
while read -r o; do
    grep -qF -- "$o" "$tmp/plain" || fail "the page lacks $o"
done <"$tmp/opts"
for s in NAME SYNOPSIS DESCRIPTION OPTIONS "CONFIGURATION FILE" SIGNALS "EXIT STATUS" ENVIRONMENT FILES "SEE ALSO"; do
    grep -q "^$s" "$tmp/plain" || fail "the page lacks the section $s"
done
grep -q SIGTERM "$tmp/plain" || fail "the page does not describe SIGTERM"
grep -q SPACESIM_ADMIN_TOKEN "$tmp/plain" || fail "the page does not name SPACESIM_ADMIN_TOKEN"
[ $fails -eq 0 ] && echo "daemon_man.sh: ok ($(wc -l <"$tmp/opts") options)"
[ $fails -eq 0 ]

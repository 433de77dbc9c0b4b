#!/bin/sh
# tests/ops/systemd_unit.sh: contrib/spacesimd.service passes
# `systemd-analyze verify` (issue 12), with ExecStart pointed at the built
# daemon (verify requires the binary to exist) and the built page on MANPATH
# (verify runs `man spacesimd(1)` for Documentation=). A missing
# systemd-analyze fails: quickstart.sh installs systemd.
set -u
SRCDIR=${SPACESIM_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd_unit.sh: FAIL: systemd-analyze not found (apt-get install systemd)" >&2
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spacesim-unit.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
daemondir=$(cd "$(dirname "$DAEMON")" && pwd)
mkdir -p "$tmp/man/man1"
cp "$daemondir/spacesimd.1" "$tmp/man/man1/" || exit 1
sed -e "s|@bindir@|$daemondir|g" -e "s|@sysconfdir@|/etc|g" "$SRCDIR/contrib/spacesimd.service.in" >"$tmp/spacesimd.service"
grep -q '^Type=notify$' "$tmp/spacesimd.service" || { echo "systemd_unit.sh: FAIL: not Type=notify" >&2; exit 1; }
for k in DynamicUser=yes StateDirectory=spacesim ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes \
    PrivateTmp=yes EnvironmentFile=; do
    grep -q "^$k" "$tmp/spacesimd.service" || { echo "systemd_unit.sh: FAIL: no $k" >&2; exit 1; }
done
if ! MANPATH="$tmp/man" SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$tmp/spacesimd.service" >"$tmp/out" 2>&1 ||
    [ -s "$tmp/out" ]; then
    echo "systemd_unit.sh: FAIL: systemd-analyze verify:" >&2
    cat "$tmp/out" >&2
    exit 1
fi
echo "systemd_unit.sh: ok"

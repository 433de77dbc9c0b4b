#!/bin/sh
# tests/ops/daemon_config.sh: spacesimd --config FILE and --print-config (issue 12).
#
#  - every key refused for what it says names FILE:LINE and exits 2: unknown
#    key, bad value, a section, a key twice, a line without '=';
#    an unreadable file exits 3;
#  - the command line wins over the file; the file wins over the defaults;
#  - --print-config writes every visible flag of --help as a key, and its
#    output read back with --config prints the same (a valid config);
#  - the admin token is never a key and never printed;
#  - the installed example (contrib/spacesimd.conf.example) is valid;
#  - a daemon started from a file really uses it (port 0 + port-file there);
#  - -h and -V are the short forms of --help and --version.
set -u
SRCDIR=${SPACESIM_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
BUILDDIR=$(cd "$(dirname "$DAEMON")/../.." && pwd)
. "$SRCDIR/tests/helpers/daemon.sh"
sp_daemon_setup config KILL
fails=0
fail() { echo "daemon_config.sh: FAIL: $*" >&2; fails=$((fails + 1)); }

# refused "file text" "expected stderr fragment" [status]
refused() {
    printf '%s' "$1" >"$tmp/bad.conf"
    "$DAEMON" --config "$tmp/bad.conf" --print-config >"$tmp/out" 2>"$tmp/err"
    st=$?
    want=${3:-2}
    [ "$st" -eq "$want" ] || fail "exit $st (want $want) for: $1"
    grep -qF -- "$2" "$tmp/err" || fail "stderr lacks '$2' for: $1; got: $(cat "$tmp/err")"
    [ -s "$tmp/out" ] && fail "printed a config although refused: $1"
}
refused 'port = 7000
prot = 7001
' "$tmp/bad.conf:2: unknown key 'prot'"
refused '# comment
; comment

tick-hz = fast
' "$tmp/bad.conf:4: invalid value 'fast' for tick-hz: expected an integer in [1, 1000]"
refused 'workers = 0
' "$tmp/bad.conf:1: invalid value '0' for workers"
refused 'log-level = loud
' "$tmp/bad.conf:1: invalid value 'loud' for log-level"
refused 'port = 1
[server]
bind = 0.0.0.0
' "$tmp/bad.conf:3: sections are not used ([server])"
refused 'seed = 1
seed = 2
' "$tmp/bad.conf:2: key 'seed' set twice"
refused 'port 7000
' "$tmp/bad.conf:1: syntax error"
refused 'admin-token = secret
' "$tmp/bad.conf:1: unknown key 'admin-token'"
refused 'obuf-soft = 100000
obuf-hard = 5000
' "must be >= --obuf-soft"
"$DAEMON" --config "$tmp/missing.conf" >/dev/null 2>"$tmp/err"
st=$?
[ "$st" -eq 3 ] || fail "unreadable --config exits $st, want 3"
grep -qF "cannot read --config $tmp/missing.conf" "$tmp/err" || fail "unreadable: $(cat "$tmp/err")"

# Precedence: defaults < file < command line.
printf 'port = 7100\nseed = 9\nrate = 50\nidle-timeout = 0.5\n' >"$tmp/a.conf"
"$DAEMON" --port 7200 --config "$tmp/a.conf" --print-config >"$tmp/p" 2>"$tmp/err" || fail "print-config: $(cat "$tmp/err")"
grep -qx 'port = 7200' "$tmp/p" || fail "command line did not win: $(grep '^port' "$tmp/p")"
grep -qx 'seed = 9' "$tmp/p" || fail "file did not set seed"
grep -qx 'rate = 50' "$tmp/p" || fail "file did not set rate"
grep -qx 'idle-timeout = 0.5' "$tmp/p" || fail "file did not set idle-timeout"
grep -qx 'tick-hz = 60' "$tmp/p" || fail "default tick-hz not printed"

# Every visible option of --help is a key of --print-config and back.
"$DAEMON" --help >"$tmp/help" || fail "--help exit"
sed -n 's/^ *--\([a-z][a-z-]*\) [A-Z].*/\1/p' "$tmp/help" | grep -vx config | sort >"$tmp/help.keys"
sed -n 's/^#\{0,1\}\([a-z][a-z-]*\) = .*/\1/p' "$tmp/p" | sort >"$tmp/conf.keys"
[ -s "$tmp/help.keys" ] || fail "no options found in --help"
cmp -s "$tmp/help.keys" "$tmp/conf.keys" || fail "--help options and --print-config keys differ: $(diff "$tmp/help.keys" "$tmp/conf.keys" | tr '\n' ' ')"

# The output is a valid config giving the same configuration.
"$DAEMON" --config "$tmp/p" --print-config >"$tmp/p2" 2>"$tmp/err" || fail "print-config output refused: $(cat "$tmp/err")"
cmp -s "$tmp/p" "$tmp/p2" || fail "print-config does not round-trip: $(diff "$tmp/p" "$tmp/p2" | head -5)"

# The token stays out: given by file and by environment, never printed.
printf 'hunter2-token\n' >"$tmp/token"
SPACESIM_ADMIN_TOKEN=env-secret-token "$DAEMON" --admin-token-file "$tmp/token" --print-config >"$tmp/p3" || fail "print-config with token"
grep -q 'hunter2-token\|env-secret-token' "$tmp/p3" && fail "--print-config printed the admin token"
grep -qx "admin-token-file = $tmp/token" "$tmp/p3" || fail "admin-token-file not printed"

# The example the build installs is a valid configuration.
ex="$BUILDDIR/contrib/spacesimd.conf.example"
if [ -f "$ex" ]; then
    "$DAEMON" --config "$ex" --print-config >/dev/null 2>"$tmp/err" || fail "example refused: $(cat "$tmp/err")"
    grep -q '^#port = 7777$' "$ex" || fail "example lacks '#port = 7777'"
else
    fail "example $ex not built (make contrib/spacesimd.conf.example)"
fi

# Short forms.
"$DAEMON" -V | grep -q '^spacesimd [0-9.]* (protocol [0-9]*)$' || fail "-V"
"$DAEMON" -h | grep -q '^Usage: spacesimd' || fail "-h"

# A daemon started from a file listens as the file says.
printf 'bind = 127.0.0.1\nport = 0\nport-file = %s\ndemo-asteroids = 50\ndemo-npcs = 5\ncheckpoint-every = 0\n' \
    "$tmp/port" >"$tmp/run.conf"
"$DAEMON" --config "$tmp/run.conf" 2>"$tmp/daemon.log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 400 ]; do
    sleep 0.05
    i=$((i + 1))
done
if [ -s "$tmp/port" ]; then
    sp_daemon_stop || fail "daemon from the file did not exit 0"
else
    fail "daemon started with --config published no port: $(cat "$tmp/daemon.log")"
fi

[ $fails -eq 0 ] && echo "daemon_config.sh: ok"
[ $fails -eq 0 ]

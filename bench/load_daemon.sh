#!/bin/sh
# bench/load_daemon.sh: the daemon's load figures (issue 3), measured with spacesim-load.
#
#   bench/load_daemon.sh [BUILD_DIR] [CLIENTS] [SECONDS] [ENTITIES]
#
# Starts spacesimd on 127.0.0.1 (ephemeral port) with a demo world of ENTITIES entities
# (95% asteroids, 5% NPC ships; default 100000), lets it settle, drives it with CLIENTS
# spacesim-load clients (default 1000) for SECONDS (default 30; extra spacesim-load options in
# $SPACESIM_LOAD_ARGS, e.g. "--radius 500" for the interest radius; extra spacesimd options in
# $SPACESIM_DAEMON_ARGS; every client comes from 127.0.0.1, so the daemon's per-address cap is
# raised to the client count), then prints the load report,
# the server's own stats, one summary line and the load generator's own CPU (user+sys, % of one
# core, per loop thread: spacesim-load --threads, default 2). Bounded: everything stops by itself; the daemon
# is killed on exit.
set -u
build=${1:-build}
clients=${2:-1000}
secs=${3:-30}
ents=${4:-100000}
daemon=$build/src/daemon/spacesimd
load=$build/clients/spacesim-load
[ -x "$daemon" ] && [ -x "$load" ] || { echo "load_daemon.sh: build first (make -C $build)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/spacesim-load.XXXXXX") || exit 1
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

npcs=$((ents / 20))
asteroids=$((ents - npcs))
# World edge grows with the cube root of the count so density stays demo-like.
edge=$(awk -v n="$ents" 'BEGIN { printf "%d", 4000 * exp(log(n / 5200) / 3) }')
"$daemon" --port 0 --port-file "$tmp/port" --demo-asteroids "$asteroids" --demo-npcs "$npcs" \
    --world-size "$edge" --max-clients $((clients + 16)) --max-per-address $((clients + 16)) \
    --checkpoint-every 0 --log-level warn ${SPACESIM_DAEMON_ARGS:-} 2>"$tmp/daemon.log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/daemon.log" >&2; pid=; exit 1; }
    i=$((i + 1)); [ $i -gt 600 ] && { echo "daemon did not start" >&2; exit 1; }
    sleep 0.1
done
port=$(cat "$tmp/port")
echo "# spacesimd: $asteroids asteroids + $npcs NPCs, world edge $edge, port $port; $clients clients for ${secs}s"
sleep 3   # let the demo world settle (asteroids fall asleep) before measuring
"$load" -p "$port" -c "$clients" -d "$secs" --ramp 5 --json "$tmp/load.json" -q ${SPACESIM_LOAD_ARGS:-}
rc=$?
/usr/bin/python3 - "$tmp/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r.get("server_stats", {})
def g(k, d="?"): return r.get(k, d)
print("summary: clients=%s rtt_p99_ms=%s ping_p99_ms=%s snap_rate_min=%s snap_rate_median=%s errors=%s "
      "server_tick_p99_ms=%s server_tick_max_ms=%s overruns=%s dilation=%s snapshots_dropped=%s" % (
      g("clients_connected"), g("p99_ms"), g("ping_p99_ms"), g("snap_rate_min"), g("snap_rate_median"),
      g("errors"), s.get("tick_ms_p99", "?"), s.get("tick_ms_max", "?"), s.get("overruns", "?"),
      s.get("dilation", "?"), s.get("snapshots_dropped", "?")))
# The generator's own CPU over the run (issue 9 point 4): a loop thread near 100% of a core means
# the figures above measure the generator, not the daemon.
threads = int(g("load_threads", 1))
print("load generator: threads=%d cpu_pct=%s (user %ss, sys %ss) per_thread_pct=%s thread_max_pct=%s send_lag_p99_ms=%s" % (
      threads, g("load_cpu_pct"), g("load_cpu_user_s"), g("load_cpu_sys_s"),
      "/".join("%.0f" % r.get("load_cpu_pct_thread%d" % i, 0) for i in range(threads)),
      g("load_cpu_pct_thread_max"), g("send_lag_p99_ms")))
PY
exit $rc

#!/bin/sh
# bench/overload.sh: the daemon with clients on a machine short of CPU (issue 9 point 7: a daemon
# that falls behind must not make its snapshots bigger), one build against another in the same run.
#
#   bench/overload.sh BUILD [BASE_BUILD] [CLIENTS] [SECONDS] [HOGS] [ROUNDS]
#
# Per round and build: starts spacesimd on 127.0.0.1 with the load world of load_daemon.sh (95k
# asteroids, 5k NPCs, edge 10716), HOGS busy loops (default 2: as many as this machine has CPUs
# keeps the daemon, the generator and the hogs fighting for them), and CLIENTS spacesim-load clients
# (default 300) for SECONDS (default 20). Two seconds before the end it reads the daemon's stats.
# Prints, per run: bytes per snapshot sent, snapshots dropped at the output limit, tick p99,
# dilation, the clients' snapshot rate (min, median) and the generator's CPU; then the medians of
# BUILD against BASE_BUILD. Bounded: the hogs and the daemon are killed after each run.
set -u
build=${1:?usage: overload.sh BUILD [BASE_BUILD] [CLIENTS] [SECONDS] [HOGS] [ROUNDS]}
base=${2:-}
clients=${3:-300}
secs=${4:-20}
hogs=${5:-2}
rounds=${6:-2}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spacesim-overload.XXXXXX") || exit 1
pids=
cleanup() { for p in $pids; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "world: 95000 asteroids, 5000 NPCs, edge 10716; $clients clients for ${secs}s beside $hogs busy loops; $rounds rounds"

# run BUILD TAG: one window; appends "TAG bytes/snap dropped p99 dilation min median gencpu" to $tmp/rows
run() {
    b=$1 tag=$2
    rm -f "$tmp/port"
    "$b/src/daemon/spacesimd" --port 0 --port-file "$tmp/port" --demo-asteroids 95000 --demo-npcs 5000 \
        --world-size 10716 --checkpoint-every 0 --log-level warn --max-clients $((clients + 16)) \
        --max-per-address $((clients + 16)) 2>"$tmp/daemon.log" &
    dpid=$!
    pids="$dpid"
    i=0
    while [ ! -s "$tmp/port" ]; do
        kill -0 "$dpid" 2>/dev/null || { cat "$tmp/daemon.log" >&2; return 1; }
        i=$((i + 1))
        [ $i -gt 1200 ] && { echo "overload.sh: daemon did not listen in 120 s" >&2; return 1; }
        sleep 0.1
    done
    port=$(cat "$tmp/port")
    sleep 3 # the demo world settles (asteroids fall asleep)
    for h in $(seq 1 "$hogs"); do
        sh -c 'while :; do :; done' &
        pids="$pids $!"
    done
    "$b/clients/spacesim-load" -p "$port" -c "$clients" -d "$secs" --ramp 5 -q --json "$tmp/load.json" \
        >"$tmp/load.txt" 2>&1 &
    lpid=$!
    pids="$pids $lpid"
    sleep $((secs - 2))
    timeout 20 "$b/clients/spacesim-cli" --port "$port" stats >"$tmp/stats.json" 2>/dev/null
    wait "$lpid"
    for p in $pids; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=
    python3 - "$tag" "$tmp/stats.json" "$tmp/load.json" >>"$tmp/rows" <<'PY'
import json, sys
tag, s, l = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
print(tag, "%.0f %d %.1f %.2f %.2f %.2f %.0f" % (s["snapshot_bytes"] / max(1, s["snapshots_sent"]),
      s["snapshots_dropped"], s["tick_ms_p99"], s["dilation"], l.get("snap_rate_min", 0),
      l.get("snap_rate_median", 0), l.get("load_cpu_pct", 0)))
PY
    tail -1 "$tmp/rows" | awk '{printf "  %-5s %s B per snapshot, %s dropped, tick p99 %s ms, dilation %s; snapshots per client per second min %s, median %s; generator CPU %s%%\n", $1, $2, $3, $4, $5, $6, $7, $8}'
}

for r in $(seq 1 "$rounds"); do
    echo "round $r"
    run "$build" new || exit 1
    [ -n "$base" ] && { run "$base" base || exit 1; }
done
[ -n "$base" ] || exit 0
python3 - "$tmp/rows" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
names = ["B per snapshot", "dropped", "tick p99", "dilation", "snapshots/s min", "snapshots/s median", "generator CPU %"]
print("median over rounds, new vs base:")
for i, n in enumerate(names):
    a = statistics.median(r[i] for r in rows["new"])
    b = statistics.median(r[i] for r in rows["base"])
    print("  %-18s new %10.2f  base %10.2f  new/base %s" % (n, a, b, "%.2fx" % (a / b) if b else "-"))
PY

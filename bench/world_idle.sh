#!/bin/sh
# bench/world_idle.sh: the daemon's tick with a big world and no clients (issue 9, point 1),
# one build against another in the same run.
#
#   bench/world_idle.sh BUILD [BASE_BUILD] [ENTITIES] [SECONDS] [ROUNDS]
#
# Starts BUILD's spacesimd (and BASE_BUILD's, alternately, ROUNDS times each; default 2) on
# 127.0.0.1 with a demo world of ENTITIES entities (default 1000000: 95% asteroids, most of
# them asleep once settled, 5% NPC ships; the world edge grows with the cube root of the count,
# as in load_daemon.sh), waits SECONDS (default 40) after it listens, and prints the server's
# stats: tick p50/p99/max over the last 1024 ticks, overruns and AI stalls during the window,
# dilation, the daemon's CPU. Then, per figure, the median of BUILD over the median of
# BASE_BUILD. Bounded: every daemon is killed after its window.
set -u
build=${1:?usage: world_idle.sh BUILD [BASE_BUILD] [ENTITIES] [SECONDS] [ROUNDS]}
base=${2:-}
ents=${3:-1000000}
secs=${4:-40}
rounds=${5:-2}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spacesim-idle.XXXXXX") || exit 1
pid=
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
npcs=$((ents / 20))
asteroids=$((ents - npcs))
edge=$(awk -v n="$ents" 'BEGIN { printf "%d", 4000 * exp(log(n / 5200) / 3) }')
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "world: $asteroids asteroids, $npcs NPCs, edge $edge; window ${secs}s after listening; $rounds rounds"

# run BUILD TAG: one window; appends "TAG p50 p99 max overruns stalls dilation cpu%" to $tmp/rows
run() {
    b=$1 tag=$2
    rm -f "$tmp/port"
    "$b/src/daemon/spacesimd" --port 0 --port-file "$tmp/port" --demo-asteroids "$asteroids" \
        --demo-npcs "$npcs" --world-size "$edge" --checkpoint-every 0 --log-level warn \
        2>"$tmp/daemon.log" &
    pid=$!
    i=0
    while [ ! -s "$tmp/port" ]; do
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/daemon.log" >&2; pid=; return 1; }
        i=$((i + 1))
        [ $i -gt 1200 ] && { echo "world_idle.sh: daemon did not listen in 120 s" >&2; return 1; }
        sleep 0.1
    done
    port=$(cat "$tmp/port")
    s0=$("$b/clients/spacesim-cli" --port "$port" stats 2>/dev/null)
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep "$secs"
    s1=$("$b/clients/spacesim-cli" --port "$port" stats 2>/dev/null)
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=
    hz=$(getconf CLK_TCK)
    python3 - "$tag" "$s0" "$s1" "$c0" "$c1" "$hz" "$secs" >>"$tmp/rows" <<'PY'
import json, sys
tag, a, b, c0, c1, hz, secs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), *map(float, sys.argv[4:])
ticks = b["tick"] - a["tick"]
print(tag, "%.2f %.2f %.2f %d %d %.3f %.0f %d" % (b["tick_ms_p50"], b["tick_ms_p99"], b["tick_ms_max"],
      b["overruns"] - a["overruns"], b["ai_stalls"] - a["ai_stalls"], b["dilation"],
      100.0 * (c1 - c0) / hz / secs, ticks))
PY
    tail -1 "$tmp/rows" | awk '{printf "  %-5s tick p50 %s ms, p99 %s ms, max %s ms; overruns %s, AI stalls %s in the window; dilation %s; daemon CPU %s%%; ticks %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
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
names = ["tick p50", "tick p99", "tick max", "overruns", "AI stalls", "dilation", "CPU %", "ticks"]
print("median over rounds, new / base (base / new for times):")
for k, n in enumerate(names):
    a = statistics.median(r[k] for r in rows["new"])
    b = statistics.median(r[k] for r in rows["base"])
    ratio = (b / a if k < 3 else a / b) if a and b else float("nan")
    print("  %-9s new %10.2f  base %10.2f  %s %.2fx" % (n, a, b, "base/new" if k < 3 else "new/base", ratio))
PY

#!/usr/bin/env bash
# bench/cluster.sh BUILD [SECS] [SHIPS] [DAEMONS] [NETEM]: one world over DAEMONS spacesimd processes
# (default 4, one cell each of a 2x2 grid) and a nats-server on this machine, against the same world on
# one daemon, in one run (issue 10 point 10).
#
#   SECS    how long the cluster runs after every cell has its owner (default 60; the issue asks 600)
#   SHIPS   collision-free ballistic ships (--cluster-test-ships, default 20000) that cross the cells'
#           borders again and again; the world is sized so they fit on their lanes
#   NETEM   "netem" (default) also runs the cluster inside a network namespace made here, with 20 ms of
#           delay and 1% loss on its loopback (tc netem; needs root and iproute2). Where the kernel has
#           no netem qdisc (containers), the daemons reach nats-server through bench/faultproxy.py
#           instead: 20 ms added to every chunk each way, and 1% of the chunks held 200 ms more (what a
#           lost segment costs a TCP stream); the output says which. "none" skips the phase.
#
# The cluster phase also runs the gateway (spacesim-gw, upstream of every daemon; GW=0: none) with
# GW_CLIENTS watchers (default 20, spacesim-cli watch, radius 100 at the corner where the 4 cells
# meet; no ships, which the lanes would ram) for the measured interval, and prints the gateway's
# figures: merges per second, merge time p99 (its tick_ms_p99), what its merge guards counted
# (dup_ids, carried, forced, resyncs) and the watchers' snapshot rates and desyncs. KEEP=1 keeps logs.
#
# It prints, per phase: border crossings per second over the run; the hand-off latency (ticks between
# the sender's step and the import: the daemons' hop histograms summed, and their p99); the tick p99 of
# each daemon (stats tick_ms_p99) and the cluster's worst against the single daemon's; the time
# dilation; and an audit at the end (spacesim-cells audit: every ship once, none lost, none duplicated,
# epochs consistent). The machine line and the load average come first. Every phase starts its own
# nats-server on a free port with its store in a temporary folder, and everything it starts is stopped
# at exit. Figures go to docs/BENCHMARKS.md by hand, with this command.
set -euo pipefail

B=${1:?usage: bench/cluster.sh BUILD [SECS] [SHIPS] [DAEMONS] [netem|none]}
SECS=${2:-60}
SHIPS=${3:-20000}
N=${4:-4}
NETEM=${5:-netem}
daemon="$B/src/daemon/spacesimd" tool="$B/src/cluster/spacesim-cells" cli="$B/clients/spacesim-cli"
for f in "$daemon" "$tool" "$cli"; do [ -x "$f" ] || { echo "cluster.sh: build first ($f missing)" >&2; exit 2; }; done
command -v nats-server >/dev/null || { echo "cluster.sh: nats-server missing (./quickstart.sh test installs it)" >&2; exit 2; }
[ "$N" -ge 1 ] && [ "$N" -le 4 ] || { echo "cluster.sh: DAEMONS 1..4 (a 2x2 grid)" >&2; exit 2; }

# A world whose lanes hold SHIPS: lanes 5 apart, two directions (sp_cluster_spawn_test_ships).
SIZE=$(python3 -c "
import math
n = $SHIPS
h = 50
while True:
    per = math.floor((2 * h - 10) / 5) + 1
    layers = math.floor((h - 5) / 5)
    if per * layers * 2 >= n: break
    h += 25
print(2 * h)")

echo "# cluster.sh: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# cluster.sh: $SHIPS ballistic ships, world size $SIZE, $N daemons on a 2x2 grid, ${SECS} s per phase"

tmp=$(mktemp -d /tmp/spacesim-bench-cluster.XXXXXX)
pids=()
NS=""
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    [ -n "$NS" ] && ip netns del "$NS" 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then echo "cluster.sh: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

GW_CLIENTS=${GW_CLIENTS:-20}
GW=${GW:-1}         # 0: no gateway in the cluster phase
KEEP=${KEEP:-0}     # 1: keep the logs (the folder is printed)
export SPACESIM_ADMIN_TOKEN=${SPACESIM_ADMIN_TOKEN:-bench-cluster-$$}

# run_phase NAME CELLS NDAEMONS PROXY [PREFIX...]: one cluster; prints its figures. PROXY 1: the
# daemons reach nats-server through bench/faultproxy.py. PREFIX runs every process (e.g. "ip netns
# exec NS").
run_phase() {
    local name=$1 cells=$2 nd=$3 proxy=$4
    shift 4
    local pre=("$@") dir="$tmp/$name"
    mkdir -p "$dir"
    local nport
    nport=$("${pre[@]}" python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local url="nats://127.0.0.1:$nport"
    "${pre[@]}" nats-server -js -a 127.0.0.1 -p "$nport" -sd "$dir/js" >"$dir/nats.log" 2>&1 &
    pids+=($!)
    T() { "${pre[@]}" "$tool" --nats "$url" --cells "$cells" --timeout 60 "$@"; }
    for _ in $(seq 200); do T list >/dev/null 2>&1 && break; sleep 0.1; done
    local durl=$url
    if [ "$proxy" = 1 ]; then
        local pport
        pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        python3 "$(dirname "$0")/faultproxy.py" "$pport" "$nport" 20 1 200 >"$dir/proxy.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $pport), 0.2).close()" 2>/dev/null && break; sleep 0.1; done
        durl="nats://127.0.0.1:$pport"
    fi
    local k
    for k in $(seq 0 $((nd - 1))); do
        local ships=0
        [ "$k" = 0 ] && ships=$SHIPS
        "${pre[@]}" "$daemon" --nats "$durl" --cells "$cells" --node "$k" --bind 127.0.0.1 --port 0 \
            --port-file "$dir/port$k" --world-size "$SIZE" --demo-asteroids 0 --demo-npcs 0 \
            --cluster-test-ships "$ships" --checkpoint-every 0 --cluster-start-paused 1 >"$dir/node$k.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 600); do [ -s "$dir/port$k" ] && break; sleep 0.1; done
        [ -s "$dir/port$k" ] || { echo "cluster.sh: node $k did not start; its log:" >&2; tail "$dir/node$k.log" >&2; exit 1; }
    done
    # Cell c to node c mod nd, then wait until every daemon's loop sees its cells.
    local nc=4
    [ "$cells" = 1x1 ] && nc=1
    for c in $(seq 0 $((nc - 1))); do
        [ $((c % nd)) = 0 ] || T move "$c" $((c % nd)) >/dev/null
    done
    local nodes
    nodes=$(seq -s' ' 0 $((nd - 1)))
    for _ in $(seq 600); do
        # shellcheck disable=SC2086
        if T status $nodes 2>/dev/null | python3 -c "
import re, sys
out = sys.stdin.read()
cells = [int(x) for x in re.findall(r'\bcells (\d+)', out)]
sys.exit(0 if len(cells) == $nd and sum(cells) == $nc and min(cells) > 0 else 1)"; then break; fi
        sleep 0.1
    done
    # shellcheck disable=SC2086
    T resume $nodes >/dev/null
    # The hand-offs of the first moves are done once the counts settle; measure from a sample.
    sample() { # sample FILE: the status lines of every node, one run of the tool
        # shellcheck disable=SC2086
        T status $nodes >"$1" 2>&1 || true
    }
    local gw=0 lpid=""
    if [ "$name" = cluster ] && [ "$GW" = 1 ]; then
        gw=1
        local ups="" gport
        for k in $(seq 0 $((nd - 1))); do ups="$ups${ups:+,}127.0.0.1:$(cat "$dir/port$k")"; done
        "${pre[@]}" "$daemon" --upstream "$ups" --bind 127.0.0.1 --port 0 --port-file "$dir/gwport" \
            --world-size "$SIZE" >"$dir/gw.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 600); do [ -s "$dir/gwport" ] && break; sleep 0.1; done
        gport=$(cat "$dir/gwport")
    fi
    sleep 3 # warm-up before the measured interval (not a wait for a condition: the interval is what is timed)
    if [ "$gw" = 1 ]; then
        # Watchers, not players: a player's ship spawned into the lanes would be rammed (the audit
        # counts every lane ship). Each sees the corner where the 4 cells meet, the busiest borders.
        lpid=""
        for w in $(seq 1 "$GW_CLIENTS"); do
            "${pre[@]}" "$cli" --port "$gport" -t 60 watch --count $((SECS * 20 - 20)) --center "[0,0,0]" \
                --radius 100 >"$dir/watch$w.log" 2>&1 &
            pids+=($!)
            lpid="$lpid $!"
        done
        "${pre[@]}" "$cli" --port "$gport" stats >"$dir/gw0.json" 2>/dev/null || true
    fi
    sample "$dir/s0"
    local t0
    t0=$(date +%s.%N)
    sleep "$SECS"
    sample "$dir/s1"
    if [ "$gw" = 1 ]; then
        "${pre[@]}" "$cli" --port "$gport" stats >"$dir/gw1.json" 2>/dev/null || true
        for w in $lpid; do wait "$w" 2>/dev/null || true; done
        python3 - "$dir" "$SECS" "$GW_CLIENTS" <<'PY'
import json, re, sys
d, secs, nw = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
try:
    a, b = json.load(open(d + "/gw0.json")), json.load(open(d + "/gw1.json"))
except (OSError, ValueError) as e:
    print("gateway: no stats (%s)" % e); sys.exit(0)
g0, g1 = a["gateway"], b["gateway"]
rates, desyncs, done = [], 0, 0
for w in range(1, nw + 1):
    try: out = open("%s/watch%d.log" % (d, w)).read()
    except OSError: continue
    m = re.search(r"\(([0-9.]+) snapshots/s over [0-9.]+ s.*?(\d+) desyncs", out)
    if m:
        done += 1; rates.append(float(m.group(1))); desyncs += int(m.group(2))
rates.sort()
med = "%.2f" % rates[len(rates) // 2] if rates else "-"
mn = "%.2f" % rates[0] if rates else "-"
print("gateway  %d daemons live; merges/s %.1f; merge ms p99 %.2f; entities %d; dup_ids %d carried %d forced %d "
      "resyncs %d failed %d; %d of %d watchers (radius 100 at the corner of the 4 cells) done: snapshots/s median %s "
      "min %s, desyncs %d"
      % (g1["live"], (g1["merges"] - g0["merges"]) / secs, b["tick_ms_p99"], b["entities"],
         g1["dup_ids"] - g0["dup_ids"], g1["carried"] - g0["carried"], g1["forced"] - g0["forced"],
         g1["resyncs"] - g0["resyncs"], g1["failed"] - g0["failed"], done, nw, med, mn, desyncs))
PY
    fi
    local t1
    t1=$(date +%s.%N)
    local stats=""
    for k in $(seq 0 $((nd - 1))); do
        stats="$stats $("${pre[@]}" "$cli" --port "$(cat "$dir/port$k")" stats 2>/dev/null | tr -d '\n')"
        stats="$stats
"
    done
    # shellcheck disable=SC2086
    local audit
    audit=$(T audit --expect "$SHIPS" $nodes 2>&1 | grep '^audit:' || true)
    python3 - "$name" "$dir/s0" "$dir/s1" "$t0" "$t1" "$audit" "$stats" <<'PY'
import json, re, sys
name, s0, s1, t0, t1, audit, stats = sys.argv[1:8]
def fig(path, key):
    return [int(x) for x in re.findall(r"\b%s (\d+)" % key, open(path).read())]
def hops(path):
    tot = [0] * 10
    for h in re.findall(r"\bhops ([0-9,]+)", open(path).read()):
        for k, v in enumerate(h.split(",")): tot[k] += int(v)
    return tot
dt = float(t1) - float(t0)
cross = sum(fig(s1, "crossings")) - sum(fig(s0, "crossings"))
h0, h1 = hops(s0), hops(s1)
h = [b - a for a, b in zip(h0, h1)]
tot = sum(h)
acc, p99 = 0, None
for k, v in enumerate(h):
    acc += v
    if tot and acc * 100 >= tot * 99: p99 = k; break
ticks = sum(fig(s1, "tick")) / max(1, len(fig(s1, "tick"))) - sum(fig(s0, "tick")) / max(1, len(fig(s0, "tick")))
p99s, dil = [], []
for line in stats.strip().splitlines():
    try:
        d = json.loads(line)
        p99s.append(d["tick_ms_p99"]); dil.append(d["dilation"])
    except (ValueError, KeyError):
        pass
a = dict(re.findall(r"(\w+) (-?\d+)", audit))
print("%-8s crossings/s %.0f; hand-off latency ticks p99 %s (histogram 0..9+: %s); ticks/s %.1f; tick p99 ms per daemon %s; "
      "dilation %s; audit: count %s lost %s duplicated %s epoch_errors %s"
      % (name, cross / dt, p99 if p99 is not None else "-", ",".join(map(str, h)), ticks / dt,
         ",".join("%.2f" % x for x in p99s), ",".join("%.2f" % x for x in dil), a.get("count"), a.get("lost"),
         a.get("duplicated"), a.get("epoch_errors")))
open(sys.argv[2] + ".p99", "w").write("%f" % (max(p99s) if p99s else 0))
PY
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}

run_phase one 1x1 1 0
run_phase cluster 2x2 "$N" 0
python3 -c "
one = float(open('$tmp/one/s0.p99').read()); cl = float(open('$tmp/cluster/s0.p99').read())
print('tick p99: cluster worst daemon %.2f ms vs one daemon %.2f ms: %.2fx (target <= 1.1x)' % (cl, one, cl / one if one else 0))"
if [ "$NETEM" = netem ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "netem: skipped (needs root for a network namespace)"
    else
        NS=spacesim-bench-$$
        ip netns add "$NS"
        ip -n "$NS" link set lo up
        if ip netns exec "$NS" tc qdisc add dev lo root netem delay 20ms loss 1% 2>/dev/null; then
            echo "netem: namespace $NS, loopback with 20 ms delay and 1% loss (tc netem)"
            run_phase netem 2x2 "$N" 0 ip netns exec "$NS"
        else
            ip netns del "$NS"
            NS=""
            echo "netem: this kernel has no netem qdisc; the daemons reach nats-server through bench/faultproxy.py" \
                "(+20 ms per chunk each way, 1% of chunks held 200 ms more)"
            run_phase netem 2x2 "$N" 1
        fi
    fi
fi

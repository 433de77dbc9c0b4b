#!/bin/sh
# bench/abuse.sh: one well-behaved client beside each attack of issue 7 (request flood, slowloris,
# big views), against its figures without an attack, measured in the same run.
#
#   bench/abuse.sh [--quick] [BUILD_DIR]
#
# Starts spacesimd on 127.0.0.1 (ephemeral port) with a 100k-entity demo world (95% asteroids, 5% NPC
# ships), --max-clients 50 --max-per-address 40 (the issue's slowloris set-up; the cap below
# --max-clients is what lets a second host in). Then, for each round, runs every condition once, in
# this order (interleaved, BENCHMARKING.md):
#   none       no attack (the baseline)
#   flood      one connection pipelining ping as fast as it can, reading the answers (bench/abuse.py)
#   slowloris  50 connections from 127.0.0.2, a byte a second each into a never-finished message
#   bigview    10 sessions x 16 ships spread out, subscribed at radius 20000, resync 20/s each
# The well-behaved client is spacesim-load -c 1 --radius 100 --mix ping=10,move=2 (from 127.0.0.1);
# the attackers come from 127.0.0.2; a poller samples the server's dilation twice a second.
# Prints, per attack, the medians over the rounds (min-max) as ratios against `none`, and whether the
# issue's targets hold: ping p99 within 2x, snapshots >= 19/s, dilation >= 0.95.
# Bounded: SECS per condition (15, --quick 6), ROUNDS rounds (2, --quick 1); everything stops by
# itself and the daemon is killed on exit. 127.0.0.1 only. Environment: ABUSE_SECONDS, ABUSE_ROUNDS,
# ABUSE_ENTITIES (100000), ABUSE_DAEMON_FLAGS (default "--max-per-address 40"; set it empty to measure
# a daemon without that flag, e.g. an older build).
set -u
quick=0
[ "${1:-}" = "--quick" ] && { quick=1; shift; }
build=${1:-build}
secs=${ABUSE_SECONDS:-15}
rounds=${ABUSE_ROUNDS:-2}
[ $quick = 1 ] && { secs=6; rounds=1; }
ents=${ABUSE_ENTITIES:-100000}
here=$(cd "$(dirname "$0")" && pwd)
daemon=$build/src/daemon/spacesimd
load=$build/clients/spacesim-load
[ -x "$daemon" ] && [ -x "$load" ] || { echo "abuse.sh: build first (make -C $build)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/spacesim-abuse.XXXXXX") || exit 1
pid=
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    jobs -p | xargs -r kill 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

npcs=$((ents / 20))
asteroids=$((ents - npcs))
edge=$(awk -v n="$ents" 'BEGIN { printf "%d", 4000 * exp(log(n / 5200) / 3) }')
"$daemon" --port 0 --port-file "$tmp/port" --demo-asteroids "$asteroids" --demo-npcs "$npcs" \
    --world-size "$edge" --max-clients 50 ${ABUSE_DAEMON_FLAGS---max-per-address 40} --checkpoint-every 0 \
    --log-level info 2>"$tmp/daemon.log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/daemon.log" >&2; pid=; exit 1; }
    i=$((i + 1)); [ $i -gt 600 ] && { echo "daemon did not start" >&2; exit 1; }
    sleep 0.1
done
port=$(cat "$tmp/port")
echo "# spacesimd: $asteroids asteroids + $npcs NPCs, world edge $edge, port $port; $rounds round(s) x ${secs}s per condition"
echo "# machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load $(cut -d' ' -f1-3 /proc/loadavg)"
sleep 3   # let the demo world settle (asteroids fall asleep) before measuring; each condition also
          # waits for dilation >= 0.95 first (abuse.py settle, at most 20 s)

# One condition: the attack (from 127.0.0.2) for secs + 3, the client and the poller for secs.
run() {
    cond=$1 r=$2
    apid=
    # Not in the wake of the previous condition (queued snapshots, the world catching up).
    /usr/bin/python3 "$here/abuse.py" settle "$port" 20 >>"$tmp/settle" 2>&1
    if [ "$cond" != none ]; then
        /usr/bin/python3 "$here/abuse.py" "$cond" "$port" $((secs + 3)) --from 127.0.0.2 --world-size "$edge" \
            >"$tmp/$cond.$r.attack" 2>&1 &
        apid=$!
        sleep 2   # the attack is under way (big views: sessions spawned and subscribed)
    fi
    /usr/bin/python3 "$here/abuse.py" stats "$port" "$secs" >"$tmp/$cond.$r.stats" 2>&1 &
    spid=$!
    "$load" -p "$port" -c 1 -d "$secs" --radius 100 --mix ping=10,move=2 --json "$tmp/$cond.$r.json" -q \
        >"$tmp/$cond.$r.load" 2>&1
    wait $spid
    [ -n "$apid" ] && wait $apid
}

conds="none flood slowloris bigview"
r=1
while [ $r -le $rounds ]; do
    for c in $conds; do
        echo "# round $r: $c" >&2
        run "$c" "$r"
    done
    r=$((r + 1))
done
kill -0 "$pid" 2>/dev/null || { echo "abuse.sh: the daemon died" >&2; cat "$tmp/daemon.log" >&2; pid=; exit 1; }

/usr/bin/python3 - "$tmp" "$rounds" $conds <<'PY'
import json, os, statistics, sys
tmp, rounds, conds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(path):
    try:
        with open(path) as f:
            txt = f.read().strip().splitlines()
        return json.loads(txt[-1]) if path.endswith((".stats", ".attack")) else json.loads("\n".join(txt))
    except (OSError, ValueError, IndexError):
        return None
fig = {}
for c in conds:
    p99s, snaps, dils, means, notes = [], [], [], [], []
    for r in range(1, rounds + 1):
        j = load(os.path.join(tmp, "%s.%d.json" % (c, r)))
        s = load(os.path.join(tmp, "%s.%d.stats" % (c, r)))
        a = load(os.path.join(tmp, "%s.%d.attack" % (c, r)))
        if j is None or not j.get("clients_connected"):
            notes.append("round %d: the well-behaved client did not get in" % r)
            p99s.append(float("inf")); snaps.append(0.0)
        else:
            p99s.append(j.get("ping_p99_ms", float("inf")))
            snaps.append(j.get("snap_rate_median", 0.0))
        if s and s.get("dilation_min") is not None:
            dils.append(s["dilation_min"])
            means.append(s["dilation_mean"])
        if a:
            notes.append("round %d attack: %s" % (r, json.dumps(a)))
    fig[c] = (p99s, snaps, dils, means, notes)
def med(v): return statistics.median(v) if v else float("nan")
def rng(v, f): return "%s-%s" % (f % min(v), f % max(v)) if v else "?"
base_p99, base_snap, base_dil, base_mean, _ = fig["none"]
print("none: ping p99 %.2f ms (%s), snapshots/s %.1f (%s), dilation min %.3f (mean %.3f)"
      % (med(base_p99), rng(base_p99, "%.2f"), med(base_snap), rng(base_snap, "%.1f"), med(base_dil), med(base_mean)))
for c in conds[1:]:
    p99s, snaps, dils, means, notes = fig[c]
    rp = med(p99s) / med(base_p99) if med(base_p99) > 0 else float("inf")
    rs = med(snaps) / med(base_snap) if med(base_snap) > 0 else float("nan")
    ok = lambda b: "met" if b else "NOT met"
    print("%s vs none: ping p99 %.2fx (%.2f ms [%s] vs %.2f ms), snapshots/s %.2fx (%.1f [%s] vs %.1f), dilation min %.3f [%s] (mean %.3f)"
          % (c, rp, med(p99s), rng(p99s, "%.2f"), med(base_p99), rs, med(snaps), rng(snaps, "%.1f"), med(base_snap),
             med(dils), rng(dils, "%.3f"), med(means)))
    print("  targets: ping p99 <= 2x: %s; snapshots >= 19/s: %s; dilation >= 0.95 (lowest half-second sample): %s"
          % (ok(rp <= 2), ok(med(snaps) >= 19), ok(med(dils) >= 0.95)))
    for n in notes:
        print("  " + n)
PY
echo "# settle before each condition: $(grep -c '"settled": true' "$tmp/settle") of $(wc -l <"$tmp/settle") reached dilation >= 0.95"
echo "# daemon log: $(grep -c 'kicked: rate' "$tmp/daemon.log") rate kicks, $(grep -c 'slow request' "$tmp/daemon.log") slow-request timeouts, $(grep -c 'max per address' "$tmp/daemon.log") per-address refusals"

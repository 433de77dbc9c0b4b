#!/usr/bin/env bash
# contrib/cluster.sh BUILD [options] [-- spacesimd options]: one world over several spacesimd
# processes on this machine (issue 10), started by `./quickstart.sh cluster`.
#
#   --daemons N    daemons (default 4), nodes 0..N-1
#   --cells NxM    the grid of cells (default 2x2); cell k goes to node k mod N
#   --port P       the gateway (spacesim-gw) serves clients on P (default 7777); node k on P + 1 + k
#   --http-port H  the gateway also serves the live view of the whole world on H (default 8080; 0 = off)
#   --gateways G   gateways (default 1); gateway j > 0 serves on P - j (HTTP only on the first)
#   --store DIR    nats-server's JetStream store (default: a new temporary folder, removed at exit;
#                  a given folder is kept, so ids and incarnations carry over to the next start)
#   --nats-port Q  nats-server's client port (default: a free one)
#   --checkpoints DIR  node k checkpoints to DIR/node-k.ckpt (every 60 s, at SIGTERM) and resumes it at
#                  the next start; use it with --store (the checkpoint replays that store's stream)
#
# It starts `nats-server -js` on 127.0.0.1, node 0 with the demo world (a daemon populates only
# the cells it owns, and the first one claims them all), then the other nodes, then moves the
# cells so every node owns its share (spacesim-cells move: a CAS each; node 0 hands the entities
# of the moved cells off), then the gateway, which clients connect to. The processes share one
# admin token (SPACESIM_ADMIN_TOKEN, or a new random one written to the log folder): the gateway
# speaks to the daemons as an admin session. Ctrl-C or SIGTERM stops every process it started. The logs are in a
# temporary folder, removed at exit unless --store was given.
set -euo pipefail

usage="usage: contrib/cluster.sh BUILD [--daemons N] [--cells NxM] [--port P] [--http-port H] [--gateways G] [--store DIR] [--nats-port Q] [--checkpoints DIR] [-- spacesimd options]"
build=${1:?$usage}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
daemons=4 cells=2x2 port=7777 http=8080 store="" nport="" ckdir="" gateways=1
while [ $# -gt 0 ]; do
    case "$1" in
    --daemons) daemons=$2; shift 2 ;;
    --cells) cells=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --http-port) http=$2; shift 2 ;;
    --gateways) gateways=$2; shift 2 ;;
    --store) store=$2; shift 2 ;;
    --nats-port) nport=$2; shift 2 ;;
    --checkpoints) ckdir=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "cluster.sh: unknown option $1; $usage" >&2; exit 2 ;;
    esac
done
case "$daemons" in ''|*[!0-9]*) echo "cluster.sh: --daemons wants a number" >&2; exit 2 ;; esac
[ "$daemons" -ge 1 ] && [ "$daemons" -le 64 ] || { echo "cluster.sh: --daemons 1..64" >&2; exit 2; }
daemon="$build/src/daemon/spacesimd" tool="$build/src/cluster/spacesim-cells"
[ -x "$daemon" ] && [ -x "$tool" ] || { echo "cluster.sh: build first (missing $daemon or $tool)" >&2; exit 2; }
command -v nats-server >/dev/null || { echo "cluster.sh: nats-server missing (./quickstart.sh cluster installs it)" >&2; exit 2; }

case "$gateways" in ''|*[!0-9]*) echo "cluster.sh: --gateways wants a number" >&2; exit 2 ;; esac

tmp=$(mktemp -d /tmp/spacesim-cluster.XXXXXX)
if [ -z "${SPACESIM_ADMIN_TOKEN:-}" ]; then
    SPACESIM_ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    (umask 077; printf '%s\n' "$SPACESIM_ADMIN_TOKEN" >"$tmp/admin-token")
fi
export SPACESIM_ADMIN_TOKEN
keep=1
if [ -z "$store" ]; then store="$tmp/js"; keep=0; fi
mkdir -p "$store"
pids=()
stop() {
    trap - INT TERM EXIT
    # Daemons first (their final checkpoints and hand-offs still need NATS), then nats-server (pids[0]);
    # whatever has not exited 10 s later is killed.
    local p k
    for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
    for k in $(seq 100); do
        local alive=0
        for p in "${pids[@]:1}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    [ "${#pids[@]}" -gt 0 ] && kill "${pids[0]}" 2>/dev/null || true
    for k in $(seq 100); do kill -0 "${pids[0]}" 2>/dev/null || break; sleep 0.1; done
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$keep" = 0 ]; then rm -rf "$tmp"; else echo "cluster.sh: logs kept in $tmp" >&2; fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_port PORT PID WHAT LOG: until something listens on 127.0.0.1:PORT (at most 30 s), or PID died.
wait_port() {
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || { echo "cluster.sh: $3 exited; its log:" >&2; tail -20 "$4" >&2; exit 1; }
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "cluster.sh: $3 did not listen on port $1 within 30 s; its log: $4" >&2
    exit 1
}

# wait_sessions PORT PID WHAT LOG: until a hello on 127.0.0.1:PORT succeeds (a gateway opens sessions once
# it has merged every daemon's world), at most 60 s.
wait_sessions() {
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || { echo "cluster.sh: $3 exited; its log:" >&2; tail -20 "$4" >&2; exit 1; }
        if python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)
s.settimeout(2)
s.sendall(bytes([0x94, 0, 1, 0xa5]) + b"hello" + bytes([0x91, 0xa1]) + b"w")  # [0, 1, "hello", ["w"]]
r = s.recv(4)
sys.exit(0 if r[:4] == bytes([0x94, 1, 1, 0xc0]) else 1)           # [1, 1, nil, ...]: no error
PY
        then return 0; fi
        sleep 0.2
    done
    echo "cluster.sh: $3 opened no session within 60 s; its log: $4" >&2
    exit 1
}

[ -n "$nport" ] || nport=$(free_port)
url="nats://127.0.0.1:$nport"
nats-server -js -a 127.0.0.1 -p "$nport" -sd "$store" >"$tmp/nats.log" 2>&1 &
pids+=($!)
wait_port "$nport" "${pids[-1]}" nats-server "$tmp/nats.log"

[ -n "$ckdir" ] && mkdir -p "$ckdir"
start_node() { # start_node K [spacesimd options...]
    local k=$1
    shift
    local ck=()
    [ -n "$ckdir" ] && ck=(--checkpoint "$ckdir/node-$k.ckpt")
    "$daemon" --nats "$url" --cells "$cells" --node "$k" --bind 127.0.0.1 --port $((port + 1 + k)) "${ck[@]}" "$@" \
        >"$tmp/node$k.log" 2>&1 &
    pids+=($!)
    wait_port $((port + 1 + k)) "${pids[-1]}" "spacesimd node $k" "$tmp/node$k.log"
}
start_node 0 "$@"
for k in $(seq 1 $((daemons - 1))); do start_node "$k" "$@"; done

# Every cell to its node (k mod N), by CAS; node 0 claimed them all at its start.
nx=${cells%x*} ny=${cells#*x}
for c in $(seq 0 $((nx * ny - 1))); do
    n=$((c % daemons))
    [ "$n" = 0 ] && continue
    "$tool" --nats "$url" --cells "$cells" move "$c" "$n" >/dev/null
done

# The gateways: every daemon upstream; the same world size as the daemons (from "$@" if given).
ups=""
for k in $(seq 0 $((daemons - 1))); do ups="$ups${ups:+,}127.0.0.1:$((port + 1 + k))"; done
gwopts=()
for ((i = 1; i <= $#; i++)); do
    case "${!i}" in
    --world-size|--interest-cell|--tick-hz|--snapshot-hz) j=$((i + 1)); gwopts+=("${!i}" "${!j}") ;;
    --world-size=*|--interest-cell=*|--tick-hz=*|--snapshot-hz=*) gwopts+=("${!i}") ;;
    esac
done
for j in $(seq 0 $((gateways - 1))); do
    gport=$((port - j))
    web=()
    [ "$http" != 0 ] && [ "$j" = 0 ] && web=(--http-port "$http" --web-root "$here/web")
    "$build/src/gw/spacesim-gw" --upstream "$ups" --bind 127.0.0.1 --port "$gport" \
        --session-base $(( (1 << 31) + j * (1 << 24) )) "${web[@]}" "${gwopts[@]}" >"$tmp/gw$j.log" 2>&1 &
    pids+=($!)
    wait_port "$gport" "${pids[-1]}" "spacesim-gw $j" "$tmp/gw$j.log"
    wait_sessions "$gport" "${pids[-1]}" "spacesim-gw $j" "$tmp/gw$j.log"
done

echo "cluster.sh: $daemons daemons, cells $cells, nats-server $url (store $store)" >&2
for j in $(seq 0 $((gateways - 1))); do
    echo "cluster.sh: clients connect to the gateway on 127.0.0.1:$((port - j)) (log $tmp/gw$j.log)" >&2
done
for k in $(seq 0 $((daemons - 1))); do
    echo "cluster.sh: node $k on 127.0.0.1:$((port + 1 + k)) (log $tmp/node$k.log)" >&2
done
[ "$http" != 0 ] && echo "cluster.sh: live view of the whole world: http://127.0.0.1:$http/" >&2
[ -e "$tmp/admin-token" ] && echo "cluster.sh: admin token in $tmp/admin-token" >&2
echo "cluster.sh: operator: $tool --nats $url --cells $cells list | status 0 1 ... | audit 0 1 ..." >&2
echo "cluster.sh: Ctrl-C stops all." >&2
# Run until a signal, or until a process it started exits.
while :; do
    for p in "${pids[@]}"; do
        if ! kill -0 "$p" 2>/dev/null; then
            echo "cluster.sh: process $p exited; stopping the cluster" >&2
            exit 1
        fi
    done
    sleep 1
done

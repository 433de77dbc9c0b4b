#!/bin/sh
# tests/cluster/start.sh: the cluster's start command (issue 10 point 8), contrib/cluster.sh, which
# `./quickstart.sh cluster` runs. Two daemons with a demo world of 400 asteroids (no NPCs, so nothing
# dies or respawns): every cell ends up owned as the script moves them (cell k to node k mod 2), the
# daemons hold one demo world between them (400 entities in all, not 400 each), the gateway on the
# script's port shows that one world (its stats: 400 entities, both daemons answering), a client
# reaches each daemon's port, and SIGTERM to the script stops every process it started. Every wait is for a
# condition, bounded in time.
set -u
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "start.sh: FAIL: $PY missing" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "start.sh: FAIL: nats-server missing (./quickstart.sh test installs it)" >&2; exit 1; }
SRC=$(cd "$(dirname "$0")/../.." && pwd)
exec "$PY" - "$DAEMON" "$SRC" "${CK_TIMEOUT_MULTIPLIER:-1}" <<'PYEOF'
import os, re, signal, socket, subprocess, sys, tempfile, time
daemon, src, mult = sys.argv[1], sys.argv[2], float(sys.argv[3])
build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(daemon))))
cells = os.path.join(build, "src", "cluster", "spacesim-cells")
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
# Three consecutive free client ports: the gateway's, then node 0's and node 1's.
def free(port):
    try:
        s = socket.socket(); s.bind(("127.0.0.1", port)); s.close(); return True
    except OSError:
        return False
for _ in range(100):
    port = free_port()
    if free(port + 1) and free(port + 2): break
err = tempfile.TemporaryFile(mode="w+")
p = subprocess.Popen([os.path.join(src, "contrib", "cluster.sh"), build, "--daemons", "2", "--port", str(port),
                      "--http-port", "0", "--", "--demo-asteroids", "400", "--demo-npcs", "0", "--workers", "1"],
                     stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
def stop_session(*_):
    # cluster.sh and all it started share its session: if this script is stopped, they go too.
    try: os.killpg(p.pid, signal.SIGTERM)
    except OSError: pass
    sys.exit(1)
for sig in (signal.SIGTERM, signal.SIGHUP): signal.signal(sig, stop_session)
def output():
    err.seek(0); return err.read()
def fail(msg):
    sys.stderr.write("start.sh: FAIL: %s\n---- cluster.sh said:\n%s" % (msg, output()))
    try:
        os.killpg(p.pid, signal.SIGTERM)  # cluster.sh's trap stops its processes and removes its folder
        p.wait(timeout=30 * mult)
    except (OSError, subprocess.TimeoutExpired):
        try: os.killpg(p.pid, signal.SIGKILL)
        except OSError: pass
    sys.exit(1)
def wait(what, cond, limit=60):
    deadline = time.monotonic() + limit * mult
    while time.monotonic() < deadline:
        if p.poll() is not None: fail("cluster.sh exited (%d) while waiting until %s" % (p.returncode, what))
        r = cond()
        if r: return r
        time.sleep(0.1)
    fail("not %s within the time limit" % what)
url = wait("cluster.sh names its nats-server", lambda: (re.search(r"nats-server (nats://[0-9.:]+)", output()) or [None, None])[1])
def tool(*args):
    try:
        r = subprocess.run([cells, "--nats", url, "--cells", "2x2"] + list(args), capture_output=True, text=True,
                           timeout=20 * mult)
    except subprocess.TimeoutExpired:
        return None
    return r.stdout if r.returncode == 0 else None
def owners_moved():
    out = tool("list") or ""
    o = dict(re.findall(r"cell (\d+) owner (\d+)", out))
    return o if o == {"0": "0", "1": "1", "2": "0", "3": "1"} else None
wait("cells 0 and 2 on node 0, 1 and 3 on node 1", owners_moved)
def one_world():
    out = tool("status", "0", "1") or ""
    counts = [int(c) for c in re.findall(r"\bcount (\d+)", out)]
    fl = [int(c) for c in re.findall(r"\b(?:outq|inflight|early) (\d+)", out)]
    return counts if len(counts) == 2 and sum(counts) == 400 and min(counts) > 0 and not any(fl) else None
counts = wait("the two daemons hold one 400-asteroid world between them", one_world)
# And keep it: nothing was destroyed, so respawn (once a second, toward each daemon's share of the draws)
# must add nothing. Wait for 3 respawn periods of both daemons' ticks, then count again.
def ticks():
    out = tool("status", "0", "1") or ""
    t = [int(x) for x in re.findall(r"\bnode \d+ tick (\d+)", out)]
    return t if len(t) == 2 else None
t0 = wait("both daemons answer status", ticks)
wait("3 s of ticks on both daemons", lambda: (lambda t: t is not None and min(t) >= max(t0) + 180)(ticks()))
counts = wait("still 400 asteroids between them (respawn added none)", one_world, limit=5)
for k in (0, 1):
    socket.create_connection(("127.0.0.1", port + 1 + k), 5).close()
# The gateway, on the script's port: one world of 400 entities from the 2 daemons.
sys.path.insert(0, "/usr/lib/python3/dist-packages")
import msgpack
def gateway_stats():
    try:
        s = socket.create_connection(("127.0.0.1", port), 5)
        s.settimeout(10 * mult)
        u = msgpack.Unpacker(raw=False)
        s.sendall(msgpack.packb([0, 1, "hello", ["start-sh"]]) + msgpack.packb([0, 2, "stats", []]))
        while True:
            data = s.recv(1 << 16)
            if not data: return None
            u.feed(data)
            for m in u:
                if m[0] == 1 and m[1] == 2:
                    s.close()
                    st = m[3] or {}
                    ok = st.get("entities") == 400 and st.get("cluster", {}).get("answered") == 2
                    return st if ok else None
    except OSError:
        return None
gst = wait("the gateway shows the 400 entities of both daemons", gateway_stats)
# Stop: every process the script started goes with it.
started = [int(x) for x in subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True, text=True).stdout.split()]
os.kill(p.pid, signal.SIGTERM)
try:
    p.wait(timeout=30 * mult)
except subprocess.TimeoutExpired:
    fail("cluster.sh did not stop within 30 s of SIGTERM")
def gone(pid):
    try:
        os.kill(pid, 0); return False
    except ProcessLookupError:
        return True
def all_gone():
    return all(gone(x) for x in started if x != p.pid)
deadline = time.monotonic() + 30 * mult
while not all_gone():
    if time.monotonic() > deadline: fail("processes left after SIGTERM: %s" % [x for x in started if not gone(x)])
    time.sleep(0.1)
if len(started) < 5: fail("expected cluster.sh, nats-server, 2 daemons and a gateway in its session, saw %s" % started)
print("start.sh: 2 daemons hold %d + %d = 400 asteroids, the gateway shows %d; SIGTERM stopped all %d processes"
      % (counts[0], counts[1], gst["entities"], len(started)))
PYEOF

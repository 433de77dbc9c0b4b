#!/bin/sh
# tests/cluster/gateway.sh: clients through the gateway (issue 10, points 6 and 9). contrib/cluster.sh
# starts nats-server, 4 daemons owning one cell each of a 2x2 grid, and 2 gateways (spacesim-gw). A
# client of gateway 0 spawns a ship at the corner where the 4 cells meet and steers it back and forth
# along the diagonal until it has crossed at least 100 borders (each crossing hands it to another
# daemon). Every snapshot it gets must hold the ship (no gap), each id once (no duplicate), at a
# position no farther from the last one than the ship's top speed allows (no jump); every move must
# be answered true (the gateway routes it to the daemon holding the ship at that moment). A client of
# gateway 1 must see the same ship, owned by the first client's session, and may not command it.
# `stats` through a gateway shows the 4 daemons' maps and the cluster's sums. A daemon stopped with
# SIGSTOP does not stop the gateway: its snapshots go on, commands to the other daemons are answered,
# and stats answers without the stopped one (nil), then with it again after SIGCONT. spacesim-cli watch
# spacesim-load and the Python package's client work through the gateway unchanged. Every wait is for a condition, bounded in time.
set -u
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "gateway.sh: FAIL: $PY missing" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "gateway.sh: FAIL: nats-server missing (./quickstart.sh test installs it)" >&2; exit 1; }
SRC=$(cd "$(dirname "$0")/../.." && pwd)
exec "$PY" - "$DAEMON" "$SRC" "${CK_TIMEOUT_MULTIPLIER:-1}" <<'PYEOF'
import math, os, re, signal, socket, subprocess, sys, time
daemon, src, mult = sys.argv[1], sys.argv[2], float(sys.argv[3])
sys.path.insert(0, os.path.join(src, "clients", "python"))
sys.path.insert(0, os.path.join(src, "tests", "cluster"))
from harness import Client as _Client, Cluster, free_ports
build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(daemon))))
port = free_ports(range(-1, 5))
cluster = Cluster("gateway.sh", src, build, ["--daemons", "4", "--cells", "2x2", "--port", str(port), "--http-port", "0", "--gateways", "2", "--",
                "--demo-asteroids", "0", "--demo-npcs", "0", "--workers", "1"], mult, logs=("gw0.log", "gw1.log", "node0.log"))
p, fail, output = cluster.p, cluster.fail, cluster.output
def wait(what, cond, limit=90): return cluster.wait(what, cond, limit)
def Client(port, name, on_snapshot=None): return _Client(cluster, port, name, on_snapshot)

# ---- client A of gateway 0: its ship, followed snapshot by snapshot
MAXSPEED = 60.0            # the world's ship_max_speed (units/s)
TICK_HZ = 60
state = {"seen": False, "last": None, "snaps": 0, "crossings": 0, "sign": None, "worst": 0.0}
def follow(c, tick):
    ids = [e.id for e in c.world]
    if len(ids) != len(set(ids)): fail("tick %d: an id twice in the view" % tick)
    e = c.world.get(state.get("ship", 0))
    if e is None:
        if state["seen"]: fail("tick %d: the ship is missing from a snapshot after it was seen (a gap)" % tick)
        return
    state["seen"] = True
    state["snaps"] += 1
    x, y, z = e.pos
    if state["last"] is not None:
        t0, p0 = state["last"]
        dt = (tick - t0) / TICK_HZ
        d = math.dist(p0, (x, y, z))
        allowed = MAXSPEED * dt + 0.5     # plus quantization (1/16 unit per axis) and margin
        state["worst"] = max(state["worst"], d / max(allowed, 1e-9))
        if tick <= t0: fail("snapshot ticks not increasing: %d after %d" % (tick, t0))
        if d > allowed: fail("tick %d: the ship jumped %.2f units in %.3f s (at most %.2f)" % (tick, d, dt, allowed))
    state["last"] = (tick, (x, y, z))
    sign = (x >= 0, y >= 0)
    if state["sign"] is not None:
        state["crossings"] += (sign[0] != state["sign"][0]) + (sign[1] != state["sign"][1])
    state["sign"] = sign

a = Client(port, "gw-a", follow)
a.call("subscribe", 50)
ship = a.call("spawn", [-3, -3, 0])["ship_id"]
state["ship"] = ship
wait_until = time.monotonic() + 30 * mult
while not state["seen"]:
    if time.monotonic() > wait_until: fail("the spawned ship never appeared in the gateway's snapshots")
    a.pump()

# Back and forth along the diagonal through the corner (0, 0): every pass goes from the cell of one
# daemon to the cell of another (two borders, often through a third daemon's cell for a moment).
V, A = 12.0, 2.5
heading, moves, refused = 1, 0, []
deadline = time.monotonic() + 150 * mult
mid = a.send("move", ship, [V / math.sqrt(2), V / math.sqrt(2), 0])
while state["crossings"] < 100:
    if time.monotonic() > deadline: fail("only %d border crossings in the time limit" % state["crossings"])
    a.pump()
    if mid in a.answers:
        r = a.answers.pop(mid)
        moves += 1
        if r[2] is not None or r[3] is not True: refused.append(r[2])
        mid = None
    e = a.world.get(ship)
    s = (e.pos[0] + e.pos[1]) / math.sqrt(2)
    want = -1 if s > A else 1 if s < -A else heading
    if want != heading and mid is None:
        heading = want
        mid = a.send("move", ship, [heading * V / math.sqrt(2), heading * V / math.sqrt(2), 0])
if mid is not None:
    r = a.answer(mid); moves += 1
    if r[2] is not None: refused.append(r[2])
if refused: fail("%d of %d moves refused: %r" % (len(refused), moves, refused[:3]))

# ---- inspect through the gateway: exact values from the daemon holding the ship
r = a.call("inspect", ship)
if r["owner"] != a.session or r["kind"] != "ship": fail("inspect through the gateway: %r" % r)

# ---- client B of gateway 1 sees the same ship, owned by A's session, and cannot command it
seen_b = {}
def watch_b(c, tick):
    e = c.world.get(ship)
    if e is not None: seen_b["owner"] = e.owner; seen_b["n"] = seen_b.get("n", 0) + 1
b = Client(port - 1, "gw-b", watch_b)
b.call("subscribe", 100, [0, 0, 0])
wait_until = time.monotonic() + 30 * mult
while seen_b.get("n", 0) < 3:
    if time.monotonic() > wait_until: fail("gateway 1's client never saw the ship")
    b.pump()
if seen_b["owner"] != a.session: fail("gateway 1 shows the ship owned by %r, not %r" % (seen_b["owner"], a.session))
r = b.call("move", ship, [1, 0, 0], ok=False)
if r[2] is None or r[2]["code"] != 6: fail("another gateway's client moved the ship: %r" % (r,))

# ---- stats through the gateway: each daemon's figures and the cluster's
st = a.call("stats")
d = st.get("daemons")
if not isinstance(d, list) or len(d) != 4 or not all(isinstance(x.get("stats"), dict) for x in d):
    fail("stats has no 4 daemon maps: %r" % (d,))
cl = st.get("cluster", {})
if cl.get("answered") != 4 or cl.get("entities") != sum(x["stats"]["entities"] for x in d):
    fail("stats' cluster figures do not add up: %r" % cl)
if st["gateway"]["live"] != 4: fail("the gateway does not have its 4 daemons live: %r" % st["gateway"])
if st["gateway"]["dup_ids"] != 0: fail("the gateway merged an id twice: %r" % st["gateway"])

# ---- a daemon that stops answering (SIGSTOP): the gateway goes on without waiting for it
a.call("move", ship, [0, 0, 0])
e = a.world.get(ship)
quadrant = (1 if e.pos[0] >= 0 else 0) + (2 if e.pos[1] >= 0 else 0)  # cell k, node k (2x2, k mod 4)
victim = (quadrant + 1) % 4
def node_pid(k):
    for pid in subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True, text=True).stdout.split():
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f: argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"--node" in argv and argv[argv.index(b"--node") + 1] == str(k).encode(): return int(pid)
    fail("no process of node %d in cluster.sh's session" % k)
vpid = node_pid(victim)
os.kill(vpid, signal.SIGSTOP)
try:
    t_stop = state["last"][0]
    wait_until = time.monotonic() + 60 * mult
    while state["last"][0] < t_stop + 20 * 3:  # 20 rounds of the merged world past the stop
        if time.monotonic() > wait_until:
            fail("the gateway's snapshots stopped with node %d stopped (last tick %d)" % (victim, state["last"][0]))
        a.pump()
    r = a.call("move", ship, [0, 0, 0], ok=False)
    if r[2] is not None: fail("move with node %d stopped: %r" % (victim, r[2]))
    t0 = time.monotonic()
    st = a.call("stats")
    took = time.monotonic() - t0
    if st["daemons"][victim]["stats"] is not None or st["cluster"]["answered"] != 3:
        fail("stats with node %d stopped: %r" % (victim, st["cluster"]))
finally:
    os.kill(vpid, signal.SIGCONT)
stall_ticks = state["last"][0] - t_stop
wait_until = time.monotonic() + 60 * mult
while a.call("stats")["cluster"]["answered"] != 4:
    if time.monotonic() > wait_until: fail("node %d never answered stats again after SIGCONT" % victim)
    time.sleep(0.2)

# ---- the project's own clients, unchanged, against the gateway
cli = os.path.join(build, "clients", "spacesim-cli")
load = os.path.join(build, "clients", "spacesim-load")
r = subprocess.run([cli, "-p", str(port), "-t", str(20 * mult), "watch", "--count", "5"], capture_output=True,
                   text=True, timeout=60 * mult)
if r.returncode != 0 or not re.search(r"\b5 snapshots\b.*\b0 desyncs", r.stdout + r.stderr):
    fail("spacesim-cli watch through the gateway: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
r = subprocess.run([load, "-p", str(port), "-c", "5", "-d", "3", "--mix", "move=5,ping=2,inspect=1", "--assert", "errors==0"], capture_output=True,
                   text=True, timeout=60 * mult)
if r.returncode != 0: fail("spacesim-load through the gateway: exit %d\n%s" % (r.returncode, r.stdout[-2000:]))

# The Python package's asyncio client: a session, a ship, the ship in its world, inspect.
import asyncio
import spacesim
async def py_client():
    c = await spacesim.Client.connect("127.0.0.1", port, timeout=10 * mult)
    try:
        await c.hello("gw-py")
        s = await c.spawn([2, -2, 0])
        async for _ in c.updates(timeout=10 * mult):
            if c.world.get(s) is not None: break
        if c.world.get(s) is None: return "its ship never appeared"
        r = await c.inspect(s)
        return None if r["owner"] == c.session else "inspect: %r" % r
    finally:
        await c.close()
why = asyncio.run(asyncio.wait_for(py_client(), 60 * mult))
if why: fail("the Python client through the gateway: %s" % why)

os.kill(p.pid, signal.SIGTERM)
try:
    p.wait(timeout=30 * mult)
except subprocess.TimeoutExpired:
    fail("cluster.sh did not stop within 30 s of SIGTERM")
print("gateway.sh: %d border crossings through the gateway in %d snapshots, no gap, no duplicate, "
      "no jump (worst %.2f of the speed bound); %d moves answered true (%d retried at the new daemon); "
      "gateway 1 saw the ship owned by session %d; stats: %d daemons, %d entities; with node %d stopped the "
      "merged world went on %d ticks and stats answered in %.1f s without it; spacesim-cli watch and "
      "spacesim-load and the Python client ran through it"
      % (state["crossings"], state["snaps"], state["worst"], moves, st["gateway"]["retried"], a.session,
         len(d), cl["entities"], victim, stall_ticks, took))
PYEOF

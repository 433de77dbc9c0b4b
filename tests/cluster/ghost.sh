#!/bin/sh
# tests/cluster/ghost.sh: fire and mine across a border (issue 10 point 4). contrib/cluster.sh starts
# nats-server, 2 daemons (cell 0, x < 0, on node 0; cell 1, x >= 0, on node 1) with a demo world of
# asteroids, and the gateway. A ship on node 0's side fires at a ship on node 1's side until a shot
# hits: the target's hit points, read from node 1 (inspect through the gateway), drop by the shot's
# damage. A ship on node 0's side mines an asteroid on node 1's side: the ship's cargo holds the amount
# and the asteroid, read from node 1, has that much less. Two ships driven at each other across the
# border collide there (both take damage at their own daemons) and never pass through each other.
# Each daemon acts on the other's ghosts (the entities of its border band it receives every step);
# every wait is for a condition, bounded in time.
set -u
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "ghost.sh: FAIL: $PY missing" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "ghost.sh: FAIL: nats-server missing (./quickstart.sh test installs it)" >&2; exit 1; }
SRC=$(cd "$(dirname "$0")/../.." && pwd)
exec "$PY" - "$DAEMON" "$SRC" "${CK_TIMEOUT_MULTIPLIER:-1}" <<'PYEOF'
import math, os, re, signal, socket, subprocess, sys, time
daemon, src, mult = sys.argv[1], sys.argv[2], float(sys.argv[3])
sys.path.insert(0, os.path.join(src, "clients", "python"))
sys.path.insert(0, os.path.join(src, "tests", "cluster"))
from harness import Client as _Client, Cluster, free_ports
build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(daemon))))
port = free_ports(range(0, 3))
cluster = Cluster("ghost.sh", src, build, ["--daemons", "2", "--cells", "2x1", "--port", str(port), "--http-port", "0", "--",
                "--demo-asteroids", "4000", "--demo-npcs", "0", "--workers", "1"], mult, logs=("node0.log", "node1.log"))
p, fail, output = cluster.p, cluster.fail, cluster.output
def wait(what, cond, limit=90): return cluster.wait(what, cond, limit)
def Client(port, name, on_snapshot=None): return _Client(cluster, port, name, on_snapshot)

a = Client(port, "ghost-a")
b = Client(port, "ghost-b")
a.call("subscribe", 3000)
def until(what, c, cond, limit=30):
    deadline = time.monotonic() + limit * mult
    while True:
        r = cond()
        if r: return r
        if time.monotonic() > deadline: fail("not %s within the time limit" % what)
        c.pump()
def at_rest_on(c, ship, side):
    e = c.world.get(ship)
    return e is not None and (e.pos[0] < 0) == (side == 0) and all(abs(v) < 0.05 for v in e.vel)

# ---- fire across the border: A's ship on node 0's side, B's on node 1's, 60 units apart
sa = a.call("spawn", [-30, 0, 0])["ship_id"]
sb = b.call("spawn", [30, 0, 0])["ship_id"]
until("both ships seen, one each side", a, lambda: at_rest_on(a, sa, 0) and at_rest_on(a, sb, 1))
hp0 = a.call("inspect", sb)["hp"]
shots, hit = 0, None
deadline = time.monotonic() + 60 * mult
while hit is None:
    if time.monotonic() > deadline: fail("no shot across the border hit in %d tries" % shots)
    r = a.call("fire", sa, sb, ok=False)
    if r[2] is None:
        shots += 1
        if r[3]["hit"]: hit = r[3]
    elif r[2]["code"] not in (7, 9):  # NOT_FOUND (its ghost not here yet: a step away), COOLDOWN: again
        fail("fire across the border answered %r" % (r[2],))
    a.pump()
want = hp0 - hit["damage"]
got = until("the target's hp, at its own daemon, down by the shot's damage", a,
            lambda: (lambda h: h if h <= want + 1e-3 else None)(a.call("inspect", sb)["hp"]))
if abs(got - want) > 1e-3: fail("target hp %.3f after a hit of %.3f from %.3f (want %.3f)" % (got, hit["damage"], hp0, want))

# ---- mine across the border: an asteroid of node 1 near x = 0, a ship of node 0 beside it
ast = None
until("the demo asteroids in view", a, lambda: len(a.world.of_kind(2)) > 100)
for e in sorted(a.world.of_kind(2), key=lambda e: e.pos[0]):
    x, y, z = e.pos
    sx = x - e.radius - 2.0 - 4.0     # the ship's centre: 4 units of gap (ship radius 2)
    if x > 0 and sx < -0.5 and abs(y) < 1800 and abs(z) < 1800:
        # nothing else within 40 units of where the ship goes (no collision)
        if all(math.dist((sx, y, z), o.pos) > o.radius + 12 for o in a.world if o.id != e.id):
            ast = e; break
if ast is None: fail("no asteroid of node 1 close enough to the border (the demo world has %d)" % len(a.world.of_kind(2)))
sx = ast.pos[0] - ast.radius - 6.0
sm = a.call("spawn", [sx, ast.pos[1], ast.pos[2]])["ship_id"]
until("the miner at rest on node 0's side", a, lambda: at_rest_on(a, sm, 0))
before = a.call("inspect", ast.id)
mined = None
deadline = time.monotonic() + 30 * mult
while mined is None:
    if time.monotonic() > deadline: fail("mining across the border never succeeded")
    r = a.call("mine", sm, ast.id, ok=False)
    if r[2] is None: mined = r[3]
    elif r[2]["code"] not in (7, 9): fail("mine across the border answered %r" % (r[2],))
    a.pump()
if not mined["amount"] > 0: fail("mined nothing: %r" % mined)
left = before["amount"] - mined["amount"]
def asteroid_left():
    try:
        r = a.call("inspect", ast.id, ok=False)
    except Exception:
        return None
    if r[2] is not None:
        return "gone" if mined["depleted"] else None
    return r[3]["amount"] if r[3]["amount"] <= left + 1e-3 else None
got = until("the asteroid, at its own daemon, down by the amount mined", a, asteroid_left)
cargo = a.call("inspect", sm)["cargo"][mined["resource_type"]]
if abs(cargo - mined["amount"]) > 1e-4: fail("the miner's cargo %r, mined %r" % (cargo, mined))

# ---- collide across the border: two ships on either side driven at each other meet at the border,
# bounce and take collision damage at their own daemons, and never pass through each other
sc = a.call("spawn", [-25, 400, 0])["ship_id"]
sd = b.call("spawn", [25, 400, 0])["ship_id"]
until("both colliders seen, one each side", a, lambda: at_rest_on(a, sc, 0) and at_rest_on(a, sd, 1))
a.call("move", sc, [20, 0, 0])
b.call("move", sd, [-20, 0, 0])
def both_hurt():
    rc, rd = a.call("inspect", sc), a.call("inspect", sd)
    if rc["pos"][0] > rd["pos"][0]: fail("the ships passed through each other: x %.2f and %.2f" % (rc["pos"][0], rd["pos"][0]))
    return (rc, rd) if rc["hp"] < 100 and rd["hp"] < 100 else None
deadline = time.monotonic() + 30 * mult
while True:
    hurt = both_hurt()
    if hurt: break
    if time.monotonic() > deadline: fail("no collision across the border within the time limit")
    a.pump()
rc, rd = hurt
a.call("move", sc, [0, 0, 0]); b.call("move", sd, [0, 0, 0])

os.kill(p.pid, signal.SIGTERM)
try:
    p.wait(timeout=30 * mult)
except subprocess.TimeoutExpired:
    fail("cluster.sh did not stop within 30 s of SIGTERM")
print("ghost.sh: a shot across the border hit after %d shot(s): hp %.1f -> %.1f at the target's daemon; "
      "%.2f %s mined across the border: asteroid %.2f -> %s at its daemon, in the miner's cargo; two ships "
      "collided across the border: hp %.1f and %.1f, x %.2f < %.2f"
      % (shots, hp0, want, mined["amount"], mined["resource_type"], before["amount"],
         got if isinstance(got, str) else "%.2f" % got, rc["hp"], rd["hp"], rc["pos"][0], rd["pos"][0]))
PYEOF

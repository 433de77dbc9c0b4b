#!/bin/sh
# tests/cluster/clock.sh: one clock for a cluster (issue 10 points 5 and 9).
# A collision-free ballistic world (--cluster-test-ships, ship_max_accel 0)
# run on 4 daemons (--cells 2x2, one cell each, their own nats-server on a
# free port) for N ticks, paused by --cluster-pause-at at tick N on all,
# gives the same canonical world hash (the cluster's is the sum of the
# daemons' sp_world_hash_canonical, mod 2^64) as one daemon (a 1x1 cluster
# of its own nats-server) run for the same N ticks from the same seed. That
# holds only if every entity handed off after the step to tick t was
# imported before the receiver's step from t: the tick frontier. The ships
# must cross borders many times (the daemons' crossing counters, a floor).
# Every wait is for a condition, bounded in time; never a fixed sleep.
set -u
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "clock.sh: FAIL: $PY missing" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "clock.sh: FAIL: nats-server missing (./quickstart.sh test installs it)" >&2; exit 1; }
exec "$PY" - "$DAEMON" "${CK_TIMEOUT_MULTIPLIER:-1}" <<'PYEOF'
import atexit, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
daemon, mult = sys.argv[1], float(sys.argv[2])
cells_tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(daemon))), "cluster", "spacesim-cells")
tmp = tempfile.mkdtemp(prefix="spacesim-clock.")
SHIPS, TICKS, MIN_CROSSINGS = 400, 900, 2000
procs = {}
def stop_all():
    for p in procs.values():
        if p.poll() is None:
            p.kill(); p.wait()
def cleanup():
    stop_all()
    shutil.rmtree(tmp, True)
atexit.register(cleanup)
# A harness that stops this script (SIGTERM, SIGHUP) gets the same cleanup: sys.exit runs atexit.
for sig in (signal.SIGTERM, signal.SIGHUP): signal.signal(sig, lambda *_: sys.exit(1))
def logs():
    out = ""
    for name in sorted(procs):
        path = os.path.join(tmp, name + ".log")
        if os.path.exists(path):
            out += "---- %s (last lines)\n%s" % (name, "".join(open(path).readlines()[-15:]))
    return out
def fail(msg):
    sys.stderr.write("clock.sh: FAIL: %s\n%s" % (msg, logs()))
    sys.exit(1)
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def start(name, argv):
    procs[name] = subprocess.Popen(argv, stdout=open(os.path.join(tmp, name + ".log"), "a"), stderr=subprocess.STDOUT)
def start_nats(name):
    port = free_port()
    start(name, ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", os.path.join(tmp, name + "-js")])
    deadline = time.monotonic() + 20 * mult
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close(); return "nats://127.0.0.1:%d" % port
        except OSError:
            if procs[name].poll() is not None: fail("%s exited" % name)
            time.sleep(0.05)
    fail("%s did not listen" % name)
def start_node(name, url, grid, n, ships, paused):
    argv = [daemon, "--bind", "127.0.0.1", "--port", "0", "--nats", url, "--cells", grid, "--node", str(n),
            "--world-size", "200", "--demo-asteroids", "0", "--demo-npcs", "0", "--cluster-test-ships", str(ships),
            "--seed", "7", "--workers", "1", "--checkpoint-every", "0", "--cluster-pause-at", str(TICKS)]
    if paused: argv += ["--cluster-start-paused", "1"]
    start(name, argv)
def tool(url, grid, *args, timeout=20):
    try:
        r = subprocess.run([cells_tool, "--nats", url, "--cells", grid] + list(args), capture_output=True, text=True,
                           timeout=timeout * mult)
    except subprocess.TimeoutExpired:
        return 124, "spacesim-cells %s: no answer within %.0f s\n" % (" ".join(args), timeout * mult)
    return r.returncode, r.stdout + r.stderr
def status(url, grid, nodes):
    """{node: {field: value}} of the daemons' status lines, or None if one did not answer."""
    rc, out = tool(url, grid, "status", *[str(n) for n in nodes])
    if rc != 0: return None
    got = {}
    for chunk in re.split(r"(?=\bnet inc )", out):  # one reply per daemon, each from "net inc"
        f = dict(re.findall(r"\b([a-z_]+) (-?[0-9][0-9.]*|none|unknown)\b", chunk))
        if "node" in f: got[int(f["node"])] = f
    return got if len(got) == len(nodes) else None
def wait_for(what, url, grid, nodes, cond, limit=60):
    deadline = time.monotonic() + limit * mult
    last = None
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None: fail("%s exited while waiting until %s" % (name, what))
        st = status(url, grid, nodes)
        if st is not None:
            last = st
            if cond(st): return st
        time.sleep(0.05)
    fail("not %s within the time limit; last status: %s" % (what, last))
def settled(st):
    # Every daemon paused at tick TICKS, nothing in flight, nothing waiting for a later tick.
    return all(f["paused"] == "1" and f["tick"] == str(TICKS) and f["outq"] == "0" and f["inflight"] == "0"
               and f["early"] == "0" and f["held"] == "0" for f in st.values()) \
        and sum(int(f["count"]) for f in st.values()) == SHIPS  # none still in the stream

# ---- 4 daemons, one cell each
url = start_nats("nats4")
nodes = [0, 1, 2, 3]
start_node("node0", url, "2x2", 0, SHIPS, True)
wait_for("node 0 answers", url, "2x2", [0], lambda st: True)
for n in nodes[1:]: start_node("node%d" % n, url, "2x2", n, 0, True)
# Node 0 registered first and claimed every cell: give cell k to node k (a CAS each), then wait until every
# daemon's loop sees one cell of its own and the three others as live peers, so no hand-off finds its
# receiver unaware that the cell is now its own.
deadline = time.monotonic() + 60 * mult
while True:
    rc, out = tool(url, "2x2", "list")
    owners = dict(re.findall(r"cell (\d+) owner (\d+)", out)) if rc == 0 else {}
    if len(owners) == 4 and all(owners[str(c)] == str(c) for c in range(4)): break
    if time.monotonic() > deadline: fail("cells not one per node: %s" % out)
    for c in range(4):
        if owners.get(str(c)) not in (None, str(c)): tool(url, "2x2", "move", str(c), str(c))
    time.sleep(0.1)
wait_for("every daemon owns one cell and sees 3 peers", url, "2x2", nodes,
         lambda st: all(f["cells"] == "1" and f["peers"] == "3" and f["tick"] == "0" for f in st.values()))
t0 = time.monotonic()
rc, out = tool(url, "2x2", "resume", *[str(n) for n in nodes])
if rc != 0: fail("resume: %s" % out)
st = wait_for("all 4 daemons paused at tick %d with nothing in flight" % TICKS, url, "2x2", nodes, settled, limit=120)
wall4 = time.monotonic() - t0
count4 = sum(int(f["count"]) for f in st.values())
hash4 = sum(int(f["hash"]) for f in st.values()) % (1 << 64)
crossings = sum(int(f["crossings"]) for f in st.values())
late = sum(int(f["late"]) for f in st.values())
returned = sum(int(f["returned"]) for f in st.values())
fwaits = sum(int(f["fwaits"]) for f in st.values())
fwait_ms = sum(float(f["fwait_ms"]) for f in st.values())
if count4 != SHIPS: fail("4 daemons hold %d ships, not %d: %s" % (count4, SHIPS, st))
if crossings < MIN_CROSSINGS: fail("only %d border crossings in %d ticks (floor %d)" % (crossings, TICKS, MIN_CROSSINGS))
stop_all()
procs.clear()

# ---- one daemon (a 1x1 cluster: no peer, so no frontier), same seed, same ticks
url1 = start_nats("nats1")
start_node("single", url1, "1x1", 0, SHIPS, False)
t1 = time.monotonic()
st1 = wait_for("the single daemon paused at tick %d" % TICKS, url1, "1x1", [0], settled, limit=120)
wall1 = time.monotonic() - t1
hash1, count1 = int(st1[0]["hash"]) % (1 << 64), int(st1[0]["count"])
if count1 != SHIPS: fail("the single daemon holds %d ships, not %d" % (count1, SHIPS))
print("clock.sh: %d ships, %d ticks: 4 daemons %d border crossings, canonical hash %016x; 1 daemon %016x"
      % (SHIPS, TICKS, crossings, hash4, hash1))
print("clock.sh: ticks/s: 4 daemons %.1f, 1 daemon %.1f (60 Hz nominal); frontier waits %d, %.0f ms in all"
      % (TICKS / wall4, TICKS / wall1, fwaits, fwait_ms))
if hash4 != hash1: fail("the split world's canonical hash %016x differs from one daemon's %016x" % (hash4, hash1))
# After the hash (the judge): no hand-off may have been imported after its receiver passed its tick, and none
# refused (every receiver knew its cell before the run).
if late != 0 or returned != 0: fail("hand-offs imported after their tick (late %d) or returned (%d): %s" % (late, returned, st))
PYEOF

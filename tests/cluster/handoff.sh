#!/bin/sh
# tests/cluster/handoff.sh: two spacesimd processes share one world through a
# nats-server of their own (issue 10, step 2). 600 ballistic ships cross the
# borders of a 2x2 grid of cells; spacesim-cells audit pauses the daemons
# until nothing is in flight and checks every id once, none lost, epochs
# consistent. Then: kill -9 of the receiving daemon during hand-offs and a
# restart (entities it held die with it, as its journal shows: no persistence
# yet; none may be lost or duplicated), and kill -9 of nats-server and a
# restart on the same store. Each phase waits for crossings counted by the
# daemons, bounded in time; never a fixed sleep.
set -u
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "handoff.sh: FAIL: $PY missing" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "handoff.sh: FAIL: nats-server missing (./quickstart.sh test installs it)" >&2; exit 1; }
exec "$PY" - "$DAEMON" "${CK_TIMEOUT_MULTIPLIER:-1}" <<'PYEOF'
import atexit, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
daemon, mult = sys.argv[1], float(sys.argv[2])
cells = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(daemon))), "cluster", "spacesim-cells")
tmp = tempfile.mkdtemp(prefix="spacesim-cluster.")
procs = {}
def cleanup():
    for p in procs.values():
        if p.poll() is None:
            p.kill(); p.wait()
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
    st = ""
    try:
        r = subprocess.run([cells, "--nats", url, "--cells", "2x2", "status", "0", "1"], capture_output=True, text=True,
                           timeout=10)
        st = "---- status 0 1\n" + r.stdout + r.stderr
    except Exception as e:  # the failure itself is what matters; the status is a help
        st = "---- status 0 1: %s\n" % e
    sys.stderr.write("handoff.sh: FAIL: %s\n%s%s" % (msg, logs(), st))
    sys.exit(1)
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
nport = free_port()
url = "nats://127.0.0.1:%d" % nport
def start(name, argv):
    procs[name] = subprocess.Popen(argv, stdout=open(os.path.join(tmp, name + ".log"), "a"), stderr=subprocess.STDOUT)
def start_nats():
    start("nats", ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(nport), "-sd", os.path.join(tmp, "js")])
    deadline = time.monotonic() + 20 * mult
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", nport), 0.5).close(); return
        except OSError:
            if procs["nats"].poll() is not None: fail("nats-server exited")
            time.sleep(0.05)
    fail("nats-server did not listen")
def start_node(n, ships, journal, extra=()):
    start("node%d" % n, [daemon, "--bind", "127.0.0.1", "--port", "0", "--nats", url, "--cells", "2x2",
                         "--node", str(n), "--world-size", "200", "--demo-asteroids", "0", "--demo-npcs", "0",
                         "--cluster-test-ships", str(ships), "--cluster-journal", os.path.join(tmp, journal),
                         "--workers", "1", "--checkpoint-every", "0"] + list(extra))
def tool(*args, timeout=60):
    # A tool run that times out is a failed run (rc 124, as timeout(1)), so the
    # caller's own wait decides and, if it gives up, fails with the logs.
    try:
        r = subprocess.run([cells, "--nats", url, "--cells", "2x2"] + list(args), capture_output=True, text=True,
                           timeout=timeout * mult)
    except subprocess.TimeoutExpired:
        return 124, "spacesim-cells %s: no answer within %.0f s\n" % (" ".join(args), timeout * mult)
    return r.returncode, r.stdout + r.stderr
def crossings():
    rc, out = tool("status", "0", "1", timeout=20)
    if rc != 0: return None
    got = [int(m) for m in re.findall(r"\bcrossings (\d+)", out)]
    return sum(got) if len(got) == 2 else None
def wait_crossings(more, what):
    base = None
    deadline = time.monotonic() + 90 * mult
    while time.monotonic() < deadline:
        for n in (0, 1):
            if procs["node%d" % n].poll() is not None: fail("node %d exited while %s" % (n, what))
        c = crossings()
        if c is not None:
            if base is None: base = c
            if c - base >= more: return c
        time.sleep(0.2)
    fail("fewer than %d border crossings within the time limit while %s (base %s)" % (more, what, base))
def audit(*extra):
    rc, out = tool("audit", "--expect", "600", *extra, "0", "1", timeout=120)
    line = next((l for l in out.splitlines() if l.startswith("audit:")), "")
    f = dict(re.findall(r"(\w+) (\d+)", line))
    if rc != 0 or f.get("lost") != "0" or f.get("duplicated") != "0" or f.get("epoch_errors") != "0":
        fail("audit: rc %d: %s" % (rc, out))
    return f

start_nats()
ckpt0 = os.path.join(tmp, "node0.ckpt")
start_node(0, 600, "j0", ["--checkpoint", ckpt0, "--checkpoint-every", "1"])
# Node 1 first refuses 400 hand-offs in, as a full world (sent back to node 0: the compensation) and as
# out of memory (nak'd: the server delivers them again) in turn; none may be lost or duplicated.
REFUSE = 400
start_node(1, 0, "j1", ["--cluster-test-refuse", str(REFUSE)])
# Whichever daemon registered first claimed every cell: once all four are owned, move cells (a CAS each;
# the old owner hands off their entities) into a checkerboard, so every border is between the two daemons.
want = {0: "0", 1: "1", 2: "1", 3: "0"}
deadline = time.monotonic() + 60 * mult
while True:
    rc, out = tool("list", timeout=20)
    owners = dict(re.findall(r"cell (\d+) owner (\d+)", out)) if rc == 0 else {}
    if len(owners) == 4 and all(owners[str(c)] == o for c, o in want.items()): break
    if time.monotonic() > deadline: fail("cells not in a checkerboard: %s" % out)
    for c, o in want.items():
        if owners.get(str(c)) not in (None, o): tool("move", str(c), o, timeout=20)
    time.sleep(0.2)
wait_crossings(2000, "both daemons run")
f = audit()
if f.get("died") != "0" or f.get("count") != "600": fail("first audit: %s" % f)
rc, out = tool("status", "0", "1", timeout=20)
fig = {k: sum(int(v) for v in re.findall(r"\b%s (\d+)" % k, out)) for k in ("bounced", "retried", "returned", "backoffs")}
if rc != 0 or fig["bounced"] != REFUSE // 2 or fig["retried"] != REFUSE // 2 or fig["returned"] < REFUSE // 2 \
        or fig["backoffs"] != REFUSE // 2:
    fail("refused hand-offs: want %d sent back, %d retried, as many returns applied and held back: %s"
         % (REFUSE // 2, REFUSE // 2, out))
print("handoff.sh: two daemons: %s crossings, count %s, lost 0, duplicated 0; %d refused in (%d sent back, %d redelivered)"
      % (f.get("crossings"), f.get("count"), REFUSE, fig["bounced"], fig["retried"]))

def restart_node0(killed_log, journal, extra):
    """kill -9 node 0, keep its log as killed_log, start it again (no test ships) with extra."""
    procs["node0"].send_signal(signal.SIGKILL); procs["node0"].wait()
    os.rename(os.path.join(tmp, "node0.log"), os.path.join(tmp, killed_log))
    start_node(0, 0, journal, extra)
def tick_of(n):
    rc, out = tool("status", str(n), timeout=20)
    m = re.search(r"\bnode %d tick (\d+)" % n, out) if rc == 0 else None
    return int(m.group(1)) if m else None
wait_crossings(200, "hand-offs resume after the audit")
t0 = tick_of(0)
if t0 is None: fail("node 0 did not answer status before the kill")
procs["node1"].send_signal(signal.SIGKILL); procs["node1"].wait()
os.rename(os.path.join(tmp, "node1.log"), os.path.join(tmp, "node1-killed.log"))
start_node(1, 0, "j1b")
# The new incarnation joins at the cluster's tick (sp_cluster_join_tick), not at 0: its first answer is
# already at or past node 0's tick from before the kill (node 0 cannot have gone back).
deadline = time.monotonic() + 60 * mult
t1 = None
while t1 is None and time.monotonic() < deadline:
    if procs["node1"].poll() is not None: fail("node 1 exited after its restart")
    t1 = tick_of(1)
if t1 is None or t1 < t0: fail("restarted node 1 at tick %s, not at the cluster's (node 0 was at %d)" % (t1, t0))
wait_crossings(1000, "node 1 restarted after kill -9")
f = audit("--died", os.path.join(tmp, "j1"))
print("handoff.sh: after kill -9 of node 1: count %s, died with it %s, lost 0, duplicated 0; it rejoined at tick %d (node 0 was at %d)"
      % (f.get("count"), f.get("died"), t1, t0))

procs["nats"].send_signal(signal.SIGKILL); procs["nats"].wait()
start_nats()
wait_crossings(1000, "nats-server restarted after kill -9")
f = audit("--died", os.path.join(tmp, "j1"))
print("handoff.sh: after kill -9 of nats-server: count %s, lost 0, duplicated 0" % f.get("count"))

# Persistence (issue 10 point 7): node 0 checkpoints every second. Wait for a checkpoint written after the
# audit and for hand-offs after it, then kill -9 node 0 and restart it from that checkpoint: it puts back what it
# held and replays the stream since, so no entity may be lost (none died with it: the count is unchanged).
before = int(f.get("count"))
m0 = os.stat(ckpt0).st_mtime_ns if os.path.exists(ckpt0) else 0
deadline = time.monotonic() + 60 * mult
while not (os.path.exists(ckpt0) and os.stat(ckpt0).st_mtime_ns > m0):
    if time.monotonic() > deadline: fail("node 0 wrote no checkpoint after the audit")
    time.sleep(0.1)
wait_crossings(300, "hand-offs go on after node 0's checkpoint")
restart_node0("node0-killed.log", "j0b", ["--checkpoint", ckpt0, "--checkpoint-every", "1"])
wait_crossings(1000, "node 0 resumed from its checkpoint after kill -9")
f = audit("--died", os.path.join(tmp, "j1"))
if int(f.get("count")) != before: fail("after node 0's resume the cluster holds %s entities, not %d: %s" % (f.get("count"), before, f))
resumed = next((l for l in open(os.path.join(tmp, "node0.log")) if "resumed node 0" in l), "").strip()
if not resumed: fail("node 0 did not say it resumed its checkpoint")
print("handoff.sh: after kill -9 of node 0 and a resume from its checkpoint: count %s, lost 0, duplicated 0 (%s)"
      % (f.get("count"), resumed.split("INFO ", 1)[-1]))

# The same with departures in flight: node 0, restarted with --cluster-test-hold-at, stops publishing hand-offs
# 1.5 s later, so the ones it departs then stay in its outbox (and the frontier soon holds both daemons). A
# checkpoint written after that keeps them; kill -9, resume without the hold: they are put back, none lost.
t1 = tick_of(1)
if t1 is None: fail("node 1 did not answer status")
restart_node0("node0-killed2.log", "j0c", ["--checkpoint", ckpt0, "--checkpoint-every", "1", "--cluster-test-hold-at", str(t1 + 90)])
def held_checkpoint():
    lines = open(os.path.join(tmp, "node0.log")).read().splitlines()
    k = next((i for i, l in enumerate(lines) if "no hand-off published from tick" in l), None)
    if k is None: return None
    for l in lines[k + 1:]:
        m = re.search(r"checkpoint written: .* (\d+) departures in flight", l)
        if m and int(m.group(1)) > 0: return int(m.group(1))
    return None
deadline = time.monotonic() + 90 * mult
inflight = None
while inflight is None:
    if procs["node0"].poll() is not None: fail("node 0 exited while holding its hand-offs")
    if time.monotonic() > deadline: fail("node 0 wrote no checkpoint with departures in flight")
    inflight = held_checkpoint()
    time.sleep(0.1)
restart_node0("node0-killed3.log", "j0d", ["--checkpoint", ckpt0, "--checkpoint-every", "1"])
wait_crossings(1000, "node 0 resumed a checkpoint with departures in flight")
f = audit("--died", os.path.join(tmp, "j1"))
if int(f.get("count")) != before: fail("after the second resume the cluster holds %s entities, not %d: %s" % (f.get("count"), before, f))
m = None
for l in open(os.path.join(tmp, "node0.log")):
    m = m or re.search(r"resumed node 0's checkpoint .*: (\d+) departures put back", l)
if m is None or int(m.group(1)) != inflight:
    fail("node 0 put back %s departures, its checkpoint kept %d" % (m.group(1) if m else "no", inflight))
print("handoff.sh: a checkpoint with %d departures in flight, kill -9, resume: they were put back; count %s, lost 0, "
      "duplicated 0" % (inflight, f.get("count")))
PYEOF

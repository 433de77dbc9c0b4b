#!/bin/sh
# tests/ops/metrics_promtool.sh: the metrics follow Prometheus's conventions
# (issue 12). A real scrape of spacesimd (one client connected, so the
# traffic counters move) must pass `promtool check metrics` with no complaint,
# carry spacesim_build_info and the process_* metrics, have no precomputed
# *_per_second gauge; contrib/grafana/spacesim.json must parse and every
# metric its queries name must be in the scrape. A missing promtool fails
# (Debian package prometheus; quickstart.sh installs it).
set -u
SRCDIR=${SPACESIM_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
PY=/usr/bin/python3
if ! command -v promtool >/dev/null 2>&1; then
    echo "metrics_promtool.sh: FAIL: promtool not found (apt-get install prometheus)" >&2
    exit 1
fi
exec "$PY" - "$DAEMON" "$SRCDIR" "${CK_TIMEOUT_MULTIPLIER:-1}" <<'PYEOF'
import atexit, json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request
daemon, srcdir, mult = sys.argv[1], sys.argv[2], float(sys.argv[3])
tmp = tempfile.mkdtemp(prefix="spacesim-metrics.")
atexit.register(shutil.rmtree, tmp, True)
proc = None
def fail(msg):
    if proc:
        proc.kill(); proc.wait()
    try:
        sys.stderr.write("metrics_promtool.sh: FAIL: %s\ndaemon log:\n%s" % (msg, open(tmp + "/log").read()))
    except OSError:
        sys.stderr.write("metrics_promtool.sh: FAIL: %s\n" % msg)
    sys.exit(1)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

# --metrics-port takes a fixed port: pick a free one; another process may
# take it first (exit 4, cannot listen), then try another.
for attempt in range(5):
    mport = free_port()
    pf = tmp + "/port"
    if os.path.exists(pf): os.unlink(pf)
    proc = subprocess.Popen([daemon, "--bind", "127.0.0.1", "--port", "0", "--port-file", pf, "--metrics-port",
                             str(mport), "--demo-asteroids", "100", "--demo-npcs", "10", "--checkpoint-every", "0"],
                            stderr=open(tmp + "/log", "w"))
    deadline = time.monotonic() + 20 * mult
    scrape = None
    while time.monotonic() < deadline and proc.poll() is None and scrape is None:
        try:
            if not os.path.exists(pf) or not open(pf).read().strip():
                raise OSError("no port yet")
            scrape = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5).read().decode()
        except OSError:
            time.sleep(0.02)
    if scrape is not None: break
    st = proc.poll()
    proc.kill(); proc.wait(); proc = None
    if st != 4: fail("no scrape (daemon exit %s)" % st)
else:
    fail("no free metrics port after 5 tries")

# One client, so the byte and command counters are exercised, then scrape again
# once the daemon has counted its bytes.
port = int(open(pf).read())
c = socket.create_connection(("127.0.0.1", port), timeout=5)
def mp_str(s):
    b = s.encode(); return bytes([0xa0 | len(b)]) + b
# [0, 1, "hello", [{"name": "metrics"}]] in MessagePack, by hand (no msgpack needed)
hello = bytes([0x94, 0x00, 0x01]) + mp_str("hello") + bytes([0x91, 0x81]) + mp_str("name") + mp_str("metrics")
c.sendall(hello)
c.settimeout(5)
c.recv(65536)
deadline = time.monotonic() + 20 * mult
while time.monotonic() < deadline:
    scrape = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5).read().decode()
    m = re.search(r"^spacesim_received_bytes_total (\d+)", scrape, re.M)
    if m and int(m.group(1)) > 0: break
    time.sleep(0.02)
else:
    fail("spacesim_received_bytes_total never moved after a request")
c.close()

r = subprocess.run(["promtool", "check", "metrics"], input=scrape, capture_output=True, text=True)
if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
    fail("promtool check metrics (exit %d):\n%s%s\nscrape:\n%s" % (r.returncode, r.stdout, r.stderr, scrape))
names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", scrape, re.M))
need = ["spacesim_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
        "process_start_time_seconds", "process_max_fds", "process_virtual_memory_bytes",
        "spacesim_tick_seconds_bucket", "spacesim_sent_bytes_total", "spacesim_received_bytes_total",
        "spacesim_game_seconds_total", "spacesim_kicks_total", "spacesim_clients"]
missing = [n for n in need if n not in names]
if missing: fail("missing metrics: %s" % missing)
if not re.search(r'^spacesim_build_info\{version="[0-9.]+",protocol="[0-9]+"\} 1$', scrape, re.M):
    fail("spacesim_build_info has no version and protocol labels")
bad = sorted(n for n in names if "per_second" in n)
if bad: fail("precomputed rate gauges: %s" % bad)
st = float(re.search(r"^process_start_time_seconds (\S+)", scrape, re.M).group(1))
if abs(st - time.time()) > 120 * mult: fail("process_start_time_seconds %s is not about now" % st)

dash = json.load(open(srcdir + "/contrib/grafana/spacesim.json"))
exprs = []
def walk(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k in ("expr", "query") and isinstance(v, str): exprs.append(v)
            else: walk(v)
    elif isinstance(o, list):
        for v in o: walk(v)
walk(dash)
used = set()
for e in exprs: used.update(re.findall(r"\b((?:spacesim|process)_[a-z_]+)", e))
if len(used) < 10: fail("the dashboard queries only %s" % sorted(used))
unknown = sorted(used - names)
if unknown: fail("the dashboard queries metrics the daemon does not export: %s" % unknown)
for want in ("spacesim_tick_seconds_bucket", "spacesim_game_seconds_total", "spacesim_clients",
             "spacesim_snapshots_sent_total", "spacesim_sent_bytes_total", "spacesim_kicks_total"):
    if want not in used: fail("the dashboard does not show %s" % want)
proc.terminate()
if proc.wait(timeout=20 * mult) != 0: fail("daemon exit after SIGTERM")
print("metrics_promtool.sh: ok (%d metric names, dashboard queries %d)" % (len(names), len(used)))
PYEOF

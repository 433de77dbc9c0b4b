#!/bin/sh
# tests/ops/sd_notify.sh: spacesimd speaks the Type=notify protocol (issue 12).
# A Unix datagram socket stands in for systemd ($NOTIFY_SOCKET): READY=1 must
# arrive, and when it does the client port must accept a connection (ready
# means listening); after SIGTERM, STOPPING=1 must arrive before the daemon
# exits 0. Waits on the socket and the process, never a fixed sleep.
set -u
DAEMON=${SPACESIMD:-./src/daemon/spacesimd}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "sd_notify.sh: FAIL: $PY missing" >&2; exit 1; }
exec "$PY" - "$DAEMON" "${CK_TIMEOUT_MULTIPLIER:-1}" <<'PYEOF'
import atexit, os, shutil, signal, socket, subprocess, sys, tempfile, time
daemon, mult = sys.argv[1], float(sys.argv[2])
tmp = tempfile.mkdtemp(prefix="spacesim-notify.")
atexit.register(shutil.rmtree, tmp, True)
path = os.path.join(tmp, "notify")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
env = dict(os.environ, NOTIFY_SOCKET=path)
log = open(os.path.join(tmp, "daemon.log"), "w+")
p = subprocess.Popen([daemon, "--bind", "127.0.0.1", "--port", "0", "--port-file", os.path.join(tmp, "port"),
                      "--demo-asteroids", "50", "--demo-npcs", "5", "--checkpoint-every", "0"],
                     env=env, stderr=log)
def fail(msg):
    p.kill(); p.wait()
    log.seek(0)
    sys.stderr.write("sd_notify.sh: FAIL: %s\ndaemon log:\n%s" % (msg, log.read()))
    sys.exit(1)
def wait_for(word):
    deadline = time.monotonic() + 20 * mult
    got = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(msg)
        if word in msg.split("\n"):
            return msg
    fail("no %s within %g s (got %r)" % (word, 20 * mult, got))
ready = wait_for("READY=1")
port = int(open(os.path.join(tmp, "port")).read())
if "STATUS=serving on port %d" % port not in ready:
    fail("READY message %r does not name port %d" % (ready, port))
c = socket.create_connection(("127.0.0.1", port), timeout=5)
c.close()
p.send_signal(signal.SIGTERM)
stopping = wait_for("STOPPING=1")
try:
    st = p.wait(timeout=20 * mult)
except subprocess.TimeoutExpired:
    fail("no exit after SIGTERM")
if st != 0:
    fail("exit %d after SIGTERM" % st)
print("sd_notify.sh: ok (%r, %r)" % (ready, stopping))
PYEOF

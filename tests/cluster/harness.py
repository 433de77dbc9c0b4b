"""tests/cluster/harness.py: what the cluster tests that run contrib/cluster.sh share.

Cluster(name, src, build, args, mult) starts contrib/cluster.sh BUILD ARGS in a session of its own
(so everything it starts goes with it), on ports it finds free, and waits until it says it has
started everything (every gateway open for sessions). fail(msg) prints what cluster.sh said and
the tails of its logs, stops the session and exits 1; wait(what, cond) polls cond until it is true
or a bounded time passed (then fails); stop() sends SIGTERM and waits for cluster.sh to end.
Client(cluster, port, name, on_snapshot) is a MessagePack-RPC client that applies every snapshot
to its World (the Python package's decoder) and says hello.

Python 3 with python3-msgpack (Debian's /usr/bin/python3); no sleeps stand for a condition."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack


def free(port):
    try:
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.close()
        return True
    except OSError:
        return False


def free_ports(offsets):
    """A port P with P + k free for every k in offsets."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if all(0 < port + k < 65536 and free(port + k) for k in offsets):
            return port
    raise RuntimeError("no free ports")


class Cluster:
    def __init__(self, name, src, build, args, mult, logs=("gw0.log", "node0.log")):
        self.name, self.mult, self.logs = name, mult, logs
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen([os.path.join(src, "contrib", "cluster.sh"), build] + args,
                                  stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._stopped)
        self.wait("cluster.sh has started everything", lambda: "Ctrl-C stops all." in self.output())

    def _stopped(self, *_):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
        except OSError:
            pass
        sys.exit(1)

    def output(self):
        self.err.seek(0)
        return self.err.read()

    def fail(self, msg):
        out = self.output()
        sys.stderr.write("%s: FAIL: %s\n---- cluster.sh said:\n%s" % (self.name, msg, out))
        m = re.search(r"\(log (/tmp/spacesim-cluster\.[^/ ]+)/", out)
        for log in self.logs if m else ():
            try:
                with open(os.path.join(m.group(1), log)) as f:
                    sys.stderr.write("---- %s (tail):\n%s" % (log, "".join(f.readlines()[-15:])))
            except OSError:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(timeout=30 * self.mult)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except OSError:
                pass
        sys.exit(1)

    def wait(self, what, cond, limit=90):
        deadline = time.monotonic() + limit * self.mult
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                self.fail("cluster.sh exited (%d) while waiting until %s" % (self.p.returncode, what))
            r = cond()
            if r:
                return r
            time.sleep(0.1)
        self.fail("not %s within the time limit" % what)

    def session_pids(self):
        out = subprocess.run(["pgrep", "-s", str(self.p.pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def stop(self):
        os.kill(self.p.pid, signal.SIGTERM)
        try:
            self.p.wait(timeout=30 * self.mult)
        except subprocess.TimeoutExpired:
            self.fail("cluster.sh did not stop within 30 s of SIGTERM")


class Client:
    """A MessagePack-RPC client that applies every snapshot to its World and
    hands each one, after applying, to on_snapshot(client, tick)."""

    def __init__(self, cluster, port, name, on_snapshot=None):
        from spacesim.world import World
        self.cl = cluster
        self.s = socket.create_connection(("127.0.0.1", port), 10)
        self.s.settimeout(30 * cluster.mult)
        self.u = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
        self.mid = 0
        self.world = World()
        self.on_snapshot = on_snapshot
        self.answers = {}
        r = self.call("hello", name)
        self.session = r["session"]

    def pump(self):
        data = self.s.recv(1 << 20)
        if not data:
            self.cl.fail("a gateway closed a client's connection")
        self.u.feed(data)
        for msg in self.u:
            if msg[0] == 1:
                self.answers[msg[1]] = msg
            elif msg[0] == 2 and msg[1] == "snapshot":
                self.world.apply(msg[2])
                if self.on_snapshot:
                    self.on_snapshot(self, msg[2][0])

    def send(self, method, *params):
        self.mid += 1
        self.s.sendall(msgpack.packb([0, self.mid, method, list(params)]))
        return self.mid

    def answer(self, mid):
        while mid not in self.answers:
            self.pump()
        return self.answers.pop(mid)

    def call(self, method, *params, ok=True):
        a = self.answer(self.send(method, *params))
        if ok and a[2] is not None:
            self.cl.fail("%s answered %r" % (method, a[2]))
        return a[3] if ok else a

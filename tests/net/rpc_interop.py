#!/usr/bin/python3
"""rpc_interop.py: talk to spacesimd the way any MessagePack-RPC client does.

Nothing from this project is imported: a raw TCP socket and Debian's
python3-msgpack, packing requests [0, msgid, method, params] with msgpack's
defaults (str as str, floats as float64, ints in their smallest form) and
matching responses [1, msgid, error, result] by msgid while notifications
[2, method, params] arrive in between, as proto/PROTOCOL.md promises.

Usage: rpc_interop.py PORT [PROTOCOL]   (spacesimd listening on 127.0.0.1:PORT, built with
SP_PROTO_VERSION PROTOCOL: hello must say it, and snapshots have its shape; default 1)
Prints one line per check; exits 0 when all pass, 1 otherwise.
"""
import math
import socket
import sys
import time

import msgpack

TIMEOUT = 10.0


class RpcError(Exception):
    def __init__(self, err):
        super().__init__("%s: %s" % (err.get("code"), err.get("message")))
        self.code = err.get("code")
        self.message = err.get("message")


class Client:
    """A minimal MessagePack-RPC client: requests, notifications, responses by msgid."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=16 << 20)
        self.msgid = 0
        self.responses = {}
        self.notifications = []

    def close(self):
        self.sock.close()

    def _pump(self, deadline):
        """Read once and sort what arrived; False on EOF."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(65536)
        if not data:
            return False
        self.unpacker.feed(data)
        for msg in self.unpacker:
            assert isinstance(msg, list) and msg and msg[0] in (1, 2), "not an RPC message: %r" % (msg,)
            if msg[0] == 1:
                assert len(msg) == 4, msg
                self.responses[msg[1]] = msg
            else:
                assert len(msg) == 3 and isinstance(msg[1], str) and isinstance(msg[2], list), msg
                self.notifications.append((msg[1], msg[2]))
        return True

    def send(self, method, *params):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(params)]))
        return self.msgid

    def notify(self, method, *params):
        self.sock.sendall(msgpack.packb([2, method, list(params)]))

    def wait(self, msgid):
        deadline = time.monotonic() + TIMEOUT
        while msgid not in self.responses:
            if time.monotonic() > deadline or not self._pump(deadline):
                raise TimeoutError("no response to msgid %d" % msgid)
        _, _, err, result = self.responses.pop(msgid)
        if err is not None:
            assert err is None or (isinstance(err, dict) and isinstance(err.get("code"), int)
                                   and isinstance(err.get("message"), str)), err
            assert result is None, result
            raise RpcError(err)
        return result

    def call(self, method, *params):
        return self.wait(self.send(method, *params))

    def next_notification(self, method):
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, (m, p) in enumerate(self.notifications):
                if m == method:
                    del self.notifications[i]
                    return p
            if time.monotonic() > deadline or not self._pump(deadline):
                raise TimeoutError("no %s notification" % method)


failures = 0


def check(name, cond, detail=""):
    global failures
    print("%s %s%s" % ("ok  " if cond else "FAIL", name, (": " + str(detail)) if detail and not cond else ""))
    if not cond:
        failures += 1


def expect_error(name, code, fn, *args):
    try:
        fn(*args)
    except RpcError as e:
        check(name, e.code == code and e.message, "code %r message %r" % (e.code, e.message))
        return
    check(name, False, "no error")


def main():
    port = int(sys.argv[1])
    proto = int(sys.argv[2]) if len(sys.argv) > 2 else 1   # SP_PROTO_VERSION, from rpc_interop.sh
    c = Client(port)

    r = c.call("ping")
    check("ping before hello", isinstance(r, dict) and isinstance(r.get("tick"), int)
          and r.get("server_time_ns", 0) > 10**18, r)
    expect_error("spawn before hello is NOT_AUTHENTICATED (5)", 5, c.call, "spawn")
    expect_error("unknown method is METHOD_NOT_FOUND (3)", 3, c.call, "warp", 9)

    r = c.call("hello", "interop", None)
    check("hello", isinstance(r.get("session"), int) and r.get("session") >= 1 and r.get("protocol") == proto
          and r.get("admin") is False and r.get("tick_hz") > 0 and r.get("snapshot_hz") > 0, r)
    if proto >= 2:
        check("hello announces the interest cells", isinstance(r.get("interest_cell"), float)
              and r["interest_cell"] > 0 and isinstance(r.get("cells_per_axis"), int) and r["cells_per_axis"] >= 1, r)
    session = r["session"]
    token = r.get("resume_token")
    check("hello returns a resume token", isinstance(token, str) and len(token) == 64, r)

    # spawn without and with a position (ints and floats mixed: both accepted)
    a = c.call("spawn")["ship_id"]
    b = c.call("spawn", [12, -7.5, 3])["ship_id"]
    check("spawn returns ids below 2^53", all(isinstance(x, int) and 0 < x < 2**53 for x in (a, b)) and a != b, (a, b))

    r = c.call("inspect", b)
    check("inspect keys", {"id", "kind", "pos", "vel", "hp", "owner", "cargo"} <= set(r), sorted(r))
    check("inspect values", r["id"] == b and r["kind"] == "ship" and r["owner"] == session
          and isinstance(r["hp"], float) and all(isinstance(v, float) for v in r["pos"])
          and all(isinstance(v, float) for v in r["cargo"].values())
          and set(r["cargo"]) == {"iron", "nickel", "ice", "platinum"}, r)
    check("spawn position honoured", all(math.isclose(p, q, abs_tol=1e-3) for p, q in zip(r["pos"], [12, -7.5, 3])),
          r["pos"])
    expect_error("inspect of a never-used id is NOT_FOUND (7)", 7, c.call, "inspect", 1 << 40)
    expect_error("inspect with a str id is INVALID_PARAMS (4)", 4, c.call, "inspect", "one")
    expect_error("move with a NaN is INVALID_PARAMS (4)", 4, c.call, "move", a, [float("nan"), 0, 0])

    # Pipelined: three requests in one write, answered in order, matched by msgid.
    ids = [c.send("ping"), c.send("move", a, [1, 0, 0]), c.send("inspect", a)]
    res = [c.wait(i) for i in ids]
    check("pipelined requests", res[1] is True and res[2]["id"] == a, res)

    # A notification runs the method without a response (fire-and-forget).
    c.notify("move", b, [0, 5, 0])
    c.notify("no_such_method")
    r = c.call("ping")  # the next response is this one's (wait() would hang on a stray msgid otherwise)
    check("notifications get no response", not c.responses, c.responses)
    deadline = time.monotonic() + TIMEOUT
    vy = 0.0
    while time.monotonic() < deadline and vy < 1.0:
        vy = c.call("inspect", b)["vel"][1]
        time.sleep(0.05)
    check("notified move took effect", vy >= 1.0, vy)

    snap = c.next_notification("snapshot")
    if proto >= 2:
        # [tick, base_tick, chunks, gone, count], chunks [cell, cbase, entered, changed, left, n].
        ok = len(snap) >= 5 and isinstance(snap[0], int) and isinstance(snap[4], int) \
            and isinstance(snap[2], list) and isinstance(snap[3], list) \
            and all(isinstance(ch, list) and len(ch) >= 6 and isinstance(ch[0], int) and isinstance(ch[5], int)
                    and all(isinstance(x, list) for x in ch[2:5]) for ch in snap[2]) \
            and all(isinstance(g, int) for g in snap[3])
        check("snapshot notification shape (protocol 2)", ok, str(snap)[:200])
    else:
        # Protocol 1: [tick, base_tick, entered, changed, left, count].
        check("snapshot notification shape", len(snap) >= 6 and isinstance(snap[0], int) and isinstance(snap[5], int)
              and all(isinstance(x, list) for x in snap[2:5]), str(snap)[:200])

    r = c.call("stats")
    check("stats map", isinstance(r, dict) and r.get("clients", 0) >= 1 and "dilation" in r, sorted(r))

    # A second, independent client: sees the ship, cannot command it; the
    # owner reconnects with its resume token and commands it again; once the
    # owner's connection closes for good, the ship is gone when the grace
    # (--reconnect-grace 1 in rpc_interop.sh) ends.
    d = Client(port)
    d.call("hello", "interop-2")
    r = d.call("inspect", b)
    check("another session can inspect the ship", r["owner"] == session, r)
    expect_error("another session's move is FORBIDDEN (6)", 6, d.call, "move", b, [1, 1, 1])
    c.close()
    c = Client(port)
    r = c.call("hello", "interop", None, token)
    check("hello with the resume token gets the session back", r.get("session") == session, r)
    check("the resumed session commands its ship", c.call("move", b, [1, 0, 0]) is True)
    c.close()
    deadline = time.monotonic() + TIMEOUT
    gone = False
    while not gone and time.monotonic() < deadline:
        try:
            d.call("inspect", b)
            time.sleep(0.05)
        except RpcError as e:
            gone = e.code == 7
    check("ships leave the world when their session's grace ends", gone)
    d.close()

    print("rpc_interop: %s" % ("all checks passed" if failures == 0 else "%d check(s) failed" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

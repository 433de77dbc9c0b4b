#!/usr/bin/python3
"""bench/abuse.py: the attacks of bench/abuse.sh (issue 7), and a stats poller.

    abuse.py flood     PORT SECONDS [--from ADDR]
    abuse.py slowloris PORT SECONDS [--from ADDR] [--conns N]
    abuse.py bigview   PORT SECONDS [--from ADDR] [--world-size W]
    abuse.py stats     PORT SECONDS               (prints one JSON line)
    abuse.py settle    PORT SECONDS               (waits for dilation >= 0.95)

Each attack runs for SECONDS against 127.0.0.1:PORT and stops by itself; it
prints one JSON line of what it did. --from binds the attacker's sockets to a
local address (any of 127/8 is loopback), so it can play "another host" for
the daemon's per-address cap. Only python3-msgpack is needed.

flood      one connection pipelining `ping` as fast as the socket takes them,
           reading (and discarding) the answers; reconnects when kicked.
slowloris  N connections (default 50), each sending one byte per second into
           a message that never finishes; a connection the server closes or
           refuses is opened again on the next second.
bigview    10 sessions of 16 ships each, spread over the world, subscribed at
           radius 20000, each calling `resync` 20 times a second and reading
           everything (the bytes are counted, not decoded).
stats      calls `stats` every 0.5 s: dilation min and mean, kicks.
settle     returns once the server's dilation is >= 0.95 twice in a row (or
           after SECONDS): the next condition does not start in the wake of
           the last one.
"""
import json
import random
import select
import socket
import sys
import time

import msgpack

HOST = "127.0.0.1"


def connect(port, src=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.connect((HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Rpc:
    """Blocking request/response on one socket (set-up only)."""

    def __init__(self, port, src=None):
        self.sock = connect(port, src)
        self.up = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
        self.msgid = 0

    def call(self, method, *params, timeout=10.0):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(params)]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.up:
                if m[0] == 1 and m[1] == self.msgid:
                    if m[2] is not None:
                        raise RuntimeError("%s: %s" % (method, m[2]))
                    return m[3]
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(1 << 20)
            if not data:
                raise RuntimeError("%s: connection closed" % method)
            self.up.feed(data)
        raise RuntimeError("%s: no answer" % method)


def flood(port, secs, src):
    end = time.monotonic() + secs
    batch = msgpack.packb([0, 7, "ping", []]) * 2000
    sent = answers_bytes = kicks = 0
    while time.monotonic() < end:
        try:
            s = connect(port, src)
        except OSError:
            time.sleep(0.05)
            continue
        s.setblocking(False)
        off = 0
        try:
            while time.monotonic() < end:
                r, w, _ = select.select([s], [s], [], 0.1)
                if w:
                    try:
                        n = s.send(batch[off:])
                        sent += n
                        off = (off + n) % len(batch)
                    except BlockingIOError:
                        pass
                if r:
                    data = s.recv(1 << 20)
                    if not data:
                        raise ConnectionResetError
                    answers_bytes += len(data)
        except (ConnectionResetError, BrokenPipeError, OSError):
            kicks += 1
        finally:
            s.close()
    pings = sent // len(msgpack.packb([0, 7, "ping", []]))
    return {"attack": "flood", "pings_sent": pings, "answer_bytes": answers_bytes, "disconnects": kicks}


def slowloris(port, secs, src, conns):
    end = time.monotonic() + secs
    head = bytes([0x94, 0x00, 0x01, 0xDA, 0xEA, 0x60])  # [0, 1, <str16 of 60000>, ...: never finished
    socks = {}
    opened = cut = refused = 0

    def open_one(i):
        nonlocal opened, refused
        try:
            s = connect(port, src)
            s.sendall(head)
            s.setblocking(False)
            socks[i] = s
            opened += 1
        except OSError:
            refused += 1

    for i in range(conns):
        open_one(i)
    next_byte = time.monotonic() + 1.0
    while time.monotonic() < end:
        live = list(socks.values())
        r, _, _ = select.select(live, [], [], max(0.0, min(next_byte, end) - time.monotonic())) if live else ([], [], [])
        for s in r:  # an error notification, or EOF: the server cut it
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                for i, t in list(socks.items()):
                    if t is s:
                        del socks[i]
                        s.close()
                        cut += 1
        if not live:
            time.sleep(0.05)
        if time.monotonic() >= next_byte:
            next_byte += 1.0
            for i, s in list(socks.items()):
                try:
                    s.send(b"x")
                except OSError:
                    del socks[i]
                    s.close()
                    cut += 1
            # Slots the server cut or refused are opened again once a
            # second (a slowloris, not a connection flood).
            for i in range(conns):
                if i not in socks and time.monotonic() < end:
                    open_one(i)
    for s in socks.values():
        s.close()
    return {"attack": "slowloris", "conns": conns, "opened": opened, "cut_by_server": cut, "connect_failed": refused}


def bigview(port, secs, src, world):
    end = time.monotonic() + secs
    rng = random.Random(7)
    sessions = []
    for k in range(10):
        c = Rpc(port, src)
        c.call("hello", "bigview%d" % k, None)
        for _ in range(16):
            h = world / 2 * 0.95
            c.call("spawn", [rng.uniform(-h, h), rng.uniform(-h, h), rng.uniform(-h, h)])
        c.call("subscribe", 20000)
        c.sock.setblocking(False)
        sessions.append(c)
    resync = msgpack.packb([0, 1, "resync", []])
    got = resyncs = 0
    t0 = time.monotonic()
    next_resync = t0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_resync:
            next_resync += 0.05
            for c in sessions:
                try:
                    c.sock.send(resync)
                    resyncs += 1
                except (BlockingIOError, OSError):
                    pass
        r, _, _ = select.select([c.sock for c in sessions], [], [], max(0.0, next_resync - time.monotonic()))
        for s in r:
            try:
                data = s.recv(4 << 20)
            except (BlockingIOError, OSError):
                continue
            got += len(data)
    for c in sessions:
        c.sock.close()
    dt = time.monotonic() - t0
    return {"attack": "bigview", "sessions": 10, "ships": 160, "resyncs": resyncs, "mb_per_s_read": got / dt / 1e6}


def stats(port, secs):
    end = time.monotonic() + secs
    c = Rpc(port)
    c.call("hello", "abuse-stats", None)
    dil = []
    last = {}
    time.sleep(0.5)  # the first figure would cover the quiet second before the attack settled
    while time.monotonic() < end:
        st = c.call("stats")
        dil.append(st["dilation"])
        last = st
        time.sleep(0.5)
    c.sock.close()
    return {"dilation_min": min(dil) if dil else None, "dilation_mean": sum(dil) / len(dil) if dil else None,
            "samples": len(dil), "kicks": last.get("kicks"), "rate_kicks": last.get("rate_kicks"),
            "clients": last.get("clients"), "bytes_out_per_sec": last.get("bytes_out_per_sec")}


def settle(port, secs):
    """Wait (at most secs) until the server's dilation is >= 0.95 twice in a row."""
    end = time.monotonic() + secs
    c = Rpc(port)
    c.call("hello", "abuse-settle", None)
    good, waited = 0, time.monotonic()
    while good < 2 and time.monotonic() < end:
        time.sleep(0.5)
        good = good + 1 if c.call("stats")["dilation"] >= 0.95 else 0
    c.sock.close()
    return {"settled": good >= 2, "waited_s": round(time.monotonic() - waited, 1)}


def main(argv):
    if len(argv) < 4 or argv[1] not in ("flood", "slowloris", "bigview", "stats", "settle"):
        sys.stderr.write(__doc__)
        return 2
    mode, port, secs = argv[1], int(argv[2]), float(argv[3])
    opts = dict(zip(argv[4::2], argv[5::2]))
    src = opts.get("--from")
    if mode == "flood":
        out = flood(port, secs, src)
    elif mode == "slowloris":
        out = slowloris(port, secs, src, int(opts.get("--conns", "50")))
    elif mode == "bigview":
        out = bigview(port, secs, src, float(opts.get("--world-size", "10000")))
    elif mode == "settle":
        out = settle(port, secs)
    else:
        out = stats(port, secs)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

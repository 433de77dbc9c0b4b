#!/usr/bin/python3
"""Watch a spacesimd server and print alerts.

Prints every SystemAlert (admin `alert` or server overload warnings) and
ShipDestroyed event as it arrives, plus alerts of its own: a snapshot gap
longer than --gap-ms (the server or the network stalled), a desync, a sharp
drop in the number of visible entities, and (with an admin or any session)
the server's tick p99 above --tick-ms, checked every 5 s with `stats`.

    PYTHONPATH=clients/python /usr/bin/python3 clients/python/examples/watch_alerts.py --port 7777

Runs until Ctrl-C, or for --duration seconds. Exit status 0, 1 when the
connection failed or was lost.
"""

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import spacesim  # noqa: E402


def say(kind, text):
    print("%s %-8s %s" % (time.strftime("%H:%M:%S"), kind, text), flush=True)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("SPACESIM_PORT", 7777)))
    ap.add_argument("--radius", type=float, default=None, help="area of interest (default: server's)")
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--gap-ms", type=float, default=250.0, help="alert when snapshots stop this long")
    ap.add_argument("--tick-ms", type=float, default=16.0, help="alert when the server's tick p99 exceeds this")
    args = ap.parse_args()
    if args.duration is not None and not 0 < args.duration <= 86400:
        ap.error("--duration must be in (0, 86400]")
    try:
        c = await spacesim.Client.connect(args.host, args.port)
    except (OSError, asyncio.TimeoutError) as e:
        print("watch_alerts: cannot connect to %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 1
    info = await c.hello("watch-alerts", os.environ.get("SPACESIM_ADMIN_TOKEN") or None)
    if args.radius:
        await c.subscribe(args.radius)
    say("START", "session %s on %s:%d (admin: %s)" % (info["session"], args.host, args.port, info["admin"]))
    end = time.monotonic() + args.duration if args.duration else None
    last_snap, last_count, next_stats = time.monotonic(), None, time.monotonic() + 5
    desyncs = 0
    status = 0
    try:
        while end is None or time.monotonic() < end:
            try:
                item = await c.next_item(timeout=0.1)
            except asyncio.TimeoutError:
                item = False
            if item is None:
                say("CLOSED", "the server closed the connection")
                status = 1
                break
            now = time.monotonic()
            if isinstance(item, spacesim.SnapshotInfo):
                gap = (now - last_snap) * 1e3
                if last_count is not None and gap > args.gap_ms:
                    say("STALL", "no snapshot for %.0f ms (tick %d)" % (gap, item.tick))
                if last_count and item.count < last_count * 0.5:
                    say("DROP", "visible entities fell from %d to %d" % (last_count, item.count))
                last_snap, last_count = now, item.count
            elif isinstance(item, spacesim.Event):
                if item.type == "SystemAlert":
                    frm = item.get("from")
                    who = "server" if not frm else "session %s" % frm
                    say("ALERT", "[p%s from %s] %s" % (item.get("priority"), who, item.get("message")))
                elif item.type == "ShipDestroyed":
                    say("DESTROY", "ship %s (owner %s) destroyed by %s (%s)" % (
                        item.get("ship_id"), item.get("owner") or "NPC", item.get("by") or "?",
                        item.get("cause", "?")))
            if c.desyncs + c.malformed > desyncs:
                desyncs = c.desyncs + c.malformed
                say("DESYNC", "snapshot desync or malformed (%d so far), resyncing" % desyncs)
            if now >= next_stats:
                next_stats = now + 5
                st = await c.stats()
                p99 = st.get("tick_p99_ms", st.get("tick_ms_p99"))
                if p99 is not None and p99 > args.tick_ms:
                    say("SLOW", "server tick p99 %.1f ms > %.1f ms (dilation %s)" % (p99, args.tick_ms,
                                                                                     st.get("dilation")))
    except spacesim.ConnectionClosed as e:
        say("CLOSED", str(e))
        status = 1
    finally:
        say("END", "%d snapshots, %d desyncs, %d bytes" % (c.snapshots, c.desyncs + c.malformed, c.bytes_in))
        await c.close()
    return status


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(0)

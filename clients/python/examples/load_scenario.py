#!/usr/bin/python3
"""A scripted load scenario: N bots that patrol, fight and mine.

Each bot connects, says hello, spawns a ship and, until the time is up,
patrols between random waypoints, fires at the nearest other ship when one is
within weapon range, and mines the nearest asteroid when it is close. Every
request's round-trip time is recorded per method; at the end the script
prints p50/p90/p99/max per method and the snapshot rate per bot.

    PYTHONPATH=clients/python /usr/bin/python3 clients/python/examples/load_scenario.py \\
        --port 7777 --bots 20 --duration 30

Bounded: --bots <= 1000, --duration <= 3600. Exit status 0, or 1 when no bot
could connect or a bot hit an unexpected error.
"""

import argparse
import asyncio
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import spacesim  # noqa: E402

GAME_OUTCOMES = {"OUT_OF_RANGE", "COOLDOWN", "NOT_FOUND"}
FIRE_RANGE = 150.0
MINE_RANGE = 40.0


class Stats:
    def __init__(self):
        self.rtt = {}           # method -> [seconds]
        self.outcomes = {}      # "fire:COOLDOWN" -> n
        self.errors = []
        self.snap_rates = []

    def timed(self, method, coro):
        async def run():
            t = time.perf_counter()
            try:
                return await coro
            except spacesim.RpcError as e:
                key = "%s:%s" % (method, e.name)
                self.outcomes[key] = self.outcomes.get(key, 0) + 1
                if e.name not in GAME_OUTCOMES:
                    self.errors.append(str(e))
                return None
            finally:
                self.rtt.setdefault(method, []).append(time.perf_counter() - t)
        return run()


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


async def bot(i, args, stats, deadline):
    rnd = random.Random(args.seed * 1000 + i)
    try:
        c = await spacesim.Client.connect(args.host, args.port, timeout=5)
    except (OSError, asyncio.TimeoutError) as e:
        stats.errors.append("bot %d: cannot connect: %s" % (i, e))
        return
    try:
        await stats.timed("hello", c.hello("bot-%d" % i))
        ship = await stats.timed("spawn", c.spawn())
        if ship is None:
            return
        t0, snaps0 = time.monotonic(), c.snapshots
        waypoint = [rnd.uniform(-500, 500) for _ in range(3)]
        while time.monotonic() < deadline:
            me = c.world.get(ship)
            if me is not None:
                pos = me.pos
                d = [w - p for w, p in zip(waypoint, pos)]
                dist = math.sqrt(sum(x * x for x in d))
                if dist < 20:                                   # patrol: next waypoint
                    waypoint = [p + rnd.uniform(-300, 300) for p in pos]
                foe = c.world.nearest(pos, spacesim.SHIP, exclude={s.id for s in c.my_ships()})
                rock = c.world.nearest(pos, spacesim.ASTEROID)
                if foe is not None and math.dist(foe.pos, pos) < FIRE_RANGE:
                    await stats.timed("fire", c.fire(ship, foe.id))
                elif rock is not None and math.dist(rock.pos, pos) < MINE_RANGE + rock.radius:
                    await stats.timed("mine", c.mine(ship, rock.id))
                else:
                    speed = 15.0
                    v = [x / dist * speed for x in d] if dist > 0 else [0, 0, 0]
                    await stats.timed("move", c.move(ship, v))
            else:
                await stats.timed("ping", c.ping())
            await asyncio.sleep(1.0 / args.rate)
        elapsed = time.monotonic() - t0
        if elapsed > 0:
            stats.snap_rates.append((c.snapshots - snaps0) / elapsed)
    except spacesim.ConnectionClosed as e:
        stats.errors.append("bot %d: %s" % (i, e))
    finally:
        await c.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("SPACESIM_PORT", 7777)))
    ap.add_argument("--bots", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    ap.add_argument("--rate", type=float, default=5.0, help="actions per bot per second (default 5)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not 1 <= args.bots <= 1000:
        ap.error("--bots must be 1..1000")
    if not 0 < args.duration <= 3600:
        ap.error("--duration must be in (0, 3600] seconds")
    if not 0 < args.rate <= 100:
        ap.error("--rate must be in (0, 100]")
    stats = Stats()
    deadline = time.monotonic() + args.duration
    await asyncio.gather(*(bot(i, args, stats, deadline) for i in range(args.bots)))
    print("%d bots, %.1f s against %s:%d" % (args.bots, args.duration, args.host, args.port))
    print("%-8s %7s %9s %9s %9s %9s" % ("method", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"))
    for m in sorted(stats.rtt):
        v = sorted(stats.rtt[m])
        print("%-8s %7d %9.2f %9.2f %9.2f %9.2f" % (m, len(v), pct(v, 50) * 1e3, pct(v, 90) * 1e3,
                                                    pct(v, 99) * 1e3, v[-1] * 1e3))
    if stats.snap_rates:
        r = sorted(stats.snap_rates)
        print("snapshots per bot per second: min %.1f, median %.1f" % (r[0], r[len(r) // 2]))
    if stats.outcomes:
        print("game outcomes: " + ", ".join("%s=%d" % kv for kv in sorted(stats.outcomes.items())))
    for e in stats.errors[:10]:
        print("error: " + e, file=sys.stderr)
    ok = "hello" in stats.rtt and not stats.errors
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)

"""The Python client against a real spacesimd (started by tests/python/run.sh).

SPACESIM_PORT is the daemon's port, SPACESIM_ADMIN_TOKEN its admin token.
Every test makes its own connections; the daemon is shared.

Every test waits for the condition it needs (its ship in view, the world
past a tick), never for "the next snapshot": the client queues every
snapshot it reads, so the next one may predate the request just made
(issue 7, point 10). Waits have deadlines scaled by CK_TIMEOUT_MULTIPLIER."""

import asyncio
import os
import subprocess
import sys
import unittest

import spacesim
from spacesim import protocol as P

PORT = int(os.environ.get("SPACESIM_PORT", "0"))
TOKEN = os.environ.get("SPACESIM_ADMIN_TOKEN")
HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("SPACESIM_SRCDIR", os.path.join(HERE, "..", ".."))
EXAMPLES = os.path.join(SRCDIR, "clients", "python", "examples")
SCALE = float(os.environ.get("CK_TIMEOUT_MULTIPLIER", "1") or "1")
WAIT = 10 * SCALE                    # seconds a condition may take to hold


class DaemonTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.assertTrue(PORT, "SPACESIM_PORT is not set: run tests/python/run.sh")
        self.clients = []

    async def asyncTearDown(self):
        for c in self.clients:
            await c.close()

    async def connect(self, name=None, token=None):
        c = await spacesim.Client.connect("127.0.0.1", PORT, timeout=5)
        self.clients.append(c)
        if name:
            await c.hello(name, token)
        return c

    async def wait_world(self, c, pred, what, timeout=WAIT):
        """Apply c's snapshots until pred(c.world) holds (checked first as
        it is); fail naming `what` after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred(c.world):
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                await c.next_snapshot(timeout=left)
            except asyncio.TimeoutError:
                self.fail("timed out after %.0f s waiting for %s" % (timeout, what))

    async def past_server_tick(self, c, what):
        """Wait until c's view is from a tick after the server's current one
        (so it reflects every request c made before this call)."""
        tick = (await c.ping())["tick"]
        await self.wait_world(c, lambda w: w.tick is not None and w.tick > tick, what)

    async def assertRpcError(self, name, coro):
        with self.assertRaises(spacesim.RpcError) as cm:
            await coro
        self.assertEqual(cm.exception.name, name, str(cm.exception))
        self.assertEqual(cm.exception.code, P.ERROR_CODES[name])
        return cm.exception


class TestRequests(DaemonTest):
    async def test_ping_before_hello_returns_tick_and_clock(self):
        c = await self.connect()
        r = await c.ping()
        self.assertIsInstance(r["tick"], int)
        self.assertGreater(r["server_time_ns"], 0)

    async def test_hello_returns_session_protocol_and_rates(self):
        c = await self.connect()
        r = await c.hello("py-hello")
        self.assertGreaterEqual(r["session"], 1)
        self.assertEqual(r["protocol"], spacesim.PROTOCOL_VERSION)
        self.assertGreater(r["tick_hz"], 0)
        self.assertGreater(r["snapshot_hz"], 0)
        self.assertIs(r["admin"], False)
        self.assertEqual(c.session, r["session"])

    async def test_spawn_before_hello_is_not_authenticated(self):
        c = await self.connect()
        await self.assertRpcError("NOT_AUTHENTICATED", c.spawn())

    async def test_unknown_method_is_method_not_found_with_message(self):
        c = await self.connect("py-unknown")
        e = await self.assertRpcError("METHOD_NOT_FOUND", c.call("warp_drive"))
        self.assertIn("warp_drive", e.message)

    async def test_move_sets_velocity_seen_by_inspect(self):
        c = await self.connect("py-move")
        ship = await c.spawn()
        self.assertIs(await c.move(ship, (10, 0, 0)), True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:                               # the autopilot accelerates over ticks
            r = await c.inspect(ship)
            vx = r["vel"][0]
            if vx > 1.0 or loop.time() > deadline:
                break
            await self.past_server_tick(c, "a tick to pass")   # paced by the world, not a sleep
        self.assertGreater(vx, 1.0)
        self.assertEqual(r["kind"], "ship")
        self.assertEqual(r["owner"], c.session)
        self.assertEqual(set(r["cargo"]), set(spacesim.RESOURCES))

    async def test_commanding_another_sessions_ship_is_forbidden(self):
        a = await self.connect("py-owner")
        b = await self.connect("py-thief")
        ship = await a.spawn()
        await self.assertRpcError("FORBIDDEN", b.move(ship, (1, 0, 0)))

    async def test_inspect_of_a_missing_entity_is_not_found(self):
        c = await self.connect("py-inspect")
        await self.assertRpcError("NOT_FOUND", c.inspect((0x7FFFFFFF << 32) | 12345))

    async def test_stats_has_tick_entities_clients(self):
        c = await self.connect("py-stats")
        st = await c.stats()
        for key in ("tick", "entities", "clients", "overruns", "dilation", "snapshots_sent"):
            self.assertIn(key, st)
        self.assertGreaterEqual(st["clients"], 1)
        self.assertGreater(st["entities"], 0)

    async def test_alert_without_admin_token_is_forbidden(self):
        c = await self.connect("py-noadmin")
        await self.assertRpcError("FORBIDDEN", c.alert("not allowed", 1))

    async def test_fire_and_mine_answer_a_result_or_a_game_error(self):
        c = await self.connect("py-fight")
        ship = await c.spawn()
        # Not "the next snapshot": the first one queued can predate the spawn.
        await self.wait_world(c, lambda w: w.get(ship) is not None, "the own ship in view")
        await self.wait_world(c, lambda w: w.nearest(w.get(ship).pos, spacesim.ASTEROID) is not None,
                              "an asteroid in view")
        me = c.world.get(ship)
        foe = c.world.nearest(me.pos, spacesim.SHIP, exclude={ship})
        rock = c.world.nearest(me.pos, spacesim.ASTEROID)
        outcomes = {"OUT_OF_RANGE", "COOLDOWN", "NOT_FOUND"}
        if foe is not None:
            try:
                r = await c.fire(ship, foe.id)
                self.assertIsInstance(r["hit"], bool)
            except spacesim.RpcError as e:
                self.assertIn(e.name, outcomes)
        try:
            r = await c.mine(ship, rock.id)
            self.assertIn(r["resource_type"], spacesim.RESOURCES)
        except spacesim.RpcError as e:
            self.assertIn(e.name, outcomes)


class TestSnapshots(DaemonTest):
    async def test_first_snapshot_is_full_then_deltas_without_desync(self):
        c = await self.connect("py-snap")
        first = await c.next_snapshot(timeout=WAIT)   # the first one sent: nothing can precede it
        self.assertTrue(first.full)
        self.assertEqual(first.entered, first.count)
        for _ in range(5):
            s = await c.next_snapshot(timeout=WAIT)
            self.assertFalse(s.full)
            self.assertGreater(s.tick, s.base_tick)
        # c.world may already hold newer snapshots than s (the queue lags the
        # reader), so counts are checked by World.apply itself: a mismatch
        # would be counted in c.malformed.
        self.assertEqual((c.desyncs, c.malformed), (0, 0))

    async def test_own_ship_appears_in_world_near_its_inspected_position(self):
        c = await self.connect("py-see")
        ship = await c.spawn()
        await self.wait_world(c, lambda w: w.get(ship) is not None, "the own ship in view")
        e = c.world.get(ship)
        self.assertEqual(e.owner, c.session)
        self.assertEqual(e.kind, spacesim.SHIP)
        r = await c.inspect(ship)
        for a, b in zip(e.pos, r["pos"]):
            self.assertAlmostEqual(a, b, delta=5.0)     # one snapshot period of drift at most
        self.assertEqual([s.id for s in c.my_ships()], [ship])

    async def test_moving_ship_moves_in_snapshots(self):
        c = await self.connect("py-mover")
        ship = await c.spawn()
        await self.wait_world(c, lambda w: w.get(ship) is not None, "the own ship in view")
        x0 = c.world.get(ship).pos[0]
        await c.move(ship, (20, 0, 0))
        await self.wait_world(c, lambda w: w.get(ship).pos[0] > x0 + 2, "the ship moving along x")
        self.assertGreater(c.world.get(ship).pos[0], x0 + 2)

    async def test_small_subscribe_radius_shrinks_the_view(self):
        c = await self.connect("py-radius")
        await c.subscribe(5000)
        await self.past_server_tick(c, "a view after subscribe(5000)")
        wide = len(c.world)
        await c.subscribe(50, (0, 0, 0))
        await self.past_server_tick(c, "a view after subscribe(50)")
        self.assertLess(len(c.world), wide)
        # Protocol 2 sends whole interest cells (those the sphere reaches):
        # an entity may be up to one cell diagonal beyond the radius.
        reach = 50 + c.world.interest_cell * 3 ** 0.5
        for e in c.world:
            self.assertLessEqual(sum(v * v for v in e.pos) ** 0.5, reach + 1)

    async def test_admin_alert_reaches_another_client_as_system_alert(self):
        self.assertTrue(TOKEN, "SPACESIM_ADMIN_TOKEN not set by run.sh")
        admin = await self.connect("py-admin", TOKEN)
        self.assertTrue(admin.admin)
        other = await self.connect("py-listener")
        await other.next_snapshot(timeout=WAIT)           # connection registered: it gets snapshots
        self.assertIs(await admin.alert("solar storm ahead", 2), True)
        ev = await other.next_event("SystemAlert", timeout=WAIT)
        self.assertEqual(ev["message"], "solar storm ahead")
        self.assertEqual(ev["priority"], 2)


class TestExamples(unittest.TestCase):
    def run_example(self, *args):
        env = dict(os.environ, PYTHONPATH=os.path.join(SRCDIR, "clients", "python"))
        return subprocess.run([sys.executable, os.path.join(EXAMPLES, args[0])] + list(args[1:]),
                              capture_output=True, text=True, timeout=60, env=env)

    def test_load_scenario_reports_percentiles_and_exits_0(self):
        r = self.run_example("load_scenario.py", "--port", str(PORT), "--bots", "3", "--duration", "2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("p99 ms", r.stdout)
        self.assertRegex(r.stdout, r"\nmove +\d+")
        self.assertRegex(r.stdout, r"snapshots per bot per second: min [1-9]")

    def test_load_scenario_refuses_absurd_bot_count(self):
        r = self.run_example("load_scenario.py", "--port", str(PORT), "--bots", "100000")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--bots must be", r.stderr)

    def test_watch_alerts_runs_for_its_duration(self):
        r = self.run_example("watch_alerts.py", "--port", str(PORT), "--duration", "1.5")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("START", r.stdout)
        self.assertRegex(r.stdout, r"END +[1-9]\d* snapshots, 0 desyncs")


if __name__ == "__main__":
    unittest.main()

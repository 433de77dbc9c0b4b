"""Snapshot decoding of the Python client against proto/PROTOCOL.md (no daemon needed):
protocol 2 (per-cell chunks, issue 9) on hand-built messages, and protocol 1
(the worked example of the old format, still decoded for older daemons)."""

import asyncio
import os
import re
import unittest

import spacesim
from spacesim import protocol as P
from spacesim.world import World, Desync, MalformedSnapshot

SRCDIR = os.environ.get("SPACESIM_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))

ID5, ID9, ID12, ID14 = (1 << 32) | 5, (1 << 32) | 9, (1 << 32) | 12, (1 << 32) | 14

# The worked example of PROTOCOL.md, "Snapshots".
FULL_300 = [300, None,
            [ID5, 1, 1600, -160, 0, 64, 0, 0, 1600, 3, 32,
             4, 2, 3200, 0, 0, 0, 0, 0, 1600, 0, 32,
             3, 2, 0, 0, 800, 0, 0, 0, 1600, 0, 32],
            [], [], 3]
DELTA_303 = [303, 300,
             [ID14, 3, 16, 0, 0, 6400, 0, 0, 16, 3, 2],
             [ID5, 87,
              7, -3, 0, 0, 40, 0, 0, 20],
             [ID9],
             3]


def snapshot_of(world):
    return {e.id: (e.kind, e.qpos, e.qvel, e.qhp, e.owner, e.qradius) for e in world}


class TestWorkedExample(unittest.TestCase):
    def test_full_snapshot_builds_three_entities_in_world_units(self):
        w = World(protocol=1)
        info = w.apply(FULL_300)
        self.assertTrue(info.full)
        self.assertEqual((info.tick, info.entered, info.count), (300, 3, 3))
        ship = w.get(ID5)
        self.assertEqual(ship.kind_name, "ship")
        self.assertEqual(ship.pos, (100.0, -10.0, 0.0))
        self.assertEqual(ship.vel, (1.0, 0.0, 0.0))
        self.assertEqual((ship.hp, ship.owner, ship.radius), (100.0, 3, 2.0))
        self.assertEqual(w.get(ID9).pos, (200.0, 0.0, 0.0))
        self.assertEqual(w.get(ID12).pos, (0.0, 0.0, 50.0))

    def test_delta_applies_small_move_mask_entered_and_left(self):
        w = World(protocol=1)
        w.apply(FULL_300)
        info = w.apply(DELTA_303)
        self.assertEqual((info.tick, info.base_tick, info.entered, info.changed, info.left, info.count),
                         (303, 300, 1, 2, 1, 3))
        self.assertEqual(w.tick, 303)
        self.assertEqual(sorted(w.entities), [ID5, ID12, ID14])
        self.assertEqual(w.get(ID5).qpos, (1601, -160, 0))        # op 87: dx=+1
        self.assertEqual(w.get(ID12).qpos, (0, 0, 840))           # mask 3: pos +40
        self.assertEqual(w.get(ID12).qvel, (0, 0, 20))            # vel +20
        self.assertEqual(w.get(ID14).kind, P.PROJECTILE)
        self.assertEqual(w.get(ID14).vel, (100.0, 0.0, 0.0))

    def test_small_move_ops_cover_every_offset_in_range(self):
        seen = set()
        for op in range(125):
            w = World(protocol=1)
            w.apply([1, None, [7, 2, 0, 0, 0, 0, 0, 0, 16, 0, 16], [], [], 1])
            w.apply([2, 1, [], [7, op], [], 1])
            d = w.get(7).qpos
            self.assertTrue(all(-2 <= x <= 2 for x in d), (op, d))
            self.assertEqual(op, (d[0] + 2) * 25 + (d[1] + 2) * 5 + (d[2] + 2))
            seen.add(d)
        self.assertEqual(len(seen), 125)

    def test_mask_hp_owner_radius(self):
        w = World(protocol=1)
        w.apply([1, None, [7, 1, 0, 0, 0, 0, 0, 0, 1600, 0, 32], [], [], 1])
        w.apply([2, 1, [], [7, -28, -160, 9, 48], [], 1])           # mask 4|8|16
        e = w.get(7)
        self.assertEqual((e.qhp, e.owner, e.qradius), (1440, 9, 48))


class TestRejects(unittest.TestCase):
    def setUp(self):
        self.w = World(protocol=1)
        self.w.apply(FULL_300)
        self.before = snapshot_of(self.w)

    def assertUnchanged(self):
        self.assertEqual(self.w.tick, 300)
        self.assertEqual(snapshot_of(self.w), self.before)

    def test_delta_with_other_base_tick_is_desync_and_keeps_view(self):
        with self.assertRaises(Desync):
            self.w.apply([305, 301, [], [ID5, 87], [], 3])
        self.assertUnchanged()

    def test_delta_before_any_full_snapshot_is_desync(self):
        with self.assertRaises(Desync):
            World(protocol=1).apply(DELTA_303)

    def test_malformed_snapshots_leave_view_unchanged(self):
        bad = [
            [303, 300, [], [ID5, 125], [], 3],                      # op out of range
            [303, 300, [], [ID5, -32, 0], [], 3],                   # mask out of range
            [303, 300, [], [ID5, 87], [], 4],                       # count mismatch
            [303, 300, [], [], [ID14], 2],                          # left id not in view
            [303, 300, [ID5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [], [], 4],  # entered twice
            [303, 300, [], [ID5, -1, 5], [], 3],                    # values cut short
            [303, 300, [], [ID9, 87, 0, 87], [], 3],                # ids not ascending
            [303, 300, [1, 2, 3], [], [], 3],                       # entered not 11 ints
            [303, 300, [], [ID5, 1.5], [], 3],                      # float op
            [303, 300, [], []],                                     # too short
        ]
        for b in bad:
            with self.assertRaises(MalformedSnapshot, msg=repr(b)):
                self.w.apply(b)
            self.assertUnchanged()


def ent(d, kind=2, pos=(0, 0, 0), vel=(0, 0, 0), hp=1600, owner=0, radius=32):
    """One entered record (11 ints) with id delta d."""
    return [d, kind, pos[0], pos[1], pos[2], vel[0], vel[1], vel[2], hp, owner, radius]


def cat(*recs):
    return [x for r in recs for x in r]


# Protocol 2: cells 3 and 10 seen at tick 100. Cell 3 holds ids 5, 9; cell 10 holds 12.
P2_FULL = [100, None,
           [[3, None, cat(ent(5, 1, (16, 32, 48), (64, 0, 0), 1600, 7, 32), ent(4, 2, (100, 0, 0))), [], [], 2],
            [10, None, ent(12, 3, (0, 0, 800), (0, 0, 640), 16, 7, 2), [], [], 1]],
           [], 3]


def state(w):
    """Everything the view holds, by value: tick, cells and the flat index."""
    cells = {c: {i: (e.kind, e.qpos, e.qvel, e.qhp, e.owner, e.qradius) for i, e in ents.items()}
             for c, ents in w.cells.items()}
    flat = {i: (e.kind, e.qpos, e.qvel, e.qhp, e.owner, e.qradius) for i, e in w.entities.items()}
    return w.tick, cells, flat


class TestProtocol2Cells(unittest.TestCase):
    def setUp(self):
        self.w = World(protocol=2)
        self.info = self.w.apply(P2_FULL)

    def test_full_snapshot_builds_cells_and_the_flat_index(self):
        i = self.info
        self.assertTrue(i.full)
        self.assertEqual((i.tick, i.entered, i.count, i.chunks, i.full_cells, i.gone), (100, 3, 3, 2, 2, 0))
        self.assertEqual(sorted(self.w.cells), [3, 10])
        self.assertEqual(sorted(self.w.cells[3]), [5, 9])
        self.assertEqual(sorted(self.w.entities), [5, 9, 12])
        self.assertEqual(len(self.w), 3)
        ship = self.w.get(5)
        self.assertEqual((ship.kind_name, ship.pos, ship.vel, ship.hp, ship.owner, ship.radius),
                         ("ship", (1.0, 2.0, 3.0), (1.0, 0.0, 0.0), 100.0, 7, 2.0))
        self.assertEqual(self.w.get(9).pos, (6.25, 0.0, 0.0))
        self.assertIs(self.w.get(12), self.w.cells[10][12])

    def test_delta_chunk_applies_every_list_kind_and_leaves_other_cells_alone(self):
        cell10 = self.w.cells[10]
        rec12 = cell10[12]
        info = self.w.apply([101, 100,
                             [[3, 100, ent(20, 2, (1, 2, 3)),                 # entered 20
                               [5, 87,                                        # 5: small move dx=+1
                                4, -31, 1, 2, 3, 4, 5, 6, -160, 9, 48],       # 9: every field
                               [5], 2]],                                      # left 5
                             [], 3])
        self.assertEqual((info.tick, info.base_tick, info.entered, info.changed, info.left, info.chunks,
                          info.full_cells, info.count), (101, 100, 1, 2, 1, 1, 0, 3))
        self.assertEqual(sorted(self.w.cells[3]), [9, 20])
        self.assertEqual(sorted(self.w.entities), [9, 12, 20])
        e9 = self.w.get(9)
        self.assertEqual((e9.qpos, e9.qvel, e9.qhp, e9.owner, e9.qradius), ((101, 2, 3), (4, 5, 6), 1440, 9, 48))
        self.assertEqual(self.w.get(20).qpos, (1, 2, 3))
        # A cell the snapshot does not name is untouched: the very same objects.
        self.assertIs(self.w.cells[10], cell10)
        self.assertIs(self.w.get(12), rec12)
        self.assertEqual(self.w.tick, 101)

    def test_small_move_ops_cover_every_offset_in_a_cell(self):
        seen = set()
        for op in range(125):
            w = World(protocol=2)
            w.apply([1, None, [[0, None, ent(7), [], [], 1]], [], 1])
            w.apply([2, 1, [[0, 1, [], [7, op], [], 1]], [], 1])
            d = w.get(7).qpos
            self.assertEqual(op, (d[0] + 2) * 25 + (d[1] + 2) * 5 + (d[2] + 2))
            seen.add(d)
        self.assertEqual(len(seen), 125)

    def test_full_chunk_in_a_delta_replaces_that_cell_and_adds_new_cells(self):
        info = self.w.apply([101, 100,
                             [[3, None, ent(9, 2, (7, 7, 7)), [], [], 1],     # cell 3 replaced: 5 forgotten
                              [4, None, ent(30), [], [], 1]],                 # a newly seen cell
                             [], 3])
        self.assertEqual((info.full, info.full_cells, info.entered), (False, 2, 2))
        self.assertEqual(sorted(self.w.cells), [3, 4, 10])
        self.assertEqual(sorted(self.w.entities), [9, 12, 30])
        self.assertEqual(self.w.get(9).qpos, (7, 7, 7))
        self.assertIsNone(self.w.get(5))

    def test_gone_cells_forget_their_entities(self):
        info = self.w.apply([101, 100, [], [3], 1])
        self.assertEqual(info.gone, 1)
        self.assertEqual(sorted(self.w.cells), [10])
        self.assertEqual(sorted(self.w.entities), [12])
        # A gone cell the view does not hold is nothing to forget.
        self.w.apply([102, 101, [], [3, 99], 1])
        self.assertEqual(sorted(self.w.entities), [12])

    def test_entity_moving_between_cells_is_left_in_one_and_entered_in_the_other(self):
        self.w.apply([101, 100,
                      [[3, 100, [], [], [5], 1],
                       [10, 100, ent(5, 1, (16, 32, 2000), (64, 0, 0), 1600, 7, 32), [], [], 2]],
                      [], 3])
        self.assertEqual(sorted(self.w.cells[3]), [9])
        self.assertEqual(sorted(self.w.cells[10]), [5, 12])
        self.assertEqual(self.w.get(5).qpos, (16, 32, 2000))
        # ... and the other way round (the lower cell gains it): the index keeps it.
        self.w.apply([102, 101,
                      [[3, 101, ent(5), [], [], 2],
                       [10, 101, [], [], [5], 1]],
                      [], 3])
        self.assertEqual(sorted(self.w.cells[3]), [5, 9])
        self.assertEqual(sorted(self.w.entities), [5, 9, 12])

    def test_full_snapshot_clears_the_whole_view(self):
        self.w.apply([200, None, [[50, None, ent(77), [], [], 1]], [], 1])
        self.assertEqual(sorted(self.w.cells), [50])
        self.assertEqual(sorted(self.w.entities), [77])
        self.assertEqual(self.w.tick, 200)

    def test_later_versions_may_append_elements(self):
        self.w.apply([101, 100, [[10, 100, [], [12, 62], [], 1, "more"]], [], 3, {"extra": 1}])
        self.assertEqual(self.w.get(12).qpos, (0, 0, 800))   # op 62: no move
        self.assertEqual(self.w.tick, 101)

    def test_empty_delta_only_moves_the_tick(self):
        before = state(self.w)
        info = self.w.apply([101, 100, [], [], 3])
        self.assertEqual((info.chunks, info.entered, info.changed, info.left), (0, 0, 0, 0))
        self.assertEqual(state(self.w)[1:], before[1:])
        self.assertEqual(self.w.tick, 101)


class TestProtocol2Rejects(unittest.TestCase):
    def setUp(self):
        self.w = World(protocol=2)
        self.w.apply(P2_FULL)
        self.before = state(self.w)

    def assertUnchanged(self, what=""):
        self.assertEqual(state(self.w), self.before, what)

    def test_delta_against_another_tick_is_desync_and_keeps_view(self):
        with self.assertRaises(Desync):
            self.w.apply([102, 101, [[3, 101, [], [5, 87], [], 2]], [], 3])
        self.assertUnchanged()

    def test_delta_before_any_full_snapshot_is_desync(self):
        with self.assertRaises(Desync):
            World(protocol=2).apply([101, 100, [], [], 0])

    def test_malformed_snapshots_leave_view_unchanged(self):
        bad = [
            ("params too short", [101, 100, [], []]),
            ("params not an array", {"tick": 101}),
            ("chunks not an array", [101, 100, 5, [], 3]),
            ("gone not an array", [101, 100, [], None, 3]),
            ("float tick", [101.0, 100, [], [], 3]),
            ("count mismatch", [101, 100, [], [], 4]),
            ("count mismatch after gone", [101, 100, [], [3], 3]),
            ("gone not ascending", [101, 100, [], [10, 3], 0]),
            ("gone repeated", [101, 100, [], [3, 3], 1]),
            ("gone not an int", [101, 100, [], ["3"], 1]),
            ("chunk not an array", [101, 100, [7], [], 3]),
            ("chunk too short", [101, 100, [[3, 100, [], [], []]], [], 3]),
            ("chunks not ascending", [101, 100, [[10, 100, [], [], [], 1], [3, 100, [], [], [], 2]], [], 3]),
            ("chunk repeated", [101, 100, [[3, 100, [], [], [], 2], [3, 100, [], [], [], 2]], [], 3]),
            ("cell id not an int", [101, 100, [[3.0, 100, [], [], [], 2]], [], 3]),
            ("chunk base is not base_tick", [101, 100, [[3, 99, [], [], [], 2]], [], 3]),
            ("delta chunk in a full snapshot", [101, None, [[3, 100, [], [], [], 0]], [], 0]),
            ("chunk n mismatch", [101, 100, [[3, 100, [], [], [], 3]], [], 3]),
            ("changed id of another cell", [101, 100, [[3, 100, [], [12, 87], [], 2]], [], 3]),
            ("left id of another cell", [101, 100, [[10, 100, [], [], [5], 0]], [], 2]),
            ("entered id already in the cell", [101, 100, [[3, 100, ent(5), [], [], 3]], [], 4]),
            ("full chunk with a changed list", [101, 100, [[3, None, ent(5), [5, 87], [], 1]], [], 2]),
            ("full chunk with a left list", [101, 100, [[3, None, ent(5), [], [5], 0]], [], 1]),
            ("delta chunk for a gone cell", [101, 100, [[3, 100, [], [5, 87], [], 2]], [3], 3]),
            ("op out of range", [101, 100, [[3, 100, [], [5, 125], [], 2]], [], 3]),
            ("mask out of range", [101, 100, [[3, 100, [], [5, -32, 0], [], 2]], [], 3]),
            ("values cut short", [101, 100, [[3, 100, [], [5, -1, 5], [], 2]], [], 3]),
            ("changed ids not ascending", [101, 100, [[3, 100, [], [9, 87, 0, 87], [], 2]], [], 3]),
            ("entered not 11 ints", [101, 100, [[3, 100, [1, 2, 3], [], [], 3]], [], 4]),
            ("entered not ascending", [101, 100, [[4, None, cat(ent(7), ent(0)), [], [], 2]], [], 5]),
            ("float op", [101, 100, [[3, 100, [], [5, 1.5], [], 2]], [], 3]),
            ("lists not arrays", [101, 100, [[3, 100, None, [], [], 2]], [], 3]),
            # valid chunks before a bad one must not be half-applied
            ("bad last chunk", [101, 100, [[3, 100, [], [5, 87], [5], 1], [10, 100, [], [12, 200], [], 1]], [], 2]),
        ]
        for what, b in bad:
            with self.assertRaises(MalformedSnapshot, msg=what):
                self.w.apply(b)
            self.assertUnchanged(what)


def offline_client():
    """A Client with no connection (its queue wants a running loop to exist)."""
    async def make():
        return spacesim.Client(None, None)
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(make())
    finally:
        loop.close()


class TestClientFollowsTheDaemonsProtocol(unittest.TestCase):
    def test_hello_result_selects_the_snapshot_decoder(self):
        c = offline_client()
        c._set_protocol({"session": 1, "protocol": 2, "interest_cell": 1000.0, "cells_per_axis": 8})
        self.assertEqual((c.world.protocol, c.world.interest_cell, c.world.cells_per_axis), (2, 1000.0, 8))
        c.world.apply(P2_FULL)
        self.assertEqual(len(c.world), 3)
        c = offline_client()
        c._set_protocol({"session": 1, "protocol": 1})
        self.assertEqual(c.world.protocol, 1)
        c.world.apply(FULL_300)
        self.assertEqual(len(c.world), 3)


class TestConstantsMatchDefinitions(unittest.TestCase):
    """The package's constants come from proto/spacesim_proto.def and
    src/sim/kinds.h: if those change, this fails."""

    def read(self, rel):
        with open(os.path.join(SRCDIR, rel)) as f:
            return f.read()

    def test_methods_match_def(self):
        d = self.read("proto/spacesim_proto.def")
        names = re.findall(r'X\((\w+), \w+, "(\w+)", \d+, \d+, \d+, \d+, "[^"]*"\)', d)
        self.assertEqual(tuple(n for _, n in names), P.METHODS)

    def test_error_codes_match_def(self):
        d = self.read("proto/spacesim_proto.def")
        codes = {int(c): n for n, c in re.findall(r'X\((\w+), (\d+), "[^"]*"\)\s*\\?\n', d)
                 if n in P.ERROR_CODES or n.isupper()}
        errs = {c: n for c, n in codes.items() if n in P.ERROR_CODES}
        self.assertEqual(errs, P.ERRORS)
        self.assertEqual(len(P.ERRORS), 13)

    def test_limits_match_def(self):
        d = self.read("proto/spacesim_proto.def")
        block = d[d.index("#define SP_PROTO_LIMIT_MAP"):]
        block = block[:block.index("\n\n")]
        limits = {n: int(v) for n, v in re.findall(r"X\((\w+), (\d+),", block)}
        self.assertEqual(limits, P.LIMITS)

    def test_kinds_and_resources_match_kinds_h(self):
        w = self.read("src/sim/kinds.h")
        kinds = {int(v): n for _, v, n in re.findall(r'X\((\w+), (\d+), "(\w+)"\)', w) if n in P.KIND_NAMES.values()}
        self.assertEqual(kinds, P.KIND_NAMES)
        for i, r in enumerate(P.RESOURCES):
            self.assertRegex(w, r'X\(\w+, %d, "%s"\)' % (i, r))

    def test_package_exports(self):
        self.assertEqual(spacesim.PROTOCOL_VERSION, 1)
        self.assertTrue(callable(spacesim.Client.connect))


if __name__ == "__main__":
    unittest.main()

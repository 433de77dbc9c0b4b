"""Snapshot decoding of the Python client against proto/PROTOCOL.md (no daemon needed)."""

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
        w = World()
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
        w = World()
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
            w = World()
            w.apply([1, None, [7, 2, 0, 0, 0, 0, 0, 0, 16, 0, 16], [], [], 1])
            w.apply([2, 1, [], [7, op], [], 1])
            d = w.get(7).qpos
            self.assertTrue(all(-2 <= x <= 2 for x in d), (op, d))
            self.assertEqual(op, (d[0] + 2) * 25 + (d[1] + 2) * 5 + (d[2] + 2))
            seen.add(d)
        self.assertEqual(len(seen), 125)

    def test_mask_hp_owner_radius(self):
        w = World()
        w.apply([1, None, [7, 1, 0, 0, 0, 0, 0, 0, 1600, 0, 32], [], [], 1])
        w.apply([2, 1, [], [7, -28, -160, 9, 48], [], 1])           # mask 4|8|16
        e = w.get(7)
        self.assertEqual((e.qhp, e.owner, e.qradius), (1440, 9, 48))


class TestRejects(unittest.TestCase):
    def setUp(self):
        self.w = World()
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
            World().apply(DELTA_303)

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

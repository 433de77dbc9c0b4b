"""Client-side world view built from `snapshot` notifications.

The wire format is proto/PROTOCOL.md "Snapshots": a full snapshot replaces
the view, a delta (entered / changed / left, ids ascending and delta-coded)
applies to the view of its base tick. `World.apply()` validates as it goes and
leaves the view untouched on any error, like the C decoder sp_snap_apply().
"""

from typing import Any, Container, Dict, Iterator, List, Optional, Sequence, Tuple

from . import protocol as P


class Desync(Exception):
    """A delta whose base tick is not the view's tick: call `resync`."""


class MalformedSnapshot(Exception):
    """A snapshot that does not follow the protocol (the view is unchanged)."""


class Entity:
    """One entity as the snapshots describe it.

    The q* attributes are the quantized integers from the wire; the
    properties give world units (pos, radius), units per second (vel) and
    hit points (hp)."""

    __slots__ = ("id", "kind", "qpos", "qvel", "qhp", "owner", "qradius")

    def __init__(self, id: int, kind: int, qpos: Tuple[int, int, int], qvel: Tuple[int, int, int], qhp: int,
                 owner: int, qradius: int) -> None:
        self.id = id
        self.kind = kind
        self.qpos = qpos
        self.qvel = qvel
        self.qhp = qhp
        self.owner = owner
        self.qradius = qradius

    def copy(self) -> "Entity":
        return Entity(self.id, self.kind, self.qpos, self.qvel, self.qhp, self.owner, self.qradius)

    @property
    def kind_name(self) -> str:
        return P.KIND_NAMES.get(self.kind, "kind%d" % self.kind)

    @property
    def pos(self) -> Tuple[float, ...]:
        return tuple(v / P.POS_STEPS for v in self.qpos)

    @property
    def vel(self) -> Tuple[float, ...]:
        return tuple(v / P.VEL_STEPS for v in self.qvel)

    @property
    def hp(self) -> float:
        return self.qhp / P.HP_STEPS

    @property
    def radius(self) -> float:
        return self.qradius / P.RADIUS_STEPS

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entity) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return "Entity(id=%d, %s, pos=(%.2f, %.2f, %.2f), hp=%.1f, owner=%d)" % (
            (self.id, self.kind_name) + self.pos + (self.hp, self.owner))


class SnapshotInfo:
    """What one snapshot did to the view (for watchers and statistics)."""

    __slots__ = ("tick", "base_tick", "entered", "changed", "left", "count", "bytes")

    def __init__(self, tick: int, base_tick: Optional[int], entered: int, changed: int, left: int, count: int,
                 nbytes: int = 0) -> None:
        self.tick = tick
        self.base_tick = base_tick
        self.entered = entered
        self.changed = changed
        self.left = left
        self.count = count
        self.bytes = nbytes

    @property
    def full(self) -> bool:
        return self.base_tick is None

    def __repr__(self) -> str:
        return "Snapshot(tick=%d, %s, seen=%d, entered=%d, changed=%d, left=%d)" % (
            self.tick, "full" if self.full else "delta from %d" % self.base_tick, self.count,
            self.entered, self.changed, self.left)


def _int(v: Any, what: str) -> int:
    if type(v) is not int:
        raise MalformedSnapshot("%s: expected an integer, got %r" % (what, type(v).__name__))
    return v


class World:
    """The entities this client can see, keyed by id, and the view's tick.

    `entities` is a plain dict {id: Entity}; `tick` is None until the first
    full snapshot. Read it freely; only apply() changes it."""

    def __init__(self) -> None:
        self.tick: Optional[int] = None
        self.entities: Dict[int, Entity] = {}

    def __len__(self) -> int:
        return len(self.entities)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities.values())

    def get(self, entity_id: int) -> Optional[Entity]:
        return self.entities.get(entity_id)

    def of_kind(self, kind: int) -> List[Entity]:
        return [e for e in self.entities.values() if e.kind == kind]

    def owned_by(self, session: int) -> List[Entity]:
        return [e for e in self.entities.values() if e.kind == P.SHIP and e.owner == session]

    def nearest(self, pos: Sequence[float], kind: Optional[int] = None,
                exclude: Container[int] = ()) -> Optional[Entity]:
        """The entity nearest to pos (world units), optionally of one kind."""
        best, bd = None, None
        for e in self.entities.values():
            if (kind is not None and e.kind != kind) or e.id in exclude:
                continue
            p = e.pos
            d = (p[0] - pos[0]) ** 2 + (p[1] - pos[1]) ** 2 + (p[2] - pos[2]) ** 2
            if bd is None or d < bd:
                best, bd = e, d
        return best

    def reset(self) -> None:
        """Forget everything (after a desync, until the next full snapshot)."""
        self.tick = None
        self.entities = {}

    def apply(self, params: Any, nbytes: int = 0) -> SnapshotInfo:
        """Apply the params of one snapshot notification. Returns a
        SnapshotInfo; raises Desync or MalformedSnapshot (view unchanged)."""
        if not isinstance(params, (list, tuple)) or len(params) < 6:
            raise MalformedSnapshot("snapshot params must be an array of at least 6 elements")
        tick, base, entered, changed, left, count = params[:6]
        _int(tick, "tick")
        _int(count, "count")
        if not all(isinstance(x, (list, tuple)) for x in (entered, changed, left)):
            raise MalformedSnapshot("entered, changed and left must be arrays")
        if base is None:
            ents = {}
        else:
            _int(base, "base_tick")
            if self.tick is None or base != self.tick:
                raise Desync("delta against tick %d, but the view is at %s" % (base, self.tick))
            ents = dict(self.entities)   # shallow: records are copied before a change
        if len(entered) % P.ENTERED_INTS:
            raise MalformedSnapshot("entered has %d ints, not a multiple of %d" % (len(entered), P.ENTERED_INTS))
        eid = 0
        for i in range(0, len(entered), P.ENTERED_INTS):
            e = entered[i:i + P.ENTERED_INTS]
            for j, v in enumerate(e):
                _int(v, "entered[%d]" % (i + j))
            d = e[0]
            if d < 1:
                raise MalformedSnapshot("entered ids not ascending")
            eid += d
            if eid in ents:
                raise MalformedSnapshot("entered id %d is already in the view" % eid)
            ents[eid] = Entity(eid, e[1], (e[2], e[3], e[4]), (e[5], e[6], e[7]), e[8], e[9], e[10])
        eid, i, n = 0, 0, len(changed)
        while i < n:
            if i + 1 >= n:
                raise MalformedSnapshot("changed entry cut short")
            d, op = _int(changed[i], "changed iddelta"), _int(changed[i + 1], "changed op")
            i += 2
            if d < 1:
                raise MalformedSnapshot("changed ids not ascending")
            eid += d
            old = ents.get(eid)
            if old is None:
                raise MalformedSnapshot("changed id %d is not in the view" % eid)
            r = old.copy()
            if 0 <= op <= 124:
                r.qpos = (r.qpos[0] + op // 25 - 2, r.qpos[1] + (op // 5) % 5 - 2, r.qpos[2] + op % 5 - 2)
            elif -31 <= op <= -1:
                mask = -op
                need = 3 * bool(mask & P.F_POS) + 3 * bool(mask & P.F_VEL) + bool(mask & P.F_HP) \
                    + bool(mask & P.F_OWNER) + bool(mask & P.F_RADIUS)
                if i + need > n:
                    raise MalformedSnapshot("changed entry for %d cut short" % eid)
                vals = changed[i:i + need]
                for v in vals:
                    _int(v, "changed value")
                i += need
                k = 0
                if mask & P.F_POS:
                    r.qpos = (r.qpos[0] + vals[0], r.qpos[1] + vals[1], r.qpos[2] + vals[2])
                    k = 3
                if mask & P.F_VEL:
                    r.qvel = (r.qvel[0] + vals[k], r.qvel[1] + vals[k + 1], r.qvel[2] + vals[k + 2])
                    k += 3
                if mask & P.F_HP:
                    r.qhp += vals[k]
                    k += 1
                if mask & P.F_OWNER:
                    r.owner = vals[k]
                    k += 1
                if mask & P.F_RADIUS:
                    r.qradius = vals[k]
            else:
                raise MalformedSnapshot("bad op %d in changed" % op)
            ents[eid] = r
        eid = 0
        for d in left:
            _int(d, "left iddelta")
            if d < 1:
                raise MalformedSnapshot("left ids not ascending")
            eid += d
            if ents.pop(eid, None) is None:
                raise MalformedSnapshot("left id %d is not in the view" % eid)
        if len(ents) != count:
            raise MalformedSnapshot("count says %d entities, the view has %d" % (count, len(ents)))
        self.tick, self.entities = tick, ents
        return SnapshotInfo(tick, base, len(entered) // P.ENTERED_INTS, _count_changed(changed), len(left),
                            count, nbytes)


def _count_changed(changed: List[int]) -> int:
    """Number of entries in a (validated) changed list."""
    i, n, k = 0, len(changed), 0
    while i < n:
        op = changed[i + 1]
        i += 2
        if op < 0:
            m = -op
            i += 3 * bool(m & P.F_POS) + 3 * bool(m & P.F_VEL) + bool(m & P.F_HP) \
                + bool(m & P.F_OWNER) + bool(m & P.F_RADIUS)
        k += 1
    return k

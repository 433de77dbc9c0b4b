"""Client-side world view built from `snapshot` notifications.

The wire format is proto/PROTOCOL.md "Snapshots". Protocol 2 (issue 9): the
world is cut into interest cells and a view is a set of whole cells; a
snapshot carries cell chunks (a full chunk replaces that cell, a delta chunk
applies entered / changed / left, ids ascending and delta-coded, to it) and
the cells no longer seen (`gone`); cells it does not mention are unchanged,
so applying one costs what it carries, not the size of the view. Protocol 1
(one entered / changed / left triple for the whole view) is still decoded for
older daemons: `World.protocol` says which (the client sets it from hello).
`World.apply()` validates everything first and leaves the view untouched on
any error, like the C decoder sp_snap_apply().
"""

from typing import Any, Container, Dict, Iterator, List, Optional, Sequence, Set, Tuple

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
    """What one snapshot did to the view (for watchers and statistics).

    entered / changed / left are summed over the chunks (a full chunk counts
    its entities as entered); chunks, full_cells and gone are 0 for protocol 1."""

    __slots__ = ("tick", "base_tick", "entered", "changed", "left", "count", "bytes", "chunks", "full_cells", "gone")

    def __init__(self, tick: int, base_tick: Optional[int], entered: int, changed: int, left: int, count: int,
                 nbytes: int = 0, chunks: int = 0, full_cells: int = 0, gone: int = 0) -> None:
        self.tick = tick
        self.base_tick = base_tick
        self.entered = entered
        self.changed = changed
        self.left = left
        self.count = count
        self.bytes = nbytes
        self.chunks = chunks
        self.full_cells = full_cells
        self.gone = gone

    @property
    def full(self) -> bool:
        return self.base_tick is None

    def __repr__(self) -> str:
        return "Snapshot(tick=%d, %s, seen=%d, entered=%d, changed=%d, left=%d, chunks=%d, gone=%d)" % (
            self.tick, "full" if self.full else "delta from %d" % self.base_tick, self.count,
            self.entered, self.changed, self.left, self.chunks, self.gone)


def _int(v: Any, what: str) -> int:
    if type(v) is not int:
        raise MalformedSnapshot("%s: expected an integer, got %r" % (what, type(v).__name__))
    return v


def _list(v: Any, what: str) -> List[Any]:
    if not isinstance(v, (list, tuple)):
        raise MalformedSnapshot("%s must be an array, got %r" % (what, type(v).__name__))
    return v


def _apply_lists(ents: Dict[int, Entity], entered: Any, changed: Any, left: Any, where: str) -> Tuple[int, int, int]:
    """Apply protocol 1's three lists to ents (a private copy: written in
    place; records are copied before they change, so the caller's originals
    stay as they were). Returns (entered, changed, left) counts; raises
    MalformedSnapshot, leaving ents half-written (the caller drops it)."""
    for x, name in ((entered, "entered"), (changed, "changed"), (left, "left")):
        _list(x, where + name)
    if len(entered) % P.ENTERED_INTS:
        raise MalformedSnapshot("%sentered has %d ints, not a multiple of %d" % (where, len(entered), P.ENTERED_INTS))
    eid = 0
    for i in range(0, len(entered), P.ENTERED_INTS):
        e = entered[i:i + P.ENTERED_INTS]
        for j, v in enumerate(e):
            _int(v, "%sentered[%d]" % (where, i + j))
        d = e[0]
        if d < 1:
            raise MalformedSnapshot("%sentered ids not ascending" % where)
        eid += d
        if eid in ents:
            raise MalformedSnapshot("%sentered id %d is already in the view" % (where, eid))
        ents[eid] = Entity(eid, e[1], (e[2], e[3], e[4]), (e[5], e[6], e[7]), e[8], e[9], e[10])
    eid, i, n, nchanged = 0, 0, len(changed), 0
    while i < n:
        if i + 1 >= n:
            raise MalformedSnapshot("%schanged entry cut short" % where)
        d, op = _int(changed[i], where + "changed iddelta"), _int(changed[i + 1], where + "changed op")
        i += 2
        if d < 1:
            raise MalformedSnapshot("%schanged ids not ascending" % where)
        eid += d
        old = ents.get(eid)
        if old is None:
            raise MalformedSnapshot("%schanged id %d is not in the view" % (where, eid))
        r = old.copy()
        if 0 <= op <= 124:
            r.qpos = (r.qpos[0] + op // 25 - 2, r.qpos[1] + (op // 5) % 5 - 2, r.qpos[2] + op % 5 - 2)
        elif -31 <= op <= -1:
            mask = -op
            need = 3 * bool(mask & P.F_POS) + 3 * bool(mask & P.F_VEL) + bool(mask & P.F_HP) \
                + bool(mask & P.F_OWNER) + bool(mask & P.F_RADIUS)
            if i + need > n:
                raise MalformedSnapshot("%schanged entry for %d cut short" % (where, eid))
            vals = changed[i:i + need]
            for v in vals:
                _int(v, where + "changed value")
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
            raise MalformedSnapshot("%sbad op %d in changed" % (where, op))
        ents[eid] = r
        nchanged += 1
    eid = 0
    for d in left:
        _int(d, where + "left iddelta")
        if d < 1:
            raise MalformedSnapshot("%sleft ids not ascending" % where)
        eid += d
        if ents.pop(eid, None) is None:
            raise MalformedSnapshot("%sleft id %d is not in the view" % (where, eid))
    return len(entered) // P.ENTERED_INTS, nchanged, len(left)


class World:
    """The entities this client can see, keyed by id, and the view's tick.

    `entities` is a plain dict {id: Entity}; `cells` (protocol 2) the same
    entities by interest cell, {cell id: {id: Entity}}; `tick` is None until
    the first full snapshot. Read them freely; only apply() and reset()
    change them (in place, after a snapshot has been validated whole).
    `protocol` (default PROTOCOL_VERSION) selects the decoder; `interest_cell`
    and `cells_per_axis` are hello's, when the client has them."""

    def __init__(self, protocol: int = P.PROTOCOL_VERSION) -> None:
        self.protocol = protocol
        self.tick: Optional[int] = None
        self.entities: Dict[int, Entity] = {}
        self.cells: Dict[int, Dict[int, Entity]] = {}
        self.interest_cell: Optional[float] = None
        self.cells_per_axis: Optional[int] = None

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
        self.cells = {}

    def apply(self, params: Any, nbytes: int = 0) -> SnapshotInfo:
        """Apply the params of one snapshot notification. Returns a
        SnapshotInfo; raises Desync or MalformedSnapshot (view unchanged)."""
        if self.protocol >= 2:
            return self._apply_cells(params, nbytes)
        return self._apply_v1(params, nbytes)

    def _apply_cells(self, params: Any, nbytes: int) -> SnapshotInfo:
        """Protocol 2: [tick, base_tick, chunks, gone, count], chunks
        [cell, cbase, entered, changed, left, n] ascending by cell. Only the
        cells named are copied and rebuilt (copy-on-write): O(message + the
        cells it names), never O(view)."""
        if not isinstance(params, (list, tuple)) or len(params) < 5:
            raise MalformedSnapshot("snapshot params must be an array of at least 5 elements")
        tick, base, chunks, gone, count = params[:5]
        _int(tick, "tick")
        _int(count, "count")
        _list(chunks, "chunks")
        _list(gone, "gone")
        if base is None:
            old: Dict[int, Dict[int, Entity]] = {}
        else:
            _int(base, "base_tick")
            if self.tick is None or base != self.tick:
                raise Desync("delta against tick %d, but the view is at %s" % (base, self.tick))
            old = self.cells
        prev = -1
        gone_set: Set[int] = set()
        for g in gone:
            _int(g, "gone cell")
            if g <= prev:
                raise MalformedSnapshot("gone cells not ascending")
            prev = g
            gone_set.add(g)
        new: Dict[int, Dict[int, Entity]] = {}
        prev, tot_e, tot_c, tot_l, nfull = -1, 0, 0, 0, 0
        for k, ch in enumerate(chunks):
            if not isinstance(ch, (list, tuple)) or len(ch) < 6:
                raise MalformedSnapshot("chunk %d must be an array of at least 6 elements" % k)
            cell, cbase, entered, changed, left, n = ch[:6]
            _int(cell, "chunk cell")
            _int(n, "chunk n")
            if cell <= prev:
                raise MalformedSnapshot("chunk cells not ascending")
            prev = cell
            where = "cell %d: " % cell
            if cbase is None:
                if changed or left:
                    raise MalformedSnapshot("%sa full chunk carries changed or left entries" % where)
                ents: Dict[int, Entity] = {}
                nfull += 1
            else:
                _int(cbase, "chunk base")
                if cbase != base:
                    raise MalformedSnapshot("%sdelta against tick %d in a snapshot against %s" % (where, cbase, base))
                ents = {} if cell in gone_set else dict(old.get(cell, {}))   # shallow: records copied on change
            e, c, lft = _apply_lists(ents, entered, changed, left, where)
            if len(ents) != n:
                raise MalformedSnapshot("%sn says %d entities, the cell has %d" % (where, n, len(ents)))
            tot_e, tot_c, tot_l = tot_e + e, tot_c + c, tot_l + lft
            new[cell] = ents
        # The view's size after applying, from the cells touched only.
        if base is None:
            total = sum(len(v) for v in new.values())
        else:
            total = len(self.entities)
            for cell in gone_set | set(new):
                total -= len(old.get(cell, ()))
            total += sum(len(v) for v in new.values())
        if total != count:
            raise MalformedSnapshot("count says %d entities, the view has %d" % (count, total))
        # Valid: commit. Every removal before any insertion, so an entity
        # that moved between two cells of this snapshot stays indexed.
        if base is None:
            self.cells, self.entities = new, {}
        else:
            for cell in gone_set | set(new):
                for eid in self.cells.pop(cell, ()):
                    self.entities.pop(eid, None)
        for cell, ents in new.items():
            self.cells[cell] = ents
            self.entities.update(ents)
        self.tick = tick
        return SnapshotInfo(tick, base, tot_e, tot_c, tot_l, count, nbytes, len(chunks), nfull, len(gone))

    def _apply_v1(self, params: Any, nbytes: int) -> SnapshotInfo:
        """Protocol 1: [tick, base_tick, entered, changed, left, count] for
        the whole view (O(view) per snapshot: the whole dict is copied)."""
        if not isinstance(params, (list, tuple)) or len(params) < 6:
            raise MalformedSnapshot("snapshot params must be an array of at least 6 elements")
        tick, base, entered, changed, left, count = params[:6]
        _int(tick, "tick")
        _int(count, "count")
        if not all(isinstance(x, (list, tuple)) for x in (entered, changed, left)):
            raise MalformedSnapshot("entered, changed and left must be arrays")
        if base is None:
            ents: Dict[int, Entity] = {}
        else:
            _int(base, "base_tick")
            if self.tick is None or base != self.tick:
                raise Desync("delta against tick %d, but the view is at %s" % (base, self.tick))
            ents = dict(self.entities)   # shallow: records are copied before a change
        e, c, lft = _apply_lists(ents, entered, changed, left, "")
        if len(ents) != count:
            raise MalformedSnapshot("count says %d entities, the view has %d" % (count, len(ents)))
        self.tick, self.entities = tick, ents
        return SnapshotInfo(tick, base, e, c, lft, count, nbytes)

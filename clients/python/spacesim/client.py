"""asyncio client for spacesimd (MessagePack-RPC over TCP, proto/PROTOCOL.md).

    client = await Client.connect("127.0.0.1", 7777)
    await client.hello("alice")
    ship = await client.spawn()
    await client.move(ship, (10, 0, 0))
    async for item in client.updates():      # Snapshot infos and Event dicts
        ...
    await client.close()

One background task reads the socket: responses complete the futures of
their requests (matched by msgid), snapshots are applied to `client.world`
(a spacesim.World) as they arrive, and both snapshots and events are queued
for `updates()`. The queue is bounded: when nobody iterates, the oldest items
are dropped (counted in `dropped`), while `world` stays current. After a
desync the client asks for a full snapshot by itself (`resync`).
"""

import asyncio
import itertools
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple, Union

import msgpack

from . import protocol as P
from .world import World, Entity, Desync, MalformedSnapshot, SnapshotInfo

#: A vector in world units (or units per second): any three numbers.
Vec3 = Sequence[float]


class RpcError(Exception):
    """An error reply: .code (int), .name ("FORBIDDEN"), .message (str), .method."""

    def __init__(self, code: Optional[int], message: str, method: Optional[str] = None) -> None:
        self.code = code
        self.name = P.ERRORS.get(code, "ERROR_%s" % code)
        self.message = message
        self.method = method
        super().__init__("%s%s: %s" % (method + ": " if method else "", self.name, message))


class ConnectionClosed(Exception):
    """The connection ended (by the server, the network or close())."""


class Event(dict):
    """An `event` notification: a dict with at least "type" and "tick"."""

    @property
    def type(self) -> Optional[str]:
        return self.get("type")

    @property
    def tick(self) -> Optional[int]:
        return self.get("tick")


#: What updates() yields: a snapshot applied to Client.world, or an event.
Update = Union[SnapshotInfo, Event]


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, queue_size: int = 1024) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: Dict[int, Tuple["asyncio.Future[Any]", str]] = {}
        self._queue: "asyncio.Queue[Optional[Update]]" = asyncio.Queue(maxsize=queue_size)
        self._closed: Optional[Exception] = None          # exception once closed
        self.world = World()
        self.session: Optional[int] = None
        self.resume_token: Optional[str] = None
        self.admin = False
        self.hello_info: Optional[Dict[str, Any]] = None
        self.snapshots = 0
        self.desyncs = 0
        self.malformed = 0
        self.dropped = 0
        self.bytes_in = 0
        self._resync_pending = False
        self._task = asyncio.ensure_future(self._read_loop())

    # ------------------------------------------------------------ connecting

    @classmethod
    async def connect(cls, host: str = P.DEFAULT_HOST, port: int = P.DEFAULT_PORT, timeout: float = 5.0,
                      queue_size: int = 1024) -> "Client":
        """Open a connection. Raises ConnectionRefusedError, asyncio.TimeoutError, OSError."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer, queue_size)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed is None:
            self._fail(ConnectionClosed("closed by the client"))
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
        try:
            self._writer.close()
            await self._writer.wait_closed()
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # ------------------------------------------------------------ requests

    async def call(self, method: str, *params: Any, timeout: float = 10.0) -> Any:
        """Send [0, msgid, method, params] and return the result, or raise
        RpcError (error reply), ConnectionClosed, asyncio.TimeoutError."""
        if self._closed is not None:
            raise self._closed
        msgid = next(self._ids) & 0xFFFFFFFF
        fut = asyncio.get_running_loop().create_future()
        self._pending[msgid] = (fut, method)
        self._writer.write(msgpack.packb([P.REQUEST, msgid, method, list(params)], use_bin_type=True))
        try:
            await self._writer.drain()
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(msgid, None)

    async def ping(self) -> Dict[str, int]:
        """{"tick": int, "server_time_ns": int}; allowed before hello."""
        return await self.call("ping")

    async def hello(self, name: str = "python", token: Optional[str] = None,
                    resume: Optional[str] = None) -> Dict[str, Any]:
        """Open a session; `token` is the admin token or None. `resume`: the
        `resume_token` of an earlier hello, to take that session (its id and
        ships) back after a dropped connection (PROTOCOL.md, Reconnecting).
        The new token is in `self.resume_token`."""
        if resume is None:
            info = await self.call("hello", name, token)
        else:
            info = await self.call("hello", name, token, resume)
        self.hello_info = info
        self.session = info.get("session")
        self.admin = bool(info.get("admin"))
        self.resume_token = info.get("resume_token")
        return info

    async def spawn(self, position: Optional[Vec3] = None) -> int:
        """A new ship owned by this session (at `position` (x, y, z) if
        given, else where the server puts it): returns its id."""
        if position is None:
            return (await self.call("spawn"))["ship_id"]
        return (await self.call("spawn", [float(v) for v in position]))["ship_id"]

    async def move(self, ship: int, velocity: Vec3) -> bool:
        """Set the desired velocity (vx, vy, vz) in units per second."""
        return await self.call("move", ship, [float(v) for v in velocity])

    async def fire(self, ship: int, target: int) -> Dict[str, Any]:
        """{"hit": bool, "damage": float}"""
        return await self.call("fire", ship, target)

    async def mine(self, ship: int, asteroid: int) -> Dict[str, Any]:
        """{"resource_type": str, "amount": float}"""
        return await self.call("mine", ship, asteroid)

    async def subscribe(self, radius: float, center: Optional[Vec3] = None) -> bool:
        """Area of interest: radius around your ships (or around center)."""
        if center is None:
            return await self.call("subscribe", float(radius))
        return await self.call("subscribe", float(radius), [float(v) for v in center])

    async def inspect(self, entity_id: int) -> Dict[str, Any]:
        return await self.call("inspect", entity_id)

    async def stats(self) -> Dict[str, Any]:
        return await self.call("stats")

    async def alert(self, message: str, priority: int = 1) -> Any:
        """Admin sessions only: every client gets a SystemAlert event."""
        return await self.call("alert", message, priority)

    async def resync(self) -> bool:
        """Ask for a full snapshot next."""
        return await self.call("resync")

    async def clients(self) -> List[Dict[str, Any]]:
        """Admin sessions only: every connected client (PROTOCOL.md, the client map)."""
        return (await self.call("clients"))["clients"]

    async def kick(self, session: int, reason: str = "kicked by an operator") -> Any:
        """Admin sessions only: close the connection of that session."""
        return await self.call("kick", session, reason)

    async def limits(self) -> Dict[str, Any]:
        """The limits the server applies to every client."""
        return await self.call("limits")

    async def remove(self, entity_id: int) -> Any:
        """Admin sessions only: destroy an entity now."""
        return await self.call("remove", entity_id)

    # ------------------------------------------------------------ notifications

    async def updates(self, timeout: Optional[float] = None) -> AsyncIterator[Update]:
        """Async iterator over SnapshotInfo objects (after they were applied
        to self.world) and Event dicts, in arrival order. Ends when the
        connection closes; with a timeout, raises asyncio.TimeoutError when
        nothing arrives in time."""
        while True:
            item = await self.next_item(timeout)
            if item is None:
                return
            yield item

    async def next_item(self, timeout: Optional[float] = None) -> Optional[Update]:
        """The next SnapshotInfo or Event, or None once the connection is
        closed and everything queued was read. Raises asyncio.TimeoutError."""
        if self._closed is not None and self._queue.empty():
            return None
        getter = self._queue.get()
        item = await (asyncio.wait_for(getter, timeout) if timeout else getter)
        if item is None:
            self._queue.put_nowait(None)   # keep telling later callers
        return item

    async def next_snapshot(self, timeout: float = 5.0) -> SnapshotInfo:
        """Wait for the next applied snapshot (events in between are
        skipped). Raises asyncio.TimeoutError after `timeout` seconds in all."""
        return await asyncio.wait_for(self._next_of(lambda i: isinstance(i, SnapshotInfo)), timeout)

    async def next_event(self, type: Optional[str] = None, timeout: float = 5.0) -> "Event":
        """Wait for the next event (of a type, if given); snapshots are
        skipped. Raises asyncio.TimeoutError after `timeout` seconds in all."""
        return await asyncio.wait_for(
            self._next_of(lambda i: isinstance(i, Event) and (type is None or i.type == type)), timeout)

    async def _next_of(self, pred: Callable[[Update], bool]) -> Any:
        while True:
            item = await self.next_item()
            if item is None:
                raise self._closed or ConnectionClosed("connection closed")
            if pred(item):
                return item

    def my_ships(self) -> List[Entity]:
        """Own ships currently in view."""
        return self.world.owned_by(self.session) if self.session else []

    # ------------------------------------------------------------ internals

    def _push(self, item: Optional[Update]) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    def _fail(self, exc: Exception) -> None:
        if self._closed is None:
            self._closed = exc
        for fut, _ in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def _set_protocol(self, info: Dict[str, Any]) -> None:
        """The snapshot format follows the daemon's protocol (2: per-cell
        chunks, 1: one list triple for the whole view; a later version only
        appends elements, which the protocol 2 decoder ignores). Set here, in
        the read loop, before the next message (the first snapshot may come
        before hello()'s caller resumes)."""
        proto = info.get("protocol")
        self.world.protocol = proto if type(proto) is int and proto >= 1 else P.PROTOCOL_VERSION
        self.world.interest_cell = info.get("interest_cell")
        self.world.cells_per_axis = info.get("cells_per_axis")

    def _send_nowait(self, method: str) -> None:
        """Fire-and-forget request (its response is ignored)."""
        msgid = next(self._ids) & 0xFFFFFFFF
        self._writer.write(msgpack.packb([P.REQUEST, msgid, method, []]))

    def _on_message(self, msg: Any, nbytes: int) -> None:
        if not isinstance(msg, list) or len(msg) < 3:
            raise MalformedSnapshot("not a MessagePack-RPC message: %r" % (msg,))
        if msg[0] == P.RESPONSE and len(msg) == 4:
            entry = self._pending.get(msg[1])
            if entry is None:
                return          # an ignored fire-and-forget response
            fut, method = entry
            if fut.done():
                return
            err = msg[2]
            if err is None:
                if method == "hello" and isinstance(msg[3], dict):
                    self._set_protocol(msg[3])
                fut.set_result(msg[3])
            else:
                code = err.get("code") if isinstance(err, dict) else None
                text = err.get("message", "") if isinstance(err, dict) else str(err)
                fut.set_exception(RpcError(code, text, method))
            return
        if msg[0] != P.NOTIFY:
            raise MalformedSnapshot("unexpected message type %r" % (msg[0],))
        method, params = msg[1], msg[2]
        if method == "snapshot":
            try:
                info = self.world.apply(params, nbytes)
            except (Desync, MalformedSnapshot) as e:
                if isinstance(e, Desync):
                    self.desyncs += 1
                else:
                    self.malformed += 1
                self.world.reset()
                if not self._resync_pending:
                    self._resync_pending = True
                    self._send_nowait("resync")
                return
            self._resync_pending = False
            self.snapshots += 1
            self._push(info)
        elif method == "event":
            ev = params[0] if params and isinstance(params[0], dict) else {}
            self._push(Event(ev))
        elif method == "error":
            err = params[0] if params and isinstance(params[0], dict) else {}
            self._fail(RpcError(err.get("code"), err.get("message", "server error"), "server"))
        elif method == "ping":
            self._send_nowait("ping")   # keepalive: any request resets the idle timer

    async def _read_loop(self) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=64 * 1024 * 1024)
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionClosed("the server closed the connection")
                self.bytes_in += len(data)
                unpacker.feed(data)
                pos = unpacker.tell()
                for msg in unpacker:
                    end = unpacker.tell()      # stream offset: exact bytes of this message
                    self._on_message(msg, end - pos)
                    pos = end
        except asyncio.CancelledError:
            raise
        except ConnectionClosed as e:
            self._fail(e)
        except (OSError, ValueError, msgpack.UnpackException, MalformedSnapshot) as e:
            self._fail(ConnectionClosed("protocol or connection error: %s" % e))

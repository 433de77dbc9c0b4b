"""spacesim: an asyncio client for the spacesimd simulation server.

    import asyncio, spacesim

    async def main():
        async with await spacesim.Client.connect("127.0.0.1", 7777) as c:
            await c.hello("alice")
            ship = await c.spawn()
            await c.move(ship, (10, 0, 0))
            snap = await c.next_snapshot()
            print(snap, c.world.get(ship))

    asyncio.run(main())

Needs only python3-msgpack. The wire format is proto/PROTOCOL.md.
"""

from .protocol import PROTOCOL_VERSION, SHIP, ASTEROID, PROJECTILE, KIND_NAMES, RESOURCES, ERRORS, ERROR_CODES
from .world import World, Entity, SnapshotInfo, Desync, MalformedSnapshot
from .client import Client, Event, RpcError, ConnectionClosed

__all__ = [
    "Client", "Event", "RpcError", "ConnectionClosed",
    "World", "Entity", "SnapshotInfo", "Desync", "MalformedSnapshot",
    "PROTOCOL_VERSION", "SHIP", "ASTEROID", "PROJECTILE", "KIND_NAMES", "RESOURCES", "ERRORS", "ERROR_CODES",
]
__version__ = "0.1.0"

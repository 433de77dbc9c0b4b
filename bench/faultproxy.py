#!/usr/bin/env python3
"""bench/faultproxy.py LISTEN_PORT TARGET_PORT [DELAY_MS] [LOSS_PCT] [RTO_MS]: a TCP proxy on 127.0.0.1
that adds DELAY_MS (default 20) to every chunk in each direction, in order, and holds LOSS_PCT percent of
the chunks (default 1) for RTO_MS more (default 200): what a lost segment costs a TCP stream (the
retransmission timeout, and everything behind it waits). bench/cluster.sh puts it between the daemons and
nats-server when the kernel has no netem qdisc. It runs until SIGTERM (or SIGKILL)."""
import asyncio, os, random, signal, sys

listen, target = int(sys.argv[1]), int(sys.argv[2])
delay = float(sys.argv[3] if len(sys.argv) > 3 else 20) / 1000
loss = float(sys.argv[4] if len(sys.argv) > 4 else 1) / 100
rto = float(sys.argv[5] if len(sys.argv) > 5 else 200) / 1000
rng = random.Random(12345)

async def pipe(reader, writer):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    async def deliver():
        last = 0.0
        while True:
            due, data = await q.get()
            if data is None: break
            due = max(due, last)  # a held chunk holds everything behind it, as in TCP
            last = due
            wait = due - loop.time()
            if wait > 0: await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()
    task = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            if not data: break
            extra = rto if rng.random() < loss else 0.0
            q.put_nowait((loop.time() + delay + extra, data))
    except (ConnectionError, OSError):
        pass
    q.put_nowait((0.0, None))
    await task

async def serve(r, w):
    try:
        tr, tw = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        w.close()
        return
    await asyncio.gather(pipe(r, tw), pipe(tr, w), return_exceptions=True)

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with server:
        await stop

asyncio.run(main())

"""Hold N WebSocket connections to URL, each sending a Ping a second and waiting for its Pong.

The idle load of `make bench`'s CPU figure, for measuring one server by hand (perf, strace):
`target/peers/venv/bin/python scripts/ping-clients.py ws://127.0.0.1:PORT/ws 1000`.
"""
import asyncio
import sys

import websockets


async def one(url):
    async with websockets.connect(url, ping_interval=None, max_size=1 << 16) as ws:
        while True:
            await asyncio.sleep(1)
            await (await ws.ping())


async def main(url, count):
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(one(url)))
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

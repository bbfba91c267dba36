"""A Python `websockets` echo server, for `make bench`.

Usage: python python.py ADDR (port 0 picks one). Prints "listening on http://IP:PORT".
The `async for` reads until the connection is closed; websockets answers Close itself.
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(socket):
    async for message in socket:
        await socket.send(message)


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    async with serve(echo, host, int(port)) as server:
        address = server.sockets[0].getsockname()
        print(f"listening on http://{address[0]}:{address[1]}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())

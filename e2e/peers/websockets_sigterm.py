"""Python `websockets` as its deployment guide says to run it: on SIGTERM, `server.close()`
closes every connection with 1001 (going away), and the process exits once they are closed.

Usage: python websockets_sigterm.py ADDR (port 0 picks one). Prints "listening on
http://IP:PORT". The echo handler is the bench's (bench/peers/python.py), which has no SIGTERM
handler: there SIGTERM ends the process at once, with no Close frame.
"""

import asyncio
import pathlib
import signal
import sys

from websockets.asyncio.server import serve

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench" / "peers"))
from python import echo  # noqa: E402  (the bench peer's handler)


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    async with serve(echo, host, int(port)) as server:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.close)
        address = server.sockets[0].getsockname()
        print(f"listening on http://{address[0]}:{address[1]}", flush=True)
        await server.wait_closed()


asyncio.run(main())

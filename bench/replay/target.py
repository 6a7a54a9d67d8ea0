"""A fixed, fast local HTTP/1.1 target for the replay benchmark: every request gets the same JSON.

    python bench/replay/target.py PORT

asyncio.Protocol, keep-alive, no parsing beyond finding the end of each request
head (the benchmark's requests have no bodies): it should not be the bottleneck
of either client it is measured with.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

BODY = b'{"id":42,"name":"widget","price":12.5,"tags":["a","b","c"],"in_stock":true}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class Fixed(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self.transport = cast(asyncio.Transport, transport)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = buf.count(b"\r\n\r\n")
        if n:
            self.transport.write(RESPONSE * n)
            buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
        self.buf = buf


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Fixed, "127.0.0.1", port, backlog=1024)
    print(f"target listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1])))

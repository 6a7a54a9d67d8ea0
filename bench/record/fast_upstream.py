"""A fast, fixed-answer HTTP/1.1 upstream for the recording-proxy benchmark (keep-alive).

    python3 bench/record/fast_upstream.py PORT

It answers every request with the same small JSON body, so what the benchmark
measures is the proxy in front of it, not this server.
"""

from __future__ import annotations

import asyncio
import sys

BODY = b'{"id": "ch_123", "status": "succeeded", "amount": 42.5, "currency": "EUR"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            # requests in this benchmark carry no body
            buf = buf[end + 4 :]
            n += 1
        self.buf = buf
        if n:
            self.transport.write(RESPONSE * n)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, "127.0.0.1", port, backlog=1024)
    print(f"fast upstream on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass

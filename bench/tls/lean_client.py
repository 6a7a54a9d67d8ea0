"""The proxy benchmark's second client: the same workload (``CONNECT``, TLS, keep-alive
``GET /items/1`` on 8 connections) written as a bare asyncio Protocol.

``bench_tls.proxy_run``'s client uses asyncio streams (``readuntil``, ``readexactly``, a
regex per answer): about 35 µs of CPU a request, on the same two cores as the proxy under
test. A proxy that answers 10,000 times a second shares its cores with 0.35 of a core of
client; one that answers 700 times, with 0.02. This client does a request's work in one
callback and a few byte searches (about half the CPU), so a fast proxy is measured with
less of the client in its way. ``bench_tls.py`` reports the ratio with both clients.
"""

from __future__ import annotations

import asyncio
import ssl
import time


class _Conn(asyncio.Protocol):
    def __init__(self, request: bytes, stop_at: float, limit: int) -> None:
        self.request = request
        self.stop_at = stop_at
        self.limit = limit
        self.done = 0
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.tls = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.tls:
            # the proxy's answer to CONNECT
            if b"\r\n\r\n" in buf:
                self.buf = b""
                if not buf.startswith(b"HTTP/1.1 200") and not self.connected.done():
                    self.connected.set_exception(RuntimeError(f"CONNECT refused: {buf[:80]!r}"))
                elif not self.connected.done():
                    self.connected.set_result(None)
            else:
                self.buf = buf
            return
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            at = buf.find(b"Content-Length: ", 0, end)
            if at < 0:
                at = buf.lower().find(b"content-length: ", 0, end)
            length = int(buf[at + 16 : buf.index(b"\r\n", at)])
            total = end + 4 + length
            if len(buf) < total:
                break
            buf = buf[total:]
            self.done += 1
            if self.done >= self.limit or time.monotonic() >= self.stop_at:
                if not self.finished.done():
                    self.finished.set_result(self.done)
                return
            assert self.transport is not None
            self.transport.write(self.request)
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result(self.done)


async def connection(
    proxy: int, port: int, ctx: ssl.SSLContext, stop_at: float, limit: int = 10**9
) -> int:
    """Requests answered on one connection through the forward proxy ``proxy`` to
    ``localhost:port`` until ``stop_at`` (or ``limit``)."""
    loop = asyncio.get_running_loop()
    host = f"localhost:{port}"
    request = f"GET /items/1 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    conn = _Conn(request, stop_at, limit)
    transport, _ = await loop.create_connection(lambda: conn, "127.0.0.1", proxy)
    transport.write(f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await conn.connected
    tls = await loop.start_tls(transport, conn, ctx, server_hostname="localhost")
    assert tls is not None
    conn.transport = tls
    conn.tls = True
    tls.write(request)
    try:
        return await conn.finished
    finally:
        tls.close()


async def throughput(proxy: int, port: int, ctx: ssl.SSLContext, seconds: float) -> float:
    """Requests per second over 8 connections (after one warm-up connection)."""
    await connection(proxy, port, ctx, time.monotonic() + 5, 50)
    t0 = time.monotonic()
    counts = await asyncio.gather(*(connection(proxy, port, ctx, t0 + seconds) for _ in range(8)))
    return sum(counts) / (time.monotonic() - t0)

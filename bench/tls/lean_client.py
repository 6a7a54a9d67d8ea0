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
    def __init__(
        self, request: bytes, stop_at: float, limit: int, others: list[bytes] | None = None
    ) -> None:
        self.request = request
        # the requests to send in turn after the first (--distinct rounds), or None: the
        # first again and again
        self.others = others
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
            others = self.others
            self.transport.write(others[self.done % len(others)] if others else self.request)
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result(self.done)


async def connection(
    proxy: int,
    port: int,
    ctx: ssl.SSLContext,
    stop_at: float,
    limit: int = 10**9,
    paths: list[str] | None = None,
) -> int:
    """Requests answered on one connection through the forward proxy ``proxy`` to
    ``localhost:port`` until ``stop_at`` (or ``limit``): ``GET /items/1`` each time, or
    each of ``paths`` in turn."""
    loop = asyncio.get_running_loop()
    host = f"localhost:{port}"
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for path in (paths or ["/items/1"])
    ]
    request = requests[0]
    conn = _Conn(request, stop_at, limit, requests if paths else None)
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


async def throughput(
    proxy: int, port: int, ctx: ssl.SSLContext, seconds: float, distinct: int = 0
) -> float:
    """Requests per second over 8 connections (after one warm-up connection). With
    ``distinct``, the connections ask for ``/things/0`` ... ``/things/{distinct - 1}``
    in turn, each from its own offset, so no request or answer repeats within a few
    hundred (bench_tls.py's nginx answers each path with a body naming it)."""
    await connection(proxy, port, ctx, time.monotonic() + 5, 50)
    t0 = time.monotonic()

    def paths(offset: int) -> list[str] | None:
        if not distinct:
            return None
        return [f"/things/{(offset + i) % distinct}" for i in range(distinct)]

    counts = await asyncio.gather(
        *(
            connection(proxy, port, ctx, t0 + seconds, paths=paths(c * distinct // 8))
            for c in range(8)
        )
    )
    return sum(counts) / (time.monotonic() - t0)

"""The floor under devbox's intercepting proxy: the cheapest TLS-intercepting forward
proxy Python can run, to measure beside it in ``bench_tls.py``.

It does what devbox's proxy must do on the wire and nothing else: answers ``CONNECT``,
opens TLS to the upstream (verified), terminates the client's TLS with a leaf of devbox's
CA (uvloop's ``start_tls``), then copies bytes both ways. No HTTP parsing, no recording,
no redaction. Whatever devbox spends per request above this relay is the price of
recording; the relay's own cost bounds what any Python proxy on this loop can reach.

Usage: ``floor_relay.py PORT CA_BUNDLE`` (listens on 127.0.0.1 only). Not for use.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvloop

from devbox.wire.ca import cert_store


class _Upstream(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.client.transport is not None:
            self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.transport is not None:
            self.client.transport.close()


class _Client(asyncio.Protocol):
    def __init__(self, upstream_ctx: ssl.SSLContext) -> None:
        self.upstream_ctx = upstream_ctx
        self.transport: asyncio.Transport | None = None
        self.up: _Upstream | None = None
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.write(data)
            return
        self.head += data
        if b"\r\n\r\n" in self.head and self.transport is not None:
            self.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._intercept())

    async def _intercept(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        try:
            host, port = self.head.split()[1].decode().rsplit(":", 1)
            up = _Upstream(self)
            await loop.create_connection(
                lambda: up, "127.0.0.1", int(port), ssl=self.upstream_ctx, server_hostname=host
            )
            self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            ctx = cert_store().context_for((host,), ("http/1.1",))
            tls = await loop.start_tls(self.transport, self, ctx, server_side=True)
        except (OSError, ValueError, ssl.SSLError):
            self.transport.close()
            return
        self.transport = tls  # type: ignore[assignment]
        self.up = up

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()


async def _serve(port: int, ca_bundle: str) -> None:
    ctx = ssl.create_default_context(cafile=ca_bundle)
    ctx.set_alpn_protocols(["http/1.1"])
    server = await asyncio.get_running_loop().create_server(lambda: _Client(ctx), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        uvloop.run(_serve(int(sys.argv[1]), sys.argv[2]))
    except KeyboardInterrupt:
        pass

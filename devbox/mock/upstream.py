"""Forwarding a missed request to the real dependency (on_miss passthrough / record).

One connection per forwarded request, ``Connection: close``: misses are rare and
this keeps the client small and obviously correct. The answer comes back with
its body exactly as the upstream sent it (content-encoded, de-chunked).
"""

from __future__ import annotations

import asyncio
import ssl

from devbox.core.model import Headers, Response
from devbox.mock.wire import HOP_BY_HOP, UpstreamProtocolError, dechunk, parse_response_head
from devbox.wire.upstream import Upstream as Upstream

MAX_UPSTREAM_BODY = 64 * 1024 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or answered nonsense; the text says which."""


async def forward(
    upstream: Upstream,
    method: str,
    target: str,
    headers: Headers,
    body: bytes,
    *,
    timeout_s: float = 30.0,
) -> Response:
    """Send one request upstream and return its response (body as sent, de-chunked)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _forward(upstream, method, target, headers, body)
    except TimeoutError:
        raise UpstreamError(f"{upstream.authority}: no answer within {timeout_s:g}s") from None
    except ssl.SSLError as exc:
        raise UpstreamError(f"{upstream.authority}: TLS: {exc.reason or exc}") from None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UpstreamError(f"{upstream.authority}: {text}") from None
    except (UpstreamProtocolError, ValueError) as exc:
        raise UpstreamError(f"{upstream.authority}: invalid response: {exc}") from None


async def _forward(
    up: Upstream, method: str, target: str, headers: Headers, body: bytes
) -> Response:
    ctx = ssl.create_default_context() if up.scheme == "https" else None
    reader, writer = await asyncio.open_connection(
        up.host, up.port, ssl=ctx, server_hostname=up.host if ctx else None, limit=1 << 17
    )
    try:
        lines = [f"{method} {up.prefix}{target} HTTP/1.1", f"Host: {up.authority}"]
        for k, v in headers:
            low = k.lower()
            if low in HOP_BY_HOP or low in ("host", "expect"):
                continue
            lines.append(f"{k}: {v}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body)
        await writer.drain()
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            status, reason, rheaders = parse_response_head(head[:-4])
            if status >= 200 or status == 101:
                break  # skip 100 Continue and other interim answers
        te = ""
        length: int | None = None
        for k, v in rheaders:
            low = k.lower()
            if low == "transfer-encoding":
                te = v.lower()
            elif low == "content-length" and v.strip().isdigit():
                length = int(v.strip())
        if method == "HEAD" or status < 200 or status in (204, 304):
            data = b""
        elif "chunked" in te:
            raw = await _read_to_eof(reader)
            data, _ = dechunk(raw)
        elif length is not None:
            if length > MAX_UPSTREAM_BODY:
                raise UpstreamProtocolError(f"body of {length} bytes is too large to forward")
            data = await reader.readexactly(length)
        else:
            data = await _read_to_eof(reader)
        return Response(status=status, headers=rheaders, body=data, reason=reason)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_UPSTREAM_BODY:
            raise UpstreamProtocolError("body too large to forward")
        chunks.append(chunk)

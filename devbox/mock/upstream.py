"""Forwarding a missed request to the real dependency (on_miss passthrough / record).

One connection per forwarded request, ``Connection: close``: misses are rare and
this keeps the client small and obviously correct. The answer comes back with
its body exactly as the upstream sent it (content-encoded, de-chunked).
"""

from __future__ import annotations

import asyncio
import ssl

from devbox.core.model import Headers, Response
from devbox.mock.wire import HOP_BY_HOP, UpstreamProtocolError
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.http1 import LENGTH, Data, Head, MessageReader, ProtocolError
from devbox.wire.upstream import Upstream as Upstream

MAX_UPSTREAM_BODY = 64 * 1024 * 1024


class UpstreamError(RemoteProtocolError):
    """The upstream could not be reached or answered nonsense; the text says which. The
    mock answers it with a 502 (``code``), like every remote protocol error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=502)


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
    except (UpstreamProtocolError, ProtocolError, ValueError) as exc:
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
        return await _read_response(reader, method)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def _read_response(reader: asyncio.StreamReader, method: str) -> Response:
    """The upstream's final response, read by the wire layer's HTTP/1.1 reader (the one
    place framing is written): interim 1xx skipped, no body for HEAD/204/304, chunked
    or by length or until close; the body de-chunked, content-encoded as sent."""
    parser = MessageReader(is_request=False)
    parser.expect(method)
    final: Head | None = None
    body: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(1 << 16)
        if chunk:
            parser.receive(chunk)
        else:
            parser.eof()
        while (ev := parser.next_event()) is not None:
            if isinstance(ev, Head):
                if not ev.interim:
                    final = ev
                    if ev.framing == LENGTH and ev.length > MAX_UPSTREAM_BODY:
                        raise UpstreamProtocolError(
                            f"body of {ev.length} bytes is too large to forward"
                        )
            elif isinstance(ev, Data):
                size += len(ev.decoded)
                if size > MAX_UPSTREAM_BODY:
                    raise UpstreamProtocolError("body too large to forward")
                body.append(ev.decoded)
            elif final is not None:  # End of the final response
                headers = tuple(final.headers)
                return Response(final.status, headers, b"".join(body), final.reason)
        if not chunk:
            raise UpstreamProtocolError("connection closed before the response ended")

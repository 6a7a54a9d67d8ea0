"""A small, fast HTTP/1.1 client on asyncio, for replaying requests.

Theory of operation
-------------------
Replay sends many small requests over a few keep-alive connections and needs
the whole response (to diff it) plus an honest latency. ``Connection`` is an
``asyncio.Protocol``: the response is parsed in ``data_received`` by the sans-IO
reader, with no stream objects or per-line coroutines in between,
so one core drives thousands of requests per second. One request is in flight
per connection (no pipelining: a replay must see each response before the next
request of its lane).

Framing is the wire layer's (``devbox.wire.http1.MessageReader``, the one HTTP/1.1
reader devbox has): ``Content-Length``, ``Transfer-Encoding: chunked`` (trailers
skipped), read-until-close, no body for HEAD/1xx/204/304; interim 1xx responses are
skipped. Bodies are decoded (gzip, deflate, br, zstd) because recordings hold decoded
bodies; the headers are kept as the server sent them.

Requests are prepared once (``prepare``) into the exact bytes to write, so a
load replay that sends the same exchange 100,000 times formats it once.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from devbox.core import codings
from devbox.core.model import Request, Response
from devbox.errors import UsageError
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.http1 import (
    CLOSE,
    TUNNEL,
    Data,
    End,
    Head,
    MessageReader,
    ProtocolError,
    whole_response,
)

# hop-by-hop and framing headers: ours to set, never copied from the recording
_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "content-length",
        "host",
        "trailer",
        "proxy-authorization",
        "expect",
    }
)
# every coding replay decodes before diffing, so every one it may keep in Accept-Encoding
_DECODABLE = (*codings.DECODABLE, "identity")


class HttpError(RemoteProtocolError):
    """The exchange failed at the transport level (refused, reset, timeout, garbage): the
    wire layer's remote error, so every protocol failure has one base."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        # False when nothing reached the server: safe to retry on a fresh connection
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    base_path: str  # prefix added to every request path ("" for most targets)

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.base_path}"


def parse_target(url: str) -> Target:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--target {url!r}: expected http://HOST:PORT", hint="e.g. http://127.0.0.1:8080"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"--target {url!r}: invalid port") from None
    return Target(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


@dataclass(frozen=True, slots=True)
class Prepared:
    """The bytes of one request, ready to write, and what the parser must know."""

    data: bytes
    head: bool  # HEAD: the response has no body whatever its headers say
    # safe to resend when a reused keep-alive connection turns out to be closed
    idempotent: bool = True


def _accept_encoding(value: str) -> str | None:
    # only codings we decode: asking for another would leave bodies undiffable
    keep = [t.strip() for t in value.split(",") if t.split(";")[0].strip().lower() in _DECODABLE]
    return ", ".join(keep) if keep else None


def _encode_body(body: bytes, encoding: str | None) -> bytes:
    try:
        return codings.encode(body, encoding)
    except codings.CodingError:
        return body


def prepare(req: Request, target: Target) -> Prepared:
    """Serialize a recorded request for ``target``; its body is re-encoded if it was."""
    body = _encode_body(req.body, req.header("content-encoding")) if req.body else b""
    lines = [
        f"{req.method} {target.base_path}{req.target or '/'} HTTP/1.1",
        f"Host: {target.authority}",
    ]
    for name, value in req.headers:
        low = name.lower()
        if low in _DROP:
            continue
        if low == "accept-encoding":
            kept = _accept_encoding(value)
            if kept is None:
                continue
            value = kept
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            continue
        lines.append(f"{name}: {value}")
    if body or req.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n"
    idempotent = req.method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
    return Prepared(head + body, req.method == "HEAD", idempotent)


# ---------------------------------------------------------------- the protocol


class _Parser:
    """One response, read by the wire layer's HTTP/1.1 reader (``devbox.wire.http1``:
    the one place HTTP/1.1 framing is written); ``feed`` returns the Response when it is
    complete. Interim 1xx heads are skipped; HEAD, 204 and 304 have no body."""

    __slots__ = ("_body", "_head", "_method", "_reader", "keep_alive")

    def __init__(self, head: bool) -> None:
        # the reader frames a response by the method it answers: only HEAD matters here
        self._method = "HEAD" if head else "GET"
        self._reader: MessageReader | None = None
        self._head: Head | None = None
        self._body: list[bytes] = []
        self.keep_alive = True

    def feed(self, data: bytes) -> Response | None:
        reader = self._reader
        if reader is None:
            try:
                # most responses arrive whole in one read: no reader needed
                whole = whole_response(data, self._method)
            except ProtocolError as exc:
                raise HttpError(str(exc)) from None
            if whole is not None:
                self._head, body = whole
                return self._finish(body)
            reader = self._reader = MessageReader(is_request=False)
            reader.expect(self._method)
        reader.receive(data)
        return self._events(reader)

    def eof(self) -> Response | None:
        reader = self._reader
        if reader is None:
            reader = self._reader = MessageReader(is_request=False)
            reader.expect(self._method)
        reader.eof()
        return self._events(reader)

    def _events(self, reader: MessageReader) -> Response | None:
        try:
            while (ev := reader.next_event()) is not None:
                if type(ev) is Data:
                    if ev.decoded:
                        self._body.append(ev.decoded)
                elif type(ev) is End:
                    return self._finish(b"".join(self._body))
                else:
                    assert isinstance(ev, Head)
                    if not ev.interim:  # a 1xx before the real response: skipped
                        self._head = ev
        except ProtocolError as exc:
            raise HttpError(str(exc)) from None
        return None

    def _finish(self, body: bytes) -> Response:
        head = self._head
        assert head is not None
        # read to close or turned into a tunnel: this connection carries nothing more
        # (a whole response from ``whole_response`` was framed by its length)
        self.keep_alive = head.keep_alive and head.framing not in (CLOSE, TUNNEL)
        enc = head.index.get("content-encoding")
        if body and enc:
            enc = enc.strip().lower()
            if enc != "identity":
                body = _decode(body, enc)
        return Response(head.status, tuple(head.headers), body, head.reason, head.version)


def _decode(body: bytes, enc: str) -> bytes:
    if not codings.decodable(enc):
        return body  # a coding we never asked for: kept as sent, the diff shows bytes
    try:
        return codings.decode(body, enc)
    except codings.CodingError as exc:
        raise HttpError(f"cannot decode {enc} body: {exc}") from None


class Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends one request and awaits its response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser: _Parser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._got_bytes = False
        self.closed = False
        self.used = 0
        # one timer per connection, not per request: it re-arms itself for the deadline of
        # the request in flight when it fires early (arming one per request costs more
        # than the rest of the exchange's bookkeeping)
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._timeout = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser, waiter = self._parser, self._waiter
        if parser is None or waiter is None or waiter.done():
            # bytes nobody asked for: the connection can no longer be trusted
            self.close()
            return
        self._got_bytes = True
        try:
            resp = parser.feed(data)
        except HttpError as exc:
            waiter.set_exception(exc)
            self.close()
            return
        if resp is not None:
            self._parser = None
            if not parser.keep_alive:
                self.close()
            waiter.set_result(resp)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        parser, waiter = self._parser, self._waiter
        self._parser = None
        if waiter is None or waiter.done():
            return
        if parser is not None:
            try:
                resp = parser.eof()
            except HttpError as err:
                waiter.set_exception(err)
                return
            if resp is not None:
                waiter.set_result(resp)
                return
        why = str(exc) if exc else "connection closed by the service"
        waiter.set_exception(HttpError(why, sent=self._got_bytes))

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    def begin(self, prepared: Prepared, timeout: float) -> asyncio.Future[Response]:
        """Write the request; the future completes with its response (or an HttpError)."""
        if self.closed or self._transport is None:
            raise HttpError("connection closed", sent=False)
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self._waiter = waiter
        self._parser = _Parser(prepared.head)
        self._got_bytes = False
        self.used += 1
        self._transport.write(prepared.data)
        self._timeout = timeout
        self._deadline = self._loop.time() + timeout
        if self._timer is None:
            self._timer = self._loop.call_later(timeout, self._on_timer)
        return waiter

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nothing in flight: the next request arms it again
        left = self._deadline - self._loop.time()
        if left > 0:
            self._timer = self._loop.call_later(left, self._on_timer)
            return
        waiter.set_exception(HttpError(f"timed out after {self._timeout:g}s"))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def end(self, waiter: asyncio.Future[Response]) -> None:
        if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
            # a failed or abandoned exchange leaves the connection in an unknown state
            self.close()

    async def request(self, prepared: Prepared, timeout: float) -> Response:
        waiter = self.begin(prepared, timeout)
        try:
            return await waiter
        finally:
            self.end(waiter)


def service_tls(target: Target, alpn: tuple[str, ...] = ()) -> ssl.SSLContext | None:
    """The TLS of an ``https`` target (None for ``http``), certificate not verified: a
    local service under test usually has a self-signed one."""
    if target.scheme != "https":
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def connect_failed(target: Target, exc: OSError) -> HttpError:
    """The error of a connection to the service that could not be made (nothing sent)."""
    if isinstance(exc, TimeoutError):
        return HttpError(f"connect to {target.authority} timed out", sent=False)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return HttpError(f"cannot connect to {target.authority}: {reason}", sent=False)


class Client:
    """A lane's client: one keep-alive connection, reopened when the service closes it."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self._conn: Connection | None = None
        self._ssl = service_tls(target)

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Connection(loop), self.target.host, self.target.port, ssl=self._ssl
                ),
                self.timeout,
            )
        except OSError as exc:  # TimeoutError among them
            raise connect_failed(self.target, exc) from None
        return proto

    async def send(self, prepared: Prepared) -> tuple[Response, float]:
        """Send and await the response; returns it with the latency in milliseconds."""
        for attempt in (0, 1):
            conn = self._conn
            fresh = conn is None or conn.closed
            if fresh:
                conn = self._conn = await self._connect()
            assert conn is not None
            start = time.perf_counter()
            # begin/end instead of ``await conn.request``: one coroutine less per request
            waiter = conn.begin(prepared, self.timeout)
            try:
                resp = await waiter
            except HttpError as exc:
                # a reused keep-alive connection the service had already closed: retry once
                if attempt == 0 and not fresh and not exc.sent and prepared.idempotent:
                    self._conn = None
                    continue
                raise
            finally:
                conn.end(waiter)
            return resp, (time.perf_counter() - start) * 1000.0
        raise HttpError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

"""A small, fast HTTP/1.1 client on asyncio, for replaying requests.

Theory of operation
-------------------
Replay sends many small requests over a few keep-alive connections and needs
the whole response (to diff it) plus an honest latency. ``Connection`` is an
``asyncio.Protocol``: the response is parsed in ``data_received`` with a few
``bytes.find`` calls, with no stream objects or per-line coroutines in between,
so one core drives thousands of requests per second. One request is in flight
per connection (no pipelining: a replay must see each response before the next
request of its lane).

Framing: ``Content-Length``, ``Transfer-Encoding: chunked`` (trailers skipped),
read-until-close, no body for HEAD/1xx/204/304; interim 1xx responses are
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
from devbox.core.model import Headers, Request, Response
from devbox.errors import UsageError
from devbox.wire.contract import RemoteProtocolError

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
MAX_HEADER_BYTES = 256 * 1024


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


# A service answers most requests with the same head bytes (a Date header changes once a
# second): the parse of a head is kept by its bytes, so a load replay parses each once.
_HeadParse = tuple[str, int, str, Headers, int | None, bool, str, str]
_HEADS: dict[bytes, _HeadParse] = {}
_HEAD_CACHE_SIZE = 512


def _parse_head_bytes(head: bytes) -> _HeadParse:
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
        raise HttpError(f"not an HTTP response: {lines[0][:60]!r}")
    try:
        status = int(status_line[1])
    except ValueError:
        raise HttpError(f"bad status line: {lines[0][:60]!r}") from None
    reason = status_line[2] if len(status_line) > 2 else ""
    headers = []
    length: int | None = None
    chunked = False
    conn = ""
    enc = ""
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        headers.append((name, value))
        low = name.lower()
        if low == "content-length":
            try:
                length = int(value)
            except ValueError:
                raise HttpError(f"bad Content-Length {value!r}") from None
        elif low == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif low == "connection":
            conn = value.lower()
        elif low == "content-encoding":
            enc = value.strip().lower()
    return status_line[0], status, reason, tuple(headers), length, chunked, conn, enc


class _Parser:
    """Incremental response parser; ``feed`` returns a Response when one is complete."""

    __slots__ = (
        "_body",
        "_buf",
        "_chunk_left",
        "_enc",
        "_head",
        "_headers",
        "_keep_alive",
        "_mode",
        "_reason",
        "_remaining",
        "_status",
        "_version",
        "keep_alive",
    )

    def __init__(self, head: bool) -> None:
        self._head = head
        self._buf = bytearray()
        self._mode = 0  # 0 headers, 1 length, 2 chunked, 3 until close, 4 done
        self._status = 0
        self._reason = ""
        self._version = "HTTP/1.1"
        self._headers: Headers = ()
        self._enc = ""
        self._remaining = 0
        self._chunk_left = -1
        self._body: bytes | bytearray = bytearray()
        self.keep_alive = True

    def feed(self, data: bytes) -> Response | None:
        if self._mode == 0 and not self._buf:
            # the common case, a whole Content-Length response in one read: sliced from
            # ``data`` without going through the buffer
            end = data.find(b"\r\n\r\n")
            if end >= 0 and self._parse_head(data[:end]):
                start = end + 4
                if self._mode == 1:
                    stop = start + self._remaining
                    if len(data) >= stop:
                        self._body = data[start:stop]
                        if len(data) > stop:
                            self._buf += data[stop:]
                        return self._finish()
                self._buf += data[start:]
                return self._advance()
        self._buf += data
        return self._advance()

    def _advance(self) -> Response | None:
        while True:
            if self._mode == 0:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEADER_BYTES:
                        raise HttpError("response headers larger than 256 KiB")
                    return None
                head = bytes(self._buf[:end])
                del self._buf[: end + 4]
                if not self._parse_head(head):
                    continue  # an interim 1xx response: the real one follows
            if self._mode == 1:
                if len(self._buf) < self._remaining:
                    return None
                self._body = self._buf[: self._remaining]
                del self._buf[: self._remaining]
                return self._finish()
            if self._mode == 2:
                done = self._chunks()
                return self._finish() if done else None
            if self._mode == 3:
                return None
            return self._finish()

    def _parse_head(self, head: bytes) -> bool:
        parsed = _HEADS.get(head)
        if parsed is None:
            parsed = _parse_head_bytes(head)
            if len(_HEADS) >= _HEAD_CACHE_SIZE:
                _HEADS.clear()
            _HEADS[head] = parsed
        version, status, reason, headers, length, chunked, conn, enc = parsed
        if 100 <= status < 200 and status != 101:
            return False
        self._version = version
        self._status = status
        self._reason = reason
        self._headers = headers
        self._enc = enc
        self.keep_alive = "close" not in conn and (version != "HTTP/1.0" or "keep-alive" in conn)
        if self._head or status in (204, 304):
            self._mode = 4
        elif chunked:
            self._mode = 2
        elif length is not None:
            self._mode = 1
            self._remaining = length
        else:
            self._mode = 3
            self.keep_alive = False
        return True

    def _chunks(self) -> bool:
        buf = self._buf
        while True:
            if self._chunk_left < 0:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    return False
                size_text = bytes(buf[:eol]).split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HttpError(f"bad chunk size {size_text[:20]!r}") from None
                del buf[: eol + 2]
                if size == 0:
                    # trailers end with an empty line
                    end = buf.find(b"\r\n")
                    while end > 0:
                        del buf[: end + 2]
                        end = buf.find(b"\r\n")
                    if end < 0:
                        self._chunk_left = -2
                        return False
                    del buf[:2]
                    return True
                self._chunk_left = size
            if self._chunk_left == -2:
                end = buf.find(b"\r\n")
                if end < 0:
                    return False
                if end == 0:
                    del buf[:2]
                    return True
                del buf[: end + 2]
                continue
            if len(buf) < self._chunk_left + 2:
                return False
            self._body += buf[: self._chunk_left]
            del buf[: self._chunk_left + 2]
            self._chunk_left = -1

    def eof(self) -> Response | None:
        if self._mode == 3:
            self._body = self._buf
            self._buf = bytearray()
            return self._finish()
        return None

    def _finish(self) -> Response:
        body = bytes(self._body)
        enc = self._enc
        if body and enc and enc != "identity":
            body = _decode(body, enc)
        self._mode = 4
        return Response(self._status, self._headers, body, self._reason, self._version)


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


class Client:
    """A lane's client: one keep-alive connection, reopened when the service closes it."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self._conn: Connection | None = None
        self._ssl: ssl.SSLContext | None = None
        if target.scheme == "https":
            # a local service under test usually has a self-signed certificate
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Connection(loop), self.target.host, self.target.port, ssl=self._ssl
                ),
                self.timeout,
            )
        except TimeoutError:
            raise HttpError(f"connect to {self.target.authority} timed out", sent=False) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise HttpError(
                f"cannot connect to {self.target.authority}: {reason}", sent=False
            ) from None
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

"""One client connection of an HTTP mock: bytes in, parser callbacks, answers out in order.

Theory of operation
-------------------
Each connection is a ``_Conn`` (an ``asyncio.Protocol``, no streams) feeding bytes to
httptools (or the pure-Python ``PyRequestParser``: the same callbacks, the same
answers); the callbacks collect the request-target, only the headers matching needs
and the body, enforce the size limits (414, 431, 413) and the version (505) for both
parsers alike, and ``on_message_complete`` hands the request to the owner's
``handle``. The connection knows nothing of matching: ``ConnOwner`` is all it sees of
the server.

Responses leave a connection in request order even when some are delayed (timing,
faults) or forwarded upstream: a connection with nothing pending writes at once;
otherwise it queues ``_Slot``s and flushes the ready prefix. Pipelined requests are
read until ``Limits.max_pipeline`` answers are pending, then reading pauses (as it
does when the client stops reading what we write).

Bad input never stops the server: a malformed request gets a 400 (see
``devbox.wire.http1`` for the rules), a client too slow to send its request 408, and
the connection is closed (the stream cannot be resynchronised); every other
connection is unaffected.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from collections.abc import Callable
from itertools import chain
from typing import Any, Protocol, cast

from devbox.mock.answer import Limits
from devbox.mock.pyparser import PyParserError, PyParserUpgrade, PyRequestParser
from devbox.mock.send_watch import SendWatch
from devbox.mock.wire import rejection
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.http1 import ProtocolError
from devbox.wire.tls import HTTP1, sniff

try:
    import httptools

    _ParserError: tuple[type[BaseException], ...] = (httptools.HttpParserError, PyParserError)
    _ParserUpgrade: tuple[type[BaseException], ...] = (
        httptools.HttpParserUpgrade,
        PyParserUpgrade,
    )
    HAVE_HTTPTOOLS = True
except ImportError:  # pragma: no cover - httptools is a dependency; this is the fallback
    _ParserError = (PyParserError,)
    _ParserUpgrade = (PyParserUpgrade,)
    HAVE_HTTPTOOLS = False


class ConnOwner(Protocol):
    """What a connection sees of its server: limits, the parser, counters, ``handle``."""

    limits: Limits
    parser_factory: Callable[[Any], Any]
    header_keys: dict[bytes, str | None]
    need_headers: bool
    tick: float
    connections: set[_Conn]
    connections_total: int
    backpressure: int
    rejected: int
    timeouts: int

    def header_key(self, name: bytes) -> str | None: ...

    def handle(self, conn: _Conn, method: str, target: str, body: bytes, keep: bool) -> None: ...

    def internal_error(self, exc: BaseException) -> None: ...

    def switch_protocol(self, conn: _Conn, first: bytes, kind: str) -> None:
        """A connection's first bytes are TLS or the h2c preface: hand it over."""
        ...


class _Reject(RemoteProtocolError):
    """Raised in a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, code=status)
        self.status = status


class _Slot:
    """A response position on a connection, filled now or later, written in order."""

    __slots__ = ("close", "data", "ready", "reset")

    def __init__(self) -> None:
        self.data = b""
        self.ready = False
        self.close = False
        self.reset = False


class _Conn(asyncio.Protocol):
    __slots__ = (
        "body",
        "chunk",
        "closing",
        "head_raw",
        "headers",
        "hv",
        "in_head",
        "in_request",
        "known",
        "last",
        "lim",
        "parser",
        "pre",
        "queue",
        "read_paused",
        "requests",
        "sends",
        "sent",
        "srv",
        "started",
        "transport",
        "url",
        "write_paused",
    )

    def __init__(self, srv: ConnOwner) -> None:
        self.srv = srv
        self.parser: Any = None
        self._new_parser()
        self.transport: asyncio.Transport | None = None
        self.lim = srv.limits
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.hv: dict[str, str] = _EMPTY
        self.known = srv.header_keys
        self.chunk = 0
        self.body: bytes | bytearray | None = None
        self.head_raw = 0
        self.in_head = False
        self.in_request = False
        self.started = srv.tick
        self.last = srv.tick
        self.requests = 0
        self.queue: deque[_Slot] = deque()
        self.closing = False
        self.read_paused = False
        self.write_paused = False
        self.pre = b""  # a connection's first bytes while they may be the h2c preface
        self.sends = SendWatch()
        self.sent = 0  # bytes handed to the transport (what the client took: ``sends``)

    # ------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self.srv.connections.add(self)
        self.srv.connections_total += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.srv.connections.discard(self)
        self.closing = True
        self.queue.clear()
        self.transport = None

    def pause_writing(self) -> None:
        # the client does not read what we write: stop reading what it sends
        self.write_paused = True
        self.srv.backpressure += 1
        t = self.transport
        if t is not None and not self.read_paused and not t.is_closing():
            self.read_paused = True
            t.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._maybe_resume()

    def data_received(self, data: bytes) -> None:
        # asyncio never delivers an empty read, but the differential tests feed arbitrary
        # cuts: an empty one carries no byte to sniff or parse
        if self.closing or not data:
            return
        self.last = self.srv.tick
        self.chunk = len(data)
        if self.in_head:
            # a header still being received: bound what the parser buffers for it
            self.head_raw += len(data)
            lim = self.lim
            if self.head_raw > lim.max_header_bytes + lim.max_request_line + 4096:
                self.reject(431, "request header fields too large")
                return
        elif not self.in_request:
            if self.requests == 0 and (self.pre or data[0] == 0x16 or data[0] == 0x50):
                # TLS or "P"RI (the h2c preface): another protocol on this port
                if self.pre:
                    data = self.pre + data
                kind = sniff(data)
                if kind is None:
                    self.pre = data  # part of the h2c preface so far
                    return
                if kind != HTTP1:
                    self.srv.switch_protocol(self, data, kind)
                    return
                self.pre = b""
            # the first bytes of a request: its header timeout runs from now, whichever
            # parser (the pure-Python one calls back only once the head is complete)
            self.in_request = True
            self.in_head = True
            self.started = self.last
        rest = b""
        try:
            self.parser.feed_data(data)
        except _Reject as r:
            self.reject(r.status, r.message)
        except _ParserUpgrade as up:
            rest = self._upgrade_refused(data, up)
        except _ParserError as exc:
            ctx = exc.__context__
            if isinstance(ctx, _Reject):
                self.reject(ctx.status, ctx.message)
            elif ctx is not None and not isinstance(ctx, _ParserError):
                self.srv.internal_error(ctx)
                self.reject(500, f"devbox mock internal error: {type(ctx).__name__}: {ctx}")
            else:
                status = _parser_status(exc)
                word = "unsupported" if status >= 500 else "malformed"
                self.reject(status, f"{word} request: {_parser_reason(exc)}")
        if rest:  # outside the handler: a later failure is not read as the upgrade's
            self.data_received(rest)

    # ------------------------------------------------------------ parser callbacks
    # (the hot path: each is called for every request, some for every header)

    def on_url(self, url: bytes) -> None:
        if not self.in_request:
            # a request pipelined behind another in the same read (no on_message_begin
            # callback: one Python call less per request)
            self.in_request = True
            self.in_head = True
            self.started = self.srv.tick
        self.url += url  # may arrive in pieces
        if len(self.url) > self.lim.max_request_line:
            raise _Reject(414, "request-target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        headers = self.headers
        lim = self.lim
        version = self.parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _Reject(505, f"HTTP/{version} is not supported: HTTP/1.1 and HTTP/1.0 are")
        if len(headers) > lim.max_headers:
            raise _Reject(431, f"more than {lim.max_headers} request header fields")
        # a head that began and ended inside one read is no larger than that read
        if self.head_raw or self.chunk > lim.max_header_bytes:
            size = sum(map(len, chain.from_iterable(headers))) + 4 * len(headers)
            if size > lim.max_header_bytes:
                raise _Reject(431, "request header fields too large")
        if not self.srv.need_headers and self.parser.get_method() in _BODYLESS:
            # nothing on the hot path reads a header of a GET (the slow paths read them all)
            return
        known = self.known
        hv = _EMPTY
        for name, value in headers:
            # exact name bytes -> captured key or None: no lower() per header per request
            key = known.get(name, _UNSEEN)
            if key is None:
                continue
            if key is _UNSEEN:
                key = self.srv.header_key(name)
                if key is None:
                    continue
            text = value.decode("latin-1")
            if text and text[-1] in " \t":
                # llhttp keeps trailing whitespace, the RFC drops it (as our parser does)
                text = text.rstrip(" \t")
            if hv is _EMPTY:
                hv = {key: text}
            else:
                hv[key] = f"{hv[key]}, {text}" if key in hv else text
        self.hv = hv
        if "content-length" in hv:
            cl = hv["content-length"]
            if cl.isdigit() and int(cl) > lim.max_body:
                raise _Reject(413, "request body too large")
        if "expect" in hv and hv["expect"].lower() == "100-continue" and not self.queue:
            assert self.transport is not None
            self.transport.write(_CONTINUE)
            self.sent += len(_CONTINUE)

    def header_value(self, key: str) -> str | None:
        """A request header by lower-case name, from all of them (slow paths)."""
        want = key.encode("latin-1")
        values = [v.decode("latin-1") for n, v in self.headers if n.lower() == want]
        return ", ".join(values) if values else None

    def on_body(self, chunk: bytes) -> None:
        b = self.body
        if b is None:
            self.body = b = chunk
        elif isinstance(b, bytes):
            self.body = b = bytearray(b)
            b += chunk
        else:
            b += chunk
        if len(b) > self.lim.max_body:
            raise _Reject(413, "request body too large")

    def on_message_complete(self) -> None:
        self.requests += 1
        b = self.body
        body = b"" if b is None else b if isinstance(b, bytes) else bytes(b)
        p = self.parser
        m = p.get_method()
        self.srv.handle(
            self,
            _METHODS.get(m) or m.decode("latin-1"),
            self.url.decode("latin-1"),
            body,
            p.should_keep_alive(),
        )
        # ready for the next request on this connection
        self.in_request = False
        self.in_head = False
        self.url = b""
        self.headers = []
        self.hv = _EMPTY
        self.body = None
        self.head_raw = 0
        q = self.queue
        if q and len(q) >= self.lim.max_pipeline and not self.read_paused:
            self.read_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def http10(self) -> bool:
        return bool(self.parser.get_http_version() == "1.0")

    # ------------------------------------------------------------ answering in order

    def respond(self, data: bytes, close: bool = False, delay: float = 0.0) -> None:
        if delay <= 0 and not self.queue:
            self._write(data, close)
            return
        slot = _Slot()
        self.queue.append(slot)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.fill, slot, data, close, False)
        else:
            self.fill(slot, data, close, False)

    def defer(self) -> _Slot:
        """A position for an answer that arrives later (forwarded upstream, reload)."""
        slot = _Slot()
        self.queue.append(slot)
        return slot

    def fill(self, slot: _Slot, data: bytes, close: bool, reset: bool) -> None:
        slot.data = data
        slot.close = slot.close or close  # _close_after_answers may have asked already
        slot.reset = reset
        slot.ready = True
        q = self.queue
        while q and q[0].ready:
            s = q.popleft()
            if s.reset:
                self.reset()
                return
            self._write(s.data, s.close)
            if self.transport is None or self.transport.is_closing():
                return
        self._maybe_resume()

    def reset_later(self, delay: float) -> None:
        slot = _Slot()
        self.queue.append(slot)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.fill, slot, b"", False, True)
        else:
            self.fill(slot, b"", False, True)

    def _write(self, data: bytes, close: bool) -> None:
        # ``closing`` only stops reading: answers still owed are written until the close
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        self.sent += len(data)
        if close:
            self.closing = True
            t.close()  # flushes what was written first

    def _maybe_resume(self) -> None:
        if (
            self.read_paused
            and not self.write_paused
            and len(self.queue) < self.srv.limits.max_pipeline
            and self.transport is not None
            and not self.closing
        ):
            self.read_paused = False
            self.transport.resume_reading()

    def reject(self, status: int, message: str) -> None:
        """Answer a request we cannot serve, after those before it, and close."""
        self.srv.rejected += 1
        data = rejection(status, message)
        self.in_head = False
        if self.queue:
            self.fill(self.defer(), data, True, False)
        else:
            self._write(data, True)
        self.closing = True
        t = self.transport
        if t is not None and not self.read_paused and not t.is_closing():
            self.read_paused = True
            t.pause_reading()

    def _upgrade_refused(self, data: bytes, up: BaseException) -> bytes:
        """What follows a request asking to switch protocols, for a fresh parser."""
        if self.parser.get_method() == b"CONNECT":
            self._close_after_answers()  # a tunnel a mock cannot open
            return b""
        # a mock takes no Upgrade (h2c and TLS are spoken on this port from the first
        # byte): the request is answered in HTTP/1.1 and the connection reads on, as
        # nginx's does (curl --http2 http://... asks for h2c, then reuses it); a fresh
        # parser takes what follows the request (args[0]: where that begins)
        at = up.args[0] if up.args and isinstance(up.args[0], int) else len(data)
        self._new_parser()
        return data[at:] if 0 < at < len(data) else b""

    def _close_after_answers(self) -> None:
        if self.queue:
            self.queue[-1].close = True
        elif self.transport is not None:
            self.closing = True
            self.transport.close()

    def _new_parser(self) -> None:
        self.parser = self.srv.parser_factory(self)
        if isinstance(self.parser, PyRequestParser):
            # the head's size is bounded below (data_received), alike for both parsers
            self.parser.max_head = 1 << 40

    def reset(self) -> None:
        """Abort with a TCP reset, as a crashed upstream would."""
        t = self.transport
        self.closing = True
        if t is None:
            return
        sock = t.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        t.abort()

    def timed_out(self, now: float) -> None:
        """Called by the sweeper: close connections that are idle or too slow."""
        lim = self.srv.limits
        t = self.transport
        if t is not None and not self.closing:
            held = t.get_write_buffer_size()
            taken = self.sent - held
            if self.sends.stalled(now, taken, held > 0, self.last, lim.send_timeout_s):
                self.srv.timeouts += 1
                self.reset()  # what it did not take is dropped: nothing is left to say
                return
        if self.queue or self.closing:
            return
        if self.in_request:
            limit = lim.header_timeout_s if self.in_head else lim.request_timeout_s
            if now - self.started > limit:
                self.srv.timeouts += 1
                self.reject(408, "request not received in time")
        elif self.requests == 0:
            if now - self.last > lim.header_timeout_s:
                self.srv.timeouts += 1
                self.closing = True
                if self.transport is not None:
                    self.transport.close()
        elif now - self.last > lim.idle_timeout_s:
            self.closing = True
            if self.transport is not None:
                self.transport.close()


# shared by requests that carry none of the captured headers; never mutated
_EMPTY: dict[str, str] = {}
_UNSEEN = "\0"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BODYLESS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE"})
_METHODS = {
    m.encode(): m
    for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT")
}


def _parser_status(exc: BaseException) -> int:
    """The status for a parse error, the same whichever parser raised it."""
    if isinstance(exc, ProtocolError):
        return exc.status
    text = str(exc)
    # llhttp reads HTTP/0.9 and 2.0 (505 in on_headers_complete) and refuses others
    if text.startswith(("Invalid HTTP version", "Pause on PRI", "Expected HTTP/2")):
        return 505
    if text.startswith("Request has invalid `Transfer-Encoding`"):
        return 501  # a coding we do not implement, without chunked
    return 400


def _parser_reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]

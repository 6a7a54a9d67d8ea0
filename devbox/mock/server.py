"""One mock server: a dependency's recorded responses served over HTTP/1.1.

Theory of operation
-------------------
``MockServer`` owns the recorded exchanges of one dependency, their
``MatchIndex`` and one ``Prepared`` (the exact response bytes) per exchange. Each
connection is a ``_Conn`` (an ``asyncio.Protocol``, no streams) feeding bytes to
httptools (or the pure-Python ``PyRequestParser``); the parser's callbacks
collect the request-target, only the headers matching needs and the body, and
``on_message_complete`` hands them to ``MockServer.handle``.

The hot path is: signature straight from the wire (``MatchIndex.key_raw``), one
dict lookup, one ``transport.write`` of prepared bytes. Everything else (a
redacted second lookup, explanations, fuzzy matching, passthrough, record,
timing, faults, admin requests) happens only when it is needed.

Responses leave a connection in request order even when some are delayed
(timing, faults) or forwarded upstream: a connection with nothing pending writes
at once; otherwise it queues ``_Slot``s and flushes the ready prefix. Pipelined
requests are read until ``Limits.max_pipeline`` answers are pending, then reading
pauses (as it does when the client stops reading what we write).

Bad input never stops the server: a malformed request gets a 400, an over-long
request line 414, too many or too large headers 431, a too large body 413, a
client too slow to send its request 408, and the connection is closed (the
stream cannot be resynchronised); every other connection is unaffected.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import random
import socket
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

import orjson

from devbox.core.events import Event, MockMiss, MockStats, Problem
from devbox.core.matching import Candidate, MatchIndex, parse_query_fast
from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.core.profile import Dependency, RedactRules
from devbox.core.redact import Redactor
from devbox.errors import DevboxError
from devbox.mock.pyparser import (
    PyParserError,
    PyParserHeadTooLarge,
    PyParserUpgrade,
    PyRequestParser,
)
from devbox.mock.upstream import Upstream, UpstreamError, forward
from devbox.mock.wire import HOP_BY_HOP, Prepared, decode_body, serialize
from devbox.store import PARTIAL_SUFFIX, SUFFIX, RecordingWriter, load_path

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

ADMIN_PREFIX = "/__devbox/"
MODES = ("replay", "passthrough", "record")
MISS_STATUS = 502
_MISS_LOG = 200


def mode_for(on_miss: str) -> str:
    return "replay" if on_miss == "fail" else on_miss


@dataclass(frozen=True, slots=True)
class Limits:
    """Protection against bad or hostile clients; every number is per request or connection."""

    max_request_line: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body: int = 16 * 1024 * 1024
    header_timeout_s: float = 10.0  # from a request's first byte (or the connect) to its headers
    request_timeout_s: float = 60.0  # from a request's first byte to its last
    idle_timeout_s: float = 75.0  # a keep-alive connection with no request in progress
    max_pipeline: int = 64  # answers pending on one connection before reading pauses
    journal_size: int = 10_000
    journal_body: int = 64 * 1024
    upstream_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class MockSpec:
    """What one mock serves and how."""

    dependency: Dependency  # name, match rules, on_miss, timing, faults, upstream
    # a recording directory or file: loaded, watched for changes, appended to in record mode
    recordings: Path | None = None
    # a fixed set (an imported HAR), used instead of ``recordings``
    exchanges: tuple[Exchange, ...] | None = None
    # live requests are redacted with these rules before matching; None: not redacted
    # (right when the exchanges were not redacted either, as with a HAR file)
    redact: RedactRules | None = None


@dataclass(frozen=True, slots=True)
class MissRecord:
    seq: int
    at: float
    method: str
    target: str
    explanation: str
    hint: str
    candidates: tuple[Candidate, ...]
    action: str  # "failed" | "passthrough" | "recorded" | "upstream error"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "method": self.method,
            "target": self.target,
            "explanation": self.explanation,
            "hint": self.hint,
            "action": self.action,
            "candidates": [c.to_dict() for c in self.candidates],
        }


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Slot:
    """A response position on a connection, filled now or later, written in order."""

    __slots__ = ("close", "data", "ready", "reset")

    def __init__(self) -> None:
        self.data = b""
        self.ready = False
        self.close = False
        self.reset = False


# ---------------------------------------------------------------- the connection


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
        "queue",
        "read_paused",
        "requests",
        "srv",
        "started",
        "transport",
        "url",
        "write_paused",
    )

    def __init__(self, srv: MockServer) -> None:
        self.srv = srv
        self.parser: Any = srv.parser_factory(self)
        if isinstance(self.parser, PyRequestParser):
            lim = srv.limits
            self.parser.max_head = lim.max_header_bytes + lim.max_request_line + 4096
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
        if self.closing:
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
            # the first bytes of a request: its header timeout runs from now, whichever
            # parser (the pure-Python one calls back only once the head is complete)
            self.in_request = True
            self.in_head = True
            self.started = self.last
        try:
            self.parser.feed_data(data)
        except _Reject as r:
            self.reject(r.status, r.message)
        except _ParserUpgrade:
            # no protocol switching in a mock: answer what was asked, then close
            self.finish_after_pending()
        except PyParserHeadTooLarge:
            self.reject(431, "request header fields too large")
        except _ParserError as exc:
            ctx = exc.__context__
            if isinstance(ctx, _Reject):
                self.reject(ctx.status, ctx.message)
            elif ctx is not None and not isinstance(ctx, _ParserError):
                self.srv.internal_error(ctx)
                self.reject(500, f"devbox mock internal error: {type(ctx).__name__}: {ctx}")
            else:
                self.reject(400, f"malformed request: {_parser_reason(exc)}")

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
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

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
        slot.close = slot.close or close  # finish_after_pending may have asked already
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
        body = orjson.dumps({"error": message, "status": status})
        data = serialize(status, (("Content-Type", "application/json"),), body, close=True)
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

    def finish_after_pending(self) -> None:
        if self.queue:
            self.queue[-1].close = True
        elif self.transport is not None:
            self.closing = True
            self.transport.close()

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
_BODYLESS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE"})
_METHODS = {
    m.encode(): m
    for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT")
}


def _parser_reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


# ---------------------------------------------------------------- the server


class MockServer:
    """The mock of one dependency. Lives on one event loop; see ``MockFleet`` for threads."""

    def __init__(
        self,
        spec: MockSpec,
        *,
        limits: Limits | None = None,
        on_event: Callable[[Event], None] | None = None,
        parser: str = "auto",  # "auto" | "httptools" | "python"
    ) -> None:
        dep = spec.dependency
        self.spec = spec
        self.name = dep.name
        self.limits = limits or Limits()
        self.on_event = on_event
        self.mode = mode_for(dep.on_miss)
        if parser == "python" or (parser == "auto" and not HAVE_HTTPTOOLS):
            self.parser_factory: Callable[[Any], Any] = PyRequestParser
        else:
            self.parser_factory = httptools.HttpRequestParser
        self.parser_name = "python" if self.parser_factory is PyRequestParser else "httptools"
        self.redactor = Redactor(spec.redact) if spec.redact is not None else None
        # the service is given the upstream's base path (devbox.core.wiring) and sends it
        # itself: prefixing it again would ask for /visit/visit
        self.upstream = (
            dataclasses.replace(Upstream.parse(dep.upstream), prefix="") if dep.upstream else None
        )
        self.timing_factor = dep.timing_factor
        self.faults = dep.faults
        f = dep.faults
        self.has_faults = bool(f.delay_ms or f.error_rate or f.reset_rate)
        # no faults, no timing: matched requests take the hot path in ``handle``
        self.plain = not self.has_faults and self.timing_factor is None
        self.journal_body = self.limits.journal_body
        self.rng = random.Random(f.seed)
        self.index = MatchIndex((), dep.match, name=dep.name, redactor=self._redact_request)
        self.prepared: list[Prepared] = []
        self.capture: frozenset[bytes] = frozenset()
        self.need_headers = False
        self.header_keys: dict[bytes, str | None] = {}
        self.connections: set[_Conn] = set()
        self.tick = 0.0
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writer: RecordingWriter | None = None
        self._fingerprint: tuple[Any, ...] = ()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reloading: asyncio.Future[None] | None = None
        # counters (read from other threads for stats: plain ints, no locking needed)
        self.hits = 0
        self.misses = 0
        self.fuzzy_hits = 0
        self.passed_through = 0
        self.recorded = 0
        self.injected_errors = 0
        self.injected_resets = 0
        self.rejected = 0
        self.timeouts = 0
        self.backpressure = 0  # times a client read too slowly and reading was paused
        self.connections_total = 0
        self.reloads = 0
        self.reload_error = ""
        self.loaded_at = 0.0
        self.last_miss = ""
        self.miss_log: deque[MissRecord] = deque(maxlen=_MISS_LOG)
        self.miss_routes: dict[tuple[str, str], int] = {}
        self._miss_emitted: dict[str, float] = {}
        self.seq = 0
        self.journal: deque[tuple[Any, ...]] = deque(maxlen=self.limits.journal_size)

    # ------------------------------------------------------------ loading

    def _redact_request(self, req: Request) -> Request:
        assert self.redactor is not None
        return self.redactor.request(req)

    def load(self) -> int:
        """(Re)read the recordings and rebuild the index; raises DevboxError on bad files."""
        exchanges = self._read()
        self._install(*self._build(exchanges))
        return len(exchanges)

    def _read(self) -> list[Exchange]:
        spec = self.spec
        if spec.exchanges is not None:
            return list(spec.exchanges)
        if spec.recordings is None:
            return []
        self._fingerprint = self.fingerprint()
        p = spec.recordings
        if p.is_dir() or not p.exists():
            from devbox.store import load_dir

            return load_dir(p, include_partial=True)
        return load_path(p)

    def _build(self, exchanges: list[Exchange]) -> tuple[MatchIndex, list[Prepared]]:
        dep = self.spec.dependency
        redactor = self._redact_request if self.redactor is not None else None
        index = MatchIndex(exchanges, dep.match, name=dep.name, redactor=redactor)
        return index, [Prepared(ex) for ex in exchanges]

    def _install(self, index: MatchIndex, prepared: list[Prepared]) -> None:
        # in-flight requests finish with the objects they started with: nothing is dropped
        self.index = index
        self.prepared = prepared
        wanted = {
            *index.wanted_headers,
            "content-length",
            "expect",
            "accept-encoding",
            "connection",
        }
        self.capture = frozenset(h.encode("latin-1") for h in wanted)
        # cleared, never replaced: open connections hold a reference to it
        self.header_keys.clear()

    def header_key(self, name: bytes) -> str | None:
        """The captured key for a header name as sent, or None; cached per spelling."""
        low = name.lower()
        key = low.decode("latin-1") if low in self.capture else None
        if len(self.header_keys) < 4096:
            self.header_keys[name] = key
        return key
        self.loaded_at = time.time()

    def fingerprint(self) -> tuple[Any, ...]:
        """Cheap change detection: names, sizes and mtimes of the recording files."""
        p = self.spec.recordings
        if p is None or self.spec.exchanges is not None:
            return ()
        try:
            if p.is_dir():
                out = []
                with os.scandir(p) as it:
                    for e in it:
                        if e.name.endswith((SUFFIX, PARTIAL_SUFFIX)) and not e.name.startswith("."):
                            st = e.stat()
                            out.append((e.name, st.st_size, st.st_mtime_ns))
                return tuple(sorted(out))
            st = p.stat()
            return ((p.name, st.st_size, st.st_mtime_ns),)
        except OSError:
            return ("missing",)

    def changed_on_disk(self) -> bool:
        return self.spec.exchanges is None and self.fingerprint() != self._fingerprint

    async def reload(self, executor: Executor | None = None) -> int:
        """Re-read the recordings off the loop thread and swap them in; raises DevboxError."""
        if self._reloading is not None:
            await asyncio.shield(self._reloading)
            return len(self.index)
        loop = asyncio.get_running_loop()
        self._reloading = loop.create_future()
        try:
            exchanges = await loop.run_in_executor(executor, self._read)
            built = await loop.run_in_executor(executor, self._build, exchanges)
            self._install(*built)
            self.reloads += 1
            self.reload_error = ""
            return len(exchanges)
        except DevboxError as exc:
            self.reload_error = exc.one_line()
            raise
        finally:
            fut = self._reloading
            self._reloading = None
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self.tick = loop.time()
        self.host = host
        self._server = await loop.create_server(
            lambda: _Conn(self), host, port, backlog=2048, reuse_address=True
        )
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
            self._server = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def sweep(self, now: float) -> None:
        self.tick = now
        for conn in list(self.connections):
            conn.timed_out(now)

    def reset(self) -> None:
        """Every recorded sequence starts again; fault draws start again from the seed."""
        self.index.reset()
        self.rng = random.Random(self.faults.seed)

    def set_mode(self, mode: str) -> None:
        if mode == "fail":
            mode = "replay"
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode

    # ------------------------------------------------------------ requests

    def handle(self, conn: _Conn, method: str, target: str, body: bytes, keep: bool) -> None:
        if self.plain and not target.startswith("/__devbox"):
            # the hot path: recorded answer, nothing delayed, nothing pending on the connection
            index = self.index
            pos = index.lookup_raw(method, target, conn.hv, body)
            if pos >= 0:
                prep = self.prepared[pos]
                if keep and prep.simple and not conn.queue:
                    self.hits += 1
                    self.seq = seq = self.seq + 1
                    if len(body) > self.journal_body:
                        body = body[: self.journal_body]
                    self.journal.append((seq, method, target, body, conn.hv, prep.id, prep.status))
                    if method != "HEAD":
                        assert conn.transport is not None
                        conn.transport.write(prep.keepalive)
                        return
                    conn.respond(prep.bytes_for(None, close=False, head=True))
                    return
                self.serve(conn, pos, method, target, body, keep, 0.0)
                return
            self.miss(conn, method, target, body, keep, 0.0)
            return
        if target.startswith(ADMIN_PREFIX) or target == ADMIN_PREFIX[:-1]:
            self.admin(conn, method, target, body, keep)
            return
        delay = 0.0
        if self.has_faults:
            f = self.faults
            reset_draw = self.rng.random()
            error_draw = self.rng.random()
            delay = f.delay_ms / 1000.0
            if reset_draw < f.reset_rate:
                self.injected_resets += 1
                self._journal(conn, method, target, body, None, 0)
                conn.reset_later(delay)
                return
            if error_draw < f.error_rate:
                self.injected_errors += 1
                self._journal(conn, method, target, body, None, f.error_status)
                payload = orjson.dumps(
                    {"error": "devbox mock: injected fault", "dependency": self.name}
                )
                data = serialize(
                    f.error_status,
                    (("Content-Type", "application/json"), ("X-Devbox-Fault", "error")),
                    payload,
                    close=not keep,
                )
                conn.respond(data, not keep, delay)
                return
        index = self.index
        pos = index.lookup_raw(method, target, conn.hv, body)
        if pos < 0:
            self.miss(conn, method, target, body, keep, delay)
            return
        self.serve(conn, pos, method, target, body, keep, delay)

    def serve(
        self,
        conn: _Conn,
        pos: int,
        method: str,
        target: str,
        body: bytes,
        keep: bool,
        delay: float,
        head: bool = False,
    ) -> None:
        prep = self.prepared[pos]
        self.hits += 1
        self._journal(conn, method, target, body, prep.id, prep.status)
        if self.timing_factor is not None:
            t = prep.exchange.timing
            recorded_ms = t.wait_ms if t.wait_ms is not None else t.duration_ms
            delay += recorded_ms * self.timing_factor / 1000.0
        if prep.reset:
            conn.reset_later(delay)
            return
        head = head or method == "HEAD"
        if keep and not head and prep.simple:
            data = prep.keepalive
        else:
            accept = conn.header_value("accept-encoding") if prep.encoding else None
            data = prep.bytes_for(accept, close=not keep, head=head)
        conn.respond(data, not keep, delay)

    def _journal(
        self,
        conn: _Conn,
        method: str,
        target: str,
        body: bytes,
        matched: str | None,
        status: int,
    ) -> None:
        self.seq += 1
        jb = body if len(body) <= self.journal_body else body[: self.journal_body]
        self.journal.append((self.seq, method, target, jb, conn.hv, matched, status))

    def _request(self, conn: _Conn, method: str, target: str, body: bytes) -> Request:
        path, _, qs = target.partition("?")
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in conn.headers)
        host = next((v for k, v in headers if k.lower() == "host"), "")
        return Request(
            method=method,
            path=path or "/",
            query=parse_query_fast(qs),
            headers=headers,
            body=body,
            host=host,
            http_version="HTTP/1.0" if conn.http10() else "HTTP/1.1",
        )

    def miss(
        self, conn: _Conn, method: str, target: str, body: bytes, keep: bool, delay: float
    ) -> None:
        index = self.index
        if method == "HEAD":
            # HEAD of something recorded with GET: the same headers, no body
            pos = index.lookup_raw("GET", target, conn.hv, body)
            if pos >= 0:
                self.serve(conn, pos, method, target, body, keep, delay, head=True)
                return
        req = self._request(conn, method, target, body)
        result = index.match(req)
        if result.exchange is not None:
            if result.fuzzy:
                self.fuzzy_hits += 1
            self.serve(conn, result.position, method, target, body, keep, delay)
            return
        self.misses += 1
        route = (method, req.path)
        if route in self.miss_routes or len(self.miss_routes) < 1000:
            self.miss_routes[route] = self.miss_routes.get(route, 0) + 1
        self.last_miss = result.explanation
        forwarding = self.mode in ("passthrough", "record") and self.upstream is not None
        action = self.mode if forwarding else "failed"
        self.seq += 1
        seq = self.seq
        jb = body if len(body) <= self.limits.journal_body else body[: self.limits.journal_body]
        self.journal.append(
            (seq, method, target, jb, conn.hv, None, 0 if forwarding else MISS_STATUS)
        )
        record = MissRecord(
            seq=seq,
            at=time.time(),
            method=method,
            target=target,
            explanation=result.explanation,
            hint=result.hint,
            candidates=result.candidates,
            action=action,
        )
        self.miss_log.append(record)
        # the same miss again and again (a retry loop) is one event per second, not a flood
        now = record.at
        if now - self._miss_emitted.get(result.explanation, 0.0) >= 1.0:
            if len(self._miss_emitted) > 1000:
                self._miss_emitted.clear()
            self._miss_emitted[result.explanation] = now
            self.emit(
                MockMiss(
                    dependency=self.name,
                    method=method,
                    target=target,
                    explanation=result.explanation,
                )
            )
        if forwarding:
            slot = conn.defer()
            task = asyncio.get_running_loop().create_task(
                self._forward(conn, slot, req, target, keep, record)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        extra = ""
        if self.mode != "replay" and self.upstream is None:
            extra = f"; mode {self.mode} needs an upstream URL for dependency {self.name}"
        conn.respond(self._miss_response(result.explanation + extra, record, keep), not keep, delay)

    def _miss_response(self, explanation: str, record: MissRecord, keep: bool) -> bytes:
        payload = {
            "error": "devbox mock: no recording matches this request",
            "dependency": self.name,
            "request": f"{record.method} {record.target}",
            "explanation": explanation,
            "hint": record.hint,
            "candidates": [c.to_dict() for c in record.candidates],
        }
        return serialize(
            MISS_STATUS,
            (("Content-Type", "application/json"), ("X-Devbox-Miss", self.name)),
            orjson.dumps(payload, option=orjson.OPT_INDENT_2),
            close=not keep,
        )

    async def _forward(
        self, conn: _Conn, slot: _Slot, req: Request, target: str, keep: bool, record: MissRecord
    ) -> None:
        assert self.upstream is not None
        started = time.time()
        t0 = time.perf_counter()
        try:
            resp = await forward(
                self.upstream,
                req.method,
                target,
                req.headers,
                req.body,
                timeout_s=self.limits.upstream_timeout_s,
            )
        except UpstreamError as exc:
            text = f"{record.explanation}; forwarding to the upstream failed: {exc}"
            conn.fill(slot, self._miss_response(text, record, keep), not keep, False)
            return
        except asyncio.CancelledError:
            conn.fill(slot, b"", True, True)
            raise
        ms = (time.perf_counter() - t0) * 1000.0
        headers = tuple((k, v) for k, v in resp.headers if k.lower() not in HOP_BY_HOP)
        data = serialize(
            resp.status,
            headers,
            resp.body,
            reason=resp.reason,
            close=not keep,
            head=req.method == "HEAD",
        )
        self.passed_through += 1
        if self.mode == "record":
            # on disk before the client sees the answer: what it got is what was recorded
            try:
                self._record(req, resp, started, ms)
            except (OSError, DevboxError) as exc:
                self.emit(Problem(f"mock {self.name}: could not record an exchange: {exc}"))
        conn.fill(slot, data, not keep, False)

    def _record(self, req: Request, resp: Response, started: float, ms: float) -> None:
        up = self.upstream
        assert up is not None
        enc = resp.header("content-encoding") or ""
        exchange = Exchange(
            id=f"{self.name}-{uuid.uuid4().hex[:12]}",
            direction=Direction.OUTBOUND,
            source=self.name,
            request=Request(
                method=req.method,
                path=req.path,
                query=req.query,
                headers=tuple(
                    (k, v) for k, v in req.headers if k.lower() not in ("connection", "keep-alive")
                ),
                body=req.body,
                scheme=up.scheme,
                host=up.authority,
                http_version=req.http_version,
            ),
            response=Response(
                status=resp.status,
                headers=resp.headers,
                body=decode_body(resp.body, enc) if enc else resp.body,
                reason=resp.reason,
            ),
            timing=Timing(started_at=started, duration_ms=ms, wait_ms=ms),
            origin="devbox mock record",
        )
        redactor = self.redactor or Redactor()
        exchange = redactor.exchange(exchange)
        writer = self._recording_writer()
        writer.append(exchange)
        self.index.add(exchange)
        self.prepared.append(Prepared(exchange))
        self.recorded += 1
        # our own append is not a change to reload for
        self._fingerprint = self.fingerprint()

    def _recording_writer(self) -> RecordingWriter:
        if self._writer is None:
            p = self.spec.recordings
            if p is None:
                raise DevboxError(
                    f"mock {self.name} has no recordings location to record into",
                    hint="give the mock a recordings directory",
                )
            if p.suffix == SUFFIX and not p.is_dir():
                path = p
            else:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                path = p / f"mock-record-{stamp}{SUFFIX}"
            self._writer = RecordingWriter(
                path, self.name, Direction.OUTBOUND, origin="devbox mock record"
            )
        return self._writer

    # ------------------------------------------------------------ admin

    def admin(self, conn: _Conn, method: str, target: str, body: bytes, keep: bool) -> None:
        path, _, qs = target.partition("?")
        name = path[len(ADMIN_PREFIX) :].strip("/") if path.startswith(ADMIN_PREFIX) else ""
        params = dict(parse_qsl(qs))
        status = 200
        payload: Any
        if name == "" and method == "GET":
            payload = {
                "dependency": self.name,
                "endpoints": {
                    "GET /__devbox/stats": "hits, misses, per-route counts",
                    "GET /__devbox/misses?after=SEQ": "unmatched requests with explanations",
                    "GET /__devbox/journal?after=SEQ&limit=N": "every request received, in order",
                    "POST /__devbox/reload": "re-read the recordings from disk",
                    "POST /__devbox/reset": "restart recorded sequences (n-th call answers)",
                    "POST /__devbox/mode?mode=replay|passthrough|record": "change the miss policy",
                },
            }
        elif name == "stats" and method == "GET":
            payload = self.stats_dict()
        elif name == "misses" and method == "GET":
            after = _int(params.get("after"), 0)
            payload = {
                "dependency": self.name,
                "misses": [m.to_dict() for m in self.miss_log if m.seq > after],
            }
        elif name == "journal" and method == "GET":
            payload = self.journal_dict(
                _int(params.get("after"), 0), _int(params.get("limit"), 1000)
            )
        elif name == "reset" and method == "POST":
            self.reset()
            if params.get("journal") in ("1", "true", "yes"):
                self.journal.clear()
            payload = {"reset": True, "next": self.seq}
        elif name == "mode" and method == "POST":
            try:
                self.set_mode(params.get("mode", ""))
                payload = {"dependency": self.name, "mode": self.mode}
            except ValueError as exc:
                status, payload = 400, {"error": str(exc)}
        elif name == "reload" and method == "POST":
            slot = conn.defer()
            task = asyncio.get_running_loop().create_task(self._admin_reload(conn, slot, keep))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        elif name in ("stats", "misses", "journal", "reset", "mode", "reload", ""):
            status, payload = 405, {"error": f"method {method} not allowed on {path}"}
        else:
            status, payload = 404, {"error": f"no admin endpoint {path}", "see": ADMIN_PREFIX}
        conn.respond(_json_response(status, payload, keep), not keep)

    async def _admin_reload(self, conn: _Conn, slot: _Slot, keep: bool) -> None:
        try:
            n = await self.reload()
            data = _json_response(200, {"reloaded": True, "exchanges": n}, keep)
        except DevboxError as exc:
            data = _json_response(
                422, {"reloaded": False, "error": exc.one_line(), "hint": exc.hint}, keep
            )
        conn.fill(slot, data, not keep, False)

    def route_stats(self) -> list[dict[str, Any]]:
        misses = dict(self.miss_routes)
        out: list[dict[str, Any]] = []
        for method, path, recorded, calls in self.index.route_calls():
            out.append(
                {
                    "method": method,
                    "path": path,
                    "recorded": recorded,
                    "hits": calls,
                    "misses": misses.pop((method, path), 0),
                }
            )
        for (method, path), n in misses.items():
            out.append({"method": method, "path": path, "recorded": 0, "hits": 0, "misses": n})
        out.sort(key=lambda r: (-(r["hits"] + r["misses"]), r["method"], r["path"]))
        return out

    def stats_dict(self) -> dict[str, Any]:
        return {
            "dependency": self.name,
            "mode": self.mode,
            "port": self.port,
            "exchanges": len(self.index),
            "hits": self.hits,
            "misses": self.misses,
            "fuzzy_hits": self.fuzzy_hits,
            "passed_through": self.passed_through,
            "recorded": self.recorded,
            "faults": {"errors": self.injected_errors, "resets": self.injected_resets},
            "rejected": self.rejected,
            "timeouts": self.timeouts,
            "backpressure_pauses": self.backpressure,
            "connections": {"open": len(self.connections), "total": self.connections_total},
            "reloads": self.reloads,
            "reload_error": self.reload_error,
            "loaded_at": self.loaded_at,
            "last_miss": self.last_miss,
            "parser": self.parser_name,
            "routes": self.route_stats()[:500],
        }

    def journal_dict(self, after: int, limit: int) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        last = after
        for seq, method, target, body, hv, matched, status in self.journal:
            if seq <= after:
                continue
            if len(entries) >= max(1, limit):
                break
            if self.redactor is not None:
                # the journal holds what was sent; what leaves the mock is redacted
                path, _, qs = target.partition("?")
                ctype = hv.get("content-type")
                req = self.redactor.request(
                    Request(
                        method=method,
                        path=path,
                        query=parse_query_fast(qs),
                        headers=(("Content-Type", ctype),) if ctype else (),
                        body=body,
                    )
                )
                target, body = req.target, req.body
            entries.append(
                {
                    "seq": seq,
                    "method": method,
                    "target": target,
                    "body": _body_text(body),
                    "matched": matched,
                    "status": status,
                }
            )
            last = seq
        return {"dependency": self.name, "next": last, "entries": entries}

    def mock_stats(self) -> MockStats:
        return MockStats(
            dependency=self.name,
            mode=self.mode,
            port=self.port,
            hits=self.hits,
            misses=self.misses,
            last_miss=self.last_miss,
        )

    # ------------------------------------------------------------ events

    def emit(self, event: Event) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            pass

    def internal_error(self, exc: BaseException) -> None:
        self.emit(Problem(f"mock {self.name}: internal error: {type(exc).__name__}: {exc}"))


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _body_text(body: bytes) -> str:
    if not body:
        return ""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode("ascii")


def _json_response(status: int, payload: Any, keep: bool) -> bytes:
    return serialize(
        status,
        (("Content-Type", "application/json"), ("Cache-Control", "no-store")),
        orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS),
        close=not keep,
    )


__all__ = [
    "ADMIN_PREFIX",
    "MISS_STATUS",
    "MODES",
    "Limits",
    "MissRecord",
    "MockServer",
    "MockSpec",
    "mode_for",
]

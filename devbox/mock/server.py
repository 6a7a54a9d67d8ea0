"""One mock server: a dependency's recorded responses served over HTTP/1.1.

Theory of operation
-------------------
Three parts, each knowing nothing of the others' insides:

* the **connection loop** (``devbox.mock.conn``): bytes in, parser callbacks (httptools
  or the wire layer's reader, the same answers), answers out in request order;
* the **answer step** (``devbox.mock.answer``): pure, ``answer(request, state) -> Reply
  | Miss | Fault | Forward`` over ``MockState`` (recordings, index, prepared bytes,
  mode, fault draws, counters, journal);
* **admin** (``devbox.mock.admin``) and **passthrough / record on miss** (here, behind
  ``Forward``), reached through narrow interfaces.

``MockServer`` is the ``MockState`` of one dependency plus what needs a loop: loading
and hot reload, the listening socket, forwarding, recording, events. The hot path is:
signature straight from the wire (``MatchIndex.lookup_raw``), one dict lookup, one
``transport.write`` of prepared bytes (``Prepared.keepalive``); everything else goes
through the answer step.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from devbox.core.events import Event, MockMiss, MockStats, Problem, safe_emit
from devbox.core.matching import MatchIndex, parse_query_fast
from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.core.redact import Redactor
from devbox.errors import DevboxError
from devbox.mock import admin as admin_api
from devbox.mock.admin import ADMIN_PREFIX
from devbox.mock.answer import (
    MISS_STATUS,
    MODES,
    HttpRequest,
    Limits,
    MissRecord,
    MockSpec,
    MockState,
    answer,
    miss_response,
    mode_for,
    serve,
)
from devbox.mock.conn import HAVE_HTTPTOOLS, _Conn, _Slot
from devbox.mock.h2conn import H2MockConn, H2Stream, Responder, hand_over
from devbox.mock.pyparser import PyRequestParser
from devbox.mock.upstream import UpstreamError, forward
from devbox.mock.wire import (
    HOP_BY_HOP,
    Prepared,
    body_text,
    decode_body,
    json_response,
    serialize,
)
from devbox.store import PARTIAL_SUFFIX, SUFFIX, RecordingWriter, load_path, new_stamp
from devbox.wire.contract import Answer, Fault, Forward, Miss, Reply

if HAVE_HTTPTOOLS:
    import httptools

_TOKEN_KEY = admin_api.TOKEN_HEADER.lower()
_EMPTY: dict[str, str] = {}


class MockServer(MockState):
    """The mock of one dependency. Lives on one event loop; see ``MockFleet`` for threads."""

    def __init__(
        self,
        spec: MockSpec,
        *,
        limits: Limits | None = None,
        on_event: Callable[[Event], None] | None = None,
        parser: str = "auto",  # "auto" | "httptools" | "python"
        admin_token: str | None = None,
    ) -> None:
        super().__init__(spec, limits or Limits())
        # required by state-changing admin endpoints; None: they are refused over HTTP
        self.admin_token = admin_token
        self.on_event = on_event
        if parser == "python" or (parser == "auto" and not HAVE_HTTPTOOLS):
            self.parser_factory: Callable[[Any], Any] = PyRequestParser
        else:
            self.parser_factory = httptools.HttpRequestParser
        self.parser_name = "python" if self.parser_factory is PyRequestParser else "httptools"
        self.capture: frozenset[bytes] = frozenset()
        self.need_headers = False
        self.header_keys: dict[bytes, str | None] = {}
        self.connections: set[_Conn] = set()
        self.h2_connections: set[H2MockConn] = set()
        # HTTPS: a leaf of devbox's CA per name asked for; made on the first ClientHello
        self._tls: ssl.SSLContext | None = None
        self.tick = 0.0
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writer: RecordingWriter | None = None
        self._fingerprint: tuple[Any, ...] = ()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reloading: asyncio.Future[None] | None = None
        self._miss_emitted: dict[str, float] = {}
        # counters of the connection side (read from other threads for stats)
        self.rejected = 0
        self.admin_refused = 0
        self.timeouts = 0
        self.backpressure = 0  # times a client read too slowly and reading was paused
        self.connections_total = 0
        self.reloads = 0
        self.reload_error = ""
        self.loaded_at = 0.0

    # ------------------------------------------------------------ loading

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
        redactor = self.redactor_fn()
        index = MatchIndex(
            exchanges,
            dep.match,
            name=dep.name,
            redactor=redactor,
            link_header=self.spec.link_header,
        )
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
        # a GET's headers matter when the index reads any (Host of several origins, a
        # validator or Range for a recorded 304/206, headers the profile matches on)
        self.need_headers = bool(index.wanted_headers - {"content-type"})
        # cleared, never replaced: open connections hold a reference to it
        self.header_keys.clear()
        self.loaded_at = time.time()

    def header_key(self, name: bytes) -> str | None:
        """The captured key for a header name as sent, or None; cached per spelling."""
        low = name.lower()
        key = low.decode("latin-1") if low in self.capture else None
        if len(self.header_keys) < 4096:
            self.header_keys[name] = key
        return key

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
        # one port for HTTP/1.1, HTTPS and HTTP/2: the first bytes choose (mock/h2conn.py)
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
        for h2c in list(self.h2_connections):
            h2c.close()
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
        for h2c in list(self.h2_connections):
            h2c.timed_out(now)

    # ------------------------------------------------------------ protocols on the port

    def http1(self) -> _Conn:
        return _Conn(self)

    def switch_protocol(self, conn: _Conn, first: bytes, kind: str) -> None:
        t = conn.transport
        self.connections.discard(conn)
        self.connections_total -= 1  # the protocol taking over counts it
        conn.closing = True
        conn.transport = None
        if t is not None:
            hand_over(self, t, first, kind)

    def tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            from devbox.wire.ca import cert_store

            self._tls = cert_store().sni_context()
        return self._tls

    # ------------------------------------------------------------ requests

    def handle(self, conn: _Conn, method: str, target: str, body: bytes, keep: bool) -> None:
        if self.plain and not target.startswith("/__devbox"):
            # the hot path: recorded answer, nothing delayed, nothing pending on the connection
            pos = self.index.lookup_raw(method, target, conn.hv, body)
            if pos >= 0:
                prep = self.prepared[pos]
                if keep and prep.simple and not conn.queue and method != "HEAD":
                    self.hits += 1
                    self.seq = seq = self.seq + 1
                    if len(body) > self.journal_body:
                        body = body[: self.journal_body]
                    self.journal.append((seq, method, target, body, conn.hv, prep.id, prep.status))
                    assert conn.transport is not None
                    conn.transport.write(prep.keepalive)
                    conn.sent += len(prep.keepalive)
                    return
                # a recorded answer all the same: the step must not look it up again
                self._apply(conn, self._serve_at(conn, pos, method, target, body, keep))
                return
        elif admin_api.is_admin(target):
            self.admin(conn, method, target, keep)
            return
        self._apply(conn, answer(self._request(conn, method, target, body, keep), self))

    def handle_h2(self, stream: H2Stream, req: HttpRequest) -> None:
        """An HTTP/2 request: the same answering path as HTTP/1.1's slow path."""
        if admin_api.is_admin(req.target):
            self.admin(stream, req.method, req.target, True)
            return
        self._apply(stream, answer(req, self))

    def _request(
        self, conn: _Conn, method: str, target: str, body: bytes, keep: bool
    ) -> HttpRequest:
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in conn.headers)
        return HttpRequest(method, target, body, keep, conn.hv, headers, conn.http10())

    def _serve_at(
        self, conn: _Conn, pos: int, method: str, target: str, body: bytes, keep: bool
    ) -> Answer:
        return serve(self._request(conn, method, target, body, keep), self, pos, 0.0)

    def _apply(self, conn: Responder, out: Answer) -> None:
        """Carry out the answer step's decision on this connection."""
        if isinstance(out, Reply):
            conn.respond(out.data, out.close, out.delay_s)
        elif isinstance(out, Fault):
            conn.reset_later(out.delay_s)
        elif isinstance(out, Miss):
            self._emit_miss()
            conn.respond(out.data, out.close, out.delay_s)
        elif isinstance(out, Forward):
            self._emit_miss()
            req, record, keep = out.message
            slot = conn.defer()
            task = asyncio.get_running_loop().create_task(
                self._forward(conn, slot, req, record.target, keep, record)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _emit_miss(self) -> None:
        # the same miss again and again (a retry loop) is one event per second, not a flood
        record = self.miss_log[-1]
        now = record.at
        if now - self._miss_emitted.get(record.explanation, 0.0) >= 1.0:
            if len(self._miss_emitted) > 1000:
                self._miss_emitted.clear()
            self._miss_emitted[record.explanation] = now
            self.emit(
                MockMiss(
                    dependency=self.name,
                    method=record.method,
                    target=record.target,
                    explanation=record.explanation,
                )
            )

    async def _forward(
        self,
        conn: Responder,
        slot: _Slot,
        req: Request,
        target: str,
        keep: bool,
        record: MissRecord,
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
            conn.fill(slot, miss_response(self.name, text, record, keep), not keep, False)
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
                path = p / f"mock-record-{new_stamp()}{SUFFIX}"
            self._writer = RecordingWriter(
                path, self.name, Direction.OUTBOUND, origin="devbox mock record"
            )
        return self._writer

    # ------------------------------------------------------------ admin

    def admin(self, conn: Responder, method: str, target: str, keep: bool) -> None:
        headers = {
            "host": conn.header_value("host"),
            "origin": conn.header_value("origin"),
            _TOKEN_KEY: conn.header_value(_TOKEN_KEY),
        }
        refused = admin_api.refusal(method, headers, self.admin_token)
        if refused is not None:
            status, why = refused
            self.admin_refused += 1
            conn.respond(json_response(status, {"error": why}, keep), not keep)
            return
        result = admin_api.answer(self, method, target)
        if isinstance(result, str):  # RELOAD: answered when the recordings are read
            slot = conn.defer()
            task = asyncio.get_running_loop().create_task(self._admin_reload(conn, slot, keep))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        status, payload = result
        conn.respond(json_response(status, payload, keep), not keep)

    async def _admin_reload(self, conn: Responder, slot: _Slot, keep: bool) -> None:
        try:
            n = await self.reload()
            data = json_response(200, {"reloaded": True, "exchanges": n}, keep)
        except DevboxError as exc:
            data = json_response(
                422, {"reloaded": False, "error": exc.one_line(), "hint": exc.hint}, keep
            )
        conn.fill(slot, data, not keep, False)

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
            "admin_refused": self.admin_refused,
            "timeouts": self.timeouts,
            "backpressure_pauses": self.backpressure,
            "connections": {
                "open": len(self.connections) + len(self.h2_connections),
                "total": self.connections_total,
            },
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
                    "body": body_text(body),
                    "matched": matched,
                    "status": status,
                }
            )
            last = seq
        return {"dependency": self.name, "next": last, "entries": entries}

    def mock_stats(self, port: int | None = None) -> MockStats:
        return super().mock_stats(self.port if port is None else port)

    # ------------------------------------------------------------ events

    def emit(self, event: Event) -> None:
        safe_emit(self.on_event, event)  # a broken view must not stop the mock

    def internal_error(self, exc: BaseException) -> None:
        self.emit(Problem(f"mock {self.name}: internal error: {type(exc).__name__}: {exc}"))


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

"""HTTPS and HTTP/2 on a mock's one port, next to plain HTTP/1.1.

Every accepted connection starts as the HTTP/1.1 connection (``devbox.mock.conn._Conn``,
so the plain path is exactly what it was, plus one comparison on a connection's first
bytes). When those bytes are not HTTP/1.x (``devbox.wire.tls.sniff``) it steps aside
(``hand_over``):

* a TLS ClientHello: to a ``TlsBridge`` presenting a leaf of devbox's CA for the name
  the client asked for; after the handshake, ALPN ``h2`` gets an ``H2MockConn``,
  anything else (``http/1.1``, no ALPN) the HTTP/1.1 connection over TLS;
* the h2c preface (prior knowledge): an ``H2MockConn`` in the clear.

``H2MockConn`` maps each complete HTTP/2 request onto the same ``HttpRequest`` the
HTTP/1.1 path builds (``:authority`` as ``Host``, the other pseudo-headers taken apart
by ``devbox.wire.h2``) and hands it to the server's one answering path; the answer's
HTTP/1.1 bytes are split into status, headers and body and sent as HTTP/2 frames. So
recordings serve over HTTP/2 unchanged and matching never knows the difference.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

import orjson

from devbox.mock.answer import HttpRequest, Limits
from devbox.mock.conn import _Conn, _Slot
from devbox.mock.send_watch import SendWatch
from devbox.mock.wire import serialize, split_response
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.h2 import Closed, Event, H2Endpoint, H2Request, Oversized
from devbox.wire.tls import H2_PREFACE, TLS, TlsBridge, TlsTransport

# DATA, HEADERS, CONTINUATION: the frames that may end a request (H2MockConn._cuts)
_CUT_AFTER = (0x0, 0x1, 0x9)
# bytes of answers after which a batch is written out (see H2MockConn.batching)
_BATCH = 256 * 1024


class Responder(Protocol):
    """Where the server applies an answer: one HTTP/1.1 connection or one HTTP/2 stream."""

    def respond(self, data: bytes, close: bool = False, delay: float = 0.0) -> None: ...

    def reset_later(self, delay: float) -> None: ...

    def defer(self) -> _Slot: ...

    def fill(self, slot: _Slot, data: bytes, close: bool, reset: bool) -> None: ...

    def header_value(self, key: str) -> str | None: ...


class H2Owner(Protocol):
    """What the connections here see of their server."""

    limits: Limits
    tick: float
    capture: frozenset[bytes]
    connections_total: int
    rejected: int
    backpressure: int
    timeouts: int
    h2_connections: set[H2MockConn]

    def tls_context(self) -> ssl.SSLContext: ...

    def http1(self) -> _Conn: ...

    def handle_h2(self, stream: H2Stream, req: HttpRequest) -> None: ...

    def internal_error(self, exc: BaseException) -> None: ...


def hand_over(srv: H2Owner, t: asyncio.Transport, first: bytes, kind: str) -> None:
    """Give a new connection whose first bytes are TLS or the h2c preface to the protocol
    that speaks it (the HTTP/1.1 connection that read them steps aside)."""
    if kind == TLS:
        try:
            ctx = srv.tls_context()
        except Exception as exc:  # no CA (an unwritable data directory): say so, close
            srv.internal_error(exc)
            t.close()
            return

        def after_tls(alpn: str | None, _sni: str | None, _t: TlsTransport) -> asyncio.Protocol:
            return H2MockConn(srv) if alpn == "h2" else srv.http1()

        TlsBridge(ctx, after_tls).start(t, first, timeout_s=srv.limits.header_timeout_s)
        return
    proto = H2MockConn(srv)
    t.set_protocol(proto)
    proto.connection_made(t)
    proto.data_received(first)


class H2Stream:
    """One HTTP/2 request's answer position: the ``Responder`` the server applies to."""

    __slots__ = ("conn", "headers", "sid")

    def __init__(self, conn: H2MockConn, sid: int, headers: tuple[tuple[str, str], ...]) -> None:
        self.conn = conn
        self.sid = sid
        self.headers = headers

    def respond(self, data: bytes, close: bool = False, delay: float = 0.0) -> None:
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.conn.send, self.sid, data)
        else:
            self.conn.send(self.sid, data)

    def reset_later(self, delay: float) -> None:
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.conn.reset_stream, self.sid)
        else:
            self.conn.reset_stream(self.sid)

    def defer(self) -> _Slot:
        return _Slot()

    def fill(self, slot: _Slot, data: bytes, close: bool, reset: bool) -> None:
        if reset or not data:
            self.conn.reset_stream(self.sid)
        else:
            self.conn.send(self.sid, data)

    def header_value(self, key: str) -> str | None:
        values = [v for k, v in self.headers if k == key]
        return ", ".join(values) if values else None


class H2MockConn(asyncio.Protocol):
    """One HTTP/2 connection to a mock (over TLS with ALPN h2, or h2c)."""

    def __init__(self, srv: H2Owner) -> None:
        self.srv = srv
        lim = srv.limits
        self.h2 = H2Endpoint(
            max_body=lim.max_body,
            max_streams=lim.max_pipeline,
            max_header_list=lim.max_header_bytes,
        )
        self.transport: asyncio.Transport | None = None
        self.last = srv.tick
        self.sends = SendWatch()
        self.sent = 0  # bytes handed to the transport (what the client took: ``sends``)
        self.requests = 0
        # answers made while a read is processed go out in one write at its end (or as
        # soon as they pass _BATCH bytes: a write the client does not read must be able
        # to pause us before the next answer is made)
        self.batching = False
        self.batched = 0
        # the client does not read what we write: requests wait here, unanswered, and
        # reading stops (or a client that never reads would have every answer it asks for,
        # every PING's and SETTINGS' acknowledgement, held in our write buffer)
        self.write_paused = False
        self.waiting: deque[H2Request] = deque()
        # where the client's frames begin and end (``_cuts``): bytes of the frame (or the
        # preface) that runs past the last read, a frame header begun in it
        self._frame_rest = len(H2_PREFACE)
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.srv.h2_connections.add(self)
        self.srv.connections_total += 1
        self.h2.initiate()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.srv.h2_connections.discard(self)
        self.transport = None
        self.waiting.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.srv.backpressure += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._batch(self._answer_waiting)
        self._close_if_done()
        t = self.transport
        if not self.write_paused and t is not None and not t.is_closing():
            t.resume_reading()

    def _answer_waiting(self) -> None:
        while self.waiting and not self.write_paused and self.transport is not None:
            self._answer(self.waiting.popleft())

    def _batch(self, work: Callable[[], None]) -> None:
        self.batching = True
        try:
            work()
        finally:
            self.batching = False
            self._flush()

    def data_received(self, data: bytes) -> None:
        self.last = self.srv.tick
        self._batch(lambda: self._receive(data))

    def _receive(self, data: bytes) -> None:
        # a request is answered as soon as it is complete, before h2 reads the next
        # frame: a client that opens streams faster than MAX_CONCURRENT_STREAMS (as
        # h2load does before our SETTINGS arrive) then finds them closed, as with nginx,
        # instead of refused by a limit no stream of its was near
        cuts = self._cuts(data)
        if self.h2.open_streams + len(cuts) <= self.h2.conn.local_settings.max_concurrent_streams:
            cuts = []  # no stream of this read can meet the limit: one pass through h2
        start = 0
        for cut in [*cuts, len(data)]:
            if cut <= start:
                continue
            try:
                events = self.h2.receive_data(data[start:cut])
            except RemoteProtocolError:
                self.srv.rejected += 1
                self._flush()  # the GOAWAY naming the error
                if self.transport is not None:
                    self.transport.close()
                return
            start = cut
            self._events(events)

    def _cuts(self, data: bytes) -> list[int]:
        """Offsets in ``data`` just after each HEADERS, CONTINUATION or DATA frame (one
        that may complete a request). A misplaced cut costs nothing: h2 keeps the bytes
        of a frame cut short until the rest comes."""
        shift = len(self._head)  # a frame header begun in the last read
        buf = self._head + data if shift else data
        i, n = 0 if shift else self._frame_rest, len(buf)
        self._head = b""
        cuts: list[int] = []
        while i < n:
            if n - i < 9:
                self._head = buf[i:]
                break
            kind = buf[i + 3]
            i += 9 + int.from_bytes(buf[i : i + 3], "big")
            if kind in _CUT_AFTER and i <= n:
                cuts.append(i - shift)
        self._frame_rest = max(0, i - n)
        return cuts

    def _events(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, H2Request):
                if self.write_paused or self.waiting:
                    self.waiting.append(ev)  # answered, in order, once the client reads
                else:
                    self._answer(ev)
            elif isinstance(ev, Oversized):
                self._refuse(ev.stream_id, 413, "request body too large")
            elif isinstance(ev, Closed):
                self._close_if_done()

    def _close_if_done(self) -> None:
        """After the client's GOAWAY: close once every stream it sent is answered."""
        if self.h2.closed and self.h2.open_streams == 0 and not self.waiting:
            self._flush()
            if self.transport is not None:
                self.transport.close()

    def _answer(self, ev: H2Request) -> None:
        self.requests += 1
        try:
            self._request(ev)
        except Exception as exc:  # a bug answers 500 on its stream, never the rest
            self.srv.internal_error(exc)
            self._refuse(ev.stream_id, 500, f"devbox mock internal error: {exc}")

    def _request(self, ev: H2Request) -> None:
        lim = self.srv.limits
        if len(ev.path) > lim.max_request_line:
            self._refuse(ev.stream_id, 414, "request-target too long")
            return
        headers = ev.http1_headers()
        if len(headers) > lim.max_headers:
            self._refuse(ev.stream_id, 431, f"more than {lim.max_headers} request header fields")
            return
        capture = self.srv.capture
        hv: dict[str, str] = {}
        for k, v in headers:
            if k.encode("latin-1") in capture:
                hv[k] = f"{hv[k]}, {v}" if k in hv else v
        req = HttpRequest(ev.method, ev.path, ev.body, True, hv, headers)
        self.srv.handle_h2(H2Stream(self, ev.stream_id, headers), req)

    def _refuse(self, sid: int, status: int, message: str) -> None:
        self.srv.rejected += 1
        body = orjson.dumps({"error": message, "status": status})
        self.send(sid, serialize(status, (("Content-Type", "application/json"),), body))

    def send(self, sid: int, data: bytes) -> None:
        """An answer the answering code built as HTTP/1.1 bytes, sent on stream ``sid``."""
        if self.transport is None:
            return
        status, headers, body, trailers = split_response(data)
        self.h2.send_response(sid, status, headers, body, trailers)
        self.batched += len(data)
        if not self.batching or self.batched >= _BATCH:
            self._flush()

    def reset_stream(self, sid: int) -> None:
        self.h2.reset(sid)
        self._flush()

    def _flush(self) -> None:
        self.batched = 0
        out = self.h2.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)
            self.sent += len(out)

    def timed_out(self, now: float) -> None:
        t, lim = self.transport, self.srv.limits
        if t is not None:
            held = t.get_write_buffer_size()
            waiting = held > 0 or self.h2.sending  # (or data held for its window)
            taken = self.sent - held
            if self.sends.stalled(now, taken, waiting, self.last, lim.send_timeout_s):
                self.srv.timeouts += 1
                t.abort()
                return
        if self.h2.open_streams == 0 and now - self.last > self.srv.limits.idle_timeout_s:
            self.h2.close()
            self._flush()
            if self.transport is not None:
                self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

"""The recording proxy: asyncio Protocols relaying HTTP/1.1 byte for byte.

Theory of operation
-------------------
Each accepted client connection (``ClientConn``) is paired with at most one upstream
connection at a time (``UpstreamConn``), opened lazily on the first request and reused
while both sides keep the connection alive. That 1:1 pairing is what makes keep-alive,
pipelining and ``Connection: close`` relay faithfully: requests go up in order,
responses come back in order, and a FIFO of pending exchanges pairs them.

Bytes are relayed as they arrive (only an outbound request's head is rebuilt, to point
``Host`` at the real upstream); ``devbox.record.http1`` finds message boundaries and
``BodyCapture`` keeps a bounded, decoded copy. Flow control is end to end: when one
side's write buffer fills, the other side stops reading.

Crash safety: the last bytes of a response are written to the client only *after* the
exchange was handed to the recording worker (``ProxyCore.flush``: the captures of one
loop iteration go down the pipe in one write, then the held bytes go out). So every
response a client received in full is in the worker's hands, and the worker writes what
it holds even if this process is killed (an early answer: once its body has come).

Failures of the upstream (refused, timeout, TLS, DNS, a broken response) are answered
with 502/504 when the client has seen nothing of the response yet, else the client
connection is aborted; either way the exchange is recorded with ``error`` saying what
happened.

The forward-proxy mode (``Route.upstream is None``) takes absolute-form requests (``GET
http://host/...``), records those whose origin is a profile dependency's upstream,
relays the rest, and tunnels ``CONNECT`` unrecorded.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast
from urllib.parse import urlsplit

from devbox.core.model import Direction
from devbox.record.capture import BodyCapture
from devbox.record.http1 import CLOSE, TUNNEL, Data, End, Head, MessageReader, ProtocolError
from devbox.record.intercept import accept_tls, intercept
from devbox.record.proxy_core import _FORWARD_DROP as _FORWARD_DROP
from devbox.record.proxy_core import Capture as Capture
from devbox.record.proxy_core import Captured as Captured
from devbox.record.proxy_core import ProxyCore as ProxyCore
from devbox.record.proxy_core import ProxyStats as ProxyStats
from devbox.record.proxy_core import (
    RelaysUpstream,
    _error_response,
    _Pending,
    _rebuild_head,
    connect_upstream,
    describe_error,
    finish_exchange,
    take_upstream,
)
from devbox.record.proxy_core import Route as Route
from devbox.record.proxy_core import UpstreamConn as UpstreamConn
from devbox.record.proxy_core import make_ssl_context as make_ssl_context
from devbox.wire.upstream import Upstream as Upstream

HIGH_WATER = 256 * 1024
# a request this small is kept until answered, to be resent once if a reused upstream
# connection turns out to have been closed by the upstream (a keep-alive timeout race)
RETRY_MAX = 64 * 1024
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))


class ClientConn(RelaysUpstream):
    """One client connection and its paired upstream connection."""

    def __init__(self, core: ProxyCore, route: Route) -> None:
        self.core = core
        self.route = route
        self.inbound = route.direction is Direction.INBOUND
        self.transport: asyncio.Transport | None = None
        self.reader = MessageReader(is_request=True)
        self.pending: deque[_Pending] = deque()
        self.current: _Pending | None = None  # the request whose body is being received
        self.up: UpstreamConn | None = None
        self.up_target: Upstream | None = None
        self.up_reader = MessageReader(is_request=False)
        self.up_buf: list[bytes] | None = None  # bytes waiting for the connection to open
        self.up_served = 0
        self.held: Head | None = None  # forward proxy: a request for another origin waits
        self.tunnel = False
        self.held_out: list[bytes] | None = None  # see ProxyCore.hold
        self.close_after = False
        self.client_eof = False
        # the answer to a request whose framing was invalid: sent after the answers
        # owed to the requests before it, then the connection closes
        self.refusal: bytes | None = None
        self.closing = False
        self.closed = False
        # a reverse proxy for an https:// upstream also accepts TLS from the service
        self.sniff = (
            core.certs is not None and route.upstream is not None and route.upstream.tls
        ) and not route.inside_tls

    # ------------------------------------------------------------ client side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = t = cast(asyncio.Transport, transport)
        t.set_write_buffer_limits(high=HIGH_WATER)
        self.core.conns.add(self)
        self.core.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        if self.sniff:
            self.sniff = False
            if data[:1] == b"\x16" and self.transport is not None:
                accept_tls(self, data)
                return
        self.reader.receive(data)
        self._process()

    def eof_received(self) -> bool | None:
        if self.tunnel and self.up is not None and self.up.transport is not None:
            if self.up.transport.can_write_eof():
                self.up.transport.write_eof()
            return True
        # a client half-closing after its last request still gets the responses. The
        # transport is always kept open here (returning False would close it and drop
        # answers still held for the recording worker); the close comes with the last
        # answer, or now if nothing is owed. (uvloop may report the EOF again.)
        if self.client_eof:
            return True
        self.client_eof = True
        p = self.current
        if p is not None and not p.req_done:
            self._reject(ProtocolError("the client closed its side inside a request"))
        elif not self.pending:
            self._close_client()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.conns.discard(self)
        self._cut_early()
        pending = list(self.pending)
        self.pending.clear()
        for p in pending:
            self._finish(p, error="client closed the connection before the response completed")
        self.current = None
        self._close_upstream()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._close_upstream()

    def _cut_early(self) -> None:
        """An early answer whose request body will not come whole: kept, cut short."""
        p = self.current
        if p is not None and p.early and p.req_body is not None:
            self.current = None
            p.req_body.truncated = True
            self._finish(p)

    def record_unfinished(self, why: str) -> None:
        """Recording stops: a response still coming is kept as it came so far, cut short
        (and an early answer's request body)."""
        self._cut_early()
        for p in list(self.pending):
            if (body := p.resp_body) is not None:  # an event stream's: the client saw it
                self.pending.remove(p)
                body.truncated = True
                self._finish(p, error=why)

    def _write(self, data: bytes) -> None:
        if self.refusal == b"":
            return  # the refusal was the last answer: an upstream's late bytes go nowhere
        if self.held_out is not None:
            self.held_out.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def release(self) -> None:
        out, self.held_out = self.held_out, None
        if self.transport is None or self.closed:
            return
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self.close_after:
            self.close_after = False
            self.transport.close()

    def _process(self) -> None:
        reader = self.reader
        while self.held is None and not self.closing:
            try:
                ev = reader.next_event()
            except ProtocolError as exc:
                self._reject(exc)
                return
            if ev is None:
                return
            t = type(ev)
            if t is Data:
                assert isinstance(ev, Data)
                if self.tunnel:
                    self._send_up(ev.raw)
                    continue
                p = self.current
                if p is not None:
                    if p.req_body is not None:
                        p.req_body.add(ev.decoded)
                    if p.sent is not None:
                        self._keep(p, ev.raw)
                self._send_up(ev.raw)
            elif t is Head:
                assert isinstance(ev, Head)
                self._on_head(ev)
            else:
                assert isinstance(ev, End)
                if ev.raw:
                    self._send_up(ev.raw)
                p = self.current
                if p is not None:
                    if p.sent is not None and ev.raw:
                        self._keep(p, ev.raw)
                    p.req_done = True
                    self.current = None
                    if p.early:
                        self._finish(p)
                    elif self.pending and self.pending[0] is p and p.resp_head is None:
                        self._arm_timer(p)

    @staticmethod
    def _keep(p: _Pending, raw: bytes) -> None:
        assert p.sent is not None
        p.sent_size += len(raw)
        if p.sent_size > RETRY_MAX:
            p.sent = None
        else:
            p.sent.append(raw)

    def _reject(self, exc: ProtocolError) -> None:
        """Answer an invalid request at once (after the answers owed before it) and close:
        the stream cannot be resynchronised."""
        self.core.stats.rejected += 1
        self.closing = True
        if self.refusal is not None:
            return
        self.refusal = _error_response(exc.status, str(exc))
        p = self.current
        if p is not None and not p.req_done:
            # partly sent upstream, it can never complete: it gets no upstream answer, and
            # the upstream connection is out of step once the earlier answers are in
            self.current = None
            if p in self.pending:
                self.pending.remove(p)
            self._finish(p, error=f"invalid request framing: {exc}")
        if not self.pending:
            self._send_refusal()

    def _send_refusal(self) -> None:
        self._close_upstream()
        data = self.refusal
        if data and self.transport is not None and not self.closed:
            self._write(data)
            self._close_client()
        self.refusal = b""

    def _on_head(self, head: Head) -> None:
        core = self.core
        core.stats.requests += 1
        route = self.route
        up = route.upstream
        source = route.source
        record = True
        if up is None:
            if head.method == "CONNECT":
                self._connect_tunnel(head)
                return
            try:
                up = Upstream.origin_of(head.target)
            except ValueError:
                self._reject(ProtocolError("a forward proxy needs absolute-form request targets"))
                return
            known = core.forward_sources.get(up.origin)
            if known is None:
                record = False
                core.stats.unrecorded[up.authority] = core.stats.unrecorded.get(up.authority, 0) + 1
                source = "forward"
            else:
                source = known
            if self.up_target is not None and self.up_target != up:
                if self.pending:
                    self.held = head
                    if self.transport is not None:
                        self.transport.pause_reading()
                    return
                self._close_upstream()
        p = _Pending(head, core.next_id(source), source)
        p.record = record
        if self.inbound:
            core.correlator.begin(p.id, head.headers)
            p.host = head.header("host") or ""
            out = head.raw
        else:
            p.parent = core.correlator.parent_for(head.headers)
            assert up is not None
            p.scheme = up.scheme
            if route.upstream is None:
                # forward proxy: origin-form on the way up, Host as the client set it
                u = urlsplit(head.target)
                target = (u.path or "/") + (f"?{u.query}" if u.query else "")
                out, p.sent_headers = _rebuild_head(head, target, None, _FORWARD_DROP)
                p.host = head.header("host") or up.authority
            else:
                target = up.prefix + head.target if up.prefix else head.target
                out, p.sent_headers = _rebuild_head(head, target, up.authority)
                p.host = up.authority
        p.req_body = BodyCapture(core.max_body, head.header("content-encoding"))
        if head.method in IDEMPOTENT:
            p.sent = [out]
            p.sent_size = len(out)
        self.pending.append(p)
        self.current = p
        if self.up is None and self.up_buf is None:
            self._open_upstream(up)
        self.up_reader.expect(head.method)
        self._send_up(out)

    # ------------------------------------------------------------ upstream side

    def _open_upstream(self, up: Upstream | None) -> None:
        assert up is not None
        self.up_target = up
        self.up_reader = MessageReader(is_request=False)
        self.up_buf = []
        self.up_served = 0
        asyncio.get_running_loop().create_task(self._connect(up))

    async def _connect(self, up: Upstream) -> None:
        proto = UpstreamConn(self)
        failed = await connect_upstream(self.core, proto, up)
        if failed is not None:
            self.up_buf = None
            self._upstream_failed(*failed)
            return
        if self.closed or self.up_target is not up:
            if proto.transport is not None:
                proto.transport.close()
            return
        take_upstream(self, proto)

    def _send_up(self, data: bytes) -> None:
        if not data:
            return
        if self.up is not None and self.up.transport is not None:
            self.up.transport.write(data)
        elif self.up_buf is not None:
            self.up_buf.append(data)
            if sum(map(len, self.up_buf)) > HIGH_WATER and self.transport is not None:
                # the upstream connection is still opening: stop reading a large body
                self.transport.pause_reading()

    def _arm_timer(self, p: _Pending) -> None:
        p.timer = asyncio.get_running_loop().call_later(
            self.core.response_timeout_s, self._response_timeout, p
        )

    def _response_timeout(self, p: _Pending) -> None:
        p.timer = None
        if self.pending and self.pending[0] is p and p.resp_head is None:
            self._upstream_failed(
                504, f"timeout: no response after {self.core.response_timeout_s:g}s"
            )

    def upstream_data(self, data: bytes) -> None:
        r = self.up_reader
        r.receive(data)
        out: list[bytes] = []
        while True:
            try:
                ev = r.next_event()
            except ProtocolError as exc:
                if out:
                    self._write(b"".join(out))
                self._upstream_failed(502, f"invalid response from upstream: {exc}")
                return
            if ev is None:
                break
            t = type(ev)
            if t is Data:
                assert isinstance(ev, Data)
                if self.tunnel or not self.pending:
                    out.append(ev.raw)
                    continue
                p = self.pending[0]
                if p.resp_body is not None:
                    p.resp_body.add(ev.decoded)
                out.append(ev.raw)
            elif t is Head:
                assert isinstance(ev, Head)
                out.append(ev.raw)
                if not self.pending:
                    continue
                p = self.pending[0]
                p.relayed = True
                if ev.interim:
                    continue
                if p.timer is not None:
                    p.timer.cancel()
                    p.timer = None
                p.t_first = time.perf_counter()
                p.resp_head = ev
                p.resp_body = BodyCapture(self.core.max_body, ev.header("content-encoding"))
            else:
                assert isinstance(ev, End)
                if ev.raw:
                    out.append(ev.raw)
                if not self.pending:
                    continue
                p = self.pending.popleft()
                p.sent = None
                p.resp_trailers = ev.trailers
                self.up_served += 1
                if p.req_done:
                    # to the recording worker first, then the client gets the last bytes
                    self._finish(p)
                    self.core.hold(self)
                else:
                    p.early = True  # answered early: recorded when its body has come
                if out:
                    self._write(b"".join(out) if len(out) > 1 else out[0])
                out = []
                self._after_response(p)
                if self.pending and self.pending[0].req_done:
                    self._arm_timer(self.pending[0])
        if out:
            self._write(b"".join(out) if len(out) > 1 else out[0])

    def _after_response(self, p: _Pending) -> None:
        head = p.resp_head
        assert head is not None
        if head.framing == TUNNEL:
            self.tunnel = True
            self.reader.start_tunnel()
            self._process()
            return
        if self.reader.waiting_upgrade:
            self.reader.resume()
        if (
            self.closing
            or self.client_eof
            or head.framing == CLOSE
            or not head.keep_alive
            or not p.head.keep_alive
        ):
            self.closing = True
            if not self.pending:
                if self.refusal is not None:
                    self._send_refusal()
                else:
                    self._close_client()
            return
        if self.held is not None and not self.pending:
            held, self.held = self.held, None
            self._close_upstream()
            if self.transport is not None:
                self.transport.resume_reading()
            self._on_head(held)
        self._process()

    def upstream_lost(self, proto: UpstreamConn, exc: Exception | None) -> None:
        if proto is not self.up:
            return
        self.up = None
        r = self.up_reader
        r.eof()
        if r.reading_to_close:
            self.upstream_data(b"")
        if self.tunnel:
            self._close_client()
            return
        if not self.pending:
            return  # an idle keep-alive connection closed: reopen on the next request
        head = self.pending[0]
        if (
            self.up_served > 0
            and len(self.pending) == 1
            and not head.relayed
            and head.req_done
            and head.sent is not None
            and self.up_target is not None
        ):
            # a reused connection the upstream had already closed (its keep-alive timeout
            # raced our request): nothing was answered, so resend once on a new connection
            self._open_upstream(self.up_target)  # up_served = 0: never a second retry
            self.up_reader.expect(head.head.method)
            self._send_up(b"".join(head.sent))
            return
        if head.relayed:
            self._upstream_failed(502, "upstream closed the connection mid-response")
        else:
            why = "upstream closed the connection before responding"
            if exc is not None:
                why = describe_error(exc, 0)[1]
            self._upstream_failed(502, why)

    def _upstream_failed(self, status: int, error: str) -> None:
        """The upstream cannot answer the pending requests: say so and record it."""
        self.core.stats.upstream_errors += 1
        pending = list(self.pending)
        self.pending.clear()
        self.current = None
        self.closing = True
        self._close_upstream()
        for p in pending:
            self._finish(p, error=error)
        transport = self.transport
        if transport is None or self.closed:
            return
        if pending and pending[0].relayed:
            # the client has part of a response: only a cut connection tells it the truth
            transport.abort()
            return
        if pending:
            self.core.hold(self)  # the failure is recorded before the client hears of it
        self._write(_error_response(status, error))
        self._close_client()

    def _close_upstream(self) -> None:
        up, self.up = self.up, None
        self.up_target = None
        self.up_buf = None
        if up is not None and up.transport is not None:
            up.transport.close()

    # ------------------------------------------------------------ tunnels

    def _connect_tunnel(self, head: Head) -> None:
        host, _, port_s = head.target.rpartition(":")
        host = host.strip("[]")
        try:
            port = int(port_s)
        except ValueError:
            self._reject(ProtocolError(f"CONNECT needs host:port, got {head.target[:80]!r}"))
            return
        source = self.core.intercept_source(host, port)
        if source is not None:
            # HTTPS to a dependency: record what flows inside (devbox.record.intercept)
            self.held = head  # nothing more is read as HTTP on this connection
            if self.transport is not None:
                self.transport.pause_reading()
            asyncio.get_running_loop().create_task(intercept(self, head, host, port, source))
            return
        self.core.stats.tunnels[head.target] = self.core.stats.tunnels.get(head.target, 0) + 1
        asyncio.get_running_loop().create_task(self._open_tunnel(host, port))

    async def _open_tunnel(self, host: str, port: int) -> None:
        proto = UpstreamConn(self)
        failed = await connect_upstream(self.core, proto, Upstream("http", host, port))
        if failed is not None:
            if self.transport is not None and not self.closed:
                self.transport.write(_error_response(*failed))
                self.transport.close()
            return
        if self.closed or self.transport is None:
            if proto.transport is not None:
                proto.transport.close()
            return
        self.up = proto
        self.tunnel = True
        self.up_reader = MessageReader(is_request=False)
        self.up_reader.start_tunnel()
        self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.reader.start_tunnel()
        self._process()

    # ------------------------------------------------------------ recording

    def _finish(self, p: _Pending, error: str | None = None) -> None:
        finish_exchange(self.core, p, self.route.direction, error)

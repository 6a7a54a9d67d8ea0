"""HTTP/2 inside an intercepted ``CONNECT`` (``devbox.record.intercept``): the client's
streams relayed to the upstream's HTTP/2 connection, one exchange per stream.

Messages are relayed whole: a request goes up once complete, its response comes back
once complete (captured first, as the HTTP/1.1 relay does). Two connections, two sets
of limits, and the relay reconciles them:

- the upstream's connection preface (SETTINGS, WINDOW_UPDATE) usually arrives while the
  client's TLS handshake still runs; ``UpstreamConn`` keeps those bytes and the relay
  reads them first, or it would believe the upstream's defaults (a 64 KiB window) for
  ever;
- the client may open more streams than the upstream's MAX_CONCURRENT_STREAMS: those
  wait here and go up as upstream streams close. An upstream stream refused
  (REFUSED_STREAM: it was not processed, RFC 9113 8.7) goes up again, a few times;
- an upstream RST_STREAM reaches the client with its error code (REFUSED_STREAM lets a
  client retry);
- an upstream GOAWAY: the streams it still covers finish; the client gets a GOAWAY of
  ours, so it opens a new connection (a new ``CONNECT``) for more, and the streams the
  upstream will not process are reset REFUSED_STREAM, which clients retry.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import h2.errors

from devbox.core.model import Direction
from devbox.record.capture import BodyCapture, split_target
from devbox.record.proxy_core import (
    Captured,
    ProxyCore,
    Route,
    UpstreamConn,
    describe_error,
)
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.h2 import Closed, H2Endpoint, H2Request, H2Response, Oversized, StreamReset

if TYPE_CHECKING:
    from devbox.record.proxy import ClientConn

REFUSED = int(h2.errors.ErrorCodes.REFUSED_STREAM)
# an upstream stream refused this often goes to the client as refused (it may retry)
MAX_ATTEMPTS = 3

_H2_DROP = frozenset(("host", "proxy-connection", "proxy-authorization"))
# an HTTP/2 message is relayed whole: bigger ones are refused (the recording keeps at most
# max_body_kb of it anyway)
RELAY_MAX_BODY = 64 * 1024 * 1024


class _Stream:
    """One HTTP/2 exchange in flight (``up_sid`` 0 while it waits for an upstream stream)."""

    __slots__ = ("attempts", "csid", "id", "parent", "req", "started_at", "t0", "up_sid")

    def __init__(self, req: H2Request, id: str, parent: str | None) -> None:
        self.req = req
        self.csid = req.stream_id
        self.id = id
        self.parent = parent
        self.started_at = time.time()
        self.t0 = time.perf_counter()
        self.up_sid = 0
        self.attempts = 0


class H2Relay(asyncio.Protocol):
    """HTTP/2 from the client to HTTP/2 to the upstream, one exchange per stream."""

    def __init__(
        self, core: ProxyCore, route: Route, up_transport: asyncio.Transport, up: UpstreamConn
    ) -> None:
        assert route.upstream is not None
        self.core = core
        self.route = route
        self.upstream = route.upstream
        self.client = H2Endpoint(max_body=RELAY_MAX_BODY)
        self.up = H2Endpoint(client=True, max_body=RELAY_MAX_BODY)
        self.up_t = up_transport
        self.transport: asyncio.Transport | None = None
        self.by_up: dict[int, _Stream] = {}
        self.waiting: deque[_Stream] = deque()  # beyond the upstream's stream limit
        self.held_out: list[bytes] | None = None
        self.close_after = False
        self.closed = False
        self.pending: list[_Stream] = []  # ClientConn's interface for the drain on stop
        # the upstream connection is ours now: its bytes come here, starting with those
        # that came before (its SETTINGS and window, sent during the client's handshake)
        up.owner = cast("ClientConn", _UpstreamSide(self, up))
        self.up.initiate()
        early = up.take_early()
        if early:
            self.upstream_data(early)
        self._flush_up()

    # ------------------------------------------------------------ client side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.core.conns.add(cast("ClientConn", self))
        self.core.stats.connections += 1
        self.client.initiate()
        self._flush_client()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.client.receive_data(data)
        except RemoteProtocolError:
            self.core.stats.rejected += 1
            self._flush_client()
            self.abort()
            return
        for ev in events:
            if isinstance(ev, H2Request):
                self._request(ev)
            elif isinstance(ev, Oversized | StreamReset):
                self._drop_client_stream(ev.stream_id)
            elif isinstance(ev, Closed):
                self.close_after = True
        self._open_waiting()
        self._flush_client()
        self._flush_up()

    def _request(self, ev: H2Request) -> None:
        core = self.core
        if self.up.closed:
            # the upstream said GOAWAY and so did we: a stream the client opened before it
            # heard ours was not processed, it retries on a new connection
            self.client.reset(ev.stream_id, REFUSED)
            return
        core.stats.requests += 1
        parent = core.correlator.parent_for(ev.http1_headers())
        st = _Stream(ev, core.next_id(self.route.source), parent)
        self.pending.append(st)
        self.waiting.append(st)

    def _open_waiting(self) -> None:
        """Streams up while the upstream's MAX_CONCURRENT_STREAMS allows (in order)."""
        while self.waiting and self.up.can_open():
            st = self.waiting.popleft()
            req = st.req
            headers = tuple((k, v) for k, v in req.headers if k not in _H2_DROP)
            st.attempts += 1
            st.up_sid = self.up.send_request(
                req.method,
                req.path,
                self.upstream.authority,
                headers,
                req.body,
                trailers=req.trailers,
            )
            if not st.up_sid:  # can_open said yes: stay safe all the same
                self._give_up(st, "the upstream connection takes no new stream", REFUSED)
                continue
            self.by_up[st.up_sid] = st

    def _drop_client_stream(self, sid: int) -> None:
        for st in [s for s in self.waiting if s.csid == sid]:
            self.waiting.remove(st)
            self._finish(st, None, "client reset the stream before the response")
        for up_sid, st in list(self.by_up.items()):
            if st.csid == sid:
                del self.by_up[up_sid]
                self.up.reset(up_sid)
                self._finish(st, None, "client reset the stream before the response")

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.conns.discard(cast("ClientConn", self))
        for st in [*self.by_up.values(), *self.waiting]:
            self._finish(st, None, "client closed the connection before the response completed")
        self.by_up.clear()
        self.waiting.clear()
        self.up_t.close()

    def pause_writing(self) -> None:
        self.up_t.pause_reading()

    def resume_writing(self) -> None:
        self.up_t.resume_reading()

    # ------------------------------------------------------------ upstream side

    def upstream_data(self, data: bytes) -> None:
        try:
            events = self.up.receive_data(data)
        except RemoteProtocolError as exc:
            self._upstream_failed(f"invalid HTTP/2 from upstream: {exc}")
            return
        for ev in events:
            if isinstance(ev, H2Response):
                self._response(ev)
            elif isinstance(ev, StreamReset):
                self._upstream_reset(ev.stream_id, ev.code)
            elif isinstance(ev, Oversized):
                self._upstream_reset(ev.stream_id, int(h2.errors.ErrorCodes.INTERNAL_ERROR))
            elif isinstance(ev, Closed):
                self._upstream_goaway(ev)
        self._open_waiting()  # streams closed, or SETTINGS raised the limit
        self._flush_up()
        self._flush_client()

    def _response(self, ev: H2Response) -> None:
        st = self.by_up.pop(ev.stream_id, None)
        if st is None:
            return
        self._finish(st, ev, None)
        self.core.hold(cast("ClientConn", self))  # captured before the client has it
        self.client.send_response(st.csid, ev.status, ev.headers, ev.body, ev.trailers)
        if self.up.closed and not self.by_up:
            self._close_client()  # after GOAWAY: the last stream it covered is answered

    def _upstream_reset(self, up_sid: int, code: int) -> None:
        st = self.by_up.pop(up_sid, None)
        if st is None:
            return
        if code == REFUSED and st.attempts < MAX_ATTEMPTS and not self.up.closed:
            # not processed (RFC 9113 8.7), e.g. beyond a stream limit its SETTINGS had
            # not yet told us: it goes up again when a stream frees
            st.up_sid = 0
            self.waiting.appendleft(st)
            return
        self._give_up(st, f"upstream reset the stream (HTTP/2 error code {code})", code)

    def _give_up(self, st: _Stream, error: str, code: int) -> None:
        """The client hears the upstream's reason (a REFUSED_STREAM is retried)."""
        if code == REFUSED:
            self._forget(st)  # nothing happened upstream: the client's retry is recorded
        else:
            self._finish(st, None, error)
        self.client.reset(st.csid, code)

    def _forget(self, st: _Stream) -> None:
        if st in self.pending:
            self.pending.remove(st)

    def _upstream_goaway(self, ev: Closed) -> None:
        # the streams it covers finish here; those above it were not processed and the
        # client retries them; no new stream on this connection: our GOAWAY sends the
        # client to a new one
        for up_sid, st in list(self.by_up.items()):
            if up_sid > ev.last_stream_id:
                del self.by_up[up_sid]
                self._give_up(st, "upstream GOAWAY", REFUSED)
        while self.waiting:
            self._give_up(self.waiting.popleft(), "upstream GOAWAY", REFUSED)
        self.client.goaway()
        if not self.by_up:
            self._flush_client()  # the resets and our GOAWAY go before the close
            self._close_client()

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.by_up or self.waiting:
            why = describe_error(exc, 0)[1] if exc is not None else "upstream closed"
            self._upstream_failed(f"{why} before responding")
        self._close_client()

    def _upstream_failed(self, error: str) -> None:
        self.core.stats.upstream_errors += 1
        for st in [*self.by_up.values(), *self.waiting]:
            self._finish(st, None, error)
            self.client.reset(st.csid)
        self.by_up.clear()
        self.waiting.clear()
        self._flush_client()
        self.up_t.close()

    # ------------------------------------------------------------ writing, recording

    def _flush_client(self) -> None:
        if self.transport is None:
            return  # before connection_made: what is queued goes with the first flush
        out = self.client.data_to_send()
        if not out:
            return
        if self.held_out is not None:
            self.held_out.append(out)
        else:
            self.transport.write(out)

    def _flush_up(self) -> None:
        out = self.up.data_to_send()
        if out and not self.up_t.is_closing():
            self.up_t.write(out)

    def release(self) -> None:
        """``ProxyCore.flush``: the captures are with the worker, the client may see them."""
        out, self.held_out = self.held_out, None
        if self.transport is None or self.closed:
            return
        if out:
            self.transport.write(b"".join(out))
        if self.close_after and not self.by_up:
            self.transport.close()

    def _close_client(self) -> None:
        self.close_after = True
        if self.held_out is None and self.transport is not None and not self.by_up:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.up_t.close()

    def _finish(self, st: _Stream, resp: H2Response | None, error: str | None) -> None:
        if st in self.pending:
            self.pending.remove(st)
        core = self.core
        duration_ms = (time.perf_counter() - st.t0) * 1000.0
        req = st.req
        rq = BodyCapture(core.max_body, _header(req.headers, "content-encoding"))
        rq.add(req.body)
        rs = None
        if resp is not None:
            rs = BodyCapture(core.max_body, _header(resp.headers, "content-encoding"))
            rs.add(resp.body)
        sent = (("host", self.upstream.authority), *((k, v) for k, v in req.headers))
        sent = tuple((k, v) for k, v in sent if k not in ("proxy-connection",))
        capture = (
            "x",
            self.route.source,
            Direction.OUTBOUND.value,
            st.id,
            st.parent,
            "https",
            self.upstream.authority,
            req.method,
            req.path,
            "HTTP/2",
            list(sent),
            rq.body(),
            rq.truncated,
            (resp.status, "", "HTTP/2", list(resp.headers)) if resp is not None else None,
            rs.body() if rs is not None else b"",
            rs is not None and rs.truncated,
            st.started_at,
            duration_ms,
            duration_ms if resp is not None else None,
            error,
        )
        captured = None
        if core.on_captured is not None:
            captured = Captured(
                self.route.source,
                req.method,
                split_target(req.path)[0],
                resp.status if resp is not None else None,
                error,
                duration_ms,
            )
        core.record(capture, self.route.source, captured)


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None


class _UpstreamSide:
    """Stands in for the ``ClientConn`` an ``UpstreamConn`` reports to."""

    __slots__ = ("relay", "up")

    def __init__(self, relay: H2Relay, up: UpstreamConn) -> None:
        self.relay = relay
        self.up = up  # UpstreamConn delivers bytes only while ``owner.up is self``

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.relay.transport

    def upstream_data(self, data: bytes) -> None:
        self.relay.upstream_data(data)

    def upstream_lost(self, _proto: object, exc: Exception | None) -> None:
        self.relay.upstream_lost(exc)

"""HTTPS interception in the forward proxy: what flows inside a ``CONNECT`` is recorded.

Theory of operation
-------------------
A ``CONNECT host:port`` whose origin (``https://host:port``) is a profile dependency's
upstream is intercepted, any other is tunnelled as before:

1. the proxy opens the TLS connection to the real upstream first (certificates verified
   as for every upstream, ``--ca-bundle`` for private CAs; ALPN ``h2`` and
   ``http/1.1``), so it knows what the upstream speaks before it answers the client;
2. it answers ``200 Connection established`` and terminates the client's TLS with a
   leaf of devbox's CA for ``host`` (``devbox.wire.tls.TlsBridge``), offering ``h2``
   only when the upstream chose it;
3. inside: HTTP/1.1 is relayed by the ordinary ``ClientConn`` (Host, framing, retries,
   crash-safe capture: everything the plain proxy does), handed the upstream
   connection already open; HTTP/2 by ``H2Relay`` below, stream by stream, each a
   normal exchange.

A client that refuses devbox's certificate (a pinned or self-contained trust store:
the handshake ends with an alert, or the client hangs up mid-handshake) is reported
once, and its later ``CONNECT``\\s to that host are tunnelled unrecorded. An upstream
that demands a client certificate (mutual TLS) cannot be intercepted either: that host
is tunnelled from then on too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from typing import TYPE_CHECKING, cast

from devbox.core.model import Direction
from devbox.record.capture import BodyCapture, split_target
from devbox.record.http1 import Head, MessageReader
from devbox.record.proxy_core import (
    Captured,
    ProxyCore,
    Route,
    UpstreamConn,
    _error_response,
    describe_error,
)
from devbox.wire.certs import LOCAL_HOSTS
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.h2 import Closed, H2Endpoint, H2Request, H2Response, Oversized, StreamReset
from devbox.wire.tls import TlsBridge, TlsTransport
from devbox.wire.upstream import Upstream

if TYPE_CHECKING:
    from devbox.record.proxy import ClientConn

_H2_DROP = frozenset(("host", "proxy-connection", "proxy-authorization"))
# an HTTP/2 message is relayed whole: bigger ones are refused (the recording keeps at most
# max_body_kb of it anyway)
RELAY_MAX_BODY = 64 * 1024 * 1024


def refusal_reason(exc: BaseException) -> str:
    """A client's handshake failure in words (the alert it sent, when it sent one)."""
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    return str(exc) or type(exc).__name__


def mutual_tls(exc: BaseException) -> bool:
    """The upstream asked for a client certificate we do not have."""
    reason = str(getattr(exc, "reason", "") or exc).upper()
    return "CERTIFICATE_REQUIRED" in reason or "HANDSHAKE_FAILURE" in reason


async def intercept(conn: ClientConn, head: Head, host: str, port: int, source: str) -> None:
    """Steps 1 and 2 above; ``conn`` holds the ``CONNECT`` (its reading is paused)."""
    core = conn.core
    up = Upstream("https", host, port)
    loop = asyncio.get_running_loop()
    proto = UpstreamConn(conn)
    try:
        async with asyncio.timeout(core.connect_timeout_s):
            await loop.create_connection(
                lambda: proto, host, port, ssl=core.ssl_context_h2(), server_hostname=host
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        if mutual_tls(exc):
            core.refuse(f"{host}:{port}", "the upstream asks for a client certificate (mTLS)")
        status, error = describe_error(exc, core.connect_timeout_s)
        if conn.transport is not None and not conn.closed:
            conn.transport.write(_error_response(status, error))
            conn.transport.close()
        return
    t = proto.transport
    assert t is not None
    if conn.closed or conn.transport is None:
        t.close()
        return
    ssl_obj = t.get_extra_info("ssl_object")
    up_alpn = ssl_obj.selected_alpn_protocol() if ssl_obj is not None else None
    offer = ("h2", "http/1.1") if up_alpn == "h2" else ("http/1.1",)
    assert core.certs is not None
    ctx = core.certs.context_for((host,), offer)
    core.stats.intercepted[f"{host}:{port}"] = core.stats.intercepted.get(f"{host}:{port}", 0) + 1
    route = Route(source, Direction.OUTBOUND, up, inside_tls=True)

    def after_tls(alpn: str | None, _sni: str | None, tt: TlsTransport) -> asyncio.Protocol:
        if alpn == "h2":
            if up_alpn == "h2":
                return H2Relay(core, route, t, proto)
            t.close()  # cannot happen (h2 is offered only then); stay safe
        inner = type(conn)(core, route)
        if up_alpn in (None, "http/1.1"):
            adopt_upstream(inner, proto, up)
        else:
            t.close()  # the upstream speaks h2, this client HTTP/1.1: a fresh connection
        return inner

    def refused(exc: ssl.SSLError | OSError) -> None:
        t.close()
        core.refuse(
            f"{host}:{port}",
            f"the client refused devbox's certificate ({refusal_reason(exc)}); it pins its "
            "own or does not trust devbox's CA (devbox ca trust-hints)",
        )

    hand_over(conn, TlsBridge(ctx, after_tls, on_failure=refused))


def adopt_upstream(conn: ClientConn, proto: UpstreamConn, up: Upstream) -> None:
    """Give ``conn`` the upstream connection opened before the client's handshake."""
    proto.owner = conn
    conn.up = proto
    conn.up_target = up
    conn.up_reader = MessageReader(is_request=False)
    conn.up_buf = None
    conn.up_served = 0


def hand_over(conn: ClientConn, bridge: TlsBridge) -> None:
    """Answer the CONNECT and give the connection to ``bridge`` (TLS with our leaf)."""
    t = conn.transport
    if t is None or conn.closed:
        return
    first = conn.reader.peek()
    conn.core.conns.discard(conn)
    conn.closed = True
    conn.transport = None
    t.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    bridge.start(t, first, timeout_s=conn.core.connect_timeout_s)
    t.resume_reading()


def accept_tls(conn: ClientConn, first: bytes) -> None:
    """The service speaks TLS to a reverse proxy whose upstream is https://: terminate it
    with a leaf of devbox's CA (localhost and the loopback addresses) and relay what is
    inside with a fresh connection on the same route."""
    core = conn.core
    t = conn.transport
    assert core.certs is not None and t is not None
    route = dataclasses.replace(conn.route, inside_tls=True)
    ctx = core.certs.context_for(LOCAL_HOSTS, ("http/1.1",))
    core.conns.discard(conn)
    conn.closed = True
    conn.transport = None
    factory = type(conn)

    def inner(_alpn: str | None, _sni: str | None, _t: TlsTransport) -> asyncio.Protocol:
        return factory(core, route)

    TlsBridge(ctx, inner).start(t, first, timeout_s=core.connect_timeout_s)


class _Stream:
    """One HTTP/2 exchange in flight."""

    __slots__ = ("id", "parent", "req", "started_at", "t0", "up_sid")

    def __init__(self, req: H2Request, id: str, parent: str | None) -> None:
        self.req = req
        self.id = id
        self.parent = parent
        self.started_at = time.time()
        self.t0 = time.perf_counter()
        self.up_sid = 0


class H2Relay(asyncio.Protocol):
    """HTTP/2 from the client to HTTP/2 to the upstream, one exchange per stream. Whole
    messages: a request goes up once complete, its response comes back once complete
    (and is captured first, as the HTTP/1.1 relay does)."""

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
        self._client_sid: dict[int, int] = {}  # upstream stream -> the client's
        self.held_out: list[bytes] | None = None
        self.close_after = False
        self.closed = False
        self.pending: list[_Stream] = []  # ClientConn's interface for the drain on stop
        # the upstream connection is ours now: its bytes come here
        up.owner = cast("ClientConn", _UpstreamSide(self, up))
        self.up.initiate()
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
        self._flush_client()
        self._flush_up()

    def _request(self, ev: H2Request) -> None:
        core = self.core
        core.stats.requests += 1
        parent = core.correlator.parent_for(ev.http1_headers())
        st = _Stream(ev, core.next_id(self.route.source), parent)
        headers = tuple((k, v) for k, v in ev.headers if k not in _H2_DROP)
        st.up_sid = self.up.send_request(
            ev.method, ev.path, self.upstream.authority, headers, ev.body, trailers=ev.trailers
        )
        self.by_up[st.up_sid] = st
        self.pending.append(st)
        self._client_sid[st.up_sid] = ev.stream_id

    def _drop_client_stream(self, sid: int) -> None:
        for up_sid, csid in list(self._client_sid.items()):
            if csid == sid:
                st = self.by_up.pop(up_sid, None)
                self._client_sid.pop(up_sid, None)
                self.up.reset(up_sid)
                if st is not None:
                    self._finish(st, None, "client reset the stream before the response")

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.conns.discard(cast("ClientConn", self))
        for st in list(self.by_up.values()):
            self._finish(st, None, "client closed the connection before the response completed")
        self.by_up.clear()
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
            elif isinstance(ev, StreamReset | Oversized):
                self._upstream_reset(ev.stream_id)
            elif isinstance(ev, Closed) and not self.by_up:
                self._close_client()
        self._flush_up()
        self._flush_client()

    def _response(self, ev: H2Response) -> None:
        st = self.by_up.pop(ev.stream_id, None)
        csid = self._client_sid.pop(ev.stream_id, None)
        if st is None or csid is None:
            return
        self._finish(st, ev, None)
        self.core.hold(cast("ClientConn", self))  # captured before the client has it
        self.client.send_response(csid, ev.status, ev.headers, ev.body, ev.trailers)

    def _upstream_reset(self, up_sid: int) -> None:
        st = self.by_up.pop(up_sid, None)
        csid = self._client_sid.pop(up_sid, None)
        if st is not None:
            self._finish(st, None, "upstream reset the stream")
        if csid is not None:
            self.client.reset(csid)

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.by_up:
            why = describe_error(exc, 0)[1] if exc is not None else "upstream closed"
            self._upstream_failed(f"{why} before responding")
        self._close_client()

    def _upstream_failed(self, error: str) -> None:
        self.core.stats.upstream_errors += 1
        for up_sid, st in list(self.by_up.items()):
            csid = self._client_sid.pop(up_sid, None)
            self._finish(st, None, error)
            if csid is not None:
                self.client.reset(csid)
        self.by_up.clear()
        self._flush_client()
        self.up_t.close()

    # ------------------------------------------------------------ writing, recording

    def _flush_client(self) -> None:
        out = self.client.data_to_send()
        if not out or self.transport is None:
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

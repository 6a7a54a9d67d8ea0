"""The recording proxy's shared parts: routes, statistics, the per-recorder core that
batches captures for the worker, error answers and the per-exchange record. Split out
of ``devbox.record.proxy`` (the connections) by what it holds."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from devbox.core.model import Direction
from devbox.record.capture import BodyCapture, split_target
from devbox.record.correlate import Correlator
from devbox.record.http1 import Head
from devbox.wire.upstream import Upstream

if TYPE_CHECKING:
    from devbox.record.proxy import ClientConn
    from devbox.wire.ca import CertStore


@dataclass(frozen=True, slots=True)
class Route:
    """What a listener does with the requests it accepts."""

    source: str  # dependency name, "inbound", or "forward"
    direction: Direction
    upstream: Upstream | None  # None: forward proxy (each request names its origin)
    rewrite_host: bool = True  # outbound: Host names the real upstream
    inside_tls: bool = False  # the client's TLS is already terminated (interception)


@dataclass(slots=True)
class ProxyStats:
    connections: int = 0
    requests: int = 0
    rejected: int = 0  # malformed requests answered 4xx by the proxy itself
    upstream_errors: int = 0
    tunnels: dict[str, int] = field(default_factory=dict)  # CONNECT host:port -> count
    unrecorded: dict[str, int] = field(default_factory=dict)  # forward-proxy origins not in profile
    intercepted: dict[str, int] = field(default_factory=dict)  # CONNECT host:port recorded inside
    refused: dict[str, str] = field(default_factory=dict)  # host:port -> why it is tunnelled


@dataclass(frozen=True, slots=True)
class Captured:
    """What the live view learns of each exchange (no query string, nothing redacted away)."""

    source: str
    method: str
    path: str
    status: int | None
    error: str | None
    duration_ms: float


Capture = tuple[Any, ...]  # one exchange as a worker frame (see devbox.record.worker)


def captured_of(c: Capture) -> Captured:
    """The live view's line of a capture (the frame's fields: ``worker.exchange_of``)."""
    resp = c[13]
    status = resp[0] if resp is not None else None
    return Captured(c[1], c[7], split_target(c[8])[0], status, c[19], c[17])


class ProxyCore:
    """State shared by every connection of one recorder (one event loop thread)."""

    def __init__(
        self,
        *,
        emit: Callable[[list[Capture]], None],
        correlator: Correlator,
        max_body: int,
        stamp: str,
        connect_timeout_s: float = 10.0,
        response_timeout_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        forward_sources: dict[tuple[str, str, int], str] | None = None,
        on_error: Callable[[str], None] | None = None,
        certs: CertStore | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self.emit = emit
        self.correlator = correlator
        self.max_body = max_body
        self.stamp = stamp
        self.connect_timeout_s = connect_timeout_s
        self.response_timeout_s = response_timeout_s
        self._ssl = ssl_context
        self.forward_sources = forward_sources or {}
        self.on_error = on_error
        self.stats = ProxyStats()
        # HTTPS interception (forward proxy): leaves of devbox's CA; None: tunnel CONNECT
        self.certs = certs
        self.ca_bundle = ca_bundle
        self._ssl_h2: ssl.SSLContext | None = None
        self.conns: set[ClientConn] = set()
        self._counters: dict[str, int] = {}
        self.captured: dict[str, int] = {}  # source -> exchanges handed to the worker
        self.on_captured: Callable[[Captured], None] | None = None
        self.stopping = False
        # captures of this loop iteration, handed to the worker in one write; the
        # connections whose last response bytes wait for that write
        self._batch: list[Capture] = []
        self._held: list[ClientConn] = []
        self._scheduled = False
        # the loop this core serves (one, the recorder's thread), kept at first use:
        # asyncio.get_running_loop() makes a getpid() system call, here once per iteration
        self._loop: asyncio.AbstractEventLoop | None = None

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = make_ssl_context()
        return self._ssl

    def ssl_context_h2(self) -> ssl.SSLContext:
        """The upstream context of intercepted connections: ALPN h2 and http/1.1."""
        if self._ssl_h2 is None:
            self._ssl_h2 = make_ssl_context(self.ca_bundle, alpn=("h2", "http/1.1"))
        return self._ssl_h2

    def intercept_source(self, host: str, port: int) -> str | None:
        """The dependency a ``CONNECT host:port`` is recorded for, or None: tunnel it."""
        if self.certs is None or f"{host}:{port}" in self.stats.refused:
            return None
        return self.forward_sources.get(("https", host, port))

    def refuse(self, hostport: str, why: str) -> None:
        """``hostport`` cannot be intercepted: said once, tunnelled unrecorded from now on."""
        if hostport in self.stats.refused:
            return
        self.stats.refused[hostport] = why
        if self.on_error is not None:
            self.on_error(f"{hostport}: {why}; its CONNECTs are tunnelled unrecorded from now on")

    def next_id(self, source: str) -> str:
        n = self._counters.get(source, 0) + 1
        self._counters[source] = n
        return f"{source}-{self.stamp}-{n:04d}"

    def record(self, capture: Capture) -> None:
        if self.stopping:
            return  # connections we cut while stopping are not traffic
        self._batch.append(capture)
        self._schedule()

    def hold(self, conn: ClientConn) -> None:
        """Keep ``conn``'s writes to its client until this iteration's captures are out."""
        if conn.held_out is None:
            conn.held_out = []
            self._held.append(conn)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Captures to the worker (one write), then the held response bytes to clients."""
        self._scheduled = False
        batch, self._batch = self._batch, []
        if batch:
            try:
                self.emit(batch)
            except Exception as exc:  # the relay must survive a failing sink; it is reported
                if self.on_error is not None:
                    self.on_error(f"could not record {len(batch)} exchanges: {exc}")
            else:
                on_captured = self.on_captured
                for capture in batch:
                    if capture[0] != "x":
                        continue  # a relayed connection's bytes: the worker reports those
                    source = capture[1]
                    self.captured[source] = self.captured.get(source, 0) + 1
                    if on_captured is not None:
                        on_captured(captured_of(capture))
        held, self._held = self._held, []
        for conn in held:
            conn.release()

    def read_by_worker(self, lines: list[list[Any]]) -> None:
        """Exchanges the worker read from relayed connections (``devbox.record.tee``), as
        it reported them: counted and shown like the ones captured here."""
        on_captured = self.on_captured
        for line in lines:
            c = Captured(*line)
            self.captured[c.source] = self.captured.get(c.source, 0) + 1
            if on_captured is not None:
                on_captured(c)

    def abort_all(self) -> None:
        for c in list(self.conns):
            c.abort()


def make_ssl_context(
    ca_bundle: str | None = None, alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLContext:
    """Normal certificate verification and SNI; ``ca_bundle`` adds a custom CA."""
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def describe_error(exc: BaseException, timeout_s: float) -> tuple[int, str]:
    """An upstream failure as (status for the client, Exchange.error text)."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return 504, f"timeout: no connection after {timeout_s:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return 502, f"tls: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return 502, f"tls: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return 502, "connection refused"
    if isinstance(exc, socket.gaierror):
        return 502, f"dns: {exc.strerror}"
    if isinstance(exc, ConnectionResetError):
        return 502, "connection reset"
    if isinstance(exc, OSError):
        if exc.errno == errno.EHOSTUNREACH:
            return 502, "host unreachable"
        return 502, exc.strerror or str(exc)
    return 502, str(exc) or type(exc).__name__


def _error_response(status: int, message: str) -> bytes:
    import orjson

    body = orjson.dumps({"error": message, "by": "devbox record"})
    reason = {
        400: "Bad Request",
        431: "Request Header Fields Too Large",
        501: "Not Implemented",
        502: "Bad Gateway",
        504: "Gateway Timeout",
        505: "HTTP Version Not Supported",
    }
    return (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1") + body


_FORWARD_DROP = frozenset(("proxy-connection", "proxy-authorization"))


def _rebuild_head(
    head: Head, target: str, host: str | None, drop: frozenset[str] = frozenset()
) -> tuple[bytes, list[tuple[str, str]]]:
    headers: list[tuple[str, str]] = []
    seen_host = False
    for k, v in head.headers:
        lk = k.lower()
        if lk == "host":
            if host is not None:
                if seen_host:
                    continue
                v = host
            seen_host = True
        elif lk in drop:
            continue
        headers.append((k, v))
    if not seen_host and host is not None:
        headers.insert(0, ("Host", host))
    lines = [f"{head.method} {target} {head.version}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), headers


class _Pending:
    """One exchange in flight on a client connection."""

    __slots__ = (
        "early",
        "error",
        "head",
        "host",
        "id",
        "parent",
        "record",
        "relayed",
        "req_body",
        "req_done",
        "resp_body",
        "resp_head",
        "resp_trailers",
        "scheme",
        "sent",
        "sent_headers",
        "sent_size",
        "source",
        "started_at",
        "t0",
        "t_first",
        "timer",
    )

    def __init__(self, head: Head, id: str, source: str) -> None:
        self.early = False  # answered whole before its body came: recorded with the body
        self.head = head
        self.id = id
        self.source = source
        self.sent_headers = head.headers  # as they went upstream (Host rewritten)
        self.sent: list[bytes] | None = None  # the request's bytes, while retryable
        self.sent_size = 0
        self.started_at = time.time()
        self.t0 = time.perf_counter()
        self.t_first: float | None = None
        self.parent: str | None = None
        self.req_body: BodyCapture | None = None
        self.resp_head: Head | None = None
        self.resp_body: BodyCapture | None = None
        self.resp_trailers: list[tuple[str, str]] = []  # a chunked body's
        self.req_done = False
        self.relayed = False  # the client has seen part of the response
        self.timer: asyncio.TimerHandle | None = None
        self.scheme = "http"
        self.host = ""
        self.record = True
        self.error: str | None = None


class RelaysUpstream(asyncio.Protocol):
    """A client side paired with one upstream connection (``up``): while its client
    reads slowly, the upstream is not read either, so a slow reader slows its writer
    rather than filling devbox; its close waits for the bytes held for the batch."""

    up: UpstreamConn | None
    transport: asyncio.Transport | None
    held_out: list[bytes] | None  # see ProxyCore.hold
    close_after: bool

    def _close_client(self) -> None:
        """Close the client's side, after the bytes held for the worker's batch."""
        if self.held_out is not None:
            self.close_after = True
        elif self.transport is not None:
            self._close_transport(self.transport)

    def _close_transport(self, t: asyncio.Transport) -> None:
        t.close()

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.resume_reading()


# unclaimed upstream bytes kept (see ``UpstreamConn.early``) before reading pauses
EARLY_LIMIT = 256 * 1024


class UpstreamConn(asyncio.Protocol):
    __slots__ = ("early", "owner", "transport")

    def __init__(self, owner: ClientConn) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        # bytes that came before an owner took the connection (``owner.up is not self``):
        # an HTTP/2 upstream sends its SETTINGS and WINDOW_UPDATE at once, while the
        # intercepted client is still in its TLS handshake; they must reach the relay
        self.early = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.owner.up is self:
            self.owner.upstream_data(data)
            return
        self.early += data
        if len(self.early) > EARLY_LIMIT and self.transport is not None:
            self.transport.pause_reading()  # nobody reads yet: do not buffer without end

    def take_early(self) -> bytes:
        """What arrived before the new owner took over (reading resumes if it paused)."""
        out, self.early = bytes(self.early), bytearray()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        return out

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.upstream_lost(self, exc)

    def pause_writing(self) -> None:
        if self.owner.transport is not None:
            self.owner.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.owner.transport is not None:
            self.owner.transport.resume_reading()


async def connect_upstream(
    core: ProxyCore, proto: asyncio.Protocol, up: Upstream
) -> tuple[int, str] | None:
    """Open ``proto``'s connection to ``up`` (TLS verified with the core's context when
    ``up`` is https): None, or the (status, error) the client is to be answered."""
    try:
        async with asyncio.timeout(core.connect_timeout_s):
            await asyncio.get_running_loop().create_connection(
                lambda: proto,
                up.host,
                up.port,
                ssl=core.ssl_context() if up.tls else None,
                server_hostname=up.host if up.tls else None,
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return describe_error(exc, core.connect_timeout_s)
    return None


class _Owner(Protocol):
    up: UpstreamConn | None
    up_buf: list[bytes] | None
    transport: asyncio.Transport | None


def take_upstream(owner: _Owner, proto: UpstreamConn) -> None:
    """``proto``, just connected, becomes ``owner``'s upstream: what the client sent while
    it opened goes up. Reading may have paused on a large body meanwhile; it resumes (if
    the upstream cannot take the bytes at once, pause_writing pauses it again)."""
    assert proto.transport is not None
    owner.up = proto
    buf, owner.up_buf = owner.up_buf or [], None
    if owner.transport is not None:
        owner.transport.resume_reading()
    if buf:
        proto.transport.write(b"".join(buf))


def finish_exchange(
    core: ProxyCore, p: _Pending, direction: Direction, error: str | None = None
) -> None:
    """An exchange is over: its timer stops and its capture goes to the worker's batch."""
    if p.timer is not None:
        p.timer.cancel()
        p.timer = None
    if direction is Direction.INBOUND:
        core.correlator.end(p.id)
    if not p.record:
        return
    duration_ms = (time.perf_counter() - p.t0) * 1000.0
    rq, rs, resp, head = p.req_body, p.resp_body, p.resp_head, p.head
    capture = (
        "x",
        p.source,
        direction.value,
        p.id,
        p.parent,
        p.scheme,
        p.host,
        head.method,
        head.target,
        head.version,
        p.sent_headers,
        rq.body() if rq is not None else b"",
        rq is not None and rq.truncated,
        (resp.status, resp.reason, resp.version, resp.headers, p.resp_trailers)
        if resp is not None
        else None,
        rs.body() if rs is not None else b"",
        rs is not None and rs.truncated,
        p.started_at,
        duration_ms,
        (p.t_first - p.t0) * 1000.0 if p.t_first is not None else None,
        error,
    )
    core.record(capture)

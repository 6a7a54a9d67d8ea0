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
3. inside: the client and the upstream connection, both HTTP/1.1 or both HTTP/2, are
   relayed verbatim (``devbox.record.tee``) and the recording worker reads the copy of
   their bytes into exchanges (``devbox.record.streams``, ``devbox.record.h2streams``).

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
from typing import TYPE_CHECKING

from devbox.core.model import Direction
from devbox.record.http1 import Head
from devbox.record.proxy_core import (
    Route,
    UpstreamConn,
    _error_response,
    describe_error,
)
from devbox.record.tee import TeeConn
from devbox.wire.certs import LOCAL_HOSTS
from devbox.wire.tls import TlsBridge, TlsTransport
from devbox.wire.upstream import Upstream

if TYPE_CHECKING:
    from devbox.record.proxy import ClientConn


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
        # one client, one upstream connection, both speaking the same protocol: relayed
        # verbatim, read by the recording worker (devbox.record.tee; h2streams for
        # HTTP/2). An upstream that chose h2 for a client that speaks HTTP/1.1 is left
        # for a fresh HTTP/1.1 connection.
        if alpn == "h2" and up_alpn == "h2":
            return TeeConn(core, route, proto, up, h2=True)
        if up_alpn in (None, "http/1.1"):
            return TeeConn(core, route, proto, up)
        t.close()
        return TeeConn(core, route, None, up)

    def refused(exc: ssl.SSLError | OSError) -> None:
        t.close()
        core.refuse(
            f"{host}:{port}",
            f"the client refused devbox's certificate ({refusal_reason(exc)}); it pins its "
            "own or does not trust devbox's CA (devbox ca trust-hints)",
        )

    hand_over(conn, TlsBridge(ctx, after_tls, on_failure=refused))


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

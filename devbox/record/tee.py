"""An intercepted connection relayed verbatim, its bytes copied to the worker.

Theory of operation
-------------------
When the forward proxy intercepts a ``CONNECT`` and both the client and the upstream
settle on HTTP/1.1, or both on HTTP/2, the connection inside the TLS is one client
talking to one upstream connection for its whole life: nothing needs routing, rewriting
or retrying. So the proxy does not read HTTP there at all (over HTTP/2 it follows frame
heads only: ``devbox.record.h2late``). ``TeeConn`` relays every plaintext byte as it
comes, in both directions, and puts a copy of each chunk (with the time it crossed and,
for the client's, the inbound exchanges in flight, for linking) in the batch the
recording worker gets once per loop iteration. The worker reads the two streams back
into exchanges (``devbox.record.streams``). The event loop's share of a request is
then TLS and a copy; parsing, capture, redaction and the append run in the worker,
on the other core.

What the client and the upstream see is exactly what the other sent: a request the
upstream refuses is refused by the upstream, not by devbox. Crash safety is the
proxy's usual one: upstream bytes reach the client only after the batch holding their
copy went down the pipe (``ProxyCore.hold``), so a response a client has whole is in
the worker's hands. An upstream that answers nothing for the response timeout after
the client last spoke ends the connection, recorded as a timeout (never once it
switched protocols: a WebSocket's messages owe no answer; never over HTTP/2, where a
window update or a PING owes none either: the client's own timeouts hold).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, cast

from devbox.record.h2late import STOP_GRACE_S, FrameHeads, OpenStreams, late_resets
from devbox.record.proxy_core import (
    ProxyCore,
    RelaysUpstream,
    Route,
    UpstreamConn,
    _error_response,
    connect_upstream,
    take_upstream,
)
from devbox.wire.tls import TlsTransport

if TYPE_CHECKING:
    from devbox.wire.upstream import Upstream

HIGH_WATER = 256 * 1024
LINGER_S = 2.0  # a closed client's bytes read and dropped for this long at most
H2_CLOSE_S = 1.0  # an HTTP/2 client's time to close first once the upstream has closed
EOF_QUIET_S = 1.0
_SWITCHING = (b" 101 ", b" 101\r")  # bytes 8 to 13 of a 101's status line

_ids = itertools.count(1)


class TeeConn(RelaysUpstream):
    """The inner side of an intercepted client connection, paired with ``up``."""

    def __init__(
        self,
        core: ProxyCore,
        route: Route,
        up: UpstreamConn | None,
        origin: Upstream,
        *,
        h2: bool = False,
    ) -> None:
        self.core = core
        self.route = route
        self.up = up
        self.origin = origin
        self.cid = next(_ids)
        self.transport: asyncio.Transport | None = None
        self.held_out: list[bytes] | None = None  # see ProxyCore.hold
        self.close_after = False
        self.closed = False
        self.ended = False  # the worker has this connection's "c" frame
        # perf_counter time the client last spoke with no upstream byte since (the timeout)
        self.asked: float | None = None
        # the upstream switched protocols (101): no byte owes an answer any more. Over
        # HTTP/2 none ever does as far as the relay can tell (a SETTINGS ack, a
        # WINDOW_UPDATE, a PING are bytes the upstream need not answer): the client's own
        # timeouts hold, as without devbox
        self.switched = h2
        # HTTP/2 on both sides (the client and the upstream speak to each other through
        # the relay; the worker reads the frames): each direction's frame heads and the
        # streams owed an answer (h2late); None over HTTP/1.1
        self.heads = (FrameHeads(from_client=True), FrameHeads(from_client=False)) if h2 else None
        self.streams = OpenStreams()
        self.late: list[bytes] = []  # resets held back, oldest first (h2late)
        self.client_eof = False  # the client half-closed (see eof_received)
        self.last_up = time.perf_counter()  # when the upstream last sent anything
        self._tick: asyncio.TimerHandle | None = None
        # the client's bytes while our own upstream connection opens (None: it is open)
        self.up_buf: list[bytes] | None = None
        # what the upstream sent during the client's handshake: an HTTP/2 server's
        # SETTINGS (an HTTP/1.1 server says nothing before a request)
        self.early = b""
        if up is not None:
            up.owner = self  # type: ignore[assignment]
            early = up.take_early()
            if h2:
                self.early = early

    @property
    def pending(self) -> tuple[float, ...]:
        """Non-empty while an answer is owed, as far as the relay can tell (shutdown
        waits for these, as for the parsing path's pending exchanges)."""
        if self.heads is not None:
            return (self.last_up,) * len(self.streams.ids)
        return (self.asked,) if self.asked is not None else ()

    # ------------------------------------------------------------ client side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        t.set_write_buffer_limits(high=HIGH_WATER)
        core = self.core
        core.conns.add(self)  # type: ignore[arg-type]
        core.stats.connections += 1
        route = self.route
        opened = (
            "o",
            self.cid,
            route.source,
            route.direction.value,
            self.origin.scheme,
            self.origin.authority,
            time.time(),
            time.perf_counter(),
        )
        core.record((*opened, "h2") if self.heads is not None else opened)
        self._arm()
        if self.early:
            early, self.early = self.early, b""
            self.upstream_data(early)
        if self.up is None:
            # the upstream offered h2 to a client that speaks HTTP/1.1: a connection of
            # our own, HTTP/1.1 only
            self.up_buf = []
            asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        core = self.core
        proto = UpstreamConn(self)  # type: ignore[arg-type]
        failed = await connect_upstream(core, proto, self.origin)
        if failed is not None:
            core.stats.upstream_errors += 1
            self._end("failed", failed[1])
            t = self.transport
            if t is not None and not self.closed:
                if self.up_buf:  # a request waits: it gets the answer nobody else can give
                    core.hold(self)  # type: ignore[arg-type]
                    assert self.held_out is not None
                    self.held_out.append(_error_response(*failed))
                self._close_client()
            return
        if self.closed:
            if proto.transport is not None:
                proto.transport.close()
            return
        take_upstream(self, proto)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        core = self.core
        core.record(("d", self.cid, 0, now, data, core.correlator.snapshot()))
        if self.heads is not None:
            self.streams.client(self.heads[0].walk(data)[1])
        if not self.switched:
            # timed from the client's last byte, as the parsing path times an answer from
            # the end of its request: a slow upload is not a silent upstream
            self.asked = now
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.write(data)
        elif self.up_buf is not None:
            self.up_buf.append(data)
            if sum(map(len, self.up_buf)) > HIGH_WATER and self.transport is not None:
                self.transport.pause_reading()  # a large body while the connection opens

    def eof_received(self) -> bool | None:
        # a client half-closing after its last request still gets the answers. TLS to
        # the upstream cannot half-close, and the relay cannot tell when the last answer
        # is whole: the connection ends once the upstream has been quiet for EOF_QUIET_S
        # with nothing owed (_check), not at the upstream's keep-alive timeout
        self.client_eof = True
        up = self.up
        if up is not None and up.transport is not None and up.transport.can_write_eof():
            up.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.conns.discard(self)
        self._end("client")
        self._close_upstream()

    # ------------------------------------------------------------ upstream side

    def upstream_data(self, data: bytes) -> None:
        self.last_up = now = time.perf_counter()
        self.core.record(("d", self.cid, 1, now, data, None))
        self.asked = None
        if data[8:13] in _SWITCHING and data.startswith(b"HTTP/1.") and not self.switched:
            # a 101 (a WebSocket): from here each side speaks when it likes, and a message
            # the upstream does not answer is no timeout. The relay reads no HTTP, so an
            # upstream chunk that starts with one is taken for it (a 101 is the answer to
            # the request before it, sent alone); a body chunk that happens to start so
            # only ends the timing of this connection
            self.switched = True
        if self.heads is not None:
            data, frames = self.heads[1].walk(data)
            self.streams.upstream(frames)
            data, late = late_resets(data, frames)
            if late:
                self.late.append(late)
                asyncio.get_running_loop().call_later(STOP_GRACE_S, self._pass_late)
        # the copy goes down the pipe before the client has these bytes
        self.core.hold(self)  # type: ignore[arg-type]
        assert self.held_out is not None
        self.held_out.append(data)

    def _pass_late(self) -> None:
        """The upstream's oldest stop-sending resets, after their grace (``h2late``);
        their copy went down the pipe when they came."""
        if not self.late:
            return  # passed on already, before the client's connection closed
        resets = self.late.pop(0)
        if self.closed or self.transport is None:
            return
        if not self.ended:
            # an empty chunk tells the worker when: requests still coming are cut there
            self.core.record(("d", self.cid, 1, time.perf_counter(), b"", None))
        if self.held_out is not None:
            self.held_out.append(resets)
        else:
            self.transport.write(resets)

    def upstream_lost(self, proto: UpstreamConn, exc: Exception | None) -> None:
        if proto is not self.up:
            return
        self.up = None
        if self.asked is not None:
            self.core.stats.upstream_errors += 1
        self._end("upstream")
        if self.heads is not None and self.transport is not None and not self.closed:
            # an HTTP/2 client told GOAWAY closes the connection itself once it has read
            # its streams' ends, as it does when the upstream lingers. Our close right
            # behind the upstream's last bytes made curl 7.88 fail a response it had
            # whole ("partial file") while its upload waited for a window
            asyncio.get_running_loop().call_later(H2_CLOSE_S, self._close_client)
        else:
            self._close_client()

    # ------------------------------------------------------------ ends

    def _arm(self) -> None:
        period = min(1.0, self.core.response_timeout_s / 4)
        self._tick = asyncio.get_running_loop().call_later(period, self._check)

    def _check(self) -> None:
        self._tick = None
        if self.closed:
            return
        limit = self.core.response_timeout_s
        now = time.perf_counter()
        if self.asked is not None and now - self.asked >= limit:
            self.core.stats.upstream_errors += 1
            self._end("timeout", f"timeout: no response after {limit:g}s")
            self._close_upstream()
            if self.transport is not None:
                self.transport.abort()
            return
        if self.client_eof and self.asked is None and now - self.last_up >= EOF_QUIET_S:
            self._end("client")
            self._close_upstream()
            self._close_client()
            return
        self._arm()

    def _end(self, who: str, text: str | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        self.asked = None  # nothing is owed on an ended connection (a lingering close)
        self.streams.ids.clear()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        # connections cut because recording stops are not traffic (record_unfinished
        # already said what was under way)
        self.core.record(("c", self.cid, time.perf_counter(), who, text))

    def record_unfinished(self, why: str) -> None:
        """Recording stops: a response still coming is kept as it came so far, cut short."""
        self._end("stop", why)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._close_upstream()

    def _close_upstream(self) -> None:
        up, self.up = self.up, None
        if up is not None and up.transport is not None:
            up.transport.close()

    def release(self) -> None:
        out, self.held_out = self.held_out, None
        t = self.transport
        if t is None or self.closed:
            return
        if out:
            t.write(b"".join(out) if len(out) > 1 else out[0])
        if self.close_after:
            self.close_after = False
            self._close_client()

    def _close_client(self) -> None:
        while self.late:  # the upstream's resets go before its end, graced or not
            self._pass_late()
        super()._close_client()

    def _close_transport(self, t: asyncio.Transport) -> None:
        # lingering (TlsTransport.linger): a client still sending when the upstream
        # ended must get the end
        if isinstance(t, TlsTransport):
            t.linger(LINGER_S)
        else:
            t.close()

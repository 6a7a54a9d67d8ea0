"""HTTP/2 inside an intercepted ``CONNECT`` (``devbox.record.intercept``): the client's
streams relayed to the upstream's HTTP/2 connection, one exchange per stream.

Messages are relayed as they come, in both directions: a response's head and each
piece of its body reach the client when they reach us, as over HTTP/1.1, so a
server-sent event stream arrives event by event and a bidirectional call (gRPC through
``HTTPS_PROXY``) gets each answer before it sends its next message. What is kept for the
recording is capped (``BodyCapture``), not what is relayed; a response's end is captured
before the client has it, as the HTTP/1.1 relay does. Each side's data is acknowledged
(its flow-control window reopened) only as the other side takes it, so a slow reader
slows its writer instead of filling the relay. Two connections, two sets of limits, and
the relay reconciles them:

- the upstream's connection preface (SETTINGS, WINDOW_UPDATE) usually arrives while the
  client's TLS handshake still runs; ``UpstreamConn`` keeps those bytes and the relay
  reads them first, or it would believe the upstream's defaults (a 64 KiB window) for
  ever;
- the client may open more streams than the upstream's MAX_CONCURRENT_STREAMS: those
  wait here and go up as upstream streams close. An upstream stream refused
  (REFUSED_STREAM: it was not processed, RFC 9113 8.7) goes up again, a few times;
- an upstream RST_STREAM reaches the client with its error code (REFUSED_STREAM lets a
  client retry); a request is sent again only while the relay still holds all of it
  (up to ``RETRY_KEEP``, and ``RETRY_KEEP_CONNECTION`` for all streams) and no answer
  has begun;
- an upstream GOAWAY: the streams it still covers finish; the client gets a GOAWAY of
  ours, so it opens a new connection (a new ``CONNECT``) for more, and the streams the
  upstream will not process are reset REFUSED_STREAM, which clients retry. The client's
  connection closes (then, or when the upstream's does) only once the client has had
  everything the upstream sent: a slow reader still gets the end of its response;
- an answer that comes before its request's end (a 413, a gRPC status; RFC 9113 8.1) is
  recorded then, and the rest of the request still goes up (the upstream may read it);
  the upstream's RST_STREAM that stops it reaches the client once it has the response;
- a client that closes its connection right after ending a request: what the relay
  still holds of it goes up all the same (``UPSTREAM_LINGER_S``);
- informational responses (100 Continue, 103 Early Hints) pass on, unrecorded.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import h2.errors

from devbox.record.capture import BodyCapture
from devbox.record.h2exchange import H2Exchange, header, record
from devbox.record.proxy_core import (
    ProxyCore,
    Route,
    UpstreamConn,
    describe_error,
)
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.h2 import (
    Closed,
    H2Data,
    H2End,
    H2Endpoint,
    H2Info,
    H2Request,
    H2Response,
    StreamReset,
)

if TYPE_CHECKING:
    from devbox.record.proxy import ClientConn

REFUSED = int(h2.errors.ErrorCodes.REFUSED_STREAM)
CANCEL = int(h2.errors.ErrorCodes.CANCEL)
NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
# how long an early answer's stream stays open for the rest of its request once the
# upstream stopped reading it: a body already sent ends it cleanly (see _stop_upload)
STOP_GRACE_S = 1.0
# an upstream stream refused this often goes to the client as refused (it may retry)
MAX_ATTEMPTS = 3

_H2_DROP = frozenset(("host", "proxy-connection", "proxy-authorization"))
# what one stream may have waiting in the relay for the slower side before the faster
# side's data is no longer acknowledged (its window then closes: back-pressure)
AHEAD = 256 * 1024
# a request whose stream the upstream refuses goes up again only if the relay still has
# all of it: it keeps up to this much of each request until an answer begins
RETRY_KEEP = 1024 * 1024
# and all of one connection's streams together: a client with 128 streams of large
# uploads would otherwise have the relay hold 128 MiB (beyond it a stream is not retried)
RETRY_KEEP_CONNECTION = 8 * 1024 * 1024
# how long requests a client ended before closing its connection have to go up
UPSTREAM_LINGER_S = 5.0
# the header list a relayed message may carry (h2's default, 64 KiB, ends the whole
# connection on a larger one; clients and servers such as node's accept far more)
MAX_HEADER_LIST = 1024 * 1024


class H2Relay(asyncio.Protocol):
    """HTTP/2 from the client to HTTP/2 to the upstream, one exchange per stream."""

    def __init__(
        self, core: ProxyCore, route: Route, up_transport: asyncio.Transport, up: UpstreamConn
    ) -> None:
        assert route.upstream is not None
        self.core = core
        self.route = route
        self.upstream = route.upstream
        self.client = H2Endpoint(streaming=True, max_header_list=MAX_HEADER_LIST)
        self.up = H2Endpoint(client=True, streaming=True, max_header_list=MAX_HEADER_LIST)
        self.up_t = up_transport
        self.transport: asyncio.Transport | None = None
        self.by_client: dict[int, H2Exchange] = {}
        self.by_up: dict[int, H2Exchange] = {}
        self.waiting: deque[H2Exchange] = deque()  # beyond the upstream's stream limit
        # upstream stream -> exchange answered before its request ended (RFC 9113 8.1):
        # the rest of the request still goes up, the upstream may read it
        self.uploads: dict[int, H2Exchange] = {}
        self.owing: set[H2Exchange] = set()  # data taken, acknowledged once passed on
        self.kept = 0  # bytes of request data kept for a retry, all streams
        self.heads: list[H2Exchange] = []  # response heads to pass on after this read
        self.held_out: list[bytes] | None = None
        self.close_after = False
        self.broken = False  # the client broke the protocol: close after our GOAWAY
        self.closed = False
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
            self.broken = True
            self._flush_client()  # the GOAWAY naming the error: the client learns why
            self._close_client()
            return
        for ev in events:
            if isinstance(ev, H2Data):
                self._request_data(ev)
            elif isinstance(ev, H2Request):
                self._request(ev)
            elif isinstance(ev, H2End):
                self._request_end(ev)
            elif isinstance(ev, StreamReset):
                self._drop_client_stream(ev.stream_id, ev.code)
            elif isinstance(ev, Closed):
                self.close_after = True
        self._open_waiting()
        self._settle()

    def _request(self, ev: H2Request) -> None:
        core = self.core
        if self.up.closed:
            # the upstream said GOAWAY and so did we: a stream the client opened before it
            # heard ours was not processed, it retries on a new connection
            self.client.reset(ev.stream_id, REFUSED)
            return
        core.stats.requests += 1
        parent = core.correlator.parent_for(ev.http1_headers())
        st = H2Exchange(ev, core.next_id(self.route.source), parent, core.max_body)
        self.by_client[st.csid] = st
        self.waiting.append(st)

    def _request_data(self, ev: H2Data) -> None:
        st = self.by_client.get(ev.stream_id)
        if st is None:
            self.client.acknowledge(ev.stream_id, ev.flow)
            return
        data = ev.data
        st.rq.add(data)
        if st.stopped:  # the upstream reads no more of it
            self.client.acknowledge(ev.stream_id, ev.flow)
            return
        if st.kept is not None:
            n = len(data)
            if len(st.kept) + n > RETRY_KEEP or self.kept + n > RETRY_KEEP_CONNECTION:
                self._unkeep(st)
            else:
                st.kept += data
                self.kept += n
        if st.up_sid:
            self.up.send_data(st.up_sid, data)
        else:
            st.queued += data
        st.owed_client += ev.flow
        self.owing.add(st)

    def _request_end(self, ev: H2End) -> None:
        st = self.by_client.get(ev.stream_id)
        if st is None:
            return
        st.req_ended = True
        st.req_trailers = ev.trailers
        if st.up_sid and not st.stopped:
            self.up.end_stream(st.up_sid, ev.trailers)
        if st.answered:
            self.uploads.pop(st.up_sid, None)
            self._finish(st, None)  # answered early: recorded now that its body came

    def _open_waiting(self) -> None:
        """Streams up while the upstream's MAX_CONCURRENT_STREAMS allows (in order)."""
        while self.waiting and self.up.can_open():
            st = self.waiting.popleft()
            req = st.req
            headers = tuple((k, v) for k, v in req.headers if k not in _H2_DROP)
            st.attempts += 1
            if st.req_ended:
                # all of it is here (a GET: HEADERS with END_STREAM, as the client sent)
                st.up_sid = self.up.send_request(
                    req.method,
                    req.path,
                    self.upstream.authority,
                    headers,
                    bytes(st.queued),
                    trailers=st.req_trailers,
                )
            else:
                st.up_sid = self.up.start_request(
                    req.method, req.path, self.upstream.authority, headers
                )
                if st.up_sid and st.queued:
                    self.up.send_data(st.up_sid, bytes(st.queued))
            st.queued = bytearray()
            if not st.up_sid:  # can_open said yes: stay safe all the same
                self._give_up(st, "the upstream connection takes no new stream", REFUSED)
                continue
            self.by_up[st.up_sid] = st

    def _drop_client_stream(self, sid: int, code: int) -> None:
        # the upstream hears the client's code: a gRPC server tells a cancelled call
        # (CANCEL) from a failure
        st = self.by_client.get(sid)
        if st is None:
            return
        if st.answered:  # it has its answer: its upload stops, cut short
            if not st.stopped:
                self.uploads.pop(st.up_sid, None)
                self.up.reset(st.up_sid, code)
            self._cut_upload(st)
            return
        if st in self.waiting:
            self.waiting.remove(st)
        elif self.by_up.pop(st.up_sid, None) is not None:
            self.up.reset(st.up_sid, code)
        began = "during" if st.resp is not None else "before"
        self._finish(st, f"client reset the stream {began} the response (HTTP/2 error code {code})")

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.conns.discard(cast("ClientConn", self))
        for st in [*self.by_up.values(), *self.waiting]:
            self._finish(st, "client closed the connection before the response completed")
        for st in [*self.by_up.values(), *self.uploads.values()]:
            if not st.req_ended:  # the client will send no more of it
                self.up.reset(st.up_sid, CANCEL)
        for st in [*self.uploads.values(), *self._stopped_uploads()]:
            self._cut_upload(st)
        self.by_up.clear()
        self.waiting.clear()
        self.uploads.clear()
        # requests the client ended that the upstream's window has not let through yet
        # (up to AHEAD a stream: the client had them acknowledged) still go, as they would
        # from the client's own socket after it closed. The connection stays a while: a
        # close right behind their last bytes cut off what a server that reads slowly
        # (node's) had not read yet; the upstream may close it sooner
        self._flush_up()
        if self.up.sending:
            asyncio.get_running_loop().call_later(UPSTREAM_LINGER_S, self.up_t.close)
        else:
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
            if isinstance(ev, H2Data):
                self._response_data(ev)
            elif isinstance(ev, H2Response):
                self._response(ev)
            elif isinstance(ev, H2Info):
                self._info(ev)
            elif isinstance(ev, H2End):
                self._response_end(ev)
            elif isinstance(ev, StreamReset):
                self._upstream_reset(ev.stream_id, ev.code)
            elif isinstance(ev, Closed):
                self._upstream_goaway(ev)
        # heads not followed by their end in this read go now: an event stream's client
        # sees its response begin
        for st in self.heads:
            self._send_head(st)
        self.heads.clear()
        self._open_waiting()  # streams closed, or SETTINGS raised the limit
        self._settle()

    def _response(self, ev: H2Response) -> None:
        st = self.by_up.get(ev.stream_id)
        if st is None:
            return
        st.t_first = time.perf_counter()
        st.resp = ev
        st.rs = BodyCapture(self.core.max_body, header(ev.headers, "content-encoding"))
        self._unkeep(st)  # an answer began: the request was processed, no retry
        self.heads.append(st)

    def _info(self, ev: H2Info) -> None:
        # 100 Continue, 103 Early Hints: the client may act on them before the answer (a
        # client that waits for 100 sends its body only then); they are not recorded
        st = self.by_up.get(ev.stream_id)
        if st is not None and st.resp is None:
            self.client.send_info(st.csid, ev.status, ev.headers)

    def _send_head(self, st: H2Exchange) -> None:
        if st.resp is not None and not st.resp_sent:
            st.resp_sent = True
            self.client.start_response(st.csid, st.resp.status, st.resp.headers)

    def _response_data(self, ev: H2Data) -> None:
        st = self.by_up.get(ev.stream_id)
        if st is None or st.rs is None:
            self.up.acknowledge(ev.stream_id, ev.flow)
            return
        self._send_head(st)
        st.rs.add(ev.data)
        self.client.send_data(st.csid, ev.data)
        st.owed_up += ev.flow
        self.owing.add(st)

    def _response_end(self, ev: H2End) -> None:
        st = self.by_up.pop(ev.stream_id, None)
        if st is None or st.resp is None:
            return
        st.resp_trailers = ev.trailers
        if st.req_ended:
            self._finish(st, None)
            self.core.hold(cast("ClientConn", self))  # captured before the client has the end
        else:
            # answered before the request's end (RFC 9113 8.1): the upstream may still read
            # the rest (or reset the stream to stop it), and its stream stays open till
            # then. It is recorded when the body has come (or with what came, cut short,
            # when that ends first): recorded now, a body still on its way was lost
            st.answered = True
            self.by_client[st.csid] = st
            self.uploads[st.up_sid] = st
        if st.resp_sent:
            self.client.end_stream(st.csid, ev.trailers)
        else:  # head and end in one read: HEADERS with END_STREAM, as the upstream sent
            st.resp_sent = True
            self.client.send_response(st.csid, st.resp.status, st.resp.headers, b"", ev.trailers)
        if self.up.closed and not self.by_up:
            self._close_client()  # after GOAWAY: the last stream it covered is answered

    def _upstream_reset(self, up_sid: int, code: int) -> None:
        st = self.by_up.pop(up_sid, None)
        if st is None:
            st = self.uploads.pop(up_sid, None)
            if st is not None:
                if code == NO_ERROR:
                    self._stop_upload(st)
                else:
                    self._cut_upload(st)
                    self.client.reset_if_sent(st.csid, code)
            return
        if code == REFUSED and st.kept is not None and st.attempts < MAX_ATTEMPTS:
            if not self.up.closed:
                # not processed (RFC 9113 8.7), e.g. beyond a stream limit its SETTINGS
                # had not yet told us: it goes up again when a stream frees
                st.up_sid = 0
                st.queued = bytearray(st.kept)
                self.waiting.appendleft(st)
                return
        self._give_up(st, f"upstream reset the stream (HTTP/2 error code {code})", code)

    def _stop_upload(self, st: H2Exchange) -> None:
        """Answered, then the upstream stops reading (NO_ERROR, RFC 9113 8.1). Passed on at
        once, the reset met a client whose body was on its way (the upstream had the head
        before the body, as it rarely has without us): curl 7.88 then fails the stream.
        The rest is taken and dropped for STOP_GRACE_S: a request ended by then is recorded
        whole; one still coming is cut, and reset unless that would drop the response's
        end (waiting for the client's window: node's client then waited for ever)."""
        st.stopped = True
        self.client.acknowledge(st.csid, st.owed_client)
        st.owed_client = 0
        self.owing.discard(st)
        asyncio.get_running_loop().call_later(STOP_GRACE_S, self._stop_grace_over, st)

    def _stop_grace_over(self, st: H2Exchange) -> None:
        if self.closed or self.by_client.get(st.csid) is not st:
            return  # ended, reset or recorded meanwhile
        self._cut_upload(st)
        self.client.reset_if_sent(st.csid, NO_ERROR)
        self._settle()

    def _give_up(self, st: H2Exchange, error: str, code: int) -> None:
        """The client hears the upstream's reason (a REFUSED_STREAM is retried)."""
        if code == REFUSED and st.resp is None:
            self._done(st)  # nothing happened upstream: the client's retry is recorded
        else:
            self._finish(st, error)
        self.client.reset(st.csid, code)

    def _unkeep(self, st: H2Exchange) -> None:
        if st.kept is not None:
            self.kept -= len(st.kept)
            st.kept = None

    def _done(self, st: H2Exchange) -> None:
        self._unkeep(st)
        if self.by_client.get(st.csid) is st:
            del self.by_client[st.csid]
        self.owing.discard(st)
        # what it was owed can no longer be passed on: the windows must not stay shut
        self.client.acknowledge(st.csid, st.owed_client)
        if st.up_sid:
            self.up.acknowledge(st.up_sid, st.owed_up)
        st.owed_client = st.owed_up = 0

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
        for st in self.uploads.values():  # answered: their uploads have nowhere to go
            self._cut_upload(st)
            self.client.reset_if_sent(st.csid, CANCEL)
        self.uploads.clear()
        self._flush_client()
        self._close_client()

    def _upstream_failed(self, error: str) -> None:
        self.core.stats.upstream_errors += 1
        for st in [*self.by_up.values(), *self.waiting]:
            self._finish(st, error)
            self.client.reset(st.csid)
        self.by_up.clear()
        self.waiting.clear()
        self._flush_client()
        self.up_t.close()

    # ------------------------------------------------------------ writing, recording

    def _settle(self) -> None:
        """Acknowledge what was passed on (the other side's buffer is short again), then
        send what both sides have to send."""
        for st in list(self.owing):
            if st.owed_client and st.up_sid and self.up.buffered(st.up_sid) < AHEAD:
                self.client.acknowledge(st.csid, st.owed_client)
                st.owed_client = 0
            if st.owed_up and self.client.buffered(st.csid) < AHEAD:
                self.up.acknowledge(st.up_sid, st.owed_up)
                st.owed_up = 0
            if not st.owed_client and not st.owed_up:
                self.owing.discard(st)
        self._flush_client()
        self._flush_up()
        if self.close_after:
            self._close_client()  # the client's window let the last of it go

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
        if self.close_after:
            self._close_client()

    def _close_client(self) -> None:
        """Close once nothing is left for the client: no exchange in flight and nothing
        waiting for its window (a close sooner cuts off the end of a response it reads
        slowly; the upstream's GOAWAY or close does not end what it already sent)."""
        self.close_after = True
        if self.held_out is not None or self.transport is None or self.closed:
            return
        if self.broken:  # (a close, not an abort: the GOAWAY goes out first)
            self.transport.close()
            self.up_t.close()
            return
        if self.by_up or self.uploads or self.waiting or self.client.sending:
            return
        if self._stopped_uploads():  # in their grace: closed once it is over (_settle)
            return
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.up_t.close()

    @property
    def pending(self) -> list[H2Exchange]:
        """``ClientConn``'s interface for the drain on stop: the exchanges in flight."""
        return [*self.by_up.values(), *self.waiting]

    def _stopped_uploads(self) -> list[H2Exchange]:
        """Early answers whose upstream stopped reading, their request still coming."""
        return [st for st in self.by_client.values() if st.stopped]

    def _finish(self, st: H2Exchange, error: str | None, *, cut: bool = False) -> None:
        self._done(st)
        record(self.core, self.route, st, error, cut=cut)

    def _cut_upload(self, st: H2Exchange) -> None:
        """An early answer whose request body will not come whole: recorded with what
        came of it, marked cut short."""
        st.rq.truncated = True
        self._finish(st, None)

    def record_unfinished(self, why: str) -> None:
        """Recording stops: each response still coming (an event stream that does not
        end) is recorded with what came of it, cut short; the client already has that.
        So is each early answer whose request body is still coming."""
        for up_sid, st in list(self.uploads.items()):
            del self.uploads[up_sid]
            self._cut_upload(st)
        for st in self._stopped_uploads():
            self._cut_upload(st)
        for up_sid, st in list(self.by_up.items()):
            if st.resp is not None:
                del self.by_up[up_sid]
                self._finish(st, why, cut=True)


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

"""HTTP/2 exchanges read back from the bytes of an intercepted connection (worker side).

Theory of operation
-------------------
When the client and the upstream of an intercepted ``CONNECT`` both choose ``h2``, the
proxy relays the plaintext verbatim, as it does for HTTP/1.1 (``devbox.record.tee``):
the client's connection preface, SETTINGS, flow control, HPACK and streams are the
upstream's own business and reach it unchanged. Each side's chunks come down the worker
pipe stamped with the time they crossed; here each direction is read passively
(``devbox.wire.grpc.http2.FrameReader``, its own HPACK table), and each stream becomes
one exchange, mapped to the store as every HTTP/2 exchange is: pseudo-headers taken
apart, ``host`` from the upstream's authority, version ``HTTP/2``, response reason empty.

What a stream's end means for its recording:

- a stream is recorded when its response and its request have both ended; an answer
  that ends before its request did (RFC 9113 8.1) waits for the request's end, and is
  recorded with the request cut short if a reset or the connection's end comes first;
- informational responses (1xx) are not recorded;
- a reset before the answer ended records the exchange with what happened, but for the
  upstream's REFUSED_STREAM before any answer: the stream was not processed (RFC 9113
  8.7) and the client retries it, so its retry is what is recorded. Likewise the streams
  above the last one an upstream's GOAWAY says it processes;
- the connection's end: as for HTTP/1.1 (``devbox.record.streams``), the exchanges under
  way are recorded with who ended it; recording stopping keeps the responses under way,
  cut short.

Sans-IO, the same interface as ``streams.Stream``: chunks in, worker captures out.
"""

from __future__ import annotations

from typing import Any

from devbox.core.model import header_get
from devbox.record.capture import BodyCapture
from devbox.record.h2late import STOP_GRACE_S
from devbox.record.streams import Capture, Correlation, Reading, ended_by
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.grpc.http2 import (
    DataEvent,
    FrameEvent,
    FrameReader,
    GoawayEvent,
    HeadersEvent,
    ResetEvent,
    SettingsEvent,
)

REFUSED_STREAM = 0x7
GRACE_SLACK_S = 0.05  # a timer may fire a little early
# what one header block may decode to here, and all those of the streams open on one
# connection: HPACK lets 4 KB on the wire reference a 4 KB table entry a thousand times,
# so a hostile client's few blocks would otherwise take gigabytes here and on disk
MAX_HEADER_LIST = 1 << 20
MAX_OPEN_HEADERS = 8 << 20
_DROPPED_HEADERS = ("proxy-connection",)


def _latin1(raw: bytes) -> str:
    # as every HTTP/1.1 head and the HTTP/2 endpoint read header bytes
    return raw.decode("latin-1")


class _Stream:
    __slots__ = (
        "headers",
        "method",
        "parent",
        "path",
        "req_ended",
        "resp_done",
        "resp_head",
        "rq",
        "rs",
        "size",
        "stopped",
        "t0",
        "t_end",
        "t_first",
        "trailers",
    )

    def __init__(self, head: list[tuple[str, str]], t0: float, max_body: int) -> None:
        method, path = "GET", "/"
        headers: list[tuple[str, str]] = []
        encoding = None
        for k, v in head:
            if k[:1] == ":":
                if k == ":method":
                    method = v
                elif k == ":path":
                    path = v
            else:
                headers.append((k, v))
                if k == "content-encoding":
                    encoding = v
        self.method = method
        self.path = path
        self.headers = headers
        # its head's decoded size (H2Stream.held), as HPACK counts a field (RFC 7541
        # 4.1: 32 bytes more), so one-byte fields cost too
        self.size = sum(32 + len(k) + len(v) for k, v in head)
        self.parent: str | None = None
        self.t0 = t0
        self.rq = BodyCapture(max_body, encoding)
        self.req_ended = False
        self.resp_head: tuple[int, list[tuple[str, str]]] | None = None
        self.rs: BodyCapture | None = None
        self.trailers: list[tuple[str, str]] = []
        self.resp_done = False
        self.stopped: float | None = None  # when the upstream said stop sending
        self.t_first: float | None = None
        self.t_end = t0


class H2Stream(Reading):
    """One intercepted HTTP/2 connection's two byte streams, read into captures."""

    def __init__(
        self,
        opened: tuple[Any, ...],
        stamp: str,
        max_body: int,
        correlation: Correlation,
        unread: list[str],
    ) -> None:
        super().__init__(opened, stamp, max_body, correlation, unread)
        self.requests = FrameReader(from_client=True, text=_latin1)
        self.responses = FrameReader(from_client=False, text=_latin1)
        for reader in (self.requests, self.responses):
            # the peers agreed on their limits (SETTINGS_MAX_HEADER_LIST_SIZE is advisory)
            # and the bytes went through: hpack's default of 64 KiB must not refuse them,
            # up to a bound of our own
            reader.decoder.max_header_list_size = MAX_HEADER_LIST
        self.open: dict[int, _Stream] = {}
        self._why = ""  # what did not read
        self.held = 0  # decoded header bytes of the open streams' requests
        self.highest = 0  # the client's highest stream id so far (they only grow)

    # ------------------------------------------------------------ input

    def client(self, t: float, data: bytes, in_flight: Any) -> list[Capture]:
        events = self._feed(self.requests, data)
        if events is None:
            return self._unreadable(t)
        out: list[Capture] = []
        for ev in events:
            if type(ev) is SettingsEvent:
                self._table(ev, self.responses)
                continue
            if type(ev) is GoawayEvent:
                continue  # the client opens no more streams: its own affair
            x = self.open.get(ev.stream_id)  # type: ignore[union-attr]
            if type(ev) is HeadersEvent:
                if x is None:
                    if ev.stream_id <= self.highest:
                        continue  # trailers of a stream already dropped: no new exchange
                    self.highest = ev.stream_id
                    x = _Stream(ev.headers, t, self.max_body)
                    self.held += x.size
                    if self.held > MAX_OPEN_HEADERS:
                        self._why = f"the open streams' headers decode to over {MAX_OPEN_HEADERS}"
                        return out + self._unreadable(t)
                    x.parent = self.correlation.parent(in_flight, self.direction, x.headers)
                    self.open[ev.stream_id] = x
                if ev.end_stream:
                    self._request_ended(ev.stream_id, x, out)
            elif x is None:
                continue
            elif type(ev) is DataEvent:
                x.rq.add(ev.data)
                if ev.end_stream:
                    self._request_ended(ev.stream_id, x, out)
            elif type(ev) is ResetEvent:
                if x.resp_done:  # answered; its request stops here
                    out.append(self._answered(ev.stream_id, x))
                else:
                    self._drop(ev.stream_id)
                    began = "during" if x.resp_head is not None else "before"
                    why = f"client reset the stream {began} the response"
                    out.append(self._capture(x, t, _code(why, ev.error_code)))
        return out

    def server(self, t: float, data: bytes) -> list[Capture]:
        events = self._feed(self.responses, data)
        if events is None:
            return self._unreadable(t)
        out: list[Capture] = []
        if not data:
            # the proxy passed the upstream's stop-sending resets on (h2late): the
            # requests still coming when it did are cut there
            self._grace_over(t, out)
        for ev in events:
            if type(ev) is SettingsEvent:
                self._table(ev, self.requests)
            elif type(ev) is GoawayEvent:
                self._goaway(ev)
            else:
                x = self.open.get(ev.stream_id)  # type: ignore[union-attr]
                if x is None:
                    continue  # a stream we never saw open (pushed, or before the reading)
                if type(ev) is HeadersEvent:
                    self._response_head(ev, x, t, out)
                elif type(ev) is DataEvent:
                    if x.rs is not None:
                        x.rs.add(ev.data)
                    if ev.end_stream:
                        self._response_ended(ev.stream_id, x, t, out)
                elif type(ev) is ResetEvent:
                    self._upstream_reset(ev, x, t, out)
        return out

    def _response_head(self, ev: HeadersEvent, x: _Stream, t: float, out: list[Capture]) -> None:
        if x.resp_head is None:
            status = _status(ev.headers)
            if 100 <= status < 200:
                return  # informational: passed on, not recorded
            regular = [(k, v) for k, v in ev.headers if k[:1] != ":"]
            x.resp_head = (status, regular)
            x.t_first = t
            x.rs = BodyCapture(self.max_body, header_get(regular, "content-encoding"))
        else:
            x.trailers = [(k, v) for k, v in ev.headers if k[:1] != ":"]
        if ev.end_stream:
            self._response_ended(ev.stream_id, x, t, out)

    def _upstream_reset(self, ev: ResetEvent, x: _Stream, t: float, out: list[Capture]) -> None:
        if x.resp_done:
            if ev.error_code == 0:
                # answered, and the upstream stops reading (RFC 9113 8.1): the body still
                # on its way ends the request within the grace the relay gives it
                x.stopped = t
                return
            out.append(self._answered(ev.stream_id, x))
            return
        self._drop(ev.stream_id)
        if ev.error_code != REFUSED_STREAM or x.resp_head is not None:
            why = _code("upstream reset the stream", ev.error_code)
            out.append(self._capture(x, t, why))

    def _goaway(self, ev: GoawayEvent) -> None:
        # streams above its last were not processed: the client retries them
        for sid in [s for s, x in self.open.items() if s > ev.last_stream_id]:
            if self.open[sid].resp_head is None:
                self._drop(sid)

    def _grace_over(self, t: float, out: list[Capture]) -> None:
        for sid, x in list(self.open.items()):
            if x.stopped is not None and x.stopped + STOP_GRACE_S <= t + GRACE_SLACK_S:
                out.append(self._answered(sid, x))

    def close(self, t: float, who: str, text: str | None) -> list[Capture]:
        """The connection ended: each exchange under way is recorded with who ended it
        (``stop``: only a response under way, cut short)."""
        out = self.cut()
        for x in self.open.values():
            if who == "stop":
                if x.rs is not None:
                    x.rs.truncated = True
                    out.append(self._capture(x, t, text))
                continue
            out.append(self._capture(x, t, ended_by(who, text, x.resp_head is not None)))
        self.open.clear()
        self.held = 0
        self.done = True
        return out

    def cut(self) -> list[Capture]:
        """Exchanges answered whole while their request still came, the request cut
        short where the connection (or the proxy) ended."""
        out: list[Capture] = []
        for sid, x in list(self.open.items()):
            if x.resp_done:
                out.append(self._answered(sid, x))
        return out

    # ------------------------------------------------------------ reading

    def _feed(self, reader: FrameReader, data: bytes) -> list[FrameEvent] | None:
        if self.done:
            return []
        try:
            return reader.feed(data)
        except RemoteProtocolError as exc:
            self._why = str(exc)
            return None

    def _unreadable(self, t: float) -> list[Capture]:
        """Bytes that do not read as HTTP/2 (relayed all the same): the exchanges under
        way are recorded with why, and the rest of the connection is not read."""
        error = self._why
        self.unread.append(f"{self.source} ({self.host}): {error}")
        out = [self._capture(x, t, error) for x in self.open.values()]
        self.open.clear()
        self.held = 0
        self.done = True
        return out

    def _drop(self, sid: int) -> None:
        self.held -= self.open.pop(sid).size

    def _answered(self, sid: int, x: _Stream) -> Capture:
        """An exchange answered whole whose request stops before its end: recorded as
        of the answer's end, the request cut short."""
        self._drop(sid)
        x.rq.truncated = True
        return self._capture(x, x.t_end, None)

    @staticmethod
    def _table(ev: SettingsEvent, other: FrameReader) -> None:
        if ev.header_table_size is not None:
            # what one side allows bounds the other side's encoder
            other.allow_table_size(ev.header_table_size)

    def _request_ended(self, sid: int, x: _Stream, out: list[Capture]) -> None:
        x.req_ended = True
        if x.resp_done:
            self._drop(sid)
            out.append(self._capture(x, x.t_end, None))

    def _response_ended(self, sid: int, x: _Stream, t: float, out: list[Capture]) -> None:
        x.resp_done = True
        x.t_end = t
        if x.req_ended:
            self._drop(sid)
            out.append(self._capture(x, t, None))

    # ------------------------------------------------------------ output

    def _capture(self, x: _Stream, t: float, error: str | None) -> Capture:
        headers = [(k, v) for k, v in x.headers if k not in _DROPPED_HEADERS]
        if not any(k == "host" for k, _ in headers):
            headers.insert(0, ("host", self.host))
        resp = x.resp_head
        return self.captured(
            x.parent,
            (x.method, x.path, "HTTP/2", headers),
            x.rq,
            (resp[0], "", "HTTP/2", resp[1], x.trailers) if resp is not None else None,
            x.rs,
            (x.t0, t, x.t_first),
            error,
        )


def _status(headers: list[tuple[str, str]]) -> int:
    for k, v in headers:
        if k == ":status":
            return int(v) if len(v) == 3 and v.isascii() and v.isdigit() else 0
    return 0


def _code(why: str, code: int) -> str:
    return f"{why} (HTTP/2 error code {code})"

"""HTTP/1.1 exchanges read back from the bytes of an intercepted connection (worker side).

Theory of operation
-------------------
Inside an intercepted ``CONNECT`` whose two ends both speak HTTP/1.1, the proxy relays
the plaintext verbatim (``devbox.record.tee``) and copies each chunk, stamped with the
time it crossed, down the worker pipe. Reading those two byte streams back into
exchanges here, in the recording worker, takes HTTP parsing and capture building off
the proxy's event loop: the loop pays for TLS and a copy, this process for the rest.

Sans-IO: chunks in, worker captures (``("x", ...)`` tuples, as ``worker.exchange_of``
reads them) out. The streams are read with the wire layer's ``MessageReader``, as the
proxy's own path reads them: requests in order, each response framed by the method of
the request it answers (HEAD, 1xx, 204, 304), an accepted upgrade ends the reading.
An answer that ends before its request's body did (an upstream that answers early and
reads the rest) is recorded once the body has come. Whatever a side sent that does not
parse is relayed all the same (the proxy never judges it); the exchange it broke is
recorded with an error and the rest of that connection is not read.

Clients repeat themselves: a chunk that held exactly one whole message, read from a
reader between messages, is remembered with what it parsed to (``Seen``), and the same
bytes arriving the same way again are taken from there instead of read again. Responses
are remembered with the method they answered, which decides their framing. A message
not met before that is one whole message framed by its length, or without a body (most
are), is read by ``whole_request`` / ``whole_response``: the reader's own head parsers
and framing rules, without its events.

Frames from the proxy: ``("o", cid, source, direction, scheme, host, wall, perf)`` when a
connection starts (a 9th element ``"h2"``: an HTTP/2 connection, read by
``devbox.record.h2streams``), ``("d", cid, side, perf, data, in_flight)`` for each chunk
(side 0: client to upstream, 1: upstream to client; ``in_flight``: the inbound exchanges
in flight when a client chunk came, for ``correlate.parent_among``), ``("c", cid, perf,
who, text)`` when it ends (``who``: ``client``, ``upstream``, ``timeout`` or ``stop``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from devbox.record.capture import BodyCapture
from devbox.record.correlate import parent_among
from devbox.record.http1 import TUNNEL, Data, End, Head, MessageReader, ProtocolError
from devbox.wire.http1 import whole_request, whole_response
from devbox.wire.http1_syntax import Limits

if TYPE_CHECKING:
    from devbox.record.h2streams import H2Stream

Capture = tuple[Any, ...]

# the bytes went through already (the upstream judged them): the worker only frames them,
# within bounds that keep one connection's unfinished head from growing without end
_LIMITS = Limits(1 << 20, 1 << 20, 10_000, 1 << 62)
SEEN_CHUNK = 8 * 1024  # chunks up to this size are remembered...
SEEN_MAX = 512  # ...this many per direction (cleared when full)

CLIENT_GONE = "client closed the connection before the response completed"
UPSTREAM_GONE = "upstream closed the connection before responding"
UPSTREAM_CUT = "upstream closed the connection mid-response"


class _Kept:
    """A remembered message's body, as ``BodyCapture`` kept it the first time."""

    __slots__ = ("_body", "truncated")

    def __init__(self, body: bytes, truncated: bool) -> None:
        self._body = body
        self.truncated = truncated

    def add(self, data: bytes) -> None:
        pass  # a remembered message came whole: nothing follows

    def body(self) -> bytes:
        return self._body


class _Exchange:
    __slots__ = ("head", "parent", "req_body", "resp_body", "resp_head", "t0", "t_first")

    def __init__(
        self, head: Head, t0: float, parent: str | None, req_body: BodyCapture | _Kept
    ) -> None:
        self.head = head
        self.t0 = t0
        self.parent = parent
        self.req_body = req_body
        self.resp_head: Head | None = None
        self.resp_body: BodyCapture | _Kept | None = None
        self.t_first: float | None = None


class Seen:
    """Whole messages by the bytes that carried them: (method answered, chunk) -> (head,
    decoded body, truncated, trailers). Heads are shared: read them, never change them."""

    __slots__ = ("requests", "responses")

    def __init__(self) -> None:
        self.requests: dict[bytes, tuple[Head, bytes, bool]] = {}
        self.responses: dict[tuple[str, bytes], tuple[Head, bytes, bool, list[Any]]] = {}


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= SEEN_MAX:
        memo.clear()
    memo[key] = value


class Correlation:
    """What the worker learns of linking: the same counts the proxy's correlator keeps."""

    __slots__ = ("ambiguous", "header", "linked")

    def __init__(self, header: str | None) -> None:
        self.header = header.lower() if header else None
        self.linked = 0
        self.ambiguous = 0

    def parent(self, in_flight: Any, direction: str, headers: list[tuple[str, str]]) -> str | None:
        """The inbound exchange an outbound request with ``headers`` belongs to, among
        those in flight when its bytes came (``correlate.parent_among``), counted."""
        if not in_flight or direction == "inbound":
            return None
        parent, ambiguous = parent_among(in_flight, self.header, headers)
        if parent is not None:
            self.linked += 1
        elif ambiguous:
            self.ambiguous += 1
        return parent


class Reading:
    """What the two connection readers share (``Stream`` here, ``h2streams.H2Stream``):
    the connection the proxy opened, and how an exchange read on it becomes a worker
    capture (``worker.exchange_of``'s input)."""

    def __init__(
        self,
        opened: tuple[Any, ...],
        stamp: str,
        max_body: int,
        correlation: Correlation,
        unread: list[str],
    ) -> None:
        _, self.cid, self.source, self.direction, self.scheme, self.host, wall, perf = opened[:8]
        self.offset = wall - perf  # perf_counter -> wall clock, as the proxy saw it
        self.stamp = stamp
        self.max_body = max_body
        self.correlation = correlation
        # what could not be read (relayed all the same, unrecorded from there on)
        self.unread = unread
        self.done = False  # nothing more is read on this connection
        self.count = 0

    def captured(
        self,
        parent: str | None,
        request: tuple[str, str, str, list[tuple[str, str]]],
        req_body: BodyCapture | _Kept,
        response: tuple[Any, ...] | None,
        resp_body: BodyCapture | _Kept | None,
        times: tuple[float, float, float | None],
        error: str | None,
    ) -> Capture:
        """``request`` (method, target, version, headers), ``response`` (status,
        reason, version, headers, trailers), ``times`` (perf_counter at its start, at
        its end, at its answer's first byte)."""
        self.count += 1
        t0, t, t_first = times
        return (
            "x",
            self.source,
            self.direction,
            f"{self.source}-{self.stamp}-c{self.cid}-{self.count:04d}",
            parent,
            self.scheme,
            self.host,
            *request,
            req_body.body(),
            req_body.truncated,
            response,
            resp_body.body() if resp_body is not None else b"",
            resp_body is not None and resp_body.truncated,
            t0 + self.offset,
            (t - t0) * 1000.0,
            (t_first - t0) * 1000.0 if t_first is not None else None,
            error,
        )


def ended_by(who: str, text: str | None, answering: bool) -> str:
    """The error of an exchange under way when its connection ended: ``who`` ended it
    (``client``, ``upstream``, ``timeout``...), ``answering``: its answer had begun."""
    if who == "client":
        return CLIENT_GONE
    if who == "upstream":
        return UPSTREAM_CUT if answering else UPSTREAM_GONE
    return text or who


class Stream(Reading):
    """One intercepted connection's two byte streams, read into captures."""

    def __init__(
        self,
        opened: tuple[Any, ...],
        stamp: str,
        max_body: int,
        correlation: Correlation,
        seen: Seen,
        unread: list[str],
    ) -> None:
        super().__init__(opened, stamp, max_body, correlation, unread)
        self.seen = seen
        self.requests = MessageReader(is_request=True, limits=_LIMITS)
        self.responses = MessageReader(is_request=False)
        self.pending: deque[_Exchange] = deque()
        self.current: _Exchange | None = None  # the request whose body is arriving
        # answered before its body came whole (an upstream may answer early and read the
        # rest): (the exchange, when its answer ended, trailers), recorded with the body
        self.early: tuple[_Exchange, float, list[Any]] | None = None
        self._in_flight: Any = None
        self._last_head: Head | None = None  # of the response read last

    # ------------------------------------------------------------ input

    def client(self, t: float, data: bytes, in_flight: Any) -> list[Capture]:
        if self.done:
            return []
        self._in_flight = in_flight
        reader = self.requests
        whole = len(data) <= SEEN_CHUNK and reader.idle
        if whole:
            seen = self.seen.requests.get(data)
            if seen is None:
                # not met before, but one whole request with no body or one framed by
                # its length (most are): read without the reader's events, as answers are
                fresh = whole_request(data, _LIMITS)
                if fresh is not None:
                    seen = (fresh[0], *self._whole_body(*fresh))
                    _remember(self.seen.requests, data, seen)
            if seen is not None:
                head, body, truncated = seen
                x = _Exchange(head, t, self._parent(head), _Kept(body, truncated))
                self.pending.append(x)
                self.responses.expect(head.method)
                return []
        count = len(self.pending)
        reader.receive(data)
        out = self._requests(t)
        if (
            whole
            and not out
            and len(self.pending) == count + 1
            and self.current is None
            and reader.idle
            and not self.done
        ):
            x = self.pending[-1]
            _remember(self.seen.requests, data, (x.head, x.req_body.body(), x.req_body.truncated))
        return out

    def server(self, t: float, data: bytes) -> list[Capture]:
        if self.done:
            return []
        reader = self.responses
        pending = self.pending
        key = None
        if (
            len(data) <= SEEN_CHUNK
            and reader.idle
            and pending
            and pending[0].resp_head is None
            and pending[0] is not self.current
        ):
            method = pending[0].head.method
            key = (method, data)
            seen = self.seen.responses.get(key)
            if seen is None:
                # not met before, but one whole response framed by its length (the common
                # case): read by the reader's own head parser and framing rules, without
                # its events (a chunked, 1xx or partial answer goes to the reader)
                whole = whole_response(data, method)
                if whole is not None:
                    seen = (whole[0], *self._whole_body(*whole), [])
                    _remember(self.seen.responses, key, seen)
            if seen is not None:
                head, body, truncated, trailers = seen
                x = pending.popleft()
                reader.read_elsewhere()
                x.resp_head = head
                x.t_first = t
                x.resp_body = _Kept(body, truncated)
                out = [self._capture(x, t, None, trailers)]
                # as after a response read afresh: a declined upgrade offer releases the
                # requests held behind it (remembered answers are never an upgrade's)
                if not self._after(x):
                    out += self._requests(t)
                return out
        count = len(pending)
        reader.receive(data)
        out = self._responses(t)
        if key is not None and len(out) == 1 and len(pending) == count - 1 and reader.idle:
            c, last = out[0], self._last_head
            if last is not None and c[19] is None and last.framing != TUNNEL:
                _remember(self.seen.responses, key, (last, c[14], c[15], c[13][4]))
        return out

    def close(self, t: float, who: str, text: str | None) -> list[Capture]:
        """The connection ended: a response read to its close ends here; the rest is
        recorded with what happened (``stop``: only a response under way, cut short)."""
        out: list[Capture] = []
        if not self.done:
            self.responses.eof()
            out = self._responses(t)
        out += self.cut()
        for x in self.pending:
            if who == "stop":
                if x.resp_body is not None:
                    x.resp_body.truncated = True
                    out.append(self._capture(x, t, text))
                continue
            out.append(self._capture(x, t, ended_by(who, text, x.resp_head is not None)))
        self.pending.clear()
        self.current = None
        self.done = True
        return out

    def cut(self) -> list[Capture]:
        """An exchange answered whole while its request's body still came, with the body
        cut short where the connection (or the proxy) ended."""
        if self.early is None:
            return []
        x, t_end, trailers = self.early
        self.early = None
        x.req_body.truncated = True
        return [self._capture(x, t_end, None, trailers)]

    # ------------------------------------------------------------ reading

    def _requests(self, t: float) -> list[Capture]:
        out: list[Capture] = []
        reader = self.requests
        while True:
            try:
                ev = reader.next_event()
            except ProtocolError as exc:
                return out + self._unreadable(t, f"invalid request framing: {exc}")
            if ev is None:
                return out
            kind = type(ev)
            if kind is Data:
                assert isinstance(ev, Data)
                if self.current is not None:
                    self.current.req_body.add(ev.decoded)
            elif kind is Head:
                assert isinstance(ev, Head)
                body = BodyCapture(self.max_body, ev.header("content-encoding"))
                x = _Exchange(ev, t, self._parent(ev), body)
                self.pending.append(x)
                self.current = x
                self.responses.expect(ev.method)
            else:
                early = self.early
                if early is not None and early[0] is self.current:
                    self.early = None
                    out.append(self._capture(early[0], early[1], None, early[2]))
                self.current = None

    def _responses(self, t: float) -> list[Capture]:
        out: list[Capture] = []
        reader = self.responses
        while True:
            try:
                ev = reader.next_event()
            except ProtocolError as exc:
                return out + self._unreadable(t, f"invalid response from upstream: {exc}")
            if ev is None:
                return out
            if not self.pending:
                continue  # bytes no request asked for: relayed, nothing to record
            x = self.pending[0]
            kind = type(ev)
            if kind is Data:
                assert isinstance(ev, Data)
                if x.resp_body is not None:
                    x.resp_body.add(ev.decoded)
            elif kind is Head:
                assert isinstance(ev, Head)
                if ev.interim:
                    continue
                x.resp_head = ev
                x.t_first = t
                x.resp_body = BodyCapture(self.max_body, ev.header("content-encoding"))
            else:
                assert isinstance(ev, End)
                self.pending.popleft()
                self._last_head = x.resp_head
                head = x.resp_head
                if x is self.current and head is not None and head.framing != TUNNEL:
                    self.early = (x, t, ev.trailers)  # recorded when its body has come
                else:
                    out.append(self._capture(x, t, None, ev.trailers))
                if self._after(x):
                    return out
                out += self._requests(t)  # requests held behind an upgrade offer

    def _after(self, x: _Exchange) -> bool:
        """After a response: an accepted upgrade ends the reading (True)."""
        head = x.resp_head
        if head is not None and head.framing == TUNNEL:
            self.done = True
            return True
        if self.requests.waiting_upgrade:
            self.requests.resume()  # the upgrade was declined: HTTP/1.1 goes on
        return False

    def _unreadable(self, t: float, error: str) -> list[Capture]:
        self.unread.append(f"{self.source} ({self.host}): {error}")
        early, self.early = self.early, None
        out = [self._capture(early[0], early[1], error, early[2])] if early else []
        out += [self._capture(x, t, error) for x in self.pending]
        self.pending.clear()
        self.current = None
        self.done = True
        return out

    def _whole_body(self, head: Head, raw: bytes) -> tuple[bytes, bool]:
        """A message's body that came whole, as the recording keeps it (decoded, capped)."""
        body = BodyCapture(self.max_body, head.header("content-encoding"))
        body.add(raw)
        return body.body(), body.truncated

    def _parent(self, head: Head) -> str | None:
        return self.correlation.parent(self._in_flight, self.direction, head.headers)

    # ------------------------------------------------------------ output

    def _capture(
        self,
        x: _Exchange,
        t: float,
        error: str | None,
        trailers: list[tuple[str, str]] | None = None,
    ) -> Capture:
        head, resp = x.head, x.resp_head
        return self.captured(
            x.parent,
            (head.method, head.target, head.version, head.headers),
            x.req_body,
            (resp.status, resp.reason, resp.version, resp.headers, trailers or [])
            if resp is not None
            else None,
            x.resp_body,
            (x.t0, t, x.t_first),
            error,
        )


class Streams:
    """Every intercepted connection the worker is reading, by the proxy's id."""

    def __init__(self, stamp: str, max_body: int, correlation_header: str | None) -> None:
        self.stamp = stamp
        self.max_body = max_body
        self.correlation = Correlation(correlation_header)
        self.seen = Seen()
        self.unread: list[str] = []  # one line per connection the worker stopped reading
        self.open: dict[int, Stream | H2Stream] = {}

    def take(self, msg: tuple[Any, ...]) -> list[Capture]:
        kind = msg[0]
        if kind == "d":
            s = self.open.get(msg[1])
            if s is None:
                return []
            return s.client(msg[3], msg[4], msg[5]) if msg[2] == 0 else s.server(msg[3], msg[4])
        if kind == "o":
            if len(msg) > 8 and msg[8] == "h2":
                # (imported here: h2streams shares this module's names)
                from devbox.record.h2streams import H2Stream

                self.open[msg[1]] = H2Stream(
                    msg, self.stamp, self.max_body, self.correlation, self.unread
                )
            else:
                self.open[msg[1]] = Stream(
                    msg, self.stamp, self.max_body, self.correlation, self.seen, self.unread
                )
            return []
        s = self.open.pop(msg[1], None)
        return s.close(msg[2], msg[3], msg[4]) if s is not None else []

    def end(self) -> list[Capture]:
        """Recording ends: connections still open had nothing under way worth keeping
        (``stop`` frames came for those that had), but for an answer a client had whole
        while it still sent its body (the proxy died, no frame came): that is kept."""
        out = [c for s in self.open.values() for c in s.cut()]
        self.open.clear()
        return out

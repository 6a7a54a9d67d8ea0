"""The ``http`` kind's ``RecorderConnection``: one relayed HTTP/1.1 connection observed in
both directions with the one reader (``devbox.wire.http1``), each request paired with its
response and stored as the exchange object HTTP recordings hold
(``devbox.core.recording.exchange_to_dict``).

The recording proxy (``devbox.record.proxy``) stays how ``devbox record`` records HTTP: it
also forwards by origin, correlates calls with inbound requests and caps bodies. This is
the same mapping behind the contract, so the kind can be recorded by the generic relay
and tested with bytes. It never refuses anything: bytes it cannot read are relayed all
the same and the connection stops being recorded (a recorder must not break traffic).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devbox.core.model import Direction, Exchange, Request, Response, Timing, parse_query
from devbox.core.recording import exchange_to_dict
from devbox.store import new_stamp
from devbox.wire.contract import Relay
from devbox.wire.http1 import TUNNEL, Data, End, Head, MessageReader, ProtocolError


@dataclass(slots=True)
class _Open:
    """A request read from the client, waiting for (or reading) its response."""

    head: Head
    started_at: float
    body: list[bytes] = field(default_factory=list)
    response: Head | None = None
    response_body: list[bytes] = field(default_factory=list)
    first_byte_ms: float | None = None


class Http1Recorder:
    """``from_client``/``from_upstream`` relay every byte unchanged; ``take_stored`` hands
    out each exchange once its response has ended."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.requests = MessageReader(is_request=True)
        self.responses = MessageReader(is_request=False)
        self.sent: deque[_Open] = deque()  # requests in the order the client sent them
        self.reading: _Open | None = None  # the request whose body is arriving
        self.stored: list[dict[str, Any]] = []
        self.stopped = False  # unreadable bytes or a tunnel: relay only from here on
        self.stamp = new_stamp()
        self.count = 0

    def from_client(self, data: bytes) -> Relay:
        if not self.stopped:
            self.requests.receive(data)
            self._read_requests()
        return Relay(to_upstream=data)

    def from_upstream(self, data: bytes) -> Relay:
        if not self.stopped:
            self.responses.receive(data)
            self._read_responses()
        return Relay(to_client=data)

    def take_stored(self) -> list[dict[str, Any]]:
        out, self.stored = self.stored, []
        return out

    def close(self) -> list[dict[str, Any]]:
        if not self.stopped:
            self.responses.eof()  # a response framed by the connection's end ends now
            self._read_responses()
        for left in self.sent:
            why = "connection closed before the response ended"
            self._store(left, None if left.response is None else left, why)
        self.sent.clear()
        return self.take_stored()

    # ------------------------------------------------------------ reading

    def _read_requests(self) -> None:
        try:
            while (ev := self.requests.next_event()) is not None:
                if isinstance(ev, Head):
                    self.reading = _Open(ev, self.clock())
                    self.sent.append(self.reading)
                    # told at the head, not the end: a response may start before the body ends
                    self.responses.expect(ev.method)
                elif isinstance(ev, Data) and self.reading is not None:
                    self.reading.body.append(ev.decoded)
                elif isinstance(ev, End):
                    self.reading = None
        except ProtocolError:
            self.stopped = True

    def _read_responses(self) -> None:
        try:
            while (ev := self.responses.next_event()) is not None:
                current = self.sent[0] if self.sent else None
                if current is None:
                    self.stopped = True  # a response nobody asked for: not HTTP we can pair
                    return
                if isinstance(ev, Head):
                    if ev.interim:
                        continue  # 100 Continue and friends: the final response follows
                    current.response = ev
                    current.first_byte_ms = (self.clock() - current.started_at) * 1000.0
                    if ev.framing == TUNNEL:
                        self.stopped = True  # an upgrade or CONNECT: opaque bytes follow
                        self._store(self.sent.popleft(), current, None)
                        return
                elif isinstance(ev, Data):
                    current.response_body.append(ev.decoded)
                elif current.response is not None:
                    self._store(self.sent.popleft(), current, None)
        except ProtocolError:
            self.stopped = True

    def _store(self, req: _Open, resp: _Open | None, error: str | None) -> None:
        head = req.head
        path, mark, query = head.target.partition("?")
        request = Request(
            method=head.method,
            path=path or "/",
            query=parse_query(query),
            headers=tuple(head.headers),
            body=b"".join(req.body),
            host=head.header("host") or "",
            http_version=head.version,
            # the query as sent: the target is written back byte for byte
            raw_query=query if mark else None,
        )
        response = None
        if resp is not None and resp.response is not None:
            r = resp.response
            response = Response(
                r.status, tuple(r.headers), b"".join(resp.response_body), r.reason, r.version
            )
        self.count += 1
        ended = self.clock()
        exchange = Exchange(
            id=f"http-{self.stamp}-{self.count:04d}",
            direction=Direction.OUTBOUND,
            source="",
            request=request,
            response=response,
            timing=Timing(req.started_at, (ended - req.started_at) * 1000.0, req.first_byte_ms),
            error=error if response is None else None,
            origin="record",
        )
        obj = exchange_to_dict(exchange)
        del obj["source"]  # the file's header names it (the writer knows the dependency)
        self.stored.append(obj)

"""The ``http`` kind's pieces behind the contract (``devbox.mock.http_kind`` hands them
out): the index over HTTP recordings, the pure HTTP/1.1 ``MockConnection`` and the
redaction of stored exchanges. Apart from the kind object so that asking the kind a
question (the profile, the wiring, a recorder) does not import matching and the reader.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from devbox.core.profile import Dependency
from devbox.core.recording import exchange_from_dict, stored_objects
from devbox.errors import NotFoundError, RecordingError
from devbox.mock.answer import HttpRequest, Limits, MockSpec, MockState, answer, mode_for
from devbox.mock.wire import rejection
from devbox.store import recording_files
from devbox.wire import http1
from devbox.wire.contract import Fault, Forward, Hit, Index, Miss, MockOptions, Output, Reply

Stored = tuple[str, int, Mapping[str, Any]]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# headers the answer step reads besides the ones the index asks for (as MockServer's)
_ALWAYS_CAPTURED = frozenset({"content-length", "expect", "accept-encoding", "connection"})


class HttpIndex:
    """The recorded exchanges in one ``MockState``: shared by every connection of the mock,
    as one ``MockServer``'s is (sequences, fault draws and counters are the mock's)."""

    def __init__(self, exchanges: Sequence[Any], spec: MockSpec, limits: Limits) -> None:
        self.state = MockState(spec, limits)
        self.state.install(list(exchanges))

    def __len__(self) -> int:
        return len(self.state.prepared)

    def reset(self) -> None:
        self.state.reset()


def load_index(
    stored: Sequence[Stored], name: str, spec: MockSpec | None, limits: Limits | None
) -> HttpIndex:
    """``HttpKind.load``: every object an exchange (a ``RecordingError`` names its file,
    line and field), served by ``spec``'s dependency (a bare one named ``name``)."""
    exchanges = []
    for i, (file, line, obj) in enumerate(stored):
        try:
            exchanges.append(exchange_from_dict(dict(obj), where=f"exchange[{i}]"))
        except RecordingError as exc:
            raise RecordingError(exc.message, file=file, line=line, field=exc.field) from None
    spec = spec or MockSpec(dependency=Dependency(name=name))
    return HttpIndex(exchanges, spec, limits or Limits())


def connect(index: Index, options: MockOptions) -> Http1MockConnection:
    """``HttpKind.mock_connection``: ``options.on_miss`` sets the mock's mode."""
    assert isinstance(index, HttpIndex)
    mode = mode_for(options.on_miss)
    if index.state.mode != mode:
        index.state.set_mode(mode)
    return Http1MockConnection(index.state)


def read_stored(path: Path) -> list[Stored]:
    """(file, line, object) of every exchange in an HTTP recording file or directory (with
    ``.partial`` files, as the mock loads them), for ``HttpKind.load``."""
    files = recording_files(path, include_partial=True) if path.is_dir() else [path]
    out: list[Stored] = []
    for f in files:
        try:
            data = f.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{f}: no such recording file") from None
        out.extend((str(f), line, obj) for line, obj in stored_objects(data, str(f)))
    return out


# ---------------------------------------------------------------- the mock connection


class Http1MockConnection:
    """One client connection to the HTTP mock, pure: bytes in, ``Output`` actions out.

    Requests are read by the one reader with the mock's limits (414, 431, 413, 505 as the
    server answers them) and answered by ``answer()`` in order; a malformed request gets
    the server's JSON 400 and the connection closes. The admin API (``/__devbox/``) is the
    server's, not the answer step's: here it is an ordinary request. A ``Forward`` carries
    the request's bytes; answers to later requests wait until the upstream's response
    (``upstream_data``) has been relayed, so the client gets them in order.
    """

    def __init__(self, state: MockState) -> None:
        self.state = state
        lim = state.limits
        self.reader = http1.MessageReader(
            is_request=True,
            limits=http1.Limits(
                lim.max_request_line, lim.max_header_bytes, lim.max_headers, lim.max_body
            ),
            methods=http1.LLHTTP_METHODS,
        )
        self.wanted = frozenset({*state.index.wanted_headers, *_ALWAYS_CAPTURED})
        self.head: http1.Head | None = None
        self.body: list[bytes] = []
        self.raw: list[bytes] = []
        self.closed = False
        # from the first forwarded request still awaiting its upstream answer (``_Waiting``)
        # on: what the client gets after it, in request order
        self.queue: deque[Output | _Waiting] = deque()
        self.upstream = http1.MessageReader(is_request=False)
        self.upstream_raw: list[bytes] = []

    def data_received(self, data: bytes) -> list[Output]:
        if self.closed:
            return []
        self.reader.receive(data)
        return self._drain()

    def eof_received(self) -> list[Output]:
        self.reader.eof()
        return [] if self.closed else self._drain()

    def wake(self, token: int) -> list[Output]:
        return []  # HTTP/1.1 answers in order: delays are the loop's

    def upstream_data(self, data: bytes) -> list[Output]:
        self.upstream.receive(data)
        out: list[Output] = []
        while self.queue and (ev := self.upstream.next_event()) is not None:
            self.upstream_raw.append(ev.raw)
            if isinstance(ev, http1.End):
                waiting = self.queue.popleft()
                assert isinstance(waiting, _Waiting)
                out.append(Reply(b"".join(self.upstream_raw), close=not waiting.keep_alive))
                self.upstream_raw = []
                while self.queue and not isinstance(self.queue[0], _Waiting):
                    out.append(self.queue.popleft())  # type: ignore[arg-type]
        return out

    def _drain(self) -> list[Output]:
        out: list[Output] = []
        while not self.closed:
            try:
                ev = self.reader.next_event()
            except http1.ProtocolError as exc:
                out.append(_reject(exc.status, str(exc) or type(exc).__name__))
                self.closed = True
                break
            if ev is None:
                break
            if isinstance(ev, http1.Head):
                self.head, self.body, self.raw = ev, [], [ev.raw]
                expect = ev.index.get("expect", "")
                if expect.lower() == "100-continue" and not self.queue:
                    out.append(Reply(_CONTINUE))
                continue
            self.raw.append(ev.raw)
            if isinstance(ev, http1.Data):
                self.body.append(ev.decoded)
            elif self.head is not None:
                for o in self._answer(self.head, b"".join(self.body)):
                    # a Forward goes out at once (the loop sends it upstream); answers
                    # wait behind an earlier forwarded request
                    if self.queue and not isinstance(o, Forward):
                        self.queue.append(o)
                    else:
                        out.append(o)
        return out

    def _answer(self, head: http1.Head, body: bytes) -> list[Output]:
        st = self.state
        captured = {k: v for k, v in head.index.items() if k in self.wanted}
        keep = head.keep_alive
        req = HttpRequest(
            head.method, head.target, body, keep, captured, tuple(head.headers),
            head.version == "HTTP/1.0",
        )  # fmt: skip
        hits = st.hits
        out = answer(req, st)
        if isinstance(out, Forward):
            self.queue.append(_Waiting(keep))
            self.upstream.expect(head.method)
            return [Forward(b"".join(self.raw), record=out.record, message=out.message)]
        if isinstance(out, Fault):
            self.closed = self.closed or out.kind == "reset"
        elif isinstance(out, Reply | Miss) and out.close:
            self.closed = True
        if st.hits > hits:
            matched = st.journal[-1][5] if st.journal else ""
            return [Hit(f"{head.method} {head.target}", matched or ""), out]
        return [out]


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A forwarded request's place in the answer order."""

    keep_alive: bool


def _reject(status: int, message: str) -> Reply:
    """The server's answer to a request it cannot read (``devbox.mock.conn``'s reject)."""
    return Reply(rejection(status, message), close=True)


# ---------------------------------------------------------------- redaction


def redact_exchange(
    stored: dict[str, Any], redact_value: Callable[[str, str], str]
) -> dict[str, Any]:
    """Header values (by header name), query values (by parameter name) and the string
    values of JSON bodies (by key) of both sides, passed through ``redact_value``."""
    out = dict(stored)
    for side in ("request", "response"):
        part = stored.get(side)
        if not isinstance(part, dict):
            continue
        part = dict(part)
        headers = part.get("headers") or []
        part["headers"] = [[k, redact_value(str(k).lower(), v)] for k, v in headers]
        body = part.get("body")
        if isinstance(body, dict) and "json" in body:
            part["body"] = {**body, "json": _redact_json(body["json"], "", redact_value)}
        if side == "request" and isinstance(part.get("url"), str):
            part["url"] = _redact_url(part["url"], redact_value)
        out[side] = part
    return out


def _redact_json(value: Any, key: str, redact_value: Callable[[str, str], str]) -> Any:
    if isinstance(value, str):
        return redact_value(key, value)
    if isinstance(value, dict):
        return {k: _redact_json(v, k, redact_value) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, key, redact_value) for v in value]
    return value


def _redact_url(url: str, redact_value: Callable[[str, str], str]) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    clean = [(k, redact_value(k, v)) for k, v in pairs]
    if clean == pairs:
        return url  # unchanged: the query stays byte for byte as sent
    return urlunsplit(parts._replace(query=urlencode(clean)))

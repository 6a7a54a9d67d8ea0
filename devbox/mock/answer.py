"""The pure answer step of an HTTP mock: ``answer(request, state) -> Reply | Miss | Fault |
Forward``.

It knows nothing of connections, sockets or clocks it was not given: a request (what
the connection parsed) and the mock's state (recordings, match index, prepared
response bytes, mode, fault draws, counters, journal) in, one decision out. The
connection loop (``devbox.mock.conn``) applies the decision: writes the bytes (after
the delay), resets the connection, or hands a ``Forward`` to passthrough. So every
behaviour of answering is testable in-process, the way httpx's ``MockTransport``
tests a client (``tests/test_mock_answer.py``).

The server's hot path (a matched request on a plain mock, nothing pending on the
connection) writes ``Prepared.keepalive`` directly and never gets here; this step is
everything else: faults, timing, HEAD, content negotiation, fuzzy matches and misses.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from devbox.core.events import MockStats
from devbox.core.matching import Candidate, MatchIndex, parse_query_fast
from devbox.core.model import Exchange, Headers, Request
from devbox.core.profile import Dependency, RedactRules
from devbox.core.redact import Redactor
from devbox.mock.wire import Prepared, serialize
from devbox.wire.contract import Answer, Fault, Forward, Miss, Reply
from devbox.wire.upstream import Upstream

MODES = ("replay", "passthrough", "record")
MISS_STATUS = 502
_MISS_LOG = 200


def mode_for(on_miss: str) -> str:
    return "replay" if on_miss == "fail" else on_miss


@dataclass(frozen=True, slots=True)
class Limits:
    """Protection against bad or hostile clients; every number is per request or connection.
    The sizes are ``devbox.wire.http1.Limits`` (one status each: 414, 431, 431, 413)."""

    max_request_line: int = 8 * 1024  # bytes of the request-target -> 414
    max_header_bytes: int = 64 * 1024  # -> 431
    max_headers: int = 100  # -> 431
    max_body: int = 16 * 1024 * 1024  # -> 413
    header_timeout_s: float = 10.0  # from a request's first byte (or the connect) to its headers
    request_timeout_s: float = 60.0  # from a request's first byte to its last
    idle_timeout_s: float = 75.0  # a keep-alive connection with no request in progress
    send_timeout_s: float = 60.0  # answers waiting on a client that takes none of them
    max_pipeline: int = 64  # answers pending on one connection before reading pauses
    journal_size: int = 10_000
    journal_body: int = 64 * 1024
    upstream_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class MockSpec:
    """What one mock serves and how."""

    dependency: Dependency  # name, match rules, on_miss, timing, faults, upstream
    # a recording directory or file: loaded, watched for changes, appended to in record mode
    recordings: Path | None = None
    # a fixed set (an imported HAR), used instead of ``recordings``
    exchanges: tuple[Exchange, ...] | None = None
    # live requests are redacted with these rules before matching; None: not redacted
    # (right when the exchanges were not redacted either, as with a HAR file)
    redact: RedactRules | None = None
    # the profile's [record] correlation_header: a call carrying it is answered with the
    # call recorded for that inbound request (devbox.core.matching, "Links")
    link_header: str | None = None


@dataclass(frozen=True, slots=True)
class MissRecord:
    seq: int
    at: float
    method: str
    target: str
    explanation: str
    hint: str
    candidates: tuple[Candidate, ...]
    action: str  # "failed" | "passthrough" | "recorded" | "upstream error"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "method": self.method,
            "target": self.target,
            "explanation": self.explanation,
            "hint": self.hint,
            "action": self.action,
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One parsed request, as the answer step sees it."""

    method: str
    target: str  # as sent
    body: bytes = b""
    keep_alive: bool = True
    # the headers matching needs, by lower-case name (what the connection captured)
    captured: Mapping[str, str] = field(default_factory=dict)
    # every header as sent (read only on slow paths)
    headers: Headers = ()
    http10: bool = False

    def header(self, name: str) -> str | None:
        low = name.lower()
        values = [v for k, v in self.headers if k.lower() == low]
        return ", ".join(values) if values else None

    def request(self) -> Request:
        path, _, qs = self.target.partition("?")
        host = next((v for k, v in self.headers if k.lower() == "host"), "")
        return Request(
            method=self.method,
            path=path or "/",
            query=parse_query_fast(qs),
            headers=self.headers,
            body=self.body,
            host=host,
            http_version="HTTP/1.0" if self.http10 else "HTTP/1.1",
        )


class MockState:
    """What one mock knows and counts: everything the answer step reads and changes.
    Counters are plain ints, read from other threads for statistics."""

    def __init__(self, spec: MockSpec, limits: Limits) -> None:
        dep = spec.dependency
        self.spec = spec
        self.name = dep.name
        self.limits = limits
        self.mode = mode_for(dep.on_miss)
        self.redactor = Redactor(spec.redact) if spec.redact is not None else None
        # the service is given the upstream's base path (devbox.core.wiring) and sends it
        # itself: prefixing it again would ask for /visit/visit
        self.upstream = (
            dataclasses.replace(Upstream.parse(dep.upstream), prefix="") if dep.upstream else None
        )
        self.timing_factor = dep.timing_factor
        self.faults = f = dep.faults
        self.has_faults = bool(f.delay_ms or f.error_rate or f.reset_rate)
        # no faults, no timing: matched requests take the server's hot path
        self.plain = not self.has_faults and self.timing_factor is None
        self.journal_body = limits.journal_body
        self.rng = random.Random(f.seed)
        self.index = MatchIndex(
            (), dep.match, name=dep.name, redactor=self.redactor_fn(), link_header=spec.link_header
        )
        self.prepared: list[Prepared] = []
        self.hits = 0
        self.misses = 0
        self.fuzzy_hits = 0
        self.passed_through = 0
        self.recorded = 0
        self.injected_errors = 0
        self.injected_resets = 0
        self.last_miss = ""
        self.miss_log: deque[MissRecord] = deque(maxlen=_MISS_LOG)
        self.miss_routes: dict[tuple[str, str], int] = {}
        self.seq = 0
        self.journal: deque[tuple[Any, ...]] = deque(maxlen=limits.journal_size)

    def redactor_fn(self) -> Callable[[Request], Request] | None:
        return self.redactor.request if self.redactor is not None else None

    def install(self, exchanges: list[Exchange]) -> None:
        """Serve these exchanges (tests and in-process callers; the server reloads too)."""
        dep = self.spec.dependency
        self.index = MatchIndex(
            exchanges,
            dep.match,
            name=dep.name,
            redactor=self.redactor_fn(),
            link_header=self.spec.link_header,
        )
        self.prepared = [Prepared(ex) for ex in exchanges]

    def reset(self) -> None:
        """Every recorded sequence starts again; fault draws start again from the seed."""
        self.index.reset()
        self.rng = random.Random(self.faults.seed)

    def set_mode(self, mode: str) -> None:
        if mode == "fail":
            mode = "replay"
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode != "replay" and self.upstream is None and self.spec.exchanges is not None:
            # a --har mock: the CLI refuses --on-miss passthrough without --upstream, and
            # so does the admin API (a profile's mock explains such misses instead)
            raise ValueError(
                f"mode {mode} needs an upstream URL for dependency {self.name}; this mock has none"
            )
        if mode == "record" and self.spec.exchanges is not None:
            raise ValueError(
                f"mode record needs a recording to append to; mock {self.name} serves a fixed "
                "set (a HAR file)"
            )
        self.mode = mode

    def log(
        self, method: str, target: str, body: bytes, hv: Mapping[str, str], hit: str | None, st: int
    ) -> int:
        """One journal entry; returns its sequence number."""
        self.seq = seq = self.seq + 1
        jb = body if len(body) <= self.journal_body else body[: self.journal_body]
        self.journal.append((seq, method, target, jb, hv, hit, st))
        return seq

    # ------------------------------------------------------------ views

    def misses_since(self, after: int) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self.miss_log if m.seq > after]

    def clear_journal(self) -> None:
        self.journal.clear()

    def route_stats(self) -> list[dict[str, Any]]:
        misses = dict(self.miss_routes)
        out: list[dict[str, Any]] = []
        for method, path, recorded, calls in self.index.route_calls():
            out.append(
                {
                    "method": method,
                    "path": path,
                    "recorded": recorded,
                    "hits": calls,
                    "misses": misses.pop((method, path), 0),
                }
            )
        for (method, path), n in misses.items():
            out.append({"method": method, "path": path, "recorded": 0, "hits": 0, "misses": n})
        out.sort(key=lambda r: (-(r["hits"] + r["misses"]), r["method"], r["path"]))
        return out

    def mock_stats(self, port: int) -> MockStats:
        return MockStats(
            dependency=self.name,
            mode=self.mode,
            port=port,
            hits=self.hits,
            misses=self.misses,
            last_miss=self.last_miss,
        )


# ---------------------------------------------------------------- the step


def answer(req: HttpRequest, st: MockState) -> Answer:
    """The decision for one request. Advances sequences, fault draws and counters."""
    delay = 0.0
    if st.has_faults:
        f = st.faults
        reset_draw = st.rng.random()
        error_draw = st.rng.random()
        delay = f.delay_ms / 1000.0
        hv = req.captured
        if reset_draw < f.reset_rate:
            st.injected_resets += 1
            st.log(req.method, req.target, req.body, hv, None, 0)
            return Fault("reset", delay_s=delay)
        if error_draw < f.error_rate:
            st.injected_errors += 1
            st.log(req.method, req.target, req.body, hv, None, f.error_status)
            payload = orjson.dumps({"error": "devbox mock: injected fault", "dependency": st.name})
            data = serialize(
                f.error_status,
                (("Content-Type", "application/json"), ("X-Devbox-Fault", "error")),
                payload,
                close=not req.keep_alive,
            )
            return Reply(data, delay, not req.keep_alive)
    pos = st.index.lookup_raw(req.method, req.target, req.captured, req.body)
    if pos < 0:
        return _miss(req, st, delay)
    return serve(req, st, pos, delay)


def serve(req: HttpRequest, st: MockState, pos: int, delay: float, head: bool = False) -> Answer:
    """The recorded answer at ``pos`` (timing, HEAD and content negotiation applied)."""
    prep = st.prepared[pos]
    st.hits += 1
    st.log(req.method, req.target, req.body, req.captured, prep.id, prep.status)
    if st.timing_factor is not None:
        t = prep.exchange.timing
        recorded_ms = t.wait_ms if t.wait_ms is not None else t.duration_ms
        delay += recorded_ms * st.timing_factor / 1000.0
    if prep.reset:
        return Fault("reset", delay_s=delay)
    head = head or req.method == "HEAD"
    keep = req.keep_alive
    if keep and not head and prep.simple:
        data = prep.keepalive
    else:
        accept = req.header("accept-encoding") if prep.encoding else None
        data = prep.bytes_for(accept, close=not keep, head=head)
    return Reply(data, delay, not keep)


def _miss(req: HttpRequest, st: MockState, delay: float) -> Answer:
    index = st.index
    hv = req.captured
    if req.method == "HEAD":
        # HEAD of something recorded with GET: the same headers, no body
        pos = index.lookup_raw("GET", req.target, hv, req.body)
        if pos >= 0:
            return serve(req, st, pos, delay, head=True)
    request = req.request()
    result = index.match(request)
    if result.exchange is not None:
        if result.fuzzy:
            st.fuzzy_hits += 1
        return serve(req, st, result.position, delay)
    st.misses += 1
    route = (req.method, request.path)
    if route in st.miss_routes or len(st.miss_routes) < 1000:
        st.miss_routes[route] = st.miss_routes.get(route, 0) + 1
    st.last_miss = result.explanation
    forwarding = st.mode in ("passthrough", "record") and st.upstream is not None
    seq = st.log(req.method, req.target, req.body, hv, None, 0 if forwarding else MISS_STATUS)
    record = MissRecord(
        seq=seq,
        at=time.time(),
        method=req.method,
        target=req.target,
        explanation=result.explanation,
        hint=result.hint,
        candidates=result.candidates,
        action=st.mode if forwarding else "failed",
    )
    st.miss_log.append(record)
    if forwarding:
        return Forward(b"", record=st.mode == "record", message=(request, record, req.keep_alive))
    extra = ""
    if st.mode != "replay" and st.upstream is None:
        extra = f"; mode {st.mode} needs an upstream URL for dependency {st.name}"
    data = miss_response(st.name, result.explanation + extra, record, req.keep_alive)
    nearest = record.candidates[0].label if record.candidates else None
    return Miss(
        data,
        f"{req.method} {req.target}",
        result.explanation,
        nearest,
        close=not req.keep_alive,
        delay_s=delay,
    )


def miss_response(name: str, explanation: str, record: MissRecord, keep: bool) -> bytes:
    payload = {
        "error": "devbox mock: no recording matches this request",
        "dependency": name,
        "request": f"{record.method} {record.target}",
        "explanation": explanation,
        "hint": record.hint,
        "candidates": [c.to_dict() for c in record.candidates],
    }
    return serialize(
        MISS_STATUS,
        (("Content-Type", "application/json"), ("X-Devbox-Miss", name)),
        orjson.dumps(payload, option=orjson.OPT_INDENT_2),
        close=not keep,
    )

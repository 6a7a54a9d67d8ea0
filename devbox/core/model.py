"""The traffic model: what crossed the wire, as immutable values.

Bodies are always held *decoded* (no Content-Encoding applied) as raw bytes;
the headers keep what the peer sent, so a server that replays a response knows
to re-apply gzip/deflate and a reader sees the plain body.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode

from devbox.core.frozen import fast_init

Headers = tuple[tuple[str, str], ...]


class Direction(enum.StrEnum):
    INBOUND = "inbound"  # a client called the service under test
    OUTBOUND = "outbound"  # the service called one of its dependencies


def header_get(
    headers: Iterable[tuple[str, str]], name: str, default: str | None = None
) -> str | None:
    """First value of a header, case-insensitively."""
    low = name.lower()
    for k, v in headers:
        if k.lower() == low:
            return v
    return default


def header_without(headers: Headers, *names: str) -> Headers:
    drop = {n.lower() for n in names}
    return tuple((k, v) for k, v in headers if k.lower() not in drop)


def parse_query(query: str) -> tuple[tuple[str, str], ...]:
    return tuple(parse_qsl(query, keep_blank_values=True))


@lru_cache(maxsize=16384)
def _raw_still_says(raw: str, query: tuple[tuple[str, str], ...]) -> bool:
    return parse_query(raw) == query


@fast_init
@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    query: tuple[tuple[str, str], ...] = ()
    headers: Headers = ()
    body: bytes = b""
    scheme: str = "http"
    host: str = ""  # authority as the client sent it, e.g. "payments:8081"
    http_version: str = "HTTP/1.1"
    # the query string exactly as recorded ("a=b:c&d=%20"): the target is sent and written
    # back byte for byte, while ``query`` (decoded pairs) is what matching compares. Not
    # part of equality: two spellings of the same query are the same request.
    raw_query: str | None = field(default=None, compare=False)

    @property
    def target(self) -> str:
        """The request-target: path plus query string, as recorded when it still says
        what ``query`` says (a redacted value is written re-encoded)."""
        raw = self.raw_query
        if raw is not None and _raw_still_says(raw, self.query):
            return f"{self.path}?{raw}" if raw else self.path
        if not self.query:
            return self.path
        return f"{self.path}?{urlencode(self.query)}"

    @property
    def url(self) -> str:
        host = self.host or header_get(self.headers, "host") or "localhost"
        return f"{self.scheme}://{host}{self.target}"

    def header(self, name: str) -> str | None:
        return header_get(self.headers, name)


@fast_init
@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Headers = ()
    body: bytes = b""
    reason: str = ""
    http_version: str = "HTTP/1.1"
    # fields after the body (HTTP/2 trailers, a chunked body's): gRPC's status is there
    trailers: Headers = ()

    def header(self, name: str) -> str | None:
        return header_get(self.headers, name)


@fast_init
@dataclass(frozen=True, slots=True)
class Timing:
    """Wall-clock start (epoch seconds) and how long the exchange took."""

    started_at: float = 0.0
    duration_ms: float = 0.0
    # time to first response byte, where known (HAR "wait")
    wait_ms: float | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and what came back (a response, or an error such as a refused connection)."""

    id: str
    direction: Direction
    source: str  # the dependency name for outbound traffic, "inbound" for the service's own
    request: Request
    response: Response | None
    timing: Timing = field(default_factory=Timing)
    # for outbound calls: the id of the inbound exchange being served when it was made
    parent: str | None = None
    # why there is no response: "connection refused", "timeout", "tls: ..."
    error: str | None = None
    # bodies longer than the recorder's cap are stored cut and marked
    request_truncated: bool = False
    response_truncated: bool = False
    # free-form provenance: "har:chrome", "record", "devbox mock record"
    origin: str = ""

    @property
    def ok(self) -> bool:
        return self.response is not None and self.error is None

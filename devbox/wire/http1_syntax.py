"""HTTP/1.1 syntax, without I/O: heads, events, limits and the checks RFC 9112 asks
for. ``devbox.wire.http1`` reads messages with it; see its docstring for the rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from devbox.wire.contract import RemoteProtocolError

MAX_HEAD = 64 * 1024  # a response head (and, with Limits, a request's header section)
MAX_CHUNK_LINE = 64 * 1024  # llhttp has no limit; leading zeros are legal, so be generous


class ProtocolError(RemoteProtocolError):
    """The peer sent something that is not HTTP/1.x; ``status`` is what to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, code=status)

    @property
    def status(self) -> int:
        return int(self.code) if isinstance(self.code, int) else 400


@dataclass(frozen=True, slots=True)
class Limits:
    """One limit per size of a request, each with its own status."""

    max_target: int = 8 * 1024  # bytes of the request-target -> 414
    max_header_bytes: int = 64 * 1024  # the header section (names and values) -> 431
    max_headers: int = 100  # header fields -> 431
    max_body: int = 16 * 1024 * 1024  # a request body (declared or received) -> 413

    @classmethod
    def none(cls) -> Limits:
        big = 1 << 62
        return cls(big, big, big, big)


# llhttp's HTTP methods: the mock accepts exactly these (case-sensitive), so both of
# its parsers refuse ``get`` and ``FOO`` alike (400)
LLHTTP_METHODS = frozenset(
    "DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND "
    "PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
    "M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE PRI "
    "QUERY".split()
)
SUPPORTED_VERSIONS = frozenset(("HTTP/1.0", "HTTP/1.1"))
# well-formed versions llhttp reads and leaves to its caller (who answers 505)
_LATE_VERSIONS = frozenset(("HTTP/0.9", "HTTP/2.0"))

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_REQUEST_LINE = re.compile(r"(" + _TOKEN + r") +([\x21-\x7e]+) (HTTP/\d\.\d)")
_TARGET_CHARS = re.compile(r"[\x21-\x7e]*")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)((?:;"
    + _TOKEN.encode()
    + rb"(?:=(?:"
    + _TOKEN.encode()
    + rb'|"[^"\r\n]*"))?)*)'
)


@dataclass(slots=True)
class Head:
    """A request or response head. Requests fill method/target, responses status/reason."""

    raw: bytes
    version: str
    headers: list[tuple[str, str]]
    method: str = ""
    target: str = ""
    status: int = 0
    reason: str = ""
    # set by the reader: no body follows, the body is chunked, read to close...
    framing: str = ""
    length: int = 0
    # lowercased name -> values joined by ", " (built once: the hot path asks often)
    index: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive)."""
        low = name.lower()
        if low not in self.index:
            return None
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None  # pragma: no cover - index and headers agree

    def tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of every ``name`` (lowercase) header, lowercased."""
        joined = self.index.get(name)
        if not joined:
            return []
        return [t.strip().lower() for t in joined.split(",") if t.strip()]

    @property
    def keep_alive(self) -> bool:
        if "connection" not in self.index:  # the common case, asked once per message
            return self.version != "HTTP/1.0"
        conn = self.tokens("connection")
        if "close" in conn:
            return False
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return True

    @property
    def interim(self) -> bool:
        """A 1xx response other than 101: another head follows for the same request."""
        return 100 <= self.status < 200 and self.status != 101


@dataclass(slots=True)
class Data:
    raw: bytes
    decoded: bytes


@dataclass(slots=True)
class End:
    raw: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)


Event = Head | Data | End

# framing modes
NONE = "none"
LENGTH = "length"
CHUNKED = "chunked"
CLOSE = "close"  # until the connection closes
TUNNEL = "tunnel"

# reader states
_HEAD = 0
_BODY_LENGTH = 1
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_CRLF = 4
_TRAILERS = 5
_BODY_CLOSE = 6
_TUNNEL = 7
_WAIT = 8  # after a request asking to upgrade: hold bytes until the answer is known
_DONE = 9  # after eof


def check_request_line(line: str, methods: frozenset[str] | None) -> tuple[str, str, str]:
    """(method, target, version) of a complete request line, or ProtocolError."""
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise ProtocolError(f"malformed request line {line[:80]!r}")
    method, target, version = m.groups()
    if methods is not None and method not in methods:
        raise ProtocolError(f"unknown method {method[:20]!r} (methods are case-sensitive)")
    check_target(method, target)
    if version not in SUPPORTED_VERSIONS and version not in _LATE_VERSIONS:
        raise ProtocolError(f"unsupported protocol {version!r}", 505)
    return method, target, version


def check_target(method: str, target: str) -> None:
    if target[:1] == "/" or target == "*" or _ABSOLUTE.match(target):
        return
    if method == "CONNECT" and ":" in target:
        return
    raise ProtocolError(f"invalid request-target {target[:80]!r}")


def parse_request_head(
    raw: bytes,
    *,
    methods: frozenset[str] | None = None,
    limits: Limits | None = None,
    check_version: bool = True,
) -> Head:
    """A complete request head (through the empty line), strictly by RFC 9112.
    ``check_version=False`` leaves a well-formed HTTP/0.9 or HTTP/2.0 to the caller
    (the mock answers 505 in the callback both of its parsers share)."""
    text = raw.decode("latin-1")
    lines = text[:-4].split("\r\n") if text.endswith("\r\n\r\n") else text.split("\r\n")
    method, target, version = check_request_line(lines[0], methods)
    lim = limits or _NO_LIMITS
    if len(target) > lim.max_target:
        raise ProtocolError("request-target too long", 414)
    headers: list[tuple[str, str]] = []
    index: dict[str, str] = {}
    size = 0
    for line in lines[1:]:
        if "\r" in line or "\n" in line:
            raise ProtocolError("bare CR or LF in the request head")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise ProtocolError(f"malformed header line {line[:60]!r}")
        value = value.strip(" \t")
        if _VALUE_BAD.search(value):
            raise ProtocolError(f"invalid character in header {name[:40]!r}")
        low = name.lower()
        if low == "content-length" and low in index:
            raise ProtocolError("duplicate Content-Length")
        headers.append((name, value))
        size += len(name) + len(value)
        index[low] = f"{index[low]}, {value}" if low in index else value
    if len(headers) > lim.max_headers:
        raise ProtocolError(f"more than {lim.max_headers} request header fields", 431)
    if size + 4 * len(headers) > lim.max_header_bytes:
        raise ProtocolError("request header fields too large", 431)
    if check_version and version in _LATE_VERSIONS:
        raise ProtocolError(f"unsupported protocol {version!r}", 505)
    return Head(raw, version, headers, method, target, index=index)


_NO_LIMITS = Limits.none()


# A service answers most requests with the same head bytes (a Date header changes once a
# second): parsed response heads are kept by their bytes, so a load replay or a busy
# recording parses each once. Bounded; cleared when full.
_RESPONSE_HEADS: dict[bytes, Head] = {}
_RESPONSE_HEAD_CACHE = 512


def shared_response_head(raw: bytes) -> Head:
    """``parse_response_head``'s result shared by every caller with the same bytes:
    read it, never change it (``parse_response_head`` gives a Head of one's own)."""
    seen = _RESPONSE_HEADS.get(raw)
    if seen is None:
        seen = _parse_response_head(raw)
        if len(_RESPONSE_HEADS) >= _RESPONSE_HEAD_CACHE:
            _RESPONSE_HEADS.clear()
        _RESPONSE_HEADS[raw] = seen
    return seen


def parse_response_head(raw: bytes) -> Head:
    """A response head, leniently: bare LF line endings and obs-fold are accepted."""
    seen = shared_response_head(raw)
    # a fresh Head each time: the reader sets its framing, a caller may keep it
    return Head(
        raw,
        seen.version,
        list(seen.headers),
        status=seen.status,
        reason=seen.reason,
        index=dict(seen.index),
    )


def _parse_response_head(raw: bytes) -> Head:
    text = raw.decode("latin-1")
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    start = lines[0]
    headers: list[tuple[str, str]] = []
    index: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            # obsolete line folding: continue the previous value
            if not headers:
                raise ProtocolError("continuation line before any header", 502)
            k, v = headers[-1]
            headers[-1] = (k, f"{v} {line.strip()}")
            index[k.lower()] = f"{index[k.lower()]} {line.strip()}"
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {line[:60]!r}", 502)
        value = value.strip()
        headers.append((name, value))
        low = name.lower()
        index[low] = f"{index[low]}, {value}" if low in index else value
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"malformed status line {start[:80]!r}", 502)
    return Head(raw, version, headers, status=int(code), reason=reason, index=index)


def parse_head(raw: bytes, is_request: bool) -> Head:
    return parse_request_head(raw) if is_request else parse_response_head(raw)


def content_length(head: Head, *, strict: bool) -> int | None:
    joined = head.index.get("content-length")
    if joined is None:
        return None
    if joined.isdigit() and len(joined) <= 20:
        n = int(joined)
        if n >= 1 << 64:
            raise ProtocolError("Content-Length overflow")
        return n
    if strict:
        raise ProtocolError(f"invalid Content-Length {joined[:20]!r}")
    # a response may repeat one value (RFC 9112 6.3: a recipient may accept that)
    seen = {p.strip() for p in joined.split(",")}
    if len(seen) != 1:
        raise ProtocolError("conflicting Content-Length values", 502)
    value = seen.pop()
    if not value.isdigit():
        raise ProtocolError(f"invalid Content-Length {value[:20]!r}", 502)
    return int(value)


def request_codings(head: Head) -> list[str] | None:
    """The request's transfer codings (None: no Transfer-Encoding), checked as llhttp
    does: ``chunked`` last and once (else 400), some coding other than chunked alone
    (501)."""
    joined = head.index.get("transfer-encoding")
    if joined is None:
        return None
    if joined.rstrip(" \t").endswith(","):
        raise ProtocolError("invalid Transfer-Encoding")
    codings = [c.strip(" \t").lower() for c in joined.split(",") if c.strip(" \t")]
    if "chunked" in codings[:-1]:
        raise ProtocolError("invalid Transfer-Encoding: chunked must come last, once")
    if "content-length" in head.index:
        raise ProtocolError("both Transfer-Encoding and Content-Length")
    if not codings or codings[-1] != "chunked":
        # checked last, as llhttp does: every other fault of the head is a 400
        raise ProtocolError("request Transfer-Encoding must end with chunked", 501)
    return codings


def _trailer(line: bytes) -> tuple[str, str]:
    text = line.decode("latin-1")
    name, sep, value = text.partition(":")
    if not sep or not _TOKEN_RE.fullmatch(name) or "\r" in text:
        raise ProtocolError(f"invalid trailer {text[:60]!r}")
    value = value.strip(" \t")
    if _VALUE_BAD.search(value):
        raise ProtocolError(f"invalid character in trailer {name[:40]!r}")
    return name, value

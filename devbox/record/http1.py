"""HTTP/1.1 message framing for the recording proxy, without I/O.

Theory of operation
-------------------
A proxy that records must relay every byte *as it arrived* (chunk framing,
gzip, odd header casing) while also understanding the messages well enough to
know where each one starts and ends and what its decoded body is. A
``MessageReader`` does exactly that and nothing more:

* ``receive(data)`` appends bytes; ``next_event()`` pulls one event at a time,
  so the caller can stop in the middle of a buffer (a forward-proxy connection
  that must wait before switching upstream) and resume later.
* Events are ``Head`` (the parsed start line and headers plus the raw head
  bytes), ``Data`` (``raw`` bytes to relay, ``decoded`` payload without chunk
  framing) and ``End`` (``raw`` tail to relay: the last chunk and trailers).
  Concatenating every event's raw bytes gives back the input exactly.
* Framing follows RFC 9112 section 6: responses to HEAD, 1xx, 204 and 304 have
  no body; chunked wins over Content-Length; a response without either is read
  until the connection closes (``eof()``). A 101 or a 2xx answer to CONNECT
  turns the connection into a tunnel, after which every byte is ``Data``.

Responses are paired with requests by the caller: it tells the response reader
each request's method with ``expect(method)`` in the order it forwarded them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.x; ``status`` is what to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
        if name.lower() not in self.index:
            return None
        low = name.lower()
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


def parse_head(raw: bytes, is_request: bool) -> Head:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise ProtocolError("undecodable head") from None
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
                raise ProtocolError("continuation line before any header")
            k, v = headers[-1]
            headers[-1] = (k, f"{v} {line.strip()}")
            index[k.lower()] = f"{index[k.lower()]} {line.strip()}"
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {line[:60]!r}")
        value = value.strip()
        headers.append((name, value))
        low = name.lower()
        index[low] = f"{index[low]}, {value}" if low in index else value
    if is_request:
        parts = start.split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise ProtocolError(f"malformed request line {start[:80]!r}")
        method, target, version = parts
        if not version.startswith("HTTP/1."):
            raise ProtocolError(f"unsupported protocol {version[:20]!r}", 505)
        return Head(raw, version, headers, method, target, index=index)
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"malformed status line {start[:80]!r}", 502)
    return Head(raw, version, headers, status=int(code), reason=reason, index=index)


def _content_length(head: Head) -> int | None:
    joined = head.index.get("content-length")
    if joined is None:
        return None
    if joined.isdigit():
        return int(joined)
    seen = {p.strip() for p in joined.split(",")}
    if len(seen) != 1:
        raise ProtocolError("conflicting Content-Length values")
    value = seen.pop()
    if not value.isdigit():
        raise ProtocolError(f"invalid Content-Length {value[:20]!r}")
    return int(value)


class MessageReader:
    """Incremental reader of a stream of HTTP/1.x requests or responses."""

    def __init__(self, *, is_request: bool) -> None:
        self.is_request = is_request
        self._buf = b""
        self._pos = 0
        self._state = _HEAD
        self._remaining = 0
        self._methods: deque[str] = deque()
        self._eof = False
        # a message ended with the bytes of the previous event: report End next
        self._pending_end = False
        self.current: Head | None = None  # head of the message being read

    # ------------------------------------------------------------ input

    def receive(self, data: bytes) -> None:
        if self._pos >= len(self._buf):
            self._buf = data
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def eof(self) -> None:
        self._eof = True

    def expect(self, method: str) -> None:
        """Response readers: the method of the next request sent on this connection."""
        self._methods.append(method)

    @property
    def pending_expectations(self) -> int:
        return len(self._methods)

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    @property
    def idle(self) -> bool:
        """Between messages with nothing buffered."""
        return self._state == _HEAD and self.buffered == 0

    @property
    def reading_to_close(self) -> bool:
        return self._state == _BODY_CLOSE

    @property
    def waiting_upgrade(self) -> bool:
        return self._state == _WAIT

    def start_tunnel(self) -> None:
        """Everything from here on is opaque bytes (an accepted upgrade or CONNECT)."""
        self._state = _TUNNEL

    def resume(self) -> None:
        """The upgrade a request asked for was refused: keep reading HTTP."""
        if self._state == _WAIT:
            self._state = _HEAD

    # ------------------------------------------------------------ events

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed."""
        if self._pending_end:
            self._pending_end = False
            return End(b"")
        buf = self._buf
        pos = self._pos
        state = self._state
        if state == _HEAD and self.is_request:
            # tolerated: stray CRLFs between requests (RFC 9112 section 2.2)
            while buf.startswith(b"\r\n", pos):
                pos += 2
            self._pos = pos
        avail = len(buf) - pos
        if state == _HEAD:
            if avail == 0:
                return None
            end = buf.find(b"\r\n\r\n", pos)
            sep = 4
            if end < 0:
                end = buf.find(b"\n\n", pos)
                sep = 2
            if end < 0:
                if avail > MAX_HEAD:
                    raise ProtocolError("head larger than 64 KiB", 431)
                if self._eof and buf[pos:].strip():
                    raise ProtocolError("connection closed inside a head", 502)
                return None
            if end - pos > MAX_HEAD:
                raise ProtocolError("head larger than 64 KiB", 431)
            raw = buf[pos : end + sep]
            self._pos = end + sep
            head = parse_head(raw, self.is_request)
            self.current = head
            self._frame(head)
            return head
        if state == _BODY_LENGTH:
            if avail == 0:
                return None
            n = min(avail, self._remaining)
            chunk = buf[pos : pos + n] if (pos or n != len(buf)) else buf
            self._pos = pos + n
            self._remaining -= n
            if self._remaining == 0:
                self._state = _HEAD
                self._after_message()
                # the end carries no bytes of its own; callers see Data then End
                self._pending_end = True
            return Data(chunk, chunk)
        if state == _CHUNK_SIZE:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if avail > MAX_CHUNK_LINE:
                    raise ProtocolError("chunk size line too long")
                return None
            line = buf[pos:nl].split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise ProtocolError(f"invalid chunk size {line[:20]!r}") from None
            if size < 0:
                raise ProtocolError("negative chunk size")
            if size == 0:
                # the terminal chunk: stay on its line, _TRAILERS relays it with the trailers
                self._state = _TRAILERS
                return self.next_event()
            self._remaining = size
            self._state = _CHUNK_DATA
            # the size line is relayed with the data that follows it
            self._pos = nl + 1
            ev = self.next_event()
            line_raw = buf[pos : nl + 1]
            if isinstance(ev, Data):
                ev.raw = line_raw + ev.raw
                return ev
            return Data(line_raw, b"")
        if state == _CHUNK_DATA:
            if avail == 0:
                return None
            n = min(avail, self._remaining)
            chunk = buf[pos : pos + n]
            self._pos = pos + n
            self._remaining -= n
            if self._remaining == 0:
                self._state = _CHUNK_CRLF
                tail = self._take_crlf()
                if tail is not None:
                    return Data(chunk + tail, chunk)
            return Data(chunk, chunk)
        if state == _CHUNK_CRLF:
            tail = self._take_crlf()
            if tail is None:
                return None
            return Data(tail, b"")
        if state == _TRAILERS:
            # from the terminal chunk's size line through trailer lines to the empty one
            p = buf.find(b"\n", pos) + 1
            while True:
                nl = buf.find(b"\n", p)
                if nl < 0:
                    if avail > MAX_HEAD:
                        raise ProtocolError("trailers larger than 64 KiB")
                    return None
                line = buf[p:nl].strip()
                p = nl + 1
                if not line:
                    break
            raw = buf[pos:p]
            self._pos = p
            self._state = _HEAD
            self._after_message()
            return End(raw)
        if state == _BODY_CLOSE:
            if avail:
                chunk = buf[pos:]
                self._pos = len(buf)
                return Data(chunk, chunk)
            if self._eof:
                self._state = _DONE
                return End(b"")
            return None
        if state == _TUNNEL:
            if avail:
                chunk = buf[pos:]
                self._pos = len(buf)
                return Data(chunk, chunk)
            return None
        return None  # _WAIT, _DONE

    def _take_crlf(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 1:
            return None
        if buf[pos : pos + 2] == b"\r\n":
            self._pos = pos + 2
            self._state = _CHUNK_SIZE
            return b"\r\n"
        if buf[pos : pos + 1] == b"\n":
            self._pos = pos + 1
            self._state = _CHUNK_SIZE
            return b"\n"
        if buf[pos : pos + 1] == b"\r" and len(buf) - pos == 1:
            return None
        raise ProtocolError("chunk data not followed by CRLF")

    def _after_message(self) -> None:
        head = self.current
        if head is None:
            return
        if self.is_request and head.tokens("upgrade") and "upgrade" in head.tokens("connection"):
            self._state = _WAIT
        elif self.is_request and head.method == "CONNECT":
            self._state = _WAIT

    def _frame(self, head: Head) -> None:
        if self.is_request:
            te = head.tokens("transfer-encoding")
            cl = _content_length(head)
            if te:
                if cl is not None:
                    raise ProtocolError("both Transfer-Encoding and Content-Length")
                if te[-1] != "chunked":
                    raise ProtocolError("request Transfer-Encoding must end with chunked", 501)
                self._set(head, CHUNKED)
            elif cl:
                self._set(head, LENGTH, cl)
            else:
                self._set(head, NONE)
            return
        if head.interim:
            head.framing = NONE
            return  # the same request's final response follows: keep its method queued
        method = self._methods.popleft() if self._methods else "GET"
        status = head.status
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            head.framing = TUNNEL
            self._state = _TUNNEL
            self._pending_end = True
            return
        if method == "HEAD" or status in (204, 304):
            self._set(head, NONE)
            return
        te = head.tokens("transfer-encoding")
        if te:
            if te[-1] == "chunked":
                self._set(head, CHUNKED)
            else:
                self._set(head, CLOSE)
            return
        cl = _content_length(head)
        if cl is not None:
            self._set(head, LENGTH, cl) if cl else self._set(head, NONE)
            return
        self._set(head, CLOSE)

    def _set(self, head: Head, framing: str, length: int = 0) -> None:
        head.framing = framing
        head.length = length
        if framing == NONE:
            self._pending_end = True
            self._state = _HEAD
            self._after_message()
        elif framing == LENGTH:
            self._remaining = length
            self._state = _BODY_LENGTH
        elif framing == CHUNKED:
            self._state = _CHUNK_SIZE
        else:
            self._state = _BODY_CLOSE



def iter_events(reader: MessageReader) -> list[Event]:
    """Every event available now (tests and simple callers)."""
    out: list[Event] = []
    while (ev := reader.next_event()) is not None:
        out.append(ev)
    return out

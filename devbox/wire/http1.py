"""HTTP/1.1 framing, without I/O: the one reader every HTTP part of devbox uses.

Theory of operation
-------------------
A ``MessageReader`` turns bytes into events and nothing more (the sans-IO shape of
h11): ``receive(data)`` appends bytes, ``next_event()`` pulls one event at a time,
so a caller can stop in the middle of a buffer (a forward proxy waiting before it
switches upstream) and resume later. Events:

* ``Head``: the parsed start line and headers, plus the raw head bytes;
* ``Data``: ``raw`` bytes to relay and the ``decoded`` payload (chunk framing removed);
* ``End``: ``raw`` tail to relay (the last chunk and trailers) and the trailers.

Concatenating every event's raw bytes gives back the input exactly, which is what
the recording proxy needs; the mock's pure-Python parser (``devbox.mock.pyparser``)
turns the same events into httptools' callbacks; replay reads responses with it.

Requests are read by RFC 9112 and exactly as strictly as llhttp (the mock's fast
parser), so both give the same answer for the same bytes (a differential test
checks it): CRLF line endings only, no obs-fold, tokens for the method and header
names, a request-target of visible ASCII (UTF-8 must be percent-encoded),
``HTTP/1.0`` or ``HTTP/1.1`` (any other well-formed version: 505), one
Content-Length of decimal digits (a duplicate, a sign, a comma list: 400), a
Transfer-Encoding whose last coding is ``chunked`` (chunked elsewhere: 400, no
chunked: 501), never both, chunk sizes of hex digits only (leading zeros allowed,
at most 16 significant digits). Responses are read leniently (bare LF, obs-fold):
an upstream's quirks are recorded, not refused.

Framing follows RFC 9112 section 6: responses to HEAD, 1xx, 204 and 304 have no
body; chunked wins over Content-Length; a response with neither is read until the
connection closes (``eof()``). A 101 or a 2xx answer to CONNECT turns the
connection into a tunnel, after which every byte is ``Data``. Responses are paired
with requests by the caller, which tells the response reader each request's method
with ``expect(method)`` in the order it sent them.

Size limits (``Limits``) are one number per size with one status each: the
request-target (414), the header section (431), the number of header fields (431)
and the body (413). ``Limits.none()`` turns them off for a caller that checks them
itself (the mock checks them in its parser callbacks, for both parsers alike).
"""

from __future__ import annotations

import re
from collections import deque

from devbox.wire.http1_syntax import (
    _BODY_CLOSE,
    _BODY_LENGTH,
    _CHUNK_CRLF,
    _CHUNK_DATA,
    _CHUNK_LINE,
    _CHUNK_SIZE,
    _DONE,
    _HEAD,
    _NO_LIMITS,
    _TOKEN,
    _TRAILERS,
    _TUNNEL,
    _WAIT,
    CHUNKED,
    CLOSE,
    LENGTH,
    LLHTTP_METHODS,
    MAX_CHUNK_LINE,
    MAX_HEAD,
    NONE,
    SUPPORTED_VERSIONS,
    TUNNEL,
    Data,
    End,
    Event,
    Head,
    Limits,
    ProtocolError,
    _trailer,
    check_request_line,
    check_target,
    content_length,
    parse_head,
    parse_request_head,
    parse_response_head,
    request_codings,
    shared_response_head,
)

__all__ = [
    "CHUNKED",
    "CLOSE",
    "LENGTH",
    "LLHTTP_METHODS",
    "MAX_CHUNK_LINE",
    "MAX_HEAD",
    "NONE",
    "SUPPORTED_VERSIONS",
    "TUNNEL",
    "Data",
    "End",
    "Event",
    "Head",
    "Limits",
    "MessageReader",
    "ProtocolError",
    "check_request_line",
    "check_target",
    "iter_events",
    "parse_head",
    "parse_request_head",
    "parse_response_head",
    "response_framing",
    "whole_request",
    "whole_response",
]


_METHOD_PREFIX = re.compile(_TOKEN.encode() + b"?")
_NAME_SO_FAR = re.compile(_TOKEN[:-1] + "*")
_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class MessageReader:
    """Incremental reader of a stream of HTTP/1.x requests or responses."""

    def __init__(
        self,
        *,
        is_request: bool,
        limits: Limits | None = None,
        methods: frozenset[str] | None = None,
        check_version: bool = True,
    ) -> None:
        self.is_request = is_request
        self.check_version = check_version
        self.limits = limits or (Limits() if is_request else _NO_LIMITS)
        self.methods = methods
        lim = self.limits
        # bytes buffered for one incomplete head before it is refused
        self.max_head = (
            min(lim.max_header_bytes + lim.max_target + 4096, 1 << 40) if is_request else MAX_HEAD
        )
        self._buf = b""
        self._pos = 0
        self._state = _HEAD
        self._remaining = 0
        self._body_seen = 0
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

    def read_elsewhere(self) -> None:
        """Response readers: the caller read the next response itself (bytes it had read
        whole before), so its request's method is no longer expected."""
        if self._methods:
            self._methods.popleft()

    @property
    def pending_expectations(self) -> int:
        return len(self._methods)

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def peek(self) -> bytes:
        """What is buffered and not yet read (the mock's parser looks at a partial head)."""
        return self._buf[self._pos :]

    @property
    def idle(self) -> bool:
        """Between messages with nothing buffered."""
        return self._state == _HEAD and self.buffered == 0

    @property
    def in_head(self) -> bool:
        """The next event is a head (the previous message has ended)."""
        return self._state == _HEAD and not self._pending_end

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
        state = self._state
        if state == _HEAD:
            return self._head()
        if state == _BODY_LENGTH:
            return self._body_length()
        if state == _CHUNK_SIZE:
            return self._chunk_size()
        if state == _CHUNK_DATA:
            return self._chunk_data()
        if state == _CHUNK_CRLF:
            tail = self._take_crlf()
            return None if tail is None else Data(tail, b"")
        if state == _TRAILERS:
            return self._trailers()
        if state in (_BODY_CLOSE, _TUNNEL):
            buf, pos = self._buf, self._pos
            if len(buf) > pos:
                self._pos = len(buf)
                return Data(buf[pos:], buf[pos:])
            if self._eof and state == _BODY_CLOSE:
                self._state = _DONE
                return End(b"")
            return None
        return None  # _WAIT, _DONE

    def _head(self) -> Head | None:
        buf, pos = self._buf, self._pos
        if self.is_request:
            # tolerated: stray CRLFs between requests (RFC 9112 section 2.2)
            while buf.startswith(b"\r\n", pos):
                pos += 2
            self._pos = pos
            if buf.endswith(b"\r") and len(buf) == pos + 1:
                return None  # a stray CRLF cut in two: its LF comes next
        avail = len(buf) - pos
        if avail == 0:
            return None
        end = buf.find(b"\r\n\r\n", pos)
        sep = 4
        if end < 0 and not self.is_request:
            end = buf.find(b"\n\n", pos)
            sep = 2
        if end < 0:
            if self.is_request:
                self._check_partial(buf, pos)
            if avail > self.max_head:
                self._too_large(buf[pos:])
            if self._eof and buf[pos:].strip():
                raise ProtocolError("connection closed inside a head", 502)
            return None
        if not self.is_request and end - pos > self.max_head:
            self._too_large(buf[pos:end])
        raw = buf[pos : end + sep]
        if self.is_request:
            self._check_first_line(raw)
        self._pos = end + sep
        if self.is_request:
            head = parse_request_head(
                raw, methods=self.methods, limits=self.limits, check_version=self.check_version
            )
        else:
            head = parse_response_head(raw)
        self.current = head
        self._frame(head)
        return head

    def _check_partial(self, buf: bytes, pos: int) -> None:
        """Refuse what is already wrong in an incomplete request head, as llhttp does
        (a TLS hello or an LF-only request need not wait for a timeout)."""
        part = buf[pos:]
        if self._check_first_line(part):
            if b"\n" in part.replace(b"\r\n", b""):
                raise ProtocolError("bare LF in the request head")
            self._check_partial_headers(part)
            return
        sp = part.find(b" ")
        method = part[:sp] if sp >= 0 else part[:32]
        if not _METHOD_PREFIX.fullmatch(method):
            raise ProtocolError("invalid method")

    @staticmethod
    def _check_partial_headers(part: bytes) -> None:
        """llhttp judges each header line as it arrives: so do we, for the lines so far."""
        lines = part.decode("latin-1").split("\r\n")[1:]
        seen_length = False
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            name, sep, value = line.partition(":")
            if not sep:
                if last and _NAME_SO_FAR.fullmatch(name.rstrip("\r")):
                    return
                raise ProtocolError(f"malformed header line {line[:60]!r}")
            if not _NAME_SO_FAR.fullmatch(name) or not name:
                raise ProtocolError(f"malformed header line {line[:60]!r}")
            if _VALUE_BAD.search(value.rstrip("\r") if last else value):
                raise ProtocolError(f"invalid character in header {name[:40]!r}")
            if name.lower() == "content-length":
                if seen_length:
                    raise ProtocolError("duplicate Content-Length")
                seen_length = True
                digits = value.strip(" \t\r")
                if digits and not digits.isdigit():
                    raise ProtocolError("invalid Content-Length")

    def _check_first_line(self, part: bytes) -> bool:
        """Judge a complete request line (its version before its line ending, as llhttp
        does); False while it is incomplete."""
        nl = part.find(b"\n")
        if nl < 0:
            return False
        line = part[:nl]
        crlf = line.endswith(b"\r")
        check_request_line((line[:-1] if crlf else line).decode("latin-1"), self.methods)
        if not crlf:
            raise ProtocolError("bare LF after the request line")
        return True

    def _too_large(self, head: bytes) -> None:
        if self.is_request:
            line = head.split(b"\r\n", 1)[0]
            parts = line.split(b" ")
            if len(parts) > 1 and len(max(parts[1:], key=len)) > self.limits.max_target:
                raise ProtocolError("request-target too long", 414)
            raise ProtocolError("request header fields too large", 431)
        raise ProtocolError("response head larger than 64 KiB", 502)

    def _body_length(self) -> Data | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
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

    def _chunk_size(self) -> Event | None:
        buf, pos = self._buf, self._pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if len(buf) - pos > MAX_CHUNK_LINE:
                raise ProtocolError("chunk size line too long")
            return None
        if self.is_request:
            if nl == pos or buf[nl - 1] != 13:  # CR
                raise ProtocolError("chunk size line not ended by CRLF")
            m = _CHUNK_LINE.fullmatch(buf, pos, nl - 1)
            if m is None:
                raise ProtocolError(f"invalid chunk size {buf[pos : nl - 1][:20]!r}")
            digits = m.group(1).lstrip(b"0")
            if len(digits) > 16:
                raise ProtocolError("chunk size overflow")
            size = int(digits or b"0", 16)
        else:
            line = buf[pos:nl].split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise ProtocolError(f"invalid chunk size {line[:20]!r}", 502) from None
            if size < 0 or line[:1] in (b"-", b"+"):
                raise ProtocolError("invalid chunk size", 502)
        if size == 0:
            # the terminal chunk: stay on its line, _TRAILERS relays it with the trailers
            self._state = _TRAILERS
            return self.next_event()
        if self.is_request:
            self._body_seen += size
            if self._body_seen > self.limits.max_body:
                raise ProtocolError("request body too large", 413)
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

    def _chunk_data(self) -> Data | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
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

    def _trailers(self) -> End | None:
        # from the terminal chunk's size line through trailer lines to the empty one
        buf, pos = self._buf, self._pos
        p = buf.find(b"\n", pos) + 1
        trailers: list[tuple[str, str]] = []
        strict = self.is_request
        while True:
            nl = buf.find(b"\n", p)
            if nl < 0:
                if len(buf) - pos > MAX_HEAD:
                    raise ProtocolError("trailers larger than 64 KiB")
                return None
            if strict and (nl == p or buf[nl - 1] != 13):
                raise ProtocolError("trailer line not ended by CRLF")
            line = buf[p : nl - 1] if strict else buf[p:nl].strip()
            p = nl + 1
            if not line:
                break
            if strict:
                trailers.append(_trailer(line))
        self._pos = p
        self._state = _HEAD
        self._after_message()
        return End(buf[pos:p], trailers)

    def _take_crlf(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 1:
            return None
        if buf[pos : pos + 2] == b"\r\n":
            self._pos = pos + 2
            self._state = _CHUNK_SIZE
            return b"\r\n"
        if buf[pos : pos + 1] == b"\n" and not self.is_request:
            self._pos = pos + 1
            self._state = _CHUNK_SIZE
            return b"\n"
        if buf[pos : pos + 1] == b"\r" and len(buf) - pos == 1:
            return None
        raise ProtocolError("chunk data not followed by CRLF")

    def _after_message(self) -> None:
        head = self.current
        if head is None or not self.is_request:
            return
        if asks_upgrade(head):
            self._state = _WAIT

    def _frame(self, head: Head) -> None:
        self._body_seen = 0
        if self.is_request:
            self._set(head, *request_framing(head, self.limits))
            return
        if head.interim:
            head.framing = NONE
            return  # the same request's final response follows: keep its method queued
        method = self._methods.popleft() if self._methods else "GET"
        framing, length = response_framing(head, method)
        if framing == TUNNEL:
            head.framing = TUNNEL
            self._state = _TUNNEL
            self._pending_end = True
            return
        self._set(head, framing, length)

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


def request_framing(head: Head, limits: Limits) -> tuple[str, int]:
    """How a request is framed, as llhttp frames it (RFC 9112 6): (CHUNKED | LENGTH |
    NONE, the length for LENGTH); ProtocolError for a framing the reader refuses."""
    te = request_codings(head)
    cl = content_length(head, strict=True)
    if te is not None:
        if cl is not None:
            raise ProtocolError("both Transfer-Encoding and Content-Length")
        return CHUNKED, 0
    if cl:
        if cl > limits.max_body:
            raise ProtocolError("request body too large", 413)
        return LENGTH, cl
    return NONE, 0


def asks_upgrade(head: Head) -> bool:
    """A request whose answer decides what the bytes after it are (an upgrade offer, a
    CONNECT): the reader waits for it before reading on."""
    return head.method == "CONNECT" or bool(
        head.tokens("upgrade") and "upgrade" in head.tokens("connection")
    )


def response_framing(head: Head, method: str) -> tuple[str, int]:
    """How a (final) response to ``method`` is framed, by RFC 9112 section 6:
    (TUNNEL | NONE | CHUNKED | LENGTH | CLOSE, the length for LENGTH)."""
    status = head.status
    if status == 101 or (method == "CONNECT" and 200 <= status < 300):
        return TUNNEL, 0
    if method == "HEAD" or status in (204, 304):
        return NONE, 0
    te = head.tokens("transfer-encoding")
    if te:
        return (CHUNKED if te[-1] == "chunked" else CLOSE), 0
    cl = content_length(head, strict=False)
    if cl is not None:
        return (LENGTH, cl) if cl else (NONE, 0)
    return CLOSE, 0


def whole_response(data: bytes, method: str) -> tuple[Head, bytes] | None:
    """The common case of a client's read, without a reader: ``data`` is exactly one
    final response framed by Content-Length (or without a body) -> (head, body). None
    when it is anything else (chunked, 1xx, partial, more bytes): feed a MessageReader.
    Same head parser and framing rules as the reader, so both read it alike. The head
    is shared with every response of the same head bytes: read it, do not change it."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = shared_response_head(data[: end + 4])
    if head.interim:
        return None
    framing, length = response_framing(head, method)
    start = end + 4
    if framing == LENGTH and len(data) - start == length:
        return head, data[start:]
    if framing == NONE and len(data) == start:
        return head, b""
    return None


def whole_request(data: bytes, limits: Limits) -> tuple[Head, bytes] | None:
    """``whole_response``'s counterpart for requests: ``data`` is exactly one request
    with no body or a Content-Length one, and no upgrade or CONNECT -> (head, body), the
    head framed as a ``MessageReader(is_request=True, limits=limits)`` frames it. None
    for anything else, and for anything that reader would refuse: feed one, it says why."""
    if data[:2] == b"\r\n":
        return None  # stray CRLFs first: the reader skips them
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    start = end + 4
    try:
        head = parse_request_head(data[:start], limits=limits)
        framing, length = request_framing(head, limits)
    except ProtocolError:
        return None
    if framing == CHUNKED or len(data) - start != length or asks_upgrade(head):
        return None
    head.framing = framing
    head.length = length
    return head, data[start:]


def iter_events(reader: MessageReader) -> list[Event]:
    """Every event available now (tests and simple callers)."""
    out: list[Event] = []
    while (ev := reader.next_event()) is not None:
        out.append(ev)
    return out

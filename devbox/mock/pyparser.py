"""The mock's pure-Python HTTP/1.1 parser: the wire layer's reader behind httptools'
interface.

Framing and syntax live in ``devbox.wire.http1`` (written once for the mock, the
recorder and replay); this adapter only turns its events into the callbacks httptools
makes (``on_url``, ``on_header``, ``on_headers_complete``, ``on_body``,
``on_message_complete``), in the same order and at the same moments, so the mock's
connection code (and its limits: 414, 431, 413, 505) is the same for both parsers.
llhttp reports the request-target as it arrives, before it has read the headers, so
this adapter does too: a 20 KiB target is a 414 whichever parser reads it, even when
its header section is broken or too large as well. A differential test
(``tests/test_http1_differential.py``) keeps the two equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from devbox.wire.http1 import (
    LLHTTP_METHODS,
    Data,
    End,
    Head,
    Limits,
    MessageReader,
    ProtocolError,
    check_target,
)

_TARGET_SO_FAR = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) +([\x21-\x7e]*)")

# llhttp reads a PRI request line up to the version's digits, then wants the preface
_PRI_LINE = re.compile(rb"PRI +[\x21-\x7e]+ (HTTP/\d\.\d)")
_METHOD_PREFIXES = frozenset(m.encode()[:i] for m in LLHTTP_METHODS for i in range(1, len(m) + 1))
_PREFACE_TAIL = b"\r\n\r\nSM\r\n\r\n"


class PyParserError(ProtocolError):
    """Malformed request: the connection cannot be resynchronised."""


class PyParserHeadTooLarge(PyParserError):
    """The request head grew past ``max_head`` bytes before it ended."""


class PyParserUpgrade(Exception):
    """The request asked to switch protocols; args[0] is the offset of the other protocol."""


class PyRequestParser:
    def __init__(self, protocol: Any, max_head: int = 1 << 20) -> None:
        def cb(name: str) -> Callable[..., None] | None:
            f = getattr(protocol, name, None)
            return f if callable(f) else None

        self._on_message_begin = cb("on_message_begin")
        self._on_url = cb("on_url")
        self._on_header = cb("on_header")
        self._on_headers_complete = cb("on_headers_complete")
        self._on_body = cb("on_body")
        self._on_message_complete = cb("on_message_complete")
        self._reader = MessageReader(
            is_request=True, limits=Limits.none(), methods=LLHTTP_METHODS, check_version=False
        )
        self.max_head = max_head
        self._head: Head | None = None
        self._url_sent = 0  # bytes of the current request-target already reported
        self._failed = False
        self._begun = False  # on_message_begin was called for the message being read
        self._closed = False  # a request without keep-alive ended: nothing may follow

    @property
    def max_head(self) -> int:
        return self._reader.max_head

    @max_head.setter
    def max_head(self, value: int) -> None:
        self._reader.max_head = value

    # ------------------------------------------------------------ httptools API

    def get_method(self) -> bytes:
        return self._head.method.encode("latin-1") if self._head is not None else b""

    def get_http_version(self) -> str:
        return self._head.version[5:] if self._head is not None else "1.1"

    def should_keep_alive(self) -> bool:
        h = self._head
        if h is None:
            return True
        # llhttp's rule (a 1.0 request saying both close and keep-alive stays open)
        tokens = h.tokens("connection")
        if h.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    def should_upgrade(self) -> bool:
        h = self._head
        if h is None:
            return False
        return h.method == "CONNECT" or (
            bool(h.tokens("upgrade")) and "upgrade" in h.tokens("connection")
        )

    def feed_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            raise PyParserError("parser is in an error state")
        try:
            self._feed(bytes(data))
            return
        except PyParserError:
            self._failed = True
            raise
        except ProtocolError as exc:
            self._failed = True
            err: PyParserError = (
                PyParserHeadTooLarge(str(exc), 431)
                if exc.status == 431
                else PyParserError(str(exc), exc.status)
            )
        # raised outside the handler: the server reads __context__ as "a callback failed"
        raise err

    # ------------------------------------------------------------ events -> callbacks

    def _feed(self, data: bytes) -> None:
        try:
            self._events(data)
        except PyParserUpgrade:
            # as llhttp: where the other protocol begins in the bytes just fed
            raise PyParserUpgrade(max(0, len(data) - self._reader.buffered)) from None

    def _events(self, data: bytes) -> None:
        r = self._reader
        if self._closed and data:
            raise PyParserError("data after the last request of the connection")
        r.receive(data)
        while True:
            if r.in_head and self._report_target():
                return  # an HTTP/2 preface in progress: llhttp waits for the rest
            ev = r.next_event()
            if ev is None:
                return
            if isinstance(ev, Head):
                self._head = ev
                self._on_head(ev)
            elif isinstance(ev, Data):
                if ev.decoded and self._on_body:
                    self._on_body(ev.decoded)
            elif isinstance(ev, End):
                self._on_end(ev)
                if self._closed and r.buffered:
                    raise PyParserError("data after the last request of the connection")

    def _report_target(self) -> bool:
        """llhttp hands on the request-target as it arrives: so do we. True: wait."""
        part = self._reader.peek().lstrip(b"\r\n")
        if not part:
            return False
        if not self._begun:
            self._begun = True
            if self._on_message_begin:
                self._on_message_begin()
        m = _TARGET_SO_FAR.match(part)
        if m is None:
            # llhttp judges a method byte by byte: "g" is already no method
            sp = part.find(b" ")
            if (part[:sp] if sp >= 0 else part[:16]) not in _METHOD_PREFIXES:
                raise PyParserError("unknown method (methods are case-sensitive)")
            return False
        method = m.group(1).decode("latin-1")
        if method not in LLHTTP_METHODS:
            raise PyParserError("unknown method (methods are case-sensitive)")
        target = m.group(2)
        after = part[m.end() : m.end() + 1]
        if after not in (b"", b" "):
            raise PyParserError("invalid character in the request-target")
        if after == b" ":
            # the target is complete: llhttp has judged its form by now
            check_target(method, target.decode("latin-1"))
        if len(target) > self._url_sent:
            new = target[self._url_sent :]
            self._url_sent = len(target)
            if self._on_url:
                self._on_url(new)
        return method == "PRI" and self._http2_preface(part)

    @staticmethod
    def _http2_preface(part: bytes) -> bool:
        """``PRI`` starts HTTP/2's connection preface: llhttp reads its line up to the
        version, then wants exactly the rest of the preface and refuses anything else,
        and so do we (505, as for HTTP/2.0). True: the preface may still come."""
        m = _PRI_LINE.match(part)
        if m is None:
            if b"\n" in part:
                raise PyParserError("malformed request line")
            return False
        if m.group(1) not in (b"HTTP/1.0", b"HTTP/1.1", b"HTTP/0.9", b"HTTP/2.0"):
            raise PyParserError("unsupported protocol", 505)
        tail = part[m.end() : m.end() + len(_PREFACE_TAIL)]
        if len(tail) < len(_PREFACE_TAIL) and _PREFACE_TAIL.startswith(tail):
            return True
        raise PyParserError("an HTTP/2 connection preface", 505)

    def _on_head(self, head: Head) -> None:
        target = head.target.encode("latin-1")
        rest = target[self._url_sent :]
        self._url_sent = 0
        if rest and self._on_url:
            self._on_url(rest)
        if self._on_header:
            for name, value in head.headers:
                self._on_header(name.encode("latin-1"), value.encode("latin-1"))
        if self._on_headers_complete:
            self._on_headers_complete()
        if self.should_upgrade():
            # llhttp ends an upgrade request with its head: what follows is the other
            # protocol, never a body
            self._on_end(End(b""))

    def _on_end(self, end: End) -> None:
        self._begun = False
        if end.trailers and self._on_header:
            for name, value in end.trailers:
                self._on_header(name.encode("latin-1"), value.encode("latin-1"))
        if self._on_message_complete:
            self._on_message_complete()
        if self.should_upgrade():
            self._failed = True
            raise PyParserUpgrade(0)
        if self._head is not None and not self.should_keep_alive():
            self._closed = True

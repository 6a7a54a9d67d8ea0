"""A pure-Python HTTP/1.1 request parser with httptools' interface.

Used only where ``httptools`` is not installed (and by the tests, which run the
server with both parsers). It calls the same protocol callbacks httptools does
(``on_message_begin``, ``on_url``, ``on_header``, ``on_headers_complete``,
``on_body``, ``on_message_complete``) and is as strict as llhttp where it matters
for safety: CRLF line endings, no obs-fold, one framing (Content-Length or
chunked, never both, never two different lengths), tokens only in method and
header names. No I/O: bytes in, callbacks out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TARGET = re.compile(rb"^[\x21-\x7e\x80-\xff]+$")
_VERSION = re.compile(rb"^HTTP/1\.([01])$")
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEX = re.compile(rb"^[0-9A-Fa-f]{1,16}$")
_MAX_LINE = 1 << 16  # a chunk-size line or trailer longer than this is an attack

_START, _HEAD, _BODY_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _DONE = range(8)


class PyParserError(Exception):
    """Malformed request: the connection cannot be resynchronised."""


class PyParserHeadTooLarge(PyParserError):
    """The request head grew past ``max_head`` bytes before it ended."""


class PyParserUpgrade(Exception):
    """The request asked to switch protocols; args[0] is the offset of the other protocol."""


class PyRequestParser:
    def __init__(self, protocol: Any, max_head: int = 1 << 20) -> None:
        self.max_head = max_head

        def cb(name: str) -> Callable[..., None] | None:
            f = getattr(protocol, name, None)
            return f if callable(f) else None

        self._on_message_begin = cb("on_message_begin")
        self._on_url = cb("on_url")
        self._on_header = cb("on_header")
        self._on_headers_complete = cb("on_headers_complete")
        self._on_body = cb("on_body")
        self._on_message_complete = cb("on_message_complete")
        self._buf = bytearray()
        self._state = _START
        self._method = b""
        self._minor = 1
        self._keep_alive = True
        self._upgrade = False
        self._remaining = 0
        self._failed = False

    # ------------------------------------------------------------ httptools API

    def get_method(self) -> bytes:
        return self._method

    def get_http_version(self) -> str:
        return f"1.{self._minor}"

    def should_keep_alive(self) -> bool:
        return self._keep_alive

    def should_upgrade(self) -> bool:
        return self._upgrade

    def feed_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            raise PyParserError("parser is in an error state")
        self._buf += data
        try:
            self._run()
        except PyParserError:
            self._failed = True
            raise

    # ------------------------------------------------------------ states

    def _run(self) -> None:
        buf = self._buf
        while True:
            st = self._state
            if st == _START:
                # RFC 9112 2.2: ignore at least one empty line before a request-line
                while buf[:2] == b"\r\n":
                    del buf[:2]
                if not buf:
                    return
                self._state = _HEAD
                if self._on_message_begin:
                    self._on_message_begin()
            elif st == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > self.max_head:
                        raise PyParserHeadTooLarge("request head too large")
                    # fail fast on what is clearly not HTTP (a TLS hello, binary noise)
                    sp = buf.find(b" ")
                    method = bytes(buf[:sp] if sp >= 0 else buf[:32])
                    if method and not _TOKEN.match(method.rstrip(b"\r\n") or b"x"):
                        raise PyParserError("invalid method")
                    if b"\n" in buf and not self._valid_partial_head(bytes(buf)):
                        raise PyParserError("invalid line ending in request head")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._head(head)
                if self._upgrade and self._method == b"CONNECT":
                    raise PyParserUpgrade(0)
            elif st == _BODY_LENGTH:
                if not buf:
                    return
                self._take_body(buf)
                if self._remaining == 0:
                    self._complete()
            elif st == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > _MAX_LINE:
                        raise PyParserError("chunk size line too long")
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                size_txt = line.split(b";", 1)[0]
                if not _HEX.match(size_txt):
                    raise PyParserError("invalid chunk size")
                size = int(size_txt, 16)
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif st == _CHUNK_DATA:
                if not buf:
                    return
                self._take_body(buf)
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
            elif st == _CHUNK_CRLF:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise PyParserError("missing CRLF after chunk data")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif st == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > _MAX_LINE:
                        raise PyParserError("trailer too long")
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                if not line:
                    self._complete()
                elif b":" not in line or not _TOKEN.match(line.split(b":", 1)[0]):
                    raise PyParserError("invalid trailer")
            else:  # _DONE: after a request that closes the connection
                if buf:
                    raise PyParserError("data after the last request of the connection")
                return

    def _take_body(self, buf: bytearray) -> None:
        """Hand on what ``buf`` holds of the current body (or chunk), up to what remains."""
        take = min(self._remaining, len(buf))
        chunk = bytes(buf[:take])
        del buf[:take]
        self._remaining -= take
        if self._on_body:
            self._on_body(chunk)

    @staticmethod
    def _valid_partial_head(data: bytes) -> bool:
        # every complete line so far must end in CRLF
        lines = data.split(b"\n")
        return all(line.endswith(b"\r") for line in lines[:-1])

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        if any(b"\n" in line or b"\r" in line for line in lines):
            raise PyParserError("invalid line ending in request head")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise PyParserError("invalid request line")
        method, target, version = parts
        if not _TOKEN.match(method):
            raise PyParserError("invalid method")
        if not _TARGET.match(target):
            raise PyParserError("invalid request target")
        vm = _VERSION.match(version)
        if vm is None:
            raise PyParserError("unsupported HTTP version")
        self._method = method
        self._minor = int(vm.group(1))
        if self._on_url:
            self._on_url(target)
        length: int | None = None
        chunked = False
        te_seen = False
        conn_tokens: set[bytes] = set()
        upgrade_hdr = False
        for line in lines[1:]:
            if not line or line[:1] in (b" ", b"\t"):
                raise PyParserError("obsolete line folding is not allowed")
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.match(name):
                raise PyParserError("invalid header name")
            value = value.strip(b" \t")
            if _VALUE_BAD.search(value):
                raise PyParserError("invalid character in header value")
            low = name.lower()
            if low == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    raise PyParserError("invalid Content-Length")
                n = int(value)
                if length is not None and n != length:
                    raise PyParserError("conflicting Content-Length headers")
                length = n
            elif low == b"transfer-encoding":
                te_seen = True
                codings = [c.strip().lower() for c in value.split(b",") if c.strip()]
                chunked = bool(codings) and codings[-1] == b"chunked"
                if not chunked:
                    raise PyParserError("request Transfer-Encoding must end in chunked")
            elif low == b"connection":
                conn_tokens |= {t.strip().lower() for t in value.split(b",")}
            elif low == b"upgrade":
                upgrade_hdr = True
            if self._on_header:
                self._on_header(name, value)
        if te_seen and length is not None:
            raise PyParserError("both Content-Length and Transfer-Encoding")
        if self._minor == 0:
            self._keep_alive = b"keep-alive" in conn_tokens
        else:
            self._keep_alive = b"close" not in conn_tokens
        self._upgrade = method == b"CONNECT" or (upgrade_hdr and b"upgrade" in conn_tokens)
        if self._on_headers_complete:
            self._on_headers_complete()
        if chunked:
            self._state = _CHUNK_SIZE
        elif length:
            self._remaining = length
            self._state = _BODY_LENGTH
        else:
            self._complete()

    def _complete(self) -> None:
        if self._on_message_complete:
            self._on_message_complete()
        if self._upgrade:
            self._state = _DONE
            raise PyParserUpgrade(0)
        self._state = _START if self._keep_alive else _DONE

"""What the proxy keeps of relayed bodies: capped and content-decoded.

The proxy relays every byte; what it *keeps* is bounded: a ``BodyCapture``
holds at most ``limit`` decoded bytes and marks the body truncated past that.
gzip, deflate, br and zstd bodies are decoded incrementally with the output capped, so
a small compressed body that inflates to gigabytes never does so in memory.
Encodings devbox cannot decode are kept as received and counted in ``undecoded`` so
the summary can say so.
"""

from __future__ import annotations

import zlib
from urllib.parse import urlsplit

from devbox.core.codings import CodingError, StreamDecoder

_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyCapture:
    __slots__ = ("_decoder", "_parts", "_size", "limit", "truncated", "undecoded", "wire_bytes")

    def __init__(self, limit: int, content_encoding: str | None = None) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.truncated = False
        self.wire_bytes = 0
        self.undecoded = False
        self._decoder: zlib._Decompress | StreamDecoder | None = None
        enc = (content_encoding or "").strip().lower()
        if enc and enc != "identity":
            wbits = _DECODERS.get(enc)
            if wbits is not None:
                self._decoder = zlib.decompressobj(wbits)
            elif enc in ("br", "zstd"):
                self._decoder = StreamDecoder(enc)
            else:
                self.undecoded = True

    def add(self, data: bytes) -> None:
        if not data:
            return
        self.wire_bytes += len(data)
        if self.truncated:
            return
        room = self.limit - self._size
        if self._decoder is not None:
            try:
                # one byte past the cap tells "exactly at the cap" from "over it"
                out = self._decoder.decompress(data, room + 1)
            except (zlib.error, CodingError):
                self._fallback_raw(data)
                return
            if self._decoder.unconsumed_tail:
                self.truncated = True
        else:
            out = data
        if len(out) > room:
            out = out[:room]
            self.truncated = True
        if out:
            self._parts.append(out)
            self._size += len(out)

    def _fallback_raw(self, data: bytes) -> None:
        # not valid gzip/deflate after all: keep the bytes as they came
        self._decoder = None
        self.undecoded = True
        self.add(data)
        self.wire_bytes -= len(data)

    def body(self) -> bytes:
        if self._decoder is not None and not self.truncated:
            try:
                rest = self._decoder.flush()
            except zlib.error:
                rest = b""
            if rest:
                room = self.limit - self._size
                if len(rest) > room:
                    rest = rest[:room]
                    self.truncated = True
                self._parts.append(rest)
                self._size += len(rest)
            self._decoder = None
        if len(self._parts) == 1:
            return self._parts[0]
        joined = b"".join(self._parts)
        self._parts = [joined]
        return joined


def split_target(target: str) -> tuple[str, str]:
    """Request-target -> (path, query). Absolute-form targets (forward proxies) keep the path."""
    if target.startswith(("http://", "https://")):
        u = urlsplit(target)
        return u.path or "/", u.query
    path, _, query = target.partition("?")
    return path or "/", query

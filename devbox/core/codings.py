"""HTTP content codings (gzip, deflate, br, zstd) as pure byte functions.

Recordings hold bodies decoded (the model's rule): whatever produced them -- the
recording proxy, a HAR import, the replay client -- decodes every coding it knows, and
the mock encodes again for a client that accepts the recorded coding. Encoding is
deterministic (gzip without a timestamp, fixed levels), so the same recording serves the
same bytes every time. Output is capped: a body that inflates past ``MAX_INFLATE`` is left
as it came, so a recording is never a zip bomb vector.
"""

from __future__ import annotations

import gzip
import zlib
from typing import IO, cast

import brotli  # type: ignore[import-untyped]
import zstandard

MAX_INFLATE = 256 * 1024 * 1024
# every coding devbox can decode, as a client would list them in Accept-Encoding
DECODABLE = ("gzip", "x-gzip", "deflate", "br", "zstd")
ACCEPT_ENCODING = "gzip, deflate, br, zstd"


class CodingError(ValueError):
    """The body is not valid in the coding its header names (or inflates too far)."""


def codings(header: str | None) -> list[str]:
    """The codings of a Content-Encoding value, in the order they were applied."""
    if not header:
        return []
    return [c.strip().lower() for c in header.split(",") if c.strip() and c.strip() != "identity"]


def decodable(header: str | None) -> bool:
    """Whether every coding named in *header* is one devbox can undo."""
    return all(c in DECODABLE for c in codings(header))


def _inflate(body: bytes, wbits: int) -> bytes:
    d = zlib.decompressobj(wbits=wbits)
    out = d.decompress(body, MAX_INFLATE)
    if d.unconsumed_tail:
        raise CodingError("inflates past the cap")
    return out


def decode_one(body: bytes, coding: str) -> bytes:
    try:
        if coding in ("gzip", "x-gzip"):
            return _inflate(body, 16 + zlib.MAX_WBITS)
        if coding == "deflate":
            try:
                return _inflate(body, zlib.MAX_WBITS)
            except zlib.error:
                return _inflate(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
        if coding == "br":
            d = brotli.Decompressor()
            out: bytes = d.process(body, output_buffer_limit=MAX_INFLATE)
            if not d.is_finished():
                raise CodingError("truncated or inflates past the cap")
            return out
        if coding == "zstd":
            chunks: list[bytes] = []
            total = 0
            with zstandard.ZstdDecompressor().stream_reader(body) as reader:
                while chunk := reader.read(1 << 20):
                    total += len(chunk)
                    if total > MAX_INFLATE:
                        raise CodingError("inflates past the cap")
                    chunks.append(chunk)
            return b"".join(chunks)
    except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
        raise CodingError(f"not valid {coding}: {exc}") from None
    raise CodingError(f"unknown content coding {coding!r}")


def decode(body: bytes, header: str | None) -> bytes:
    """*body* with every coding in *header* undone (last applied, first undone)."""
    for coding in reversed(codings(header)):
        body = decode_one(body, coding)
    return body


def decode_lenient(body: bytes, header: str | None) -> bytes:
    """Like :func:`decode`, but bytes that are not in the named coding stay as they are
    (a producer that stored the body decoded and kept the header)."""
    try:
        return decode(body, header)
    except CodingError:
        return body


def encode_one(body: bytes, coding: str) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(body, compresslevel=6, mtime=0)
    if coding == "deflate":
        return zlib.compress(body, 6)
    if coding == "br":
        out: bytes = brotli.compress(body, quality=5)
        return out
    if coding == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(body)
    raise CodingError(f"cannot encode {coding!r}")


def encode(body: bytes, header: str | None) -> bytes:
    for coding in codings(header):
        body = encode_one(body, coding)
    return body


class _Full(Exception):
    pass


class _Sink:
    """Where zstd's stream writer puts output: refuses to hold more than ``room``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.room = 0

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.parts.append(bytes(data[: self.room]))
            self.room = -1
            raise _Full
        self.parts.append(bytes(data))
        self.room -= len(data)
        return len(data)


class StreamDecoder:
    """br or zstd decoded chunk by chunk with the output capped, shaped like zlib's
    decompress objects (``decompress(data, max_length)``, ``unconsumed_tail``, ``flush``)
    so a capture can hold either."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.unconsumed_tail = b""
        self._br = brotli.Decompressor() if coding == "br" else None
        self._sink = _Sink()
        self._zstd = (
            zstandard.ZstdDecompressor().stream_writer(
                cast("IO[bytes]", self._sink), write_return_read=False
            )
            if coding == "zstd"
            else None
        )

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            if self._br is not None:
                out: bytes = self._br.process(data, output_buffer_limit=max_length)
                if not self._br.can_accept_more_data():
                    self.unconsumed_tail = b"\0"  # more output waits: past the cap
                return out[:max_length]
            assert self._zstd is not None
            self._sink.parts.clear()
            self._sink.room = max_length
            try:
                self._zstd.write(data)
            except _Full:
                self.unconsumed_tail = b"\0"
            return b"".join(self._sink.parts)
        except (brotli.error, zstandard.ZstdError) as exc:
            raise CodingError(f"not valid {self.coding}: {exc}") from None

    def flush(self) -> bytes:
        return b""


def accepts(accept_encoding: str | None, coding: str) -> bool:
    """Whether an Accept-Encoding value admits *coding* (q=0 refuses it)."""
    if not accept_encoding:
        return False
    want = "gzip" if coding == "x-gzip" else coding
    star = False
    for item in accept_encoding.lower().split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        name = name.strip()
        if name in (want, "x-gzip" if want == "gzip" else want):
            return q > 0
        if name == "*":
            star = q > 0
    return star


__all__ = [
    "ACCEPT_ENCODING",
    "DECODABLE",
    "MAX_INFLATE",
    "CodingError",
    "StreamDecoder",
    "accepts",
    "codings",
    "decodable",
    "decode",
    "decode_lenient",
    "decode_one",
    "encode",
    "encode_one",
]

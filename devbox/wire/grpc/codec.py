"""gRPC over HTTP/2, the parts above the frames: length-prefixed messages, metadata,
status. Pure.

A gRPC message on a stream is a 1-byte compressed flag, a 4-byte big-endian length and
the (protobuf) bytes; a call ends with trailers carrying ``grpc-status`` and a
percent-encoded ``grpc-message``.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from devbox.wire.contract import RemoteProtocolError
from devbox.wire.grpc import protobuf

STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
OK, NOT_FOUND, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 5, 8, 12, 13

# headers of the transport, not the call's metadata: not stored, set by the mock itself
TRANSPORT_HEADERS = frozenset(
    {
        "content-type",
        "te",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-accept-encoding",
        "accept-encoding",
        "user-agent",
        "content-length",
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
    }
)

MAX_MESSAGE = 64 << 20


def status_name(code: int) -> str:
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else str(code)


def split_messages(buffer: bytes) -> tuple[list[tuple[bool, bytes]], bytes]:
    """Complete length-prefixed messages at the start of ``buffer`` (compressed flag,
    payload), and what is left."""
    out: list[tuple[bool, bytes]] = []
    pos, n = 0, len(buffer)
    while n - pos >= 5:
        flag = buffer[pos]
        length = int.from_bytes(buffer[pos + 1 : pos + 5], "big")
        if flag > 1:
            raise RemoteProtocolError(f"bad gRPC message flag {flag}", code=INTERNAL)
        if length > MAX_MESSAGE:
            raise RemoteProtocolError(
                f"received message larger than max ({length} vs. {MAX_MESSAGE})",
                code=RESOURCE_EXHAUSTED,
            )
        if n - pos - 5 < length:
            break
        out.append((bool(flag), buffer[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    return out, buffer[pos:]


def scan_messages(buffer: bytes | bytearray, pos: int) -> tuple[int, int | None]:
    """Past the complete messages of ``buffer`` from ``pos``: (where the first unfinished
    one starts, its announced length when its prefix is there). Copies nothing, so a
    body can be followed as it grows."""
    n = len(buffer)
    while n - pos >= 5:
        length = int.from_bytes(buffer[pos + 1 : pos + 5], "big")
        if n - pos - 5 < length:
            return pos, length
        pos += 5 + length
    return pos, None


def frame(payload: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


# a message's named form from its bytes (None: keep the schemaless form), and back
Decoder = Callable[[bytes], dict[str, Any] | None]
Encoder = Callable[[dict[str, Any], str], bytes]


def message_json(compressed: bool, payload: bytes, decode: Decoder | None = None) -> dict[str, Any]:
    """A message as stored: with field names when ``decode`` (the descriptors) gives them,
    else schemaless (``devbox.wire.grpc.protobuf``); a compressed one as it was."""
    if compressed:
        return {"compressed": True, "base64": base64.b64encode(payload).decode("ascii")}
    if decode is not None:
        named = decode(payload)
        if named is not None:
            return named
    return protobuf.to_json(payload)


# the window bits of each grpc-encoding a gRPC library ships: "deflate" is the zlib
# format in grpc-core and grpc-js; the raw deflate some others send is tried after it
_WBITS = {"gzip": (16 + zlib.MAX_WBITS,), "deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS)}
# a stored compressed request of a recording that did not name its encoding: gzip or
# zlib, told apart by their first bytes
_ANY_WBITS = (32 + zlib.MAX_WBITS,)


def decompress(payload: bytes, encoding: str | None) -> bytes | None:
    """The message a compressed one holds; None for an encoding we cannot read (snappy,
    a private one) or bytes that are not of it. A message inflating beyond
    ``MAX_MESSAGE`` is ``RESOURCE_EXHAUSTED``, as from a gRPC server: at most that much
    is inflated, so a small bomb costs no more memory than a large message."""
    options = _ANY_WBITS if encoding is None else _WBITS.get(encoding.strip().lower(), ())
    for wbits in options:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(payload, MAX_MESSAGE + 1)
        except zlib.error:
            continue
        if len(out) > MAX_MESSAGE:
            raise RemoteProtocolError(
                f"received message larger than max (more than {MAX_MESSAGE} inflated)",
                code=RESOURCE_EXHAUSTED,
            )
        if inflater.eof and not inflater.unused_data:
            return out
    return None


def request_json(
    compressed: bool, payload: bytes, encoding: str | None, decode: Decoder | None = None
) -> dict[str, Any]:
    """A request message as stored and matched: a compressed one as the message it holds,
    since the same request compresses to other bytes with another library, zlib level or
    algorithm, or is not compressed at all (the answers stay as the server sent them).
    One we cannot inflate stays compressed (``message_json``)."""
    if compressed:
        plain = decompress(payload, encoding)
        if plain is not None:
            return message_json(False, plain, decode)
    return message_json(compressed, payload, decode)


def kept_request_json(
    compressed: bool, payload: bytes, encoding: str | None, decode: Decoder | None = None
) -> dict[str, Any]:
    """A request message as a recording keeps it: inflated (``request_json``), or as it
    came when it inflates beyond what a server takes (kept, not lost)."""
    try:
        return request_json(compressed, payload, encoding, decode)
    except RemoteProtocolError:
        return message_json(compressed, payload, decode)


def stored_json(
    value: Any,
    where: str,
    coders: tuple[Encoder | None, Decoder | None],
    request_encoding: str | None = None,
    *,
    request: bool,
) -> dict[str, Any]:
    """A stored message in the form a live one decodes to now, whatever form the file
    holds: named with descriptors, and a request a recording kept compressed (made
    before requests were stored inflated) inflated (``request_encoding``: the call's)."""
    encode, decode = coders
    compressed, payload = message_payload(value, where, encode)
    if request:
        return kept_request_json(compressed, payload, request_encoding, decode)
    return message_json(compressed, payload, decode)


def is_named(value: Any) -> bool:
    """A message stored with field names (from descriptors), not field numbers."""
    return (
        isinstance(value, dict)
        and not all(k.isdigit() for k in value)
        and not (len(value) == 1 and "base64" in value)
        and value.get("compressed") is not True
    )


def message_payload(value: Any, where: str, encode: Encoder | None = None) -> tuple[bool, bytes]:
    """(compressed, bytes) of a stored message (the inverse of ``message_json``)."""
    if isinstance(value, dict) and value.get("compressed") is True:
        rest = {k: v for k, v in value.items() if k != "compressed"}
        return True, protobuf.from_json(rest, where)
    if is_named(value):
        if encode is None:
            raise protobuf.ProtobufError(
                "this message names its fields: the dependency needs its descriptors "
                "(protos = ... in the profile)",
                where,
            )
        return False, encode(value, where)
    return False, protobuf.from_json(value, where)


def message_bytes(value: Any, where: str, encode: Encoder | None = None) -> bytes:
    """The framed bytes of a stored message."""
    compressed, payload = message_payload(value, where, encode)
    return frame(payload, compressed)


def text_value(key: str, value: str) -> str:
    """A metadata value as stored and sent: a ``-bin`` value in grpc-core's "true binary"
    form (a 0 byte, then the raw bytes; used only between peers that both advertise it,
    as a grpcio client and server do through the relay) becomes the base64 every gRPC
    peer accepts, so it is readable JSON and the mock, which advertises no such thing,
    may send it. Any other byte that is not UTF-8 (a value read with
    ``surrogateescape``) cannot go into a header the mock sends: replaced."""
    if key.endswith("-bin") and value.startswith("\x00"):
        raw = value[1:].encode("utf-8", "surrogateescape")
        return base64.b64encode(raw).decode("ascii")
    if not value.isascii():
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def metadata(headers: list[tuple[str, str]]) -> dict[str, Any]:
    """The call's own metadata: no pseudo-headers, no transport headers; a key sent more
    than once keeps every value (a list)."""
    out: dict[str, Any] = {}
    for k, v in headers:
        if k.startswith(":") or k in TRANSPORT_HEADERS:
            continue
        v = text_value(k, v)
        if k in out:
            prev = out[k]
            out[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
        else:
            out[k] = v
    return out


def trailer_metadata(trailers: list[tuple[str, str]]) -> dict[str, Any]:
    """The trailers a call ends with, as stored: its metadata plus the binary status
    details (``grpc-status`` and ``grpc-message`` are stored apart)."""
    rest = metadata(trailers)
    details = dict(trailers).get("grpc-status-details-bin")
    if details is not None:
        rest["grpc-status-details-bin"] = text_value("grpc-status-details-bin", details)
    return rest


def status_of(trailers: list[tuple[str, str]]) -> tuple[int, str]:
    """(grpc-status, decoded grpc-message) of a call's trailers; UNKNOWN when the status
    is missing or unreadable, as a gRPC client takes it."""
    values = dict(trailers)
    try:
        code = int(values.get("grpc-status", "2"))
    except ValueError:
        code = 2
    return code, decode_grpc_message(values.get("grpc-message", ""))


def metadata_headers(meta: Any) -> list[tuple[str, str]]:
    if not isinstance(meta, dict):
        return []
    out: list[tuple[str, str]] = []
    for k, v in meta.items():
        key = str(k).lower()
        for item in v if isinstance(v, list) else [v]:
            # recordings made before ``text_value`` may hold true-binary values
            out.append((key, text_value(key, str(item))))
    return out


def encode_grpc_message(text: str) -> str:
    """``grpc-message`` is percent-encoded (printable ASCII except ``%`` stays)."""
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def decode_grpc_message(value: str) -> str:
    return unquote(value)

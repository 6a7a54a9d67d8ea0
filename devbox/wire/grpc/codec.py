"""gRPC over HTTP/2, the parts above the frames: length-prefixed messages, metadata,
status. Pure.

A gRPC message on a stream is a 1-byte compressed flag, a 4-byte big-endian length and
the (protobuf) bytes; a call ends with trailers carrying ``grpc-status`` and a
percent-encoded ``grpc-message``.
"""

from __future__ import annotations

import base64
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
OK, NOT_FOUND, UNIMPLEMENTED, INTERNAL = 0, 5, 12, 13

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
            raise RemoteProtocolError(f"gRPC message of {length} bytes", code=8)
        if n - pos - 5 < length:
            break
        out.append((bool(flag), buffer[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    return out, buffer[pos:]


def frame(payload: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


def message_json(compressed: bool, payload: bytes) -> dict[str, Any]:
    """A message as stored: decoded (``devbox.wire.grpc.protobuf``), or its compressed
    bytes kept as they were."""
    if compressed:
        return {"compressed": True, "base64": base64.b64encode(payload).decode("ascii")}
    return protobuf.to_json(payload)


def message_bytes(value: Any, where: str) -> bytes:
    """The framed bytes of a stored message (the inverse of ``message_json``)."""
    if isinstance(value, dict) and value.get("compressed") is True:
        rest = {k: v for k, v in value.items() if k != "compressed"}
        return frame(protobuf.from_json(rest, where), compressed=True)
    return frame(protobuf.from_json(value, where))


def metadata(headers: list[tuple[str, str]]) -> dict[str, Any]:
    """The call's own metadata: no pseudo-headers, no transport headers; a key sent more
    than once keeps every value (a list)."""
    out: dict[str, Any] = {}
    for k, v in headers:
        if k.startswith(":") or k in TRANSPORT_HEADERS:
            continue
        if k in out:
            prev = out[k]
            out[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
        else:
            out[k] = v
    return out


def metadata_headers(meta: Any) -> list[tuple[str, str]]:
    if not isinstance(meta, dict):
        return []
    out: list[tuple[str, str]] = []
    for k, v in meta.items():
        for item in v if isinstance(v, list) else [v]:
            out.append((str(k).lower(), str(item)))
    return out


def encode_grpc_message(text: str) -> str:
    """``grpc-message`` is percent-encoded (printable ASCII except ``%`` stays)."""
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def decode_grpc_message(value: str) -> str:
    return unquote(value)

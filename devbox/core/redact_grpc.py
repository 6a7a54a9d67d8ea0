"""Redaction inside gRPC messages: length-prefixed protobuf, often compressed.

The text rules cannot read a protobuf message (binary: its length prefixes hold zero
bytes) nor a compressed one, so a token in a string field went to disk as it came, over
the HTTP proxies (``application/grpc`` bodies) and in the gRPC recorder's compressed
answers alike. Here each message is decoded without a schema (every string field a
value, named by its field number), its strings go through the same value rules as any
other protocol's, and a message where something was replaced is encoded again and
compressed again with its call's ``grpc-encoding``. A message with nothing to replace
keeps its bytes, so what a mock sends back is what the server sent. An encoding no
library here reads (snappy, a private one) cannot be looked into: kept as it came.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from typing import Any

from devbox.core.model import Headers, header_get
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.grpc import protobuf
from devbox.wire.grpc.codec import decompress

ValueRule = Callable[[str, str], str]  # (field name, value) -> value, secrets replaced
TextRule = Callable[[str], str]

# application/grpc, +proto, gRPC-Web (whose -text form is base64: the text rules read it)
GRPC_TYPE = "application/grpc"
_COMPRESSED = 0x01
_TRAILERS = 0x80  # gRPC-Web: the trailers travel as the body's last frame
# a gzip stream's header and trailer as gRPC libraries write it (zlib's wbits)
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def redact_message(value: Any, name: str, rule: ValueRule) -> Any:
    """A message's schemaless (or named) JSON with each string through ``rule``; bytes
    and fixed-width values as they are."""
    if isinstance(value, str):
        return rule(name, value)
    if isinstance(value, list):
        return [redact_message(v, name, rule) for v in value]
    if isinstance(value, dict):
        if "base64" in value or "fixed64" in value or "fixed32" in value:
            return value
        return {k: redact_message(v, k, rule) for k, v in value.items()}
    return value


def redact_payload(
    payload: bytes, compressed: bool, encoding: str | None, rule: ValueRule
) -> bytes:
    """One message's bytes (``compressed`` with ``encoding``), secrets replaced; the same
    object when nothing was (or it cannot be read)."""
    plain = payload
    if compressed:
        try:
            inflated = decompress(payload, encoding)
        except RemoteProtocolError:  # inflates beyond what a gRPC peer takes
            return payload
        if inflated is None:
            return payload
        plain = inflated
    message = protobuf.to_json(plain)
    clean = redact_message(message, "", rule)
    if clean == message:
        return payload
    out = protobuf.from_json(clean)
    return _compress(out, encoding) if compressed else out


def _compress(data: bytes, encoding: str | None) -> bytes:
    enc = (encoding or "gzip").strip().lower()
    if enc == "deflate":
        return zlib.compress(data)
    packer = zlib.compressobj(wbits=_GZIP_WBITS)
    return packer.compress(data) + packer.flush()


def redact_stored_compressed(value: dict[str, Any], encoding: str | None, rule: ValueRule) -> Any:
    """A message the gRPC recorder keeps compressed (``{"compressed": true, "base64":
    ...}``), secrets replaced inside it."""
    raw = value.get("base64")
    if not isinstance(raw, str):
        return value
    try:
        payload = base64.b64decode(raw, validate=True)
    except ValueError:
        return value
    clean = redact_payload(payload, True, encoding, rule)
    if clean is payload:
        return value
    return {**value, "base64": base64.b64encode(clean).decode("ascii")}


def redact_grpc_body(
    body: bytes, headers: Headers, ctype: str, rule: ValueRule, text: TextRule
) -> bytes | None:
    """A ``ctype`` ``application/grpc`` (or gRPC-Web) body with the secrets in its messages
    replaced; the same object when there were none; None when it is not gRPC framing
    (the caller's other rules apply). A message cut short (``--max-body-kb``) cannot be
    encoded again: its readable text is checked, and it is left out when that holds a
    secret (the body was cut already)."""
    if not ctype.startswith(GRPC_TYPE):
        return None
    encoding = header_get(headers, "grpc-encoding")
    parts: list[bytes] = []
    changed = False
    pos, n = 0, len(body)
    while n - pos >= 5:
        flag = body[pos]
        if flag & ~(_COMPRESSED | _TRAILERS):
            return None
        end = pos + 5 + int.from_bytes(body[pos + 1 : pos + 5], "big")
        if end > n:
            break
        payload = body[pos + 5 : end]
        if flag & _TRAILERS:
            clean = _trailers(payload, rule)
        else:
            clean = redact_payload(payload, bool(flag & _COMPRESSED), encoding, rule)
        if clean is payload:
            parts.append(body[pos:end])
        else:
            changed = True
            parts.append(bytes([flag]) + len(clean).to_bytes(4, "big") + clean)
        pos = end
    tail = body[pos:]
    if tail and text(tail.decode("latin-1")) != tail.decode("latin-1"):
        return b"".join(parts)
    if not changed:
        return body
    return b"".join(parts) + tail


def _trailers(payload: bytes, rule: ValueRule) -> bytes:
    """gRPC-Web's trailers frame: ``name: value`` lines, each value by its name."""
    lines = payload.decode("latin-1").split("\r\n")
    out = []
    for line in lines:
        name, sep, value = line.partition(":")
        red = rule(name.strip(), value.strip()) if sep else value
        out.append(line if red == value.strip() else f"{name}: {red}")
    if out == lines:
        return payload
    return "\r\n".join(out).encode("latin-1", "replace")

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
import re
import zlib
from collections.abc import Callable
from typing import Any

from devbox.core.model import Headers, header_get
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.grpc import protobuf
from devbox.wire.grpc.codec import decompress

ValueRule = Callable[[str, str], str]  # (field name, value) -> value, secrets replaced
TextRule = Callable[[str], str]

# application/grpc, +proto, gRPC-Web and its base64 text mode
GRPC_TYPE = "application/grpc"
_WEB_TEXT = "application/grpc-web-text"
_B64_CHUNK = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
_PRINTABLE = re.compile(r"[\x20-\x7e]{8,}")
_MAX_DEPTH = 32
# a map<string, V> entry's key as services name things (authorization, api_key, x-token)
_MAP_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
_COMPRESSED = 0x01
_TRAILERS = 0x80  # gRPC-Web: the trailers travel as the body's last frame
# a gzip stream's header and trailer as gRPC libraries write it (zlib's wbits)
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def redact_message(value: Any, name: str, rule: ValueRule) -> Any:
    """A message's schemaless (or named) JSON with each string through ``rule``; bytes
    and fixed-width values as they are."""
    if isinstance(value, str):
        red = rule(name, value)
        if red == value:
            return value
        # a nested message of printable bytes ("\n", a printable length, text) is shown as
        # a string: redacted as one, its length prefixes went stale and the real classes
        # failed to decode it. As the message it is, it is encoded again
        raw = value.encode("utf-8")
        nested = protobuf.decode_message(raw)
        if nested:
            clean = redact_message(nested, name, rule)
            if clean != nested:
                return protobuf.bytes_json(protobuf.encode_message(clean))
        walked = _walk(raw, rule, 1)  # (a message the JSON cannot show, shown as text)
        return red if walked is None else protobuf.bytes_json(walked)
    if isinstance(value, list):
        return [redact_message(v, name, rule) for v in value]
    if isinstance(value, dict):
        if list(value) == ["base64"] and isinstance(value["base64"], str):
            # bytes, or a message the JSON cannot show (a field that comes back after
            # another): walked as it comes
            walked = _walk(base64.b64decode(value["base64"]), rule, 1)
            return value if walked is None else protobuf.bytes_json(walked)
        if "base64" in value or "fixed64" in value or "fixed32" in value:
            return value
        key = value.get("1")
        if isinstance(key, str) and list(value) == ["1", "2"] and _MAP_KEY.fullmatch(key):
            return {"1": redact_message(key, "1", rule), "2": _map_value(value["2"], key, rule)}
        return {k: redact_message(v, k, rule) for k, v in value.items()}
    return value


def _map_value(value: Any, key: str, rule: ValueRule) -> Any:
    """A map entry's value (field 1 the key, 2 the value, on the wire): named by its key,
    as a JSON object's field is (``{"api_key": ...}``); with the field number only, a
    password under "password" went to disk. A nested message (a ``Struct``'s ``Value``,
    a ``map<string, Inner>``'s) stays one, its strings named by the key: replaced whole
    when its bytes were printable, the outer message no longer decoded."""
    if isinstance(value, str):
        nested = protobuf.decode_message(value.encode("utf-8"))
        if not nested:
            return redact_message(value, key, rule)
        clean = {f: _named(v, f, key, rule) for f, v in nested.items()}
        return value if clean == nested else protobuf.bytes_json(protobuf.encode_message(clean))
    if isinstance(value, dict) and not {"base64", "fixed32", "fixed64"} & set(value):
        return {f: _named(v, f, key, rule) for f, v in value.items()}
    return redact_message(value, "2", rule)


def _named(value: Any, field: str, key: str, rule: ValueRule) -> Any:
    """A field of a map entry's nested value: a string named by the entry's key."""
    return redact_message(value, key if isinstance(value, str) else field, rule)


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
    if list(message) == ["base64"]:  # not a form the JSON can show: walked as it comes
        out = _walk(plain, rule, 0)
        if out is None:
            return payload
    else:
        clean = redact_message(message, "", rule)
        if clean == message:
            return payload
        out = protobuf.from_json(clean)
    return _compress(out, encoding, payload) if compressed else out


def _walk(data: bytes, rule: ValueRule, depth: int) -> bytes | None:
    """A message the schemaless JSON cannot show (a field that comes back after another,
    as concatenated messages merge; a varint longer than it needs), its fields taken as
    they come and each length-delimited one redacted as text or as a nested message;
    None when it is no message or nothing changed."""
    found = protobuf.fields(data) if depth < _MAX_DEPTH else None
    if not found:
        return None
    out, changed = bytearray(), False
    for number, wt, value in found:
        if wt == 2:
            clean = _walk_bytes(value, rule, depth)
            if clean is not None:
                value, changed = clean, True
        out += protobuf.encode_field(number, wt, value)
    return bytes(out) if changed else None


def _walk_bytes(value: bytes, rule: ValueRule, depth: int) -> bytes | None:
    try:
        text: str | None = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        red = rule("", text)
        if red == text:
            return None
        return _walk(value, rule, depth + 1) or red.encode("utf-8")
    return _walk(value, rule, depth + 1)


def _compress(data: bytes, encoding: str | None, was: bytes) -> bytes:
    """``data`` compressed as ``was`` (the message it replaces) was: gzip, or deflate in
    the zlib format (grpc-core, grpc-js) or raw (some others)."""
    enc = (encoding or "gzip").strip().lower()
    if enc == "deflate":
        if len(was) >= 2 and was[0] & 0x0F == 8 and (was[0] << 8 | was[1]) % 31 == 0:
            return zlib.compress(data)  # a zlib header: method 8, check bits
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return raw.compress(data) + raw.flush()
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
    """A ``ctype`` ``application/grpc`` (or gRPC-Web, or its base64 ``-text`` form) body
    with the secrets in its messages replaced; the same object when there were none;
    None when it is not gRPC framing (the caller's other rules apply). Message strings
    go through the text rules (field numbers are no names, and packed numbers can read
    as a random token), a map entry's value through ``rule`` by its key; gRPC-Web's
    trailers through ``rule``, by name."""
    if not ctype.startswith(GRPC_TYPE):
        return None
    encoding = header_get(headers, "grpc-encoding")
    if ctype.startswith(_WEB_TEXT):
        return _web_text(body, encoding, rule, text)
    return _frames(body, encoding, rule, text)


def _web_text(body: bytes, encoding: str | None, rule: ValueRule, text: TextRule) -> bytes | None:
    """gRPC-Web's text mode: base64 of the frames, a padded chunk per write."""
    chunks = _B64_CHUNK.findall(body)
    if not chunks or sum(map(len, chunks)) != len(body.strip()):
        return None
    try:
        frames = b"".join(base64.b64decode(c, validate=True) for c in chunks)
    except ValueError:
        return None
    clean = _frames(frames, encoding, rule, text)
    if clean is None:
        return None
    return body if clean is frames else base64.b64encode(clean)


def _frames(body: bytes, encoding: str | None, rule: ValueRule, text: TextRule) -> bytes | None:
    def strings(name: str, value: str) -> str:
        # a field number is no name: text rules; a map entry's key is (redact_message)
        return text(value) if not name or name.isdigit() else rule(name, value)

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
            clean = redact_payload(payload, bool(flag & _COMPRESSED), encoding, strings)
        if clean is payload:
            parts.append(body[pos:end])
        else:
            changed = True
            parts.append(bytes([flag]) + len(clean).to_bytes(4, "big") + clean)
        pos = end
    tail = body[pos:]
    if tail and not _clean_tail(tail, rule, text):
        return b"".join(parts)  # (the body was cut short already)
    if not changed:
        return body
    return b"".join(parts) + tail


def _clean_tail(tail: bytes, rule: ValueRule, text: TextRule) -> bool:
    """Whether a message cut short (``--max-body-kb``) may be kept: it cannot be encoded
    again, so it is left out if it may hold a secret. A compressed one cannot be read
    (its bytes inflate in part): never kept. Else each printable run in it goes through
    the same rules a whole message's strings would."""
    if tail[0] & _COMPRESSED:
        return False
    for run in _PRINTABLE.findall(tail.decode("latin-1")):
        if text(run) != run or rule("", run) != run:
            return False
    return True


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

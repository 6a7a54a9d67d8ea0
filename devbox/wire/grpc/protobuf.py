"""Protocol Buffers without a schema: wire bytes <-> readable JSON that encodes back to
the very same bytes. Pure.

A message is a JSON object whose keys are field numbers, in wire order::

    {"1": "Alice", "2": 42, "3": {"1": 7}, "4": [1, 2], "5": {"fixed64": 9},
     "6": {"base64": "AAE="}}

* an integer is a varint (``int32``/``int64``/``uint*``/``bool``/``enum``; a value of
  2**63 or more is shown as the negative int64 it encodes; ``sint*`` stay zig-zagged:
  without a schema the wire value is shown as it is);
* ``{"fixed64": n}`` and ``{"fixed32": n}`` are the fixed-width wire types (doubles and
  floats show as their bit patterns);
* a length-delimited field is guessed: printable UTF-8 is a string, bytes that parse as a
  message (and encode back identically) are a nested object, anything else is
  ``{"base64": ...}``;
* a field that occurs more than once is a list, one element per occurrence.

What cannot be shown that way (a field number that comes back after another one, a
varint written with more bytes than it needs, a group) is kept whole as
``{"base64": ...}``: every decode is checked by encoding it again, so the stored form
always gives back the bytes the client or server sent.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

MAX_DEPTH = 24


class ProtobufError(ValueError):
    """A stored value that is not a message as this module writes them; ``field`` is the
    JSON path inside it."""

    def __init__(self, message: str, field: str = "$") -> None:
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------- varints


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); ValueError on a truncated or over-long varint."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result >> 64:
                raise ValueError("varint over 64 bits")
            return result, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# ---------------------------------------------------------------- decoding


def encode_field(number: int, wt: int, value: Any) -> bytes:
    """One field from ``fields``' form (varints written in as few bytes as they need)."""
    tag = encode_varint(number << 3 | wt)
    if wt == 0:
        return tag + encode_varint(value)
    if wt in (1, 5):
        return tag + int(value).to_bytes(8 if wt == 1 else 4, "little")
    return tag + encode_varint(len(value)) + bytes(value)


def fields(data: bytes) -> list[tuple[int, int, Any]] | None:
    """A message's fields as they come: [(field number, wire type, raw value)] (varints
    and fixed-width values as unsigned ints, length-delimited ones as bytes); None when
    ``data`` is not a message."""
    out: list[tuple[int, int, Any]] = []
    pos, n = 0, len(data)
    value: Any
    try:
        while pos < n:
            tag, pos = _varint(data, pos)
            number, wt = tag >> 3, tag & 7
            if number < 1 or number >= 1 << 29:
                return None
            if wt == 0:
                value, pos = _varint(data, pos)
            elif wt == 1:
                if pos + 8 > n:
                    return None
                value = int.from_bytes(data[pos : pos + 8], "little")
                pos += 8
            elif wt == 5:
                if pos + 4 > n:
                    return None
                value = int.from_bytes(data[pos : pos + 4], "little")
                pos += 4
            elif wt == 2:
                length, pos = _varint(data, pos)
                if pos + length > n:
                    return None
                value = data[pos : pos + length]
                pos += length
            else:
                return None  # groups (3, 4) and invalid wire types
            out.append((number, wt, value))
    except ValueError:
        return None
    return out


def _printable(text: str) -> bool:
    return all(c.isprintable() or c in "\t\n\r" for c in text)


def bytes_json(data: bytes) -> Any:
    """A length-delimited field's value as stored: text, a nested message or base64."""
    return _bytes_value(data, 0)


def _bytes_value(data: bytes, depth: int) -> Any:
    if not data:
        return ""
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _printable(text):
        return text
    if depth < MAX_DEPTH:
        nested = decode_message(data, depth + 1)
        if nested is not None and nested:
            return nested
    if text is not None:
        return text
    return {"base64": base64.b64encode(data).decode("ascii")}


def decode_message(data: bytes, depth: int = 0) -> dict[str, Any] | None:
    """The readable form of ``data``, or None when there is none that encodes back to
    exactly ``data``."""
    found = fields(data)
    if found is None:
        return None
    out: dict[str, Any] = {}
    last = 0
    for number, wt, raw in found:
        key = str(number)
        if wt == 0:
            # an int32/int64 below zero is a 10-byte varint: shown signed (what the
            # service wrote), encoded back by two's complement to the same bytes
            value: Any = raw - (1 << 64) if raw >> 63 else raw
        elif wt == 1:
            value = {"fixed64": raw}
        elif wt == 5:
            value = {"fixed32": raw}
        else:
            value = _bytes_value(raw, depth)
        if key in out:
            if number != last:
                return None  # interleaved with another field: no object keeps that order
            prev = out[key]
            if isinstance(prev, _Repeated):
                prev.append(value)
            else:
                out[key] = _Repeated([prev, value])
        else:
            out[key] = value
        last = number
    result = {k: list(v) if isinstance(v, _Repeated) else v for k, v in out.items()}
    try:
        same = encode_message(result) == data
    except ProtobufError:
        same = False
    return result if same else None


class _Repeated(list[Any]):
    """The occurrences of one field, while decoding (a plain list once decoded)."""


def to_json(data: bytes) -> dict[str, Any]:
    """A message as stored: its readable form, or ``{"base64": ...}``."""
    decoded = decode_message(data)
    if decoded is None:
        return {"base64": base64.b64encode(data).decode("ascii")}
    return decoded


# ---------------------------------------------------------------- encoding


def from_json(value: Any, where: str = "$") -> bytes:
    """The bytes of a stored message (the inverse of ``to_json``)."""
    if isinstance(value, dict) and "base64" in value and len(value) == 1:
        return _b64(value["base64"], where + ".base64")
    if not isinstance(value, dict):
        raise ProtobufError("expected a message object", where)
    return encode_message(value, where)


def _b64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ProtobufError("expected base64 text", where)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtobufError("invalid base64", where) from None


def encode_message(message: dict[str, Any], where: str = "$") -> bytes:
    out = bytearray()
    for key, value in message.items():
        if not (key.isascii() and key.isdigit()) or not 1 <= int(key) < 1 << 29:
            raise ProtobufError(
                f"expected a field number, got {key!r}", f"{where}.{key}" if key else where
            )
        number = int(key)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            path = f"{where}.{key}" + (f"[{i}]" if isinstance(value, list) else "")
            out += _encode_field(number, item, path)
    return bytes(out)


def _encode_field(number: int, value: Any, where: str) -> bytes:
    if isinstance(value, bool):
        return encode_field(number, 0, int(value))
    if isinstance(value, int):
        if value < 0:
            value &= (1 << 64) - 1  # a hand-written negative int64: two's complement
        if value >> 64:
            raise ProtobufError("integer out of the 64-bit range", where)
        return encode_field(number, 0, value)
    if isinstance(value, str):
        return encode_field(number, 2, value.encode("utf-8"))
    if isinstance(value, dict):
        if len(value) == 1 and ("fixed64" in value or "fixed32" in value):
            wide = "fixed64" in value
            n = value["fixed64" if wide else "fixed32"]
            if isinstance(n, bool) or not isinstance(n, int):
                raise ProtobufError("expected an integer", where)
            n &= (1 << (64 if wide else 32)) - 1
            return encode_field(number, 1 if wide else 5, n)
        if len(value) == 1 and "base64" in value:
            data = _b64(value["base64"], where + ".base64")
        else:
            data = encode_message(value, where)
        return encode_field(number, 2, data)
    raise ProtobufError(
        "expected an integer, a string, a message object, "
        '{"base64": ...}, {"fixed32": n} or {"fixed64": n}',
        where,
    )

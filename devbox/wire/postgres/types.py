"""Values on the wire <-> readable JSON values, by type OID and format code.

A text-format value is stored as the string the server sent. A binary-format value of a
type known here is stored decoded (numbers as numbers, uuids, dates and timestamps as
their text form, bytea as ``\\x`` hex); an unknown binary value is stored as ``\\x`` hex.
Both directions are exact, so the mock sends back the very bytes that were recorded.
``canonical`` gives one string per value whatever its format, for matching.
"""

from __future__ import annotations

import math
import re
import struct
import uuid
from datetime import date, datetime, timedelta
from typing import Any

NAMES: dict[int, str] = {
    16: "bool",
    17: "bytea",
    18: "char",
    19: "name",
    20: "int8",
    21: "int2",
    23: "int4",
    25: "text",
    26: "oid",
    114: "json",
    700: "float4",
    701: "float8",
    705: "unknown",
    1042: "bpchar",
    1043: "varchar",
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
    1700: "numeric",
    2950: "uuid",
    3802: "jsonb",
}
_TEXTLIKE = frozenset({18, 19, 25, 114, 705, 1042, 1043})
_INTS = {
    21: struct.Struct("!h"),
    23: struct.Struct("!i"),
    20: struct.Struct("!q"),
    26: struct.Struct("!I"),
}
_FLOATS = {700: struct.Struct("!f"), 701: struct.Struct("!d")}
_EPOCH = datetime(2000, 1, 1)
_EPOCH_DATE = date(2000, 1, 1)


def type_name(oid: int) -> str:
    return NAMES.get(oid, str(oid))


def _hex(raw: bytes) -> str:
    return "\\x" + raw.hex()


def _unhex(s: str) -> bytes:
    if not s.startswith("\\x"):
        raise ValueError(f"expected \\x hex, got {s[:20]!r}")
    return bytes.fromhex(s[2:])


def decode(raw: bytes | None, oid: int, fmt: int) -> Any:
    """Wire bytes to a JSON value (see the module docstring)."""
    if raw is None:
        return None
    if fmt == 0:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": raw.hex()}
    try:
        return _decode_binary(raw, oid)
    except UnicodeDecodeError:
        # text that is not UTF-8 (a LATIN1 client's): the bytes as sent, as a text-format
        # value is; ``\x`` hex would go back as that very text for a text type
        return {"hex": raw.hex()}
    except (struct.error, ValueError, OverflowError):
        return _hex(raw)


def _decode_binary(raw: bytes, oid: int) -> Any:
    if oid in _TEXTLIKE:
        return raw.decode("utf-8")
    if oid in _INTS:
        return _INTS[oid].unpack(raw)[0]
    if oid == 16 and len(raw) == 1:
        return raw != b"\x00"
    if oid in _FLOATS:
        f: float = _FLOATS[oid].unpack(raw)[0]
        # JSON has no NaN or infinities: PostgreSQL's own spelling, as a string
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Infinity" if f > 0 else "-Infinity"
        return f
    if oid == 2950 and len(raw) == 16:
        return str(uuid.UUID(bytes=raw))
    if oid == 3802 and raw[:1] == b"\x01":
        return raw[1:].decode("utf-8")
    if oid == 1082 and len(raw) == 4:
        days = struct.unpack("!i", raw)[0]
        return (_EPOCH_DATE + timedelta(days=days)).isoformat()
    if oid in (1114, 1184) and len(raw) == 8:
        us = struct.unpack("!q", raw)[0]
        text = (_EPOCH + timedelta(microseconds=us)).isoformat(sep=" ")
        return text + "+00" if oid == 1184 else text
    return _hex(raw)


def encode(value: Any, oid: int, fmt: int) -> bytes | None:
    """The inverse of ``decode``; raises ``ValueError`` for a value that cannot be sent
    in that type and format (a redacted placeholder in a binary int column)."""
    if value is None:
        return None
    if isinstance(value, dict) and "hex" in value:
        return bytes.fromhex(str(value["hex"]))
    if fmt == 0:
        if not isinstance(value, str):
            raise ValueError(f"text value expected, got {value!r}")
        return value.encode("utf-8")
    if isinstance(value, str) and value.startswith("\\x") and oid not in _TEXTLIKE | {3802}:
        return _unhex(value)
    if oid in _TEXTLIKE:
        return str(value).encode("utf-8")
    if oid in _INTS:
        return bytes(_INTS[oid].pack(int(value)))
    if oid == 16:
        return b"\x01" if value else b"\x00"
    if oid in _FLOATS:
        return bytes(_FLOATS[oid].pack(float(value)))
    if oid == 2950:
        return uuid.UUID(str(value)).bytes
    if oid == 3802:
        return b"\x01" + str(value).encode("utf-8")
    if oid == 1082:
        return struct.pack("!i", (date.fromisoformat(str(value)) - _EPOCH_DATE).days)
    if oid in (1114, 1184):
        return struct.pack("!q", _timestamp_us(str(value), oid))
    raise ValueError(f"cannot encode {value!r} as binary {type_name(oid)}")


# a timestamp's ISO text (DateStyle ISO, as the server sends it and ``decode`` stores it):
# date, time, optional fraction, the session's UTC offset (timestamptz only), optional BC
_TIMESTAMP = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?"
)
_INFINITIES = {"infinity": 2**63 - 1, "-infinity": -(2**63)}


def _timestamp_us(text: str, oid: int) -> int:
    """Binary timestamp[tz]: microseconds since 2000-01-01 00:00, in UTC for timestamptz.
    Text recorded in a session with another TimeZone carries that offset (``+05:30``), so
    the offset is subtracted here: the instant is what the binary form holds. Computed
    from the fields rather than with ``datetime``, which has neither BC nor years past
    9999 (both are valid timestamps); anything else is a ValueError, not a crash."""
    if text in _INFINITIES:
        return _INFINITIES[text]
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise ValueError(f"not an ISO {type_name(oid)}: {text[:40]!r}")
    year, month, day, hour, minute, sec = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 24 and minute < 60 and sec < 61):
        raise ValueError(f"not a valid {type_name(oid)}: {text[:40]!r}")
    if m.group(8) and oid != 1184:
        raise ValueError(f"a {type_name(oid)} has no UTC offset: {text[:40]!r}")
    if m.group(12):
        year = 1 - year  # 1 BC is year 0 of the proleptic Gregorian calendar
    days = _days_from_civil(year, month, day) - _days_from_civil(2000, 1, 1)
    secs = ((days * 24 + hour) * 60 + minute) * 60 + sec
    if m.group(8):
        off = (int(m.group(9)) * 60 + int(m.group(10) or 0)) * 60 + int(m.group(11) or 0)
        secs -= off if m.group(8) == "+" else -off
    return secs * 1_000_000 + int((m.group(7) or "").ljust(6, "0"))


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date, any year (H. Hinnant's)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def canonical(value: Any) -> str:
    """One string per value for matching: text ``42`` and binary int4 42 are the same."""
    if value is None:
        return "\x00NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "\\x" + str(value.get("hex", ""))
    return str(value)


def text_bytes(value: Any, oid: int) -> bytes:
    """The text format of a non-null value ``decode`` stored from its binary form: what
    the server sends a client that asks for text. A text type's binary form is its text
    in the client's encoding, so one that was not UTF-8 (stored as its bytes, ``{"hex":
    ...}``) is those bytes; jsonb's is its text after a version byte."""
    if isinstance(value, dict) and "hex" in value:
        raw = bytes.fromhex(str(value["hex"]))
        if oid in _TEXTLIKE:
            return raw
        if oid == 3802 and raw[:1] == b"\x01":
            return raw[1:]
    return canonical(value).encode("utf-8")


def from_text(text: str, oid: int) -> Any:
    """A text-format value as ``decode`` would have stored its binary form."""
    if oid in _INTS:
        return int(text)
    if oid == 16:
        return text in ("t", "true", "on", "1")
    if oid in _FLOATS:
        return float(text)
    if oid == 17:
        return text
    if oid in (1114, 1184):
        return text.replace("T", " ")
    return text

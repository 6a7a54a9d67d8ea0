"""PostgreSQL protocol v3 framing and messages (sans-IO: bytes in, messages out; messages
in, bytes out). Nothing here knows about sockets, matching or recordings.

Every message after start-up is a type byte, a 4-byte big-endian length (counting itself)
and a body. The client's first message has no type byte: a length and a 32-bit code that
says whether it is a start-up message (protocol 3.0), an ``SSLRequest``, a
``GSSENCRequest`` or a ``CancelRequest``. ``Framer`` cuts a byte stream into
``(type, body)`` pairs; the ``parse_*`` helpers read the bodies a mock or a recorder needs
and the ``encode_*`` helpers build what a mock sends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from devbox.wire.contract import RemoteProtocolError

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

# pseudo type bytes for the untyped first messages
STARTUP = b"\x00startup"
SSL = b"\x00ssl"
GSSENC = b"\x00gssenc"
CANCEL = b"\x00cancel"

MAX_MESSAGE = 1 << 30  # the server's own limit for a single message

# the ParameterStatus a mock announces where the recording holds none
DEFAULT_SERVER = {
    "server_version": "15.0 (devbox mock)",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "TimeZone": "UTC",
    "is_superuser": "off",
}


_I32 = struct.Struct("!i")
_I16 = struct.Struct("!h")
_HDR = struct.Struct("!ci")


class Framer:
    """Cuts one direction of a connection into ``(type, body)`` messages.

    ``startup=True`` for the client side: until a start-up (or cancel) message, messages
    are untyped. The server answers ``SSLRequest``/``GSSENCRequest`` with a single byte,
    which the server-side framer reads with ``expect_byte``."""

    __slots__ = ("_buf", "_pos", "expect_byte", "startup")

    def __init__(self, *, startup: bool) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.startup = startup
        self.expect_byte = False

    @property
    def empty(self) -> bool:
        """Nothing buffered and no start-up or single byte expected: the next data
        starts a message."""
        return not self._buf and not self.startup and not self.expect_byte

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        if not self._buf and not self.startup and not self.expect_byte:
            return self._feed_whole(data)
        self._buf += data
        out: list[tuple[bytes, bytes]] = []
        buf, pos, end = self._buf, self._pos, len(self._buf)
        while True:
            if self.expect_byte:
                if pos >= end:
                    break
                out.append((b"\x00byte", bytes(buf[pos : pos + 1])))
                pos += 1
                self.expect_byte = False
                continue
            if self.startup:
                if end - pos < 8:
                    break
                (length,) = _I32.unpack_from(buf, pos)
                if length < 8 or length > 10000:
                    raise RemoteProtocolError(f"bad start-up length {length}", code="08P01")
                if end - pos < length:
                    break
                (code,) = _I32.unpack_from(buf, pos + 4)
                body = bytes(buf[pos + 8 : pos + length])
                pos += length
                if code == SSL_REQUEST:
                    out.append((SSL, body))
                elif code == GSSENC_REQUEST:
                    out.append((GSSENC, body))
                elif code == CANCEL_REQUEST:
                    out.append((CANCEL, body))
                    self.startup = False
                elif code >> 16 == 3:
                    out.append((STARTUP, _I32.pack(code) + body))
                    self.startup = False
                else:
                    raise RemoteProtocolError(
                        f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}",
                        code="0A000",
                    )
                continue
            if end - pos < 5:
                break
            typ, length = _HDR.unpack_from(buf, pos)
            if length < 4 or length > MAX_MESSAGE:
                raise RemoteProtocolError(f"bad message length {length}", code="08P01")
            if end - pos < 1 + length:
                break
            out.append((typ, bytes(buf[pos + 5 : pos + 1 + length])))
            pos += 1 + length
        if pos >= 65536 or pos == end:
            del self._buf[:pos]
            pos = 0
        self._pos = pos
        return out

    def _feed_whole(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The hot path: nothing buffered, so the messages are sliced straight out of
        ``data`` (one copy each, none into the buffer); only a trailing partial message
        is kept."""
        out: list[tuple[bytes, bytes]] = []
        pos, end = 0, len(data)
        unpack = _HDR.unpack_from
        while end - pos >= 5:
            typ, length = unpack(data, pos)
            if length < 4 or length > MAX_MESSAGE:
                raise RemoteProtocolError(f"bad message length {length}", code="08P01")
            stop = pos + 1 + length
            if stop > end:
                break
            out.append((typ, data[pos + 5 : stop]))
            pos = stop
        if pos < end:
            self._buf += data[pos:]
            self._pos = 0
        return out


# ---------------------------------------------------------------- reading bodies


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def i32(self) -> int:
        (v,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def i16(self) -> int:
        (v,) = _I16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def u32(self) -> int:
        (v,) = struct.unpack_from("!I", self.data, self.pos)
        self.pos += 4
        return int(v)

    def cstr(self) -> str:
        end = self.data.index(b"\x00", self.pos)
        s = self.data[self.pos : end].decode("utf-8", "surrogateescape")
        self.pos = end + 1
        return s

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RemoteProtocolError("message shorter than its fields", code="08P01")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def rest(self) -> bytes:
        b = self.data[self.pos :]
        self.pos = len(self.data)
        return b


def parse_startup(body: bytes) -> dict[str, str]:
    r = Reader(body[4:])
    params: dict[str, str] = {}
    while r.pos < len(r.data) and r.data[r.pos] != 0:
        key = r.cstr()
        params[key] = r.cstr()
    return params


@dataclass(frozen=True, slots=True)
class Parse:
    name: str
    sql: str
    oids: tuple[int, ...]


def parse_parse(body: bytes) -> Parse:
    r = Reader(body)
    name, sql = r.cstr(), r.cstr()
    n = r.i16()
    return Parse(name, sql, tuple(r.u32() for _ in range(n)))


@dataclass(frozen=True, slots=True)
class Bind:
    portal: str
    statement: str
    param_formats: tuple[int, ...]  # one per parameter (expanded)
    values: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]  # as sent: empty = all text, one = all that one


def parse_bind(body: bytes) -> Bind:
    # the mock's hot path: plain offsets and struct calls rather than the Reader
    end = body.index(b"\x00")
    portal = body[:end].decode("utf-8", "surrogateescape")
    end2 = body.index(b"\x00", end + 1)
    stmt = body[end + 1 : end2].decode("utf-8", "surrogateescape")
    pos = end2 + 1
    (nf,) = _I16.unpack_from(body, pos)
    fmts = _int16s(nf, body, pos + 2)
    pos += 2 + 2 * nf
    (n,) = _I16.unpack_from(body, pos)
    pos += 2
    values: list[bytes | None] = []
    for _ in range(n):
        (length,) = _I32.unpack_from(body, pos)
        pos += 4
        if length == -1:
            values.append(None)
        else:
            if length < 0 or pos + length > len(body):
                raise RemoteProtocolError("Bind shorter than its values", code="08P01")
            values.append(body[pos : pos + length])
            pos += length
    (nr,) = _I16.unpack_from(body, pos)
    rfmts = _int16s(nr, body, pos + 2)
    if pos + 2 + 2 * nr != len(body):  # the server reads to the end of it, too (08P01)
        raise RemoteProtocolError("Bind longer than its fields", code="08P01")
    if not fmts:
        fmts = (0,) * n
    elif len(fmts) == 1:
        fmts = fmts * n
    return Bind(portal, stmt, fmts, tuple(values), rfmts)


def _int16s(n: int, body: bytes, pos: int) -> tuple[int, ...]:
    # format code lists are nearly always empty or one code: no format string built then
    if n == 0:
        return ()
    if n == 1:
        return _I16.unpack_from(body, pos)
    if n < 0:
        raise RemoteProtocolError("negative format count", code="08P01")
    return struct.unpack_from(f"!{n}h", body, pos)


def result_format(result_formats: tuple[int, ...], i: int) -> int:
    if not result_formats:
        return 0
    if len(result_formats) == 1:
        return result_formats[0]
    return result_formats[i] if i < len(result_formats) else 0


def parse_named(body: bytes) -> tuple[str, str]:
    """Describe and Close: a kind byte (``S`` statement, ``P`` portal) and a name."""
    end = body.index(b"\x00", 1)
    return body[:1].decode(), body[1:end].decode("utf-8", "surrogateescape")


def parse_execute(body: bytes) -> tuple[str, int]:
    end = body.index(b"\x00")
    if len(body) < end + 5:
        raise RemoteProtocolError("message shorter than its fields", code="08P01")
    (max_rows,) = _I32.unpack_from(body, end + 1)
    return body[:end].decode("utf-8", "surrogateescape"), int(max_rows)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    table_oid: int
    attnum: int
    type_oid: int
    typlen: int
    typmod: int
    format: int


def parse_row_description(body: bytes) -> list[Column]:
    r = Reader(body)
    cols = []
    for _ in range(r.i16()):
        name = r.cstr()
        cols.append(Column(name, r.u32(), r.i16(), r.u32(), r.i16(), r.i32(), r.i16()))
    return cols


def parse_data_row(body: bytes) -> list[bytes | None]:
    r = Reader(body)
    vals: list[bytes | None] = []
    for _ in range(r.i16()):
        length = r.i32()
        vals.append(None if length == -1 else r.take(length))
    return vals


def parse_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse: one-letter field codes to values, all kept."""
    r = Reader(body)
    out: dict[str, str] = {}
    while r.pos < len(r.data) and r.data[r.pos] != 0:
        code = r.take(1).decode("ascii", "replace")
        out[code] = r.cstr()
    return out


def parse_parameter_description(body: bytes) -> tuple[int, ...]:
    r = Reader(body)
    return tuple(r.u32() for _ in range(r.i16()))


def parse_copy_response(body: bytes) -> tuple[int, tuple[int, ...]]:
    r = Reader(body)
    overall = r.take(1)[0]
    return overall, tuple(r.i16() for _ in range(r.i16()))


# ---------------------------------------------------------------- writing


def msg(typ: bytes, body: bytes = b"") -> bytes:
    return _HDR.pack(typ, len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape") + b"\x00"


def auth(code: int, extra: bytes = b"") -> bytes:
    return msg(b"R", _I32.pack(code) + extra)


def parameter_status(name: str, value: str) -> bytes:
    return msg(b"S", cstr(name) + cstr(value))


def backend_key(pid: int, key: int) -> bytes:
    return msg(b"K", struct.pack("!ii", pid, key))


def ready(status: str) -> bytes:
    found = _READY.get(status)
    return found if found is not None else msg(b"Z", status.encode("ascii"))


_READY = {s: msg(b"Z", s.encode("ascii")) for s in "ITE"}


def row_description(cols: list[Column]) -> bytes:
    parts = [_I16.pack(len(cols))]
    for c in cols:
        parts.append(cstr(c.name))
        parts.append(
            struct.pack("!IhIhih", c.table_oid, c.attnum, c.type_oid, c.typlen, c.typmod, c.format)
        )
    return msg(b"T", b"".join(parts))


def data_row(values: list[bytes | None]) -> bytes:
    parts = [_I16.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(_I32.pack(len(v)))
            parts.append(v)
    return msg(b"D", b"".join(parts))


def command_complete(tag: str) -> bytes:
    return msg(b"C", cstr(tag))


def fields(typ: bytes, items: dict[str, str]) -> bytes:
    body = b"".join(k.encode("ascii")[:1] + cstr(v) for k, v in items.items()) + b"\x00"
    return msg(typ, body)


def error(
    sqlstate: str, message: str, *, detail: str = "", hint: str = "", severity: str = "ERROR"
) -> bytes:
    items = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if detail:
        items["D"] = detail
    if hint:
        items["H"] = hint
    return fields(b"E", items)


def parameter_description(oids: tuple[int, ...]) -> bytes:
    return msg(b"t", _I16.pack(len(oids)) + b"".join(struct.pack("!I", o) for o in oids))


def copy_response(typ: bytes, overall: int, formats: tuple[int, ...]) -> bytes:
    return msg(typ, bytes([overall]) + _I16.pack(len(formats)) + b"".join(map(_I16.pack, formats)))


PARSE_COMPLETE = msg(b"1")
BIND_COMPLETE = msg(b"2")
CLOSE_COMPLETE = msg(b"3")
NO_DATA = msg(b"n")
EMPTY_QUERY = msg(b"I")
PORTAL_SUSPENDED = msg(b"s")
COPY_DONE = msg(b"c")

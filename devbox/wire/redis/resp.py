"""RESP2 and RESP3, sans-IO: client commands in, typed replies in and out.

A reply is a *typed value*, a ``(tag, payload)`` tuple, so that every RESP3 type survives a
round trip through a recording and can be served again in either protocol version:

=============  ===================================  ===========================
tag            payload                              RESP2 rendering
=============  ===================================  ===========================
``simple``     bytes                                ``+``
``error``      bytes                                ``-``
``blob_error`` bytes                                ``-`` (one line)
``integer``    int                                  ``:``
``bulk``       bytes                                ``$``
``null``       ``"bulk"`` / ``"array"`` / ``""``    ``$-1`` or ``*-1``
``array``      list of values                       ``*``
``set``        list of values                       ``*``
``push``       list of values                       ``*``
``map``        list of (key, value) pairs           ``*`` with 2n items
``double``     bytes (its text: ``inf``, ``1.5``)   ``$`` bulk
``boolean``    bool                                 ``:1`` / ``:0``
``bignum``     bytes (its digits)                   ``$`` bulk
``verbatim``   (format bytes, data bytes)           ``$`` bulk of the data
``attribute``  (pairs, the value it annotates)      the value alone
=============  ===================================  ===========================

Parsing never touches a socket: ``CommandParser.feed`` and ``ReplyParser.feed`` take the
bytes that arrived and return what is complete, keeping the rest.
"""

from __future__ import annotations

from typing import Any

from devbox.wire.contract import LocalProtocolError, RemoteProtocolError

Value = tuple[str, Any]

MAX_ARGS = 1024 * 1024
MAX_BULK = 512 * 1024 * 1024
MAX_INLINE = 64 * 1024
MAX_DEPTH = 64

OK: Value = ("simple", b"OK")


class _Incomplete(Exception):
    """More bytes are needed (internal to the reply parser)."""


# ---------------------------------------------------------------- client commands


def _protocol_error(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"Protocol error: {what}", code=f"ERR Protocol error: {what}")


def split_inline(line: bytes) -> list[bytes]:
    """An inline command (``SET k "a b"``): words, with double and single quotes the way
    redis-server's ``sdssplitargs`` reads them (``\\n``, ``\\xHH`` escapes in double quotes)."""
    out: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\r\n\v\f":
            i += 1
        if i >= n:
            return out
        word = bytearray()
        quote = 0
        while i < n:
            c = line[i]
            if quote == 34:  # double quotes
                if c == 92 and i + 1 < n:  # backslash
                    nxt = line[i + 1]
                    if nxt == 120 and i + 3 < n:  # \xHH
                        try:
                            word.append(int(line[i + 2 : i + 4], 16))
                            i += 4
                            continue
                        except ValueError:
                            pass
                    word.append({110: 10, 114: 13, 116: 9, 98: 8, 97: 7}.get(nxt, nxt))
                    i += 2
                    continue
                if c == 34:
                    if i + 1 < n and line[i + 1] not in b" \t\r\n":
                        raise _protocol_error("unbalanced quotes in request")
                    i += 1
                    break
                word.append(c)
            elif quote == 39:  # single quotes
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    word.append(39)
                    i += 2
                    continue
                if c == 39:
                    i += 1
                    break
                word.append(c)
            else:
                if c in b" \t\r\n":
                    break
                if c in (34, 39) and not word:
                    quote = c
                else:
                    word.append(c)
            i += 1
        else:
            if quote:
                raise _protocol_error("unbalanced quotes in request")
        out.append(bytes(word))


class CommandParser:
    """Client -> server: arrays of bulk strings (what client libraries send) and inline
    commands (what ``telnet`` or ``nc`` users type)."""

    def __init__(self) -> None:
        self._buf = b""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Every complete command in ``data`` (plus what was buffered), in order. Raises
        ``RemoteProtocolError`` (its ``code`` is the error line redis-server sends)."""
        if self._buf:
            data = self._buf + data
        out: list[list[bytes]] = []
        pos, n = 0, len(data)
        find = data.find
        while pos < n:
            if data[pos] == 42:  # '*': the hot path, kept flat
                e = find(b"\r\n", pos)
                if e < 0:
                    if n - pos > 32:
                        raise _protocol_error("invalid multibulk length")
                    break
                try:
                    count = int(data[pos + 1 : e])
                except ValueError:
                    raise _protocol_error("invalid multibulk length") from None
                if count > MAX_ARGS:
                    raise _protocol_error("invalid multibulk length")
                p = e + 2
                args: list[bytes] = []
                complete = True
                for _ in range(count):
                    if p >= n:
                        complete = False
                        break
                    if data[p] != 36:  # '$'
                        raise _protocol_error(f"expected '$', got '{chr(data[p])}'")
                    e = find(b"\r\n", p)
                    if e < 0:
                        if n - p > 32:
                            raise _protocol_error("invalid bulk length")
                        complete = False
                        break
                    try:
                        size = int(data[p + 1 : e])
                    except ValueError:
                        raise _protocol_error("invalid bulk length") from None
                    if not 0 <= size <= MAX_BULK:
                        raise _protocol_error("invalid bulk length")
                    s = e + 2
                    if s + size + 2 > n:
                        complete = False
                        break
                    args.append(data[s : s + size])
                    p = s + size + 2
                if not complete:
                    break
                pos = p
                if args:
                    out.append(args)
            else:
                e = find(b"\n", pos)
                if e < 0:
                    if n - pos > MAX_INLINE:
                        raise _protocol_error("too big inline request")
                    break
                words = split_inline(data[pos:e])
                pos = e + 1
                if words:
                    out.append(words)
        self._buf = data[pos:] if pos < n else b""
        return out


def encode_command(args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """A command as client libraries send it (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


# ---------------------------------------------------------------- replies


class ReplyParser:
    """Server -> client: every RESP2 and RESP3 type."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Value]:
        data = self._buf + data if self._buf else data
        out: list[Value] = []
        pos = 0
        while pos < len(data):
            try:
                value, pos = parse_value(data, pos)
            except _Incomplete:
                break
            out.append(value)
        self._buf = data[pos:]
        return out


def _line(data: bytes, pos: int) -> tuple[bytes, int]:
    e = data.find(b"\r\n", pos)
    if e < 0:
        if len(data) - pos > MAX_INLINE:
            raise RemoteProtocolError("RESP: line too long")
        raise _Incomplete
    return data[pos:e], e + 2


def _int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise RemoteProtocolError(f"RESP: not an integer: {text[:40]!r}") from None


def _blob(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    if not 0 <= size <= MAX_BULK:
        raise RemoteProtocolError(f"RESP: invalid length {size}")
    end = pos + size
    if end + 2 > len(data):
        raise _Incomplete
    return data[pos:end], end + 2


def parse_value(data: bytes, pos: int, depth: int = 0) -> tuple[Value, int]:
    """One typed value at ``pos``; raises ``_Incomplete`` when more bytes are needed."""
    if depth > MAX_DEPTH:
        raise RemoteProtocolError("RESP: nested too deeply")
    if pos >= len(data):
        raise _Incomplete
    t = data[pos]
    line, p = _line(data, pos + 1)
    if t == 43:  # +
        return ("simple", line), p
    if t == 45:  # -
        return ("error", line), p
    if t == 58:  # :
        return ("integer", _int(line)), p
    if t in (36, 33, 61, 40, 44, 35, 95):  # $ ! = ( , # _
        if t == 40:
            return ("bignum", line), p
        if t == 44:
            return ("double", line), p
        if t == 35:
            if line not in (b"t", b"f"):
                raise RemoteProtocolError(f"RESP: invalid boolean {line!r}")
            return ("boolean", line == b"t"), p
        if t == 95:
            return ("null", ""), p
        size = _int(line)
        if size == -1 and t == 36:
            return ("null", "bulk"), p
        blob, p = _blob(data, p, size)
        if t == 36:
            return ("bulk", blob), p
        if t == 33:
            return ("blob_error", blob), p
        fmt, sep, text = blob.partition(b":")
        if not sep or len(fmt) != 3:
            raise RemoteProtocolError("RESP: verbatim string without a 3-byte format")
        return ("verbatim", (fmt, text)), p
    if t in (42, 126, 62):  # * ~ >
        count = _int(line)
        if count == -1 and t == 42:
            return ("null", "array"), p
        if not 0 <= count <= MAX_ARGS:
            raise RemoteProtocolError(f"RESP: invalid aggregate length {count}")
        items = []
        for _ in range(count):
            item, p = parse_value(data, p, depth + 1)
            items.append(item)
        return ({42: "array", 126: "set", 62: "push"}[t], items), p
    if t in (37, 124):  # % |
        count = _int(line)
        if not 0 <= count <= MAX_ARGS:
            raise RemoteProtocolError(f"RESP: invalid map length {count}")
        pairs = []
        for _ in range(count):
            k, p = parse_value(data, p, depth + 1)
            v, p = parse_value(data, p, depth + 1)
            pairs.append((k, v))
        if t == 37:
            return ("map", pairs), p
        inner, p = parse_value(data, p, depth + 1)
        return ("attribute", (pairs, inner)), p
    raise RemoteProtocolError(f"RESP: unknown type byte {chr(t)!r}")


def serialize(value: Value, proto: int = 2) -> bytes:
    """Typed value -> bytes for a client speaking ``proto`` (2 or 3)."""
    out: list[bytes] = []
    _ser(value, proto, out)
    return b"".join(out)


def _ser(value: Value, proto: int, out: list[bytes]) -> None:
    tag, v = value
    if tag == "bulk":
        out.append(b"$%d\r\n%s\r\n" % (len(v), v))
    elif tag == "simple":
        out.append(b"+" + _one_line(v) + b"\r\n")
    elif tag == "integer":
        out.append(b":%d\r\n" % v)
    elif tag == "error":
        out.append(b"-" + _one_line(v) + b"\r\n")
    elif tag == "null":
        out.append(b"_\r\n" if proto == 3 else b"*-1\r\n" if v == "array" else b"$-1\r\n")
    elif tag in ("array", "set", "push"):
        mark = b"*" if proto == 2 or tag == "array" else b"~" if tag == "set" else b">"
        out.append(mark + b"%d\r\n" % len(v))
        for item in v:
            _ser(item, proto, out)
    elif tag == "map":
        out.append(b"%%%d\r\n" % len(v) if proto == 3 else b"*%d\r\n" % (2 * len(v)))
        for k, item in v:
            _ser(k, proto, out)
            _ser(item, proto, out)
    elif tag in ("double", "bignum"):
        if proto == 3:
            out.append((b"," if tag == "double" else b"(") + _one_line(v) + b"\r\n")
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(v), v))
    elif tag == "boolean":
        out.append((b"#t\r\n" if v else b"#f\r\n") if proto == 3 else b":%d\r\n" % int(v))
    elif tag == "blob_error":
        if proto == 3:
            out.append(b"!%d\r\n%s\r\n" % (len(v), v))
        else:
            out.append(b"-" + _one_line(v) + b"\r\n")
    elif tag == "verbatim":
        fmt, text = v
        if proto == 3:
            body = fmt + b":" + text
            out.append(b"=%d\r\n%s\r\n" % (len(body), body))
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(text), text))
    elif tag == "attribute":
        pairs, inner = v
        if proto == 3:
            out.append(b"|%d\r\n" % len(pairs))
            for k, item in pairs:
                _ser(k, proto, out)
                _ser(item, proto, out)
        _ser(inner, proto, out)
    else:
        raise LocalProtocolError(f"RESP: cannot serialise a {tag!r} value")


def _one_line(text: bytes) -> bytes:
    # a recording is editable text: never let a simple string or error split a reply
    return text.replace(b"\r", b" ").replace(b"\n", b" ")


def error(text: str) -> bytes:
    return b"-" + _one_line(text.encode("utf-8", "replace")) + b"\r\n"

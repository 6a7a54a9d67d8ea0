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
MAX_ITEMS = 1 << 32  # a server's reply: LRANGE of a list that long is legal
# a stored reply nests two JSON levels per aggregate and a recording is read with at
# most 400 (``devbox.core.recording``); redis-server's Lua returns up to ~1000
MAX_DEPTH = 128

OK: Value = ("simple", b"OK")


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


class _Held:
    """Bytes that arrived after an incomplete message, and how many are needed before
    parsing again is worth it: a 100 MB argument arriving in 64 KB reads is joined once,
    not copied and re-parsed on every read (which cost seconds, quadratically)."""

    __slots__ = ("have", "need", "parts")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.have = 0
        self.need = 0

    def add(self, data: bytes) -> bytes | None:
        """``data`` appended; everything held, once there is enough to parse, else None."""
        self.parts.append(data)
        self.have += len(data)
        if self.have < self.need:
            return None
        joined = b"".join(self.parts)
        self.parts, self.have, self.need = [], 0, 0
        return joined

    def keep(self, rest: bytes, need: int) -> None:
        """Hold ``rest`` until ``need`` bytes (at least one more) are there."""
        self.parts, self.have = [rest], len(rest)
        self.need = max(need, self.have + 1)


class CommandParser:
    """Client -> server: arrays of bulk strings (what client libraries send) and inline
    commands (what ``telnet`` or ``nc`` users type).

    A command cut by the end of a read is resumed where it stopped (the arguments read so
    far are kept), so a huge argument or a command with a million arguments costs time
    linear in its size."""

    def __init__(self) -> None:
        self._held = _Held()
        self._args: list[bytes] | None = None  # the array command being read, if cut
        self._left = 0  # its arguments still to come

    @property
    def buffered(self) -> int:
        return self._held.have + (self._args is not None)

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Every complete command in ``data`` (plus what was buffered), in order. Raises
        ``RemoteProtocolError`` (its ``code`` is the error line redis-server sends)."""
        if self._held.parts:
            joined = self._held.add(data)
            if joined is None:
                return []
            data = joined
        out: list[list[bytes]] = []
        pos, n = 0, len(data)
        if self._args is not None:
            args, self._args = self._args, None
            pos = self._bulks(data, 0, args, self._left)
            if pos < 0:
                return out
            out.append(args)
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
                args = []
                pos = self._bulks(data, e + 2, args, count)
                if pos < 0:
                    return out
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
        if pos < n:
            self._held.keep(data[pos:], 0)
        return out

    def _bulks(self, data: bytes, p: int, args: list[bytes], count: int) -> int:
        """Reads ``count`` bulk strings at ``p`` into ``args``: the position after them,
        or -1 when the data ends first (what is left is then held for the next read)."""
        n = len(data)
        find = data.find
        for i in range(count):
            need = 0
            if p < n:
                if data[p] != 36:  # '$'
                    raise _protocol_error(f"expected '$', got '{chr(data[p])}'")
                e = find(b"\r\n", p)
                if e < 0:
                    if n - p > 32:
                        raise _protocol_error("invalid bulk length")
                else:
                    try:
                        size = int(data[p + 1 : e])
                    except ValueError:
                        raise _protocol_error("invalid bulk length") from None
                    if not 0 <= size <= MAX_BULK:
                        raise _protocol_error("invalid bulk length")
                    s = e + 2
                    if s + size + 2 <= n:
                        args.append(data[s : s + size])
                        p = s + size + 2
                        continue
                    need = s + size + 2 - p
            self._args, self._left = args, count - i
            self._held.keep(data[p:], need)
            return -1
        return p


def encode_command(args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """A command as client libraries send it (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


# ---------------------------------------------------------------- replies

_AGGREGATES = {42: "array", 126: "set", 62: "push", 37: "map", 124: "attribute"}


class ReplyParser:
    """Server -> client: every RESP2 and RESP3 type.

    Iterative and resumable: an aggregate cut by the end of a read keeps the items read
    so far, so a ten-million-item ``LRANGE`` or a 500 MB bulk costs time linear in its
    size. Nesting deeper than ``MAX_DEPTH`` raises ``RemoteProtocolError``: a reply is
    stored as JSON, two levels per aggregate, and a recording must stay readable."""

    def __init__(self) -> None:
        self._held = _Held()
        # open aggregates, outermost first: [tag, items still to come, items so far]
        self._stack: list[list[Any]] = []

    def feed(self, data: bytes) -> list[Value]:
        if self._held.parts:
            joined = self._held.add(data)
            if joined is None:
                return []
            data = joined
        out: list[Value] = []
        stack = self._stack
        pos, n = 0, len(data)
        need = 0
        while pos < n:
            t = data[pos]
            e = data.find(b"\r\n", pos + 1)
            if e < 0:
                if n - pos > MAX_INLINE:
                    raise RemoteProtocolError("RESP: line too long")
                break
            line, p = data[pos + 1 : e], e + 2
            value: Value | None = None
            if t == 43:  # +
                value = ("simple", line)
            elif t == 45:  # -
                value = ("error", line)
            elif t == 58:  # :
                value = ("integer", _int(line))
            elif t in (36, 33, 61):  # $ ! =
                size = _int(line)
                if size == -1 and t == 36:
                    value = ("null", "bulk")
                else:
                    if not 0 <= size <= MAX_BULK:
                        raise RemoteProtocolError(f"RESP: invalid length {size}")
                    if p + size + 2 > n:
                        need = p + size + 2 - pos
                        break
                    value = _blob_value(t, data[p : p + size])
                    p += size + 2
            elif t in (40, 44, 35, 95):  # ( , # _
                value = _line_value(t, line)
            elif t in _AGGREGATES:
                count = _int(line)
                tag = _AGGREGATES[t]
                if count == -1 and t == 42:
                    value = ("null", "array")
                elif not 0 <= count <= MAX_ITEMS:
                    raise RemoteProtocolError(f"RESP: invalid aggregate length {count}")
                else:
                    # a map's pairs are read as 2n items; an attribute is followed by the
                    # value it annotates
                    left = count * (2 if t in (37, 124) else 1) + (t == 124)
                    if left:
                        if len(stack) >= MAX_DEPTH:
                            raise RemoteProtocolError("RESP: nested too deeply")
                        stack.append([tag, left, []])
                    else:
                        value = (tag, [])
            else:
                raise RemoteProtocolError(f"RESP: unknown type byte {chr(t)!r}")
            pos = p
            if value is None:
                continue
            while stack:  # the value completes its parents, innermost first
                top = stack[-1]
                top[2].append(value)
                top[1] -= 1
                if top[1]:
                    break
                stack.pop()
                value = _aggregate(top[0], top[2])
            else:
                out.append(value)
        if pos < n:
            self._held.keep(data[pos:], need)
        return out


def _int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise RemoteProtocolError(f"RESP: not an integer: {text[:40]!r}") from None


def _blob_value(t: int, blob: bytes) -> Value:
    if t == 36:
        return ("bulk", blob)
    if t == 33:
        return ("blob_error", blob)
    fmt, sep, text = blob.partition(b":")
    if not sep or len(fmt) != 3:
        raise RemoteProtocolError("RESP: verbatim string without a 3-byte format")
    return ("verbatim", (fmt, text))


def _line_value(t: int, line: bytes) -> Value:
    if t == 40:
        return ("bignum", line)
    if t == 44:
        return ("double", line)
    if t == 35:
        if line not in (b"t", b"f"):
            raise RemoteProtocolError(f"RESP: invalid boolean {line!r}")
        return ("boolean", line == b"t")
    return ("null", "")


def _aggregate(tag: str, items: list[Value]) -> Value:
    if tag == "map":
        return (tag, list(zip(items[::2], items[1::2], strict=True)))
    if tag == "attribute":
        body = items[:-1]
        return (tag, (list(zip(body[::2], body[1::2], strict=True)), items[-1]))
    return (tag, items)


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

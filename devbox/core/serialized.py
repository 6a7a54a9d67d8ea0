"""Values a language's own serializer wrote: PHP's ``serialize()`` and session encoding,
Ruby's ``Marshal``, read well enough to change their strings.

Why
---
Services keep these in caches and tables: a PHP session in Redis (``uid|i:7;…``), a
Laravel cache entry (``a:2:{s:8:"password";…}``), a Rails cache entry or a Ruby object
in ``Marshal``, WordPress options in Postgres. Both formats prefix each string with its
length in bytes. Text rules alone went wrong both ways: a password under a secret name
went to disk (the name is a serialized key, which no text rule reads), and an e-mail
the text rules did replace left its length prefix stale, so ``unserialize()`` and
``Marshal.load`` refused the value a mock gave back (a PHP session that no longer opens).

So a whole value in one of these formats is read into its strings, each under the name
the structure gives it (an array's key, an object's property, a hash's key, an
instance variable), a function of (name, bytes) gives each its new bytes, and the value
is written again with every length made right and every other byte as it was. The
redaction and the mocks' giving back of live values go through the same ``mapped``.

Sans-IO and strict: anything that is not one whole value of a format (trailing bytes,
a length that does not fit, an unknown tag, nesting deeper than ``MAX_DEPTH``) is not
read as one (``None``), and its caller treats it as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# (name, string) -> the string's new bytes
Leaf = Callable[[str, bytes], bytes]

MAX_DEPTH = 200  # (three Python frames a level at most: within the interpreter's limit)
MARSHAL = b"\x04\x08"

# what a PHP value or a PHP session (``name|value…``) starts with; Marshal's version
# (a session's first key: any bytes but ``|``, as PHP writes them: ``user:42|…``)
_PHP_START = re.compile(rb"(?:[aO]:\d|s:\d|[ibdEC]:|[NrR][;:]|[^|]{1,256}\|)")
_PHP_INT = re.compile(rb"-?\d{1,20}")
_PHP_FLOAT = re.compile(rb"-?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|INF)|NAN")
_PHP_LEN = re.compile(rb"\d{1,12}")


_PHP_START_TEXT = re.compile(_PHP_START.pattern.decode("ascii"))
_MARSHAL_TEXT = MARSHAL.decode("ascii")


class _Bad(Exception):
    """Not one whole value of the format."""


def may_be(data: bytes) -> bool:
    """Whether ``data`` could be a serialized value (a cheap look at its start)."""
    return data.startswith(MARSHAL) or _PHP_START.match(data) is not None


def may_be_text(text: str) -> bool:
    """``may_be`` for a value already decoded as UTF-8."""
    return text.startswith(_MARSHAL_TEXT) or _PHP_START_TEXT.match(text) is not None


def mapped(data: bytes, leaf: Leaf, name: str = "") -> bytes | None:
    """``data`` with each string it holds replaced by ``leaf(name, string)`` and its
    length made right, or None when ``data`` is no whole serialized value. ``name``:
    what the value as a whole is under (a top-level string's name)."""
    if not data or not may_be(data):
        return None
    try:
        if data.startswith(MARSHAL):
            return _Marshal(data, leaf).whole(name)
        return _Php(data, leaf).whole(name)
    except (_Bad, IndexError, ValueError, RecursionError):
        return None


def strings(data: bytes) -> list[bytes] | None:
    """The strings of a serialized value in order (what ``mapped`` hands ``leaf``), or
    None when ``data`` is none."""
    found: list[bytes] = []

    def keep(_name: str, value: bytes) -> bytes:
        found.append(value)
        return value

    return found if mapped(data, keep) is not None else None


def text_leaf(redact_value: Callable[[str, str], str]) -> Leaf:
    """A ``Leaf`` that redacts each string that is text by ``redact_value(name, text)``
    (binary strings are kept: no rule reads them)."""

    def leaf(name: str, value: bytes) -> bytes:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return value
        red = redact_value(name, text)
        return value if red == text else red.encode("utf-8")

    return leaf


# ---------------------------------------------------------------- PHP


def _prop_name(key: bytes) -> str:
    # protected and private properties are serialized as "\0*\0name" and "\0Class\0name"
    if key.startswith(b"\0"):
        key = key[key.find(b"\0", 1) + 1 :]
    return key.decode("utf-8", "replace")


def _php_string(value: bytes) -> bytes:
    """``value`` as PHP serializes a string: its length in bytes, then the bytes."""
    return b's:%d:"%s";' % (len(value), value)


class _Php:
    def __init__(self, data: bytes, leaf: Leaf) -> None:
        self.d = data
        self.i = 0
        self.leaf = leaf
        self.out: list[bytes] = []

    def whole(self, name: str) -> bytes:
        d = self.d
        if d[:1] in b"aOsibdNECrR" and d[1:2] in b":;":
            try:
                self.value(name, 0)
                if self.i == len(d):
                    return b"".join(self.out)
            except (_Bad, IndexError, ValueError):
                pass  # a session whose first key reads like a value's start (``a:b|…``)
            self.i, self.out = 0, []
        while self.i < len(d):  # a session: name|value name|value ...
            bar = d.find(b"|", self.i)
            if bar <= self.i:
                raise _Bad
            key = d[self.i : bar]
            # a key is a name, but text that merely reads as a session (``… ada@example.com|N;``)
            # must not keep what the text rules find in it
            self.out.append(self.leaf("", key) + b"|")
            self.i = bar + 1
            self.value(key.decode("utf-8", "replace"), 0)
        return b"".join(self.out)

    def _take(self, rx: re.Pattern[bytes], end: bytes) -> bytes:
        m = rx.match(self.d, self.i)
        if m is None or not self.d.startswith(end, m.end()):
            raise _Bad
        self.i = m.end() + len(end)
        return m.group(0)

    def _expect(self, text: bytes) -> None:
        if not self.d.startswith(text, self.i):
            raise _Bad
        self.i += len(text)

    def _string(self) -> bytes:
        """After ``s:``: ``N:"…"`` -> the N bytes (the closing ``"`` checked)."""
        n = int(self._take(_PHP_LEN, b':"'))
        start = self.i
        self.i += n
        if self.d[self.i : self.i + 1] != b'"':  # (past the end too)
            raise _Bad
        self.i += 1
        return self.d[start : self.i - 1]

    def value(self, name: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Bad
        d, start = self.d, self.i
        tag = d[start : start + 2]
        self.i += 2
        if tag == b"N;":
            self.out.append(tag)
        elif tag in (b"b:", b"r:", b"R:"):
            self._take(_PHP_INT, b";")
            self.out.append(d[start : self.i])
        elif tag in (b"i:", b"d:"):
            # a number is data too: a card number, a PIN under its name. Redacted, it
            # becomes a string holding the placeholder
            number = self._take(_PHP_INT if tag == b"i:" else _PHP_FLOAT, b";")
            new = self.leaf(name, number)
            self.out.append(d[start : self.i] if new == number else _php_string(new))
        elif tag == b"s:":
            new = self.leaf(name, self._string())
            self._expect(b";")
            self.out.append(_php_string(new))
        elif tag == b"E:":  # an enum's case ("Suit:Hearts"): a name, not data
            self._string()
            self._expect(b";")
            self.out.append(d[start : self.i])
        elif tag == b"a:":
            count = int(self._take(_PHP_INT, b":{"))
            self._members(d[start : self.i], count, name, depth, False)
        elif tag == b"O:":
            # a stdClass's properties are data (json_decode's objects), a class's are code
            props = self._string() != b"stdClass"
            self._expect(b":")
            count = int(self._take(_PHP_INT, b":{"))
            self._members(d[start : self.i], count, name, depth, props)
        elif tag == b"C:":  # Serializable: the class's own payload, often serialize()'s
            self._string()
            self._expect(b":")
            head = d[start : self.i]
            n = int(self._take(_PHP_LEN, b":{"))
            payload = d[self.i : self.i + n]
            self.i += n
            self._expect(b"}")
            inner = mapped(payload, self.leaf, name) if depth < MAX_DEPTH else None
            new = self.leaf(name, payload) if inner is None else inner
            self.out.append(b"%s%d:{%s}" % (head, len(new), new))
        else:
            raise _Bad

    def _members(self, head: bytes, count: int, outer: str, depth: int, props: bool) -> None:
        """An array's or an object's members (``head``: up to its ``{``). A member under
        a number (a list's element) is under the container's own name (``"password" =>
        ["…"]``)."""
        self.out.append(head)
        d = self.d
        for _ in range(count):
            start = self.i
            tag = d[start : start + 2]
            self.i += 2
            if tag == b"i:":
                self._take(_PHP_INT, b";")
                name = outer
            elif tag == b"s:":
                key = self._string()
                self._expect(b";")
                if props:  # a property's name is the class's, not data
                    name = _prop_name(key)
                else:  # an array's key is data too (an e-mail address as a key)
                    name = key.decode("utf-8", "replace")
                    self.out.append(_php_string(self.leaf("", key)))
                    self.value(name, depth + 1)
                    continue
            else:
                raise _Bad
            self.out.append(d[start : self.i])
            self.value(name, depth + 1)
        self._expect(b"}")
        self.out.append(b"}")


# ---------------------------------------------------------------- Ruby Marshal


def _marshal_int(n: int) -> bytes:
    """Marshal's packed integer, for a length (n >= 0)."""
    if n == 0:
        return b"\x00"
    if n < 123:
        return bytes((n + 5,))
    size = (n.bit_length() + 7) // 8
    return bytes((size,)) + n.to_bytes(size, "little")


class _Marshal:
    def __init__(self, data: bytes, leaf: Leaf) -> None:
        self.d = data
        self.i = 2  # after the version
        self.leaf = leaf
        self.out: list[bytes] = [MARSHAL]
        self.symbols: list[str] = []
        self.start = 2  # where the bytes not yet copied to out begin

    def whole(self, name: str) -> bytes:
        self.value(name, 0)
        if self.i != len(self.d):
            raise _Bad
        self._copy()
        return b"".join(self.out)

    def _copy(self) -> None:
        """The bytes read since the last change, to the output as they were."""
        if self.i > self.start:
            self.out.append(self.d[self.start : self.i])
        self.start = self.i

    def _byte(self) -> int:
        b = self.d[self.i]
        self.i += 1
        return b

    def _int(self) -> int:
        c = self._byte()
        c = c - 256 if c > 127 else c
        if c == 0:
            return 0
        if 0 < c < 5:
            n = int.from_bytes(self._bytes(c), "little")
            return n
        if -5 < c < 0:
            return int.from_bytes(self._bytes(-c), "little") - (1 << (8 * -c))
        return c - 5 if c > 0 else c + 5

    def _bytes(self, n: int) -> bytes:
        if n < 0 or self.i + n > len(self.d):
            raise _Bad
        self.i += n
        return self.d[self.i - n : self.i]

    def _symbol(self) -> str:
        tag = self._byte()
        if tag == 0x3A:  # ':' a new symbol
            sym = self._bytes(self._int()).decode("utf-8", "replace")
            self.symbols.append(sym)
            return sym
        if tag == 0x3B:  # ';' one met before
            return self.symbols[self._int()]
        if tag == 0x49 and self.d[self.i] == 0x3A:  # 'I:' a symbol with its encoding
            sym = self._symbol()  # (``@café``, ``:naïve``): registered before the encoding's
            self._ivars(MAX_DEPTH - 1)
            return sym
        raise _Bad

    def _key(self, depth: int) -> str:
        """A hash key, read (and kept) as it is: its text when it is a symbol or a
        string, the name of the value after it."""
        tag = self.d[self.i]
        if tag in (0x3A, 0x3B) or (tag == 0x49 and self.d[self.i + 1] == 0x3A):
            return self._symbol()
        if tag == 0x22 or (tag == 0x49 and self.d[self.i + 1] == 0x22):  # '"', 'I"'
            # a string key is data too (an e-mail address as a key): redacted unnamed
            self.i += 1 if tag == 0x22 else 2
            key = self._string("")
            if tag == 0x49:
                self._ivars(depth)
            return key.decode("utf-8", "replace")
        self.value("", depth + 1)
        return ""

    def _string(self, name: str) -> bytes:
        """A string's length and bytes (after its tag), given to ``leaf``; the old bytes."""
        self._copy()
        value = self._bytes(self._int())
        new = self.leaf(name, value)
        self.out.append(_marshal_int(len(new)) + new)
        self.start = self.i
        return value

    def _ivars(self, depth: int) -> None:
        for _ in range(self._int()):
            name = self._symbol()
            self.value(name.lstrip("@"), depth + 1)

    def value(self, name: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Bad
        tag = self._byte()
        if tag == 0x22:  # '"' a string: the one thing changed
            self._string(name)
        elif tag == 0x49:  # 'I' a value with instance variables (a string's encoding)
            self.value(name, depth + 1)
            self._ivars(depth)
        elif tag == 0x5B:  # '[' its elements under its own name (``"password" => ["…"]``)
            for _ in range(self._int()):
                self.value(name, depth + 1)
        elif tag in b"{}":
            for _ in range(self._int()):
                key = self._key(depth)
                self.value(key, depth + 1)
            if tag == 0x7D:  # a default value follows
                self.value("", depth + 1)
        elif tag in b"oS":  # an object's instance variables, a struct's members
            self._symbol()
            self._ivars(depth)
        elif tag in b"UeCd":  # a value under a class: marshal_dump, extend, subclass
            self._symbol()
            self.value(name, depth + 1)
        elif tag == 0x75:  # 'u' _dump's bytes: the class's own format
            self._symbol()
            self._string(name)
        elif tag == 0x6C:  # 'l' a bignum (a card number): one object, as a string is
            self._bignum(name)
        else:
            self._scalar(tag)

    def _bignum(self, name: str) -> None:
        """A bignum (sign, its length in 16-bit words, its bytes) given to ``leaf`` as its
        digits; redacted, a string in its place. (A Fixnum is not: it is no object, and a
        string in its place would shift every later object link.)"""
        at = self.i - 1
        sign = self._byte()
        if sign not in b"+-":
            raise _Bad
        n = int.from_bytes(self._bytes(2 * self._int()), "little")
        digits = b"%s%d" % (b"-" if sign == 0x2D else b"", n)
        new = self.leaf(name, digits)
        if new != digits:
            end, self.i = self.i, at
            self._copy()
            self.i = self.start = end
            self.out.append(b'"' + _marshal_int(len(new)) + new)

    def _scalar(self, tag: int) -> None:
        """Past a value that holds no string (read to know where it ends)."""
        if tag in b"0TF":
            return
        if tag in b"i@;":  # a number, an object link, a symbol link
            self._int()
        elif tag == 0x3A:  # ':'
            self.i -= 1
            self._symbol()
        elif tag in b"fcmM":  # a float's text, a class's or module's name
            self._bytes(self._int())
        elif tag == 0x2F:  # '/' a regexp's source and options
            self._bytes(self._int())
            self._byte()
        else:
            raise _Bad

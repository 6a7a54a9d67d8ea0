"""Redis recordings as readable JSON: one object per command (or pushed message) of a
connection, in the order it happened.

A command object::

    {"connection": 3, "seq": 7, "db": 0, "proto": 2, "at_ms": 12.5, "latency_ms": 0.21,
     "command": "INCR", "args": ["visits"], "reply": {"type": "integer", "value": 8}}

Arguments are text when they are UTF-8, else ``{"base64": "..."}``. A reply is typed
JSON: ``{"type": "bulk", "value": "hi"}`` (``"base64"`` instead of ``"value"`` for bytes
that are not UTF-8), ``simple``, ``error``, ``integer``, ``null``, ``array``/``set``/
``push`` (``value`` is a list of replies), ``map`` (``value`` is a list of
``[key, value]`` pairs), ``double``, ``boolean``, ``bignum``, ``verbatim`` (with
``format``), ``attribute`` (``value`` pairs and the ``reply`` it annotates). Optional
fields: ``replies`` (a subscription command answered once per channel),
``transaction`` (the commands an ``EXEC`` ran), ``queued`` (a command inside
``MULTI``), ``incomplete`` (no reply before the connection ended), ``noreply`` (sent
while the client had turned replies off: ``CLIENT REPLY OFF``/``SKIP``). A message the server
pushed (pub/sub, client tracking) is ``{"connection": 3, "seq": 8, "at_ms": 40.1,
"push": <reply>}``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from devbox.core import serialized
from devbox.core.redact_names import is_secret_name
from devbox.wire.contract import CODE_FIELD, CREDENTIAL_FIELD
from devbox.wire.redis.resp import Value

_TAGS = (
    "simple",
    "error",
    "blob_error",
    "integer",
    "bulk",
    "null",
    "array",
    "set",
    "push",
    "map",
    "double",
    "boolean",
    "bignum",
    "verbatim",
    "attribute",
)


class StoreError(ValueError):
    """A stored object that cannot be read; ``field`` is the dotted path inside it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------- bytes <-> JSON


def text_or_b64(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def arg_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise StoreError("invalid base64", where) from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value).encode("ascii")  # a hand-edited number: what a client would send
    raise StoreError('expected a string or {"base64": "..."}', where)


def _payload(value: bytes) -> dict[str, str]:
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def reply_to_json(value: Value) -> dict[str, Any]:
    tag, v = value
    if tag in ("simple", "error", "blob_error", "bulk", "double", "bignum"):
        return {"type": tag, **_payload(v)}
    if tag == "integer":
        return {"type": tag, "value": v}
    if tag == "boolean":
        return {"type": tag, "value": bool(v)}
    if tag == "null":
        return {"type": tag, "resp2": v} if v else {"type": tag}
    if tag in ("array", "set", "push"):
        return {"type": tag, "value": [reply_to_json(i) for i in v]}
    if tag == "map":
        return {"type": tag, "value": [[reply_to_json(k), reply_to_json(i)] for k, i in v]}
    if tag == "verbatim":
        fmt, text = v
        return {"type": tag, "format": fmt.decode("ascii", "replace"), **_payload(text)}
    if tag == "attribute":
        pairs, inner = v
        return {
            "type": tag,
            "value": [[reply_to_json(k), reply_to_json(i)] for k, i in pairs],
            "reply": reply_to_json(inner),
        }
    raise ValueError(f"unknown reply type {tag!r}")


def reply_from_json(obj: Any, where: str) -> Value:
    if not isinstance(obj, dict):
        raise StoreError('expected a typed reply such as {"type": "bulk", "value": "hi"}', where)
    tag = obj.get("type")
    if tag not in _TAGS:
        raise StoreError(f"unknown reply type {tag!r} (known: {', '.join(_TAGS)})", where + ".type")
    v = obj.get("value")
    if tag in ("simple", "error", "blob_error", "bulk", "double", "bignum", "verbatim"):
        data = arg_bytes({"base64": obj["base64"]} if "base64" in obj else v, where + ".value")
        if tag == "verbatim":
            fmt = obj.get("format", "txt")
            if not isinstance(fmt, str) or len(fmt.encode()) != 3:
                raise StoreError("expected a 3-letter format such as txt", where + ".format")
            return tag, (fmt.encode(), data)
        return tag, data
    if tag == "integer":
        if isinstance(v, bool) or not isinstance(v, int):
            raise StoreError("expected an integer", where + ".value")
        return tag, v
    if tag == "boolean":
        if not isinstance(v, bool):
            raise StoreError("expected true or false", where + ".value")
        return tag, v
    if tag == "null":
        kind = obj.get("resp2", "")
        if kind not in ("", "bulk", "array"):
            raise StoreError('expected "bulk" or "array"', where + ".resp2")
        return tag, kind
    if not isinstance(v, list):
        raise StoreError("expected a list", where + ".value")
    if tag in ("array", "set", "push"):
        return tag, [reply_from_json(item, f"{where}.value[{i}]") for i, item in enumerate(v)]
    pairs = []
    for i, pair in enumerate(v):
        if not isinstance(pair, list) or len(pair) != 2:
            raise StoreError("expected [key, value] pairs", f"{where}.value[{i}]")
        pairs.append(
            (
                reply_from_json(pair[0], f"{where}.value[{i}][0]"),
                reply_from_json(pair[1], f"{where}.value[{i}][1]"),
            )
        )
    if tag == "map":
        return tag, pairs
    return tag, (pairs, reply_from_json(obj.get("reply"), where + ".reply"))


# ---------------------------------------------------------------- commands


def db_after_exec(db: int, queued: Sequence[Sequence[bytes]], results: Sequence[Value]) -> int:
    """The database a connection is in once ``EXEC`` ran ``queued`` (``results``, its
    replies): that of the last ``SELECT`` among them the server answered OK."""
    for cmd, result in zip(queued, results, strict=False):
        if cmd[0] == b"SELECT" and len(cmd) == 2 and result == ("simple", b"OK"):
            db = int(cmd[1])
    return db


def command_object(args: list[bytes]) -> dict[str, Any]:
    return {
        "command": args[0].decode("utf-8", "replace").upper(),
        "args": [text_or_b64(a) for a in args[1:]],
    }


def command_args(obj: dict[str, Any], where: str = "") -> list[bytes]:
    """``[NAME, arg, ...]`` of a stored command object, NAME upper-cased."""
    name = obj.get("command")
    if not isinstance(name, str) or not name:
        raise StoreError("expected the command name as a string", _j(where, "command"))
    args = obj.get("args", [])
    if not isinstance(args, list):
        raise StoreError("expected a list of arguments", _j(where, "args"))
    return [name.upper().encode("utf-8")] + [
        arg_bytes(a, f"{_j(where, 'args')}[{i}]") for i, a in enumerate(args)
    ]


def _j(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def label(args: list[bytes] | tuple[bytes, ...], limit: int = 120) -> str:
    """One readable line: ``GET user:1``, quoting what needs it, cut at ``limit``."""
    words = []
    for a in args:
        try:
            text = a.decode("utf-8")
        except UnicodeDecodeError:
            text = "<" + str(len(a)) + " bytes>"
        if not text or any(c in text for c in ' "\r\n\t'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        words.append(text)
    line = " ".join(words)
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ---------------------------------------------------------------- redaction

# where a command carries a credential: (command, index of the first secret argument or
# the word after which the secrets follow, how many)
_SECRET_AFTER = {b"HELLO": b"AUTH", b"MIGRATE": b"AUTH"}


def _secret_positions(args: list[bytes]) -> set[int]:
    name = args[0].upper() if args else b""
    if name == b"AUTH":
        return set(range(1, len(args)))
    if name in (b"HELLO", b"MIGRATE"):
        out: set[int] = set()
        for i, a in enumerate(args):
            up = a.upper()
            if up == b"AUTH":
                out.update({i + 1, i + 2} if name == b"HELLO" else {i + 1})
            elif up == b"AUTH2":
                out.update({i + 1, i + 2})
        return out
    if name == b"CONFIG" and len(args) >= 4 and args[1].upper() == b"SET":
        return {
            i + 1
            for i in range(2, len(args) - 1, 2)
            if args[i].lower() in (b"requirepass", b"masterauth", b"masteruser")
        }
    return set()


def _script_position(args: list[bytes]) -> int:
    """Where a command carries a Lua script or a function library (0: nowhere)."""
    name = args[0].upper()
    if name in (b"EVAL", b"EVAL_RO"):
        return 1
    if name in (b"SCRIPT", b"FUNCTION") and len(args) > 2 and args[1].upper() == b"LOAD":
        return len(args) - 1  # FUNCTION LOAD [REPLACE] code
    return 0


def redact_args(args: list[bytes], redact_value: Callable[[str, str], str]) -> list[bytes]:
    """Credentials always, a script by the code rules, a hash's value by its field's name
    (``HSET user:1 password_hash …``), other text arguments through the value rules
    (e-mails, tokens)."""
    secret = _secret_positions(args)
    script = _script_position(args)
    fields = _field_names(args)
    out = [args[0]]
    for i, a in enumerate(args[1:], start=1):
        # an argument is named only by what the command says of it (a credential, a
        # script, a hash's field) or by a bare secret name just before it; never by a
        # word of devbox's own, which a profile's ``keep`` could name
        name = CREDENTIAL_FIELD if i in secret else CODE_FIELD if i == script else ""
        name = name or fields.get(i) or _named_by(args[i - 1])
        text = _text_of(a)
        if text is None:
            out.append(_binary(name, a, redact_value))
            continue
        red = _redacted(name, text, redact_value)
        out.append(red.encode("utf-8") if red != text else a)
    return out


_BARE_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_\-]{1,63}")


def _named_by(before: bytes) -> str:
    """The name a bare secret name before a value gives it (``XADD s * password …``,
    ``SET token …``, a stream entry's or ``CONFIG GET``'s field), else none."""
    if not _BARE_NAME.fullmatch(before):
        return ""
    name = before.decode("ascii")
    return name if is_secret_name(name) else ""


def _field_names(args: list[bytes]) -> dict[int, str]:
    """The field each value of a hash write is under, by position (``HSET``, ``HMSET``,
    ``HSETNX``): a field named like a credential names it (an API key, a password hash
    kept in a user's hash went to disk whole)."""
    name = args[0].upper()
    start = 2
    if name == b"HSETEX":  # HSETEX key [options] FIELDS n field value ...
        start = _after_fields(args)
    elif name not in (b"HSET", b"HMSET", b"HSETNX"):
        return {}
    return {i + 1: args[i].decode("utf-8", "replace") for i in range(start, len(args) - 1, 2)}


def _after_fields(args: list[bytes]) -> int:
    """Where the fields of a Redis 8 hash command start (``… FIELDS n field …``: after
    the count); past the end when it names none."""
    ups = [a.upper() for a in args]
    return ups.index(b"FIELDS") + 2 if b"FIELDS" in ups else len(args)


def reply_names(args: list[bytes]) -> list[str] | None:
    """The field names a hash read's reply holds values of, by position: ``HGET``'s one,
    ``HMGET``'s, and ``HGETALL``'s (``["", …]``: fields and values alternate, RESP2);
    None for any other command. A RESP3 map names its values by its keys anyway."""
    name = args[0].upper() if args else b""
    if name == b"HGET" and len(args) == 3:
        return [args[2].decode("utf-8", "replace")]
    if name == b"HMGET":
        return [a.decode("utf-8", "replace") for a in args[2:]]
    if name in (b"HGETDEL", b"HGETEX"):  # … FIELDS n field ...
        return [a.decode("utf-8", "replace") for a in args[_after_fields(args) :]]
    return [""] if name == b"HGETALL" else None


# a key of parts (``sess:<id>``, ``user:42:cart``): no space, quote or brace
_KEY_LIKE = re.compile(r"[\w.\-/+=@]+(?::[\w.\-/+=@]*)+")


def _redacted(name: str, text: str, redact_value: Callable[[str, str], str]) -> str:
    """``text`` redacted as a value, and a key's parts after its first part each named by
    the part before: a session id under its prefix (``sess:<id>``, connect-redis's;
    ``PHPREDIS_SESSION:<id>``) is a bearer credential the value rules let through."""
    red = redact_value(name, text)
    if red != text or name or not _KEY_LIKE.fullmatch(text):
        return red
    parts = text.split(":")
    return ":".join(
        [parts[0]]
        + [redact_value(b, p) if len(p) >= 20 else p for b, p in itertools.pairwise(parts)]
    )


def _text_of(data: bytes) -> str | None:
    """``data`` as text, or None: not UTF-8, or a Marshal dump (read as bytes, ``_binary``)."""
    if data.startswith(serialized.MARSHAL):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _binary(name: str, data: bytes, redact_value: Callable[[str, str], str]) -> bytes:
    """A value that is no UTF-8 text, or a Ruby ``Marshal`` dump (a Rails cache entry:
    its lengths and numbers are binary, and a longer string's length need not be UTF-8):
    a Marshal dump or a PHP value (a session holding ``random_bytes()``) has its strings
    redacted all the same, each length made right; a dump that does not read whole goes
    through the text rules byte for byte (its lengths may go stale: nothing leaks); any
    other value is kept as it is (no rule reads binary data)."""
    if not serialized.may_be(data):
        return data
    red = serialized.mapped(data, serialized.text_leaf(redact_value), name)
    if red is None and data.startswith(serialized.MARSHAL):
        text = data.decode("latin-1")
        red = redact_value(name, text).encode("latin-1", "replace")
    return data if red is None or red == data else red


def redact_reply(
    value: Value, redact_value: Callable[[str, str], str], names: list[str] | None = None
) -> Value:
    """``value`` with its strings redacted; ``names``: the field names of a hash read's
    values (``reply_names``)."""
    tag, v = value
    if tag in ("bulk", "simple", "verbatim"):
        data = v[1] if tag == "verbatim" else v
        name = names[0] if names else ""
        text = _text_of(data)
        if text is None:
            new = _binary(name, data, redact_value)
            if new is data:
                return value
            return (tag, (v[0], new)) if tag == "verbatim" else (tag, new)
        red = _redacted(name, text, redact_value)
        if red == text:
            return value
        new = red.encode("utf-8")
        return (tag, (v[0], new)) if tag == "verbatim" else (tag, new)
    if tag in ("array", "set", "push"):
        named: list[list[str] | None] = [None] * len(v)
        if names == [""] and tag == "array":  # HGETALL in RESP2: field, value, field...
            named = [[_text(v[i - 1])] if i % 2 else None for i in range(len(v))]
        elif names and len(names) == len(v):
            named = [[n] for n in names]
        else:  # a secret name among strings names the next: a stream entry's fields
            for i in range(1, len(v)):
                if v[i - 1][0] in ("bulk", "simple") and (n := _named_by(v[i - 1][1])):
                    named[i] = [n]
        return tag, [redact_reply(x, redact_value, named[i]) for i, x in enumerate(v)]
    if tag == "map":
        return tag, [(k, redact_reply(i, redact_value, [_text(k)])) for k, i in v]
    if tag == "attribute":
        return tag, (v[0], redact_reply(v[1], redact_value))
    return value


def redact_object(
    stored: dict[str, Any], redact_value: Callable[[str, str], str]
) -> dict[str, Any]:
    out = dict(stored)
    if "command" in stored:
        args = command_args(stored)
        red = redact_args(args, redact_value)
        if red != args:
            out["args"] = [text_or_b64(a) for a in red[1:]]
        if isinstance(stored.get("transaction"), list):
            out["transaction"] = [
                [text_or_b64(a) for a in redact_args([_b(x) for x in cmd], redact_value)]
                for cmd in stored["transaction"]
            ]
    names = reply_names(command_args(stored)) if "command" in stored else None
    for key in ("reply", "push"):
        if isinstance(stored.get(key), dict):
            value = reply_from_json(stored[key], key)
            out[key] = reply_to_json(redact_reply(value, redact_value, names))
    if isinstance(stored.get("replies"), list):
        out["replies"] = [
            reply_to_json(redact_reply(reply_from_json(r, "replies"), redact_value))
            for r in stored["replies"]
        ]
    return out


def _text(value: Value) -> str:
    """A reply's string as a field name ("" for anything else)."""
    tag, v = value
    return v.decode("utf-8", "replace") if tag in ("bulk", "simple") else ""


def _b(x: Any) -> bytes:
    return arg_bytes(x, "transaction")

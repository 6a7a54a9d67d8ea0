"""Whole extended-query turns answered from stored bytes: the Postgres mock's hot path.

Pooled clients send one packet per query: ``Bind`` (statement, parameter values), then
``Describe``/``Execute`` of that unnamed portal, then ``Sync``. Answering it message by
message costs several times what the event loop and the socket cost (the benchmark's
floor, a mock that sends constant bytes, runs about 3x faster than the full answer).
Yet the reply depends on nothing but the recorded answer that matched, the result
formats, the transaction status and the messages after the ``Bind``: the parameter
values only choose *which* recorded answer. So the first time a turn of one shape gets
one recorded answer, the mock answers it the long way and keeps the bytes; after that,
the same shape matching the same answer is a parse of the ``Bind``, two dict lookups and
one write.

A turn is kept only when the long way left nothing behind that the cached answer would
skip: no error, no notification, no named portal, no change of transaction status, and
only ``Describe`` (of a portal), ``Execute``, ``Flush`` and ``Sync`` after the ``Bind``.
Everything else, misses included, goes the long way every time. The nth-call counters
advance exactly as the long way advances them, so sequences answer in the same order.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from devbox.wire.contract import Hit, Output, RemoteProtocolError, Reply
from devbox.wire.postgres import messages as m
from devbox.wire.postgres import types
from devbox.wire.postgres.store import Index, Key, room

_I32 = struct.Struct("!i")
_I16 = struct.Struct("!h")
_SYNC = b"S\x00\x00\x00\x04"
# the messages that may follow the Bind in a turn whose answer is kept
_PLAIN = (
    b"D\x00\x00\x00\x06P\x00",  # Describe the unnamed portal
    b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00",  # Execute it, every row
    b"H\x00\x00\x00\x04",  # Flush
    _SYNC,
)

# (id of the recorded answer, the Bind's result-format bytes, transaction status, the
# bytes after the Bind)
TurnKey = tuple[int, bytes, str, bytes]


class Statement(Protocol):
    @property
    def norm(self) -> str: ...

    @property
    def oids(self) -> tuple[int, ...]: ...

    @property
    def cursor(self) -> bool: ...


def bind_values(
    values: Sequence[bytes | None], formats: Sequence[int], oids: Sequence[int]
) -> tuple[list[Any], tuple[str, ...]]:
    """(decoded values, match key) of a Bind's parameters: the one place that decides how
    a live parameter compares with a recorded one."""
    decoded: list[Any] = []
    key: list[str] = []
    for i, (raw, fmt) in enumerate(zip(values, formats, strict=False)):
        if fmt == 0 and raw is not None:
            # the common case, inline: a text value that is UTF-8 is its own key
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                decoded.append(text)
                key.append(text)
                continue
        value = types.decode(raw, oids[i] if i < len(oids) else 0, fmt)
        decoded.append(value)
        key.append(types.canonical(value))
    return decoded, tuple(key)


def split(data: bytes) -> tuple[bytes, bytes] | None:
    """(Bind body, the messages after it) when ``data`` is one whole turn that starts
    with a Bind of the unnamed portal and ends with Sync; else None."""
    if data[:1] != b"B" or not data.endswith(_SYNC) or len(data) < 12:
        return None
    (length,) = _I32.unpack_from(data, 1)
    stop = 1 + length
    if length < 4 or stop >= len(data) or data[5] != 0:  # data[5] != 0: a named portal
        return None
    return data[5:stop], data[stop:]


@dataclass(slots=True)
class Seen:
    """What one turn's bytes were read as. It holds for a connection whose statement of
    that name has this SQL and these parameter types (names are per connection)."""

    name: str
    norm: str
    oids: tuple[int, ...]
    key: Key
    formats: bytes  # the Bind's result-format bytes
    rest: bytes  # the messages after the Bind
    answers: list[dict[str, Any]]  # the recorded answers of ``key`` (the index's list)
    # when ``key`` has one recorded answer: (status, its Hit, the kept reply), so a
    # repeat is two dict lookups (a sequence goes through the nth-call counter)
    only: tuple[str, Hit, Reply] | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """A turn answered the long way, to keep if it qualifies (``keep``)."""

    seen: Seen
    turn: TurnKey
    n: int  # which of the key's answers ``turn`` names


def lookup(
    index: Index, statements: dict[str, Any], status: str, data: bytes
) -> tuple[list[Output] | None, Pending | None]:
    """(the outputs of a kept turn, None), advancing its query's nth-call counter as
    ``Index.take`` does; or (None, what to keep the long way's answer under); or
    (None, None) for anything that is not a plain turn matching a recorded query."""
    seen = index.raw_turns.get(data)
    if seen is not None:  # these very bytes were read before: no parsing at all
        stmt = statements.get(seen.name)
        if stmt is None or stmt.norm != seen.norm or stmt.oids != seen.oids:
            seen = _read(index, statements, data)  # the name means another statement here
    else:
        seen = _read(index, statements, data)
    if seen is None:
        return None, None
    only = seen.only
    if only is not None and only[0] == status:
        return [only[1], only[2]], None
    answers, key = seen.answers, seen.key
    n = index.sequences.peek(key, len(answers))
    recorded = answers[n]
    turn: TurnKey = (id(recorded), seen.formats, status, seen.rest)
    reply = index.turns.get(turn)
    if reply is None or not index.sequences.take_if(key, n, len(answers)):
        # not kept, or another process's connection took that answer just now: the
        # long way takes the next one itself (``keep`` checks it is the one looked up)
        return None, Pending(seen, turn, n)
    hit = index.hits[id(recorded)]
    if len(answers) == 1 and seen.only is None:  # kept by another process (``adopt``)
        seen.only = (status, hit, reply)
    return [hit, reply], None


def _read(index: Index, statements: dict[str, Any], data: bytes) -> Seen | None:
    """Parse a turn's Bind into its match key; remembered only when it matches a
    recorded query, and never more than ``room`` allows, whatever a client sends."""
    parts = split(data)
    if parts is None:
        return None
    body, rest = parts
    try:
        end = body.index(b"\x00", 1)
        name = body[1:end].decode("utf-8", "surrogateescape")
        stmt = statements.get(name)
        if stmt is None or stmt.cursor:
            # keyed anew each time it runs (``Statement.cursor``): no bytes answer it twice
            return None
        params, formats = _text_params(body, end + 1)
        if not _usual(formats, rest):
            return None  # never kept (``keep``), so not remembered either
        if params is None:  # binary or non-UTF-8 values: the general reading
            bind = m.parse_bind(body)
            params = bind_values(bind.values, bind.param_formats, stmt.oids)[1]
    except (RemoteProtocolError, ValueError, IndexError, struct.error):
        return None  # the long way reports it
    key = (stmt.norm, params)
    answers = index.entries.get(key)
    if not answers:
        return None
    seen = Seen(name, stmt.norm, stmt.oids, key, formats, rest, answers)
    room(index, index.raw_turns)[data] = seen
    return seen


def _text_params(body: bytes, pos: int) -> tuple[tuple[str, ...] | None, bytes]:
    """(the match key, the result-format bytes) of a Bind whose values are all UTF-8
    text, as ``bind_values`` keys them; (None, the result-format bytes) otherwise."""
    (nf,) = _I16.unpack_from(body, pos)
    pos += 2
    text = nf == 0 or (nf == 1 and body[pos : pos + 2] == b"\x00\x00")
    pos += 2 * nf
    (n,) = _I16.unpack_from(body, pos)
    pos += 2
    values: list[str] = []
    for _ in range(n):
        (length,) = _I32.unpack_from(body, pos)
        pos += 4
        if length < 0:
            text = False  # NULL: the general reading keys it
            continue
        if pos + length > len(body):
            raise ValueError("Bind shorter than its values")
        if text:
            try:
                values.append(body[pos : pos + length].decode("utf-8"))
            except UnicodeDecodeError:
                text = False
        pos += length
    return (tuple(values) if text else None), body[pos:]


def keep(pending: Pending, index: Index, outputs: list[Output], status: str) -> None:
    """Keep the long way's answer to a turn when replaying it gives the same bytes (the
    caller calls this only for a turn that sent no error)."""
    turn = pending.turn
    if len(outputs) != 2 or status != turn[2]:
        return
    hit, reply = outputs
    if not isinstance(hit, Hit) or index.hits.get(turn[0]) is not hit:
        return  # matched another answer than the one looked up (redacted parameters)
    if not isinstance(reply, Reply) or reply.close or reply.delay_s:
        return
    if turn[0] in index.notifications or not _plain_rest(turn[3]):
        return
    room(index, index.turns)[turn] = reply
    seen = pending.seen
    if len(seen.answers) == 1 and seen.only is None:
        seen.only = (status, hit, reply)
    if index.on_keep is not None:
        index.on_keep((seen.key, pending.n, seen.formats, status, seen.rest, hit, reply))


def _usual(formats: bytes, rest: bytes) -> bool:
    """Result formats that are exactly their count's codes, and a few plain messages
    after the Bind: how clients ask. Every kept or remembered turn holds its bytes, and
    bytes after the formats (which the long way reads past) or endless Flushes would
    make each of them as large as a client likes."""
    if len(formats) < 2 or len(formats) != 2 + 2 * _I16.unpack_from(formats)[0]:
        return False
    return len(rest) <= 64 and _plain_rest(rest)


def _plain_rest(rest: bytes) -> bool:
    """Only Describe and Execute (all rows) of the unnamed portal, Flush and Sync after
    the Bind: a named portal or a row limit leaves state the kept bytes would not."""
    pos = 0
    while pos < len(rest):
        for message in _PLAIN:
            if rest.startswith(message, pos):
                pos += len(message)
                break
        else:
            return False
    return True

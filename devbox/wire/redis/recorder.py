"""Watches one relayed Redis connection and turns it into stored objects (see ``store``).

Replies are paired with commands in order (Redis answers in order, pipelined or not),
except what the server pushes on its own: pub/sub messages and client-tracking
invalidations are stored as ``push`` objects with their arrival time. A subscription
command is answered once per channel, so it waits for that many replies. The state a
command ran in (database, protocol version, inside ``MULTI``) is tracked from the
commands themselves and stored with each one. A command the server does not answer
(``CLIENT REPLY OFF`` or ``SKIP``, see ``reply_mode``) waits for no reply and is stored
as ``noreply``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devbox.wire.contract import Relay, RemoteProtocolError
from devbox.wire.redis.reply_mode import SUBSCRIBED_RESP2, ReplyMode
from devbox.wire.redis.resp import CommandParser, ReplyParser, Value
from devbox.wire.redis.store import command_object, db_after_exec, reply_to_json

_MESSAGES = frozenset({b"message", b"pmessage", b"smessage", b"invalidate"})
_SUBSCRIBE = {
    b"SUBSCRIBE": (b"channels", True),
    b"PSUBSCRIBE": (b"patterns", True),
    b"SSUBSCRIBE": (b"shard", True),
    b"UNSUBSCRIBE": (b"channels", False),
    b"PUNSUBSCRIBE": (b"patterns", False),
    b"SUNSUBSCRIBE": (b"shard", False),
}


@dataclass(slots=True)
class _Pending:
    args: list[bytes]
    at: float
    db: int
    proto: int
    expect: int = 1
    replies: list[Value] = field(default_factory=list)
    queued: bool = False
    transaction: list[list[bytes]] | None = None


class RedisRecorder:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._t0 = clock()
        self._commands = CommandParser()
        self._replies = ReplyParser()
        self._pending: deque[_Pending] = deque()
        self._stored: list[dict[str, Any]] = []
        self._seq = 0
        self._blind = False  # True once a byte stream could not be parsed
        self.db = 0
        self.proto = 2
        self._multi: list[list[bytes]] | None = None
        self._mode = ReplyMode()
        self._subs: dict[bytes, set[bytes]] = {
            b"channels": set(),
            b"patterns": set(),
            b"shard": set(),
        }

    def _ms(self, t: float) -> float:
        return round((t - self._t0) * 1000.0, 3)

    def from_client(self, data: bytes) -> Relay:
        if not self._blind:
            now = self._clock()
            try:
                commands = self._commands.feed(data)
            except RemoteProtocolError:
                # not Redis: the real server answers it (with its protocol error), the
                # client's session goes on as if there were no relay
                commands = self._go_blind()
            for args in commands:
                self._command(args, now)
        return Relay(to_upstream=data)

    def _go_blind(self) -> list[Any]:
        """Stop recording this connection and pass its bytes on untouched: what was read
        cannot be paired any more. The commands still waiting are stored as incomplete."""
        self._blind = True
        while self._pending:
            self._store(self._pending.popleft(), None)
        return []

    def _command(self, args: list[bytes], now: float) -> None:
        name = args[0].upper()
        p = _Pending(args, now, self.db, self.proto)
        multi = self._multi
        queued = multi is not None and name not in (b"EXEC", b"DISCARD", b"MULTI", b"WATCH")
        named = [name, *args[1:]]
        if self._mode.silent(named, queued, self._refused):
            p.expect = 0
        if queued and multi is not None:
            p.queued = True
            multi.append(named)
        elif name == b"MULTI":
            self._multi = []
        elif name == b"EXEC":
            p.transaction, self._multi = self._multi or [], None
        elif name == b"DISCARD":
            self._multi = None
        elif name == b"SELECT" and len(args) == 2 and args[1].isdigit():
            self.db = int(args[1])
        elif name == b"HELLO" and len(args) > 1 and args[1] in (b"2", b"3"):
            self.proto = int(args[1])
        elif name == b"RESET":
            self.db, self.proto = 0, 2
            for s in self._subs.values():
                s.clear()
        elif name in _SUBSCRIBE:
            kind, subscribe = _SUBSCRIBE[name]
            names = set(args[1:])
            current = self._subs[kind]
            if subscribe:
                p.expect = p.expect and max(1, len(args) - 1)
                current |= names
            else:
                # one reply per argument, repeated ones too; without any, per subscription
                p.expect = p.expect and max(1, len(args) - 1 if names else len(current))
                current -= names if names else set(current)
        self._pending.append(p)
        self._unanswered(now)

    def _refused(self, name: bytes) -> bool:
        """RESP2 with subscriptions: the server refuses all but a few commands."""
        return self.proto == 2 and name not in SUBSCRIBED_RESP2 and any(self._subs.values())

    def _unanswered(self, now: float) -> None:
        """Store the commands at the head of the queue the server will not answer: they
        keep their place in the order the commands came in."""
        pending = self._pending
        while pending and not pending[0].expect:
            self._store(pending.popleft(), now)

    def from_upstream(self, data: bytes) -> Relay:
        if self._blind:
            return Relay(to_client=data)
        now = self._clock()
        try:
            values = self._replies.feed(data)
        except RemoteProtocolError:
            # a reply this recorder cannot store (nested deeper than a recording can
            # hold): the client still gets it, byte for byte
            values = self._go_blind()
        for value in values:
            if self._is_message(value):
                self._seq += 1
                self._stored.append(
                    {"seq": self._seq, "at_ms": self._ms(now), "push": reply_to_json(value)}
                )
                continue
            if not self._pending:
                continue  # a reply to nothing we saw (a relay joined mid-stream): not stored
            p = self._pending[0]
            p.replies.append(value)
            if len(p.replies) >= p.expect:
                self._pending.popleft()
                if value[0] == "error" and not p.queued:
                    name = p.args[0].upper()
                    if name == b"SELECT":
                        self._select_refused(p)
                    elif name == b"HELLO":
                        self._hello_refused(p)
                elif p.transaction and value[0] == "array":
                    self._exec_selected(p, value[1])
                self._store(p, now)
                self._unanswered(now)
        return Relay(to_client=data)

    def _select_refused(self, p: _Pending) -> None:
        """The server refused a ``SELECT`` (``DB index is out of range``): the connection
        stayed in its database, and so did the commands sent after it."""
        if not p.args[1:2] or not p.args[1].isdigit():
            return  # it never changed the tracked database
        self._db_was(int(p.args[1]), p.db)

    def _exec_selected(self, p: _Pending, results: list[Value]) -> None:
        """A ``SELECT`` inside ``MULTI`` changed the database when ``EXEC`` ran it: for
        the commands after the ``EXEC`` too."""
        assert p.transaction is not None
        db = db_after_exec(p.db, p.transaction, results)
        if db != p.db:
            self._db_was(p.db, db)

    def _db_was(self, wrong: int, right: int) -> None:
        """The commands still waiting were tracked in database ``wrong`` and ran in
        ``right``, up to the next ``SELECT``; so does the connection from now on."""
        for q in self._pending:
            if q.db == wrong:
                q.db = right
            if q.args[0].upper() == b"SELECT":
                return  # the database from here on is that command's doing
        self.db = right

    def _hello_refused(self, p: _Pending) -> None:
        """The server refused a ``HELLO`` (one older than Redis 6, a proxy, a bad
        password): the connection kept its protocol, and so did the commands after it.
        Replies must be read in that protocol (a RESP2 pub/sub message is an array)."""
        if p.args[1:2] not in ([b"2"], [b"3"]):
            return  # it never changed the tracked protocol
        bad, good = int(p.args[1]), p.proto
        for q in self._pending:
            name = q.args[0].upper()
            if q.proto == bad:
                q.proto = good
            if name in (b"HELLO", b"RESET"):
                return  # the protocol from here on is that command's doing
        self.proto = good

    def _is_message(self, value: Value) -> bool:
        tag, items = value
        # a RESP3 connection's messages are pushes: an array is a reply (an LRANGE whose
        # first item happens to be "message"), even while subscribed
        if tag == "push" or (tag == "array" and self.proto == 2 and any(self._subs.values())):
            return bool(items) and items[0][0] == "bulk" and items[0][1].lower() in _MESSAGES
        return False

    def _store(self, p: _Pending, now: float | None) -> None:
        self._seq += 1
        obj: dict[str, Any] = {
            "seq": self._seq,
            "db": p.db,
            "proto": p.proto,
            "at_ms": self._ms(p.at),
            "latency_ms": round((now - p.at) * 1000.0, 3) if now is not None and p.expect else 0.0,
        }
        obj.update(command_object(p.args))
        if p.transaction is not None:
            obj["transaction"] = [
                [cmd["command"], *cmd["args"]] for cmd in map(command_object, p.transaction)
            ]
        if p.queued:
            obj["queued"] = True
        if not p.expect:
            obj["noreply"] = True
        elif now is None:
            obj["incomplete"] = True
        elif p.expect > 1 or len(p.replies) > 1:
            obj["replies"] = [reply_to_json(r) for r in p.replies]
        else:
            obj["reply"] = reply_to_json(p.replies[0])
        self._stored.append(obj)

    def take_stored(self) -> list[dict[str, Any]]:
        done, self._stored = self._stored, []
        return done

    def close(self) -> list[dict[str, Any]]:
        while self._pending:
            self._store(self._pending.popleft(), None)
        return self.take_stored()

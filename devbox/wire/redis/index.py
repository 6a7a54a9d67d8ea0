"""The match index of a Redis mock: a hash table from (database, command, arguments) to
the recorded replies in the order they were given, and the nearest-command explanation
of a miss.

The n-th identical call gets the n-th recorded reply (an ``INCR`` that answered 7, 8,
9 answers 7, 8, 9 again; a ``GET`` after it follows the same way), then the last one
again. The counters are shared by every connection of one mock, because a service's
connection pool does not hand out the same connection in replay as it did while
recording; ``reset`` starts every sequence again.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from devbox.core import generated
from devbox.errors import ConfigError
from devbox.wire.contract import Hit, Reply
from devbox.wire.redis.handshake import Handshake
from devbox.wire.redis.resp import Value, serialize
from devbox.wire.redis.store import StoreError, command_args, label, reply_from_json

# answered after their recorded duration whatever the profile's timing says: their
# duration is part of what they mean (a BLPOP that timed out after 1 s)
BLOCKING = frozenset(
    {
        b"BLPOP",
        b"BRPOP",
        b"BRPOPLPUSH",
        b"BLMOVE",
        b"BLMPOP",
        b"BZPOPMIN",
        b"BZPOPMAX",
        b"BZMPOP",
        b"WAIT",
        b"WAITAOF",
    }
)
_BLOCK_WORD = frozenset({b"XREAD", b"XREADGROUP"})

Key = tuple[Any, ...]


def is_blocking(args: Sequence[bytes]) -> bool:
    name = args[0]
    if name in BLOCKING:
        return True
    return name in _BLOCK_WORD and any(a.upper() == b"BLOCK" for a in args[1:])


# commands whose first argument names a script (by SHA1) or a function: never generated
_NAMED_FIRST = frozenset({b"EVALSHA", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"})
# commands that only read: they never bind a generated value (``devbox.core.generated``),
# so a read by an id no write of this run made misses instead of answering another's
READS = frozenset(
    b"GET MGET GETRANGE SUBSTR STRLEN EXISTS TYPE TTL PTTL EXPIRETIME PEXPIRETIME KEYS SCAN"
    b" RANDOMKEY HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HSCAN HRANDFIELD LRANGE"
    b" LINDEX LLEN LPOS SMEMBERS SISMEMBER SMISMEMBER SCARD SSCAN SRANDMEMBER SINTER SUNION"
    b" SDIFF SINTERCARD ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZRANGEBYLEX"
    b" ZREVRANGEBYLEX ZSCORE ZMSCORE ZRANK ZREVRANK ZCARD ZCOUNT ZLEXCOUNT ZSCAN ZRANDMEMBER"
    b" ZINTER ZUNION ZDIFF XRANGE XREVRANGE XLEN XREAD XINFO XPENDING GEOPOS GEODIST GEOHASH"
    b" GEOSEARCH GEORADIUS_RO GEORADIUSBYMEMBER_RO PFCOUNT BITCOUNT BITPOS GETBIT BITFIELD_RO"
    b" DUMP OBJECT MEMORY DBSIZE INFO PING ECHO TIME LCS SORT_RO EVAL_RO EVALSHA_RO FCALL_RO"
    b" JSON.GET JSON.MGET JSON.TYPE JSON.STRLEN JSON.ARRLEN JSON.OBJLEN".split()
)


def _map(key: Key, fn: Callable[[bytes], bytes]) -> Key:
    """``key`` with ``fn`` applied to each argument a generated value may be in (not a
    command's name, nor a script's SHA1); the same object when nothing changed."""
    db, name, *args = key
    if name == b"EXEC" and args and isinstance(args[0], tuple):
        out: Key = (db, name, tuple(_map((db, *cmd), fn)[1:] for cmd in args[0]))
    else:
        first = 1 if name.upper() in _NAMED_FIRST else 0
        out = (db, name, *args[:first], *(fn(a) for a in args[first:]))
    return key if out == key else out


def _values(key: Key) -> list[bytes]:
    """The arguments ``_map`` visits, in order: what generated values are found and
    bound in (keys of one shape have as many, in the same places)."""
    out: list[bytes] = []

    def keep(a: bytes) -> bytes:
        out.append(a)
        return a

    _map(key, keep)
    return out


def shape(key: Key) -> Key:
    """``key`` with each generated value blanked (``devbox.core.generated``): the recorded
    keys a live one may bind to share it. The same object when it holds none."""
    return _map(key, generated.shape)


def writes(key: Key) -> bool:
    """Whether the call (a match key) may write, and so bind a generated value."""
    name = key[1]
    if name == b"EXEC" and len(key) > 2 and isinstance(key[2], tuple):
        return any(writes((0, *cmd)) for cmd in key[2])
    return name.upper() not in READS


def match_key(db: int, args: Sequence[bytes]) -> Key:
    """``args[0]`` must be upper-cased already."""
    return (db, *args)


def exec_key(db: int, queued: Sequence[Sequence[bytes]]) -> Key:
    return (db, b"EXEC", tuple(tuple(c) for c in queued))


def _given_back(value: Value, back: Callable[[bytes], bytes]) -> Value:
    """``value`` with ``back`` applied to its strings; the same object when unchanged."""
    tag, v = value
    if isinstance(v, bytes):
        new = back(v)
        return value if new is v else (tag, new)
    if tag in ("array", "set", "push", "_concat") and v:
        items = [_given_back(item, back) for item in v]
        return value if all(a is b for a, b in zip(items, v, strict=True)) else (tag, items)
    if tag == "map" and v:
        pairs = [(_given_back(k, back), _given_back(item, back)) for k, item in v]
        same = all(a[0] is b[0] and a[1] is b[1] for a, b in zip(pairs, v, strict=True))
        return value if same else (tag, pairs)
    return value


def _empty(reply: Value) -> bool:
    """A reply that found nothing: nil, 0 (``EXISTS``), -2 (``TTL`` of no key), an empty
    list, or a transaction's replies that all did."""
    tag, v = reply
    if tag in _LISTS:
        return not v or (tag == "array" and all(_empty(item) for item in v))
    return tag == "null" or (tag == "integer" and v in (0, -2))


_LISTS = frozenset(("array", "set", "map"))


class Entry:
    """One recorded reply, its bytes for each protocol version made once."""

    __slots__ = (
        "delay_s",
        "fresh",
        "hangs",
        "hit",
        "id",
        "latency_s",
        "pushes",
        "replies",
        "reply",
        "subscribed",
        "wires",
    )

    def __init__(self, ident: str, request: str, reply: Value, latency_s: float) -> None:
        self.id = ident
        self.reply = reply
        self.latency_s = latency_s
        self.delay_s = 0.0  # set for blocking commands
        self.hangs = False  # a blocking command the server never answered while recording
        self.hit = Hit(request, ident)
        self.pushes: list[tuple[float, Value]] = []  # (seconds after the previous, message)
        self.subscribed = -1  # subscriptions left after a (un)subscribe command
        self.wires: list[bytes | None] = [None, None, None, None]
        self.replies: list[Reply | None] = [None, None, None, None]  # made once, reused
        self.fresh: Entry | None = None  # this reply, reported as found by shape (below)

    @property
    def plain(self) -> bool:
        """Answered at once and nothing follows it (not blocking, no pushes)."""
        return not self.delay_s and not self.pushes and self.subscribed < 0 and not self.hangs

    def by_shape(self) -> Entry:
        """The same reply, found only once generated values were set aside: reported so
        (the dashboard's mock statistics show it), served alike. Made on first use, once
        loading has filled in the pushes and delays."""
        if self.fresh is None:
            twin = self.fresh = Entry(self.id, "", self.reply, self.latency_s)
            twin.hit = Hit(f"{self.hit.request} (generated values set aside)", self.id)
            twin.delay_s, twin.hangs, twin.subscribed = self.delay_s, self.hangs, self.subscribed
            twin.pushes, twin.wires, twin.replies = self.pushes, self.wires, self.replies
        return self.fresh

    def answer(self, proto: int) -> Reply:
        reply = self.replies[proto]
        if reply is None:
            reply = self.replies[proto] = Reply(self.wire(proto))
        return reply

    def wire(self, proto: int) -> bytes:
        data = self.wires[proto]
        if data is None:
            if self.reply[0] == "_concat":  # a subscription answered once per channel
                data = b"".join(serialize(part, proto) for part in self.reply[1])
            else:
                data = serialize(self.reply, proto)
            self.wires[proto] = data
        return data


class RedisIndex:
    def __init__(self) -> None:
        self.table: dict[Key, list[Entry]] = {}
        self.calls: dict[Key, int] = {}
        self.by_command: dict[bytes, list[Key]] = {}
        # recorded keys holding generated values, by their shape, in recorded order; the
        # live values bound to theirs in this run (``devbox.core.generated``)
        self.shaped: dict[Key, dict[Key, None]] = {}  # (ordered sets)
        self.bindings = generated.Bindings()
        self.written = generated.Written()
        self.set_aside = True  # off when a miss goes to the real server (passthrough)
        self.redacted = False  # recorded arguments hold redaction placeholders
        # live arguments -> their redacted form (the mock connections' shared memo)
        self.redacted_memo: dict[tuple[bytes, ...], list[bytes]] = {}
        # (database, the bytes of one read holding exactly one command) -> its match key
        # and arguments (upper-cased name): the mock connections' shared memo
        self.requests: dict[tuple[int, bytes], tuple[Key, tuple[bytes, ...]]] = {}
        self.handshake = Handshake()  # what the server said to set connections up
        self.dbs: set[int] = set()  # databases a command was recorded in
        # (database, command, arguments) the server refused inside MULTI -> its error
        self.refused_in_multi: dict[Key, Value] = {}
        # SELECT arguments the server refused (a database it does not have) -> its error
        self.refused_select: dict[bytes, Value] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.table.values())

    def add(self, key: Key, entry: Entry) -> None:
        entries = self.table.get(key)
        self.dbs.add(key[0])
        if entries is None:
            self.table[key] = [entry]
            self.by_command.setdefault(key[1], []).append(key)
        else:
            entries.append(entry)
        shaped = shape(key)
        if shaped is not key:
            self.shaped.setdefault(shaped, {})[key] = None
            if writes(key):
                self.written.add(_values(key))

    def take(self, key: Key) -> Entry | None:
        """The next recorded reply for ``key`` (advancing its sequence); else, with the
        generated values bound in this run set aside (binding them on a write), the next
        for the recorded key they stand for; else None."""
        entries = self.table.get(key)
        if entries is None:
            if not self.shaped or not self.set_aside:
                return None
            bound = self._bound(key)
            if bound is None:
                return None
            return self._own(self._advance(bound, self.table[bound]).by_shape())
        return self._own(self._advance(key, entries))

    def _advance(self, key: Key, found: list[Entry]) -> Entry:
        """The next of ``found`` (the recorded ``key``'s entries), its sequence advanced;
        the last again once all were taken."""
        n = self.calls.get(key, 0)
        self.calls[key] = n + 1
        return found[n] if n < len(found) else found[-1]

    def _own(self, entry: Entry) -> Entry:
        """``entry`` with the recorded values bound in this run given back as the live
        ones they stand for, in its reply: a client reads back its own lock token, a
        worker pops the job id its client pushed, a subscriber hears on the channel it
        named. (Its pushes are given back as each is sent: ``given_back``.) The same
        entry when none is in it."""
        if not self.bindings.gives_back:
            return entry
        reply = _given_back(entry.reply, self.bindings.back)
        if reply is entry.reply:
            return entry
        twin = Entry(entry.id, "", reply, entry.latency_s)
        twin.hit, twin.delay_s, twin.hangs = entry.hit, entry.delay_s, entry.hangs
        twin.subscribed, twin.pushes = entry.subscribed, entry.pushes
        return twin

    def given_back(self, value: Value) -> Value:
        """A pushed message as it is sent, with the values bound so far given back: a
        message published after the subscription carries the publisher's own ids."""
        return _given_back(value, self.bindings.back) if self.bindings.gives_back else value

    def _bound(self, key: Key) -> Key | None:
        """The recorded key ``key`` stands for once its generated values are bound."""
        known = _map(key, self.bindings.translate)
        if known is not key and known in self.table:
            return known
        if not writes(key):
            return self._read(key, known)
        flat = _values(key)
        for rec in self.shaped.get(shape(key)) or ():
            if self.bindings.match(flat, _values(rec)):
                return rec
        return None

    def _read(self, key: Key, known: Key) -> Key | None:
        """A read asked as of now (``generated.Bindings.as_of_now``; ``known``: ``key``
        with its bound values translated), or of a fresh value no write of this run
        made, answered as the recording answered the same read of its fresh value when
        that answer (its next) held nothing (nil, 0, empty): a client checking that its
        new key is free before it writes it (Django's sessions: ``EXISTS``, then
        ``SET``). Nobody's data goes out; nothing is bound."""
        flat, live = _values(known), _values(key)

        def stands_for(rec: Key) -> bool:
            old = _values(rec)
            return self.bindings.as_of_now(flat, old) or (
                self._checked_free(rec) and self.bindings.fresh(live, old)
            )

        recs = self.shaped.get(shape(key)) or {}
        return generated.standing_read(recs, lambda r: bool(self.calls.get(r)), stands_for)

    def _checked_free(self, rec: Key) -> bool:
        """The recorded read ``rec`` found nothing for values the recording then wrote:
        its client checked them free. (A read of an unknown id that found nothing is no
        such check: a fresh id read so still misses, where the server may hold data.)"""
        return _empty(self._next(rec).reply) and self.written.holds(_values(rec))

    def _next(self, key: Key) -> Entry:
        """The entry ``take`` gives next for the recorded ``key``, not taken."""
        found = self.table[key]
        return found[min(self.calls.get(key, 0), len(found) - 1)]

    def reset(self) -> None:
        self.bindings.reset()
        # commands are redacted (and so learnt from: ``Bindings.learn``) afresh each run
        self.redacted_memo.clear()
        self.requests.clear()
        self.calls.clear()
        self.handshake.reset()  # connections are numbered again, as while recording

    def select_refusal(self, index: bytes) -> Value | None:
        """The recorded server's refusal of ``SELECT index`` (``index`` an integer): the
        one recorded, or that of a lower database (a server has databases 0 to
        ``databases`` - 1, so it refuses every index from the first it refused)."""
        refused = self.refused_select.get(index)
        if refused is not None:
            return refused
        n = int(index)
        for recorded, reply in self.refused_select.items():
            if recorded.isdigit() and int(recorded) <= n:
                return reply
        return None

    def nearest(self, key: Key) -> str | None:
        """The recorded command closest to ``key``: same command, most similar arguments,
        preferring the same database."""
        name = key[1]
        keys = self.by_command.get(name)
        if not keys:
            names = [k.decode("utf-8", "replace") for k in self.by_command]
            close = difflib.get_close_matches(name.decode("utf-8", "replace"), names, n=1)
            if not close:
                return None
            keys = self.by_command[close[0].encode("utf-8")]
        want = _flat(key)
        best = max(
            keys[:2000],
            key=lambda k: (
                difflib.SequenceMatcher(None, want, _flat(k)).ratio() + (k[0] == key[0]) * 0.01
            ),
        )
        # a nearest command in another database says so, even database 0
        return describe(best, always_db=best[0] != key[0])


def _flat(key: Key) -> str:
    return " ".join(
        "; ".join(" ".join(x.decode("utf-8", "replace") for x in c) for c in a)
        if isinstance(a, tuple)
        else a.decode("utf-8", "replace")
        for a in key[1:]
    )


def describe(key: Key, *, always_db: bool = False) -> str:
    db = key[0]
    if key[1] == b"EXEC":
        inner = "; ".join(label(c, 60) for c in key[2])
        text = f"MULTI … EXEC [{inner}]"
    else:
        text = label(key[1:])
    return text if db == 0 and not always_db else f"{text} (db {db})"


# ---------------------------------------------------------------- loading


def build_index(stored: Sequence[tuple[str, int, Mapping[str, Any]]]) -> RedisIndex:
    """Stored objects (file, line, object) -> the index; ``ConfigError`` names the object."""
    index = RedisIndex()
    last: dict[tuple[str, Any], tuple[Entry, float]] = {}
    for file, line, obj in stored:
        try:
            _add(index, last, file, obj)
        except StoreError as exc:
            raise ConfigError(str(exc), file=file, line=line, field=exc.field) from None
    return index


def _num(obj: Mapping[str, Any], key: str) -> float:
    v = obj.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise StoreError("expected a number >= 0", key)
    return float(v)


def _add(
    index: RedisIndex,
    last: dict[tuple[str, Any], tuple[Entry, float]],
    file: str,
    obj: Mapping[str, Any],
) -> None:
    conn = (file, obj.get("connection", 0))
    if isinstance(conn[1], int):
        index.handshake.seen(conn[1])
    at_ms = _num(obj, "at_ms")
    if "push" in obj:
        message = reply_from_json(obj["push"], "push")
        prev = last.get(conn)
        if prev is not None:
            entry, t_ms = prev
            entry.pushes.append((max(0.0, at_ms - t_ms) / 1000.0, message))
            last[conn] = (entry, at_ms)
        return
    args = command_args(dict(obj))
    if obj.get("noreply"):
        return  # the server answered nothing (CLIENT REPLY OFF): the mock answers nothing
    if obj.get("incomplete"):
        if is_blocking(args) and not obj.get("queued"):
            _hanging(index, obj, args)
        return
    db = _db(obj)
    if obj.get("queued"):
        _queued(index, db, args, obj.get("reply"))
        return
    if "replies" in obj:
        replies = obj["replies"]
        if not isinstance(replies, list) or not replies:
            raise StoreError("expected a non-empty list of replies", "replies")
        parts = [reply_from_json(r, f"replies[{i}]") for i, r in enumerate(replies)]
        reply: Value = ("_concat", parts)
    else:
        reply = reply_from_json(obj.get("reply"), "reply")
    if args[0] == b"EXEC":
        tx = obj.get("transaction", [])
        if not isinstance(tx, list):
            raise StoreError("expected a list of commands", "transaction")
        queued = [
            command_args({"command": c[0], "args": c[1:]}, f"transaction[{i}]")
            if isinstance(c, list) and c
            else _bad_tx(i)
            for i, c in enumerate(tx)
        ]
        key = exec_key(db, queued)
    else:
        key = match_key(db, args)
    if not index.redacted and any(b"<redacted:" in a for a in args[1:]):
        index.redacted = True
    latency_s = _num(obj, "latency_ms") / 1000.0
    entry = _entry(index, obj, key, reply, latency_s)
    if is_blocking(args):
        entry.delay_s = latency_s
    _answered_locally(index, obj.get("connection", 0), args, reply)
    if args[0] in _SUBSCRIPTION:
        entry.subscribed = _subscriptions_left(reply)
    index.add(key, entry)
    last[conn] = (entry, at_ms + latency_s * 1000.0)


def _db(obj: Mapping[str, Any]) -> int:
    db = obj.get("db", 0)
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise StoreError("expected a database number", "db")
    return db


def _entry(
    index: RedisIndex, obj: Mapping[str, Any], key: Key, reply: Value, latency_s: float
) -> Entry:
    """A recorded reply as an entry, named by its connection and place, its request
    written as the first entry of the same key's (one text for all of them)."""
    ident = f"{obj.get('connection', 0)}.{obj.get('seq', 0)}"
    same = index.table.get(key)
    return Entry(ident, same[0].hit.request if same else describe(key), reply, latency_s)


def _hanging(index: RedisIndex, obj: Mapping[str, Any], args: list[bytes]) -> None:
    """A blocking command still waiting when the recording ended (a worker's
    ``BLPOP q 0``): the server never answered it before its timeout, so neither does the
    mock, rather than hand out the last item it popped again and again. With a timeout,
    it times out as the server would have: a null after that long."""
    timeout = _block_timeout(args)
    if timeout is None or not 0 <= timeout < 1e9:
        return  # WAIT and the like: what the server would have said is not known
    key = match_key(_db(obj), args)
    # redis-server answers a blocked pop that timed out with a null array
    entry = _entry(index, obj, key, ("null", "array"), 0.0)
    entry.delay_s = timeout
    entry.hangs = timeout == 0
    index.add(key, entry)


_TIMEOUT_FIRST = frozenset({b"BLMPOP", b"BZMPOP"})  # BLMPOP timeout numkeys key…


def _block_timeout(args: list[bytes]) -> float | None:
    """Seconds a blocking pop waits (0: for ever), None if not a pop or unreadable."""
    name = args[0]
    try:
        if name in _BLOCK_WORD:
            words = [a.upper() for a in args]
            return float(args[words.index(b"BLOCK") + 1]) / 1000.0
        if name in _TIMEOUT_FIRST:
            return float(args[1])
        if name in BLOCKING and not name.startswith(b"WAIT"):
            return float(args[-1])
    except (ValueError, IndexError):
        pass
    return None


def _queued(index: RedisIndex, db: int, args: list[bytes], reply: Any) -> None:
    """A command queued inside MULTI: only a refusal (unknown command, wrong arity) is
    kept. The client got that error, not QUEUED, and its EXEC was aborted."""
    if isinstance(reply, dict) and reply.get("type") == "error":
        index.refused_in_multi[match_key(db, args)] = reply_from_json(reply, "reply")


def _answered_locally(index: RedisIndex, conn: Any, args: list[bytes], reply: Value) -> None:
    """What the mock needs from commands it answers itself."""
    index.handshake.learn(conn if isinstance(conn, int) else 0, args, reply)
    if args[0] == b"SELECT" and len(args) == 2 and reply[0] == "error":
        if b"Can't execute" not in bytes(reply[1]):  # (not refused for the context it came in)
            index.refused_select[args[1]] = reply  # a database the server does not have


def _bad_tx(i: int) -> list[bytes]:
    raise StoreError("expected [COMMAND, arg, ...]", f"transaction[{i}]")


_SUBSCRIPTION = frozenset(
    {b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE", b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE"}
)


def _subscriptions_left(reply: Value) -> int:
    parts = reply[1] if reply[0] == "_concat" else [reply]
    last = parts[-1] if parts else ("null", "")
    if last[0] in ("array", "push") and len(last[1]) == 3 and last[1][2][0] == "integer":
        return int(last[1][2][1])
    return -1

"""One client connection to a Redis mock: pure, bytes in, ``Output`` actions out.

What a client library sends to set a connection up (``HELLO``, ``AUTH`` with any
credentials, ``SELECT``, ``CLIENT SETNAME``/``SETINFO``, ``PING``) is answered here, from
the connection's own state and what the recorded server said to the same (its ``HELLO``
fields and client ids, its refusals: see ``handshake``); everything else is looked up
in the recording by database, command and arguments (see ``index``). ``MULTI`` queues
commands locally and ``EXEC`` is matched with the commands it runs. A matched
``SUBSCRIBE`` is followed by the messages that arrived after it while recording, with
their recorded spacing.

On a miss the client gets ``-DEVBOXMISS …`` naming the nearest recorded command, or,
with ``on_miss = "passthrough"``/``"record"``, the real server's reply: the connection
to it is set up the same way first (protocol version, database), and replies keep
the order the commands came in.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from devbox.wire import files
from devbox.wire.contract import (
    Forward,
    Miss,
    MockOptions,
    Output,
    RemoteProtocolError,
    Reply,
    Wake,
    timing_factor,
)
from devbox.wire.redis.index import Entry, Key, RedisIndex, describe, exec_key, match_key
from devbox.wire.redis.reply_mode import SUBSCRIBED_RESP2, ReplyMode
from devbox.wire.redis.resp import (
    CommandParser,
    ReplyParser,
    Value,
    encode_command,
    error,
    serialize,
)
from devbox.wire.redis.store import command_object, db_after_exec, redact_args, reply_to_json

_IDS = itertools.count(1)
_QUEUED = b"+QUEUED\r\n"
_OK = b"+OK\r\n"
_REDACT_MEMO = 8192
_REQUEST_MEMO = 8192  # distinct one-command reads remembered per mock
_REQUEST_MEMO_BYTES = 512  # longer reads are parsed every time
_TX_CONTROL = frozenset({b"EXEC", b"DISCARD", b"MULTI", b"WATCH", b"QUIT", b"RESET"})


class RedisMockConnection:
    def __init__(self, index: RedisIndex, options: MockOptions) -> None:
        self.index = index
        # a miss that goes to the real server is its own answer: no generated value is
        # bound then (``devbox.core.generated``)
        index.set_aside = options.on_miss == "fail"
        self.options = options
        self.serial = next(_IDS)  # unique in this process: names what it records live
        self.id = index.handshake.next_id()  # the client id the recorded server gave
        self.proto = 2
        self.db = 0
        self.name: bytes | None = None
        self.lib: dict[bytes, bytes] = {}
        self.multi: list[list[bytes]] | None = None
        self.subscribed = 0
        # waiting on a command the recorded server never answered: so is everything after
        self.blocked = False
        self._parser = CommandParser()
        # recorded arguments were redacted: live ones must be too, or nothing would match
        self._redact = files.redactor_of(options) if index.redacted else None
        self._factor = timing_factor(options.timing)
        self._push_ids = itertools.count(1)
        self._due: dict[int, Value] = {}  # pushed messages to send when woken
        # no recorded timing to keep and replies on: the hot paths may answer inline
        self._simple = self._factor is None
        self._mode = ReplyMode()
        self._forward = options.on_miss in ("passthrough", "record")
        self._record = options.on_miss == "record"
        # passthrough: the upstream connection's replies, matched in order to what we sent
        self._up_parser: ReplyParser | None = None
        self._waiting: deque[tuple[list[bytes], Key] | None] = deque()  # None: skip the reply
        self._slots: deque[list[bytes | None]] = deque()  # replies in the client's order
        self._stored: list[dict[str, Any]] = []
        self._seq = 0
        self._local: dict[bytes, Callable[[list[bytes]], bytes]] = {
            b"HELLO": self._hello,
            b"AUTH": lambda a: _OK,
            b"SELECT": self._select,
            b"CLIENT": self._client,
            b"PING": self._ping,
            b"ECHO": self._echo,
            b"QUIT": lambda a: _OK,
            b"RESET": self._reset,
            b"READONLY": lambda a: _OK,
            b"READWRITE": lambda a: _OK,
            b"WATCH": self._watch,
            b"UNWATCH": lambda a: _OK,
            b"MULTI": self._multi,
            b"DISCARD": self._discard,
        }

    # ------------------------------------------------------------ the contract

    def data_received(self, data: bytes) -> list[Output]:
        if self.blocked:
            return []  # redis-server reads on, and answers nothing before the blocked one
        hot = self._simple and self.multi is None and not self._slots
        fresh = not self._parser.buffered  # this read starts a command
        if hot and fresh:
            # the hottest path: these very bytes were one whole command before (a service
            # repeats its commands): no parsing, no key building
            seen = self.index.requests.get((self.db, data))
            if seen is not None:
                return self._one(list(seen[1]), seen[0])
        try:
            commands = self._parser.feed(data)
        except RemoteProtocolError as exc:
            return [Reply(error(str(exc.code or exc.message)), close=True)]
        if len(commands) == 1 and hot:
            # the hot path: one recorded command, nothing special about this connection
            args = commands[0]
            name = args[0].upper()
            if name not in self._local and name != b"EXEC":
                args[0] = name
                key = (self.db, *(args if self._redact is None else self._redacted(args)))
                if fresh and not self._parser.buffered and len(data) <= _REQUEST_MEMO_BYTES:
                    # the read was exactly this command, no more, no less
                    requests = self.index.requests
                    if len(requests) >= _REQUEST_MEMO:
                        requests.clear()
                    requests[(self.db, data)] = (key, tuple(args))
                return self._one(args, key)
        return self._many(commands)

    def _many(self, commands: list[list[bytes]]) -> list[Output]:
        out: list[Output] = []
        buf: list[bytes] = []
        local = self._local
        for args in commands:
            if self.blocked:
                break
            name = args[0].upper()
            if self._slots or self.multi is not None or not self._simple or name in local:
                self._answer(args, out, buf)
                continue
            # pipelined: a plain recorded reply joins the one write, inline
            args[0] = name
            if name == b"EXEC":
                self._answer(args, out, buf)
                continue
            key = (self.db, *(args if self._redact is None else self._redacted(args)))
            entry = self.index.take(key)
            if entry is not None and entry.plain:
                out.append(entry.hit)
                buf.append(entry.wire(self.proto))
            elif entry is None:
                self._miss(key, args, out, buf, None)
            else:
                self._serve(entry, out, buf)
        if buf:
            out.append(Reply(b"".join(buf)))
        return out

    def _one(self, args: list[bytes], key: Key) -> list[Output]:
        entry = self.index.take(key)
        if entry is not None and entry.plain:
            return [entry.hit, entry.answer(self.proto)]
        out: list[Output] = []
        buf: list[bytes] = []
        if entry is None:
            self._miss(key, args, out, buf, None)
        else:
            self._serve(entry, out, buf)
        self._flush(out, buf)
        return out

    def eof_received(self) -> list[Output]:
        return []

    def wake(self, token: int) -> list[Output]:
        message = self._due.pop(token, None)
        if message is None:
            return []
        return [Reply(serialize(self.index.given_back(message), self.proto))]

    def upstream_data(self, data: bytes) -> list[Output]:
        if self._up_parser is None:
            self._up_parser = ReplyParser()
        try:
            values = self._up_parser.feed(data)
        except RemoteProtocolError as exc:
            # a reply this mock cannot re-encode (nested too deeply): the client is told
            # so and the connection ends, rather than waiting forever for it
            text = f"DEVBOXMISS the real server's reply cannot be passed on: {exc}"
            return [Reply(error(text), close=True)]
        for value in values:
            if not self._waiting:
                break  # the server pushed something we did not ask for: not ours to pass on
            waiting = self._waiting.popleft()
            if waiting is None:
                continue  # the reply to a set-up command we sent ourselves
            args, key = waiting
            self._fill(serialize(value, self.proto))
            if self._record:
                self._store(args, key, value)
        out: list[Output] = []
        ready = []
        while self._slots and self._slots[0][0] is not None:
            ready.append(self._slots.popleft()[0])
        if ready:
            out.append(Reply(b"".join(b for b in ready if b is not None)))
        return out

    def take_stored(self) -> list[dict[str, Any]]:
        """Exchanges passed through in record mode, to append to the recording."""
        done, self._stored = self._stored, []
        return done

    # ------------------------------------------------------------ answering

    def _emit(self, data: bytes, out: list[Output], buf: list[bytes]) -> None:
        if self._slots:
            self._slots.append([data])
        else:
            buf.append(data)

    def _flush(self, out: list[Output], buf: list[bytes]) -> None:
        if buf:
            out.append(Reply(b"".join(buf)))
            buf.clear()

    def _answer(self, args: list[bytes], out: list[Output], buf: list[bytes]) -> None:
        name = args[0].upper()
        args[0] = name
        queued = self.multi is not None and name not in _TX_CONTROL
        if self._mode.silent(args, queued, self._refused):
            self._simple = False  # every command through here until replies are back on
            self._quietly(args, out)
            return
        self._simple = self._factor is None and not self._mode.quiet
        self._reply(args, out, buf)

    def _refused(self, name: bytes) -> bool:
        """A RESP2 connection with subscriptions: the server refuses all but a few
        commands (its error is in the recording, not answered here)."""
        return self.subscribed > 0 and self.proto == 2 and name not in SUBSCRIBED_RESP2

    def _quietly(self, args: list[bytes], out: list[Output]) -> None:
        """A command the client turned the reply of off: it changes the connection's
        state as it would (database, ``MULTI``, ``QUIT``) and nothing is sent. The
        recorder stored it without a reply (``noreply``), so nothing is looked up."""
        name = args[0]
        if self.multi is not None and name not in _TX_CONTROL:
            self.multi.append(args)
        elif name == b"EXEC":
            self.multi = None
        elif name in self._local and not self._refused(name):
            self._local[name](args)
            if name == b"QUIT":
                out.append(Reply(b"", close=True))

    def _reply(self, args: list[bytes], out: list[Output], buf: list[bytes]) -> None:
        name = args[0]
        if self.multi is not None and name not in _TX_CONTROL:
            self.multi.append(args)  # as the recorder kept it: the EXEC matches on it
            refused = self.index.refused_in_multi.get(match_key(self.db, self._redacted(args)))
            self._emit(_QUEUED if refused is None else serialize(refused, self.proto), out, buf)
            return
        local = self._local.get(name)
        if local is not None:
            if name == b"CLIENT" and (len(args) < 2 or args[1].upper() not in _CLIENT_LOCAL):
                pass  # CLIENT LIST, CLIENT KILL...: as recorded
            elif self._refused(name):
                pass  # the server's refusal, as recorded
            else:
                if name not in SUBSCRIBED_RESP2:
                    # its recorded reply used up: a repeat refused in RESP2's subscribed
                    # context then gets the recorded refusal, not this reply
                    self.index.take(match_key(self.db, self._redacted(args)))
                self._emit(local(args), out, buf)
                if name == b"QUIT":
                    self._flush(out, buf)
                    out.append(Reply(b"", close=True))
                return
        if name == b"EXEC":
            if self.multi is None and not self._refused(name):
                self._emit(b"-ERR EXEC without MULTI\r\n", out, buf)
                return
            queued, self.multi = self.multi or [], None
            key = exec_key(self.db, [self._redacted(c) for c in queued])
            entry = self.index.take(key)
            if entry is None:
                self._miss(key, [name], out, buf, queued)
                return
            self._serve(entry, out, buf)
            if entry.reply[0] == "array":  # a SELECT it ran changed the database
                self.db = db_after_exec(self.db, queued, entry.reply[1])
            return
        key = match_key(self.db, self._redacted(args))
        self._lookup(key, args, out, buf, None)

    def _redacted(self, args: list[bytes]) -> list[bytes]:
        if self._redact is None:
            return args
        # the text rules cost ~10 µs a command and a service repeats its commands: each
        # distinct command is redacted once per mock (bounded; redaction is deterministic)
        memo = self.index.redacted_memo
        whole = tuple(args)
        done = memo.get(whole)
        if done is None:
            if len(memo) >= _REDACT_MEMO:
                memo.clear()
            done = memo[whole] = redact_args(args, self._redact)
            for raw, red in zip(args, done, strict=True):
                if raw is not red and raw != red:
                    self.index.bindings.learn(raw, red)  # its replies give it back
        return list(done)

    def _lookup(
        self,
        key: Key,
        args: list[bytes],
        out: list[Output],
        buf: list[bytes],
        queued: list[list[bytes]] | None,
    ) -> None:
        entry = self.index.take(key)
        if entry is None:
            self._miss(key, args, out, buf, queued)
            return
        self._serve(entry, out, buf)

    def _serve(self, entry: Entry, out: list[Output], buf: list[bytes]) -> None:
        out.append(entry.hit)
        if entry.hangs:
            self.blocked = True
            return
        delay = entry.delay_s
        if self._factor is not None:
            delay = max(delay, entry.latency_s * self._factor)
        if delay > 0 and not self._slots:
            self._flush(out, buf)
            out.append(Reply(entry.wire(self.proto), delay_s=delay))
        else:
            self._emit(entry.wire(self.proto), out, buf)
        if entry.subscribed >= 0:
            self.subscribed = entry.subscribed
            if not self.subscribed:
                self._due.clear()  # unsubscribed from all: no message comes after
        if entry.pushes:
            self._pushes(entry, out, buf)

    def _pushes(self, entry: Entry, out: list[Output], buf: list[bytes]) -> None:
        """Each message is made when it is due (``wake``), not when the subscription is
        answered: one published in between (``PUBLISH`` with a fresh id) binds first."""
        self._flush(out, buf)
        at = 0.0
        for delay, message in entry.pushes:
            at += delay
            token = next(self._push_ids)
            self._due[token] = message
            out.append(Wake(at, token))

    def _miss(
        self,
        key: Key,
        args: list[bytes],
        out: list[Output],
        buf: list[bytes],
        queued: list[list[bytes]] | None,
    ) -> None:
        if self._redact is not None and queued is None and len(args) > 1:
            raw = match_key(self.db, args)
            if raw != key and (entry := self.index.take(raw)) is not None:
                # as recorded before a rule redacted what it holds (a random token read
                # whole since): the command as it came is the recording's
                self._serve(entry, out, buf)
                return
        request = describe(key)
        if self._forward:
            self._flush(out, buf)
            out.append(Forward(self._forward_bytes(args, key, queued), record=self._record))
            return
        nearest = self.index.nearest(key)
        explanation = f"no recorded reply for {request}"
        if key[0] not in self.index.dbs:
            explanation += f": nothing was recorded in db {key[0]}"
        explanation += (
            f"; nearest recorded: {nearest}" if nearest else "; nothing like it was recorded"
        )
        self._flush(out, buf)
        out.append(
            Miss(
                error("DEVBOXMISS " + explanation),
                request=request,
                explanation=explanation,
                nearest=nearest,
            )
        )

    def _forward_bytes(
        self, args: list[bytes], key: Key, queued: list[list[bytes]] | None
    ) -> bytes:
        parts = []
        if self._up_parser is None:
            # a fresh upstream connection: give it this connection's protocol and database
            self._up_parser = ReplyParser()
            if self.proto == 3:
                parts.append(encode_command([b"HELLO", b"3"]))
                self._waiting.append(None)
        if self.db:
            parts.append(encode_command([b"SELECT", b"%d" % self.db]))
            self._waiting.append(None)
        if queued is not None:
            parts.append(encode_command([b"MULTI"]))
            self._waiting.append(None)
            for c in queued:
                parts.append(encode_command(c))
                self._waiting.append(None)
        parts.append(encode_command(args))
        self._waiting.append((args if queued is None else [b"EXEC"], key))
        self._slots.append([None])
        return b"".join(parts)

    def _fill(self, data: bytes) -> None:
        for slot in self._slots:
            if slot[0] is None:
                slot[0] = data
                return

    def _store(self, args: list[bytes], key: Key, value: Value) -> None:
        self._seq += 1
        obj: dict[str, Any] = {"seq": self._seq, "db": self.db, "proto": self.proto}
        obj.update(command_object(args))
        if args[0] == b"EXEC" and len(key) > 2:
            obj["transaction"] = [
                [cmd["command"], *cmd["args"]] for cmd in (command_object(list(c)) for c in key[2])
            ]
        obj["reply"] = reply_to_json(value)
        self._stored.append(obj)
        self.index.add(key, Entry(f"live.{self.serial}.{self._seq}", describe(key), value, 0.0))

    # ------------------------------------------------------------ local commands

    def _hello(self, args: list[bytes]) -> bytes:
        refused = self.index.handshake.hello_refusal(args)
        if refused is not None:  # an old server (or a proxy): the client stays in RESP2
            return refused
        if len(args) > 1:
            try:
                proto = int(args[1])
            except ValueError:
                return b"-ERR Protocol version is not an integer or out of range\r\n"
            if proto not in (2, 3):
                return b"-NOPROTO unsupported protocol version\r\n"
            self.proto = proto
        i = 2
        name = self.name
        while i < len(args):
            opt = args[i].upper()
            if opt == b"SETNAME" and i + 1 < len(args):
                name = args[i + 1]
                i += 2
            elif opt == b"AUTH" and i + 2 < len(args):
                i += 3
            else:  # what redis-server answers, and then it changes nothing
                option = args[i].decode("utf-8", "replace")
                return error(f"ERR Syntax error in HELLO option '{option}'")
        self.name = name
        return serialize(self.index.handshake.hello_fields(self.proto, self.id), self.proto)

    def _select(self, args: list[bytes]) -> bytes:
        if len(args) != 2:
            return _arity(b"select")
        if not _INTEGER.fullmatch(args[1]):
            return b"-ERR value is not an integer or out of range\r\n"
        refused = self.index.select_refusal(args[1])
        if refused is not None:  # the recorded server has no such database
            return serialize(refused, self.proto)
        db = int(args[1])
        if not 0 <= db < 1 << 16:
            return b"-ERR DB index is out of range\r\n"
        self.db = db
        return _OK

    def _client(self, args: list[bytes]) -> bytes:
        refused = self.index.handshake.client_refusal(args)
        if refused is not None:  # SETINFO to a server before 7.2: as it answered
            return refused
        sub = args[1].upper()
        if sub == b"SETNAME":
            if len(args) != 3:
                return _arity(b"client|setname")
            if any(c < 33 or c > 126 for c in args[2]):
                return (
                    b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
                )
            self.name = args[2] or None
            return _OK
        if sub == b"REPLY":  # the mode itself is ReplyMode's
            if len(args) != 3:
                return _arity(b"client|reply")
            return _OK if args[2].upper() in (b"ON", b"OFF", b"SKIP") else b"-ERR syntax error\r\n"
        if sub == b"GETNAME":
            return serialize(("bulk", self.name) if self.name else ("null", "bulk"), self.proto)
        if sub == b"ID":
            return b":%d\r\n" % self.id
        if sub == b"SETINFO":
            if len(args) != 4:
                return _arity(b"client|setinfo")
            self.lib[args[2].upper()] = args[3]
            return _OK
        if sub == b"INFO":
            text = (
                b"id=%d addr=127.0.0.1:0 laddr=127.0.0.1:0 fd=8 name=%s db=%d multi=%d "
                b"resp=%d lib-name=%s lib-ver=%s\n"
                % (
                    self.id,
                    self.name or b"",
                    self.db,
                    -1 if self.multi is None else len(self.multi),
                    self.proto,
                    self.lib.get(b"LIB-NAME", b""),
                    self.lib.get(b"LIB-VER", b""),
                )
            )
            return serialize(("verbatim", (b"txt", text)), self.proto)
        return _OK  # NO-EVICT, NO-TOUCH: settings a mock has no use for

    def _ping(self, args: list[bytes]) -> bytes:
        if len(args) > 2:
            return _arity(b"ping")
        msg = args[1] if len(args) > 1 else b""
        if self.subscribed and self.proto == 2:
            return serialize(("array", [("bulk", b"pong"), ("bulk", msg)]), 2)
        if len(args) > 1:
            return b"$%d\r\n%s\r\n" % (len(msg), msg)
        return b"+PONG\r\n"

    def _echo(self, args: list[bytes]) -> bytes:
        if len(args) != 2:
            return b"-ERR wrong number of arguments for 'echo' command\r\n"
        return b"$%d\r\n%s\r\n" % (len(args[1]), args[1])

    def _reset(self, args: list[bytes]) -> bytes:
        self.proto, self.db, self.name, self.multi, self.subscribed = 2, 0, None, None, 0
        self._due.clear()  # no message of a subscription it left comes after
        return b"+RESET\r\n"

    def _watch(self, args: list[bytes]) -> bytes:
        if self.multi is not None:
            return b"-ERR WATCH inside MULTI is not allowed\r\n"
        return _OK

    def _multi(self, args: list[bytes]) -> bytes:
        if self.multi is not None:
            return b"-ERR MULTI calls can not be nested\r\n"
        self.multi = []
        return _OK

    def _discard(self, args: list[bytes]) -> bytes:
        if self.multi is None:
            return b"-ERR DISCARD without MULTI\r\n"
        self.multi = None
        return _OK


_INTEGER = re.compile(rb"-?(0|[1-9][0-9]{0,18})")  # what redis-server reads as a number


_BAD_NAME = b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"


def _arity(command: bytes) -> bytes:
    return b"-ERR wrong number of arguments for '%s' command\r\n" % command


# set-up a client library sends on every new connection (redis-py 7+ sends
# MAINT_NOTIFICATIONS): answered here, so it never depends on what was recorded
_CLIENT_LOCAL = frozenset(
    {
        b"SETNAME",
        b"GETNAME",
        b"ID",
        b"SETINFO",
        b"INFO",
        b"NO-EVICT",
        b"NO-TOUCH",
        b"REPLY",
        b"MAINT_NOTIFICATIONS",
    }
)

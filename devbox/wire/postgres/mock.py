"""The Postgres mock: a protocol-v3 server that answers from a recording.

Per connection it owns what a real backend owns: the start-up and authentication
exchange, prepared statements and portals (names are per connection: a client that
re-prepares on a fresh pooled connection gets the same answers), the transaction status
(``BEGIN`` -> in transaction, an error in a transaction -> failed until ``ROLLBACK``),
the skip-to-Sync rule after an error in an extended-query pipeline, and COPY sub-protocol
turns. Answers are looked up by normalised SQL plus parameter values; a miss is an
``ErrorResponse`` with SQLSTATE ``DX404`` naming the nearest recorded query.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from devbox.wire.contract import Forward, MockOptions, Output, RemoteProtocolError, Reply
from devbox.wire.contract import Miss as MissOut
from devbox.wire.postgres import auth, cursors, encode, turns
from devbox.wire.postgres import messages as m
from devbox.wire.postgres.answers import Answers, Portal, Statement
from devbox.wire.postgres.clock_params import timeless
from devbox.wire.postgres.recorder import PostgresRecorderConnection
from devbox.wire.postgres.sql import normalise, request_line, scoped
from devbox.wire.postgres.store import Index, room, wire_fields

_AT_ONCE_S = 0.001  # a notification recorded this soon after its answer came with it


class PostgresMockConnection(Answers):
    def __init__(self, index: Index, options: MockOptions) -> None:
        super().__init__(index, options)
        self.framer = m.Framer(startup=True)
        self.statements: dict[str, Statement] = {}
        self.portals: dict[str, Portal] = {}
        # match keys name cursors by ordinal, not name; and the open cursors' SQL
        self.ordinals = cursors.Ordinals()
        self.startup: dict[str, str] = {}
        self.after_copy: list[bytes] = []
        self.auth = str(options.match.get("auth") or self._recorded("auth") or "trust")
        self.password = str(options.match.get("password") or "")
        if self.auth == "scram-sha-256" and not self.password:
            # the mock cannot prove it knows a password it was never told; md5 accepts any
            self.auth = "md5"
        self._scram: tuple[str, str] | None = None
        # passthrough / record: a Postgres session is stateful (authentication, prepared
        # statements, transactions), so a connection goes to the real server as a whole
        self.relay: PostgresRecorderConnection | None = None
        if options.on_miss in ("passthrough", "record"):
            self.relay = PostgresRecorderConnection()

    def _recorded(self, name: str) -> Any:
        conns = self.index.connections
        return conns[-1].get(name) if conns else None

    # ------------------------------------------------------------ contract

    def data_received(self, data: bytes) -> list[Output]:
        if self.relay is not None:
            relay = self.relay.from_client(data)
            done: list[Output] = []
            if relay.to_client:
                done.append(Reply(relay.to_client))
            if relay.to_upstream:
                done.append(Forward(relay.to_upstream, record=self.options.on_miss == "record"))
            return done
        pending, failures = None, self.failures
        self.gave_back = False
        if self.phase == "ready" and self.status != "E" and not self.skipping and self.framer.empty:
            kept, pending = turns.lookup(self.index, self.statements, self.status, data)
            if kept is not None:
                self.portals.pop("", None)  # as the Sync that ends the turn does
                return kept
        out: list[bytes] = []
        events: list[Output] = []
        try:
            for typ, body in self.framer.feed(data):
                # the hot path first: an extended-query turn on a ready connection
                if self.phase == "ready" and not self.skipping:
                    if typ == b"B":
                        self._bind(m.parse_bind(body), out, events)
                        continue
                    if typ == b"E":
                        self._execute(*m.parse_execute(body), out, events)
                        continue
                    if typ == b"S":
                        self.portals.pop("", None)
                        out.append(m.ready(self.status))
                        continue
                    if typ == b"D":  # libpq describes the portal of every prepared query
                        self._describe(*m.parse_named(body), out, events)
                        continue
                self._message(typ, body, out, events)
                if self.phase == "closed":
                    break
        except RemoteProtocolError as exc:
            # an error that ends the session is FATAL, as the server's (a bad SCRAM message)
            out.append(m.error(str(exc.code or "08P01"), exc.message, severity="FATAL"))
            self.phase = "closed"
        except (ValueError, IndexError, UnicodeDecodeError, struct.error) as exc:
            # struct.error: a message shorter than its fields (parse_bind reads by offsets)
            bad = f"devbox mock: malformed message: {exc}"
            out.append(m.error("08P01", bad, severity="FATAL"))
            self.phase = "closed"
        if self.notify and out and out[-1][:1] == b"Z":
            # a notification that came with the answer (the session's own NOTIFY, sent at
            # commit) goes before its ReadyForQuery, as the server sends it: after it, a
            # client that polls once (PHP's pg_get_notify) found nothing
            at_once = 0
            while at_once < len(self.notify) and self.notify[at_once][0] <= _AT_ONCE_S:
                at_once += 1
            out[-1:-1] = [data for _delay, data in self.notify[:at_once]]
            self.notify = self.notify[at_once:]
        result: list[Output] = [*events]
        if out or self.phase == "closed":
            result.append(Reply(b"".join(out), close=self.phase == "closed"))
        # a turn whose rows carried this run's values is no bytes to answer another with
        kept_ok = self.failures == failures and not self.notify and not self.gave_back
        if pending is not None and kept_ok:
            turns.keep(pending, self.index, result, self.status)
        if self.notify and self.phase != "closed":
            # after the answers, each after its recorded delay (the loop waits in order)
            result.extend(Reply(data, delay_s=delay) for delay, data in self.notify)
            self.notify = []
        return result

    def eof_received(self) -> list[Output]:
        return []

    def wake(self, token: int) -> list[Output]:
        return []  # one request after another: delays are the loop's, in order

    def upstream_data(self, data: bytes) -> list[Output]:
        if self.relay is None:
            return []
        return [Reply(self.relay.from_upstream(data).to_client)]

    def take_stored(self) -> list[dict[str, Any]]:
        """Record mode: the queries that went to the real server (the fleet stores them)."""
        if self.relay is None or self.options.on_miss != "record":
            return []
        return self.relay.take_stored()

    # ------------------------------------------------------------ dispatch

    def _message(self, typ: bytes, body: bytes, out: list[bytes], ev: list[Output]) -> None:
        if self.phase == "startup":
            self._startup(typ, body, out)
        elif self.phase.startswith("auth"):
            self._auth(typ, body, out)
        elif typ == b"X":
            self.phase = "closed"
        elif self.phase == "copy-in":
            self._copy_in(typ, body, out)
        elif self.skipping and typ != b"S":
            return
        elif typ == b"Q":
            self._query(m.Reader(body).cstr(), out, ev)
        elif typ == b"P":
            self._parse(m.parse_parse(body), out)
        elif typ == b"B":
            self._bind(m.parse_bind(body), out, ev)
        elif typ == b"D":
            self._describe(*m.parse_named(body), out, ev)
        elif typ == b"E":
            self._execute(*m.parse_execute(body), out, ev)
        elif typ == b"C":
            kind, name = m.parse_named(body)
            (self.statements if kind == "S" else self.portals).pop(name, None)
            out.append(m.CLOSE_COMPLETE)
        elif typ == b"S":
            self.skipping = False
            self.portals.pop("", None)
            out.append(m.ready(self.status))
        elif typ == b"H":
            pass
        elif typ in (b"d", b"c", b"f"):
            pass  # COPY data after the COPY was refused: the server ignores it too
        elif typ == b"F":
            # a fastpath FunctionCall (libpq's large objects) stands alone, as a simple
            # query does: no Sync follows, so the error is followed by ReadyForQuery here
            # (skipping until a Sync hung the client for good)
            self._fail(m.error("0A000", "devbox mock: FunctionCall (fastpath) not supported"), out)
            self.skipping = False
            out.append(m.ready(self.status))
        else:
            self._fail(m.error("0A000", f"devbox mock: message {typ!r} not supported"), out)

    # ------------------------------------------------------------ start-up and auth

    def _startup(self, typ: bytes, body: bytes, out: list[bytes]) -> None:
        if typ in (m.SSL, m.GSSENC):
            out.append(b"N")  # no TLS, no GSS encryption: the client continues in clear
            return
        if typ == m.CANCEL:
            # nothing runs long enough here to cancel; a real server closes the same way
            self.phase = "closed"
            return
        self.startup = m.parse_startup(body)
        # libpq's default database is the user's name, as the server's
        self.scope = self.index.scope(self.startup.get("database") or self.startup.get("user"))
        if self.auth == "cleartext":
            out.append(m.auth(3))
            self.phase = "auth-password"
        elif self.auth == "md5":
            out.append(m.auth(5, os.urandom(4)))
            self.phase = "auth-password"
        elif self.auth == "scram-sha-256":
            out.append(m.auth(10, m.cstr("SCRAM-SHA-256") + b"\x00"))
            self.phase = "auth-sasl"
        else:
            self._welcome(out)

    def _auth(self, typ: bytes, body: bytes, out: list[bytes]) -> None:
        if typ != b"p":
            raise RemoteProtocolError("expected a password message", code="08P01")
        if self.phase == "auth-password":
            self._welcome(out)
        elif self.phase == "auth-sasl":
            self._scram = auth.scram_first(body)
            out.append(m.auth(11, self._scram[1].encode()))
            self.phase = "auth-sasl-final"
        else:
            assert self._scram is not None
            out.append(m.auth(12, auth.scram_final(body, self._scram, self.password)))
            self._welcome(out)

    def _welcome(self, out: list[bytes]) -> None:
        out.append(m.auth(0))
        # what the server told a recorded connection that started up as this one did
        for k, v in self.index.parameter_status(self.startup, self.redact).items():
            out.append(m.parameter_status(k, v))
        out.append(m.backend_key(os.getpid() & 0x7FFFFFFF, int.from_bytes(os.urandom(4)) >> 1))
        out.append(m.ready("I"))
        self.phase = "ready"

    # ------------------------------------------------------------ simple query

    def _query(self, sql: str, out: list[bytes], ev: list[Output]) -> None:
        sql = self._live_sql(sql)
        key, saved = self.ordinals.attempt(sql)
        norm = scoped(key, self.scope)
        if not norm:
            out.append(m.EMPTY_QUERY)
            out.append(m.ready(self.status))
            return
        if self._aborted(norm, out):
            self.ordinals.undo(saved)  # a failed DECLARE opens no cursor (as stored)
            out.append(m.ready(self.status))
            return
        obj = self._lookup(norm, (), sql, None, out, ev)
        if cursors.failed(obj):
            self.ordinals.undo(saved)
        if obj is None:
            # a simple query's error ends with ReadyForQuery: nothing to skip until a Sync
            # (skipping here left the connection deaf to every later query)
            self.skipping = False
        else:
            segments = self._results(obj, None, out)
            if segments is not None:
                self.after_copy = segments
                self.phase = "copy-in"
                return
        out.append(m.ready(self.status))

    def _copy_in(self, typ: bytes, body: bytes, out: list[bytes]) -> None:
        if typ in (b"d", b"H", b"S"):
            return
        self.phase = "ready"
        if typ == b"c":
            out.extend(self.after_copy)
        elif typ == b"f":
            reason = m.Reader(body).cstr()
            self._fail(m.error("57014", f"COPY from stdin failed: {reason}"), out)
            if self.after_copy[-1:] and self.after_copy[-1][:1] == b"Z":
                # a simple query's COPY ends at its ReadyForQuery (an extended one's skips
                # to the Sync): skipping on, the connection ignored every later query
                self.skipping = False
                out.append(m.ready(self.status))
        self.after_copy = []

    # ------------------------------------------------------------ extended query

    def _parse(self, p: m.Parse, out: list[bytes]) -> None:
        # a Parse runs nothing: a DECLARE opens its cursor when executed (``_bind``)
        sql = self._live_sql(p.sql)
        norm = scoped(self.ordinals.key(sql, run=False), self.scope)
        if self._aborted(norm, out):
            # the server refuses the Parse itself in a failed transaction: a client that
            # describes the statement before it binds (asyncpg) gets 25P02, not a miss
            self.skipping = True
            return
        err = self.index.parse_error(norm)  # the nth Parse of it: the nth recorded outcome
        if err is not None:
            self._fail(m.fields(b"E", wire_fields(err["results"][0]["error"])), out)
            return
        oids = p.oids
        if not oids or 0 in oids:
            described = self.index.describe(norm)
            rec = tuple(described.get("param_types") or ()) if described else ()
            if rec:
                oids = tuple(o or (rec[i] if i < len(rec) else 0) for i, o in enumerate(oids))
                oids = oids + tuple(rec[len(oids) :])
        self.statements[p.name] = Statement(sql, norm, oids, cursors.names_cursor(sql))
        out.append(m.PARSE_COMPLETE)

    def _bind(self, b: m.Bind, out: list[bytes], ev: list[Output]) -> None:
        stmt = self.statements.get(b.statement)
        if stmt is None:
            self._fail(m.error("26000", f'prepared statement "{b.statement}" does not exist'), out)
            return
        saved = None
        if stmt.cursor:  # this run's cursor: a DECLARE run again opens a new one
            cursor_key, saved = self.ordinals.attempt(stmt.sql)
            stmt = Statement(stmt.sql, scoped(cursor_key, self.scope), stmt.oids, cursor=True)
        if self._aborted(stmt.norm, out):  # a server refuses the Bind itself
            # the DECLARE opens no cursor: the recording's failed at its Parse (25P02)
            self.ordinals.undo(saved)
            self.skipping = True
            return
        values, key = turns.bind_values(b.values, b.param_formats, stmt.oids)
        key = timeless(stmt.norm, key)  # as param_key makes a recorded one
        portal = Portal(stmt, key, values, b.result_formats, undo=saved)
        if self.index.stage((stmt.norm, key)) == "bind":
            # the server failed the Bind (planning folded a constant: 1 / $1 with 0), so
            # the error comes instead of BindComplete, as recorded
            obj = self._lookup(stmt.norm, key, stmt.sql, portal, out, ev)
            if cursors.failed(obj):
                self.ordinals.undo(saved)
            if obj is not None:
                self._results(obj, b.result_formats, out, portal)
            return
        if len(b.result_formats) > 1:  # one per column: the server checks the count
            answer = self.index.describe(stmt.norm, (stmt.norm, key))
            wrong = encode.format_count_error(answer, b.result_formats)
            if wrong is not None:
                self.ordinals.undo(saved)
                self._fail(wrong, out)
                return
        self.portals[b.portal] = portal
        out.append(m.BIND_COMPLETE)

    def _describe(self, kind: str, name: str, out: list[bytes], ev: list[Output]) -> None:
        if kind == "S":
            stmt = self.statements.get(name)
            if stmt is None:
                self._fail(m.error("26000", f'prepared statement "{name}" does not exist'), out)
                return
            obj = self.index.described.get(stmt.norm) or self.index.describe(stmt.norm)
            if obj is None:
                self._miss_describe(stmt, (), out, ev)
                return
            out.append(m.parameter_description(tuple(obj.get("param_types") or stmt.oids)))
            out.append(self._row_description(obj, ()))
            return
        portal = self.portals.get(name)
        declared = self.ordinals.sql.get(name) if portal is None else None
        if declared is not None:  # a DECLAREd cursor: as recorded
            obj = self.index.cursor_described.get(scoped(cursors.anonymous(declared), self.scope))
            if obj is None:
                stmt = Statement(declared, scoped(normalise(declared), self.scope), ())
                self._miss_describe(stmt, (), out, ev)
                return
            out.append(self._row_description(obj, None))
            return
        if portal is None:
            self._fail(m.error("34000", f'portal "{name}" does not exist'), out)
            return
        obj = self.index.describe(portal.stmt.norm, (portal.stmt.norm, portal.key))
        if obj is None:
            self._miss_describe(portal.stmt, portal.key, out, ev)
            return
        out.append(self._row_description(obj, portal.result_formats))

    def _miss_describe(self, stmt: Statement, key: Any, out: list[bytes], ev: list[Any]) -> None:
        why, nearest = self.index.explain(stmt.norm, ())  # reported, as _lookup's misses are
        ev.append(MissOut(b"", request_line(stmt.sql, key), why, nearest))
        self._fail(self._miss_error(stmt.sql, why, nearest), out)

    def _row_description(self, obj: dict[str, Any], formats: tuple[int, ...] | None) -> bytes:
        key = (id(obj), formats)
        found = self.index.descriptions.get(key)  # made once per recorded answer and formats
        if found is None:
            cols = encode.columns(obj)
            found = m.NO_DATA if cols is None else encode.description(cols, formats)
            room(self.index, self.index.descriptions)[key] = found
        return found

    def _execute(self, name: str, max_rows: int, out: list[bytes], ev: list[Output]) -> None:
        portal = self.portals.get(name)
        if portal is None:
            self._fail(m.error("34000", f'portal "{name}" does not exist'), out)
            return
        if name:  # a FETCH or MOVE may name it (``Ordinals.executed``)
            self.ordinals.executed(name)
        if portal.rest is not None:
            self._send_rows(portal, portal.rest[0], portal.rest[1], max_rows, out)
            return
        if not portal.stmt.norm:
            out.append(m.EMPTY_QUERY)
            return
        if self._aborted(portal.stmt.norm, out):
            self.ordinals.undo(portal.undo)
            portal.undo = None
            self.skipping = True
            return
        obj = self._lookup(portal.stmt.norm, portal.key, portal.stmt.sql, portal, out, ev)
        if portal.undo is not None:  # a DECLARE: it opened its cursor unless it failed
            if cursors.failed(obj):
                self.ordinals.undo(portal.undo)
            portal.undo = None
        if obj is None:
            return
        # the common case (rows and a tag, fetched whole): encoded once per recorded answer
        # and result formats, then sent as stored bytes
        key = (id(obj), portal.result_formats)
        cached = None if max_rows else self.index.encoded.get(key)
        if cached is None:
            if max_rows or not encode.plain(obj):
                self._results(obj, portal.result_formats, out, portal, max_rows)
                return
            part: list[bytes] = []
            self._results(obj, portal.result_formats, part, portal, 0)
            # an error, or rows with this run's values (in this read: caching is only
            # work saved, so one that gave back earlier in it keeps this out too)
            if self.skipping or self.gave_back:
                out.extend(part)
                return
            cached = b"".join(part)
            room(self.index, self.index.encoded)[key] = cached
        else:
            self._track(obj["results"][0].get("tag", ""), obj["sql"])
        out.append(cached)

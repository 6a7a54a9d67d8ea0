"""The Postgres recorder: watches a relayed connection and stores each query readably.

The relay passes every byte on unchanged except ``SSLRequest`` and ``GSSENCRequest``,
which the recorder answers ``N`` itself (it must read the traffic, so the client
continues in clear; the real server never sees the request). Authentication is relayed
as it is, whatever method the server picks; the password is never stored.

Backend messages answer frontend messages in order, so the recorder keeps a queue of
what the client asked (Parse, Bind, Describe, Execute, Close, Sync, Query) and pops it as
the answers arrive; after an ``ErrorResponse`` in an extended-query pipeline the server
skips to the next Sync, and so does the queue.

A ``NotificationResponse`` (LISTEN/NOTIFY) is stored as its own object, tied to the last
query the connection finished before it arrived and the time since that query (or the
previous notification): a mock that answers that query sends the notification after the
same delay.
"""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devbox.wire.contract import Relay, RemoteProtocolError
from devbox.wire.postgres import cursors, types
from devbox.wire.postgres import messages as m
from devbox.wire.postgres.store import readable_fields

_CONN_IDS = itertools.count(1)
_AUTH = {0: "trust", 3: "cleartext", 5: "md5", 10: "scram-sha-256"}


@dataclass(slots=True)
class _Stmt:
    sql: str
    oids: tuple[int, ...]
    columns: list[m.Column] | None = None
    # a Describe of it was answered / an Execute of it was asked / it is gone (closed,
    # replaced, the connection ended): one described and never executed is stored
    # when it goes (``_drop``), as nothing else tells the mock its description
    described: bool = False
    executed: bool = False
    dropped: bool = False


@dataclass(slots=True)
class _Portal:
    stmt: _Stmt
    bind: m.Bind
    columns: list[m.Column] | None = None


@dataclass(slots=True)
class _Query:
    """One stored query being filled in by the server's answers."""

    protocol: str
    sql: str
    statement: str = ""
    portal: _Portal | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    current: dict[str, Any] | None = None
    columns: list[m.Column] | None = None
    notices: list[dict[str, str]] = field(default_factory=list)
    # where each notice came: [results before it, rows of the current one before it]
    notices_at: list[list[int]] = field(default_factory=list)
    status_changes: list[list[str]] = field(default_factory=list)
    stage: str = ""


@dataclass(frozen=True, slots=True)
class _Cursor:
    """A Describe of a cursor a DECLARE opened (not a Bind's portal): its answer is
    stored under the DECLARE's SQL, where the mock looks for it."""

    name: str
    sql: str


class PostgresRecorderConnection:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_at = clock()  # when the last query finished or notification came
        self.conn = next(_CONN_IDS)
        self.seq = 0
        # the seq of the last query answered (what a notification follows): a stored
        # Describe of a statement takes a seq too, but the mock replays no notification
        # after it
        self.answered = 0
        self.client = m.Framer(startup=True)
        self.server = m.Framer(startup=False)
        self.statements: dict[str, _Stmt] = {}
        self.portals: dict[str, _Portal] = {}
        # the cursors this connection's DECLAREs opened (``sql``: name -> the declaring
        # SQL), followed as the mock and the store follow them
        self.ordinals = cursors.Ordinals()
        # what the server still has to answer, in order: (what, payload)
        self.pending: list[tuple[str, Any]] = []
        self.stored: list[dict[str, Any]] = []
        self.startup: dict[str, str] = {}
        self.server_params: dict[str, str] = {}
        self.auth = "trust"
        self.ready_seen = False
        self.copy_in: _Query | None = None

    # ------------------------------------------------------------ contract

    def from_client(self, data: bytes) -> Relay:
        was_startup = self.client.startup
        messages = self.client.feed(data)
        to_client = b""
        if was_startup:
            parts = []
            for typ, body in messages:
                if typ in (m.SSL, m.GSSENC):
                    to_client += b"N"
                elif typ in (m.STARTUP, m.CANCEL):
                    code = b"" if typ == m.STARTUP else m._I32.pack(m.CANCEL_REQUEST)
                    parts.append(m._I32.pack(len(body) + len(code) + 4) + code + body)
                else:
                    parts.append(m.msg(typ, body))
            forward = b"".join(parts)
        else:
            forward = data
        for typ, body in messages:
            try:
                self._client_message(typ, body)
            except (struct.error, ValueError, IndexError, RemoteProtocolError):
                # shorter than its fields: the server answers 08P01 and skips to Sync
                # (``_error``); raising here ended the relayed connection instead
                self.pending.append(("malformed", None))
        return Relay(to_upstream=forward, to_client=to_client)

    def from_upstream(self, data: bytes) -> Relay:
        for typ, body in self.server.feed(data):
            self._server_message(typ, body)
        return Relay(to_client=data)

    def take_stored(self) -> list[dict[str, Any]]:
        out, self.stored = self.stored, []
        return out

    def close(self) -> list[dict[str, Any]]:
        for what, q in self.pending:
            if what in ("execute", "query") and isinstance(q, _Query):
                self._finish(q, incomplete=True)
        self.pending = []
        for stmt in self.statements.values():
            self._drop(stmt)
        return self.take_stored()

    # ------------------------------------------------------------ client side

    def _client_message(self, typ: bytes, body: bytes) -> None:
        if typ == m.STARTUP:
            self.startup = m.parse_startup(body)
        elif typ == b"Q":
            sql = m.Reader(body).cstr()
            self.ordinals.run(sql)
            self.pending.append(("query", _Query("simple", sql)))
        elif typ == b"P":
            p = m.parse_parse(body)
            stmt = _Stmt(p.sql, p.oids)
            self._drop(self.statements.get(p.name))
            self.statements[p.name] = stmt
            self.pending.append(("parse", (p.name, stmt)))
        elif typ == b"B":
            b = m.parse_bind(body)
            stmt = self.statements.get(b.statement) or _Stmt("", ())
            portal = _Portal(stmt, b)
            self.portals[b.portal] = portal
            self.pending.append(("bind", portal))
        elif typ == b"D":
            kind, name = m.parse_named(body)
            target: Any = self.statements.get(name) if kind == "S" else self.portals.get(name)
            declared = self.ordinals.sql.get(name) if target is None and kind == "P" else None
            if declared is not None:
                target = _Cursor(name, declared)
            self.pending.append(("describe", target))
        elif typ == b"E":
            name, _ = m.parse_execute(body)
            found = self.portals.get(name)
            if found is not None:
                found.stmt.executed = True
                # a DECLARE opens its cursor each time it runs, not at its Parse
                self.ordinals.run(found.stmt.sql)
            sql = found.stmt.sql if found else ""
            stmt_name = found.bind.statement if found else ""
            self.pending.append(("execute", _Query("extended", sql, stmt_name, found)))
        elif typ == b"C":
            kind, name = m.parse_named(body)
            if kind == "S":
                self._drop(self.statements.pop(name, None))
            else:
                self.portals.pop(name, None)
            self.pending.append(("close", None))
        elif typ == b"S":
            self.pending.append(("sync", None))
        elif typ == b"d" and self.copy_in is not None and self.copy_in.current is not None:
            self.copy_in.current.setdefault("data", []).append(_text(body))

    # ------------------------------------------------------------ server side

    def _head(self) -> tuple[str, Any]:
        return self.pending[0] if self.pending else ("none", None)

    def _server_message(self, typ: bytes, body: bytes) -> None:
        what, item = self._head()
        if typ == b"R":
            code = m.Reader(body).i32()
            if code in _AUTH and code != 0:
                self.auth = _AUTH[code]
        elif typ == b"S":
            name, value = (lambda r: (r.cstr(), r.cstr()))(m.Reader(body))
            if not self.ready_seen:
                self.server_params[name] = value
            elif isinstance(item, _Query):
                item.status_changes.append([name, value])
        elif typ == b"Z":
            if not self.ready_seen:
                self.ready_seen = True
                self._store_connection()
                return
            while self.pending:
                what, item = self.pending.pop(0)
                if what == "query":
                    self._finish(item)
                    break
                if what == "sync":
                    break
        elif typ in (b"1", b"2", b"3"):
            self._pop()
        elif typ == b"t":
            if what == "describe" and isinstance(item, _Stmt):
                item.oids = m.parse_parameter_description(body)
        elif typ == b"T":
            cols = m.parse_row_description(body)
            if what == "describe":
                if isinstance(item, _Cursor):
                    self._store_cursor(item, cols)
                elif item is not None:
                    item.columns = cols
                if isinstance(item, _Stmt):
                    self._described(item)
                self._pop()
            elif isinstance(item, _Query):
                item.columns = cols
                item.current = {"columns": _columns(cols), "rows": []}
        elif typ == b"n":
            if what == "describe":
                if isinstance(item, _Stmt):
                    self._described(item)
                self._pop()
        elif typ == b"D":
            if isinstance(item, _Query):
                self._row(item, m.parse_data_row(body))
        elif typ in (b"C", b"I", b"s"):
            if isinstance(item, _Query):
                if item.protocol == "extended" and item.current is None and typ != b"I":
                    if self._ensure_current(item, 0)["columns"] is None:
                        item.current = None
                res = item.current or {}
                if typ == b"C":
                    res["tag"] = m.Reader(body).cstr()
                elif typ == b"I":
                    res = {"empty": True}
                else:
                    res["suspended"] = True
                item.results.append(res)
                item.current = None
                item.columns = None
                if item.protocol == "extended":
                    self._pop()
                    self._finish(item)
                self.copy_in = None
        elif typ == b"E":
            self._error(readable_fields(m.parse_fields(body)))
        elif typ == b"N":
            notice = readable_fields(m.parse_fields(body))
            if isinstance(item, _Query):
                item.notices.append(notice)
                rows = item.current.get("rows") if item.current is not None else None
                item.notices_at.append([len(item.results), len(rows or ())])
        elif typ in (b"G", b"H") and isinstance(item, _Query):
            overall, fmts = m.parse_copy_response(body)
            item.current = {
                "copy": "in" if typ == b"G" else "out",
                "format": overall,
                "column_formats": list(fmts),
                "data": [],
            }
            if typ == b"G":
                self.copy_in = item
        elif typ == b"d" and isinstance(item, _Query) and item.current is not None:
            item.current.setdefault("data", []).append(_text(body))
        elif typ == b"A":
            self._notification(body)

    def _notification(self, body: bytes) -> None:
        r = m.Reader(body)
        pid, channel, payload = r.i32(), r.cstr(), r.cstr()
        now = self._clock()
        # a simple query still running (its own NOTIFY, delivered at commit): the
        # notification belongs to that query, which is stored at its ReadyForQuery
        running = self._head()[0] == "query"
        self.stored.append(
            {
                "type": "notification",
                "conn": self.conn,
                "after_seq": self.seq + 1 if running else self.answered,
                "after_ms": 0.0 if running else round(max(0.0, now - self._last_at) * 1e3, 3),
                "pid": pid,
                "channel": channel,
                "payload": payload,
            }
        )
        self._last_at = now

    def _pop(self) -> None:
        if self.pending:
            self.pending.pop(0)

    def _error(self, err: dict[str, str]) -> None:
        what, item = self._head()
        self.copy_in = None
        if isinstance(item, _Query) and item.current is not None:
            # rows or COPY data the server sent before the error (a division by zero in
            # the third row): the client got them, so the mock sends them before it
            item.current["interrupted"] = True
            item.results.append(item.current)
            item.current = None
        if what == "query" and isinstance(item, _Query):
            item.results.append({"error": err})
            return  # the simple query ends at its ReadyForQuery
        if what in ("parse", "describe", "bind", "execute"):
            if isinstance(item, _Query):
                q = item
            elif isinstance(item, _Cursor):  # a cursor gone by now: no statement failed
                q = _Query("extended", "", stage=what)
            else:
                stmt = item[1] if what == "parse" else getattr(item, "stmt", item)
                q = _Query("extended", getattr(stmt, "sql", ""), stage=what)
                if what == "bind" and isinstance(item, _Portal):
                    q.portal = item
            q.results.append({"error": err})
            self._finish(q)
        # the server skips everything up to the next Sync
        while self.pending and self.pending[0][0] != "sync":
            self.pending.pop(0)

    def _ensure_current(self, q: _Query, n: int) -> dict[str, Any]:
        if q.current is None:
            cols = q.columns or (q.portal.columns or q.portal.stmt.columns if q.portal else None)
            q.current = {"columns": _columns(cols) if cols else None, "rows": []}
        if "_spec" not in q.current:
            q.current["_spec"] = self._spec(q, n)
        return q.current

    def _row(self, q: _Query, values: list[bytes | None]) -> None:
        current = self._ensure_current(q, len(values))
        spec = current["_spec"]
        current["rows"].append(
            [types.decode(v, *spec[i]) if i < len(spec) else _text(v) for i, v in enumerate(values)]
        )

    def _spec(self, q: _Query, n: int) -> list[tuple[int, int]]:
        """(type oid, format) of each column of an extended query's rows: the portal's
        description, else the statement's with the formats Bind asked for."""
        cols = q.columns
        if q.portal is not None:
            cols = cols or q.portal.columns or q.portal.stmt.columns
            fmts = q.portal.bind.result_formats
            spec = [(c.type_oid, m.result_format(fmts, i)) for i, c in enumerate(cols or [])] or [
                (0, m.result_format(fmts, i)) for i in range(n)
            ]
            if q.current is not None and not cols:
                # untyped rows (the client never asked for a description): the format of
                # each value is all the mock can know of it (``encode.result_columns``)
                q.current["formats"] = ["binary" if f else "text" for _oid, f in spec]
            if q.current is not None and cols:
                described = _columns(cols)
                for column, (_oid, fmt) in zip(described, spec, strict=False):
                    # the format Bind asked for, not the statement's (dataclasses.replace
                    # per column cost more than the rest of the query's recording)
                    column["format"] = "binary" if fmt else "text"
                q.current["columns"] = described
            return spec
        return [(c.type_oid, c.format) for c in cols or []] or [(0, 0)] * n

    # ------------------------------------------------------------ stored objects

    def _store_connection(self) -> None:
        self.stored.append(
            {
                "type": "connection",
                "conn": self.conn,
                "user": self.startup.get("user", ""),
                "database": self.startup.get("database", self.startup.get("user", "")),
                "auth": self.auth,
                "startup": {k: v for k, v in self.startup.items() if k not in ("user", "database")},
                "server": self.server_params,
            }
        )

    def _store_cursor(self, cursor: _Cursor, cols: list[m.Column]) -> None:
        """The RowDescription a Describe of a DECLAREd cursor got, under the DECLARE's
        SQL ("describe": "cursor" keeps it apart from the DECLARE's own answers)."""
        self.seq += 1
        self._last_at = self._clock()
        self.stored.append(
            {
                "type": "query",
                "conn": self.conn,
                "seq": self.seq,
                "protocol": "extended",
                "describe": "cursor",
                "cursor": cursor.name,
                "sql": cursor.sql,
                "results": [{"columns": _columns(cols)}],
            }
        )

    def _described(self, stmt: _Stmt) -> None:
        stmt.described = True
        if stmt.dropped:  # gone before its Describe was answered (a pipelined Parse)
            self._drop(stmt)

    def _drop(self, stmt: _Stmt | None) -> None:
        """A statement is gone: one described but never executed is stored now. Stored
        at its Describe, asyncpg's every prepared query would be stored twice."""
        if stmt is None or stmt.executed:
            return
        stmt.dropped = True
        if stmt.described:
            stmt.executed = True  # stored once
            self._store_statement(stmt)

    def _store_statement(self, stmt: _Stmt) -> None:
        """The answer a Describe of a prepared statement got (its parameter types and
        columns; no results when NoData). A client may prepare and describe a statement
        it never executes (asyncpg's ``copy_records_to_table`` learns the column types
        so), so no Execute's answer would tell the mock; "describe": "statement" keeps
        it apart from executed answers."""
        cols = stmt.columns
        self.seq += 1
        self.stored.append(
            {
                "type": "query",
                "conn": self.conn,
                "seq": self.seq,
                "protocol": "extended",
                "describe": "statement",
                "sql": stmt.sql,
                "param_types": list(stmt.oids),
                "results": [] if cols is None else [{"columns": _columns(cols)}],
            }
        )

    def _finish(self, q: _Query, *, incomplete: bool = False) -> None:
        self.seq += 1
        self.answered = self.seq
        self._last_at = self._clock()
        obj: dict[str, Any] = {
            "type": "query",
            "conn": self.conn,
            "seq": self.seq,
            "protocol": q.protocol,
        }
        if q.protocol == "extended":
            obj["statement"] = q.statement
        obj["sql"] = q.sql
        if q.stage:
            obj["stage"] = q.stage
        if q.portal is not None:
            if q.portal.bind.portal:  # a FETCH or MOVE may name it: keyed by ordinal
                obj["portal"] = q.portal.bind.portal
            oids = q.portal.stmt.oids
            obj["param_types"] = list(oids)
            params = []
            for i, (raw, fmt) in enumerate(
                zip(q.portal.bind.values, q.portal.bind.param_formats, strict=False)
            ):
                oid = oids[i] if i < len(oids) else 0
                params.append(
                    {
                        "type": types.type_name(oid),
                        "format": "binary" if fmt else "text",
                        "value": types.decode(raw, oid, fmt),
                    }
                )
            obj["params"] = params
        if q.current is not None:
            q.results.append(q.current)
        for res in q.results:
            res.pop("_spec", None)
        obj["results"] = q.results
        if q.notices:
            obj["notices"] = q.notices
            if any(at != [0, 0] for at in q.notices_at):  # a notice among the rows
                obj["notices_at"] = q.notices_at
        if q.status_changes:
            obj["parameter_status"] = q.status_changes
        if incomplete:
            obj["incomplete"] = True
        self.stored.append(obj)


def _columns(cols: list[m.Column]) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "type": types.type_name(c.type_oid),
            "oid": c.type_oid,
            "format": "binary" if c.format else "text",
            "table_oid": c.table_oid,
            "attnum": c.attnum,
            "typlen": c.typlen,
            "typmod": c.typmod,
        }
        for c in cols
    ]


def _text(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": raw.hex()}

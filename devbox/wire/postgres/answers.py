"""Recorded answers -> the backend messages a query gets, and the protocol state they
change: the transaction status a tag moves (``BEGIN`` -> in transaction, ``COMMIT`` ->
idle), the failed state an error leaves (until ``ROLLBACK``; skip to Sync in an extended
query), rows a partial ``Execute`` leaves in its portal. The mock connection
(``devbox.wire.postgres.mock``) reads messages and decides which answer a query gets;
this part sends it, as the server would have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devbox.wire import files
from devbox.wire.contract import Hit as HitOut
from devbox.wire.contract import Miss as MissOut
from devbox.wire.contract import MockOptions, Output
from devbox.wire.postgres import encode
from devbox.wire.postgres import messages as m
from devbox.wire.postgres.cursors import Saved
from devbox.wire.postgres.redaction import redact_literals, redact_params
from devbox.wire.postgres.sql import (
    TX_ENDS,
    normalise,
    one_line,
    request_line,
    rows_tag,
    scoped,
    stays_open,
    unscoped,
)
from devbox.wire.postgres.store import Index, Key, param_key, wire_fields

MISS_SQLSTATE = "DX404"
_TX_TAGS = ("BEGIN", "START", "COMMIT", "ROLLBACK")


# a ROLLBACK of the whole transaction, normalised, and a server's answer to it
_ROLLBACKS = frozenset(
    f"{verb}{tail}" for verb in ("rollback", "abort") for tail in ("", " work", " transaction")
)
_ROLLED_BACK: dict[str, Any] = {"results": [{"tag": "ROLLBACK"}]}


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    norm: str
    oids: tuple[int, ...]
    # its key names a cursor (``cursors.names_cursor``): keyed anew each time it runs,
    # as a server opens a new cursor each time a prepared DECLARE is executed
    cursor: bool = False


@dataclass(slots=True)
class Portal:
    stmt: Statement
    # the decoded parameter values (what matching compares, ``types.canonical`` of each)
    key: tuple[str, ...]
    values: list[Any]
    result_formats: tuple[int, ...]
    # rows a partial Execute (max_rows) left for the next Execute, and the final tag
    rest: tuple[list[bytes], str] | None = None
    # a DECLARE's: what forgets the cursor it opened if its Execute fails
    # (``cursors.Ordinals.attempt``)
    undo: Saved | None = None

    @property
    def params(self) -> list[dict[str, Any]]:
        return [{"value": v} for v in self.values]


_TEXT = (0,)  # every column in text


def _recorded_tag(objs: list[dict[str, Any]]) -> tuple[str, bool] | None:
    """(tag without its count, counted) of a finished answer among ``objs`` (recorded
    answers of one SQL): what the server tagged that statement, when it said."""
    for obj in objs:
        for res in obj.get("results") or ():
            tag = res.get("tag")
            if not isinstance(tag, str) or res.get("suspended") or "copy" in res or not tag:
                continue
            head, _, last = tag.rpartition(" ")
            return (head, True) if head and last.isdigit() else (tag, False)
    return None


class Answers:
    """The per-connection state answering changes, and the sending of one answer. The
    mock connection is one (a subclass): its dispatch reads and sets the same state."""

    def __init__(self, index: Index, options: MockOptions) -> None:
        self.index = index
        self.options = options
        self.phase = "startup"  # startup | auth-* | ready | copy-in | closed
        self.status = "I"
        self.skipping = False  # an extended-query error: discard until Sync
        self.failures = 0  # errors sent: a turn that sent one is never kept
        # what this connection's match keys end with: its database, when the recording
        # holds several (``Index.scope``); set at start-up
        self.scope = ""
        # notifications the queries answered so far are followed by (LISTEN/NOTIFY)
        self.notify: list[tuple[float, bytes]] = []
        self.redact = files.redactor_of(options)
        self.gave_back = False  # rows carried this run's values (``_given_back``)

    def _live_sql(self, sql: str) -> str:
        """``sql`` as the recording would hold it: redacted as the recorder redacts (a
        secret a client wrote into the text has its placeholder there), when the
        recording's texts hold placeholders at all."""
        if not self.index.sql_placeholders:
            return sql
        return redact_literals(sql, self._learning)

    def _learning(self, name: str, value: str) -> str:
        """``redact`` of one live value (a parameter, a constant in the text, unquoted),
        remembering what its placeholders stand for: rows that hold them give the client
        its own value back (``Bindings.learn``)."""
        red = self.redact(name, value)
        if red != value:
            self.index.bindings.learn(value.encode(*_UTF8), red.encode(*_UTF8))
        return red

    def _aborted(self, norm: str, out: list[bytes]) -> bool:
        if self.status != "E" or unscoped(norm)[0].split(" ", 1)[0] in TX_ENDS:
            return False
        self.failures += 1
        out.append(
            m.error(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )
        )
        return True

    def _lookup(
        self,
        norm: str,
        key_params: tuple[str, ...],
        sql: str,
        portal: Portal | None,
        out: list[bytes],
        ev: list[Output],
    ) -> dict[str, Any] | None:
        key: Key = (norm, key_params)
        index = self.index
        obj = index.take(key)
        keys = [key]
        if obj is None and index.has_placeholders and portal is not None and portal.values:
            # as the recorder redacts them: by column, and by number as recordings made
            # before parameters were named by their column hold them
            for named in (True, False):
                redacted = redact_params(sql, portal.params, self._learning, by_column=named)
                key = (norm, param_key(redacted, norm))
                if key not in keys:
                    keys.append(key)
                    obj = index.take(key)
                    if obj is not None:
                        break
        # generated values set aside (``devbox.core.generated``), unless a miss goes to
        # the real server: that is its own answer
        aside = obj is None and self.options.on_miss == "fail"
        shaped = False
        for key in (keys[1:] or keys) if aside else ():  # the redacted ones, if any
            if (obj := index.take_bound(key)) is not None:
                shaped = True
                break
        if obj is not None:
            # one Hit per recorded answer, made once (it only names what matched); one
            # found only with generated values set aside says so
            ident = -id(obj) if shaped else id(obj)
            hit = index.hits.get(ident)
            if hit is None:
                text = one_line(sql) + (" (generated values set aside)" if shaped else "")
                hit = HitOut(text, f"{obj.get('conn', '?')}.{obj.get('seq', '?')}")
                index.hits[ident] = hit
            ev.append(hit)
            if index.notifications:
                self.notify.extend(index.notifications.get(id(obj), ()))
            return obj
        if unscoped(norm)[0] in _ROLLBACKS:
            # a server takes a ROLLBACK whatever came before: one the recording lacks (a
            # transaction that failed on a miss) ends the transaction all the same, or
            # the connection stayed failed for good (25P02 for every later query)
            return _ROLLED_BACK
        request = request_line(sql, key_params)
        why, nearest = self.index.explain(norm, key_params)
        data = self._miss_error(sql, why, nearest)
        # the event reports the miss; the error goes out once, in order, with the rest of
        # the reply (in the event too, a client read it twice: psycopg's BEGIN failed with
        # "received 2 results")
        ev.append(MissOut(b"", request, why, nearest))
        self._fail(data, out)
        return None

    def _miss_error(self, sql: str, why: str, nearest: str | None) -> bytes:
        detail = f"nearest recorded query: {nearest}" if nearest else ""
        return m.error(
            MISS_SQLSTATE,
            f"devbox mock {self.options.name}: no recorded answer for {one_line(sql)} ({why})",
            detail=detail,
            hint="record this query again (devbox record), or set on_miss in the profile",
        )

    def _fail(self, data: bytes, out: list[bytes]) -> None:
        self.failures += 1
        out.append(data)
        if self.status == "T":
            self.status = "E"
        if self.phase != "startup":
            self.skipping = True

    def _send_rows(
        self, portal: Portal, rows: list[bytes], tag: str, max_rows: int, out: list[bytes]
    ) -> None:
        """An Execute's rows: at most ``max_rows`` (0 = all), the rest kept in the portal
        for the next Execute, as a server does with a partly fetched portal."""
        if 0 < max_rows < len(rows):
            out.extend(rows[:max_rows])
            out.append(m.PORTAL_SUSPENDED)
            portal.rest = (rows[max_rows:], tag)
            return
        out.extend(rows)
        portal.rest = None
        if tag:
            out.append(m.command_complete(tag))
            self._track(tag, portal.stmt.sql)
        else:
            out.append(m.PORTAL_SUSPENDED)

    def _results(
        self,
        obj: dict[str, Any],
        formats: tuple[int, ...] | None,
        out: list[bytes],
        portal: Portal | None = None,
        max_rows: int = 0,
    ) -> list[bytes] | None:
        """Append every recorded result; returns the bytes to send after a COPY FROM
        STDIN finishes when the query stops at one."""
        extended = formats is not None
        for ps in obj.get("parameter_status") or []:
            out.append(m.parameter_status(ps[0], ps[1]))
        results = obj.get("results") or []
        # notices that came among the rows (a function called per row), by result: sent
        # where the server sent them (a client streaming rows sees each as it comes)
        later = self._notices(obj, out, max_rows)
        ends = 0  # COMMIT / ROLLBACK tags so far (``_track``)
        for i, res in enumerate(results):
            among = later.pop(i, [])
            if among and ("columns" not in res or res.get("copy") or "error" in res):
                out.extend(data for _row, data in among)
                among = []
            if "error" in res:
                self._fail(m.fields(b"E", wire_fields(res["error"])), out)
                self.index.replanned(obj, self.scope)  # a client prepares again: anew
                if not extended:
                    self.skipping = False
                return None
            if res.get("empty"):
                out.append(m.EMPTY_QUERY)
                continue
            if "copy" in res:
                rest = self._copy(res, dict(obj, results=results[i + 1 :]), formats, out)
                if rest is not None:
                    return rest
                continue
            ended = self._rows(res, obj, formats, out, portal, max_rows, ends, among)
            if ended is None:
                return None
            ends += ended
        for after in later.values():  # after the last result (none recorded so)
            out.extend(data for _row, data in after)
        return None

    @staticmethod
    def _notices(
        obj: dict[str, Any], out: list[bytes], max_rows: int
    ) -> dict[int, list[tuple[int, bytes]]]:
        """Append ``obj``'s notices that came before its first result's rows; the others
        by result index: (rows of that result before it, its NoticeResponse). Recorded
        without positions, or asked for in parts (a row limit), all come first."""
        notices = obj.get("notices") or []
        at = obj.get("notices_at")
        if not isinstance(at, list) or len(at) != len(notices) or max_rows:
            at = [[0, 0]] * len(notices)
        later: dict[int, list[tuple[int, bytes]]] = {}
        for notice, (result, row) in zip(notices, at, strict=True):
            data = m.fields(b"N", wire_fields(notice))
            if result == 0 and row == 0:
                out.append(data)
            else:
                later.setdefault(int(result), []).append((int(row), data))
        return later

    def _rows(
        self,
        res: dict[str, Any],
        obj: dict[str, Any],
        formats: tuple[int, ...] | None,
        out: list[bytes],
        portal: Portal | None,
        max_rows: int,
        ends: int,
        among: list[tuple[int, bytes]] | None = None,
    ) -> int | None:
        """One recorded result of ``obj``'s, of rows (none for an INSERT), and its tag:
        None when a row cannot be sent (the error went out instead), else 1 for a COMMIT
        or ROLLBACK tag (``_track``; ``ends``: how many came before it), 0 for another."""
        sql, protocol = str(obj.get("sql", "")), obj.get("protocol")
        asked = formats
        if formats is None and protocol == "extended" and res.get("columns") is not None:
            # a simple query gets text, whichever client recorded the answer (asyncpg
            # reads binary); only a FETCH of a BINARY cursor sends a simple query binary
            # rows, and a simple query recorded those as they came. (Rows recorded
            # untyped, never described, have no columns to describe: as before, none.)
            asked = _TEXT
        cols = encode.result_columns(res, asked)
        rows: list[bytes] = []
        if cols is not None:
            if formats is None:  # a simple query's: an extended one's comes at Describe
                out.append(encode.description(cols, asked))
            if self.index.bindings.gives_back and res.get("rows"):
                given = _given_back(res, self.index.bindings.back)
                # this run's values: no cache may keep these bytes for another run
                self.gave_back = self.gave_back or given["rows"] != res["rows"]
                res = given
            try:
                rows = encode.rows(res, cols, asked)
            except ValueError as exc:
                self._fail(m.error("XX000", f"devbox mock: cannot send row: {exc}"), out)
                return None
        for row, data in reversed(among or ()):  # the last first: earlier indexes hold
            rows.insert(min(row, len(rows)), data)
        if res.get("interrupted"):  # the error that cut these rows short comes next
            out.extend(rows)
            return 0
        tag = str(res.get("tag", ""))
        if res.get("suspended") and (portal is None or max_rows == 0 or len(rows) < max_rows):
            # recorded by a client that fetched part of the result (asyncpg's fetchrow:
            # an Execute with a row limit, answered PortalSuspended); this one asks for
            # all of it, or is a simple query, which has no portal to suspend: the server
            # would finish it, and what was recorded is all there is to give
            tag = self._finished_tag(sql, len(rows))
        if portal is not None:
            self._send_rows(portal, rows, tag, max_rows, out)
            return 0
        out.extend(rows)
        out.append(m.command_complete(tag))
        return int(self._track(tag, sql, ends))

    def _finished_tag(self, sql: str, n: int) -> str:
        """The tag the server sends when ``sql``, a statement that sends rows, finishes
        after ``n`` of them: the tag of a result recorded suspended (no tag), asked for
        whole. As recorded for the same SQL when an answer of it finished; else by its
        parse tree (``WITH ... INSERT ... RETURNING``: ``INSERT 0 n``, not ``SELECT n``)."""
        recorded = _recorded_tag(self.index.by_sql.get(scoped(normalise(sql), self.scope), []))
        prefix, counted = recorded or rows_tag(sql)
        return f"{prefix} {n}" if counted else prefix

    def _copy(
        self,
        res: dict[str, Any],
        after: dict[str, Any],
        formats: tuple[int, ...] | None,
        out: list[bytes],
    ) -> list[bytes] | None:
        """A recorded COPY; for a COPY FROM STDIN, the bytes to send once the client's
        data ends (its tag, then ``after``: the query's results that follow it)."""
        if res["copy"] == "out" and self.index.bindings.gives_back and res.get("data"):
            # its rows give this run's values back, as a SELECT's do (``_given_back``)
            data = [_back(d, self.index.bindings.back) for d in res["data"]]
            self.gave_back = self.gave_back or data != res["data"]
            res = {**res, "data": data}
        out.extend(encode.copy_start(res))
        cut = bool(res.get("interrupted"))  # by the error that comes next, not a tag
        if res["copy"] == "out":
            if not cut:
                out.append(m.command_complete(res.get("tag", "")))
            return None
        rest: list[bytes] = [] if cut else [m.command_complete(res.get("tag", "COPY 0"))]
        self._results(dict(after, notices=[], parameter_status=[]), formats, rest)
        if formats is None:  # a simple query's: its ReadyForQuery
            rest.append(m.ready(self.status))
        return rest

    def _track(self, tag: str, sql: str, nth: int = 0) -> bool:
        """Follow the transaction status; True for a COMMIT or ROLLBACK tag (``nth``: how
        many of those ``sql``'s statements answered before this one)."""
        if not tag.startswith(_TX_TAGS):  # SELECT, INSERT...: the status stays as it is
            return False
        word = tag.split(" ", 1)[0]
        if word in ("BEGIN", "START"):
            self.status = "T"
            return False
        self.status = "T" if stays_open(sql, nth) else "I"  # ROLLBACK TO SAVEPOINT: T
        return True


_UTF8 = ("utf-8", "surrogatepass")


def _given_back(res: dict[str, Any], back: Callable[[bytes], bytes]) -> dict[str, Any]:
    """``res`` with the recorded values bound in this run given back in its rows as the
    live ones they stand for: an ``INSERT … RETURNING id`` or a read by the new key
    answers the client's own id, not the recording's (SQLAlchemy matches the rows of a
    bulk insert to its parameters by such values, and an app hands its ids on)."""

    return {**res, "rows": [[_back(v, back) for v in row] for row in res["rows"]]}


def _back(v: Any, back: Callable[[bytes], bytes]) -> Any:
    """One recorded value (a row's, a COPY line) with this run's values given back; the
    same object when none is in it (too short to hold one, or not text)."""
    if not isinstance(v, str) or len(v) < 20:
        return v
    raw = v.encode(*_UTF8)
    new = back(raw)
    return v if new is raw else new.decode(*_UTF8)

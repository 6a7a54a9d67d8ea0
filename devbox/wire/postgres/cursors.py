"""SQL cursors (``DECLARE name CURSOR FOR ...``): which statements open and close them,
read in one place (``Ordinals``) by the recorder, the store and the mock.

A client may describe a cursor opened by ``DECLARE`` as if it were a protocol portal
(psycopg's named cursors send ``Describe 'P' "name"`` after the DECLARE). The server
answers with the cursor's RowDescription; the recorder stores that answer under the
DECLARE's SQL and the mock answers it for the cursor a replayed DECLARE opened.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from devbox.wire.postgres.sql import normalise


def _unquote(token: str) -> str:
    if token.startswith('"') and token.endswith('"') and len(token) >= 2:
        return token[1:-1].replace('""', '"')
    return token


# a cheap test before normalising: only these statements name a cursor
_NAMES_CURSOR = re.compile(r"(?i)\b(declare|fetch|move|close)\b")
_VERBS = ("declare ", "fetch ", "move ", "close ")
_NAME = r'("(?:[^"]|"")*"|[^\s"]+)'
_DECLARE = re.compile(rf"declare {_NAME}( .+)", re.DOTALL)
_CLOSE = re.compile(rf"close {_NAME}")
# FETCH and MOVE name their cursor last, after an optional direction and FROM/IN
_FETCH = re.compile(rf"((?:fetch|move) .*?){_NAME}", re.DOTALL)


def _ordinal(n: int, query: str) -> str:
    """The token that stands for a cursor's name: no normalised SQL holds it (the lexer
    splits ``<``), so it is no query's. The digest of the query it was declared for
    keeps the first cursors of two connections apart (nth-call counters are shared by
    every connection): a FETCH answers from a recording of a cursor over that query."""
    digest = hashlib.blake2b(query.encode("utf-8", "surrogateescape"), digest_size=4)
    return f"<cursor:{n}:{digest.hexdigest()}>"


# what ``Ordinals.attempt`` saved: the ordinals, open cursors and their SQL before it
Saved = tuple[int, dict[str, str], dict[str, str]]


def failed(obj: Mapping[str, Any] | None) -> bool:
    """Whether an answer (a stored query; None: the mock had none, a miss) is an error:
    a DECLARE that fails opens no cursor on the server, so it takes no ordinal."""
    if obj is None:
        return True
    return any(isinstance(r, Mapping) and "error" in r for r in obj.get("results") or ())


class Ordinals:
    """The match key of one connection's SQL, with the cursor name of each DECLARE,
    FETCH, MOVE and CLOSE replaced by the cursor's ordinal among the cursors the
    connection declared (the first is 1). Clients generate names anew each run
    (SQLAlchemy's ``c_<address>_<n>``), so the name cannot match a recording; the order
    a program declares its cursors in does, and two cursors open at once keep apart.
    The same class keys stored objects (``Index.add``, per recorded connection, in
    recorded order) and live queries (the mock, per connection), so both agree."""

    __slots__ = ("declared", "open", "portals", "sql")

    def __init__(self) -> None:
        self.declared = 0
        self.open: dict[str, str] = {}  # open cursor's name (as the server knows it) -> token
        # open cursor's name -> the SQL of the query that declared it (what a Describe of
        # the cursor as a portal is answered from); the same DECLAREs and CLOSEs as ``open``
        self.sql: dict[str, str] = {}
        # names a FETCH or MOVE took that no open DECLAREd cursor has, and named protocol
        # portals executed, -> their token, in the order they first came: a FETCH or MOVE
        # may name a portal (asyncpg's ``cursor.forward()``: ``MOVE FORWARD 1
        # __asyncpg_portal_4__``), its name numbered by a counter of the whole process.
        # Counted when executed, not bound: the store sees executions only
        self.portals: dict[str, str] = {}

    def executed(self, portal: str) -> str:
        """The token of the named portal ``portal``, executed now (the mock; the store,
        from a recorded answer's ``"portal"``)."""
        found = self.portals.get(portal)
        if found is None:
            found = self.portals[portal] = f"<portal:{len(self.portals) + 1}>"
        return found

    def key(self, sql: str, *, run: bool = True) -> str:
        """``sql``'s match key. ``run``: the statement runs now, so a DECLARE opens its
        cursor (the next ordinal) and a CLOSE closes one; else the key it would have if
        it ran now, nothing changed (a Parse, a Describe of a statement: the server
        opens a cursor when a DECLARE is executed, each time it is)."""
        norm = normalise(sql)
        if not _NAMES_CURSOR.search(sql):
            return norm
        return " ; ".join(self._part(part, sql, run) for part in norm.split(" ; "))

    def attempt(self, sql: str) -> tuple[str, Saved | None]:
        """``sql``'s key as it runs now (``key``), and what ``undo`` takes to forget the
        cursors it opened and closed once its answer turns out an error (``failed``): the
        mock keys a query before it knows its answer, the store after, and both must
        count the same cursors. None: ``sql`` names no cursor, there is nothing to undo."""
        if not _NAMES_CURSOR.search(sql):
            return normalise(sql), None
        saved = (self.declared, dict(self.open), dict(self.sql))
        return self.key(sql), saved

    def undo(self, saved: Saved | None) -> None:
        if saved is not None:
            self.declared, self.open, self.sql = saved

    def run(self, sql: str) -> None:
        """Follow the cursors ``sql`` opens and closes, its key unused (the recorder,
        which keeps ``sql`` for the Describe of a cursor as a portal)."""
        if _NAMES_CURSOR.search(sql):
            self.key(sql)

    def _part(self, part: str, sql: str, run: bool) -> str:
        if part.startswith("declare "):
            match = _DECLARE.fullmatch(part)
            if match is None:
                return part
            token = _ordinal(self.declared + 1, match[2])
            if run:
                self.declared += 1
                name = _unquote(match[1])
                self.open[name] = token
                self.sql[name] = sql
            return f"declare {token}{match[2]}"
        if part.startswith(("fetch ", "move ")):
            match = _FETCH.fullmatch(part)
            if match is None:
                return part
            name = _unquote(match[2])
            found = self.open.get(name) or self.portals.get(name)
            if found is None and run:
                found = self.executed(name)
            return part if found is None else match[1] + found
        if part.startswith("close "):
            match = _CLOSE.fullmatch(part)
            if match is None:
                return part
            if match[1] == "all":
                if run:
                    self.open.clear()
                    self.sql.clear()
                return part
            name = _unquote(match[1])
            closed = self.open.get(name)
            if run:
                self.sql.pop(name, None)
                self.open.pop(name, None)
            return part if closed is None else f"close {closed}"
        return part


def names_cursor(sql: str) -> bool:
    """Whether ``sql``'s key names a cursor (a DECLARE, FETCH, MOVE or CLOSE): a key
    that changes as the connection's cursors do, so a prepared statement of it is keyed
    anew each time it runs (``Ordinals.key``)."""
    if not _NAMES_CURSOR.search(sql):
        return False
    return any(part.startswith(_VERBS) for part in normalise(sql).split(" ; "))


def anonymous(sql: str) -> str:
    """The normalised DECLARE ``sql`` without its cursor's name: what a Describe of the
    cursor is keyed by (the columns depend on the query, not on the name)."""
    norm = normalise(sql)
    match = _DECLARE.fullmatch(norm)
    return norm if match is None else f"declare {_ordinal(0, '')}{match[2]}"

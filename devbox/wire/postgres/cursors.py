"""SQL cursors (``DECLARE name CURSOR FOR ...``): which statements open and close them.

A client may describe a cursor opened by ``DECLARE`` as if it were a protocol portal
(psycopg's named cursors send ``Describe 'P' "name"`` after the DECLARE). The server
answers with the cursor's RowDescription; the recorder stores that answer under the
DECLARE's SQL and the mock answers it for the cursor a replayed DECLARE opened.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from devbox.wire.postgres.sql import normalise

# a cheap test before normalising: most queries never mention a cursor
_MENTIONS = re.compile(r"(?i)\b(declare|close)\b")
# the verb and the name (a quoted name may hold spaces) of a normalised statement
_STATEMENT = re.compile(r'(declare|close) ("(?:[^"]|"")*"|\S+)( .*)?', re.DOTALL)


@dataclass(frozen=True, slots=True)
class CursorStatement:
    """One DECLARE or CLOSE of a statement: ``name`` is the cursor's name as the server
    knows it (quotes removed, unquoted names folded), "" for CLOSE ALL."""

    verb: str  # "declare" | "close"
    name: str
    sql: str  # the SQL of the whole query it came in (what the DECLARE matches by)


def _unquote(token: str) -> str:
    if token.startswith('"') and token.endswith('"') and len(token) >= 2:
        return token[1:-1].replace('""', '"')
    return token


def statements(sql: str) -> list[CursorStatement]:
    """The DECLAREs and CLOSEs in ``sql`` (a simple query may hold several statements)."""
    if not _MENTIONS.search(sql):
        return []
    found: list[CursorStatement] = []
    for part in normalise(sql).split(" ; "):
        match = _STATEMENT.fullmatch(part)
        if match is None:
            continue
        verb, token, rest = match.groups()
        if verb == "declare" and rest:
            found.append(CursorStatement("declare", _unquote(token), sql))
        elif verb == "close" and not rest:
            found.append(CursorStatement("close", "" if token == "all" else _unquote(token), sql))
    return found


def follow(open_cursors: dict[str, str], sql: str) -> None:
    """Update ``open_cursors`` (cursor name -> the SQL that declared it) for ``sql``.
    CLOSE removes its name, so a client that names each cursor anew (SQLAlchemy) does
    not grow the map for as long as the connection lives."""
    for st in statements(sql):
        if st.verb == "declare":
            open_cursors[st.name] = st.sql
        elif st.name:
            open_cursors.pop(st.name, None)
        else:
            open_cursors.clear()


# a cheap test before normalising: only these statements name a cursor
_NAMES_CURSOR = re.compile(r"(?i)\b(declare|fetch|move|close)\b")
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


class Ordinals:
    """The match key of one connection's SQL, with the cursor name of each DECLARE,
    FETCH, MOVE and CLOSE replaced by the cursor's ordinal among the cursors the
    connection declared (the first is 1). Clients generate names anew each run
    (SQLAlchemy's ``c_<address>_<n>``), so the name cannot match a recording; the order
    a program declares its cursors in does, and two cursors open at once keep apart.
    The same class keys stored objects (``Index.add``, per recorded connection, in
    recorded order) and live queries (the mock, per connection), so both agree."""

    __slots__ = ("declared", "open", "sql")

    def __init__(self) -> None:
        self.declared = 0
        self.open: dict[str, str] = {}  # open cursor's name (as the server knows it) -> token
        # open cursor's name -> the SQL of the query that declared it (what a Describe of
        # the cursor as a portal is answered from); the same DECLAREs and CLOSEs as ``open``
        self.sql: dict[str, str] = {}

    def key(self, sql: str) -> str:
        norm = normalise(sql)
        if not _NAMES_CURSOR.search(sql):
            return norm
        return " ; ".join(self._part(part, sql) for part in norm.split(" ; "))

    def _part(self, part: str, sql: str) -> str:
        if part.startswith("declare "):
            match = _DECLARE.fullmatch(part)
            if match is None:
                return part
            self.declared += 1
            name = _unquote(match[1])
            token = self.open[name] = _ordinal(self.declared, match[2])
            self.sql[name] = sql
            return f"declare {token}{match[2]}"
        if part.startswith(("fetch ", "move ")):
            match = _FETCH.fullmatch(part)
            found = None if match is None else self.open.get(_unquote(match[2]))
            return part if match is None or found is None else match[1] + found
        if part.startswith("close "):
            match = _CLOSE.fullmatch(part)
            if match is None:
                return part
            if match[1] == "all":
                self.open.clear()
                self.sql.clear()
                return part
            self.sql.pop(_unquote(match[1]), None)
            closed = self.open.pop(_unquote(match[1]), None)
            return part if closed is None else f"close {closed}"
        return part


def anonymous(sql: str) -> str:
    """The normalised DECLARE ``sql`` without its cursor's name: what a Describe of the
    cursor is keyed by (the columns depend on the query, not on the name)."""
    norm = normalise(sql)
    match = _DECLARE.fullmatch(norm)
    return norm if match is None else f"declare {_ordinal(0, '')}{match[2]}"

"""SQL cursors (``DECLARE name CURSOR FOR ...``): which statements open and close them.

A client may describe a cursor opened by ``DECLARE`` as if it were a protocol portal
(psycopg's named cursors send ``Describe 'P' "name"`` after the DECLARE). The server
answers with the cursor's RowDescription; the recorder stores that answer under the
DECLARE's SQL and the mock answers it for the cursor a replayed DECLARE opened.
"""

from __future__ import annotations

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

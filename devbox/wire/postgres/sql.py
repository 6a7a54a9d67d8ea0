"""SQL normalisation for matching: the text PostgreSQL's own lexer (through ``pglast``) sees,
without comments or layout, keywords and unquoted identifiers folded to lower case (as the
server folds them), constants kept verbatim.

Constants are kept on purpose: a parse-tree fingerprint ignores them, so
``WHERE id = 1`` and ``WHERE id = 2`` would share one key and one query's rows could
answer the other. Whitespace, comments, keyword case and a trailing ``;`` do not change
the key.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pglast import parser

_CONSTANTS = frozenset({"SCONST", "USCONST", "FCONST", "ICONST", "BCONST", "XCONST", "PARAM"})


# lone surrogates: the bytes of SQL that was not UTF-8, decoded with surrogateescape
_SURROGATES = re.compile("[\ud800-\udfff]")


def scan(sql: str) -> Any:
    """PostgreSQL's lexer's tokens of ``sql`` (pglast's; it raises what it raises on text
    it cannot read). pglast cannot encode a lone surrogate to UTF-8. Each becomes U+FFFD
    for the lexer, one character for one, so that token offsets still index ``sql``
    itself; the lexer reads either as an identifier or string character, as the server
    reads a high byte."""
    return parser.scan(_SURROGATES.sub("\ufffd", sql))


@lru_cache(maxsize=8192)
def normalise(sql: str) -> str:
    try:
        tokens = scan(sql)
    except Exception:  # pglast raises its own ParseError; any failure: keep the text
        return " ".join(sql.split()).rstrip(";").strip()
    out: list[str] = []
    for tok in tokens:
        if tok.name in ("C_COMMENT", "SQL_COMMENT"):
            continue
        # pglast gives offsets in characters (it maps the lexer's byte offsets back), so
        # the token is sliced from the str: slicing the UTF-8 bytes shifts every token
        # after a non-ASCII character, or cuts one in half
        text = sql[tok.start : tok.end + 1]
        if tok.name in _CONSTANTS or text.startswith('"'):
            out.append(text)
        else:
            out.append(text.lower())
    while out and out[-1] == ";":
        out.pop()
    if "savepoint" in out or "release" in out or "to" in out:
        _savepoints(out)
    return " ".join(out)


SAVEPOINT = "<savepoint>"


def _savepoints(words: list[str]) -> None:
    """Each savepoint's name in ``words`` (a normalised statement's tokens) made
    ``SAVEPOINT``: clients name them afresh (Django's ``s<thread id>_x<n>``), and a
    savepoint's answer does not depend on its name. ``SAVEPOINT n``, ``RELEASE
    [SAVEPOINT] n``, ``ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] n``."""
    start = 0
    for i, w in enumerate([*words, ";"]):
        if w != ";":
            continue
        st = words[start:i]
        at = None
        if st[:1] == ["savepoint"]:
            at = 1
        elif st[:1] == ["release"]:
            at = 2 if st[1:2] == ["savepoint"] else 1
        elif st[:1] in (["rollback"], ["abort"]) and "to" in st[1:3]:
            at = st.index("to") + 1
            at += st[at : at + 1] == ["savepoint"]
        if at is not None and at < len(st):
            words[start + at] = SAVEPOINT
        start = i + 1


# the first words of a statement that ends a transaction (or leaves a failed one)
TX_ENDS = ("commit", "rollback", "end", "abort")


def stays_open(sql: str, nth: int) -> bool:
    """Whether the ``nth`` statement of ``sql`` that ends in a COMMIT or ROLLBACK tag
    leaves the session in a transaction: ROLLBACK TO SAVEPOINT is tagged ROLLBACK (and
    mends a failed transaction), COMMIT/ROLLBACK AND CHAIN open the next one at once."""
    ends = [s.split() for s in normalise(sql).split(";")]
    ends = [words for words in ends if words and words[0] in TX_ENDS]
    if nth >= len(ends):
        return False
    words = ends[nth]
    return "to" in words[1:3] or words[-2:] == ["and", "chain"]  # ROLLBACK [WORK] TO


# A recording of several databases keys each query by its normalised SQL and the
# database it ran in: the database goes after a NUL, which no SQL holds (the protocol's
# strings end at one), so "select 1\x00app" is no other query's key and the SQL before it
# is whole. One database (or none recorded): keys are the SQL alone, as they always were.
_SCOPE = "\x00"


def scope(database: str) -> str:
    """The suffix of the keys of queries run in ``database``."""
    return _SCOPE + database


def scoped(norm: str, suffix: str) -> str:
    """``norm`` in one database's keys (``suffix``: ``scope``'s, or "" for none); an empty
    query stays empty, as the mock answers it with EmptyQueryResponse wherever it runs."""
    return norm + suffix if norm else norm


def unscoped(key: str) -> tuple[str, str | None]:
    """(the normalised SQL, its database or None) of a key ``scoped`` made."""
    norm, sep, database = key.partition(_SCOPE)
    return norm, (database if sep else None)


# The CommandComplete tag of a statement that sends rows, by the top node of its parse
# tree (``WITH ... INSERT ... RETURNING`` is an InsertStmt, tagged INSERT as the server
# tags it, though it begins with WITH): (the tag, whether the row count follows it).
_ROWS_TAGS = {
    "InsertStmt": ("INSERT 0", True),
    "UpdateStmt": ("UPDATE", True),
    "DeleteStmt": ("DELETE", True),
    "MergeStmt": ("MERGE", True),
    "FetchStmt": ("FETCH", True),
    "VariableShowStmt": ("SHOW", False),
    "ExplainStmt": ("EXPLAIN", False),
    "CallStmt": ("CALL", False),
}


@lru_cache(maxsize=1024)
def rows_tag(sql: str) -> tuple[str, bool]:
    """(tag, counted) of the one statement ``sql``, which sends rows: what the server
    sends when it finishes, ``SELECT`` (counted) for a query, a VALUES, a TABLE."""
    try:
        stmts = parser.parse_sql(_SURROGATES.sub("\ufffd", sql))
    except Exception:  # pglast's ParseError: the server would not have sent rows
        stmts = ()
    node = type(stmts[0].stmt).__name__ if stmts else ""
    return _ROWS_TAGS.get(node, ("SELECT", True))


def first_word(sql: str) -> str:
    norm = normalise(sql)
    return norm.split(" ", 1)[0] if norm else ""


@lru_cache(maxsize=4096)
def one_line(sql: str) -> str:
    """The SQL on one line, at most 120 characters: how misses and hits name a query."""
    s = " ".join(sql.split())
    return s if len(s) <= 120 else s[:117] + "..."


def request_line(sql: str, params: tuple[str, ...]) -> str:
    shown = ", ".join(
        f"${i}={v if len(v) < 40 else v[:37] + '...'}" for i, v in enumerate(params, 1)
    )
    return one_line(sql) + (f" [{shown}]" if shown else "")

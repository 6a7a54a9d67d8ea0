"""What a Postgres recording could leak, redacted: parameters, values written into the
SQL text, row values, COPY data, start-up parameters (``redact_object``), each value by
the core rules (``redact_value``).

Values written into the SQL text
--------------------------------

psycopg2 (and so Django and SQLAlchemy on it) and psycopg's ``ClientCursor`` send no
parameters: every value is quoted into the statement, ``INSERT INTO "auth_user"
("password", "email") VALUES ('pbkdf2_sha256$…', 'ada@example.com')``. Redacting only
parameters let those values reach the recording whole. Here each string constant is
handed to the same per-value rule as a parameter (``redact_value``), named by its
column where the statement says which: by position in the column list of an ``INSERT …
VALUES`` or ``INSERT … SELECT`` (``_Rows``), else by the name it is compared with or
assigned to (``SET "password" = '…'``, ``"token" IN ('…')``, ``<>``, ``LIKE``, the
branches of ``name = CASE …``: ``_Names``). Any other constant is redacted by its format
only. The mock redacts a live statement the same way
before it looks again, as it does a parameter, so the same secret finds its placeholder.

The constant after ``PASSWORD`` (``ALTER ROLE app PASSWORD '…'``, ``CREATE USER``) is a
credential whatever it looks like. Drivers do not quote values with dollars, but a
``DO $$ … $$`` block or a function's body is SQL too: its own constants are read by the
same rules (a role's password set inside a ``DO`` block went to disk). Text the lexer
cannot read is redacted whole by format, so nothing passes unseen. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from devbox.core.redact import is_secret_name
from devbox.wire import files
from devbox.wire.contract import CREDENTIAL_FIELD
from devbox.wire.postgres.sql import scan

# tokens that end the value list of an INSERT (what follows names no column)
_AFTER_VALUES = frozenset(
    {"RETURNING", "ON", "ASCII_59", "FROM", "WHERE", "GROUP_P", "ORDER", "UNION", "LIMIT"}
)


def redact_literals(sql: str, redact: Callable[[str, str], str], depth: int = 0) -> str:
    """``sql`` with each string constant passed through ``redact(name, value)``, and the
    constants of a dollar-quoted body (``depth``: bodies around this one) likewise."""
    if "'" not in sql and ("$" not in sql or _DOLLAR_TAG.search(sql) is None):
        return sql  # (a statement with parameters only, the most common: no lexing)
    try:
        named = _named(sql)
    except Exception:  # pglast's own ParseError, or any failure: by format, whole
        return redact("", sql)
    out: list[str] = []
    at = 0
    for start, end, column in named:
        text = sql[start:end]
        if column == _BODY:
            new = _body(text, redact, depth)
        elif text.startswith("$"):
            continue  # a parameter: named by param_columns
        else:
            new = _redacted(text, column, redact)
        out.append(sql[at:start])
        out.append(new)
        at = end
    out.append(sql[at:])
    return "".join(out)


def param_columns(sql: str) -> dict[int, str]:
    """The column each parameter (``$n``) of ``sql`` is for, where the statement says, as
    for a constant: ``INSERT INTO u (email, password) VALUES ($1, $2)`` gives ``{1:
    "email", 2: "password"}``. A password bound by asyncpg or psycopg 3 was named ``$2``
    only, which no rule knows for a credential, and reached the recording whole."""
    if "$" not in sql:
        return {}
    # a statement repeats for every execution; a long one (a bulk insert's) is lexed
    # each time rather than kept
    return _param_columns(sql) if len(sql) <= 2048 else _param_columns.__wrapped__(sql)


@lru_cache(maxsize=1024)
def _param_columns(sql: str) -> dict[int, str]:
    try:
        named = _named(sql)
    except Exception:  # pglast's own ParseError, or any failure: the parameters by number
        return {}
    out: dict[int, str] = {}
    for start, end, column in named:
        number = sql[start + 1 : end]
        if sql[start] == "$" and number.isdigit() and column:
            # one parameter used twice (``id = $1 OR token = $1``): a secret name wins
            n = int(number)
            if n not in out or is_secret_name(column):
                out[n] = column
    return out


def redact_params(
    sql: str,
    params: list[dict[str, Any]],
    redact: Callable[[str, str], str],
    *,
    by_column: bool = True,
) -> list[dict[str, Any]]:
    """``params`` of ``sql`` with each text value redacted under its column's name, else
    its number (``$1``): as the recorder writes them, and as the mock redacts a live
    statement's to look again (``by_column=False``: by number only, as recordings made
    before this naming hold them)."""
    columns = param_columns(sql) if by_column else {}
    return [
        {**p, "value": redact(columns.get(i, f"${i}"), p["value"])}
        if isinstance(p.get("value"), str)
        else p
        for i, p in enumerate(params, 1)
    ]


_BODY = "\x00body"  # a dollar-quoted constant's mark in what _named finds
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$")


def _body(text: str, redact: Callable[[str, str], str], depth: int) -> str:
    """A dollar-quoted constant (``$tag$…$tag$``) with the constants of the SQL in it
    redacted (a ``DO`` block, a function's body); a body the lexer cannot read, or one
    nested too deep, by format whole."""
    tag = _DOLLAR_TAG.match(text)
    if tag is None or len(text) < 2 * len(tag.group(0)):
        return redact("", text)
    n = len(tag.group(0))
    body = text[n:-n]
    new = redact_literals(body, redact, depth + 1) if depth < 4 else redact("", body)
    return text if new == body else text[:n] + new + text[-n:]


def _named(sql: str) -> list[tuple[int, int, str]]:
    """(start, end, column or "") of each string constant (not dollar-quoted) and each
    parameter of ``sql``: the column it is for, by ``_Rows`` inside an INSERT's values,
    else by ``_Names``."""
    out = []
    rows, names = _Rows(), _Names()
    for tok in scan(sql):
        name = tok.name
        if name in ("C_COMMENT", "SQL_COMMENT"):
            continue
        text = sql[tok.start : tok.end + 1]
        if name == "PARAM" or (name in ("SCONST", "USCONST") and not text.startswith("$")):
            column = rows.column()
            out.append((tok.start, tok.end + 1, names.name() if column is None else column))
        elif name == "SCONST":
            out.append((tok.start, tok.end + 1, _BODY))
        if name not in ("SCONST", "USCONST") or text.startswith("$"):
            rows.feed(name, text)
        names.feed(name, text, rows.depth)
    return out


class _Names:
    """The name a constant outside an INSERT's rows is compared with or assigned to:
    ``name = '…'``, ``name <> '…'``, ``name IN ('…', '…')``, ``name LIKE '…'``, and the
    branches of ``name = CASE WHEN … THEN '…' ELSE '…' END`` (a bulk update)."""

    __slots__ = ("cases", "last", "prev", "subject")

    def __init__(self) -> None:
        self.prev = ""  # the last token's lexer name
        self.last = ""  # the last word-like token's text, just before this one
        self.subject: tuple[str, int] | None = None  # (name, depth) being compared
        self.cases: list[tuple[str, int]] = []  # open CASEs: (their name, depth)

    def name(self) -> str:
        if self.prev == "PASSWORD":  # ALTER ROLE … PASSWORD '…': juxtaposed, a credential
            return CREDENTIAL_FIELD
        if self.cases and self.prev in ("THEN", "ELSE"):
            return self.cases[-1][0]
        return self.subject[0] if self.subject is not None else ""

    def feed(self, name: str, text: str, depth: int) -> None:
        subject = self.subject
        if name in _COMPARING:
            self.subject = (_ident(self.last), depth) if self.last else None
        elif name == "CASE":
            self.cases.append((subject[0] if subject and self.prev == "ASCII_61" else "", depth))
        elif name == "END_P" and self.cases and self.cases[-1][1] == depth:
            self.cases.pop()
        elif subject is not None and (
            name in _ENDS_COMPARISON
            or depth < subject[1]
            or (name == "ASCII_44" and depth == subject[1])
        ):
            self.subject = None
        if name != "TYPECAST" and self.prev != "TYPECAST":  # ``name::type``: still the name
            word = name == "IDENT" or (text[:1].isalpha() and name not in _COMPARING)
            self.last = text if word else ""
        self.prev = name


# the tokens that compare a name with what follows, and those that end a comparison
_COMPARING = frozenset(
    {"ASCII_61", "NOT_EQUALS", "ASCII_60", "ASCII_62", "LESS_EQUALS", "GREATER_EQUALS"}
    | {"IN_P", "LIKE", "ILIKE", "SIMILAR", "Op"}
)
_ENDS_COMPARISON = frozenset(
    {"AND", "OR", "WHERE", "SET", "FROM", "ON", "ASCII_59", "WHEN", "LIMIT", "OFFSET"}
    | {"ORDER", "GROUP_P", "HAVING", "RETURNING", "FETCH"}
)


class _Rows:
    """Which column of an ``INSERT (columns) VALUES (…), (…)`` (or ``SELECT …``) the
    constant being read is for, followed token by token. An ``INSERT … SELECT`` that reads
    its rows from ``FROM (VALUES (…), (…))`` (SQLAlchemy 2's bulk insert) or ``FROM
    UNNEST(…, …)`` (Django's ``bulk_create``) has them by position there too."""

    __slots__ = ("base", "columns", "depth", "flat", "listing", "pos", "source", "unnest", "values")

    def __init__(self) -> None:
        self.depth = 0  # parentheses and brackets
        self.base: int | None = None  # an INSERT's depth, before its columns or VALUES
        self.columns: list[str] = []  # its column list
        self.listing = False  # reading that list
        self.values: int | None = None  # the INSERT's depth, inside its VALUES
        self.flat = False  # an INSERT … SELECT: one row, not in parentheses
        self.pos = 0  # which value of a row
        self.source = False  # in the FROM of an INSERT … SELECT, its columns kept
        self.unnest = False  # that FROM's UNNEST, before its arguments

    def column(self) -> str | None:
        if self.values is None or not self.columns:
            return None
        if self.depth < self._row():
            return None
        return self.columns[self.pos] if self.pos < len(self.columns) else ""

    def _row(self) -> int:
        assert self.values is not None
        return self.values if self.flat else self.values + 1

    def feed(self, name: str, text: str) -> None:
        if name == "INSERT":
            self.base, self.columns, self.listing, self.values = self.depth, [], False, None
            self.source = self.unnest = False
        elif name in ("ASCII_40", "ASCII_91"):  # ( [
            self._open(name)
        elif name in ("ASCII_41", "ASCII_93"):  # ) ]
            self._close()
        elif self.listing:
            if name != "ASCII_44":
                self.columns.append(_ident(text))
        elif name in ("VALUES", "SELECT") and self.base is not None and self.depth == self.base:
            self.values, self.base, self.flat, self.pos = self.base, None, name == "SELECT", 0
        elif self.source and self.values is None and name == "VALUES":
            self.values, self.flat, self.pos = self.depth, False, 0
        elif self.source and self.values is None and text.lower() == "unnest":
            self.unnest = True
        elif self.values is not None and self.depth == self.values and name in _AFTER_VALUES:
            # the FROM of an INSERT … SELECT may hold its rows: the columns are kept for it
            self.source = name == "FROM" and self.flat and bool(self.columns)
            self.values = None
            if not self.source:
                self.columns = []
        elif name == "ASCII_44" and self.values is not None and self.depth == self._row():
            self.pos += 1

    def _open(self, name: str) -> None:
        self.depth += 1
        if self.base is not None and self.depth == self.base + 1 and not self.columns:
            self.listing = name == "ASCII_40"
        elif self.unnest:  # UNNEST(a[], b[]): one flat row of its arguments
            self.values, self.flat, self.pos, self.unnest = self.depth, True, 0, False
        elif self.values is not None and not self.flat and self.depth == self.values + 1:
            self.pos = 0

    def _close(self) -> None:
        self.depth -= 1
        self.listing = self.listing and self.depth > (self.base or 0)
        if self.values is not None and self.depth < self.values:
            self.values, self.columns, self.source = None, [], False  # its rows ended


def _ident(text: str) -> str:
    return text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()


def _redacted(text: str, column: str, redact: Callable[[str, str], str]) -> str:
    """One constant (``'…'``, ``E'…'`` or ``U&'…'``) with its value redacted, quoted as
    it was."""
    escaped = 3 if text[:2] in ("U&", "u&") else 2 if text[:1] in ("E", "e") else 0
    if escaped:
        head, body = text[:escaped], text[escaped:-1]  # escapes kept: a placeholder has none
        new = redact(column, body)
        return text if new == body else head + new + "'"
    body = text[1:-1].replace("''", "'")
    new = redact(column, body)
    return text if new == body else "'" + new.replace("'", "''") + "'"


def redact_value(name: str, value: str) -> str:
    """One value (column or parameter name, value) under the default rules, as ``devbox
    record`` redacts it (``files.value_redactor``): what a mock given no redactor of its
    own (``MockOptions.redact_value``) redacts a live value with before it looks again."""
    return files.default_redactor()(name, value)


def redact_object(
    stored: dict[str, Any], redact: Callable[[str, str], str] = redact_value
) -> dict[str, Any]:
    """Every string value a secret could hide in: parameters (named by their column, else
    ``$1``...), values
    written into the SQL text (``redact_literals``), row values (named by their column), COPY
    data, startup parameters. Shape unchanged."""
    out = dict(stored)
    if isinstance(out.get("sql"), str):
        out["sql"] = redact_literals(out["sql"], redact)
    if "params" in out:
        sql = out["sql"] if isinstance(out.get("sql"), str) else ""
        out["params"] = redact_params(sql, out["params"], redact)
    if "results" in out:
        results = []
        for res in out["results"]:
            res = dict(res)
            if "rows" in res:
                names = [c.get("name", "") for c in res.get("columns") or []]
                res["rows"] = [
                    [
                        redact(names[i] if i < len(names) else "", v) if isinstance(v, str) else v
                        for i, v in enumerate(row)
                    ]
                    for row in res["rows"]
                ]
            if "data" in res:
                res["data"] = [redact("", d) if isinstance(d, str) else d for d in res["data"]]
            if isinstance(res.get("error"), dict):
                res["error"] = _said(res["error"], redact)
            results.append(res)
        out["results"] = results
    if isinstance(out.get("notices"), list):
        out["notices"] = [_said(n, redact) if isinstance(n, dict) else n for n in out["notices"]]
    if "startup" in out:
        out["startup"] = {k: redact(k, v) for k, v in out["startup"].items()}
    if isinstance(out.get("payload"), str):
        out["payload"] = redact("", out["payload"])
    return out


# the fields of an error or a notice that quote values: a unique violation's DETAIL holds
# the key (``Key (email)=(ada@example.com)``), a NOT NULL one's the whole row
_QUOTING = frozenset({"message", "detail", "hint", "where", "internal_query"})


def _said(fields: dict[str, Any], redact: Callable[[str, str], str]) -> dict[str, Any]:
    """An error's or a notice's fields with the text of those that quote values redacted
    by the value rules."""
    return {
        k: redact("", v) if k in _QUOTING and isinstance(v, str) else v for k, v in fields.items()
    }

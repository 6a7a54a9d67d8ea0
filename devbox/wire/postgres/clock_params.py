"""Parameters a statement itself says are Unix times: the whole argument of
``to_timestamp``.

connect-pg-simple (express-session's Postgres store, the usual one for Express) reads a
session with ``SELECT sess FROM "session" WHERE sid = $1 AND expire >= to_timestamp($2)``,
``$2`` the second it asks in, and writes ``to_timestamp($2)`` with the session's expiry:
a number new on every run. Every session read and write of a replay missed, so every
request after a login found no session. A ten-digit number alone cannot be told from an
id or an amount, and a mock that took an id for a time would answer another customer's
row; but here the statement says what the number is. Such a parameter stands for any
other, as a clock reading written to a fraction of a second does
(``devbox.core.generated``): it is set aside in the key a statement's answers are
matched and kept by (``timeless``), at both ends, so the session reads of a run are
answered in their recorded order whatever second each asked in. Pure.
"""

from __future__ import annotations

from functools import lru_cache

from devbox.wire.postgres.sql import scan

# what may follow the parameter inside to_timestamp( … ): a cast, a scale (``$1 / 1000``
# for milliseconds), nothing else
_AFTER = frozenset({"TYPECAST", "ASCII_47", "ASCII_42", "ICONST", "FCONST", "IDENT"})
_TYPE_WORDS = frozenset(
    "DOUBLE_P PRECISION BIGINT INTEGER INT_P NUMERIC REAL FLOAT_P DECIMAL_P SMALLINT".split()
)
MARK = "\x00unix-time"  # a Unix-time parameter's value in a match key


@lru_cache(maxsize=4096)
def unix_time_params(sql: str) -> frozenset[int]:
    """The numbers (1-based) of the parameters that are the whole argument of
    ``to_timestamp`` in ``sql`` (cast or scaled: ``$2::float8``, ``$2 / 1000``)."""
    if "to_timestamp" not in sql.lower():
        return frozenset()
    try:
        tokens = [(t.name, sql[t.start : t.end + 1]) for t in scan(sql)]
    except Exception:  # pglast's own ParseError: nothing is taken for a time
        return frozenset()
    found: set[int] = set()
    for i, (_name, text) in enumerate(tokens[:-3]):
        if text.lower() != "to_timestamp" or tokens[i + 1][0] != "ASCII_40":
            continue
        param, rest = tokens[i + 2], tokens[i + 3 :]
        if param[0] != "PARAM":
            continue
        close = next((j for j, t in enumerate(rest) if t[0] == "ASCII_41"), None)
        if close is not None and all(t[0] in _AFTER or t[0] in _TYPE_WORDS for t in rest[:close]):
            found.add(int(param[1][1:]))
    return frozenset(found)


def timeless(sql: str, params: tuple[str, ...]) -> tuple[str, ...]:
    """A match key's ``params`` of ``sql`` with each Unix-time parameter's value set aside
    (``MARK``)."""
    times = unix_time_params(sql)
    if not times:
        return params
    return tuple(MARK if i in times else v for i, v in enumerate(params, 1))

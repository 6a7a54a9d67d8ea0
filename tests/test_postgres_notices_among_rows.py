"""Notices a query raises while it sends its rows (a function that ``RAISE NOTICE``s per
row). The server sends each where it is raised, among the rows; the mock sent every
recorded notice before the first row. A client that reads rows one at a time (psycopg's
``cursor.stream()``, with a notice handler) saw all the notices before the first row
instead of one per row; so did the rows of a later statement of a multi-statement query,
and the rows a division by zero cut short.

Recorded through devbox's relay from a real server, each client on a relay of its own,
replayed by the mock of that recording alone, compared with what the server gave it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import mocked, record_each, relayed

pytestmark = pytest.mark.slow

SETUP = """
CREATE FUNCTION noisy(i int) RETURNS int LANGUAGE plpgsql
  AS $$ BEGIN RAISE NOTICE 'row %', i; RETURN i; END $$;
CREATE TABLE t (id int);
"""


def _stream(url: str, sql: str, params: tuple[Any, ...] | None = None) -> list[Any]:
    """Each row with how many notices the client had seen when it got the row."""
    seen: list[str | None] = []
    out: list[Any] = []
    with psycopg.connect(url, autocommit=True) as c:
        c.add_notice_handler(lambda d: seen.append(d.message_primary))
        try:
            for row in c.cursor().stream(sql, params):
                out.append((row, len(seen)))
        except psycopg.Error as exc:
            out.append(exc.sqlstate)
    return [out, seen]


def _multi(url: str) -> list[Any]:
    seen: list[str | None] = []
    with psycopg.connect(url, autocommit=True) as c:
        c.add_notice_handler(lambda d: seen.append(d.message_primary))
        cur = c.execute(
            "SELECT noisy(1); INSERT INTO t SELECT noisy(g) FROM generate_series(2, 3) g;"
            " SELECT noisy(g) FROM generate_series(4, 5) g"
        )
        results = []
        while True:
            results.append((cur.statusmessage, cur.fetchall() if cur.description else None))
            if not cur.nextset():
                break
        return [results, seen]


async def _asyncpg(url: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    seen: list[str] = []
    conn.add_log_listener(lambda _conn, msg: seen.append(msg.message))
    try:
        rows = await conn.fetch("SELECT noisy(g) FROM generate_series(1, 3) g")
        first = await conn.fetchval("SELECT noisy(g) FROM generate_series(1, 3) g WHERE g > $1", 0)
    finally:
        await conn.close()
    return [[tuple(r) for r in rows], first, seen]


CLIENTS: dict[str, Callable[[str], Any]] = {
    "psycopg stream": lambda url: _stream(url, "SELECT noisy(g) FROM generate_series(1, 4) g"),
    "psycopg stream with a parameter": lambda url: _stream(
        url, "SELECT noisy(g) FROM generate_series(1, %s) g", (4,)
    ),
    "psycopg stream cut short": lambda url: _stream(
        url, "SELECT noisy(g) / (3 - g) FROM generate_series(1, 4) g"
    ),
    "psycopg multi-statement": _multi,
    "asyncpg fetch and fetchval": lambda url: asyncio.run(_asyncpg(url)),
}


@pytest.fixture(scope="module")
def recorded() -> Iterator[dict[str, tuple[Any, list[dict[str, Any]]]]]:
    with relayed(SETUP) as (pg, ws, _url):
        yield record_each(ws, pg, CLIENTS, lambda s: any("noisy" in str(o.get("sql")) for o in s))


def test_the_server_sends_a_notice_among_the_rows(
    recorded: dict[str, tuple[Any, list[dict[str, Any]]]],
) -> None:
    live, stored = recorded["psycopg stream"]
    # libpq reads one message past each row: the next row's notice has come with it
    assert live[0] == [((1,), 2), ((2,), 3), ((3,), 4), ((4,), 4)]
    (obj,) = [o for o in stored if "noisy" in str(o.get("sql"))]
    assert obj["notices_at"] == [[0, 0], [0, 1], [0, 2], [0, 3]]


@pytest.mark.parametrize("name", list(CLIENTS))
def test_notices_replay_among_the_rows_as_the_server_sent_them(
    recorded: dict[str, tuple[Any, list[dict[str, Any]]]], name: str
) -> None:
    live, stored = recorded[name]
    with mocked(stored) as url:
        assert CLIENTS[name](url) == live

"""An answer recorded as ``"suspended": true`` (asyncpg's ``fetchval``/``fetchrow`` send
``Execute`` with a row limit of 1, and the server answered ``PortalSuspended``) asked for
by a simple query (psycopg without parameters, psql): same SQL, same (no) parameters, so
it matches. A simple query has no portal to suspend: the server sends every row and a
``SELECT n`` tag. The mock sent ``PortalSuspended`` inside the simple-query reply, and
psycopg failed with "unexpected response from server ... 's'".

Recorded through devbox's relay from a real server by asyncpg, replayed by psycopg and
psql, each compared with what the real server gives that client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import mocked, psql, relayed, simple_replays

pytestmark = pytest.mark.slow

SETUP = """
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item' || g FROM generate_series(1, 5) g;
"""
ONE_ROW = "SELECT id, name FROM items WHERE id = 3"
ONE_VALUE = "SELECT count(*) FROM items"
# five rows, of which asyncpg's fetchrow fetched (and the recording holds) the first
MANY_ROWS = "SELECT id, name FROM items ORDER BY id"


async def _asyncpg(url: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return [
            await conn.fetchrow(ONE_ROW),
            await conn.fetchval(ONE_VALUE),
            await conn.fetchrow(MANY_ROWS),
        ]
    finally:
        await conn.close()


def asyncpg_client(url: str) -> list[Any]:
    return [tuple(r) if isinstance(r, asyncpg.Record) else r for r in asyncio.run(_asyncpg(url))]


def psycopg_client(url: str, sql: str) -> list[Any]:
    """A query without parameters: psycopg sends it as a simple query."""
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(sql)
        rows = cur.fetchall()
        return [rows, cur.statusmessage, cur.rowcount]


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """asyncpg through the relay; and what psycopg and psql get from the real server."""
    with relayed(SETUP) as (pg, ws, url):
        live: dict[str, Any] = {"asyncpg": asyncpg_client(url)}
        for sql in (ONE_ROW, ONE_VALUE, MANY_ROWS):
            live[f"psycopg {sql}"] = psycopg_client(pg.url(), sql)
            live[f"psql {sql}"] = psql(pg.url(), sql)

        def done(stored: list[dict[str, Any]]) -> bool:
            return sum(o.get("sql") in (ONE_ROW, ONE_VALUE, MANY_ROWS) for o in stored) >= 3

        yield live, ws.stored_once(done)


def test_asyncpg_fetchrow_and_fetchval_are_recorded_as_suspended(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    assert live["asyncpg"] == [(3, "item3"), 5, (1, "item1")]
    answers = {o["sql"]: o["results"] for o in stored if o.get("type") == "query"}
    for sql in (ONE_ROW, ONE_VALUE, MANY_ROWS):
        assert answers[sql][0].get("suspended") is True, answers[sql]
        assert len(answers[sql][0]["rows"]) == 1


@pytest.mark.parametrize("sql", [ONE_ROW, ONE_VALUE])
def test_a_suspended_answer_of_one_row_replays_to_a_simple_query_as_the_server_answers(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]], sql: str
) -> None:
    live, stored = recorded
    assert live[f"psycopg {sql}"][1] == "SELECT 1"
    assert simple_replays(stored, sql, psycopg_client) == (
        live[f"psycopg {sql}"],
        live[f"psql {sql}"],
    )


def test_a_suspended_answer_of_part_of_the_rows_sends_what_was_recorded(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """The server would send five rows; the recording holds the one asyncpg fetched, so
    that row goes, tagged ``SELECT 1`` (docs/postgres.md, Limits)."""
    live, stored = recorded
    assert live[f"psycopg {MANY_ROWS}"][0][:1] == [(1, "item1")]
    with mocked(stored) as url:
        got = psycopg_client(url, MANY_ROWS)
        out = psql(url, MANY_ROWS)
    assert got == [[(1, "item1")], "SELECT 1", 1]
    assert out == "id|name\n1|item1\n(1 row)\n"

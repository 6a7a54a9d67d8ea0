"""The tag of an answer recorded suspended (asyncpg's ``fetchrow``/``fetchval``: an
``Execute`` with a row limit, answered ``PortalSuspended``, no tag) when a simple query
(psycopg without parameters, psql) asks for the same SQL whole. The server tags a
data-modifying statement by what it is, not by its first word: ``WITH ... INSERT ...
RETURNING`` is ``INSERT 0 n``, ``WITH ... DELETE ... RETURNING`` is ``DELETE n``; ``SHOW``
and ``EXPLAIN`` are tagged without a count. The mock built ``SELECT n`` for all of them.
An ``EXECUTE`` of a statement PREPAREd in SQL says nothing of what it runs: the tag the
server gave a finished answer of the same SQL says it.

Recorded through devbox's relay from a real server by asyncpg, replayed by psycopg and
psql, each compared with what the real server gives that client from the same state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import PgServer, mocked, psql, relayed, simple_replays

pytestmark = pytest.mark.slow

SETUP = "CREATE TABLE items (id int PRIMARY KEY, name text);"
RESET = "DELETE FROM items; INSERT INTO items VALUES (1, 'item1'), (2, 'item2'), (3, 'item3')"
SUSPENDED = [
    "WITH n AS (SELECT 'new' AS name) INSERT INTO items (id, name) "
    "SELECT 10, name FROM n RETURNING id, name",
    "INSERT INTO items (id, name) VALUES (11, 'x') RETURNING id, name",
    "WITH t AS (SELECT 1 AS id) UPDATE items SET name = 'renamed' "
    "WHERE id IN (SELECT id FROM t) RETURNING id, name",
    "WITH d AS (SELECT 2 AS id) DELETE FROM items WHERE id IN (SELECT id FROM d) RETURNING id",
    "SHOW DateStyle",
    "EXPLAIN (COSTS OFF) SELECT 1",
    "SELECT id, name FROM items WHERE id = 3",
]
PREPARE = "PREPARE ins AS INSERT INTO items (id, name) VALUES (12, 'p') RETURNING id, name"
EXECUTE = "EXECUTE ins"


def reset(pg: PgServer) -> None:
    with psycopg.connect(pg.url(), autocommit=True) as c:
        c.execute(RESET)


async def _asyncpg(url: str, pg: PgServer) -> list[Any]:
    conn = await asyncpg.connect(url)
    out: list[Any] = []
    try:
        for sql in SUSPENDED:
            reset(pg)
            out.append(await conn.fetchval(sql))
        # the same SQL fetched whole (tagged), then by fetchval (suspended)
        reset(pg)
        await conn.execute(PREPARE)
        out.append([tuple(r) for r in await conn.fetch(EXECUTE)])
        reset(pg)
        out.append(await conn.fetchval(EXECUTE))
    finally:
        await conn.close()
    return out


def psycopg_client(url: str, sql: str, before: str = "") -> list[Any]:
    """A query without parameters: psycopg sends it as a simple query."""
    with psycopg.connect(url, autocommit=True) as c:
        if before:
            c.execute(before)
        cur = c.execute(sql)
        return [cur.fetchall(), cur.statusmessage, cur.rowcount]


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    with relayed(SETUP) as (pg, ws, url):
        live: dict[str, Any] = {"asyncpg": asyncio.run(_asyncpg(url, pg))}
        for sql in SUSPENDED:
            reset(pg)
            live[f"psycopg {sql}"] = psycopg_client(pg.url(), sql)
            reset(pg)
            live[f"psql {sql}"] = psql(pg.url(), sql)
        reset(pg)
        live["psycopg execute"] = psycopg_client(pg.url(), EXECUTE, before=PREPARE)

        def done(stored: list[dict[str, Any]]) -> bool:
            return sum(str(o.get("sql")) == EXECUTE for o in stored) >= 2

        yield live, ws.stored_once(done)


def test_asyncpg_recorded_each_answer_suspended(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    assert live["asyncpg"][:4] == [10, 11, 1, 2]
    answers = {o["sql"]: o["results"] for o in stored if o.get("type") == "query"}
    for sql in SUSPENDED:
        assert answers[sql][0].get("suspended") is True, answers[sql]
        assert "tag" not in answers[sql][0]


@pytest.mark.parametrize("sql", SUSPENDED)
def test_a_suspended_answer_replays_to_a_simple_query_with_the_servers_tag(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]], sql: str
) -> None:
    live, stored = recorded
    assert simple_replays(stored, sql, psycopg_client) == (
        live[f"psycopg {sql}"],
        live[f"psql {sql}"],
    )


def test_an_execute_of_a_prepared_statement_is_tagged_as_recorded_finished(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """``EXECUTE ins`` recorded twice: whole (``INSERT 0 1``), then suspended. psycopg
    asking it twice gets the second answer tagged as the server tagged the first."""
    live, stored = recorded
    assert live["psycopg execute"] == [[(12, "p")], "INSERT 0 1", 1]
    with mocked(stored) as url, psycopg.connect(url, autocommit=True) as c:
        c.execute(PREPARE)
        first = c.execute(EXECUTE)
        assert [first.fetchall(), first.statusmessage] == [[(12, "p")], "INSERT 0 1"]
        again = c.execute(EXECUTE)
        assert [again.fetchall(), again.statusmessage, again.rowcount] == live["psycopg execute"]

"""One relay, one server, two databases: a service that connects to ``app`` and to
``other`` and runs the same SQL in both gets each database's own rows from the mock,
whatever order it asks in, and a query recorded in one database misses in the other,
the miss naming the database."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import PgServer, WireServers, pg_bin, running_postgres

pytestmark = pytest.mark.slow

TABLE = "CREATE TABLE items (id int PRIMARY KEY, name text)"
ROWS = {"app": "('apple'), ('avocado')", "other": "('orange'), ('olive'), ('onion')"}
ALL = "SELECT name FROM items ORDER BY id"
ONE = "SELECT name FROM items WHERE id = %s"
ONLY_APP = "SELECT count(*) FROM only_in_app"


def url(pg: PgServer, port: int, database: str, password: str | None = None) -> str:
    return f"postgresql://{pg.user}:{password or pg.password}@127.0.0.1:{port}/{database}"


def with_psycopg(link: str) -> Any:
    with psycopg.connect(link, autocommit=True) as c:
        return [c.execute(ALL).fetchall(), c.execute(ONE, (2,)).fetchall()]


def with_asyncpg(link: str) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(link)
        try:
            one = ONE.replace("%s", "$1")
            return [
                list(map(tuple, await conn.fetch(ALL))),
                list(map(tuple, await conn.fetch(one, 2))),
            ]
        finally:
            await conn.close()

    return asyncio.run(go())


CLIENTS: dict[str, Callable[[str], Any]] = {"psycopg": with_psycopg, "asyncpg": with_asyncpg}


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[PgServer, dict[str, Any], list[dict[str, Any]]]]:
    with running_postgres() as pg:
        subprocess.run(
            [str(pg_bin() / "createdb"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "other"],
            check=True,
            env={"PGPASSWORD": pg.password},
            capture_output=True,
        )
        for database, rows in ROWS.items():
            with psycopg.connect(url(pg, pg.port, database), autocommit=True) as c:
                c.execute(TABLE)
                c.execute(
                    f"INSERT INTO items SELECT row_number() OVER (), v FROM (VALUES {rows}) t(v)"
                )
                if database == "app":
                    c.execute("CREATE TABLE only_in_app AS SELECT 1 AS x")
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            live: dict[str, Any] = {}
            for database in ROWS:  # app first, then other
                for name, client in CLIENTS.items():
                    live[f"{name}@{database}"] = client(url(pg, port, database))
            with psycopg.connect(url(pg, port, "app"), autocommit=True) as c:
                live["only-app"] = c.execute(ONLY_APP).fetchall()
            stored = ws.stored_once(lambda s: any(o.get("sql") == ONLY_APP for o in s))
        finally:
            ws.close()
        yield pg, live, stored


def test_the_two_databases_answer_differently(
    recorded: tuple[PgServer, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, live, stored = recorded
    assert live["psycopg@app"][0] == [("apple",), ("avocado",)]
    assert live["psycopg@other"][0] == [("orange",), ("olive",), ("onion",)]
    databases = {o["database"] for o in stored if o.get("type") == "connection"}
    assert databases == {"app", "other"}


def test_each_database_gets_its_own_rows_in_any_order(
    recorded: tuple[PgServer, dict[str, Any], list[dict[str, Any]]],
) -> None:
    pg, live, stored = recorded
    ws = WireServers()
    try:
        port = ws.mock(stored)
        for database in reversed(list(ROWS)):  # other first: not the recorded order
            for name, client in reversed(list(CLIENTS.items())):
                got = client(url(pg, port, database, "whatever"))
                assert got == live[f"{name}@{database}"], (name, database)
    finally:
        ws.close()


def test_a_query_recorded_in_one_database_misses_in_the_other(
    recorded: tuple[PgServer, dict[str, Any], list[dict[str, Any]]],
) -> None:
    pg, live, stored = recorded
    ws = WireServers()
    try:
        port = ws.mock(stored)
        with psycopg.connect(url(pg, port, "other", "whatever"), autocommit=True) as c:
            with pytest.raises(psycopg.Error) as caught:
                c.execute(ONLY_APP)
            assert caught.value.sqlstate == "DX404"
            message = caught.value.diag.message_primary or ""
            assert "database 'app'" in message and "'other'" in message, message
            assert c.execute(ALL).fetchall() == live["psycopg@other"][0]  # still usable
        with psycopg.connect(url(pg, port, "app", "whatever"), autocommit=True) as c:
            assert c.execute(ONLY_APP).fetchall() == live["only-app"]
    finally:
        ws.close()


def test_one_database_recorded_answers_a_client_of_any_database() -> None:
    """A recording of one database (or of none: before connections said theirs) keys
    queries by SQL alone, as it always did."""
    query = {
        "type": "query",
        "conn": 1,
        "seq": 1,
        "protocol": "simple",
        "sql": "SELECT 1 AS n",
        "results": [
            {
                "columns": [{"name": "n", "type": "int4", "oid": 23}],
                "rows": [["1"]],
                "tag": "SELECT 1",
            }
        ],
    }
    for connection in (
        {"type": "connection", "conn": 1, "user": "devbox", "database": "app"},
        {"type": "connection", "conn": 1, "user": "devbox"},
    ):
        ws = WireServers()
        try:
            port = ws.mock([connection, query])
            link = f"postgresql://devbox:whatever@127.0.0.1:{port}/elsewhere"
            with psycopg.connect(link, autocommit=True) as c:
                assert c.execute("SELECT 1 AS n").fetchall() == [(1,)]
        finally:
            ws.close()

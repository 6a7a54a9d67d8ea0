"""The Postgres mock against a real PostgreSQL where the text of a query or a value is
out of the ordinary: non-ASCII SQL (matching keys made from the SQL's characters, not
its UTF-8 bytes), a ``timestamptz`` recorded as text in a session whose TimeZone is not
UTC and read back in binary, and a query that failed at Parse (its table missing) until
a migration created the table.

Each client runs once through devbox's recording relay against the real server, then
against the mock of that recording, and must get what the server gave it; where the
mock is asked what was never recorded, it must say so (``DX404``) and keep the
connection.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import mocked, relayed

from devbox.wire.postgres.sql import normalise

pytestmark = pytest.mark.slow

SETUP = """
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'café');
"""
CAFE = "SELECT id, name FROM items WHERE name <> 'café' AND id = {}"
ACCENTS = "SELECT 'ééé' AS x, id FROM items WHERE id = {}"
# the session's TimeZone: +05:30 now, +05:53:28 (local mean time) in 1890
TZ_OPTIONS = "-c TimeZone=Asia/Kolkata"
TIMES = (
    "SELECT '2024-03-01 00:00:00.123456+00'::timestamptz AS now,"
    " '1890-01-01 00:00:00+00'::timestamptz AS lmt,"
    " '2024-03-01 12:34:56.5'::timestamp AS naive"
)
PROBE = "SELECT count(*) FROM probe WHERE id > %s"
PROBE2 = "SELECT count(*) FROM probe2"


def _err(exc: BaseException) -> tuple[str, str | None]:
    return ("error", getattr(exc, "sqlstate", None))


def non_ascii(url: str, replay: bool) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(url, autocommit=True) as c:
        out.append(c.execute(CAFE.format(1)).fetchall())
        out.append(c.execute(ACCENTS.format(1)).fetchall())
        if replay:  # never recorded: a miss, not the rows of id = 1
            for sql in (CAFE.format(2), ACCENTS.format(3)):
                try:
                    out.append(c.execute(sql).fetchall())
                except psycopg.Error as exc:
                    out.append(_err(exc))
            out.append(c.execute("SELECT 42 AS n").fetchall())  # the connection lives on
        else:
            c.execute("SELECT 42 AS n")
    return out


def times(url: str, binary: bool) -> list[Any]:
    with psycopg.connect(url, autocommit=True, options=TZ_OPTIONS) as c:
        with c.cursor(binary=binary) as cur:
            rows = cur.execute(TIMES).fetchall()
        return [rows, c.execute("SELECT 43 AS n").fetchall()]


def probes(url: str) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(url, autocommit=True) as c:
        for step in range(5):
            if step == 3:
                c.execute("DROP TABLE probe")
            try:
                out.append(c.execute(PROBE, (0,)).fetchall())
            except psycopg.Error as exc:
                out.append(_err(exc))
                if step == 0:
                    c.execute("CREATE TABLE probe (id int)")

    async def prepared() -> None:
        conn = await asyncpg.connect(url)
        try:
            for _step in range(3):
                try:
                    out.append(await conn.fetchval(PROBE2))
                except asyncpg.PostgresError as exc:
                    out.append(("error", exc.sqlstate))
                    await conn.execute("CREATE TABLE probe2 (id int)")
        finally:
            await conn.close()

    asyncio.run(prepared())
    return out


SCENARIOS: dict[str, Callable[[str], list[Any]]] = {
    "non-ascii": lambda url: non_ascii(url, replay=False),
    "times": lambda url: times(url, binary=False),  # recorded in text
    "probes": probes,
}


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, list[Any]], list[Any], list[dict[str, Any]]]]:
    with relayed(SETUP) as (pg, ws, url):
        # what a binary cursor gets from the server itself (never recorded)
        binary_times = times(pg.url(), binary=True)
        live = {name: run(url) for name, run in SCENARIOS.items()}
        yield live, binary_times, ws.stored_once(_all_stored)


def _all_stored(stored: list[dict[str, Any]]) -> bool:
    sqls = [str(o.get("sql", "")) for o in stored]
    return (
        "SELECT 42 AS n" in sqls
        and "SELECT 43 AS n" in sqls
        and sum(1 for s in sqls if s == PROBE2) >= 2
    )


@pytest.fixture
def mock_url(
    recorded: tuple[dict[str, list[Any]], list[Any], list[dict[str, Any]]],
) -> Iterator[str]:
    with mocked(recorded[2]) as url:
        yield url


def test_non_ascii_sql_matches_only_its_own_query(
    recorded: tuple[dict[str, list[Any]], list[Any], list[dict[str, Any]]], mock_url: str
) -> None:
    live = recorded[0]["non-ascii"]
    assert live == [[(1, "one")], [("ééé", 1)]]
    # loading the recording of 'ééé' failed (UnicodeDecodeError), and a query differing
    # from a recorded one only after a non-ASCII character got that one's rows
    got = non_ascii(mock_url, replay=True)
    assert got[:2] == live
    assert got[2:] == [("error", "DX404"), ("error", "DX404"), [(42,)]]


def test_normalise_slices_characters_and_survives_non_utf8() -> None:
    cafe = "select id , name from items where name <> 'café' and id = 1"
    assert normalise(CAFE.format(1)) == cafe
    assert normalise(CAFE.format(1)) != normalise(CAFE.format(2))
    assert normalise("SELECT '😀' AS \"Ñ\" -- ü\n;") == "select '😀' as \"Ñ\""
    # SQL of a client whose client_encoding is not UTF-8, decoded with surrogateescape
    latin1 = b"SELECT 'caf\xe9' AS X, 1".decode("utf-8", "surrogateescape")
    assert normalise(latin1) == "select 'caf\udce9' as x , 1"
    assert normalise(latin1) != normalise(latin1.replace("1", "2"))


def test_timestamptz_recorded_as_text_reads_back_binary(
    recorded: tuple[dict[str, list[Any]], list[Any], list[dict[str, Any]]], mock_url: str
) -> None:
    live, binary_times = recorded[0]["times"], recorded[1]
    assert times(mock_url, binary=False) == live
    # the text carried +05:30 (and +05:53:28): the mock raised TypeError and dropped the
    # connection, where the server sends the instant
    got = times(mock_url, binary=True)
    assert got == binary_times
    now = got[0][0][0]
    assert now == datetime.datetime(2024, 3, 1, 0, 0, 0, 123456, tzinfo=datetime.UTC)
    assert got[0][0][2] == datetime.datetime(2024, 3, 1, 12, 34, 56, 500000)


def test_parse_error_replayed_in_recorded_order(
    recorded: tuple[dict[str, list[Any]], list[Any], list[dict[str, Any]]], mock_url: str
) -> None:
    live = recorded[0]["probes"]
    undefined = ("error", "42P01")
    assert live == [undefined, [(0,)], [(0,)], undefined, undefined, undefined, 0, 0]
    # the first Parse's error was replayed for every later Parse of the same SQL
    assert probes(mock_url) == live

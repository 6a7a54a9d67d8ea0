"""The Postgres mock against a real PostgreSQL where the server's answer is partial: a
statement prepared and described but never executed (asyncpg's
``copy_records_to_table`` learns the column types so, ``prepare().get_attributes()``),
and an error after some rows or COPY data were already sent (a division by zero in the
third row read by psycopg's ``cursor.stream()``, a ``COPY ... TO STDOUT`` failing
midway, a ``COPY ... FROM STDIN`` the client gives up or the server rejects).

Each client runs once through devbox's recording relay against the real server, then
against the mock of that recording, and must get what the server gave it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import mocked, relayed

from devbox.wire.postgres.store import build

pytestmark = pytest.mark.slow

SETUP = "CREATE TABLE tt (a int, b text); CREATE TABLE items (id int PRIMARY KEY, name text);"
DESCRIBED = "SELECT a, b FROM tt WHERE a = $1"
STREAM = "SELECT 10 / (3 - g) FROM generate_series(1, 5) g"
COPY_OUT = "COPY (SELECT 10 / (3 - g) FROM generate_series(1, 5000) g) TO STDOUT"
COPY_IN = "COPY items (id, name) FROM STDIN"
# each scenario's last query (its other connections are stored by then); one per client,
# as an answer asyncpg's fetchval recorded (a suspended portal) is no answer to psycopg's
LAST = "SELECT 42 AS n"
LAST_PSYCOPG = "SELECT 43 AS n"


def _err(exc: BaseException) -> tuple[str, str | None]:
    return ("error", getattr(exc, "sqlstate", None))


def described(url: str) -> list[Any]:
    async def run() -> list[Any]:
        out: list[Any] = []
        conn = await asyncpg.connect(url)
        try:
            out.append(await conn.copy_records_to_table("tt", records=[(4, "d"), (5, "e")]))
            st = await conn.prepare(DESCRIBED)
            out.append([(a.name, a.type.name) for a in st.get_attributes()])
            out.append([t.name for t in st.get_parameters()])
        finally:
            await conn.close()
        conn = await asyncpg.connect(url)  # the first connection's statements stored
        try:
            out.append(await conn.fetchval(LAST))
        finally:
            await conn.close()
        return out

    return asyncio.run(run())


def midstream(url: str) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(url, autocommit=True) as c:
        got: list[Any] = []
        try:
            for row in c.cursor().stream(STREAM):
                got.append(row)
        except psycopg.Error as exc:
            got.append(_err(exc))
        out.append(got)
        got = []
        try:
            with c.cursor().copy(COPY_OUT) as cp:
                got.extend(bytes(data) for data in cp)
        except psycopg.Error as exc:
            got.append(_err(exc))
        out.append(got)
        out.append(c.execute("SELECT 1").fetchall())  # the connection lives on
    for case in ("copyfail", "bad-data"):
        steps: list[Any] = []
        with psycopg.connect(url) as c:
            try:
                with c.cursor() as cur, cur.copy(COPY_IN) as cp:
                    steps.append("entered copy block")
                    if case == "copyfail":
                        cp.write_row((20, "x"))
                        raise ValueError("client gives up")
                    cp.write(b"2\ttwo\nnot-an-int\tx\n")
                    steps.append("data written")
            except ValueError as exc:
                steps.append(str(exc))
            except psycopg.Error as exc:
                steps.append(_err(exc))
            c.rollback()
            steps.append(c.execute("SELECT count(*) FROM items").fetchall())
        out.append(steps)
    with psycopg.connect(url, autocommit=True) as c:
        out.append(c.execute(LAST_PSYCOPG).fetchall())
    return out


SCENARIOS: dict[str, Callable[[str], list[Any]]] = {
    "described": described,
    "midstream": midstream,
}


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, list[Any]], list[dict[str, Any]]]]:
    with relayed(SETUP) as (_pg, ws, url):
        live = {name: run(url) for name, run in SCENARIOS.items()}
        yield live, ws.stored_once(_all_stored)


def _all_stored(stored: list[dict[str, Any]]) -> bool:
    sqls = [str(o.get("sql", "")) for o in stored]
    return LAST in sqls and LAST_PSYCOPG in sqls and DESCRIBED in sqls


@pytest.fixture
def mock_url(recorded: tuple[dict[str, list[Any]], list[dict[str, Any]]]) -> Iterator[str]:
    with mocked(recorded[1]) as url:
        yield url


def test_statement_described_never_executed(
    recorded: tuple[dict[str, list[Any]], list[dict[str, Any]]], mock_url: str
) -> None:
    live, stored = recorded
    assert live["described"] == ["COPY 2", [("a", "int4"), ("b", "text")], ["int4"], 42]
    # stored readably, once per statement (an executed one is described by its answer)
    found = [o for o in stored if o.get("describe") == "statement"]
    assert sorted(o["sql"] for o in found) == ['SELECT * FROM "tt" LIMIT 1', DESCRIBED]
    one = next(o for o in found if o["sql"] == DESCRIBED)
    assert one["param_types"] == [23]
    assert [c["name"] for c in one["results"][0]["columns"]] == ["a", "b"]
    # the mock answered DX404 to the Describe: COPY and get_attributes failed
    assert described(mock_url) == live["described"]


def test_rows_and_copy_data_before_an_error_are_replayed(
    recorded: tuple[dict[str, list[Any]], list[dict[str, Any]]], mock_url: str
) -> None:
    live = recorded[0]["midstream"]
    division = ("error", "22012")
    assert live[0] == [(5,), (10,), division]
    assert live[1] == [b"5\n", b"10\n", division]
    assert live[3] == ["entered copy block", "client gives up", [(0,)]]
    assert live[4] == ["entered copy block", "data written", ("error", "22P02"), [(0,)]]
    # the mock sent the error without the rows before it; a COPY FROM STDIN ending in an
    # error was refused at once, without CopyInResponse
    assert midstream(mock_url) == live


def test_interrupted_result_is_stored_before_its_error(
    recorded: tuple[dict[str, list[Any]], list[dict[str, Any]]],
) -> None:
    stored = recorded[1]
    stream = next(o for o in stored if o.get("sql") == STREAM)
    first, error = stream["results"]
    assert first["interrupted"] is True and first["rows"] == [["5"], ["10"]] and "tag" not in first
    assert error["error"]["sqlstate"] == "22012"
    copy = next(o for o in stored if o.get("sql") == COPY_OUT)
    assert copy["results"][0]["data"] == ["5\n", "10\n"]
    assert copy["results"][0]["interrupted"] is True
    # a recording made before: the Describe of a statement is answered as it was
    index = build([("old.json", 1, o) for o in stored if o.get("describe") != "statement"])
    assert not index.statement_described

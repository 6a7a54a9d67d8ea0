"""The Postgres mock against a real PostgreSQL for SQL cursors a client DECLAREs:
psycopg's named (server-side) cursors send ``DECLARE "name" CURSOR FOR ...`` (extended
query with parameters, simple query without), then describe the cursor as a protocol
portal (``Describe 'P' "name"``) and FETCH from it in batches, then CLOSE it. The mock
answered the Describe with 34000 "portal does not exist": it knew only Bind's portals.

Each client runs once through devbox's recording relay against the real server, then
against the mock of that recording, and must get what the server gave it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from pg_support import mocked, relayed

pytestmark = pytest.mark.slow

SETUP = """
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item' || g FROM generate_series(1, 100) g;
"""


def named_cursors(url: str) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(url) as c:
        # parameters: DECLARE goes as an extended query
        with c.cursor(name="srv") as cur:
            cur.itersize = 40
            cur.execute("SELECT id, name FROM items WHERE id > %s ORDER BY id", (10,))
            out.append([(d.name, d.type_code) for d in cur.description or []])
            rows = list(cur)
            out.append((len(rows), rows[0], rows[-1]))
        # no parameters: DECLARE goes as a simple query; a user-chosen quoted name
        with c.cursor(name="Second Cursor") as cur:
            cur.execute("SELECT name, id * 2 AS twice FROM items ORDER BY id LIMIT 7")
            out.append([(d.name, d.type_code) for d in cur.description or []])
            out.append(cur.fetchmany(3))
            out.append(cur.fetchall())
        out.append(c.execute("SELECT 42 AS n").fetchall())  # the connection lives on
    return out


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[list[Any], list[dict[str, Any]]]]:
    with relayed(SETUP) as (_pg, ws, url):
        live = named_cursors(url)
        yield live, ws.stored_once(lambda s: any(o.get("sql") == "COMMIT" for o in s))


def test_named_cursor_described_and_fetched_as_recorded(
    recorded: tuple[list[Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    assert live[0] == [("id", 23), ("name", 25)]
    assert live[1] == (90, (11, "item11"), (100, "item100"))
    assert live[2] == [("name", 25), ("twice", 23)]
    # the Describe of each cursor was recorded, under the DECLARE that opened it
    described = [o for o in stored if o.get("describe") == "cursor"]
    assert [o["cursor"] for o in described] == ["srv", "Second Cursor"]
    with mocked(stored) as url:
        got = named_cursors(url)
    assert got == live


def sqlalchemy_stream(url: str) -> list[Any]:
    """SQLAlchemy's ``stream_results=True`` on psycopg: a server-side cursor named
    ``c_<address of the execution context>_<process-wide counter>``, so each run (each
    engine, each process) sends another name in the DECLARE, the FETCHes and the CLOSE."""
    out: list[Any] = []
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as c:
            out.append(c.execute(sa.text("SELECT id FROM items WHERE id < :n"), {"n": 3}).all())
            stream = c.execution_options(stream_results=True, max_row_buffer=10)
            out.append([r[0] for r in stream.execute(sa.text("SELECT id FROM items ORDER BY id"))])
            res = stream.execute(
                sa.text("SELECT name FROM items WHERE id > :n ORDER BY id"), {"n": 95}
            )
            out.append([r[0] for r in res])
    finally:
        engine.dispose()
    return out


def two_cursors_at_once(url: str) -> list[Any]:
    """Two named cursors open at once on one connection, fetched in turns, named anew
    each run (as a client that names cursors by a counter or a uuid does)."""
    out: list[Any] = []
    tag = uuid.uuid4().hex
    with psycopg.connect(url) as c:
        with c.cursor(name=f"up_{tag}") as up, c.cursor(name=f"down_{tag}") as down:
            up.execute("SELECT id FROM items WHERE id > %s ORDER BY id", (0,))
            down.execute("SELECT id FROM items ORDER BY id DESC")
            for _ in range(3):
                out.append(up.fetchmany(4))
                out.append(down.fetchmany(4))
            up.scroll(10)  # MOVE
            out.append(up.fetchone())
    return out


@pytest.fixture(scope="module")
def generated() -> Iterator[tuple[list[Any], list[Any], list[dict[str, Any]]]]:
    """Both clients recorded through the relay against the real server."""
    with relayed(SETUP) as (_pg, ws, url):
        streamed, both = sqlalchemy_stream(url), two_cursors_at_once(url)

        def done(stored: list[dict[str, Any]]) -> bool:
            return (
                sum(o.get("type") == "connection" for o in stored) >= 2
                and sum(str(o.get("sql", "")).startswith("COMMIT") for o in stored) >= 2
            )

        yield streamed, both, ws.stored_once(done)


def test_generated_cursor_names_match_their_recording(
    generated: tuple[list[Any], list[Any], list[dict[str, Any]]],
) -> None:
    live, _, stored = generated
    assert live[1] == list(range(1, 101))
    assert live[2] == [f"item{i}" for i in range(96, 101)]
    # recorded under SQLAlchemy's generated name; replayed, the name is another one
    recorded_names = {o["cursor"] for o in stored if o.get("describe") == "cursor"}
    assert len({n for n in recorded_names if n.startswith("c_")}) == 2
    for _ in range(2):  # each run a new mock, as a new replay; names new each run
        with mocked(stored) as url:
            got = sqlalchemy_stream(url)
        assert got == live


def test_two_cursors_open_at_once_each_get_their_rows(
    generated: tuple[list[Any], list[Any], list[dict[str, Any]]],
) -> None:
    _, live, stored = generated
    assert live[0] == [(1,), (2,), (3,), (4,)]
    assert live[1] == [(100,), (99,), (98,), (97,)]
    assert live[-1] == (23,)
    with mocked(stored) as url:
        got = two_cursors_at_once(url)
    assert got == live

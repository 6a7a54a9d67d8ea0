"""A cursor DECLAREd by a prepared statement run again without a new ``Parse``: the server
opens a new cursor each time the DECLARE is executed, and the recording keys each run's
DECLARE, FETCHes and CLOSE by that cursor's own ordinal. The mock keyed a prepared
statement once, at its Parse, so the second run's DECLARE answered as the first and its
FETCHes missed (``DX404``): the cursor it named was closed.

Recorded through devbox's relay from a real server, replayed by the mock: each client
must get what the server gave it, each run its own rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import mocked, relayed

pytestmark = pytest.mark.slow

SETUP = """
CREATE TABLE items (id int PRIMARY KEY);
INSERT INTO items SELECT g FROM generate_series(1, 20) g;
"""
# each run takes the three smallest ids left, then deletes them: the next run's rows differ
TAKE = "DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id LIMIT 3)"


def psycopg_prepared(url: str) -> list[Any]:
    """psycopg with ``prepare=True``: the first run sends Parse, Bind, Execute; each run
    after only Bind and Execute of the same named statement."""
    out: list[Any] = []
    with psycopg.connect(url) as c, c.transaction():
        for _ in range(3):
            c.execute("DECLARE walk CURSOR FOR SELECT id FROM items ORDER BY id", prepare=True)
            out.append(c.execute("FETCH 2 FROM walk", prepare=True).fetchall())
            out.append(c.execute("FETCH 1 FROM walk").fetchall())  # a simple query
            c.execute("CLOSE walk", prepare=True)
            c.execute(TAKE)
    return out


async def _asyncpg(url: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    out: list[Any] = []
    try:
        async with conn.transaction():
            for _ in range(3):
                # parameters: a prepared statement (asyncpg's cache), parsed once
                await conn.execute(
                    "DECLARE walk CURSOR FOR SELECT id FROM items WHERE id > $1 ORDER BY id", 0
                )
                out.append([tuple(r) for r in await conn.fetch("FETCH 2 FROM walk")])
                await conn.execute("CLOSE walk")
                await conn.execute(TAKE)
    finally:
        await conn.close()
    return out


def asyncpg_prepared(url: str) -> list[Any]:
    return asyncio.run(_asyncpg(url))


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    with relayed(SETUP) as (_pg, ws, url):
        live = {"psycopg": psycopg_prepared(url), "asyncpg": asyncpg_prepared(url)}

        def done(stored: list[dict[str, Any]]) -> bool:
            return sum(str(o.get("sql", "")) == "COMMIT" for o in stored) >= 2

        yield live, ws.stored_once(done)


def test_each_run_of_a_prepared_declare_replays_its_own_rows(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    assert live["psycopg"] == [
        [(1,), (2,)],
        [(3,)],
        [(4,), (5,)],
        [(6,)],
        [(7,), (8,)],
        [(9,)],
    ]
    assert live["asyncpg"] == [[(10,), (11,)], [(13,), (14,)], [(16,), (17,)]]
    # each DECLARE ran three times as a named prepared statement
    for sql in (
        "DECLARE walk CURSOR FOR SELECT id FROM items ORDER BY id",
        "DECLARE walk CURSOR FOR SELECT id FROM items WHERE id > $1 ORDER BY id",
    ):
        runs = [o for o in stored if o.get("sql") == sql]
        assert len(runs) == 3 and all(o.get("statement") for o in runs), runs
    with mocked(stored) as url:
        got = {"psycopg": psycopg_prepared(url), "asyncpg": asyncpg_prepared(url)}
    assert got == live


def test_the_recorder_follows_a_cursor_each_time_its_prepared_declare_runs() -> None:
    """The recorder reads cursor statements as the store and the mock do
    (``cursors.Ordinals``): a cursor opens when its DECLARE is executed, so the Describe
    of the cursor a second run opened (no new Parse) is stored under its DECLARE."""
    from devbox.wire.postgres import messages as m
    from devbox.wire.postgres.recorder import PostgresRecorderConnection

    declare = "DECLARE walk CURSOR FOR SELECT 1 AS one"
    rec = PostgresRecorderConnection()
    rec.client = m.Framer(startup=False)  # past start-up
    rec.ready_seen = True
    column = m.Column("one", 0, 0, 23, 4, -1, 0)
    bind = m.msg(b"B", m.cstr("") + m.cstr("s1") + b"\x00\x00\x00\x00\x00\x00")
    execute = m.msg(b"E", m.cstr("") + b"\x00\x00\x00\x00")
    describe = m.msg(b"D", b"P" + m.cstr("walk"))
    sync = m.msg(b"S")
    # the first run parses the statement; the second binds it again, no Parse
    rec.from_client(m.msg(b"P", m.cstr("s1") + m.cstr(declare) + b"\x00\x00") + bind)
    for first in (True, False):
        if not first:
            rec.from_client(bind)
        rec.from_client(execute + sync + describe + sync)
        answers = [m.PARSE_COMPLETE] if first else []
        answers += [m.BIND_COMPLETE, m.command_complete("DECLARE CURSOR"), m.ready("T")]
        answers += [m.row_description([column]), m.ready("T")]
        rec.from_upstream(b"".join(answers))
        rec.from_client(m.msg(b"Q", m.cstr("CLOSE walk")))
        rec.from_upstream(m.command_complete("CLOSE CURSOR") + m.ready("T"))
    stored = rec.take_stored()
    described = [o for o in stored if o.get("describe") == "cursor"]
    assert [(o["cursor"], o["sql"]) for o in described] == [("walk", declare)] * 2
    assert [o["sql"] for o in stored if "describe" not in o] == [declare, "CLOSE walk"] * 2

"""The Postgres mock against a real PostgreSQL for SQL cursors a client DECLAREs:
psycopg's named (server-side) cursors send ``DECLARE "name" CURSOR FOR ...`` (extended
query with parameters, simple query without), then describe the cursor as a protocol
portal (``Describe 'P' "name"``) and FETCH from it in batches, then CLOSE it. The mock
answered the Describe with 34000 "portal does not exist": it knew only Bind's portals.

Each client runs once through devbox's recording relay against the real server, then
against the mock of that recording, and must get what the server gave it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pg_support import WireServers, running_postgres

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
    with running_postgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as c:
            c.execute(SETUP)
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            live = named_cursors(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app")
            deadline = time.monotonic() + 10
            # the relay stores a connection's last objects when it sees the close
            while time.monotonic() < deadline and not any(
                o.get("sql") == "COMMIT" for o in ws.stored
            ):
                time.sleep(0.05)
            yield live, list(ws.stored)
        finally:
            ws.close()


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
    ws = WireServers()
    try:
        port = ws.mock(stored)
        got = named_cursors(f"postgresql://devbox:whatever@127.0.0.1:{port}/app")
    finally:
        ws.close()
    assert got == live

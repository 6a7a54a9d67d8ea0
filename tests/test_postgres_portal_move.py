"""asyncpg's ``cursor.forward(n)`` skips rows of a cursor with SQL that names its protocol
portal: ``MOVE FORWARD n __asyncpg_portal_4__``. The number is a counter of the whole
process (every portal it ever bound), so a replay names another portal than the
recording did and the mock missed the MOVE (``DX404``). A FETCH or MOVE naming a named
portal of its connection is now keyed by that portal's ordinal among the connection's
named portals, as a DECLAREd cursor's is.

Recorded through devbox's relay from a real server, replayed by the mock in the same
process (so asyncpg's counter has moved on), compared with what the server gave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from pg_support import mocked, relayed

pytestmark = pytest.mark.slow

SETUP = """
CREATE TABLE items (id int PRIMARY KEY);
INSERT INTO items SELECT generate_series(1, 9);
"""


async def _asyncpg(url: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    out: list[Any] = []
    try:
        async with conn.transaction():
            low = await conn.cursor("SELECT id FROM items WHERE id > $1 ORDER BY id", 2)
            high = await conn.cursor("SELECT id FROM items WHERE id > $1 ORDER BY id DESC", 0)
            out.append([tuple(r) for r in await low.fetch(2)])
            out.append(await low.forward(1))
            out.append(await high.forward(2))
            out.append(tuple(await low.fetchrow() or ()))
            out.append([tuple(r) for r in await high.fetch(2)])
            out.append([tuple(r) for r in await low.fetch(10)])
    finally:
        await conn.close()
    return out


def asyncpg_client(url: str) -> list[Any]:
    return asyncio.run(_asyncpg(url))


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[list[Any], list[dict[str, Any]]]]:
    with relayed(SETUP) as (_pg, ws, url):
        live = asyncpg_client(url)

        def done(stored: list[dict[str, Any]]) -> bool:
            return any(str(o.get("sql")).startswith("COMMIT") for o in stored)

        yield live, ws.stored_once(done)


def test_asyncpg_moves_its_cursor_by_the_portals_name(
    recorded: tuple[list[Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    assert live == [[(3,), (4,)], 1, 2, (6,), [(7,), (6,)], [(7,), (8,), (9,)]]
    moves = [o for o in stored if str(o.get("sql")).startswith("MOVE")]
    assert [o["results"][0]["tag"] for o in moves] == ["MOVE 1", "MOVE 2"]
    assert all("__asyncpg_portal_" in o["sql"] for o in moves)


def test_a_replay_naming_other_portals_moves_each_cursor_as_recorded(
    recorded: tuple[list[Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    with mocked(stored) as url:
        assert asyncpg_client(url) == live
    with mocked(stored) as url:  # the process has bound more portals since: other names
        assert asyncpg_client(url) == live

"""A DECLARE that fails opens no cursor. Cursors are matched by their ordinal among the
cursors a connection declared (``cursors.Ordinals``), so the recording and the mock must
count the same DECLAREs. A DECLARE refused in a failed transaction (``25P02``) was
counted by the mock (at its Bind) but not by the recording (whose answer failed at the
Parse): every later cursor of that connection shifted by one, the first answered with
the second's rows and the last missed (``DX404``). Now neither counts a DECLARE whose
answer is an error, wherever it failed (Parse, Execute, a simple query, outside a
transaction).

Each scenario recorded through devbox's relay from a real server on its own relay (its
own recording), replayed by the mock of that recording alone, compared with what the
server gave the same client.
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

SETUP = "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 9);"
GOOD = "SELECT id FROM items WHERE id > %s ORDER BY id"


def _good(c: psycopg.Connection[Any], name: str, after: int) -> list[Any]:
    with c.cursor(name=name) as cur:
        cur.execute(GOOD, (after,))
        return cur.fetchmany(2)


def psycopg_after(fail: Callable[[psycopg.Connection[Any]], None]) -> Callable[[str], Any]:
    """psycopg: ``fail`` (a DECLARE that fails), ROLLBACK, then two named cursors, each in
    its own transaction, over different rows."""

    def client(url: str) -> list[Any]:
        out: list[Any] = []
        with psycopg.connect(url) as c:
            try:
                fail(c)
            except psycopg.Error as exc:
                out.append(exc.sqlstate)
            c.rollback()
            c.autocommit = False
            out.append(_good(c, "first", 1))
            c.rollback()
            out.append(_good(c, "second", 5))
            c.commit()
        return out

    return client


def _in_failed_transaction(c: psycopg.Connection[Any]) -> None:
    try:
        c.execute("SELECT 1/0")
    except psycopg.errors.DivisionByZero:
        pass
    with c.cursor(name="refused") as cur:  # Parse answered 25P02
        cur.execute("SELECT id FROM items WHERE id > %s", (0,))


def _simple_in_failed_transaction(c: psycopg.Connection[Any]) -> None:
    try:
        c.execute("SELECT 1/0")
    except psycopg.errors.DivisionByZero:
        pass
    c.execute("DECLARE refused CURSOR FOR SELECT id FROM items")  # a simple query: 25P02


def _at_execute(c: psycopg.Connection[Any]) -> None:
    with c.cursor(name="refused") as cur:  # planned when the DECLARE runs: 22012
        cur.execute("SELECT 1/0 FROM items WHERE id > %s", (0,))


def _syntax(c: psycopg.Connection[Any]) -> None:
    c.execute("DECLARE refused CURSOR FOR SELEC 1")


def _outside_a_transaction(c: psycopg.Connection[Any]) -> None:
    c.autocommit = True
    c.execute("DECLARE refused CURSOR FOR SELECT 1")  # 25P01


async def _asyncpg(url: str) -> list[Any]:
    """asyncpg: DECLARE with a parameter is a prepared statement; in a failed
    transaction its Parse is refused."""
    conn = await asyncpg.connect(url)
    out: list[Any] = []
    try:
        tx = conn.transaction()
        await tx.start()
        for sql in ("SELECT 1/0", "DECLARE refused CURSOR FOR SELECT id FROM items WHERE id > $1"):
            try:
                await conn.execute(sql, *([0] if "$1" in sql else []))
            except asyncpg.PostgresError as exc:
                out.append(exc.sqlstate)
        await tx.rollback()
        for after in (1, 5):
            async with conn.transaction():
                await conn.execute(
                    "DECLARE walk CURSOR FOR SELECT id FROM items WHERE id > $1 ORDER BY id",
                    after,
                )
                out.append([tuple(r) for r in await conn.fetch("FETCH 2 FROM walk")])
    finally:
        await conn.close()
    return out


CLIENTS: dict[str, Callable[[str], Any]] = {
    "psycopg, refused in a failed transaction": psycopg_after(_in_failed_transaction),
    "psycopg, simple DECLARE in a failed transaction": psycopg_after(_simple_in_failed_transaction),
    "psycopg, failed at Execute": psycopg_after(_at_execute),
    "psycopg, syntax error": psycopg_after(_syntax),
    "psycopg, outside a transaction": psycopg_after(_outside_a_transaction),
    "asyncpg, refused in a failed transaction": lambda url: asyncio.run(_asyncpg(url)),
}


@pytest.fixture(scope="module")
def recorded() -> Iterator[dict[str, tuple[Any, list[dict[str, Any]]]]]:
    """Each client through a relay of its own: (what the server gave it, its recording)."""
    with relayed(SETUP) as (pg, ws, _url):
        # a recording is whole once its relay stored the COMMIT its client ended with
        yield record_each(ws, pg, CLIENTS, lambda s: any(o.get("sql") == "COMMIT" for o in s))


@pytest.mark.parametrize("name", list(CLIENTS))
def test_cursors_after_a_failed_declare_replay_their_own_rows(
    recorded: dict[str, tuple[Any, list[dict[str, Any]]]], name: str
) -> None:
    live, stored = recorded[name]
    assert live[-2:] == [[(2,), (3,)], [(6,), (7,)]]
    with mocked(stored) as url:
        assert CLIENTS[name](url) == live

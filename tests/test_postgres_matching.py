"""Matching never returns another query's rows: 10,000 distinct lookups recorded against a
real server, replayed from the mock through connection pools that keep evicting
connections (so statement names are reused for other SQL on fresh connections), and from
concurrent connections at once."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import WireServers, running_postgres

N = 10_000
FIRST = 10_000  # every id has 5 digits: a matcher that compared lengths would be fooled
SQL = "SELECT id, owner, balance FROM accounts WHERE id = $1"
OTHER_SQL = "SELECT balance, owner FROM accounts WHERE id = $1 AND balance >= $2"

pytestmark = pytest.mark.slow


async def _lookups(url: str, ids: list[int], *, max_queries: int) -> list[tuple[int, Any]]:
    """Every lookup through a pool whose connections are replaced every ``max_queries``
    queries; the two statements alternate so a fresh connection reuses asyncpg's
    statement names for the other SQL."""
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4, max_queries=max_queries)
    out: list[tuple[int, Any]] = []
    queue = list(ids)

    async def worker() -> None:
        while queue:
            i = queue.pop()
            async with pool.acquire() as conn:
                if i % 3 == 0:
                    row = await conn.fetchrow(OTHER_SQL, i, 0)
                    out.append((i, (row["owner"], row["balance"]) if row else None))
                else:
                    row = await conn.fetchrow(SQL, i)
                    out.append((i, (row["owner"], row["balance"]) if row else None))

    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(6))), 240)
    finally:
        await pool.close()
    return out


def _wrong(results: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    return [(i, got) for i, got in results if got != (f"owner{i}", i * 7 % 1000)]


@pytest.fixture(scope="module")
def recording() -> Iterator[list[dict[str, Any]]]:
    ids = list(range(FIRST, FIRST + N))
    with running_postgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as c:
            c.execute(
                "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance int);"
                "INSERT INTO accounts SELECT i, 'owner' || i, i * 7 % 1000"
                f" FROM generate_series({FIRST}, {FIRST + N - 1}) i"
            )
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            url = f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app"
            live = asyncio.run(_lookups(url, ids, max_queries=97))
            assert len(live) == N and not _wrong(live)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _answered(ws.stored) < N:
                time.sleep(0.05)
            yield list(ws.stored)
        finally:
            ws.close()


def _answered(stored: list[dict[str, Any]]) -> int:
    return sum(1 for o in stored if o.get("sql") in (SQL, OTHER_SQL))


def test_ten_thousand_pooled_lookups_with_evictions_get_their_own_rows(
    recording: list[dict[str, Any]],
) -> None:
    assert _answered(recording) == N
    ids = list(range(FIRST, FIRST + N))
    random.Random(7).shuffle(ids)  # another order, other connections, other names
    ws = WireServers()
    try:
        port = ws.mock(recording)
        got = asyncio.run(
            _lookups(f"postgresql://devbox:pw@127.0.0.1:{port}/app", ids, max_queries=37)
        )
    finally:
        ws.close()
    assert len(got) == N
    assert _wrong(got) == []
    assert not [o for o in ws.outputs if type(o).__name__ == "Miss"]


def test_concurrent_connections_never_take_each_others_answers(
    recording: list[dict[str, Any]],
) -> None:
    """Eight psycopg connections (text format, the recording was asyncpg's binary) ask
    at the same time, each for its own ids, with server-side prepared statements."""
    ws = WireServers()
    errors: list[str] = []
    try:
        port = ws.mock(recording)
        url = f"postgresql://devbox:pw@127.0.0.1:{port}/app"

        def client(k: int) -> None:
            try:
                with psycopg.connect(url, prepare_threshold=0, autocommit=True) as c:
                    for i in range(FIRST + k, FIRST + 1600, 8):
                        if i % 3 == 0:
                            continue
                        row = c.execute(SQL.replace("$1", "%s"), (i,)).fetchone()
                        if row != (i, f"owner{i}", i * 7 % 1000):
                            errors.append(f"{i}: {row}")
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        ws.close()
    assert errors == []


def test_a_value_never_recorded_is_a_miss_not_a_neighbours_rows(
    recording: list[dict[str, Any]],
) -> None:
    ws = WireServers()
    try:
        port = ws.mock(recording)

        async def ask() -> list[str]:
            conn = await asyncpg.connect(f"postgresql://devbox:pw@127.0.0.1:{port}/app")
            out = []
            try:
                # same length as recorded ids, one past the end; and a recorded id with an
                # extra condition value that was never recorded
                for sql, args in ((SQL, (FIRST + N,)), (OTHER_SQL, (FIRST + 2, 1))):
                    try:
                        rows = await conn.fetch(sql, *args)
                        out.append(f"rows: {rows}")
                    except asyncpg.PostgresError as exc:
                        out.append(f"{exc.sqlstate}: {exc}")
            finally:
                await conn.close()
            return out

        got = asyncio.run(ask())
    finally:
        ws.close()
    assert got[0].startswith("DX404") and "$1 = '20000' here" in got[0]
    assert got[1].startswith("DX404") and "$2 = '1' here, recorded '0'" in got[1]

"""Two recording files (two ``devbox record`` runs) each number their connections from 1.
A Parse of a named statement counts once per connection, so the mock must tell the
first file's connection 1 from the second's: counted as one, the second run's Parse went
missing and a later run's failed Parse (its table dropped) answered a Parse too early."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pg_support import PgServer, WireServers, running_postgres

from devbox.wire.postgres import recorder
from devbox.wire.registry import get

pytestmark = pytest.mark.slow

QUERY = "SELECT v FROM t ORDER BY v"


def fetch(link: str) -> Any:
    """psycopg prepares ``QUERY`` as a named statement (``_pg3_0``: named per connection,
    so every connection's is the same) and executes it; the rows, or the server's error."""
    with psycopg.connect(link, autocommit=True) as c:
        try:
            return c.execute(QUERY, prepare=True).fetchall()
        except psycopg.Error as exc:
            return [exc.sqlstate, exc.diag.message_primary]


def record_run(pg: PgServer, steps: list[str | None]) -> tuple[list[Any], list[dict[str, Any]]]:
    """One ``devbox record`` run: connection numbers start at 1 again. Each step is a
    statement run on the server directly, or None: a client connection through the relay."""
    recorder._CONN_IDS = itertools.count(1)
    ws = WireServers()
    live: list[Any] = []
    try:
        port = ws.relay((pg.host, pg.port))
        for step in steps:
            if step is None:
                live.append(fetch(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app"))
            else:
                with psycopg.connect(pg.url(), autocommit=True) as c:
                    c.execute(step)
        clients = steps.count(None)
        stored = ws.stored_once(lambda s: sum(o.get("sql") == QUERY for o in s) >= clients)
    finally:
        ws.close()
    return live, stored


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[list[Any], list[tuple[str, int, dict[str, Any]]]]]:
    saved = recorder._CONN_IDS
    try:
        with running_postgres() as pg:
            live_a, first = record_run(pg, ["CREATE TABLE t AS SELECT 1 AS v", None])
            live_b, second = record_run(pg, [None, "DROP TABLE t", None])
    finally:
        recorder._CONN_IDS = saved
    files = [("recording-1.json", i + 2, o) for i, o in enumerate(first)]
    files += [("recording-2.json", i + 2, o) for i, o in enumerate(second)]
    yield live_a + live_b, files


def test_both_files_number_their_connections_from_one(
    recorded: tuple[list[Any], list[tuple[str, int, dict[str, Any]]]],
) -> None:
    live, files = recorded
    assert live[:2] == [[(1,)], [(1,)]]
    assert live[2][0] == "42P01"
    conns = {(name, o["conn"]) for name, _, o in files if o.get("type") == "connection"}
    assert conns == {("recording-1.json", 1), ("recording-2.json", 1), ("recording-2.json", 2)}


def test_each_file_counts_its_own_parses(
    recorded: tuple[list[Any], list[tuple[str, int, dict[str, Any]]]],
) -> None:
    live, files = recorded
    ws = WireServers()
    try:
        port = ws.serve(get("postgres").load(files))
        mocked = [fetch(f"postgresql://devbox:whatever@127.0.0.1:{port}/app") for _ in live]
    finally:
        ws.close()
    assert mocked == live

"""``client_encoding`` at start-up, however a client spells it. asyncpg sends it quoted
(``'utf-8'``), libpq as the program wrote it (``ISO-8859-1``); the server reads an
encoding's name without case or punctuation and reports its own name for it (``UTF8``,
``LATIN1``). The mock, answering a start-up no recorded connection made, reported the
value as the client wrote it, upper-cased: asyncpg's ``get_settings().client_encoding``
was ``'UTF-8'`` (quotes and all), psycopg's ParameterStatus ``ISO-8859-1``; and a
recorded ``'utf-8'`` was another setting than a client's ``utf8``.

Recorded through devbox's relay from a real server, replayed by the mock; each client
compared with what the server gives it.
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

QUERY = "SELECT 'caf' || 'e' AS v"


async def _asyncpg(url: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return [conn.get_settings().client_encoding, await conn.fetchval(QUERY)]
    finally:
        await conn.close()


def asyncpg_client(url: str) -> list[Any]:
    return asyncio.run(_asyncpg(url))


def psycopg_client(url: str, encoding: str | None = None) -> list[Any]:
    conninfo = url if encoding is None else f"{url}?client_encoding={encoding}"
    with psycopg.connect(conninfo, autocommit=True) as c:
        reported = c.pgconn.parameter_status(b"client_encoding")
        return [reported, c.info.encoding, c.execute(QUERY).fetchall()]


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
    """Two recordings: psycopg alone (asking for no encoding), and asyncpg alone."""
    with relayed("SELECT 1") as (pg, ws, _url):
        by_psycopg: list[dict[str, Any]] = []
        by_asyncpg: list[dict[str, Any]] = []
        base = f"postgresql://{pg.user}:{pg.password}@127.0.0.1"
        psycopg_client(f"{base}:{ws.relay((pg.host, pg.port), by_psycopg.extend)}/app")
        asyncpg_client(f"{base}:{ws.relay((pg.host, pg.port), by_asyncpg.extend)}/app")
        live = {
            "asyncpg": asyncpg_client(pg.url()),
            **{enc: psycopg_client(pg.url(), enc) for enc in ("ISO-8859-1", "utf-8", "UTF8")},
        }

        def done(_stored: list[dict[str, Any]]) -> bool:
            return all(sum(o.get("sql") == QUERY for o in s) for s in (by_psycopg, by_asyncpg))

        ws.stored_once(done)
        yield live, list(by_psycopg), list(by_asyncpg)


def test_asyncpg_sends_its_encoding_quoted_and_the_server_reports_its_own_name(
    recorded: tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    live, _by_psycopg, by_asyncpg = recorded
    (conn,) = [o for o in by_asyncpg if o.get("type") == "connection"]
    assert conn["startup"]["client_encoding"] == "'utf-8'"
    assert conn["server"]["client_encoding"] == "UTF8"
    assert live["asyncpg"] == ["UTF8", "cafe"]
    assert live["ISO-8859-1"][:2] == [b"LATIN1", "iso8859-1"]


def test_asyncpg_replayed_from_a_recording_of_another_client_gets_the_servers_name(
    recorded: tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    live, by_psycopg, _by_asyncpg = recorded
    with mocked(by_psycopg) as url:
        assert asyncpg_client(url) == live["asyncpg"]


@pytest.mark.parametrize("encoding", ["ISO-8859-1", "utf-8", "UTF8"])
def test_psycopg_asking_for_an_encoding_gets_the_servers_name_for_it(
    recorded: tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]], encoding: str
) -> None:
    live, by_psycopg, by_asyncpg = recorded
    for stored in (by_psycopg, by_asyncpg):
        with mocked(stored) as url:
            assert psycopg_client(url, encoding) == live[encoding]

"""Queries whose parameters the client makes up on each run (``devbox.core.generated``):
an ORM's ``uuid4`` primary key, a random session token, recorded from a real server and
replayed by the mock to psycopg (text parameters) and asyncpg (binary ``uuid``). Each
insert missed (the new id never equals the recorded one) and the service's first write
failed; now it is answered as recorded, reported as found with generated values set
aside. A query that differs in anything else still misses."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import psycopg
from conftest import opaque_token
from pg_support import WireServers, relayed

from devbox.wire.contract import Hit, Miss

SETUP = (
    "CREATE TABLE sessions (id uuid PRIMARY KEY, token text, owner text);"
    "CREATE TABLE audit (session uuid, what text)"
)


def with_psycopg(url: str) -> list[Any]:
    sid = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as c:
        return [
            c.execute(
                "INSERT INTO sessions VALUES (%s, %s, %s) RETURNING owner",
                (sid, opaque_token(), "ada"),
            ).fetchall(),
            c.execute("SELECT owner FROM sessions WHERE id = %s", (sid,)).fetchall(),
            c.execute("SELECT count(*) FROM sessions WHERE owner = %s", ("ada",)).fetchall(),
        ]


async def with_asyncpg(url: str) -> list[Any]:
    sid = uuid.uuid4()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO audit VALUES ($1, $2)", sid, "login")
        row = await conn.fetchrow("SELECT what FROM audit WHERE session = $1", sid)
        return [row["what"] if row else None]
    finally:
        await conn.close()


def run(url: str) -> list[Any]:
    return [*with_psycopg(url), *asyncio.run(with_asyncpg(url))]


def test_generated_ids_and_tokens_replay_with_new_values() -> None:
    with relayed(SETUP) as (_pg, ws, url):
        recorded = run(url)
        stored = ws.stored_once(lambda s: sum("results" in o for o in s) >= 5)
    assert recorded == [[("ada",)], [("ada",)], [(1,)], "login"]
    mock = WireServers()
    try:
        port = mock.mock(stored)
        replayed = run(f"postgresql://devbox:whatever@127.0.0.1:{port}/app")
    finally:
        mock.close()
    assert replayed == recorded
    assert not [o for o in mock.outputs if isinstance(o, Miss)]
    aside = [
        o.request
        for o in mock.outputs
        if isinstance(o, Hit) and o.request.endswith("(generated values set aside)")
    ]
    # psycopg's INSERT and SELECT by id, asyncpg's INSERT and SELECT by session; the
    # count by owner matched exactly
    assert len(aside) == 4, aside


def test_what_else_differs_still_misses() -> None:
    with relayed(SETUP) as (_pg, ws, url):
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("INSERT INTO audit VALUES (%s, %s)", (uuid.uuid4(), "login"))
        stored = ws.stored_once(lambda s: sum("results" in o for o in s) >= 1)
    mock = WireServers()
    try:
        port = mock.mock(stored)
        url = f"postgresql://devbox:whatever@127.0.0.1:{port}/app"
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("INSERT INTO audit VALUES (%s, %s)", (uuid.uuid4(), "login"))  # found
            try:
                c.execute("INSERT INTO audit VALUES (%s, %s)", (uuid.uuid4(), "logout"))
            except psycopg.Error as exc:
                missed = str(exc)
            else:
                missed = ""
    finally:
        mock.close()
    assert "logout" in missed or "no recorded" in missed.lower(), missed
    assert len([o for o in mock.outputs if isinstance(o, Miss)]) == 1

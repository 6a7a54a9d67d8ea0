"""Queries whose parameters the client makes up on each run (``devbox.core.generated``):
an ORM's ``uuid4`` primary key, a random session token, recorded from a real server and
replayed by the mock to psycopg (text parameters) and asyncpg (binary ``uuid``). Each
insert missed (the new id never equals the recorded one) and the service's first write
failed; now the insert binds its fresh values to the recorded ones and the reads after
it are matched through them. A read by an id no write made, or a query that differs in
anything else (an amount asyncpg sends in binary), still misses."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
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


ALICE = uuid.UUID("3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f")  # seeded before the run
BOB = uuid.UUID("9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")  # another, never recorded
SEEDED = (
    SETUP + ";CREATE TABLE customers (id uuid PRIMARY KEY, name text);"
    f"INSERT INTO customers VALUES ('{ALICE}', 'alice'), ('{BOB}', 'bob');"
    "CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric);"
    "INSERT INTO accounts VALUES (1, 100)"
)


async def debit(url: str, amount: Decimal) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            "UPDATE accounts SET balance = balance - $1 WHERE id = $2 RETURNING balance",
            amount,
            1,
        )
    except asyncpg.PostgresError as exc:
        return str(exc)
    finally:
        await conn.close()


def test_only_writes_bind_and_amounts_are_no_ids() -> None:
    """A read by bob's id (never recorded) misses rather than answer alice's row (it
    did while any uuid stood for any other); a debit of another amount, which asyncpg
    sends in binary, misses too (its binary form looked generated)."""
    with relayed(SEEDED) as (_pg, ws, url):
        with psycopg.connect(url, autocommit=True) as c:
            name = c.execute("SELECT name FROM customers WHERE id = %s", (ALICE,)).fetchall()
        balance = asyncio.run(debit(url, Decimal("10.00")))
        stored = ws.stored_once(lambda s: sum("results" in o for o in s) >= 2)
    assert (name, balance) == ([("alice",)], Decimal("90.00"))
    mock = WireServers()
    try:
        murl = f"postgresql://devbox:whatever@127.0.0.1:{mock.mock(stored)}/app"
        with psycopg.connect(murl, autocommit=True) as c:
            try:
                c.execute("SELECT name FROM customers WHERE id = %s", (BOB,)).fetchall()
                bob = ""
            except psycopg.Error as exc:
                bob = str(exc)
        other = asyncio.run(debit(murl, Decimal("99999.99")))
    finally:
        mock.close()
    assert "no recorded answer" in bob
    assert "no recorded answer" in str(other)
    assert len([o for o in mock.outputs if isinstance(o, Miss)]) == 2


def test_bound_and_exact_queries_interleave() -> None:
    """A session row is inserted with a fresh id, alice is read, the session read back:
    the read back is the new session's row, bound through the insert."""

    def run(url: str) -> list[Any]:
        sid = uuid.uuid4()
        with psycopg.connect(url, autocommit=True) as c:
            return [
                c.execute("INSERT INTO sessions VALUES (%s, 't', 'newbie')", (sid,)).rowcount,
                c.execute("SELECT name FROM customers WHERE id = %s", (ALICE,)).fetchall(),
                c.execute("SELECT owner FROM sessions WHERE id = %s", (sid,)).fetchall(),
            ]

    with relayed(SEEDED) as (_pg, ws, url):
        recorded = run(url)
        stored = ws.stored_once(lambda s: sum("results" in o for o in s) >= 3)
    mock = WireServers()
    try:
        replayed = run(f"postgresql://devbox:whatever@127.0.0.1:{mock.mock(stored)}/app")
    finally:
        mock.close()
    assert replayed == recorded == [1, [("alice",)], [("newbie",)]]

"""Secrets a client binds as parameters are redacted by the column they are for.

asyncpg and psycopg 3 send values apart from the SQL (``VALUES ($1, $2)``). Redaction
named each parameter by its number only, and no rule knows ``$2`` for a credential: a
plaintext password or an API token with no format of its own reached the recording whole.
Now a parameter is named by its column where the statement says, as a constant written
into the text is (``devbox.wire.postgres.redaction.param_columns``). Recorded from a real
server, redacted as ``devbox record`` writes it, replayed to the same clients, which get
the same answers from the mock: it redacts their live values the same way to look.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
from pg_support import WireServers, relayed

from devbox.wire.contract import Miss
from devbox.wire.files import value_redactor
from devbox.wire.registry import get

SETUP = "CREATE TABLE users (id serial PRIMARY KEY, email text, password text, api_token text)"
PASSWORD = "hunter2 horse staple"  # no format gives it away: only its column does
TOKEN = "acme-live-4c1f"  # neither: short, with words


async def with_asyncpg(url: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        status = await conn.execute(
            "INSERT INTO users (email, password, api_token) VALUES ($1, $2, $3)",
            "ada@example.com",
            PASSWORD,
            TOKEN,
        )
        row = await conn.fetchrow(
            "SELECT id FROM users WHERE email = $1 AND password = $2", "ada@example.com", PASSWORD
        )
        return [status, row is not None]
    finally:
        await conn.close()


def with_psycopg(url: str) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as c:
        n = c.execute(
            "UPDATE users SET password = %s, api_token = %s WHERE email = %s",
            (PASSWORD + "!", TOKEN + "x", "ada@example.com"),
        ).rowcount
        found = c.execute("SELECT count(*) FROM users WHERE api_token = %s", (TOKEN + "x",))
        return [n, found.fetchall()]


def both(url: str) -> list[Any]:
    return [*asyncio.run(with_asyncpg(url)), *with_psycopg(url)]


def test_bound_secrets_are_redacted_by_column_and_still_replay() -> None:
    with relayed(SETUP) as (_pg, ws, url):
        recorded = both(url)
        stored = ws.stored_once(lambda s: sum("count(*)" in str(o) for o in s) >= 1)
    assert recorded == ["INSERT 0 1", True, 1, [(1,)]]
    kind, red = get("postgres"), value_redactor(None)
    written = [kind.redact(o, red) if o.get("type") == "query" else o for o in stored]
    text = json.dumps(written)
    for secret in (PASSWORD, TOKEN, "ada@example.com"):
        assert secret not in text, secret
    mock = WireServers()
    try:
        port = mock.mock(written)
        replayed = both(f"postgresql://devbox:whatever@127.0.0.1:{port}/app")
    finally:
        mock.close()
    assert replayed == recorded
    assert [o.explanation for o in mock.outputs if isinstance(o, Miss)] == []

"""Real clients (psycopg 3 sync/async, with and without server-side prepare; asyncpg;
SQLAlchemy on psycopg; psql) recorded through devbox's relay against a real PostgreSQL
server, then replayed from the mock with the server gone: every client must see the same
results, errors included."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
import sqlalchemy
from pg_support import PgServer, WireServers, running_postgres

SETUP = """
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text,
                    api_token text, score float8, active bool,
                    created timestamptz DEFAULT '2024-01-02 03:04:05+00');
INSERT INTO users (id, name, email, api_token, score, active)
  SELECT i, 'user' || i, 'u' || i || '@example.com', 'tok-' || i, i * 1.5, i % 2 = 0
  FROM generate_series(1, 50) i;
CREATE TABLE notes (id serial PRIMARY KEY, body text);
"""


def psycopg_sync(url: str, prepare: int | None) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(url, prepare_threshold=prepare, autocommit=False) as c:
        for uid in (3, 4, 3):
            out.append(
                c.execute("SELECT id, name, score FROM users WHERE id = %s", (uid,)).fetchall()
            )
        out.append(c.execute("select count(*) from users where active = %s", (True,)).fetchone())
        out.append(c.execute("SELECT name FROM users WHERE id = %s", (999,)).fetchall())
        out.append(
            c.execute(
                "SELECT api_token FROM users WHERE email = %s", ("u2@example.com",)
            ).fetchall()
        )
        c.commit()
        # error replayed with its fields, then the failed transaction until rollback
        try:
            c.execute("INSERT INTO users (id, name) VALUES (%s, %s)", (1, "dup"))
        except psycopg.errors.UniqueViolation as exc:
            d = exc.diag
            out.append(["unique", d.sqlstate, d.constraint_name, d.table_name, d.message_detail])
        try:
            c.execute("SELECT 1")
        except psycopg.errors.InFailedSqlTransaction as exc:
            out.append(["aborted", exc.sqlstate])
        c.rollback()
        with c.transaction():
            c.execute("INSERT INTO notes (body) VALUES (%s)", ("hello",))
        with (
            c.cursor() as cur,
            cur.copy("COPY (SELECT id, name FROM users WHERE id < 4) TO STDOUT") as cp,
        ):
            out.append(bytes(b"".join(bytes(b) for b in cp)).decode())
    return out


async def psycopg_async(url: str) -> list[Any]:
    out: list[Any] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
        cur = await c.execute(
            "SELECT id, email FROM users WHERE id = ANY(%s) ORDER BY id", ([5, 6],)
        )
        out.append(await cur.fetchall())
        # several statements in one simple Query, and a notice
        await c.execute("SET TIME ZONE 'UTC'; SELECT 1; SELECT 2")
        notices: list[str] = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        await c.execute("DO $$ BEGIN RAISE NOTICE 'hi from plpgsql'; END $$")
        out.append(notices)
        async with c.cursor() as acur:
            async with acur.copy("COPY notes (body) FROM STDIN") as cp:
                await cp.write_row(("copied",))
            out.append(acur.rowcount)
    return out


async def asyncpg_client(url: str) -> list[Any]:
    out: list[Any] = []
    conn = await asyncpg.connect(url)
    try:
        for uid in (7, 8, 7):
            row = await conn.fetchrow(
                "SELECT id, name, score, active, created FROM users WHERE id = $1", uid
            )
            out.append(tuple(row) if row else None)
        stmt = await conn.prepare("SELECT id FROM users WHERE score > $1 ORDER BY id LIMIT $2")
        out.append([r["id"] for r in await stmt.fetch(60.0, 3)])
        try:
            await conn.fetch("SELECT * FROM no_such_table")
        except asyncpg.UndefinedTableError as exc:
            out.append(["undefined", exc.sqlstate, str(exc)])
        async with conn.transaction():
            await conn.execute("UPDATE users SET score = $1 WHERE id = $2", 0.5, 9)
    finally:
        await conn.close()
    return out


def sqlalchemy_client(url: str) -> list[Any]:
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as c:
            rows = c.execute(
                sqlalchemy.text(
                    "SELECT id, name FROM users WHERE id BETWEEN :a AND :b ORDER BY id"
                ),
                {"a": 10, "b": 12},
            ).all()
            return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def psql_client(url: str) -> str:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    done = subprocess.run(
        ["psql", url, "-X", "-A", "-t", "-c", "SELECT id, name FROM users WHERE id = 13"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    return done.stdout + done.stderr


def scenario(url: str) -> dict[str, Any]:
    return {
        "psycopg": psycopg_sync(url, None),
        "psycopg-prepared": psycopg_sync(url, 0),
        "psycopg-async": asyncio.run(psycopg_async(url)),
        "asyncpg": asyncio.run(asyncpg_client(url)),
        "sqlalchemy": sqlalchemy_client(url),
        "psql": psql_client(url),
    }


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    with running_postgres() as pg:
        _setup(pg)
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            results = scenario(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app")
            deadline = time.monotonic() + 10
            # the relay stores a connection's last objects when it sees the close
            while time.monotonic() < deadline and not _all_closed(ws.stored):
                time.sleep(0.05)
            yield results, list(ws.stored)
        finally:
            ws.close()


def _all_closed(stored: list[dict[str, Any]]) -> bool:
    conns = {o["conn"] for o in stored if o["type"] == "connection"}
    return len(conns) >= 6 and any(
        o.get("sql", "").startswith("SELECT id, name FROM users WHERE id = 13") for o in stored
    )


def _setup(pg: PgServer) -> None:
    with psycopg.connect(pg.url(), autocommit=True) as c:
        c.execute(SETUP)


def test_every_client_sees_the_recorded_results_from_the_mock(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    assert live["psycopg"][0] == [(3, "user3", 4.5)]
    assert live["psycopg"][6][:2] == ["unique", "23505"]
    assert "13|user13" in live["psql"]
    ws = WireServers()
    try:
        port = ws.mock(stored)
        replayed = scenario(f"postgresql://devbox:any-password@127.0.0.1:{port}/app")
    finally:
        ws.close()
    for client in live:
        assert replayed[client] == live[client], client
    assert not [o for o in ws.outputs if type(o).__name__ == "Miss"]


def test_the_recording_is_readable_json(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, stored = recorded
    conn = next(o for o in stored if o["type"] == "connection")
    assert conn["auth"] == "scram-sha-256" and conn["user"] == "devbox"
    assert "password" not in str(conn).lower().replace("password_encryption", "")
    q = next(o for o in stored if o.get("sql", "").startswith("SELECT id, name, score, active"))
    assert q["params"] == [{"type": "int4", "format": "binary", "value": 7}]
    cols = q["results"][0]["columns"]
    assert [c["name"] for c in cols] == ["id", "name", "score", "active", "created"]
    assert q["results"][0]["rows"] == [[7, "user7", 10.5, False, "2024-01-02 03:04:05+00"]]
    # asyncpg's fetchrow asks for one row: the server suspends the portal (no tag)
    assert q["results"][0]["suspended"] is True
    many = next(
        o for o in stored if o.get("sql", "").startswith("SELECT id FROM users WHERE score")
    )
    assert many["results"][0]["tag"] == "SELECT 3"
    err = next(o for o in stored if "no_such_table" in o.get("sql", ""))
    fields = err["results"][0]["error"]
    assert fields["sqlstate"] == "42P01" and fields["severity"] == "ERROR"
    assert "position" in fields and "routine" in fields


def test_a_miss_never_answers_rows(recorded: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, stored = recorded
    ws = WireServers()
    try:
        port = ws.mock(stored)
        url = f"postgresql://devbox:x@127.0.0.1:{port}/app"
        with psycopg.connect(url, autocommit=True) as c:
            with pytest.raises(psycopg.DatabaseError) as info:
                c.execute("SELECT id, name, score FROM users WHERE id = %s", (5,)).fetchall()
            assert info.value.sqlstate == "DX404"
            msg = str(info.value)
            assert "$1 = '5' here, recorded '3'" in msg
            assert "SELECT id, name, score FROM users WHERE id = $1" in msg
            # the connection stays usable and answers what was recorded
            assert c.execute(
                "SELECT id, name, score FROM users WHERE id = %s", (3,)
            ).fetchall() == [(3, "user3", 4.5)]

        async def prepared_miss() -> None:
            conn = await asyncpg.connect(url)
            try:
                with pytest.raises(asyncpg.PostgresError) as info:
                    await conn.fetch("SELECT id FROM users WHERE name = $1", "nobody")
                assert info.value.sqlstate == "DX404"
            finally:
                await conn.close()

        asyncio.run(prepared_miss())
    finally:
        ws.close()
    misses = [o for o in ws.outputs if type(o).__name__ == "Miss"]
    assert misses and misses[0].nearest is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize("auth", ["trust", "cleartext", "md5", "scram-sha-256"])
def test_the_mock_completes_the_authentication_exchange(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]], auth: str
) -> None:
    """Whatever the method, libpq (psycopg) and asyncpg log in with the password they
    have; SCRAM proves the server knows the password, so the mock is told it."""
    _, stored = recorded
    ws = WireServers()
    try:
        port = ws.mock(stored, auth=auth, password="pw-from-profile")
        url = f"postgresql://devbox:pw-from-profile@127.0.0.1:{port}/app"
        sql = "SELECT id, name, score FROM users WHERE id = %s"
        with psycopg.connect(url) as c:
            assert c.execute(sql, (3,)).fetchall() == [(3, "user3", 4.5)]

        async def with_asyncpg() -> Any:
            conn = await asyncpg.connect(url)
            try:
                return await conn.fetchval(
                    "SELECT id, name, score, active, created FROM users WHERE id = $1", 8
                )
            finally:
                await conn.close()

        assert asyncio.run(with_asyncpg()) == 8
        if auth == "scram-sha-256":
            # a client with another password rejects the mock's proof: the exchange is real
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(url.replace("pw-from-profile", "wrong"))
    finally:
        ws.close()


def test_redacted_recordings_hide_secrets_and_still_match(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    from devbox.wire.postgres.kind import POSTGRES
    from devbox.wire.postgres.redaction import redact_value

    _, stored = recorded
    redacted = [POSTGRES.redact(o, redact_value) for o in stored]
    text = str(redacted)
    assert "u2@example.com" not in text and "u5@example.com" not in text
    assert "tok-2" not in text and "<redacted:secret:" in text
    q = next(o for o in redacted if "api_token" in o.get("sql", ""))
    assert q["params"][0]["value"].startswith("<redacted:email:")
    ws = WireServers()
    try:
        port = ws.mock(redacted)
        with psycopg.connect(f"postgresql://devbox:x@127.0.0.1:{port}/app") as c:
            # the live e-mail is redacted the same way before matching
            rows = c.execute(
                "SELECT api_token FROM users WHERE email = %s", ("u2@example.com",)
            ).fetchall()
            assert rows == [(redact_value("api_token", "tok-2"),)]
            with pytest.raises(psycopg.DatabaseError):
                c.execute("SELECT api_token FROM users WHERE email = %s", ("u3@example.com",))
    finally:
        ws.close()


@pytest.mark.parametrize("on_miss", ["passthrough", "record"])
def test_passthrough_and_record_send_the_connection_to_the_real_server(on_miss: str) -> None:
    from devbox.wire import tcp
    from devbox.wire.contract import MockOptions
    from devbox.wire.postgres.kind import POSTGRES
    from devbox.wire.postgres.mock import PostgresMockConnection

    with running_postgres() as pg:
        _setup(pg)
        ws = WireServers()
        try:
            options = MockOptions("db", on_miss=on_miss)
            conns: list[PostgresMockConnection] = []

            async def start() -> int:
                index = POSTGRES.load([])

                def connection() -> PostgresMockConnection:
                    conn = POSTGRES.mock_connection(index, options)
                    assert isinstance(conn, PostgresMockConnection)  # for take_stored()
                    conns.append(conn)
                    return conn

                server = await tcp.start_mock_server(connection, upstream=(pg.host, pg.port))
                ws.servers.append(server)
                return int(server.sockets[0].getsockname()[1])

            port = ws.call(start())
            url = f"postgresql://devbox:{pg.password}@127.0.0.1:{port}/app"
            with psycopg.connect(url, autocommit=True) as c:
                assert c.execute("SELECT name FROM users WHERE id = %s", (21,)).fetchall() == [
                    ("user21",)
                ]
            time.sleep(0.2)
            stored = [o for conn in conns for o in conn.take_stored()]
        finally:
            ws.close()
    queries = [o for o in stored if o["type"] == "query"]
    if on_miss == "record":
        assert [q["results"][0]["rows"] for q in queries] == [[["user21"]]]
    else:
        assert queries == []

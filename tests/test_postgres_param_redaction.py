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
from pg_support import against_mock, as_written, relayed
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from devbox.wire.contract import Miss
from devbox.wire.files import value_redactor
from devbox.wire.postgres.redaction import param_columns, redact_params

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
    written = as_written(stored)
    text = json.dumps(written)
    for secret in (PASSWORD, TOKEN, "ada@example.com"):
        assert secret not in text, secret
    replayed, outputs = against_mock(written, both)
    assert replayed == recorded
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String)
    password: Mapped[str] = mapped_column(String)
    api_token: Mapped[str | None] = mapped_column(String, nullable=True)


def bulk(url: str) -> list[Any]:
    """SQLAlchemy 2's ORM inserts several rows in one statement, its values read from
    ``FROM (VALUES ($1, $2, 0), ($3, $4, 1))``: no column list beside them."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with Session(engine) as s:
            s.add_all([User(email=f"u{i}@example.com", password=PASSWORD + str(i)) for i in (1, 2)])
            s.commit()
            return list(s.scalars(select(User.email).order_by(User.email)))
    finally:
        engine.dispose()


def test_a_bulk_insert_names_its_parameters_by_column() -> None:
    with relayed(SETUP) as (_pg, ws, url):
        recorded = bulk(url)
        stored = ws.stored_once(lambda s: any("ORDER BY users.email" in str(o) for o in s))
    assert recorded == ["u1@example.com", "u2@example.com"]
    assert any("FROM (VALUES" in str(o.get("sql")) for o in stored)  # the shape named here
    written = as_written(stored)
    assert PASSWORD not in json.dumps(written)
    replayed, outputs = against_mock(written, bulk)
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []
    # redacted in the recording, the e-mails come back as this run wrote them
    assert replayed == recorded


def test_a_recording_made_before_parameters_were_named_still_replays() -> None:
    """Written when parameters were redacted by number only (``$2``): the mock looks
    again by number after by column, so a recording made then still matches."""
    with relayed(SETUP) as (_pg, ws, url):
        recorded = both(url)
        stored = ws.stored_once(lambda s: sum("count(*)" in str(o) for o in s) >= 1)
    red = value_redactor(None)
    by_number = as_written(stored)
    for written, o in zip(by_number, stored, strict=True):
        if o.get("type") == "query" and o.get("params"):
            written["params"] = redact_params("", o["params"], red, by_column=False)
    assert "<redacted:secret:" not in json.dumps(by_number)  # as it was: $2 is no name
    replayed, outputs = against_mock(by_number, both)
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []
    assert replayed == recorded


def test_what_names_a_parameter() -> None:
    assert param_columns("SELECT * FROM t WHERE token = $1 ORDER BY id LIMIT $2 OFFSET $3") == {
        1: "token"
    }
    assert param_columns("SELECT 1 FROM t WHERE password::text = $1") == {1: "password"}
    assert param_columns("SELECT 1 FROM t WHERE id = $1 OR password = $1") == {1: "password"}
    assert param_columns(
        "INSERT INTO t (a, password) SELECT * FROM UNNEST(($1)::varchar[], ($2)::varchar[])"
    ) == {1: "a", 2: "password"}  # Django's bulk_create
    assert param_columns(
        "WITH x AS (INSERT INTO t (a, password) VALUES ($1, $2) RETURNING id)"
        " SELECT * FROM x WHERE id = $3"
    ) == {1: "a", 2: "password", 3: "id"}


ROLE_PASSWORD = "correct horse battery"  # words: only the PASSWORD keyword gives it away
DO_PASSWORD = "staple 42 gun"


def role_flow(url: str) -> list[Any]:
    """What a service's setup or a migration sends: a role and its password, a DO block,
    a function whose body holds a constant."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE ROLE devbox_app LOGIN PASSWORD '{ROLE_PASSWORD}'")
        c.execute(f"DO $$ BEGIN ALTER ROLE devbox_app PASSWORD '{DO_PASSWORD}'; END $$")
        c.execute(
            "CREATE FUNCTION support() RETURNS text LANGUAGE sql"
            " AS $body$ SELECT 'help@example.com' $body$"
        )
        got = c.execute("SELECT support(), rolname FROM pg_roles WHERE rolname = 'devbox_app'")
        return [list(r) for r in got.fetchall()]


def test_a_role_s_password_and_dollar_quoted_bodies_are_redacted() -> None:
    with relayed("SELECT 1") as (_pg, ws, url):
        recorded = role_flow(url)
        stored = as_written(ws.stored_once(lambda s: any("support()," in str(o) for o in s)))
    text = json.dumps(stored)
    # the keyword names the first; the block's own statement is read as SQL for the
    # second; the function's body keeps its SQL, its constant redacted by format
    assert ROLE_PASSWORD not in text and DO_PASSWORD not in text
    assert "help@example.com" not in text and "SELECT '<redacted:email:" in text
    assert recorded == [["help@example.com", "devbox_app"]]
    replayed, outputs = against_mock(stored, role_flow)
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []
    # the row answers with what the function returned when recorded: its e-mail is data
    # the recording redacted, not a value this run wrote
    assert replayed[0][1] == "devbox_app"

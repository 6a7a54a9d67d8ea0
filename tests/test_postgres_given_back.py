"""Rows give the values this run bound back as the client's own (``answers._given_back``).

The Postgres mock answered a read by a fresh id with the recorded row, the recorded id in
it. An app handing the id on got the recording's, and SQLAlchemy's ORM, which matches the
rows an ``INSERT … RETURNING`` sends back to the objects it inserted by their client-made
keys (its "sentinel"), refused the answer outright. Recorded from a real server, replayed
to the same clients with fresh ids.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime
from typing import Any

import psycopg
from pg_support import WireServers, against_mock, as_written, relayed
from sqlalchemy import DateTime, String, Uuid, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from devbox.wire.contract import Miss
from devbox.wire.registry import get

SETUP = (
    "CREATE TABLE items (id uuid PRIMARY KEY, name text NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now())"
)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String)
    # made by the server: the ORM asks for it back with RETURNING, row by row
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def flow(url: str) -> list[Any]:
    ids = [uuid.uuid4() for _ in range(3)]
    with psycopg.connect(url, autocommit=True) as c:
        returned = c.execute(
            "INSERT INTO items (id, name) VALUES (%s, %s) RETURNING id", (ids[0], "first")
        ).fetchone()
        read = c.execute("SELECT id, name FROM items WHERE id = %s", (ids[0],)).fetchone()
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with Session(engine) as s:
            made = [Item(name=n) for n in ("a", "b", "c")]
            s.add_all(made)
            s.commit()  # one INSERT … RETURNING for the three, matched back by id
            keys = [m.id for m in made]
            names = s.scalars(select(Item.name).where(Item.id.in_(keys)).order_by(Item.name))
            found = list(names)
    finally:
        engine.dispose()
    return [
        returned == (ids[0],),  # the client's own id, not the recording's
        read == (ids[0], "first"),
        found,
        all(m.created_at is not None for m in made),
    ]


def test_rows_answer_the_clients_own_fresh_ids() -> None:
    with relayed(SETUP) as (_pg, ws, url):
        recorded = flow(url)
        stored = ws.stored_once(lambda s: any("ORDER BY items.name" in str(o) for o in s))
    assert recorded == [True, True, ["a", "b", "c"], True]
    replayed, outputs = against_mock(stored, flow)
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []
    assert replayed == recorded


TOKENS = "CREATE TABLE tokens (id serial PRIMARY KEY, token text NOT NULL, user_id int NOT NULL)"


def rotate(url: str) -> list[Any]:
    """A refresh token stored, looked up, rotated: redacted in the recording (its column
    names a credential), the client read back a placeholder, which it cannot use."""
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO tokens (token, user_id) VALUES (%s, %s)", (old, 42))
        row = c.execute("SELECT token, user_id FROM tokens WHERE token = %s", (old,)).fetchone()
        turned = c.execute(
            "UPDATE tokens SET token = %s WHERE token = %s RETURNING token", (new, old)
        ).fetchone()
    return [row == (old, 42), turned == (new,)]


def test_a_stored_secret_is_read_back_as_the_clients_own() -> None:
    with relayed(TOKENS) as (_pg, ws, url):
        recorded = rotate(url)
        stored = ws.stored_once(lambda s: any("RETURNING token" in str(o) for o in s))
    assert recorded == [True, True]
    written = as_written(stored)
    assert "<redacted:secret:" in json.dumps(written)
    replayed, outputs = against_mock(written, rotate)
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []
    assert replayed == recorded


def test_a_miss_names_the_value_that_cannot_bind() -> None:
    """A write that misses for its item names the item, not the fresh id beside it,
    which would have bound (the first differing parameter was named)."""

    def insert(url: str, name: str) -> str:
        with psycopg.connect(url, autocommit=True) as c:
            try:
                c.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (uuid.uuid4(), name))
            except psycopg.Error as exc:
                return str(exc)
            return "inserted"

    with relayed(SETUP) as (_pg, ws, url):
        assert insert(url, "mug") == "inserted"
        stored = ws.stored_once(lambda s: any("INSERT INTO items" in str(o) for o in s))
    said, _outputs = against_mock(stored, lambda url: insert(url, "cup"))
    assert "$2 = 'cup' here, recorded 'mug'" in said, said


def test_a_secret_quoted_into_the_text_comes_back_unquoted() -> None:
    """psycopg's ``ClientCursor`` writes a token with a quote in it as ``'Zx9''kQ…'``: the
    value given back is the token, not its quoted spelling in the text."""
    token = "Zx9'kQ2mLp7Vb4Rt8Wy1N3cXa"

    def flow(url: str) -> list[Any]:
        with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as c:
            c.execute("INSERT INTO tokens (token, user_id) VALUES (%s, %s)", (token, 7))
            found = c.execute("SELECT token FROM tokens WHERE user_id = %s", (7,)).fetchone()
        return [found == (token,)]

    with relayed(TOKENS) as (_pg, ws, url):
        recorded = flow(url)
        stored = ws.stored_once(lambda s: any("SELECT token" in str(o) for o in s))
    written = as_written(stored)
    assert "Zx9" not in json.dumps(written)
    replayed, _outputs = against_mock(written, flow)
    assert replayed == recorded == [True]


def test_each_replay_gets_its_own_ids_back() -> None:
    """``devbox up`` replays again and again against one mock, reset in between. The
    mock caches an answer's encoded rows: a cache of rows holding the first run's ids
    handed them to every later run, whose reads by them then missed."""
    with relayed(SETUP) as (_pg, ws, url):
        recorded = flow(url)
        stored = ws.stored_once(lambda s: any("ORDER BY items.name" in str(o) for o in s))
    index: Any = get("postgres").load([("rec.json", i + 2, o) for i, o in enumerate(stored)])
    mock = WireServers()
    try:
        port = mock.serve(index)
        runs = []
        for _ in range(3):
            index.reset()  # as devbox up does before every replay
            runs.append(flow(f"postgresql://devbox:whatever@127.0.0.1:{port}/app"))
    finally:
        mock.close()
    assert runs == [recorded] * 3
    assert [o.explanation for o in mock.outputs if isinstance(o, Miss)] == []


def test_copy_out_gives_the_clients_own_ids_back() -> None:
    """``COPY … TO STDOUT`` of rows this run wrote answered the recorded ids while a
    ``SELECT`` of them answered the client's own."""

    def copied(url: str) -> list[Any]:
        made = uuid.uuid4()
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (made, "lamp"))
            with c.cursor().copy("COPY (SELECT id, name FROM items) TO STDOUT") as copy:
                rows = [bytes(r).decode() for r in copy]
        return [rows == [f"{made}\tlamp\n"]]

    with relayed(SETUP) as (_pg, ws, url):
        recorded = copied(url)
        stored = ws.stored_once(lambda s: any("COPY" in str(o.get("sql")) for o in s))
    replayed, outputs = against_mock(stored, copied)
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []
    assert replayed == recorded == [True]

"""Values a client writes into the SQL text itself, made afresh on every run: psycopg2
(and so every Django or SQLAlchemy app on it) and psycopg's ``ClientCursor`` send no
parameters, only SQL with each value quoted in. An ORM's ``uuid4`` key and a
``created_at`` clock reading were then part of the query's text, which never equalled
the recording's: the first insert missed and the service's write failed. Now a write
that equals a recorded one but for such values in its text binds them, as a
parameter's are bound (``devbox.core.generated``), and the reads after it find the
recorded rows through them. Recorded from a real server, replayed to the same clients."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg2
import psycopg2.extras
from pg_support import WireServers, relayed
from sqlalchemy import DateTime, String, Uuid, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from devbox.wire.contract import Hit, Miss

SETUP = (
    "CREATE TABLE orders (id uuid PRIMARY KEY, created_at timestamptz NOT NULL,"
    " item text NOT NULL);"
    "CREATE TABLE customers (id uuid PRIMARY KEY, name text);"
    "INSERT INTO customers VALUES ('3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f', 'alice')"
)
BOB = uuid.UUID("9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")  # never in the database

psycopg2.extras.register_uuid()


def with_psycopg2(url: str) -> list[Any]:
    oid, now = uuid.uuid4(), datetime.now(UTC)
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:  # one transaction, committed
            cur.execute("INSERT INTO orders VALUES (%s, %s, %s) RETURNING item", (oid, now, "book"))
            inserted = cur.fetchall()
            cur.execute("SELECT item FROM orders WHERE id = %s", (oid,))
            again = cur.fetchall()
            cur.execute("UPDATE orders SET item = %s WHERE id = %s", ("pen", oid))
            updated = cur.rowcount
        return [inserted, again, updated]
    finally:
        conn.close()


def with_client_cursor(url: str) -> list[Any]:
    oid = uuid.uuid4()
    with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as c:
        return [
            c.execute(
                "INSERT INTO orders VALUES (%s, %s, %s)", (oid, datetime.now(UTC), "ink")
            ).rowcount,
            c.execute("SELECT item FROM orders WHERE id = %s", (oid,)).fetchall(),
        ]


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )
    item: Mapped[str] = mapped_column(String)


def with_sqlalchemy(url: str) -> list[Any]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with Session(engine) as s:
            order = Order(item="lamp")
            s.add(order)
            s.commit()
            oid = order.id  # read again after the commit: a SELECT by the new id
        with Session(engine) as s:
            found = s.scalars(select(Order.item).where(Order.id == oid)).all()
        return [found]
    finally:
        engine.dispose()


def run(url: str) -> list[Any]:
    return [*with_psycopg2(url), *with_client_cursor(url), *with_sqlalchemy(url)]


def mocked(stored: list[dict[str, Any]], fn: Any) -> tuple[Any, list[Any]]:
    mock = WireServers()
    try:
        port = mock.mock(stored)
        return fn(f"postgresql://devbox:whatever@127.0.0.1:{port}/app"), mock.outputs
    finally:
        mock.close()


def test_inlined_ids_and_clock_readings_replay_with_new_values() -> None:
    with relayed(SETUP) as (_pg, ws, url):
        recorded = run(url)
        stored = ws.stored_once(lambda s: sum(o.get("sql") == "ROLLBACK" for o in s) >= 4)
    assert recorded == [[("book",)], [("book",)], 1, 1, [("ink",)], ["lamp"]]
    # the recording holds the values as the clients wrote them into the text
    assert any("INSERT INTO orders VALUES ('" in str(o.get("sql")) for o in stored)
    replayed, outputs = mocked(stored, run)
    assert replayed == recorded
    assert not [o for o in outputs if isinstance(o, Miss)]
    aside = [
        o.request
        for o in outputs
        if isinstance(o, Hit) and o.request.endswith("(generated values set aside)")
    ]
    # psycopg2's insert, read and update; ClientCursor's insert and read; SQLAlchemy's
    # insert, its refresh by the new id after the commit and its query after that: the
    # refresh answered with the client's own id (the recorded row's, given back)
    assert len(aside) == 8, aside


def test_an_inlined_id_no_write_made_misses() -> None:
    """A read by an id that no write of this run made (bob's) misses: only a write
    binds. A write that differs in anything else (another item) misses too."""
    with relayed(SETUP) as (_pg, ws, url):
        recorded = with_psycopg2(url)
        stored = ws.stored_once(lambda s: any(o.get("sql") == "COMMIT" for o in s))
    assert recorded == [[("book",)], [("book",)], 1]

    def other(url: str) -> list[str]:
        out = []
        with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as c:
            for sql, args in (
                ("SELECT item FROM orders WHERE id = %s", (BOB,)),
                ("INSERT INTO orders VALUES (%s, %s, %s)", (uuid.uuid4(), datetime.now(UTC), "x")),
            ):
                try:
                    c.execute(sql, args)
                    out.append("answered")
                except psycopg.Error as exc:
                    out.append(str(exc))
        return out

    (bob, insert), outputs = mocked(stored, other)
    assert "no recorded answer" in bob, bob
    assert "no recorded answer" in insert, insert
    assert len([o for o in outputs if isinstance(o, Miss)]) == 2


async def with_asyncpg(url: str) -> list[Any]:
    import asyncpg

    oid = uuid.uuid4()
    conn = await asyncpg.connect(url)
    try:
        status = await conn.execute(
            "INSERT INTO orders VALUES ($1, $2, $3)",
            oid,
            datetime.now(UTC),
            "cup",
        )
        row = await conn.fetchrow("SELECT item FROM orders WHERE orders.id = $1", oid)
        return [status, row["item"] if row else None]
    finally:
        await conn.close()


def test_clock_readings_as_parameters() -> None:
    """A ``created_at`` sent as a parameter (psycopg and asyncpg both send a datetime in
    binary, which the recording reads back as text) is bound as an id is. Before, every
    insert stamped with the time missed. Both run the same INSERT: psycopg declared its
    text parameter untyped (0) and never asked the server; asyncpg asks, and was given
    psycopg's 0, for which it queried the catalogue (a miss)."""
    import asyncio

    def both(url: str) -> list[Any]:
        oid = uuid.uuid4()
        with psycopg.connect(url, autocommit=True) as c:  # text parameters
            first = [
                c.execute(
                    "INSERT INTO orders VALUES (%s, %s, %s)", (oid, datetime.now(UTC), "mug")
                ).rowcount,
                c.execute("SELECT item FROM orders WHERE id = %s", (oid,)).fetchall(),
            ]
        return [*first, *asyncio.run(with_asyncpg(url))]

    with relayed(SETUP) as (_pg, ws, url):
        recorded = both(url)
        stored = ws.stored_once(lambda s: sum("SELECT item" in str(o) for o in s) >= 2)
    stamps = [
        p["format"] for o in stored for p in o.get("params") or [] if p.get("type") == "timestamptz"
    ]
    assert stamps == ["binary", "binary"]  # both send it in binary, stored as text
    replayed, outputs = mocked(stored, both)
    assert replayed == recorded == [1, [("mug",)], "INSERT 0 1", "cup"]
    assert not [o for o in outputs if isinstance(o, Miss)]


def test_a_uuid_bound_in_one_spelling_is_found_in_another() -> None:
    """psycopg 3 sends a ``uuid[]`` as dash-less hex (``uuid.hex``) and one uuid in
    binary, which the recording reads back dashed: the read by one of the new ids missed,
    its binding made from the other spelling."""

    def client(url: str) -> list[Any]:
        ids = [uuid.uuid4() for _ in range(3)]
        with psycopg.connect(url, autocommit=True) as c:
            n = c.execute(
                "INSERT INTO orders (id, created_at, item)"
                " SELECT i, now(), t FROM unnest(%s::uuid[], %s::text[]) AS u(i, t)",
                (ids, ["a", "b", "c"]),
            ).rowcount
            one = c.execute("SELECT item FROM orders WHERE id = %s", (ids[1],)).fetchall()
        return [n, one]

    with relayed(SETUP) as (_pg, ws, url):
        recorded = client(url)
        stored = ws.stored_once(lambda s: any("WHERE id" in str(o.get("sql")) for o in s))
    spelled = [p["value"] for o in stored for p in o.get("params") or []]
    assert spelled[0].startswith("{") and "-" not in spelled[0] and "-" in spelled[-1]
    replayed, outputs = mocked(stored, client)
    assert replayed == recorded == [3, [("b",)]]
    assert not [o for o in outputs if isinstance(o, Miss)]


def test_inlined_values_over_the_extended_protocol_with_no_parameters() -> None:
    """ActiveRecord without prepared statements, ruby-pg's ``exec_params(sql, [])`` and
    PHP's ``pg_query_params(sql, [])`` send SQL with the values written in through
    Parse/Bind/Describe/Execute. Describe looked the text up as it came: every statement
    with a fresh id or clock reading in it missed there, before Execute could bind."""

    def client(url: str) -> list[Any]:
        oid, now = uuid.uuid4(), datetime.now(UTC).isoformat()
        with psycopg.connect(url, autocommit=True) as c:
            out = []
            for sql in (
                f"INSERT INTO orders VALUES ('{oid}', '{now}', 'kite') RETURNING item",
                f"SELECT item FROM orders WHERE id = '{oid}'",
            ):
                res = c.pgconn.exec_params(sql.encode(), [])  # libpq's PQexecParams, 0 params
                out.append(res.get_value(0, 0) if res.ntuples else res.error_message.decode())
        return out

    with relayed(SETUP) as (_pg, ws, url):
        recorded = client(url)
        stored = ws.stored_once(lambda s: any("SELECT item" in str(o.get("sql")) for o in s))
    assert recorded == [b"kite", b"kite"]
    replayed, outputs = mocked(stored, client)
    assert replayed == recorded
    assert not [o for o in outputs if isinstance(o, Miss)]

"""Adversarial tests of the Postgres mock's kept turns (``devbox.wire.postgres.turns``).

One recording is made from a real PostgreSQL through devbox's relay by real clients
(psycopg 3 sync and async with server-side prepared statements, pipeline mode, binary
results, typed values, nested transactions, a migration between two runs of a query;
asyncpg prepared statements, ``executemany``, a cursor, pools whose statement names mean
other SQL; SQLAlchemy on psycopg) and by a raw protocol client for what no client sends
(one statement name meaning other SQL on two connections with the very same Bind bytes,
two turns in one packet, a named portal, a row limit, NULLs, a turn in a failed
transaction, a statement closed and prepared again with other SQL, no Describe at all).

The oracle is differential: every send is replayed, in the recorded order and on as
many mock connections, once the long way (``turns.lookup`` disabled) and three times
with kept turns (``index.reset()`` between passes); every reply must be byte-identical
to the long way's, and, where the real server's reply holds no error (the mock makes
its own ``25P02``), to what the server sent. The same clients then run against devbox's
mock server and must get what the real server gave them. Hostile input (distinct turns
without end, padded turns, mutated traffic, every connection state) must neither change
an answer nor grow the mock's caches without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import random
import socket
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from pg_support import WireServers, running_postgres
from psycopg.types.json import Jsonb

from devbox.wire import tcp
from devbox.wire.contract import MockOptions, Output, Reply
from devbox.wire.postgres import store, turns
from devbox.wire.postgres.mock import PostgresMockConnection
from devbox.wire.registry import get

pytestmark = pytest.mark.slow

Log = list[tuple[int, str, bytes]]  # (connection number, "client" | "server", bytes)
LIVE: dict[str, Any] = {}  # what each client got from the real server, by workload

READ = "SELECT id, v, note FROM t WHERE id = $1"
NOTE = "SELECT note, id FROM t WHERE id = $1"
TWICE = "SELECT id, v * 2, note FROM t WHERE id = $1"  # READ's columns and types


class Spy:
    """The real recorder connection, keeping what each side sent, in global order."""

    def __init__(self, log: Log, no: int) -> None:
        self.rec = get("postgres").recorder_connection()
        self.log, self.no = log, no

    def from_client(self, data: bytes) -> Any:
        self.log.append((self.no, "client", data))
        return self.rec.from_client(data)

    def from_upstream(self, data: bytes) -> Any:
        self.log.append((self.no, "server", data))
        return self.rec.from_upstream(data)

    def take_stored(self) -> list[dict[str, Any]]:
        return self.rec.take_stored()

    def close(self) -> list[dict[str, Any]]:
        return self.rec.close()


# ------------------------------------------------------------------ raw protocol


def msg(typ: bytes, body: bytes) -> bytes:
    return typ + struct.pack("!i", len(body) + 4) + body


def parse(name: str, sql: str, oids: tuple[int, ...] = ()) -> bytes:
    """Parse, then Describe of the statement, as asyncpg prepares (the recorder learns
    the columns from it; without any Describe it stores rows it cannot type)."""
    body = name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!h", len(oids))
    body += b"".join(struct.pack("!i", o) for o in oids)
    return msg(b"P", body) + msg(b"D", b"S" + name.encode() + b"\0")


def bind(
    stmt: str,
    values: list[bytes | None],
    *,
    portal: str = "",
    fmts: tuple[int, ...] = (),
    rfmts: tuple[int, ...] = (),
    tail: bytes = b"",
) -> bytes:
    body = portal.encode() + b"\0" + stmt.encode() + b"\0"
    body += struct.pack(f"!h{len(fmts)}h", len(fmts), *fmts)
    body += struct.pack("!h", len(values))
    for v in values:
        body += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    body += struct.pack(f"!h{len(rfmts)}h", len(rfmts), *rfmts)
    return msg(b"B", body + tail)


def execute(portal: str = "", rows: int = 0) -> bytes:
    return msg(b"E", portal.encode() + b"\0" + struct.pack("!i", rows))


def describe_portal(portal: str = "") -> bytes:
    return msg(b"D", b"P" + portal.encode() + b"\0")


def close_statement(name: str) -> bytes:
    return msg(b"C", b"S" + name.encode() + b"\0")


def query(sql: str) -> bytes:
    return msg(b"Q", sql.encode() + b"\0")


SYNC = msg(b"S", b"")
FLUSH = msg(b"H", b"")
NEVER_DESCRIBED = bind("nd", [b"9"]) + execute() + SYNC


def messages(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 0
    while pos + 5 <= len(data):
        (n,) = struct.unpack_from("!i", data, pos + 1)
        out.append((data[pos : pos + 1], data[pos + 5 : pos + 1 + n]))
        pos += 1 + n
    return out


class Raw:
    """A protocol-v3 client on a socket: start-up (trust), then sends whole or in parts,
    reading until as many ReadyForQuery as the send asks for."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 10)
        body = struct.pack("!i", 196608) + b"user\0devbox\0database\0app\0\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self.buf = b""
        self.wait(1)

    def wait(self, ready: int) -> bytes:
        while True:
            found = [t for t, _ in messages(self.buf) if t == b"Z"]
            if len(found) >= ready:
                out, self.buf = self.buf, b""
                return out
            chunk = self.sock.recv(65536)
            assert chunk, "server closed"
            self.buf += chunk

    def send(self, data: bytes, ready: int = 1) -> bytes:
        self.sock.sendall(data)
        return self.wait(ready)

    def close(self) -> None:
        self.sock.sendall(msg(b"X", b""))
        self.sock.close()


def _raw_workload(port: int) -> list[bytes]:
    a, b = Raw(port), Raw(port)
    got: list[bytes] = []
    # one name, other SQL on each connection; the same Bind bytes then go to both
    a.send(parse("s1", READ, (23,)) + SYNC)
    b.send(parse("s1", NOTE, (23,)) + SYNC)
    five = bind("s1", [b"5"]) + execute() + SYNC
    for _ in range(3):
        got += [a.send(five), b.send(five)]
    # binary parameter and results, Describe of the portal: twice (kept, then from kept)
    six = bind("s1", [struct.pack("!i", 6)], fmts=(1,), rfmts=(1,))
    got += [a.send(six + describe_portal() + execute() + SYNC) for _ in range(2)]
    # two turns in one packet, then each alone
    two = bind("s1", [b"6"]) + execute() + SYNC + bind("s1", [b"7"]) + execute() + SYNC
    got += [a.send(two, 2), a.send(bind("s1", [b"7"]) + execute() + SYNC), a.send(two, 2)]
    # a named portal, a row limit
    got.append(a.send(bind("s1", [b"8"], portal="p") + execute("p") + SYNC))
    a.send(parse("s2", "SELECT id FROM t WHERE id <= $1 ORDER BY id", (23,)) + SYNC)
    for _ in range(2):
        got.append(a.send(bind("s2", [b"5"]) + execute("", 2) + SYNC))
        got.append(a.send(bind("s2", [b"5"]) + execute() + SYNC))
        got.append(a.send(bind("s2", [b"5"]) + execute("", 2) + execute("", 2) + SYNC))
    # NULL parameters, and Flushes between the messages
    a.send(parse("s3", "SELECT count(*) FROM t WHERE note IS NOT DISTINCT FROM $1") + SYNC)
    for _ in range(2):
        got.append(a.send(bind("s3", [None]) + execute() + SYNC))
        got.append(a.send(bind("s3", [b"n5"]) + FLUSH + execute() + FLUSH + SYNC))
    # a turn before, inside, after a failed transaction
    a.send(parse("bad", "SELECT 1 / $1", (23,)) + SYNC)
    for _ in range(2):
        got.append(a.send(five))
        got.append(a.send(query("BEGIN")))
        got.append(a.send(five))
        got.append(a.send(bind("bad", [b"0"]) + execute() + SYNC))
        got.append(a.send(five))  # 25P02: the kept answer must not be sent
        got.append(a.send(query("ROLLBACK")))
        got.append(a.send(five))
    # the name closed and prepared again with the other SQL on the same connection
    a.send(close_statement("s1") + parse("s1", NOTE, (23,)) + SYNC)
    got += [a.send(five), b.send(five), a.send(five)]
    a.close()
    b.close()
    # a client that never asks for a description: Parse, then Bind/Execute only
    c = Raw(port)
    c.send(msg(b"P", b"nd\0SELECT note FROM t WHERE id = $1\0\0\0") + SYNC)
    got.append(c.send(NEVER_DESCRIBED))
    c.send(msg(b"P", b"nd2\0SELECT v, note FROM t WHERE id = $1\0\0\0") + SYNC)
    for formats in ((1,), (0, 1), (1, 0), ()):  # binary rows of unknown types too
        got.append(c.send(bind("nd2", [b"9"], rfmts=formats) + execute() + SYNC))
    c.close()
    return got


# ------------------------------------------------------------------ real clients


def _psycopg_workload(port: int) -> list[Any]:
    url = f"postgresql://devbox@127.0.0.1:{port}/app"
    seen: list[Any] = []
    with psycopg.connect(url, prepare_threshold=0, autocommit=True) as c:
        read = "SELECT id, v, note FROM t WHERE id = %s"
        for i in [*range(1, 9), *range(1, 9)]:
            seen.append(c.execute(read, (i,)).fetchall())
        c.execute("UPDATE t SET v = v + 100 WHERE id = %s", (3,))  # a second answer
        seen.append(c.execute(read, (3,)).fetchall())
        seen.append(c.execute(read, (3,)).fetchall())
        with c.cursor(binary=True) as cur:
            for i in (1, 2, 1):
                seen.append(cur.execute(read, (i,)).fetchall())
        seen.append(c.execute(read, (None,)).fetchall())
        with c.pipeline():
            curs = [c.execute(read, (i,)) for i in (4, 5, 4)]
        seen += [cur.fetchall() for cur in curs]
        for _ in range(2):
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                with c.transaction():
                    seen.append(c.execute(read, (2,)).fetchall())
                    c.execute("SELECT 1 / %s", (0,))
            seen.append(c.execute(read, (2,)).fetchall())
        typed = (
            "SELECT %s::jsonb, %s::numeric, %s::timestamptz, %s::uuid, %s::bytea,"
            " %s::int[], %s::text"
        )
        values = (
            Jsonb({"a": [1, None]}),
            "12.50",
            "2024-01-02 03:04:05+00",
            "12345678-1234-5678-1234-567812345678",
            b"\x00\xff",
            [1, None, 3],
            None,
        )
        for binary in (False, True, False, True):
            with c.cursor(binary=binary) as cur:
                seen.append(cur.execute(typed, values, prepare=True).fetchall())
        with c.cursor() as cur:  # executemany: a pipeline of Bind/Execute, one Sync
            cur.executemany("UPDATE t SET v = v + 1 WHERE id = %s", [(12,), (13,)])
            cur.executemany("UPDATE t SET v = v + 1 WHERE id = %s", [(12,), (13,)])
        seen.append(c.execute(read, (12,)).fetchall())
        seen.append(c.execute("SELECT set_config('TimeZone', %s, false)", ("UTC",)).fetchall())
        seen.append(c.execute(read, (12,)).fetchall())
        # a migration between two runs of one query: its columns change (each answer
        # recorded with its own); libpq describes the portal of each execution
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as c2:
            every = "SELECT * FROM t2 WHERE id = %s"
            seen.append(c2.execute(every, (1,)).fetchall())
            c2.execute("ALTER TABLE t2 ADD COLUMN extra text DEFAULT 'x'")
            seen.append(c2.execute(every, (1,)).fetchall())
            seen.append(c2.execute(every, (1,)).fetchall())
        for _ in range(2):  # a savepoint rolled back: the transaction goes on
            with c.transaction():
                seen.append(c.execute(read, (6,)).fetchall())
                with contextlib.suppress(psycopg.errors.DivisionByZero):
                    with c.transaction():
                        c.execute("SELECT 1 / %s", (0,))
                seen.append(c.execute(read, (6,)).fetchall())
                seen.append(c.info.transaction_status.name)
    return seen


async def _asyncpg_workload(port: int) -> list[Any]:
    url = f"postgresql://devbox@127.0.0.1:{port}/app"
    seen: list[Any] = []
    conn = await asyncpg.connect(url)
    try:
        stmt = await conn.prepare(READ)
        for i in (1, 2, 1, 9, 9):
            seen.append(await stmt.fetch(i))
        await conn.executemany("UPDATE t SET v = v + 1 WHERE id = $1", [(10,), (11,)])
        typed = "SELECT $1::jsonb, $2::numeric, $3::timestamptz, $4::uuid, $5::bytea, $6::int[]"
        when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        args = ('{"a": 1}', decimal.Decimal("12.50"), when, uuid.UUID(int=5), b"\x00", [1, None])
        for _ in range(2):
            seen.append(await conn.fetch(typed, *args))
            seen.append(await conn.fetchval("SELECT $1::text IS NULL", None))
        seen.append(await conn.fetch(READ, 10))
        async with conn.transaction():
            seen.append(await conn.fetch(READ, 1))
    finally:
        await conn.close()
    # a cursor: a named portal fetched a few rows at a time
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            cur = conn.cursor("SELECT id, v FROM t WHERE id <= $1 ORDER BY id", 7, prefetch=3)
            seen.append([tuple(r) async for r in cur])
    finally:
        await conn.close()
    # statement names reused for other SQL of the same columns: asyncpg numbers them per
    # process, so a service started again (here: the counter set back) names other SQL
    # as before; the very same Bind bytes mean READ on one connection, TWICE on another
    for sql in (READ, TWICE, READ):
        setattr(asyncpg.connection, "_uid", 0)  # noqa: B010 (a private global)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1, max_queries=2)
        try:
            for i in (1, 2, 1, 2):
                async with pool.acquire() as c:
                    seen.append(await c.fetch(sql, i))
        finally:
            await pool.close()
    return seen


async def _psycopg_async_workload(port: int) -> list[Any]:
    url = f"postgresql://devbox@127.0.0.1:{port}/app"
    seen: list[Any] = []
    async with await psycopg.AsyncConnection.connect(url, prepare_threshold=0) as c:
        for _ in range(2):
            async with c.pipeline():
                curs = [await c.execute(READ.replace("$1", "%s"), (i,)) for i in (1, 14, 1)]
            seen += [await cur.fetchall() for cur in curs]
            async with c.transaction():
                cur = await c.execute(READ.replace("$1", "%s"), (14,))
                seen.append(await cur.fetchall())
            await c.commit()
    return seen


async def _asyncpg_migration(port: int) -> list[Any]:
    """A migration between two runs of a prepared query: the server fails the cached
    plan, asyncpg prepares the query again (Describe of the statement) and retries."""
    conn = await asyncpg.connect(f"postgresql://devbox@127.0.0.1:{port}/app")
    seen: list[Any] = []
    try:
        seen.append(await conn.fetch("SELECT * FROM t3 WHERE id = $1", 1))
        await conn.execute("ALTER TABLE t3 ADD COLUMN extra text DEFAULT 'x'")
        seen.append(await conn.fetch("SELECT * FROM t3 WHERE id = $1", 1))
        seen.append(await conn.fetch("SELECT * FROM t3 WHERE id = $1", 1))
    finally:
        await conn.close()
    return seen


def _sqlalchemy_workload(port: int) -> list[Any]:
    engine = sa.create_engine(
        f"postgresql+psycopg://devbox@127.0.0.1:{port}/app",
        connect_args={"prepare_threshold": 0},
    )
    seen: list[Any] = []
    try:
        with engine.connect() as c:
            for i in (1, 2, 1, 2):
                seen.append(c.execute(sa.text("SELECT v FROM t WHERE id = :i"), {"i": i}).all())
            c.commit()
    finally:
        engine.dispose()
    return seen


def _workloads(port: int) -> dict[str, Any]:
    return {
        "raw": _raw_workload(port),
        "psycopg": _psycopg_workload(port),
        "asyncpg": asyncio.run(_asyncpg_workload(port)),
        "psycopg async": asyncio.run(_psycopg_async_workload(port)),
        "sqlalchemy": _sqlalchemy_workload(port),
    }


@pytest.fixture(scope="module")
def session() -> Iterator[tuple[list[dict[str, Any]], Log]]:
    with running_postgres(auth="trust") as pg:
        with psycopg.connect(pg.url(password=False), autocommit=True) as c:
            c.execute(
                "CREATE TABLE t (id int PRIMARY KEY, v int, note text);"
                "INSERT INTO t SELECT i, i * 3, CASE WHEN i % 4 = 0 THEN NULL ELSE 'n' || i END"
                " FROM generate_series(1, 40) i;"
                "CREATE TABLE t2 (id int, v int); INSERT INTO t2 VALUES (1, 10);"
                "CREATE TABLE t3 (id int, v int); INSERT INTO t3 VALUES (1, 10)"
            )
        ws = WireServers()
        log: Log = []
        opened: list[int] = []
        ended: list[int] = []
        try:

            async def start() -> int:
                def relay() -> tcp.RelayConnection:  # devbox record's relay
                    no = len(opened)
                    opened.append(no)
                    return tcp.RelayConnection(
                        Spy(log, no),
                        (pg.host, pg.port),
                        ws.stored.extend,
                        on_end=lambda _c: ended.append(no),
                    )

                server = await tcp.start_relay_server(relay, "127.0.0.1", 0)
                ws.servers.append(server)
                return int(server.sockets[0].getsockname()[1])

            port = ws.call(start())
            LIVE["pg"] = (pg.host, pg.port)
            LIVE.update(_workloads(port))
            LIVE["asyncpg migration"] = asyncio.run(_asyncpg_migration(port))

            async def all_ended() -> None:
                while len(ended) < len(opened):
                    await asyncio.sleep(0.01)

            try:
                ws.call(asyncio.wait_for(all_ended(), 30))
            except TimeoutError:
                left = set(range(len(opened))) - set(ended)
                raise AssertionError(
                    f"relays left: {[(no, s, d[:60]) for no, s, d in log if no in left]}"
                ) from None
            yield list(ws.stored), log
        finally:
            ws.close()


# ------------------------------------------------------------------ replay


@contextlib.contextmanager
def long_way() -> Iterator[None]:
    lookup = turns.lookup

    def none(*_: Any) -> tuple[None, None]:
        return None, None

    turns.lookup = none  # type: ignore[assignment]
    try:
        yield
    finally:
        turns.lookup = lookup


@contextlib.contextmanager
def counting(kept: list[int]) -> Iterator[None]:
    lookup = turns.lookup

    def counted(
        index: store.Index, statements: dict[str, Any], status: str, data: bytes
    ) -> tuple[list[Output] | None, turns.Pending | None]:
        found = lookup(index, statements, status, data)
        kept[0] += found[0] is not None
        return found

    turns.lookup = counted
    try:
        yield
    finally:
        turns.lookup = lookup


def load(stored: list[dict[str, Any]]) -> store.Index:
    index = get("postgres").load([("rec.json", i + 2, o) for i, o in enumerate(stored)])
    assert isinstance(index, store.Index)
    return index


def mock(index: store.Index) -> PostgresMockConnection:
    conn = get("postgres").mock_connection(index, MockOptions("db", match={"auth": "trust"}))
    assert isinstance(conn, PostgresMockConnection)
    return conn


def replay(index: store.Index, log: Log, split: int = 0) -> list[tuple[Any, ...]]:
    """(connection, the mock's reply, its events' reprs) for every client send, in the
    recorded order, one mock connection per recorded one. ``split``: every send of more
    than ``split`` bytes arrives as two reads, cut there."""
    conns: dict[int, PostgresMockConnection] = {}
    out: list[tuple[Any, ...]] = []
    for no, side, data in log:
        if side != "client":
            continue
        conn = conns.setdefault(no, mock(index))
        parts = [data[:split], data[split:]] if 0 < split < len(data) else [data]
        outputs = [o for part in parts for o in conn.data_received(part)]
        reply = b"".join(o.data for o in outputs if isinstance(o, Reply))
        if b"K\x00\x00\x00\x0c" in reply:  # start-up: BackendKeyData is random
            reply = b"".join(msg(t, b if t != b"K" else b"") for t, b in messages(reply))
        out.append((no, reply, [repr(o) for o in outputs if not isinstance(o, Reply)]))
    return out


def server_replies(log: Log) -> list[tuple[int, bytes, bool]]:
    """(connection, what the server sent after each client send until that connection's
    next send, whether start-up was over before it) for every client send."""
    out: list[list[Any]] = []
    last: dict[int, list[Any]] = {}
    ready: set[int] = set()
    for no, side, data in log:
        if side == "client":
            last[no] = [no, b"", no in ready]
            out.append(last[no])
        else:
            last[no][1] += data
            if b"Z\x00\x00\x00\x05" in data:
                ready.add(no)
    return [(no, reply, after) for no, reply, after in out]


def _startup_done(reply: bytes) -> bool:
    return any(t == b"K" for t, _ in messages(reply))


# ------------------------------------------------------------------ tests


def test_the_workloads_did_what_they_say(session: tuple[list[dict[str, Any]], Log]) -> None:
    stored, log = session
    sent = b"".join(d for _, side, d in log if side == "client")
    assert sent.count(b"__asyncpg_stmt_") > 10 and b"_pg3_" in sent
    assert len({no for no, _, _ in log}) >= 8  # raw, psycopg, asyncpg, pool, SQLAlchemy
    assert any("25P02" in str(o.get("results")) for o in stored)


def test_the_same_bind_bytes_meant_other_sql_on_other_connections(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """The recording holds the hard case: one send's bytes, on two connections whose
    statement of that name is other SQL (raw client and asyncpg's pool)."""
    _, log = session
    names: dict[tuple[int, str], str] = {}
    meant: dict[bytes, set[str]] = {}
    for no, side, data in log:
        if side != "client" or data[:1] not in (b"P", b"B"):
            continue
        for typ, body in messages(data):
            if typ == b"P":
                name, sql = body.split(b"\0")[:2]
                names[(no, name.decode())] = sql.decode()
        if data[:1] == b"B":
            stmt = messages(data)[0][1].split(b"\0")[1].decode()
            meant.setdefault(data, set()).add(names[(no, stmt)])
    both = [sqls for data, sqls in meant.items() if len(sqls) > 1]
    assert {READ, NOTE} in both and {READ, TWICE} in both


def test_kept_turns_answer_byte_for_byte_as_the_long_way_and_the_server(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    stored, log = session
    with long_way():
        oracle = replay(load(stored), log)
        index = load(stored)
        oracle_again = replay(index, log)
        index.reset()
        assert replay(index, log) == oracle_again == oracle  # the oracle repeats itself
    index = load(stored)
    kept = [0]
    with counting(kept):
        for n in range(3):
            got = replay(index, log)
            assert len(got) == len(oracle)
            for i, (a, b) in enumerate(zip(got, oracle, strict=True)):
                assert a == b, f"pass {n}, send {i} on connection {a[0]}: {a[1]!r} != {b[1]!r}"
            index.reset()
    assert kept[0] >= 150, kept  # the fast path answered most of them
    server = server_replies(log)
    sends = [d for _, side, d in log if side == "client"]
    compared = 0
    in_step: dict[int, bool] = {}  # every send so far had its answer before the next one
    for (no, mine, _), (_, real, after), sent in zip(oracle, server, sends, strict=True):
        asked = sum(t in (b"S", b"Q") for t, _ in messages(sent))
        answered = sum(t == b"Z" for t, _ in messages(real))
        whole = asked == answered and messages(sent)[-1][0] in (b"S", b"Q")
        step, in_step[no] = in_step.get(no, True), whole
        # the turns (what the cache answers; a statement's description is not one) whose
        # server reply came whole before the next send (a pipeline's may not)
        if sent[:1] != b"B" or not after or not real or not step or not whole:
            continue
        if not any(t == b"E" for t, _ in messages(real)):
            if any(t in (b"S", b"K") for t, _ in messages(real)):
                continue  # ParameterStatus of the session: not a query's answer
            assert mine == real, f"connection {no}: {mine!r} != {real!r}"
            compared += 1
    assert compared >= 80


@pytest.mark.parametrize("cut", [1, 7, 20])
def test_a_turn_split_across_reads_answers_as_the_long_way(
    session: tuple[list[dict[str, Any]], Log], cut: int
) -> None:
    stored, log = session
    with long_way():
        oracle = replay(load(stored), log, cut)
    index = load(stored)
    replay(index, log)  # every turn kept whole
    index.reset()
    assert replay(index, log, cut) == oracle


def test_the_same_bind_bytes_on_two_connections_get_their_own_statements_rows(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    stored, log = session
    five = bind("s1", [b"5"]) + execute() + SYNC
    index = load(stored)
    for _ in range(3):
        got = [(no, r) for no, r, _ in replay(index, log)]
        sends = [(no, d) for no, side, d in log if side == "client"]
        mine = [r for (no, r), (_, d) in zip(got, sends, strict=True) if d == five]
        rows = [b for r in mine for t, b in messages(r) if t == b"D"]
        # connection a reads id, v, note (3 columns), b note, id (2), a again after its
        # re-Parse with b's SQL: 2 columns
        assert [struct.unpack_from("!h", r)[0] for r in rows] == (
            [3, 2] * 3 + [3, 3, 3, 3, 3, 3] + [2, 2, 2]
        )
        index.reset()


def test_no_kept_answer_in_a_failed_transaction(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    stored, log = session
    index = load(stored)
    for _ in range(3):
        replies = [r for _, r, _ in replay(index, log)]
        failed = [r for r in replies if b"25P02" in r]
        assert len(failed) == 2 and all(r.endswith(b"Z\x00\x00\x00\x05E") for r in failed)
        assert not any(t == b"D" for r in failed for t, _ in messages(r))
        index.reset()


def test_a_recorded_25p02_does_not_shift_the_sequence_after_rollback(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """The read of id 5 was recorded in a failed transaction (the server's 25P02); the
    mock makes its own 25P02 there without taking a recorded answer, so the recorded
    one must not be left in the sequence for the read after ROLLBACK to get."""
    stored, log = session
    five = bind("s1", [b"5"]) + execute() + SYNC
    sends = [(no, d) for no, side, d in log if side == "client"]
    real = [r for (no, d), (_, r, _) in zip(sends, server_replies(log), strict=True) if d == five]
    for way in (long_way, contextlib.nullcontext):
        index = load(stored)
        with way():
            for _ in range(2):
                got = [
                    r
                    for (no, d), (_, r, _) in zip(sends, replay(index, log), strict=True)
                    if d == five
                ]
                assert [r[-1:] for r in got] == [r[-1:] for r in real]  # I, T, E...
                assert [b"25P02" in r for r in got] == [b"25P02" in r for r in real]
                index.reset()


def _ready_mock(stored: list[dict[str, Any]], log: Log) -> tuple[PostgresMockConnection, Any]:
    """A mock connection that has replayed the raw connection's start-up and its Parse of
    ``s1`` (the read of id, v, note)."""
    index = load(stored)
    conn = mock(index)
    for no, side, data in log:
        if no == 0 and side == "client":
            conn.data_received(data)
            if data.startswith(b"P"):
                break
    assert conn.statements["s1"].sql == READ
    return conn, index


def _reply(outputs: list[Output]) -> bytes:
    return b"".join(o.data for o in outputs if isinstance(o, Reply))


def test_hostile_turns_do_not_grow_the_kept_turns_without_bound(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """Every turn a client sends in another way is a new entry of a cache: the same
    read under 2,000 statement names, with 4,096 combinations of result-format codes.
    Both caches grew with every one, for as long as the mock ran; each answer must
    still be the long way's."""
    stored, log = session
    conn, index = _ready_mock(stored, log)
    oracle, _ = _ready_mock(stored, log)
    names = [f"n{i}" for i in range(2000)]
    conn.data_received(b"".join(parse(n, READ, (23,)) for n in names) + SYNC)
    oracle.data_received(b"".join(parse(n, READ, (23,)) for n in names) + SYNC)
    sends = [bind(n, [b"5"]) + execute() + SYNC for n in names]
    for i in range(4096):
        codes = tuple((i >> bit) & 1 for bit in range(12))
        sends.append(bind("s1", [b"5"], rfmts=codes) + execute() + SYNC)
    for data in sends:
        mine = _reply(conn.data_received(data))
        with long_way():
            assert mine == _reply(oracle.data_received(data))
    cap = 4 * len(index.entries) + 1024
    assert len(index.raw_turns) <= cap and len(index.turns) <= cap
    assert b"n5" in _reply(conn.data_received(sends[0]))  # kept again if it was emptied
    for _ in range(2):  # then answered from it
        kept = [0]
        with counting(kept):
            assert b"n5" in _reply(conn.data_received(sends[0]))
        assert kept == [1]


def test_a_truncated_bind_is_an_error_not_a_traceback(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """A Bind whose length stops before its result-format count: the server answers
    08P01; the mock raised struct.error out of data_received (the loop logs a traceback
    and drops the connection without a word)."""
    stored, log = session
    for way in (long_way, contextlib.nullcontext):
        conn, _ = _ready_mock(stored, log)
        whole = bind("s1", [b"5"])
        short = msg(b"B", whole[5:-2])  # without its result-format count
        with way():
            reply = _reply(conn.data_received(short + execute() + SYNC))
        assert b"C08P01" in reply


def test_real_clients_get_from_the_mock_what_the_server_gave_them(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """The same clients, the same workloads, against devbox's mock server: every row,
    status and error as the real server gave them, three times over (sequences started
    again between), the later passes answered from kept turns."""
    stored, _ = session
    index = load(stored)
    ws = WireServers()
    try:
        port = ws.serve(index, auth="trust")
        for n in range(3):
            got = _workloads(port)
            for name in ("psycopg", "asyncpg", "psycopg async", "sqlalchemy"):
                assert got[name] == LIVE[name], f"pass {n}: {name}"
            for mine, real in zip(got["raw"], LIVE["raw"], strict=True):
                if b"E" not in [t for t, _ in messages(real)]:
                    assert mine == real, f"pass {n}"
                else:  # an error of the mock's own making: the same state, same status
                    assert [t for t, _ in messages(mine)] == [t for t, _ in messages(real)]
                    assert mine[-1:] == real[-1:]
            assert index.turns

            async def reset() -> None:  # on the mock's own loop, as devbox up does
                index.reset()

            ws.call(reset())
    finally:
        ws.close()


def differential(stored: list[dict[str, Any]], script: list[tuple[int, bytes]]) -> int:
    """Run ``script`` (connection, bytes) the long way once and with kept turns three
    times (sequences started again between); every output must be the same. Returns how
    many sends a kept turn answered."""

    def run(index: store.Index) -> list[tuple[int, list[str]]]:
        conns: dict[int, PostgresMockConnection] = {}
        out = []
        for no, data in script:
            conn = conns.setdefault(no, mock(index))
            outputs = conn.data_received(data)
            shown = [repr(o) for o in outputs if not isinstance(o, Reply) or b"K\0" not in o.data]
            out.append((no, shown))
        return out

    with long_way():
        oracle = run(load(stored))
    index, kept = load(stored), [0]
    with counting(kept):
        for n in range(3):
            got = run(index)
            for i, (a, b) in enumerate(zip(got, oracle, strict=True)):
                assert a == b, f"pass {n}, send {i}: {script[i]!r}"
            index.reset()
    return kept[0]


def _startup() -> bytes:
    body = struct.pack("!i", 196608) + b"user\0devbox\0database\0app\0\0"
    return struct.pack("!i", len(body) + 4) + body


def test_one_name_other_types_on_two_connections(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """s1 is READ on both connections, its parameter int4 on one and int8 on the other:
    the same binary Bind bytes are id 5 on the first, not a valid int8 on the second."""
    stored, _ = session
    five = bind("s1", [struct.pack("!i", 5)], fmts=(1,)) + execute() + SYNC
    five8 = bind("s1", [struct.pack("!q", 5)], fmts=(1,)) + execute() + SYNC
    script = [(0, _startup()), (1, _startup())]
    script += [(0, parse("s1", READ, (23,)) + SYNC), (1, parse("s1", READ, (20,)) + SYNC)]
    script += [(0, five), (1, five), (0, five), (1, five8), (1, five), (0, five8), (0, five)]
    assert differential(stored, script) >= 3


def test_mutated_real_traffic_answers_as_the_long_way(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """Every recorded client send, on its own connection, then again with bytes flipped,
    cut short, doubled, with a row limit or a named portal, on connections whose
    statements differ: the mock never raises, and kept turns change no output."""
    stored, log = session
    rng = random.Random(5)
    script: list[tuple[int, bytes]] = []
    for no, side, data in log:
        if side == "client":
            script.append((no, data))
    turns_sent = [(no, d) for no, d in script if d[:1] == b"B" and d.endswith(SYNC)]
    assert len(turns_sent) > 50
    for _ in range(3):
        for no, data in turns_sent:
            choice = rng.randrange(8)
            if choice == 0:
                i = rng.randrange(5, len(data))
                data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]
            elif choice == 1:
                data = data[: rng.randrange(6, len(data))] + SYNC
            elif choice == 2:
                data = data + data
            elif choice == 3:
                data = data.replace(execute(), execute("", 1))
            elif choice == 4:
                data = data[:5] + b"q" + data[5:]  # not a well-formed named portal
            elif choice == 5:
                no = rng.choice([n for n, _ in script])  # another connection's statements
            script.append((no, data))
    assert differential(stored, script) > 50


def test_rows_of_a_query_never_described_are_replayed(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """Rows recorded without any RowDescription (the client never sent Describe) are
    stored with columns null; they were replayed as CommandComplete with no DataRow."""
    stored, log = session
    sent = NEVER_DESCRIBED
    real = next(
        r
        for (_, r, _), (_, side, d) in zip(
            server_replies(log), [x for x in log if x[1] == "client"], strict=True
        )
        if d == sent
    )
    assert b"n9" in real
    mine = [
        r
        for (_, r, _), (_, _, d) in zip(
            replay(load(stored), log), [x for x in log if x[1] == "client"], strict=True
        )
        if d == sent
    ]
    assert mine == [real]


def test_hostile_turns_of_many_bytes_are_not_kept(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """The caches are capped by count; each entry holds the turn's bytes. Thousands of
    Flushes (or, refused now, bytes after a Bind's result formats) matched the recorded
    read all the same, so a thousand such turns kept ~100 MB."""
    stored, log = session
    conn, index = _ready_mock(stored, log)
    five = bind("s1", [b"5"]) + execute() + SYNC
    answer = _reply(conn.data_received(five))
    for i in range(400):
        hostile = bind("s1", [b"5"]) + FLUSH * (8000 + i) + execute() + FLUSH * i + SYNC
        assert _reply(conn.data_received(hostile)) == answer
    held = sum(len(k) for k in index.raw_turns) + sum(len(k[1]) + len(k[3]) for k in index.turns)
    assert held < 100_000, held


def test_result_format_codes_do_not_grow_the_encoded_answers_without_bound(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """The long way keeps each answer encoded per result formats (and its description):
    a client sending ever other format codes grew those caches for as long as the mock
    ran. More codes than columns are now refused at Bind, as the server refuses them
    (``test_a_bind_whose_result_formats_fit_no_column_count_fails_as_on_the_server``),
    so none of them is encoded, and the one count that fits is answered."""
    stored, log = session
    conn, index = _ready_mock(stored, log)
    for i in range(3000):
        codes = (0,) * 3 + tuple((i >> bit) & 1 for bit in range(12))
        data = bind("s1", [b"5"], rfmts=codes) + describe_portal() + execute() + SYNC
        assert b"C08P01" in _reply(conn.data_received(data))
    for i in range(8):
        codes = tuple((i >> bit) & 1 for bit in range(3))
        data = bind("s1", [b"5"], rfmts=codes) + describe_portal() + execute() + SYNC
        assert b"n5" in _reply(conn.data_received(data))
    cap = 4 * len(index.entries) + 1024
    assert len(index.encoded) <= cap and len(index.descriptions) <= cap


def test_turns_in_every_connection_state_answer_as_the_long_way(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """The kept read of id 5 sent where the connection's state says otherwise: a portal
    left part-fetched, a statement closed, a pending Bind without Sync, an error being
    skipped to Sync, a failed transaction, before start-up, after a Terminate."""
    stored, _ = session
    five = bind("s1", [b"5"]) + execute() + SYNC
    ready = [(0, _startup()), (0, parse("s1", READ, (23,)) + SYNC), (0, five), (0, five)]
    states = [
        bind("s1", [b"5"]) + execute("", 1) + FLUSH,  # unnamed portal part-fetched
        close_statement("s1") + SYNC,  # the statement is gone
        parse("s1", NOTE, (23,)) + SYNC,  # and back as other SQL
        parse("s1", READ, (23,)) + SYNC,
        bind("s1", [b"5"]) + FLUSH,  # a Bind waiting for its Execute
        bind("nope", [b"5"]) + FLUSH,  # an error: skip to Sync
        query("BEGIN"),
        parse("bad", "SELECT 1 / $1", (23,)) + bind("bad", [b"0"]) + execute() + SYNC,
        query("ROLLBACK"),
    ]
    script = list(ready)
    for state in states:
        script += [(0, state), (0, five), (0, five)]
    script += [(0, five[:9]), (0, five[9:]), (0, five), (0, five[:-1]), (0, five[-1:])]
    script += [(0, five + five), (0, five), (0, msg(b"X", b"")), (0, five)]
    script += [(1, five), (1, _startup())]  # before start-up: refused, closed
    script += [(2, _startup()), (2, five), (2, parse("s1", READ, (23,)) + SYNC), (2, five)]
    assert differential(stored, script) >= 10


def test_a_statement_prepared_again_after_a_migration_is_described_anew(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """A Describe of a statement answered the columns of the first recorded run of its
    SQL: after a migration asyncpg prepared again, got the old columns and the new rows
    (ProtocolError: the number of columns in the result row (3) is different from what
    was described (2)). Twice, with the sequences started again in between."""
    stored, _ = session
    ws = WireServers()
    try:
        index = load(stored)

        async def reset() -> None:
            index.reset()

        port = ws.serve(index, auth="trust")
        for _ in range(2):
            assert asyncio.run(_asyncpg_migration(port)) == LIVE["asyncpg migration"]
            ws.call(reset())
    finally:
        ws.close()


def test_a_truncated_bind_through_the_recording_relay_gets_the_servers_error(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """The recorder parsed a Bind shorter than its fields with struct.error, which ended
    the relayed connection; the server answers 08P01 and goes on, and so must the relay
    (recording the queries after it)."""
    ws = WireServers()
    try:
        c = Raw(ws.relay(LIVE["pg"]))
        c.send(parse("s1", READ, (23,)) + SYNC)
        short = msg(b"B", bind("s1", [b"5"])[5:-2])  # without its result-format count
        assert b"C08P01" in c.send(short + execute() + SYNC)
        assert b"n5" in c.send(bind("s1", [b"5"]) + execute() + SYNC)
        c.close()
    finally:
        ws.close()
    assert [o.get("params") for o in ws.stored if o.get("sql") == READ] == [
        [{"type": "int4", "format": "text", "value": "5"}]
    ]


def test_a_bind_with_bytes_after_its_formats_is_refused_as_by_the_server(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """The server refuses a Bind longer than its fields (08P01, invalid message format);
    the mock read past the extra bytes and answered the rows, the long way and kept."""
    stored, log = session
    padded = bind("s1", [b"5"], tail=b"\0\0") + execute() + SYNC
    ws = WireServers()
    try:
        c = Raw(ws.relay(LIVE["pg"]))
        c.send(parse("s1", READ, (23,)) + SYNC)
        assert b"C08P01" in c.send(padded)
        c.close()
    finally:
        ws.close()
    for way in (long_way, contextlib.nullcontext):
        conn, _ = _ready_mock(stored, log)
        with way():
            for _ in range(2):
                reply = _reply(conn.data_received(padded))
                assert b"C08P01" in reply and b"n5" not in reply


def test_binary_rows_never_described_are_refused_as_text_not_sent_as_hex(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """Rows a client never described are stored untyped, a binary value as ``\\x`` hex,
    with the formats its Bind asked for. A client asking for them in the other format
    got that hex as if it were the value's text (the server sends ``27``); without the
    type the mock cannot convert, so the query fails with the reason, and the format it
    was recorded in is still answered byte for byte."""
    stored, _ = session
    nd2 = [o for o in stored if o.get("type") == "query" and "SELECT v, note" in o["sql"]]
    assert [r.get("formats") for o in nd2 for r in o["results"]] == [
        ["binary", "binary"],
        ["text", "binary"],
        ["binary", "text"],
        ["text", "text"],
    ]
    for way in (long_way, contextlib.nullcontext):
        conn = mock(load(stored))
        conn.data_received(_startup())
        conn.data_received(msg(b"P", b"nd2\0SELECT v, note FROM t WHERE id = $1\0\0\0") + SYNC)
        with way():
            as_text = _reply(conn.data_received(bind("nd2", [b"9"]) + execute() + SYNC))
            as_recorded = _reply(
                conn.data_received(bind("nd2", [b"9"], rfmts=(0, 1)) + execute() + SYNC)
            )
        kinds = [t for t, _ in messages(as_text)]
        assert kinds == [b"2", b"E", b"Z"], as_text  # Bind done, Execute failed
        assert b"binary" in as_text and b"\\x" not in as_text
        assert [t for t, _ in messages(as_recorded)] == [b"2", b"D", b"C", b"Z"]
        assert b"27" in as_recorded and b"n9" in as_recorded


def test_a_bind_whose_result_formats_fit_no_column_count_fails_as_on_the_server(
    session: tuple[list[dict[str, Any]], Log],
) -> None:
    """Two result formats for READ's three columns: the server refuses the Bind (08P01,
    its own words); the mock answered rows, whatever the recording held."""
    stored, log = session
    wrong = bind("s1", [b"5"], rfmts=(0, 1)) + execute() + SYNC
    real = Raw(LIVE["pg"][1])
    real.send(parse("s1", READ, (23,)) + SYNC)
    theirs = real.send(wrong)
    real.close()
    said = b"bind message has 2 result formats but query has 3 columns"
    assert [t for t, _ in messages(theirs)] == [b"E", b"Z"] and said in theirs
    for way in (long_way, contextlib.nullcontext):
        conn, _ = _ready_mock(stored, log)
        with way():
            mine = _reply(conn.data_received(wrong))
            fits = _reply(
                conn.data_received(bind("s1", [b"5"], rfmts=(0, 1, 1)) + execute() + SYNC)
            )
        assert [t for t, _ in messages(mine)] == [b"E", b"Z"], mine
        assert b"C08P01" in mine and said in mine
        assert [t for t, _ in messages(fits)] == [b"2", b"D", b"C", b"Z"]

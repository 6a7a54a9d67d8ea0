"""The Postgres mock's kept turns (``devbox.wire.postgres.turns``) answer with the bytes
the real server sent, exactly as the long way does, and never where the long way would
answer differently: nth-call sequences, transactions, errors, NULLs.

The client is psycopg with server-side prepared statements against a real PostgreSQL,
relayed through devbox's recorder; a spy on the relay keeps both directions' bytes, so
every turn's reply from the mock is compared with the real server's own reply."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from pg_support import WireServers, running_postgres

from devbox.wire import tcp
from devbox.wire.contract import MockOptions, Output, Reply
from devbox.wire.postgres import store, turns
from devbox.wire.postgres.mock import PostgresMockConnection
from devbox.wire.registry import get

pytestmark = pytest.mark.slow


class Spy:
    """The real recorder connection, keeping what each side sent in order."""

    def __init__(self, log: list[tuple[str, bytes]]) -> None:
        self.rec = get("postgres").recorder_connection()
        self.log = log

    def from_client(self, data: bytes) -> Any:
        self.log.append(("client", data))
        return self.rec.from_client(data)

    def from_upstream(self, data: bytes) -> Any:
        self.log.append(("server", data))
        return self.rec.from_upstream(data)

    def take_stored(self) -> list[dict[str, Any]]:
        return self.rec.take_stored()

    def close(self) -> list[dict[str, Any]]:
        return self.rec.close()


def _workload(url: str) -> list[Any]:
    seen: list[Any] = []
    with psycopg.connect(url, prepare_threshold=0, autocommit=True) as c:
        read = "SELECT id, v, note FROM t WHERE id = %s"
        for i in [*range(1, 21), *range(1, 6)]:  # repeated lookups: same answers
            seen.append(c.execute(read, (i,)).fetchall())
        c.execute("UPDATE t SET v = v + 100 WHERE id = %s", (3,))
        seen.append(c.execute(read, (3,)).fetchall())  # the same key, a second answer
        with c.transaction():  # the same lookup inside a transaction: status T
            seen.append(c.execute(read, (4,)).fetchall())
            seen.append(c.info.transaction_status.name)
        seen.append(
            c.execute(
                "SELECT count(*) FROM t WHERE note IS NOT DISTINCT FROM %s", (None,)
            ).fetchall()
        )
        try:
            c.execute("SELECT 1 / %s", (0,))
        except psycopg.errors.DivisionByZero as exc:
            seen.append(exc.sqlstate)
        seen.append(c.execute(read, (7,)).fetchall())
        for _ in range(2):  # BEGIN and COMMIT as prepared statements: a turn that changes
            c.execute("BEGIN")  # the transaction status is never kept
            seen.append(c.info.transaction_status.name)
            seen.append(c.execute(read, (8,)).fetchall())
            c.execute("COMMIT")
            seen.append(c.info.transaction_status.name)
    return seen


def _turns(log: list[tuple[str, bytes]]) -> list[tuple[bytes, bytes]]:
    """(what the client sent, everything the server sent back before the next send) for
    every send of the session after start-up."""
    out: list[tuple[bytes, bytes]] = []
    for side, data in log:
        if side == "client":
            out.append((data, b""))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + data)
    return out


@pytest.fixture(scope="module")
def session() -> tuple[list[dict[str, Any]], list[tuple[bytes, bytes]], list[Any]]:
    with running_postgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as c:
            c.execute(
                "CREATE TABLE t (id int PRIMARY KEY, v int, note text);"
                "INSERT INTO t SELECT i, i * 3, CASE WHEN i % 4 = 0 THEN NULL ELSE 'n' || i END"
                " FROM generate_series(1, 40) i"
            )
        ws = WireServers()
        log: list[tuple[str, bytes]] = []
        try:
            done = asyncio.Event()

            def relay() -> tcp.RelayConnection:
                # the relay stores a connection's last objects as it ends
                return tcp.RelayConnection(
                    Spy(log), (pg.host, pg.port), ws.stored.extend, on_end=lambda _c: done.set()
                )

            async def start() -> int:
                server = await tcp.start_relay_server(relay, "127.0.0.1", 0)
                ws.servers.append(server)
                return int(server.sockets[0].getsockname()[1])

            port = ws.call(start())
            seen = _workload(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app")
            ws.call(asyncio.wait_for(done.wait(), 30))
            ws.close()
        except BaseException:
            ws.close()
            raise
    return list(ws.stored), _turns(log), seen


def _replay(
    index: store.Index, sent: list[tuple[bytes, bytes]], order: list[int] | None = None
) -> tuple[list[bytes], int]:
    """The mock's reply to every send after start-up (or to the sends ``order`` names,
    in that order), and how many sends a kept turn answered. The recorded authentication
    exchange is not replayed (its nonces belong to the real server): the mock trusts the
    recorded start-up message instead."""
    conn = get("postgres").mock_connection(index, MockOptions("db", match={"auth": "trust"}))
    assert isinstance(conn, PostgresMockConnection)
    startup = next(d for d, _ in sent if d[4:8] == b"\x00\x03\x00\x00")
    assert b"Z\x00\x00\x00\x05I" in b"".join(
        o.data for o in conn.data_received(startup) if isinstance(o, Reply)
    )
    replies: list[bytes] = []
    kept = [0]
    lookup = turns.lookup

    def counted(
        index: store.Index, statements: dict[str, Any], status: str, data: bytes
    ) -> tuple[list[Output] | None, turns.Pending | None]:
        found = lookup(index, statements, status, data)  # the mock's own, counted
        kept[0] += found[0] is not None
        return found

    turns.lookup = counted
    try:
        for i in range(len(sent)) if order is None else order:
            if i < _first_query(sent):
                replies.append(b"")
                continue
            replies.append(
                b"".join(o.data for o in conn.data_received(sent[i][0]) if isinstance(o, Reply))
            )
    finally:
        turns.lookup = lookup
    return replies, kept[0]


def _first_query(sent: list[tuple[bytes, bytes]]) -> int:
    """The first send after the real server's first ReadyForQuery (start-up done)."""
    return next(i for i, (_, reply) in enumerate(sent) if b"Z\x00\x00\x00\x05" in reply) + 1


def test_kept_turns_answer_the_real_servers_bytes_in_the_same_order(
    session: tuple[list[dict[str, Any]], list[tuple[bytes, bytes]], list[Any]],
) -> None:
    stored, sent, seen = session
    assert "INTRANS" in str(seen) and "22012" in seen  # the workload did what it says
    index = get("postgres").load([("rec.json", i + 2, o) for i, o in enumerate(stored)])
    assert isinstance(index, store.Index)
    queries = [i for i, (data, _) in enumerate(sent) if data[:1] in (b"B", b"P")]
    assert queries[0] >= _first_query(sent)
    assert len(queries) >= 30

    first, kept_first = _replay(index, sent)  # the long way, keeping what it may
    # a lookup asked again with the same answer (the 25 lookups ask few ids) is answered
    # from what its first ask kept, already in the first pass
    assert 0 < kept_first < 27 and index.turns
    kept = dict(index.turns)
    index.reset()  # a new replay iteration: every sequence starts again
    second, kept_second = _replay(index, sent)
    # every read outside the transaction is a kept turn now (25 lookups, the read after
    # the UPDATE, the last read); the transaction's, the NULL's and the error's are not
    assert kept_second >= 27
    assert index.turns == kept  # the second pass kept nothing new

    for i in queries:
        assert first[i] == sent[i][1], f"send {i}: the long way differs from the server"
        assert second[i] == sent[i][1], f"send {i}: the kept turn differs from the server"
    # the lookup of id 3: 9, 9, then 109 after the UPDATE, kept turns included
    threes = [r for r in second if b"\x00\x00\x00\x02n3" in r]  # its note column
    assert [b"\x00\x00\x00\x03109" in r for r in threes] == [False, False, True]


def test_a_kept_answer_is_not_sent_in_another_transaction_status(
    session: tuple[list[dict[str, Any]], list[tuple[bytes, bytes]], list[Any]],
) -> None:
    """The read of id 20, recorded once outside a transaction and kept, asked again
    after a BEGIN: the reply must end in ReadyForQuery 'T', not in the kept 'I'."""
    stored, sent, _ = session
    index = get("postgres").load([("rec.json", i + 2, o) for i, o in enumerate(stored)])
    assert isinstance(index, store.Index)
    queries = [i for i, (data, _) in enumerate(sent) if data[:1] in (b"B", b"P")]
    twenty = next(i for i in queries if b"\x00\x00\x00\x02\x00\x14" in sent[i][0])
    begin = next(i for i in queries if b"BEGIN" in sent[i][0]) + 1  # its Bind/Execute
    assert sent[twenty][1].endswith(b"Z\x00\x00\x00\x05I")
    assert sent[begin][1].endswith(b"Z\x00\x00\x00\x05T")
    _replay(index, sent)  # keeps the read of id 20 (status I)
    index.reset()
    replies, kept = _replay(index, sent, [*range(begin + 1), twenty])
    assert kept >= 20  # the reads before the BEGIN came from kept turns
    assert replies[-1].endswith(b"Z\x00\x00\x00\x05T"), replies[-1][-12:]
    assert replies[-1][:-6] == sent[twenty][1][:-6]  # the same rows, the status of now


def test_turns_kept_in_one_process_answer_in_another_from_its_first_pass(
    session: tuple[list[dict[str, Any]], list[tuple[bytes, bytes]], list[Any]],
) -> None:
    """Worker processes each build their index from the same stored objects; what one
    keeps (``Index.on_keep``) another adopts (``Index.adopt``, the items crossing a
    pickle as they cross the workers' channel): its first pass is then answered from
    kept turns, with the real server's bytes, the nth-call sequence of id 3 included."""
    import pickle

    stored, sent, _ = session
    objects = [("rec.json", i + 2, o) for i, o in enumerate(stored)]
    one, other = (get("postgres").load(objects) for _ in range(2))
    assert isinstance(one, store.Index) and isinstance(other, store.Index)
    shared: list[store.Kept] = []
    one.on_keep = shared.append
    _replay(one, sent)
    assert len(shared) == len(one.turns) >= 20
    other.adopt(pickle.loads(pickle.dumps(shared)))
    replies, kept = _replay(other, sent)
    assert kept >= 27  # as a second pass in the first process: every read outside BEGIN
    queries = [i for i, (data, _) in enumerate(sent) if data[:1] in (b"B", b"P")]
    for i in queries:
        assert replies[i] == sent[i][1], f"send {i}: an adopted turn differs from the server"
    threes = [r for r in replies if b"\x00\x00\x00\x02n3" in r]
    assert [b"\x00\x00\x00\x03109" in r for r in threes] == [False, False, True]
    # an item that names no answer of this index (another load's) is left alone
    before = dict(other.turns)
    key, _n, *rest = shared[0]
    other.adopt([(key, 99, *rest), (("SELECT never", ()), 0, *rest)])
    assert other.turns == before

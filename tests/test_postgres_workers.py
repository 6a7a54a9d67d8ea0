"""A Postgres mock served by worker processes (``workers = 2``): recorded from a real
server, replayed by psycopg and asyncpg through ``WireMock`` (what ``devbox up`` and
``devbox mock`` run), and through ``devbox mock`` as a process for Ctrl-C and a killed
parent. Connections go to the workers in turn, so consecutive connections are answered
by different processes: a sequence must still answer in recorded order."""

from __future__ import annotations

import asyncio
import copy
import gc
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psycopg
import pytest
from conftest import free_port, wait_port
from pg_support import WireServers, running_postgres

from devbox.core.events import Event, MockMiss
from devbox.core.profile import Dependency
from devbox.mock.kinds import WireMock
from devbox.store import SUFFIX
from devbox.wire import files

T = TypeVar("T")
IDS = list(range(5000, 7000))
LOOKUP = "SELECT id, owner FROM accounts WHERE id = $1"
UPSTREAM = "postgresql://devbox@127.0.0.1:5432/app"


@pytest.fixture(scope="module")
def recorded() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Two recordings of a real server: ``main`` (a counter read three times with an
    UPDATE between reads, then 2,000 pooled lookups by asyncpg) and ``later`` (one query
    the first never saw)."""
    with running_postgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as c:
            c.execute(
                "CREATE TABLE counter (n int); INSERT INTO counter VALUES (0);"
                "CREATE TABLE accounts (id int PRIMARY KEY, owner text);"
                "INSERT INTO accounts SELECT i, 'owner' || i"
                f" FROM generate_series({IDS[0]}, {IDS[-1]}) i"
            )
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            url = f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app"
            with psycopg.connect(url, autocommit=True) as c:
                for _ in range(3):
                    c.execute("SELECT n FROM counter")
                    c.execute("UPDATE counter SET n = n + 1")
            assert asyncio.run(_lookups(url, IDS)) == []
            main = _wait_stored(ws, lambda s: _count(s, LOOKUP) >= len(IDS))
            ws.stored.clear()
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("SELECT 'recorded later' AS note")
            later = _wait_stored(ws, lambda s: _count(s, "SELECT 'recorded later' AS note") > 0)
            yield {"main": main, "later": later}
        finally:
            ws.close()


def _count(stored: list[dict[str, Any]], sql: str) -> int:
    return sum(1 for o in stored if o.get("sql") == sql)


def _wait_stored(ws: WireServers, done: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not done(ws.stored):
        time.sleep(0.05)
    assert done(ws.stored)
    return list(ws.stored)


async def _lookups(url: str, ids: list[int]) -> list[str]:
    """Every lookup through an asyncpg pool that replaces its connections every 37
    queries (new connections, new workers, statement names reused); the wrong rows."""
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4, max_queries=37)
    wrong: list[str] = []
    queue = list(ids)

    async def worker() -> None:
        while queue:
            i = queue.pop()
            async with pool.acquire() as conn:
                row = await conn.fetchrow(LOOKUP, i)
                if row is None or (row["id"], row["owner"]) != (i, f"owner{i}"):
                    wrong.append(f"{i}: {row}")

    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(4))), 120)
    finally:
        await pool.close()
    return wrong


def _write(directory: Path, name: str, stored: list[dict[str, Any]]) -> None:
    writer = files.ObjectWriter(directory / f"{name}{SUFFIX}", "postgres", "db")
    for obj in stored:
        writer.append(obj)
    writer.close()


class Served:
    """A ``WireMock`` with worker processes on its own loop thread, as the fleet runs it."""

    def __init__(self, directory: Path, workers: int = 2) -> None:
        self.events: list[Event] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        dep = Dependency(name="db", kind="postgres", upstream=UPSTREAM, workers=workers)
        self.mock = WireMock(dep, directory, on_event=self.events.append)
        self.mock.load()
        self.call(self.mock.start("127.0.0.1", 0))
        self.url = f"postgresql://devbox:any@127.0.0.1:{self.mock.port}/app"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def on_loop(self, fn: Any) -> Any:
        async def run() -> Any:
            return fn()

        return self.call(run())

    def wait_hits(self, n: int) -> int:
        """The mock's hit count once the workers' batches have come in (at most 10 s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.mock.hits < n:
            time.sleep(0.02)
        return self.mock.hits

    def close(self) -> None:
        self.call(self.mock.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def served(tmp_path: Path, recorded: dict[str, list[dict[str, Any]]]) -> Iterator[Served]:
    _write(tmp_path, "recording-1", recorded["main"])
    s = Served(tmp_path)
    try:
        yield s
    finally:
        s.close()


def _counter(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT n FROM counter").fetchone()
    assert row is not None
    return int(row[0])


def test_a_sequence_answers_in_order_across_worker_processes(served: Served) -> None:
    pids = served.mock.worker_pids
    assert len(pids) == 2 and all(Path(f"/proc/{p}").exists() for p in pids)
    # each read on a new connection: the workers take them in turn
    assert [_counter(served.url) for _ in range(4)] == [0, 1, 2, 2]
    assert served.wait_hits(4) == 4
    served.on_loop(served.mock.reset)  # a new replay iteration, in every worker too
    assert [_counter(served.url) for _ in range(3)] == [0, 1, 2]


def test_a_reset_between_iterations_on_open_connections_of_both_workers(
    served: Served,
) -> None:
    """Pooled connections stay open across replay iterations: right after a reset, the
    first reads answer from the start, whichever worker serves them (a worker that
    zeroed the shared counters on its own reset message, arriving after the new
    iteration's first query, answered that query twice)."""
    conns = [psycopg.connect(served.url, autocommit=True) for _ in range(2)]
    try:
        for _ in range(20):
            got = [c.execute("SELECT n FROM counter").fetchone() for c in conns]
            got += [c.execute("SELECT n FROM counter").fetchone() for c in conns]
            assert got == [(0,), (1,), (2,), (2,)]
            served.on_loop(served.mock.reset)
    finally:
        for c in conns:
            c.close()


def test_pooled_lookups_across_workers_get_their_own_rows(served: Served) -> None:
    ids = list(IDS)
    random.Random(3).shuffle(ids)
    assert asyncio.run(_lookups(served.url, ids)) == []
    # every worker's hits reach the mock's statistics and journal (asyncpg's own
    # queries on each new connection are hits too)
    assert served.wait_hits(len(ids) + 1) > len(ids)
    time.sleep(0.2)  # the last batches
    journal = served.on_loop(lambda: served.mock.journal_dict(0, 100_000))
    assert sum(1 for e in journal["entries"] if e["target"] == LOOKUP) == len(ids)
    assert len(journal["entries"]) == served.mock.hits
    assert served.mock.misses == 0


def test_a_worker_batches_long_hits_into_messages_its_channel_carries() -> None:
    """A batch of hits is one message on a worker's channel (a SOCK_SEQPACKET pair): hits
    naming long requests (another kind's, or a future one-line form) must still arrive,
    every one, in order, over a real socket pair."""
    from devbox.mock import worker_process as wp
    from devbox.wire.contract import Hit, Miss

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    wp.buffers(ours)
    wp.buffers(theirs)
    worker = wp.Worker(theirs)
    got: list[tuple[Any, ...]] = []
    reader = threading.Thread(target=lambda: _drain(ours, got), daemon=True)
    reader.start()
    try:
        for i in range(300):
            worker.output(None, Hit(f"{i:03d}" + "x" * 20_000, "1.1"))
        worker.output(None, Miss(b"", "y" * 100_000, "z" * 100_000, None))
        worker.flush()
    finally:
        theirs.close()
        reader.join(10)
        ours.close()
    assert [e[1][:3] for e in got[:300]] == [f"{i:03d}" for i in range(300)]
    assert all(len(e[1]) == 20_003 for e in got[:300])
    assert got[300][0] == "m" and len(got[300][1]) == wp.FIELD + 1  # cut, marked with …
    assert len(got) == 301


def test_what_a_worker_keeps_leaves_the_cyclic_collector() -> None:
    """Kept turns live as long as the index; a full collection that walks them again and
    again cost up to half a busy worker's CPU. Once a batch of them is passed on, they
    (and what else exists then) are frozen; ``unfreeze`` at the next load lets the old
    index go."""
    from devbox.mock import worker_process as wp

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    wp.buffers(ours)
    wp.buffers(theirs)
    worker = wp.Worker(theirs)
    kept_turn = ["a kept turn's objects"]  # any tracked object that exists by then
    try:
        assert any(o is kept_turn for o in gc.get_objects())
        worker.flush()  # nothing kept: nothing frozen
        assert any(o is kept_turn for o in gc.get_objects())
        worker.kept.append(("key", "turn"))
        worker.flush()
        assert not any(o is kept_turn for o in gc.get_objects())  # in the permanent generation
        message, _fds = wp.receive(ours)
        assert message is not None and message[0] == "kept"
    finally:
        gc.unfreeze()
        theirs.close()
        ours.close()


def _drain(chan: socket.socket, got: list[tuple[Any, ...]]) -> None:
    from devbox.mock.worker_process import receive

    while True:
        message, _fds = receive(chan)
        if message is None:
            return
        assert message[0] in ("hits", "events"), message
        if message[0] == "hits":
            got.extend(("h", *hit) for hit in message[1])
        else:
            got.extend(message[1])


def test_a_miss_in_a_worker_reaches_the_mock(served: Served) -> None:
    with psycopg.connect(served.url, autocommit=True) as c:
        with pytest.raises(psycopg.Error) as caught:
            c.execute("SELECT owner FROM accounts WHERE owner = %s", ["nobody"])
    assert "no recorded answer" in str(caught.value)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not served.mock.misses:
        time.sleep(0.02)
    assert served.mock.misses == 1
    [miss] = served.mock.miss_log
    assert "owner = $1" in miss.target and "nearest recorded" in miss.explanation
    assert [e for e in served.events if isinstance(e, MockMiss)]


def test_a_reload_reaches_the_workers(
    served: Served, tmp_path: Path, recorded: dict[str, list[dict[str, Any]]]
) -> None:
    _write(tmp_path, "recording-2", recorded["later"])
    assert served.mock.changed_on_disk()
    served.on_loop(served.mock.load)
    for _ in range(2):  # one connection per worker
        with psycopg.connect(served.url, autocommit=True) as c:
            assert c.execute("SELECT 'recorded later' AS note").fetchone() == ("recorded later",)
    assert _counter(served.url) == 0  # the reload started the sequences again


def test_a_turn_kept_from_an_index_loaded_before_never_reaches_the_other_worker(
    served: Served, tmp_path: Path, recorded: dict[str, list[dict[str, Any]]]
) -> None:
    """Workers pass the turns they keep to each other. A connection opened before a
    reload keeps answering from the index it started with; a turn it keeps then must
    not reach the other worker's new index, where the same query's recorded answer
    changed: the next connection (the other worker) answers from the new recording."""
    renamed = copy.deepcopy(recorded["main"])
    for obj in renamed:
        if obj.get("sql") == LOOKUP and obj["params"][0]["value"] in (5000, "5000"):
            obj["results"][0]["rows"] = [[5000, "renamed5000"]]
    assert renamed != recorded["main"]

    async def owner(conn: asyncpg.Connection) -> str:
        # fetch, not fetchrow: an Execute of every row (fetchrow's limit of 1 leaves a
        # portal open, a turn never kept)
        [row] = await conn.fetch(LOOKUP, 5000)
        return str(row["owner"])

    async def run() -> list[str]:
        old = await asyncpg.connect(served.url)  # the first worker's connection
        try:
            (tmp_path / f"recording-1{SUFFIX}").unlink()  # the writer appends
            _write(tmp_path, "recording-1", renamed)
            assert served.mock.changed_on_disk()
            served.on_loop(served.mock.load)
            # the workers have read the new load (a few ms: 2,000 objects), so the old
            # index's turn is kept while the worker's current load is the new one
            await asyncio.sleep(1.0)
            got = [await owner(old)]  # its old index: kept there, not passed on
            await asyncio.sleep(0.5)  # every batch sent (a worker sends each 50 ms)
            new = await asyncpg.connect(served.url)  # the second worker's
            try:
                got += [await owner(new), await owner(new)]
            finally:
                await new.close()
        finally:
            await old.close()
        return got

    assert asyncio.run(run()) == ["owner5000", "renamed5000", "renamed5000"]
    assert served.mock.misses == 0


def test_passthrough_connections_stay_in_the_mock_itself(served: Served) -> None:
    """A mode that reaches the real server is served by the mock's own process (what it
    stores is written in one place); the workers keep replay's."""
    served.on_loop(lambda: served.mock.set_mode("passthrough"))
    with pytest.raises(psycopg.OperationalError):  # nothing listens upstream here
        psycopg.connect(served.url, autocommit=True, connect_timeout=5).execute("SELECT 7")
    served.on_loop(lambda: served.mock.set_mode("replay"))
    assert _counter(served.url) == 0


# ---------------------------------------------------------------- devbox mock, as a process


def _workers_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and b"devbox.mock.worker_process" in cmdline:
            out.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _devbox_mock(
    tmp_path: Path, recorded: dict[str, list[dict[str, Any]]]
) -> tuple[subprocess.Popen[str], int, list[int]]:
    _write(tmp_path / "mocks" / "shop" / "db", "recording-1", recorded["main"])
    (tmp_path / "profiles").mkdir()
    port = free_port()
    (tmp_path / "profiles" / "shop.toml").write_text(
        'name = "shop"\n[service]\nport = 8000\ncommand = ["true"]\n'
        f'[[dependency]]\nname = "db"\nkind = "postgres"\nport = {port}\nworkers = 2\n'
        f'upstream = "{UPSTREAM}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "devbox", "mock", "shop"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    wait_port(port, 30)
    # the port is bound before the workers start; Ctrl-C before devbox says it serves
    # is an interrupted start (exit 130), so wait for that line
    said: list[str] = []

    def read_until_serving() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            said.append(line)
            if "Ctrl-C to stop" in line:
                return

    reader = threading.Thread(target=read_until_serving, daemon=True)
    reader.start()
    reader.join(30)
    assert said and "Ctrl-C to stop" in said[-1], said
    workers = _workers_of(proc.pid)
    assert len(workers) == 2, proc
    assert _counter(f"postgresql://devbox:x@127.0.0.1:{port}/app") == 0
    return proc, port, workers


def test_devbox_mock_with_workers_ends_them_on_ctrl_c(
    tmp_path: Path, recorded: dict[str, list[dict[str, Any]]]
) -> None:
    proc, _port, workers = _devbox_mock(tmp_path, recorded)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not [p for p in workers if _running(p)]


def test_a_killed_devbox_mock_leaves_no_worker_behind(
    tmp_path: Path, recorded: dict[str, list[dict[str, Any]]]
) -> None:
    proc, _port, workers = _devbox_mock(tmp_path, recorded)
    proc.kill()
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(p) for p in workers):
        time.sleep(0.05)
    assert not [p for p in workers if _running(p)]


def test_workers_on_a_kind_that_serves_from_one_process_is_a_profile_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "shop.toml").write_text(
        'name = "shop"\n[service]\nport = 8000\ncommand = ["true"]\n'
        '[[dependency]]\nname = "cache"\nkind = "redis"\nworkers = 2\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "devbox", "validate", "shop"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "shop.toml:8: dependency[0].workers: a redis mock serves from one process" in (
        done.stderr
    ), done.stderr
    assert "Traceback" not in done.stderr


def test_a_busy_port_fails_before_any_worker_starts(
    tmp_path: Path, recorded: dict[str, list[dict[str, Any]]]
) -> None:
    _write(tmp_path, "recording-1", recorded["main"])
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        dep = Dependency(name="db", kind="postgres", upstream=UPSTREAM, workers=2)
        mock = WireMock(dep, tmp_path)
        mock.load()
        with pytest.raises(OSError):
            asyncio.run(mock.start("127.0.0.1", busy.getsockname()[1]))
        assert mock.worker_pids == [] and _workers_of(os.getpid()) == []
    finally:
        busy.close()

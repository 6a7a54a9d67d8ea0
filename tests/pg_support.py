"""A real PostgreSQL server for tests: Debian's binaries, a temporary data directory, a
free port on 127.0.0.1, run as an unprivileged user when the tests run as root (initdb
refuses root), stopped by its PID."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from conftest import free_port

T = TypeVar("T")

PG_USER = "devbox-pg"
PASSWORD = "s3cret-pw"


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/setup (apt postgresql)")
    return Path(found[-1]).parent


def _os_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
        )
    return PG_USER


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, *, password: bool = True) -> str:
        pw = f":{self.password}" if password else ""
        return f"postgresql://{self.user}{pw}@{self.host}:{self.port}/{self.database}"


@contextlib.contextmanager
def running_postgres(auth: str = "scram-sha-256") -> Iterator[PgServer]:
    bindir = pg_bin()
    user = _os_user()
    root = Path(tempfile.mkdtemp(prefix="devbox-pg-"))
    data, pwfile = root / "data", root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if user is not None:
        info = pwd.getpwnam(user)
        for p in (root, pwfile):
            os.chown(p, info.pw_uid, info.pw_gid)
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "devbox",
                f"--pwfile={pwfile}",
                f"--auth-host={auth}",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
        for _ in range(5):
            port = free_port()
            log = open(root / "log", "ab")
            proc = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(root),
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=log,
                user=user,
            )
            log.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                time.sleep(0.05)
            else:
                continue  # exited (port taken by someone else): try another port
            if proc.poll() is None:
                break
        else:
            raise RuntimeError("postgres did not start: " + (root / "log").read_text()[-2000:])
        subprocess.run(
            [
                str(bindir.parent / "bin" / "createdb"),
                "-h",
                str(root),
                "-p",
                str(port),
                "-U",
                "devbox",
                "app",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
        yield PgServer("127.0.0.1", port, "devbox", PASSWORD, "app")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()  # smart shutdown of this postmaster only (by its PID)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


class WireServers:
    """An event loop in a thread hosting devbox's real relay and mock servers (so blocking
    clients such as psycopg and psql can use them from the test thread)."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[object] = []
        self.stored: list[dict[str, object]] = []
        self.outputs: list[object] = []
        self.tasks: set[object] = set()  # strong references: the loop keeps only weak ones
        self.relays: set[Any] = set()  # open relayed connections, ended at close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def relay(
        self,
        upstream: tuple[str, int],
        sink: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> int:
        """devbox record's relay to ``upstream``; what it stores goes to ``sink`` (default:
        ``self.stored``)."""

        from devbox.wire import tcp
        from devbox.wire.registry import get

        kind = get("postgres")

        def relay() -> tcp.RelayConnection:  # devbox record's relay, as WireRecorder makes it
            conn = tcp.RelayConnection(
                kind.recorder_connection(),
                upstream,
                sink or self.stored.extend,
                on_end=self.relays.discard,
            )
            self.relays.add(conn)
            return conn

        async def start() -> int:
            server = await tcp.start_relay_server(relay, "127.0.0.1", 0)
            self.servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return self.call(start())

    def mock(
        self,
        stored: list[dict[str, object]],
        redact: Callable[[str, str], str] | None = None,
        **match: object,
    ) -> int:
        from devbox.wire.registry import get

        index = get("postgres").load([("rec.json", i + 2, obj) for i, obj in enumerate(stored)])
        return self.serve(index, redact, **match)

    def serve(
        self, index: Any, redact: Callable[[str, str], str] | None = None, **match: object
    ) -> int:
        """The mock of ``index`` (kept by the caller: to reset it, to look at its caches);
        its port. ``redact``: the profile's value redaction (the default rules')."""
        from devbox.wire import tcp
        from devbox.wire.contract import MockOptions
        from devbox.wire.registry import get

        kind = get("postgres")

        async def start() -> int:  # the loop devbox mock serves wire kinds with
            server = await tcp.start_mock_server(
                lambda: kind.mock_connection(
                    index, MockOptions("db", match=match, redact_value=redact)
                ),
                on_output=lambda _conn, out: self.outputs.append(out),
            )
            self.servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return self.call(start())

    def stored_once(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """What the relay stored, once ``done`` says it is all there (the relay stores a
        connection's last objects when it sees the close), or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(self.stored):
            time.sleep(0.05)
        return list(self.stored)

    def close(self) -> None:
        import asyncio

        async def stop() -> None:
            for s in self.servers:
                s.close()  # type: ignore[attr-defined]
            for conn in list(self.relays):
                conn.end()
            # connections still open (a client that did not close): end them here
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


@contextlib.contextmanager
def relayed(setup: str) -> Iterator[tuple[PgServer, WireServers, str]]:
    """A throwaway server with ``setup`` run on it and devbox's recording relay in front:
    (the server, the relay's ``WireServers``, a client URL through the relay)."""
    import psycopg

    with running_postgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as c:
            c.execute(setup)
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            yield pg, ws, f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app"
        finally:
            ws.close()


@contextlib.contextmanager
def mocked(stored: list[dict[str, Any]]) -> Iterator[str]:
    """A mock serving ``stored`` (no server behind it): a client URL to it (any password)."""
    ws = WireServers()
    try:
        yield f"postgresql://devbox:whatever@127.0.0.1:{ws.mock(stored)}/app"
    finally:
        ws.close()


def as_written(
    stored: list[dict[str, Any]], redact: Callable[[str, str], str] | None = None
) -> list[dict[str, Any]]:
    """What the relay stored, redacted as ``devbox record`` writes it (``redact``: the
    profile's value redaction; default: the default rules)."""
    from devbox.wire.files import value_redactor
    from devbox.wire.registry import get

    kind, red = get("postgres"), redact or value_redactor(None)
    return [kind.redact(o, red) if o.get("type") == "query" else o for o in stored]


def against_mock(
    stored: list[dict[str, Any]], flow: Callable[[str], T], **mock: Any
) -> tuple[T, list[Any]]:
    """``flow(url)`` run against a mock of ``stored`` (any password): what it returned and
    the mock's outputs (hits and misses)."""
    ws = WireServers()
    try:
        port = ws.mock(stored, **mock)
        return flow(f"postgresql://devbox:whatever@127.0.0.1:{port}/app"), ws.outputs
    finally:
        ws.close()


def psql(url: str, sql: str) -> str:
    """What ``psql -A -c sql`` prints (and its errors), as a user would read it."""
    done = subprocess.run(
        ["psql", url, "-X", "-A", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        check=False,
    )
    return done.stdout + done.stderr


def record_each(
    ws: WireServers,
    pg: PgServer,
    clients: dict[str, Callable[[str], Any]],
    done: Callable[[list[dict[str, Any]]], bool],
) -> dict[str, tuple[Any, list[dict[str, Any]]]]:
    """Each client through a relay of its own: (what the server gave it, its recording),
    once ``done`` says a recording is whole (a relay stores a connection's last objects
    when it sees the close)."""
    sinks: dict[str, list[dict[str, Any]]] = {}
    live: dict[str, Any] = {}
    for name, client in clients.items():
        sink: list[dict[str, Any]] = []
        sinks[name] = sink
        port = ws.relay((pg.host, pg.port), sink.extend)
        live[name] = client(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app")
    ws.stored_once(lambda _stored: all(done(s) for s in sinks.values()))
    return {name: (live[name], list(sinks[name])) for name in clients}


def simple_replays(
    stored: list[dict[str, Any]], sql: str, psycopg_client: Callable[[str, str], Any]
) -> tuple[Any, str]:
    """What ``psycopg_client`` and psql get when they ask ``sql`` as a simple query of a
    mock serving ``stored``, each from a fresh mock (its nth-call counters at the start)."""
    with mocked(stored) as url:
        got_psycopg = psycopg_client(url, sql)
    with mocked(stored) as url:
        return got_psycopg, psql(url, sql)

"""Helpers for the Redis tests: a real redis-server of our own (free port, temp dir,
stopped by PID), an in-process recording relay and mock on one background loop."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from conftest import free_port, stop_process, wait_port
from loop_support import Loop

from devbox.wire import tcp
from devbox.wire.contract import Miss, MockOptions, Output
from devbox.wire.redis import KIND

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / ".devbox-node" / "node_modules"


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.proc)


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    """A throwaway redis-server: no persistence, 127.0.0.1 only, stopped by its PID."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is missing: scripts/setup installs it"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--daemonize",
            "no",
            "--logfile",
            str(directory / "log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, proc, directory)
    try:
        wait_port(port)
        yield server
    finally:
        server.stop()


@dataclass
class Recording:
    """A relay in front of a real server; ``stored`` fills as connections talk."""

    loop: Loop
    upstream: int
    stored: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None
    conns: int = 0

    async def _start(self) -> None:
        def relay() -> tcp.RelayConnection:  # devbox record's relay, as WireRecorder makes it
            self.conns += 1
            n = self.conns

            def sink(objs: list[dict[str, Any]]) -> None:
                self.stored.extend({"connection": n, **o} for o in objs)

            return tcp.RelayConnection(
                KIND.recorder_connection(), ("127.0.0.1", self.upstream), sink
            )

        self.server = await tcp.start_relay_server(relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def start(self) -> Recording:
        self.loop.run(self._start())
        return self

    def close(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()

        self.loop.run(stop())


@dataclass
class Mock:
    loop: Loop
    stored: list[dict[str, Any]]
    options: MockOptions = field(default_factory=lambda: MockOptions("cache"))
    upstream: int | None = None
    outputs: list[Output] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    @property
    def misses(self) -> list[Miss]:
        return [o for o in self.outputs if isinstance(o, Miss)]

    def start(self) -> Mock:
        index = KIND.load([("rec.json", i, o) for i, o in enumerate(self.stored)])

        async def start() -> None:
            # the loop devbox's mock fleet serves non-HTTP kinds with
            self.server = await tcp.start_mock_server(
                lambda: KIND.mock_connection(index, self.options),
                upstream=("127.0.0.1", self.upstream) if self.upstream else None,
                on_output=lambda _conn, out: self.outputs.append(out),
            )
            self.port = self.server.sockets[0].getsockname()[1]

        self.loop.run(start())
        return self

    def close(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()

        self.loop.run(stop())


def record_then_mock(
    tmp_path: Path,
    loop: Loop,
    workload: Callable[[int], Any],
    prepare: Callable[[int], None] | None = None,
) -> tuple[Any, Any, Recording, Mock]:
    """(what the client got through the relay, what it got from the mock, both).
    ``prepare`` talks to the real server directly (not recorded) before the workload."""
    with redis_server(tmp_path / "redis") as server:
        if prepare is not None:
            prepare(server.port)
        rec = Recording(loop, server.port).start()
        recorded = workload(rec.port)
        rec.close()
    m = Mock(loop, rec.stored).start()
    replayed = workload(m.port)
    m.close()
    return recorded, replayed, rec, m


def outcome(call: Callable[[], Any]) -> Any:
    """A reply, or the exception a client raised for it (type and text: comparable)."""
    import redis

    try:
        return call()
    except redis.RedisError as exc:
        return (type(exc).__name__, str(exc))


def raw_conn(port: int, protocol: int = 2) -> Any:
    """One raw redis-py connection: commands are sent exactly as given, replies read one
    by one (redis-py's low-level API is untyped: reached through ``Any``)."""
    import redis
    from redis._parsers import _RESP2Parser, _RESP3Parser

    parser = _RESP3Parser if protocol == 3 else _RESP2Parser
    conn: Any = redis.Connection(
        port=port, protocol=protocol, parser_class=parser, socket_timeout=10
    )  # type: ignore[no-untyped-call]
    conn.connect()
    return conn


def ask(conn: Any, *args: Any) -> Any:
    conn.send_command(*args)
    return outcome(conn.read_response)

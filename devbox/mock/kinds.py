"""The mock of one non-HTTP dependency (``kind = "redis"``, ...), served by the generic
loop of ``devbox.wire.tcp`` with the connection objects of its kind.

It reports like the HTTP mock does: ``MockStats`` and ``MockMiss`` events, and a miss
log the fleet's ``misses()`` returns. A binary protocol has no in-band admin API, so
the fleet API and the events are where misses show.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devbox.core.events import Event, MockMiss, MockStats
from devbox.core.profile import Dependency, RedactRules
from devbox.errors import EngineError
from devbox.mock.server import MissRecord
from devbox.mock.workers import WorkerPool
from devbox.store import SUFFIX, new_stamp, recording_files
from devbox.wire import files, registry, tcp
from devbox.wire.contract import (
    Forward,
    Hit,
    Index,
    Miss,
    MockConnection,
    MockOptions,
    Output,
    Reply,
)

_MISS_LOG = 500
_JOURNAL = 10_000


def _upstream_address(kind: Any, upstream: str | None) -> tuple[str, int] | None:
    if not upstream:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(upstream)
    return (parts.hostname or "127.0.0.1", parts.port or int(kind.default_port))


class WireMock:
    """Serve one dependency of a wire kind from its recordings directory."""

    def __init__(
        self,
        dependency: Dependency,
        recordings: Path,
        *,
        redact: RedactRules | None = None,
        on_event: Callable[[Event], None] | None = None,
        root: Path | None = None,
    ) -> None:
        self.dependency = dependency
        self.name = dependency.name
        self.kind = registry.for_dependency(dependency, root or Path.cwd())
        self.recordings = recordings
        self.redact_value = files.value_redactor(redact)
        self.redact_rules = redact
        self.emit = on_event or (lambda e: None)
        self.mode = _mode(dependency.on_miss)
        self.index: Index = self.kind.load([])
        self.port = 0
        self.hits = self.misses = 0
        self.last_miss = ""
        self.miss_log: deque[MissRecord] = deque(maxlen=_MISS_LOG)
        # every matched or missed request, numbered: (seq, request, exchange id or None);
        # ``seq`` numbers hits and misses alike, as the HTTP mock's journal does
        self.journal: deque[tuple[int, str, str | None]] = deque(maxlen=_JOURNAL)
        self.seq = 0
        self._server: asyncio.Server | None = None
        self._mtimes: dict[str, float] = {}
        self._writer: files.ObjectWriter | None = None
        self._connections = 0
        # ``workers`` > 1: the processes that serve replay's connections, the listening
        # socket this mock accepts on for them, the stored objects they load
        self._pool: WorkerPool | None = None
        self._listener: socket.socket | None = None
        self._stored: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ loading

    def load(self) -> int:
        stored = files.read_stored(self.recordings, self.kind.name)
        self.index = self.kind.load(stored)
        self._stored = list(stored)
        if self._pool is not None:
            self._share()
        self._mtimes = self._snapshot()
        return len(self.index)

    def _share(self) -> None:
        """The workers load what the index was built from; every process, this one
        included, counts nth calls in one set of shared counters."""
        assert self._pool is not None
        index: Any = self.index
        index.sequences = self._pool.load(self._stored, index.sequence_keys())

    async def reload(self) -> int:
        return self.load()

    def _snapshot(self) -> dict[str, float]:
        out = {}
        for p in recording_files(self.recordings):
            with contextlib.suppress(OSError):
                out[str(p)] = p.stat().st_mtime
        return out

    def changed_on_disk(self) -> bool:
        return self._snapshot() != self._mtimes

    def options(self) -> MockOptions:
        d = self.dependency
        return MockOptions(
            name=d.name,
            on_miss="fail" if self.mode == "replay" else self.mode,
            timing=d.timing,
            match={"ignore_body": d.match.ignore_body} if d.match.ignore_body else {},
            redact_value=self.redact_value,
        )

    # ------------------------------------------------------------ serving

    async def start(self, host: str, port: int) -> None:
        upstream = _upstream_address(self.kind, self.dependency.upstream)
        numbers: weakref.WeakKeyDictionary[MockConnection, int] = weakref.WeakKeyDictionary()

        def new_connection() -> MockConnection:
            # the index of the moment: a reload serves new connections from the new one
            self._connections += 1
            conn = self.kind.mock_connection(self.index, self.options())
            numbers[conn] = self._connections
            return conn

        def on_output(conn: MockConnection, out: Output) -> None:
            if out.__class__ is Hit:  # the hot path: one per matched request
                self._hit(out.request, out.exchange_id or "hit")
                return
            if out.__class__ is not Reply:
                self._count(out)
            if self.mode == "record" and not isinstance(out, Forward):
                take = getattr(conn, "take_stored", None)
                done = take() if take is not None else None
                if done:
                    self._store(numbers.get(conn, 0), done)

        tls = None
        if registry.speaks_tls(self.kind, self.dependency.upstream):
            # the service speaks TLS to it (a leaf of devbox's CA for the name it asks,
            # ALPN h2 only); h2c on the same port still works
            from devbox.wire.ca import cert_store

            tls = cert_store().sni_context(alpn=("h2",))
        if self.dependency.workers > 1 and tls is None:
            await self._start_workers(host, port, new_connection, upstream, on_output)
            return
        self._server = await tcp.start_mock_server(
            new_connection,
            host=host,
            port=port,
            upstream=upstream,
            on_output=on_output,
            tls=tls,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _start_workers(
        self,
        host: str,
        port: int,
        new_connection: Callable[[], MockConnection],
        upstream: tuple[str, int] | None,
        on_output: Callable[[MockConnection, Output], None],
    ) -> None:
        """Accept here, serve replay's connections in ``workers`` processes (and the
        modes that reach the real server here, so what they store stays in one place)."""
        # bound first: a busy port fails before any process is started
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=1024)
        listener.setblocking(False)
        o = self.options()
        fields = {"name": o.name, "on_miss": "fail", "timing": o.timing, "match": dict(o.match)}
        pool = WorkerPool(
            self.dependency.workers,
            (self.kind.name, fields, self.redact_rules),
            self._events,
            self._worker_hits,
        )
        try:
            await pool.start()
        except BaseException:
            listener.close()
            raise
        self._pool = pool
        self._share()
        loop = asyncio.get_running_loop()
        self._listener = listener
        self.port = int(listener.getsockname()[1])

        def accept() -> None:
            for _ in range(64):
                try:
                    sock, _addr = listener.accept()
                except OSError:  # none left (or out of descriptors: the next wakeup)
                    return
                if self.mode == "replay" and pool.hand(sock):
                    sock.close()  # the worker has its own descriptor now
                    continue
                sock.setblocking(False)
                task = loop.create_task(
                    tcp.serve_accepted(
                        sock, new_connection(), upstream=upstream, on_output=on_output
                    )
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        loop.add_reader(listener.fileno(), accept)

    def _hit(self, request: str, exchange_id: str) -> None:
        self.hits += 1
        self.seq = seq = self.seq + 1
        self.journal.append((seq, request, exchange_id))

    def _worker_hits(self, hits: list[tuple[str, str]]) -> None:
        """A worker's hits, (request, exchange id) each: counted and journaled as
        ``_hit`` does, in one call (a busy pool sends a hundred thousand a second)."""
        n = len(hits)
        if not n:
            return
        seq = self.seq
        self.hits += n
        self.seq = seq + n
        self.journal.extend(zip(range(seq + 1, seq + n + 1), *zip(*hits, strict=True), strict=True))

    def _events(self, batch: list[tuple[Any, ...]]) -> None:
        """A worker's misses, counted as this process counts its own."""
        for _m, request, explanation, nearest in batch:
            self._count(Miss(b"", request, explanation, nearest))

    @property
    def worker_pids(self) -> list[int]:
        return self._pool.pids if self._pool is not None else []

    def _count(self, out: Output) -> None:
        if isinstance(out, Hit):
            self.hits += 1
        elif isinstance(out, Miss):
            self.misses += 1
            self.last_miss = out.request
            self.seq += 1
            self.journal.append((self.seq, out.request, None))
            explanation = out.explanation
            if out.nearest and out.nearest not in explanation:
                explanation += f"; nearest recorded: {out.nearest}"
            self.miss_log.append(
                MissRecord(
                    seq=self.seq,
                    at=time.time(),
                    method=self.kind.name.upper(),
                    target=out.request,
                    explanation=explanation,
                    hint="record it with `devbox record`, or set on_miss",
                    candidates=(),
                    action="failed",
                )
            )
            self.emit(
                MockMiss(
                    dependency=self.name,
                    method=self.kind.name.upper(),
                    target=out.request,
                    explanation=out.explanation,
                )
            )
        elif isinstance(out, Forward):
            self.misses += 1

    def _store(self, connection: int, stored: list[dict[str, Any]]) -> None:
        """Record mode: what passed through joins the recordings (redacted first)."""
        if self._writer is None:
            path = self.recordings / f"recording-{new_stamp()}-live{SUFFIX}"
            self._writer = files.ObjectWriter(path, self.kind.name, self.name)
        for obj in stored:
            clean = self.kind.redact({"connection": connection, **obj}, self.redact_value)
            self._writer.append(clean)
        self._mtimes = self._snapshot()  # our own appends are not a reason to reload

    async def close(self) -> None:
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------ controls

    def sweep(self, now: float) -> None:
        """Connection timeouts are the protocol's business (clients keep pools open)."""

    def set_mode(self, mode: str) -> None:
        if mode not in ("replay", "passthrough", "record", "fail"):
            raise EngineError(f"unknown mock mode {mode!r}")
        self.mode = _mode(mode)

    def reset(self) -> None:
        reset = getattr(self.index, "reset", None)
        if callable(reset):
            reset()
        if self._pool is not None:
            self._pool.reset()

    def journal_dict(self, after: int, limit: int) -> dict[str, Any]:
        """The journal as the HTTP mock's (``method`` is the kind's name, ``target`` the
        request as the mock describes it, ``matched`` the recorded exchange's id)."""
        method = self.kind.name.upper()
        entries: list[dict[str, Any]] = []
        last = after
        for seq, request, matched in self.journal:
            if seq <= after:
                continue
            if len(entries) >= max(1, limit):
                break
            entries.append(
                {
                    "seq": seq,
                    "method": method,
                    "target": request,
                    "body": "",
                    "matched": matched,
                    "status": None,
                }
            )
            last = seq
        return {"dependency": self.name, "next": last, "entries": entries}

    def mock_stats(self) -> MockStats:
        return MockStats(
            dependency=self.name,
            mode=self.mode,
            port=self.port,
            hits=self.hits,
            misses=self.misses,
            last_miss=self.last_miss,
        )

    def service_url(self, host: str) -> str:
        return self.kind.service_url(self.dependency.upstream or "", host, self.port)


def _mode(on_miss: str) -> str:
    return "replay" if on_miss == "fail" else on_miss

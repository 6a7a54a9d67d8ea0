"""All mocks of a profile, served from one background thread running one event loop.

The calling thread (the engine, the CLI, a test) stays free: ``start`` returns
the bound ports, every other method is safe to call from any thread and waits
for the loop where it must. The loop also runs the housekeeping: the timeout
sweep, the cheap mtime poll that hot-reloads changed recordings, and the
periodic ``MockStats`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from devbox.core.events import Event, Log, MockStats, Problem, safe_emit
from devbox.core.profile import Profile
from devbox.errors import DevboxError, EngineError, NotFoundError, UsageError
from devbox.mock.kinds import WireMock
from devbox.mock.server import MODES, Limits, MissRecord, MockServer, MockSpec
from devbox.wire import registry
from devbox.wire.admin_token import ensure_token
from devbox.wire.loops import new_event_loop

T = TypeVar("T")

STATS_INTERVAL_S = 0.5


def specs_for(profile: Profile, only: Sequence[str] | None = None) -> list[MockSpec]:
    """One spec per dependency its kind has served by ``MockServer`` (``http_edges``):
    recordings from the profile's layout, its redaction."""
    if only:
        for name in only:
            profile.dependency(name)  # raises NotFoundError naming the known ones
    return [
        MockSpec(
            dependency=d,
            recordings=profile.recordings_dir(d.name),
            redact=profile.redact,
            link_header=profile.record.correlation_header,
        )
        for d in profile.dependencies
        if registry.capabilities(d.kind).http_edges and (not only or d.name in only)
    ]


def env_name(dependency: str, env: str | None) -> str:
    return env or dependency.upper().replace("-", "_") + "_URL"


def url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class MockFleet:
    """One mock server per dependency of a profile.

    ``ports`` overrides the profile's ports per dependency name (0 or None: a
    free port). ``on_event`` receives ``MockStats``, ``MockMiss``, ``Problem`` and
    ``Log`` events from the mocks' thread.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        on_event: Callable[[Event], None] | None = None,
        host: str = "127.0.0.1",
        ports: Mapping[str, int | None] | None = None,
        only: Sequence[str] | None = None,
        limits: Limits | None = None,
        poll_interval_s: float = 1.0,
        parser: str = "auto",
        admin_token: str | None = None,
    ) -> None:
        profile_ports = {d.name: d.port for d in profile.dependencies}
        merged = {**profile_ports, **(ports or {})}
        self._setup(
            specs_for(profile, only),
            on_event=on_event,
            host=host,
            ports=merged,
            limits=limits,
            poll_interval_s=poll_interval_s,
            parser=parser,
            # the project's token: devbox's CLI, engine and dashboard read the same file
            admin_token=admin_token or ensure_token(profile.root),
        )
        # every other kind (redis, postgres, grpc): the generic loop with its connections
        self.wire: dict[str, WireMock] = {
            d.name: WireMock(
                d,
                profile.recordings_dir(d.name),
                redact=profile.redact,
                on_event=self._emit,
                root=profile.root,
            )
            for d in profile.dependencies
            if not registry.capabilities(d.kind).http_edges and (not only or d.name in only)
        }

    @classmethod
    def from_specs(
        cls,
        specs: Sequence[MockSpec],
        *,
        on_event: Callable[[Event], None] | None = None,
        host: str = "127.0.0.1",
        ports: Mapping[str, int | None] | None = None,
        limits: Limits | None = None,
        poll_interval_s: float = 1.0,
        parser: str = "auto",
        admin_token: str | None = None,
    ) -> MockFleet:
        """A fleet without a profile: ``devbox mock --har`` and tests. Without
        ``admin_token`` the admin API is read-only."""
        fleet = cls.__new__(cls)
        fleet._setup(
            specs,
            on_event=on_event,
            host=host,
            ports={**{s.dependency.name: s.dependency.port for s in specs}, **(ports or {})},
            limits=limits,
            poll_interval_s=poll_interval_s,
            parser=parser,
            admin_token=admin_token,
        )
        return fleet

    def _setup(
        self,
        specs: Sequence[MockSpec],
        *,
        on_event: Callable[[Event], None] | None,
        host: str,
        ports: Mapping[str, int | None],
        limits: Limits | None,
        poll_interval_s: float,
        parser: str,
        admin_token: str | None = None,
    ) -> None:
        self.host = host
        self.on_event = on_event
        self.poll_interval_s = poll_interval_s
        self._ports = dict(ports)
        self.servers: dict[str, MockServer] = {
            s.dependency.name: MockServer(
                s, limits=limits, on_event=self._emit, parser=parser, admin_token=admin_token
            )
            for s in specs
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._last_stats: dict[str, MockStats] = {}
        self._started = False
        self.wire = {}

    def _all(self) -> list[MockServer | WireMock]:
        """Every mock, HTTP and the other kinds."""
        return [*self.servers.values(), *self.wire.values()]

    # ------------------------------------------------------------ lifecycle

    def start(self) -> dict[str, int]:
        """Load the recordings, bind every mock; dependency name -> bound port.

        Raises RecordingError for an unreadable recording, EngineError for a busy port.
        """
        if self._started:
            return self.ports()
        for server in self._all():
            server.load()
        loop = new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=run, name="devbox-mocks", daemon=True)
        self._thread.start()
        ready.wait(10)
        try:
            self._run(self._start_all(), timeout=30)
        except BaseException:
            self._shutdown()
            raise
        self._started = True
        return self.ports()

    async def _start_all(self) -> None:
        started: list[MockServer | WireMock] = []
        try:
            for server in self._all():
                name = server.name
                port = self._ports.get(name) or 0
                try:
                    await server.start(self.host, port)
                except OSError as exc:
                    raise EngineError(
                        f"mock {name}: cannot listen on {self.host}:{port}: {exc.strerror or exc}",
                        hint="another process uses this port: stop it, or give the "
                        "dependency another port",
                    ) from None
                started.append(server)
        except BaseException:
            for s in started:
                await s.close()
            raise
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep())
        for server in self._all():
            stats = server.mock_stats()
            self._last_stats[server.name] = stats
            self._emit(stats)

    async def _housekeep(self) -> None:
        loop = asyncio.get_running_loop()
        limits = [s.limits for s in self.servers.values()]
        shortest = min(
            (
                min(lim.header_timeout_s, lim.request_timeout_s, lim.idle_timeout_s)
                for lim in limits
            ),
            default=1.0,
        )
        sweep_every = max(0.05, min(STATS_INTERVAL_S, shortest / 4))
        next_poll = next_stats = loop.time()
        while True:
            await asyncio.sleep(sweep_every)
            now = loop.time()
            for server in self._all():
                server.sweep(now)
            if self.poll_interval_s > 0 and now >= next_poll:
                next_poll = now + self.poll_interval_s
                for server in self._all():
                    if server.changed_on_disk():
                        await self._auto_reload(server)
            if now >= next_stats:
                next_stats = now + STATS_INTERVAL_S
                self._emit_stats()

    async def _auto_reload(self, server: MockServer | WireMock) -> None:
        try:
            n = await server.reload()
        except DevboxError as exc:
            self._emit(
                Problem(
                    f"mock {server.name}: recordings changed but could not be reloaded "
                    f"(still serving the previous ones): {exc.one_line()}",
                    hint=exc.hint,
                )
            )
            return
        self._emit(Log("devbox", f"mock {server.name}: reloaded {n} recorded exchanges"))

    def _emit_stats(self) -> None:
        for server in self._all():
            stats = server.mock_stats()
            prev = self._last_stats.get(server.name)
            if prev is None or (prev.hits, prev.misses, prev.mode) != (
                stats.hits,
                stats.misses,
                stats.mode,
            ):
                self._last_stats[server.name] = stats
                self._emit(stats)

    def stop(self) -> None:
        """Close every mock and its connections; the thread ends. Safe to call twice."""
        if self._loop is None:
            return
        if self._started:
            with contextlib.suppress(Exception):
                self._run(self._stop_all(), timeout=10)
        self._shutdown()

    async def _stop_all(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await asyncio.gather(*(s.close() for s in self._all()))
        self._emit_stats()

    def _shutdown(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = None
        self._thread = None
        self._started = False
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)

    def __enter__(self) -> MockFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ queries and controls

    def ports(self) -> dict[str, int]:
        return {s.name: s.port for s in self._all()}

    def urls(self) -> dict[str, str]:
        """Env var name (Dependency.env, else NAME_URL) -> the mock's base URL."""
        host = url_host(self.host)
        urls = {
            env_name(name, s.spec.dependency.env): f"http://{host}:{s.port}"
            for name, s in self.servers.items()
        }
        for name, w in self.wire.items():
            urls[env_name(name, w.dependency.env)] = w.service_url(host.strip("[]"))
        return urls

    def service_urls(self) -> dict[str, str]:
        """Dependency name -> the address its client is given (``http://...``,
        ``redis://...``, ``postgresql://...``), as ``urls()`` but by dependency."""
        host = url_host(self.host)
        out = {name: f"http://{host}:{s.port}" for name, s in self.servers.items()}
        for name, w in self.wire.items():
            out[name] = w.service_url(host.strip("[]"))
        return out

    def exchanges(self) -> dict[str, int]:
        """Dependency name -> recorded exchanges loaded."""
        return {s.name: len(s.index) for s in self._all()}

    def reload(self) -> None:
        """Re-read every mock's recordings now. Raises the first DevboxError (a broken
        recording); mocks whose recordings are broken keep serving the previous ones."""
        errors: list[DevboxError] = []
        for server in self._all():
            try:
                if self._loop is None:
                    server.load()
                else:
                    self._run(server.reload(), timeout=300)
            except DevboxError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def set_mode(self, dependency: str, mode: str) -> None:
        """ "replay" (answer from recordings, fail on a miss), "passthrough" or "record"."""
        server = self._server(dependency)
        if mode not in (*MODES, "fail"):
            raise UsageError(
                f"unknown mock mode {mode!r}", hint="expected one of " + ", ".join(MODES)
            )
        try:
            server.set_mode(mode)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self._call(self._emit_stats)

    def reset(self, dependency: str | None = None) -> None:
        """Start recorded sequences (n-th call -> n-th response) and fault draws again."""
        targets = [self._server(dependency)] if dependency else self._all()
        for s in targets:
            self._call(s.reset)

    def stats(self) -> list[MockStats]:
        return [s.mock_stats() for s in self._all()]

    def misses(self, dependency: str | None = None) -> list[MissRecord]:
        targets = [self._server(dependency)] if dependency else self._all()
        out: list[MissRecord] = []
        for s in targets:
            out.extend(self._call(lambda s=s: list(s.miss_log)))  # type: ignore[misc]
        return sorted(out, key=lambda m: m.at)

    def journal(self, dependency: str, after: int = 0, limit: int = 1000) -> dict[str, Any]:
        server = self._server(dependency)
        return self._call(lambda: server.journal_dict(after, limit))

    def _server(self, name: str) -> MockServer | WireMock:
        server = self.servers.get(name) or self.wire.get(name)
        if server is None:
            raise NotFoundError(
                f"no mock for dependency {name!r}",
                hint="mocks: " + (", ".join([*self.servers, *self.wire]) or "none"),
            )
        return server

    # ------------------------------------------------------------ threads

    def _run(self, coro: Awaitable[T], timeout: float) -> T:
        loop = self._loop
        if loop is None:
            raise EngineError("the mocks are not running")
        fut: Future[T] = asyncio.run_coroutine_threadsafe(_as_coro(coro), loop)
        return fut.result(timeout)

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the mocks' loop (or here, when not started) and return its result."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            return fn()

        async def call() -> T:
            return fn()

        return self._run(call(), timeout=30)

    def _emit(self, event: Event) -> None:
        safe_emit(self.on_event, event)

    def __iter__(self) -> Iterator[MockServer]:
        return iter(self.servers.values())


async def _as_coro(aw: Awaitable[T]) -> T:
    return await aw

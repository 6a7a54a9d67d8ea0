"""``Recorder``: every recording proxy of a profile, on one background event loop.

One listener per dependency that has an ``upstream`` (on the dependency's
``port``, the same port its mock uses, or a free one), one inbound listener in
front of the service, and optionally a forward proxy. All of them share one
``ProxyCore`` (so outbound calls can be linked to the inbound request being
served) and one ``RecordingSink`` (redaction, then crash-safe appends).

The loop runs in a daemon thread so a synchronous caller (the engine, a test)
can start the service, run a client command and wait for Ctrl-C meanwhile.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.core.model import Direction
from devbox.core.profile import Dependency, Profile
from devbox.errors import ConfigError, DevboxError, EngineError, NotFoundError, UsageError
from devbox.record.correlate import Correlator
from devbox.record.link import WorkerLink
from devbox.record.proxy import (
    Capture,
    Captured,
    ClientConn,
    ProxyCore,
    Route,
    Upstream,
    make_ssl_context,
)
from devbox.record.sink import recover
from devbox.store import new_stamp
from devbox.wire import registry
from devbox.wire.loops import new_event_loop

INBOUND = "inbound"
FORWARD = "forward"
DRAIN_S = 2.0


@dataclass(frozen=True, slots=True)
class RecordOptions:
    host: str = "127.0.0.1"
    inbound_port: int | None = None  # None: a free port
    service_host: str = "127.0.0.1"
    service_port: int | None = None  # None: the profile's service.port
    ports: Mapping[str, int] = field(default_factory=dict)  # dependency -> port (0: free)
    forward_proxy_port: int | None = None  # set: a forward proxy replaces the per-dependency ones
    append: bool = False
    max_body_kb: int | None = None  # None: the profile's [record] max_body_kb
    ca_bundle: Path | None = None
    connect_timeout_s: float = 10.0
    response_timeout_s: float = 60.0
    fsync: bool = False
    stamp: str | None = None  # names the recording files; default: UTC now
    # HTTPS: the forward proxy records inside CONNECT, reverse proxies of https://
    # upstreams accept TLS from the service (leaves of devbox's CA); False: tunnel only
    intercept: bool = True


@dataclass(frozen=True, slots=True)
class Listener:
    source: str  # dependency name, "inbound" or "forward"
    direction: Direction
    port: int
    url: str  # where clients (or the service) send requests
    upstream: str  # where it forwards them
    env: str | None = None  # the dependency's env var, set for the service
    tls: bool = False  # the listener also takes TLS (its url is https://)


@dataclass(frozen=True, slots=True)
class SourceSummary:
    source: str
    direction: str
    exchanges: int
    errors: int
    truncated: int
    bytes: int
    dropped: int
    file: str | None


@dataclass(frozen=True, slots=True)
class RecordSummary:
    profile: str
    mode: str  # "new" | "append"
    duration_s: float
    sources: tuple[SourceSummary, ...]
    redactions: Mapping[str, int]
    committed: bool
    files: tuple[str, ...] = ()
    backup: str | None = None  # where the replaced recordings went
    kept: tuple[str, ...] = ()  # sources without traffic: previous recordings kept
    skipped: tuple[str, ...] = ()  # dependencies without an upstream: not recorded
    unlinked: int = 0  # outbound calls made while several inbound requests were in flight
    rejected: int = 0
    upstream_errors: int = 0
    unrecorded: Mapping[str, int] = field(default_factory=dict)
    tunnels: Mapping[str, int] = field(default_factory=dict)
    intercepted: Mapping[str, int] = field(default_factory=dict)  # CONNECT host:port -> count
    refused: Mapping[str, str] = field(default_factory=dict)  # host:port -> why tunnelled
    lost: int = 0  # captured but never handed to the worker (it died)
    failures: tuple[str, ...] = ()  # captures the worker could not turn into exchanges
    # intercepted connections whose bytes stopped parsing as HTTP/1.1 (relayed on,
    # unrecorded from there): how many, and the first few
    unread: int = 0
    unread_first: tuple[str, ...] = ()

    @property
    def exchanges(self) -> int:
        return sum(s.exchanges for s in self.sources)

    @property
    def failed(self) -> bool:
        """Recording itself went wrong (not the traffic): exchanges lost or unwritable."""
        return bool(self.lost or self.failures)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.sources)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "mode": self.mode,
            "duration_s": round(self.duration_s, 3),
            "exchanges": self.exchanges,
            "bytes": self.bytes,
            "sources": {
                s.source: {
                    "direction": s.direction,
                    "exchanges": s.exchanges,
                    "errors": s.errors,
                    "truncated": s.truncated,
                    "bytes": s.bytes,
                    "dropped": s.dropped,
                    "file": s.file,
                }
                for s in self.sources
            },
            "redactions": dict(self.redactions),
            "committed": self.committed,
            "files": list(self.files),
            "backup": self.backup,
            "kept": list(self.kept),
            "skipped": list(self.skipped),
            "unlinked_outbound": self.unlinked,
            "rejected": self.rejected,
            "upstream_errors": self.upstream_errors,
            "unrecorded_hosts": dict(self.unrecorded),
            "tunnels": dict(self.tunnels),
            "intercepted": dict(self.intercepted),
            "refused": dict(self.refused),
            "lost": self.lost,
            "failures": list(self.failures),
            "unread_connections": self.unread,
        }


class Recorder:
    """Start with ``start()``, read ``listeners``/``service_env()``, end with ``stop()``."""

    def __init__(
        self,
        profile: Profile,
        options: RecordOptions | None = None,
        *,
        on_captured: Callable[[Captured], None] | None = None,
        on_log: Callable[[str], None] | None = None,
    ) -> None:
        self.profile = profile
        self.options = options or RecordOptions()
        self.on_log = on_log
        self._routes: list[tuple[Route, int, str | None]] = []
        self.skipped: tuple[str, ...] = ()
        self._plan_routes()
        sources = {r.source: r.direction.value for r, _p, _e in self._routes if r.source != FORWARD}
        for d in _proxied(profile):
            if d.upstream and self.options.forward_proxy_port is not None:
                sources[d.name] = Direction.OUTBOUND.value
        self.stamp = self.options.stamp or new_stamp()
        max_kb = self.options.max_body_kb or profile.record.max_body_kb
        self.link = WorkerLink(
            {
                "profile": str(profile.path),
                "append": self.options.append,
                "fsync": self.options.fsync,
                "stamp": self.stamp,
                "sources": sources,
                # for the connections the worker reads itself (devbox.record.streams)
                "max_body": max_kb * 1024,
                "correlation": profile.record.correlation_header,
            }
        )
        self.correlator = Correlator(profile.record.correlation_header)
        ssl_context = None
        if self.options.ca_bundle is not None:
            if not self.options.ca_bundle.is_file():
                raise NotFoundError(f"{self.options.ca_bundle}: no such CA bundle file")
            try:
                ssl_context = make_ssl_context(str(self.options.ca_bundle))
            except Exception as exc:
                raise ConfigError(
                    f"not a PEM CA bundle: {exc}", file=str(self.options.ca_bundle)
                ) from None
        forward_sources = {
            Upstream.parse(d.upstream).origin: d.name for d in _proxied(profile) if d.upstream
        }
        certs = None
        wants_tls = self.options.forward_proxy_port is not None or any(
            origin[0] == "https" for origin in forward_sources
        )
        if self.options.intercept and wants_tls:
            from devbox.wire.ca import cert_store

            certs = cert_store()
        self.core = ProxyCore(
            emit=self._emit,
            correlator=self.correlator,
            max_body=max_kb * 1024,
            stamp=self.stamp,
            connect_timeout_s=self.options.connect_timeout_s,
            response_timeout_s=self.options.response_timeout_s,
            ssl_context=ssl_context,
            forward_sources=forward_sources,
            on_error=self._log,
            certs=certs,
            ca_bundle=str(self.options.ca_bundle) if self.options.ca_bundle else None,
        )
        self.core.on_captured = on_captured
        self.listeners: tuple[Listener, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self._started_at = 0.0
        self._summary: RecordSummary | None = None

    # ------------------------------------------------------------ plan

    def _plan_routes(self) -> None:
        opts = self.options
        skipped = []
        if opts.forward_proxy_port is None:
            # the other kinds are recorded by a relay of their own (devbox.record.wire_relay)
            for d in _proxied(self.profile):
                if not d.upstream:
                    skipped.append(d.name)
                    continue
                port = opts.ports.get(d.name, d.port if d.port is not None else 0)
                # the service is given the upstream's base path (devbox.core.wiring) and
                # sends it: forwarding it as it is keeps /visit from becoming /visit/
                route = Route(d.name, Direction.OUTBOUND, Upstream.origin_of(d.upstream))
                self._routes.append((route, port, d.env))
        else:
            self._routes.append(
                (Route(FORWARD, Direction.OUTBOUND, None), opts.forward_proxy_port, None)
            )
        self.skipped = tuple(skipped)
        if self.profile.service.protocol == "grpc":
            return  # the service's calls go through a gRPC relay (devbox.record.wire_relay)
        service_port = opts.service_port or self.profile.service.port
        inbound = Route(
            INBOUND,
            Direction.INBOUND,
            Upstream("http", opts.service_host, service_port),
            rewrite_host=False,
        )
        self._routes.append((inbound, opts.inbound_port or 0, None))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> tuple[Listener, ...]:
        """Bind every listener; raise EngineError (nothing left running) if one cannot."""
        recover(self.profile)
        self.link.on_captured = self._read_by_worker
        self.link.start()
        loop = new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="devbox-record", daemon=True)
        self._thread.start()
        try:
            fut = asyncio.run_coroutine_threadsafe(self._bind(), loop)
            self.listeners = fut.result(timeout=30)
        except BaseException:
            self._halt()
            self.link.kill()
            raise
        self._started_at = time.monotonic()
        return self.listeners

    async def _bind(self) -> tuple[Listener, ...]:
        loop = asyncio.get_running_loop()
        out = []
        host = self.options.host
        for route, port, env in self._routes:
            try:
                server = await loop.create_server(_factory(self.core, route), host, port)
            except OSError as exc:
                for s in self._servers:
                    s.close()
                raise _bind_error(route.source, host, port, exc) from None
            self._servers.append(server)
            bound = server.sockets[0].getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            upstream = str(route.upstream) if route.upstream else "each request's own origin"
            tls = bool(
                self.core.certs is not None
                and route.direction is Direction.OUTBOUND
                and route.upstream is not None
                and route.upstream.tls
            )
            scheme = "https" if tls else "http"
            out.append(
                Listener(
                    route.source,
                    route.direction,
                    bound,
                    f"{scheme}://{shown}:{bound}",
                    upstream,
                    env,
                    tls,
                )
            )
        return tuple(out)

    def listener(self, source: str) -> Listener:
        for li in self.listeners:
            if li.source == source:
                return li
        raise NotFoundError(f"no recording listener for {source!r}")

    @property
    def inbound_url(self) -> str:
        return self.listener(INBOUND).url

    def service_env(self) -> dict[str, str]:
        """What the service needs to send its dependency calls through the recorder."""
        env: dict[str, str] = {}
        for li in self.listeners:
            if li.direction is Direction.OUTBOUND and li.env:
                env[li.env] = li.url
            if li.source == FORWARD:
                for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
                    env[name] = li.url
                env["NO_PROXY"] = env["no_proxy"] = ""
        return env

    def captured(self) -> dict[str, int]:
        """Exchanges handed to the worker so far, per source (for live views)."""
        return dict(self.core.captured)

    def in_flight(self) -> int:
        return sum(len(c.pending) for c in self.core.conns)

    def stop(self, *, commit: bool = True, drain_s: float = DRAIN_S) -> RecordSummary:
        """Stop listening, let in-flight exchanges finish (up to ``drain_s``), then commit
        the new set (``commit=True``) or leave it partial for inspection."""
        if self._summary is not None:
            return self._summary
        loop = self._loop
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(drain_s), loop)
            try:
                fut.result(timeout=drain_s + 10)
            except Exception as exc:  # the loop is wedged: the files are still consistent
                self._log(f"shutdown: {exc}")
        self._halt()
        try:
            result = self.link.finish(commit=commit)
        except EngineError as exc:
            # the worker died: what it wrote stays as partial files, the old set untouched
            result = {"failures": [exc.message]}
        self._summary = self._summarize(result)
        return self._summary

    async def _shutdown(self, drain_s: float) -> None:
        for s in self._servers:
            s.close()
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and any(c.pending for c in self.core.conns):
            await asyncio.sleep(0.01)
        for c in list(self.core.conns):
            c.record_unfinished("recording stopped before the response ended")
        self.core.flush()
        # from here on, connections we cut are our doing, not traffic worth recording
        self.core.stopping = True
        self.core.abort_all()
        await asyncio.sleep(0)

    def _halt(self) -> None:
        halt_loop(self._loop, self._thread)
        self._loop = None

    # ------------------------------------------------------------ internals

    def _emit(self, captures: list[Capture]) -> None:
        if self.link.dead is not None:
            self.link.send(*captures)  # counts them as lost
            return
        try:
            self.link.send(*captures)
        except EngineError as exc:
            self._log(f"{exc.message}; recording stopped, relaying continues")

    def _read_by_worker(self, lines: list[list[Any]]) -> None:
        """The worker's report (its reader thread): to the loop thread, which owns the
        counts; once the loop is gone, directly (nothing else touches them then)."""
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self.core.read_by_worker, lines)
                return
            except RuntimeError:
                pass  # closed meanwhile
        self.core.read_by_worker(lines)

    def _log(self, message: str) -> None:
        if self.on_log is not None:
            self.on_log(message)

    def _summarize(self, w: dict[str, Any]) -> RecordSummary:
        st = self.core.stats
        return RecordSummary(
            profile=self.profile.name,
            mode="append" if self.options.append else "new",
            duration_s=time.monotonic() - self._started_at if self._started_at else 0.0,
            sources=tuple(
                SourceSummary(
                    s["source"],
                    s["direction"],
                    s["exchanges"],
                    s["errors"],
                    s["truncated"],
                    s["bytes"],
                    s["dropped"],
                    _final(s["path"], w.get("files", ())),
                )
                for s in w.get("sources", ())
            ),
            redactions=dict(w.get("redactions", {})),
            committed=bool(w.get("committed")),
            files=tuple(w.get("files", ())),
            backup=w.get("backup"),
            kept=tuple(w.get("kept", ())),
            skipped=self.skipped,
            unlinked=self.correlator.ambiguous + int(w.get("unlinked", 0)),
            rejected=st.rejected,
            upstream_errors=st.upstream_errors,
            unrecorded=dict(st.unrecorded),
            tunnels=dict(st.tunnels),
            intercepted=dict(st.intercepted),
            refused=dict(st.refused),
            lost=self.link.lost,
            failures=tuple(w.get("failures", ())),
            unread=int(w.get("unread_count", 0)),
            unread_first=tuple(w.get("unread", ())),
        )


def _proxied(profile: Profile) -> list[Dependency]:
    """The dependencies this proxy records: those whose kind rides the HTTP edges."""
    return [d for d in profile.dependencies if registry.capabilities(d.kind).http_edges]


def halt_loop(loop: asyncio.AbstractEventLoop | None, thread: threading.Thread | None) -> None:
    """Stop a loop running on its own thread, wait for the thread, close the loop: the one
    way the recording proxies and the wire relays end their loop thread."""
    if loop is None:
        return
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(timeout=10)
    if not loop.is_running():
        loop.close()


def _final(path: str | None, files: Any) -> str | None:
    """The committed name of a partial file."""
    if path is None:
        return None
    for f in files:
        if path.startswith(f):
            return str(f)
    return path


def _factory(core: ProxyCore, route: Route) -> Callable[[], asyncio.Protocol]:
    return lambda: ClientConn(core, route)


def _bind_error(source: str, host: str, port: int, exc: OSError) -> DevboxError:
    what = "the inbound proxy" if source == INBOUND else f"the recording proxy for {source}"
    if exc.errno == errno.EADDRINUSE:
        return EngineError(
            f"port {port} for {what} is already in use on {host}",
            hint="stop what listens there (a running `devbox up`?), or choose another port",
        )
    if exc.errno == errno.EACCES:
        return UsageError(f"no permission to listen on {host}:{port} for {what}")
    return EngineError(f"cannot listen on {host}:{port} for {what}: {exc.strerror}")

"""Recording relays for the non-HTTP dependencies (``kind = "redis"``, ...), and for a
service that itself serves gRPC (``[service] protocol = "grpc"``: the ``inbound`` source,
a gRPC relay in front of the service instead of the HTTP inbound proxy).

One listener per such dependency with an ``upstream``; every client connection is
relayed to the real server by ``devbox.wire.tcp.RelayConnection`` while the kind's
recorder connection turns both directions into stored objects. Each object gets its
connection number, is redacted (``devbox.wire.files.value_redactor``) and appended with
one ``write()``. Files and commit are the HTTP sink's: a new set is written to
``recording-<stamp>.json.partial`` and replaces the old files (moved to
``.trash/<stamp>/<source>/`` through a journal ``recover()`` rolls forward) only on
commit, by the same ``sink.commit_sets``; ``--append`` writes ``recording-<stamp>.json``
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devbox.core.model import Direction
from devbox.core.profile import Profile
from devbox.errors import EngineError
from devbox.record.recorder import INBOUND, Listener, RecordOptions, SourceSummary, halt_loop
from devbox.record.sink import commit_sets
from devbox.store import PARTIAL_SUFFIX, SUFFIX
from devbox.wire import files, registry, tcp
from devbox.wire.contract import Kind
from devbox.wire.loops import new_event_loop


@dataclass(slots=True)
class _Source:
    name: str
    direction: Direction
    upstream_url: str
    port: int | None  # the profile's fixed port; None: a free one
    env: str | None
    kind: Kind
    upstream: tuple[str, int]
    path: Path
    # https upstreams: the context verifying the real server, the one the service meets
    upstream_tls: ssl.SSLContext | None = None
    client_tls: ssl.SSLContext | None = None
    tls_reported: bool = False
    writer: files.ObjectWriter | None = None
    stored: int = 0
    connections: int = 0
    incomplete: int = 0


class WireRecorder:
    """``start()`` binds every relay (listeners), ``stop(commit=...)`` ends them."""

    def __init__(
        self,
        profile: Profile,
        options: RecordOptions,
        stamp: str,
        on_log: Callable[[str], None] | None = None,
    ) -> None:
        self.profile = profile
        self.on_log = on_log or (lambda m: None)
        self.options = options
        self.stamp = stamp
        self.redact_value = files.value_redactor(profile.redact)
        self.sources: dict[str, _Source] = {}
        suffix = SUFFIX if options.append else PARTIAL_SUFFIX
        for d in profile.dependencies:
            if registry.capabilities(d.kind).http_edges or not d.upstream:
                continue  # recorded by the HTTP recording proxy (devbox.record.recorder)
            kind = registry.for_dependency(d, profile.root)
            path = profile.recordings_dir(d.name) / f"recording-{stamp}{suffix}"
            self._add(d.name, Direction.OUTBOUND, d.upstream, d.port, d.env, kind, path)
        if profile.service.protocol == "grpc":
            # the service's own calls: the same relay and recorder, the other direction
            service = profile.service
            kind = registry.for_dependency(service, profile.root, "grpc")
            host, port = options.service_host, options.service_port or service.port
            path = profile.inbound_dir / f"recording-{stamp}{suffix}"
            upstream = f"http://{host}:{port}"
            self._add(INBOUND, Direction.INBOUND, upstream, options.inbound_port, None, kind, path)
        self.listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self._relays: set[tcp.RelayConnection] = set()
        self._numbers = itertools.count(1)

    def _add(
        self,
        name: str,
        direction: Direction,
        url: str,
        port: int | None,
        env: str | None,
        kind: Kind,
        path: Path,
    ) -> None:
        parts = urlsplit(url)
        upstream = (parts.hostname or "127.0.0.1", parts.port or kind.default_port)
        self.sources[name] = src = _Source(name, direction, url, port, env, kind, upstream, path)
        if registry.speaks_tls(kind, url):
            self._tls(src)

    def _tls(self, src: _Source) -> None:
        """TLS both ways: the real server verified as the HTTP recorder verifies it (the
        system's CAs, ``--ca-bundle`` added), ALPN h2; the service gets a leaf of devbox's
        CA (h2c on the same port still works)."""
        from devbox.record.proxy_core import make_ssl_context
        from devbox.wire.ca import cert_store

        bundle = self.options.ca_bundle
        src.upstream_tls = make_ssl_context(str(bundle) if bundle else None, alpn=("h2",))
        src.client_tls = cert_store().sni_context(alpn=("h2",))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> tuple[Listener, ...]:
        if not self.sources:
            return ()
        loop = new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="devbox-record-wire", daemon=True
        )
        self._thread.start()
        try:
            fut = asyncio.run_coroutine_threadsafe(self._bind(), loop)
            self.listeners = fut.result(timeout=30)
        except BaseException:
            self._halt()
            raise
        return self.listeners

    async def _bind(self) -> tuple[Listener, ...]:
        host = self.options.host
        out = []
        for name, src in self.sources.items():
            port = self.options.ports.get(name, src.port if src.port is not None else 0)
            try:
                server = await tcp.start_relay_server(
                    self._relay(src), host, port, tls=src.client_tls
                )
            except OSError as exc:
                for s in self._servers:
                    s.close()
                raise EngineError(
                    f"cannot listen on {host}:{port} for the recording relay of {name}: "
                    f"{exc.strerror or exc}",
                    hint="stop what listens there, or choose another port",
                ) from None
            self._servers.append(server)
            bound = int(server.sockets[0].getsockname()[1])
            url = src.kind.service_url(src.upstream_url, host, bound)
            out.append(Listener(name, src.direction, bound, url, src.upstream_url, src.env))
        return tuple(out)

    def _relay(self, src: _Source) -> Callable[[], tcp.RelayConnection]:
        def relay() -> tcp.RelayConnection:
            number = next(self._numbers)
            src.connections += 1
            conn = tcp.RelayConnection(
                src.kind.recorder_connection(),
                src.upstream,
                lambda stored: self._write(src, number, stored),
                upstream_tls=src.upstream_tls,
                # the real server refused: the client sees its connection end
                on_refused=lambda exc: self._refused(src, exc),
                on_end=self._relays.discard,
            )
            self._relays.add(conn)
            return conn

        return relay

    def _refused(self, src: _Source, exc: OSError) -> None:
        """Say once per dependency why the real server could not be reached in TLS (a
        refused TCP connection shows as the client's own error)."""
        if not isinstance(exc, ssl.SSLError) or src.tls_reported:
            return
        src.tls_reported = True
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = f"certificate verify failed: {exc.verify_message}"
            hint = "a private CA: pass --ca-bundle FILE (PEM) to devbox record"
        else:
            why = str(exc.reason or exc)
            hint = "check that the upstream speaks TLS (or use http:// for h2c)"
        self.on_log(f"{src.name}: TLS to the upstream {src.upstream_url} failed ({why}): {hint}")

    def _write(self, src: _Source, number: int, stored: list[dict[str, Any]]) -> None:
        with self._lock:
            if src.writer is None:
                src.writer = files.ObjectWriter(
                    src.path, src.kind.name, src.name, fsync=self.options.fsync
                )
            for obj in stored:
                clean = src.kind.redact({"connection": number, **obj}, self.redact_value)
                src.writer.append(clean)
                src.stored += 1
                src.incomplete += bool(obj.get("incomplete"))

    def service_env(self) -> dict[str, str]:
        return {li.env: li.url for li in self.listeners if li.env}

    def stop(self, *, commit: bool = True) -> tuple[list[SourceSummary], list[str], str | None]:
        """(summaries, committed files, backup directory)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=10)
        self._halt()
        with self._lock:
            for src in self.sources.values():
                if src.writer is not None:
                    src.writer.close()
        finals, backup = self._commit() if commit else ({}, None)
        summaries = [
            SourceSummary(
                name,
                src.direction.value,
                src.stored,
                src.incomplete,
                0,
                src.writer.bytes_written if src.writer else 0,
                0,
                finals.get(name, str(src.path) if src.writer else None),
            )
            for name, src in self.sources.items()
        ]
        return summaries, list(finals.values()), backup

    async def _shutdown(self) -> None:
        for s in self._servers:
            s.close()
        # a client's pool keeps connections open: they are cut, what they held is stored
        for conn in list(self._relays):
            conn.end()

    def _halt(self) -> None:
        halt_loop(self._loop, self._thread)
        self._loop = None

    def _commit(self) -> tuple[dict[str, str], str | None]:
        recorded = {n: s for n, s in self.sources.items() if s.writer is not None and s.stored}
        if self.options.append or not recorded:
            return {n: str(s.path) for n, s in recorded.items()}, None
        finals, backup = commit_sets(
            self.profile, self.stamp, [(n, s.path) for n, s in recorded.items()]
        )
        return (
            {n: str(f) for n, f in zip(recorded, finals, strict=True)},
            str(backup) if backup is not None else None,
        )

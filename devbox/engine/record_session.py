"""A ``devbox record`` session: recording proxies + the service + an optional client command.

Order matters and is the same on every path:

1. the recorder binds every listener (nothing else is started if a port is taken);
2. the service starts through ``devbox.runtime`` with the dependency variables
   pointing at the recording proxies, by the same rule (``devbox.core.wiring``) as
   they point at mocks under ``devbox up``: the service's code never changes;
3. ``-- COMMAND`` runs (``{inbound}`` replaced by the inbound proxy's URL) or the
   session waits for Ctrl-C / SIGTERM;
4. the client stops, then the service, then the recorder drains in-flight
   exchanges and commits the new recording set.

Any failure on the way (service not ready, command not found) still runs step 4
without committing, so a broken run never replaces good recordings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from devbox.core.events import Event, Log, Problem, safe_emit
from devbox.core.model import Direction
from devbox.core.profile import Profile
from devbox.core.wiring import Wiring
from devbox.engine.wiring import trust_env, wiring_for
from devbox.errors import DevboxError, NotFoundError, UsageError
from devbox.record import Captured, Listener, Recorder, RecordOptions, RecordSummary
from devbox.record.recorder import FORWARD
from devbox.record.wire_relay import WireRecorder
from devbox.wire import registry

GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class RecordPlan:
    options: RecordOptions = field(default_factory=RecordOptions)
    service: bool = True  # False: --no-service (the user runs the service)
    runtime: str = "auto"
    command: tuple[str, ...] = ()  # the client run; "{inbound}" is substituted
    # keep a recording whose exchanges got no answer from their upstream (else: not
    # committed, exit 1): a recording of "connection refused" replays nothing useful
    allow_errors: bool = False


@dataclass(slots=True)
class SourceTally:
    """What one source's upstream answered while recording (from the live captures)."""

    exchanges: int = 0
    no_answer: int = 0  # connection refused, DNS, timeout: recorded with an error
    client_errors: int = 0  # 4xx
    server_errors: int = 0  # 5xx
    first_error: str = ""
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return self.no_answer + self.client_errors + self.server_errors

    def add(self, c: Captured) -> None:
        self.exchanges += 1
        if c.status is None:
            self.no_answer += 1
            self.first_error = self.first_error or (c.error or "no answer")
            return
        self.statuses[c.status] = self.statuses.get(c.status, 0) + 1
        if 400 <= c.status < 500:
            self.client_errors += 1
        elif c.status >= 500:
            self.server_errors += 1


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    summary: RecordSummary
    exit_code: int  # the command's exit code, else 0
    interrupted: bool  # stopped by Ctrl-C / SIGTERM
    runtime: str = ""  # how the service ran ("process: python3 app.py"), "" with --no-service
    tally: Mapping[str, SourceTally] = field(default_factory=dict)
    # not committed because exchanges got no answer (and --allow-errors was not given)
    withheld: bool = False


def substitute(args: tuple[str, ...], urls: Mapping[str, str]) -> list[str]:
    """``{inbound}``, ``{payments}``... in the command's arguments -> the proxies' URLs."""
    out = []
    for a in args:
        for name, url in urls.items():
            a = a.replace("{" + name + "}", url)
        out.append(a)
    return out


class RecordSession:
    """Drive one recording: ``start()``, then ``run(stop)``; ``close()`` always."""

    def __init__(
        self,
        profile: Profile,
        plan: RecordPlan,
        *,
        on_event: Callable[[Event], None] | None = None,
        on_captured: Callable[[Captured], None] | None = None,
    ) -> None:
        self.profile = profile
        self.plan = plan
        self._on_event = on_event
        self._on_captured = on_captured
        self.tally: dict[str, SourceTally] = {}
        self.runtime: Any = None
        self.runtime_why = ""
        self.recorder: Recorder | None = None
        self.wire: WireRecorder | None = None  # relays of the non-HTTP dependencies
        self.listeners: tuple[Listener, ...] = ()
        self._child: subprocess.Popen[bytes] | None = None
        self._closed: RecordSummary | None = None

    def _emit(self, ev: Event) -> None:
        exc = safe_emit(self._on_event, ev)  # a broken view must not stop a recording
        if exc is not None and not isinstance(ev, Log):
            self._log(f"a view failed on {type(ev).__name__}: {exc}", "warning")

    def _log(self, text: str, level: str = "info") -> None:
        self._emit(Log("devbox", text, level))

    def start(
        self, on_listening: Callable[[RecordSession], None] | None = None
    ) -> tuple[Listener, ...]:
        """Bind the proxies (then ``on_listening``), then start the service and wait for it."""
        options = self.plan.options
        if self.plan.service:
            from devbox.runtime import select_runtime

            self.runtime, self.runtime_why = select_runtime(
                self.profile,
                self.plan.runtime,
                on_event=self._on_event,
                port=options.service_port,
            )
            if options.service_port is None:
                from dataclasses import replace

                options = replace(options, service_port=int(self.runtime.port))
        if options.forward_proxy_port is None:
            self._check_upstreams()
        self.recorder = Recorder(
            self.profile,
            options,
            on_captured=self._captured,
            on_log=lambda m: self._log(m, "warning"),
        )
        self.listeners = self.recorder.start()
        self.wire = WireRecorder(
            self.profile, options, self.recorder.stamp, on_log=lambda m: self._log(m, "warning")
        )
        try:
            self.listeners += self.wire.start()
        except BaseException:
            self.wire = None
            self.recorder.stop(commit=False)
            raise
        if on_listening is not None:
            on_listening(self)
        if self.runtime is not None:
            self._log(f"service runtime: {self.runtime.describe()} ({self.runtime_why})")
            self.runtime.prepare()
            self.runtime.start(self.service_env())
            took = self.runtime.wait_ready()
            self._log(f"{self.profile.service.name} ready in {took:.2f}s")
        return self.listeners

    def _captured(self, c: Captured) -> None:
        # the recorder's loop thread is the only writer; totals are read after it stops
        self.tally.setdefault(c.source, SourceTally()).add(c)
        if self._on_captured is not None:
            self._on_captured(c)

    def _check_upstreams(self) -> None:
        """Every upstream's host resolves, before anything starts: a compose service name
        (``http://analytics:5001``) resolves only inside compose's network, and recording
        through it would store one DNS error per request."""
        for dep in self.profile.dependencies:
            if not dep.upstream or not registry.capabilities(dep.kind).resolve_upstream:
                continue
            parts = urlsplit(dep.upstream)
            host = parts.hostname or ""
            try:
                socket.getaddrinfo(host, parts.port or 80, proto=socket.IPPROTO_TCP)
            except (socket.gaierror, UnicodeError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                msg = f"dependency {dep.name}: upstream host {host!r} does not resolve ({why})"
                hint = (
                    f"{host} looks like a compose service name, reachable only inside compose's "
                    "network: set upstream to the address compose publishes on this machine "
                    "(http://127.0.0.1:PORT, keeping the path; devbox init notes it above "
                    "upstream), or pass --allow-errors to record anyway"
                )
                if not self.plan.allow_errors:
                    raise UsageError(msg, hint=hint) from None
                self._log(f"{msg}: recorded as errors (--allow-errors)", "warning")

    def no_answer(self) -> dict[str, SourceTally]:
        return {s: t for s, t in self.tally.items() if t.no_answer}

    def wiring(self) -> Wiring:
        """The dependency variables pointing at the recording proxies, by the same rule
        as ``devbox up`` (``devbox.core.wiring``)."""
        assert self.recorder is not None
        ports = {
            li.source: li.port
            for li in self.listeners
            if li.direction is Direction.OUTBOUND and li.source != FORWARD
        }
        return wiring_for(
            self.profile,
            self.recorder.options.host,
            ports,
            "recording proxy",
            tls=self.recorder.options.intercept,
        )

    def service_env(self) -> dict[str, str]:
        """What the service is started with: the wired variables, and the HTTP_PROXY
        family when the recorder runs as a forward proxy."""
        assert self.recorder is not None
        env = dict(self.wiring().env)
        forward = any(li.source == FORWARD for li in self.listeners)
        if self.recorder.options.intercept:
            # https:// dependencies and intercepted CONNECTs present devbox's CA
            env = {**trust_env(self.profile, forward=forward), **env}
        if forward:
            env.update(
                {k: v for k, v in self.recorder.service_env().items() if "proxy" in k.lower()}
            )
        if self.wire is not None:
            env.update(self.wire.service_env())
        return env

    @property
    def urls(self) -> dict[str, str]:
        return {li.source: li.url for li in self.listeners}

    def run(self, stop: threading.Event) -> tuple[int, bool]:
        """Run the command (or wait for ``stop``). Returns (exit code, interrupted)."""
        if not self.plan.command:
            warned = False
            while not stop.wait(0.2):
                if self.runtime is not None and not warned:
                    why = self.runtime.check_alive()
                    if why is not None:
                        warned = True
                        self._emit(
                            Problem(
                                f"{self.profile.service.name} stopped: {why}",
                                hint="requests to it are recorded as 502 errors; Ctrl-C to stop",
                                logs=tuple(self.runtime.tail()),
                            )
                        )
            return 0, True
        return self._run_command(stop)

    def _run_command(self, stop: threading.Event) -> tuple[int, bool]:
        args = substitute(self.plan.command, self.urls)
        env = dict(os.environ)
        env["DEVBOX_INBOUND_URL"] = self.urls.get("inbound", "")
        try:
            # a list, never a shell: the user's own client command, not the service
            child = subprocess.Popen(args, env=env)  # noqa: S603
        except FileNotFoundError:
            raise NotFoundError(f"command not found: {args[0]}") from None
        except PermissionError:
            raise UsageError(f"command is not executable: {args[0]}") from None
        self._child = child
        interrupted = False
        signalled_at = 0.0
        while True:
            try:
                code = child.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            if stop.is_set():
                now = time.monotonic()
                if not interrupted:
                    interrupted = True
                    signalled_at = now
                    # a terminal's Ctrl-C reached the child too; a `kill -INT devbox` did not
                    _signal(child, signal.SIGINT)
                elif now - signalled_at > 2 * GRACE_S:
                    child.kill()
                elif now - signalled_at > GRACE_S:
                    _signal(child, signal.SIGTERM)
        self._child = None
        if code < 0:
            code = 128 - code
        return code, interrupted

    def close(self, *, commit: bool = True) -> RecordSummary:
        """Stop the client, the service, then the recorder (committing when asked)."""
        if self._closed is not None:
            return self._closed
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self.runtime is not None:
            try:
                self.runtime.stop()
            except DevboxError as exc:
                self._emit(Problem(exc.message, exc.hint))
        if self.recorder is None:
            raise RuntimeError("close() before start()")
        summary = self.recorder.stop(commit=commit)
        if self.wire is not None:
            summary = _with_wire(summary, *self.wire.stop(commit=commit))
        self._closed = summary
        return self._closed


def _with_wire(
    summary: RecordSummary, sources: list[Any], files: list[str], backup: str | None
) -> RecordSummary:
    from dataclasses import replace

    recorded = [s for s in sources if s.exchanges]
    return replace(
        summary,
        sources=(*summary.sources, *recorded),
        files=(*summary.files, *files),
        committed=summary.committed or bool(files),
        backup=summary.backup or backup,
    )


def _signal(child: subprocess.Popen[bytes], sig: int) -> None:
    try:
        child.send_signal(sig)
    except ProcessLookupError:
        pass


@contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """SIGINT / SIGTERM set the event instead of raising (main thread only)."""
    stop = stop or threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def record(
    profile: Profile,
    plan: RecordPlan,
    *,
    on_event: Callable[[Event], None] | None = None,
    on_captured: Callable[[Captured], None] | None = None,
    on_listening: Callable[[RecordSession], None] | None = None,
    on_started: Callable[[RecordSession], None] | None = None,
    stop: threading.Event | None = None,
) -> RecordOutcome:
    """The whole ``devbox record`` flow; commits on a clean end (command done, Ctrl-C).

    ``on_listening``: the proxies are bound (the service is not started yet);
    ``on_started``: the service is ready and recording has begun."""
    session = RecordSession(profile, plan, on_event=on_event, on_captured=on_captured)
    with stop_on_signals(stop) as stop_event:
        started = False
        try:
            session.start(on_listening)
            started = True
            if on_started is not None:
                on_started(session)
            code, interrupted = session.run(stop_event)
        except BaseException:
            if started or session.recorder is not None:
                _quiet_close(session)
            elif session.runtime is not None:
                session.runtime.stop()
            raise
        withheld = bool(session.no_answer()) and not plan.allow_errors
        summary = session.close(commit=not withheld)
    if (summary.failed or withheld) and code == 0:
        code = 1  # the client succeeded, the recording did not: say so to scripts and CI
    return RecordOutcome(
        summary=summary,
        exit_code=code,
        interrupted=interrupted,
        runtime=session.runtime.describe() if session.runtime is not None else "",
        tally=dict(session.tally),
        withheld=withheld,
    )


def _quiet_close(session: RecordSession) -> None:
    try:
        session.close(commit=False)
    except Exception:  # the original error is the one worth reporting
        pass

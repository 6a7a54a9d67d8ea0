"""The runtime protocol and what both runtimes share: events, the log tail, the env.

A runtime runs ONE service of a profile: ``prepare`` (build), ``start(env)``,
``wait_ready``, then any number of ``sync``+``restart`` or ``rebuild`` cycles,
and ``stop``. Everything it learns is reported as devbox.core.events values
through ``on_event``, called from whichever thread learned it (log pumps are
background threads): consumers must be thread-safe or hop to their own loop.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from devbox.core.events import Event, Log, ServiceState, safe_emit
from devbox.core.profile import Profile
from devbox.runtime.readiness import LogWatch

EventSink = Callable[[Event], None]
TAIL_LINES = 20
_ERROR_RE = re.compile(r"^(Traceback |\w*Error\b|FATAL|ERROR\b)|\b(ERROR|CRITICAL|FATAL)\b")
_WARN_RE = re.compile(r"\b(WARN|WARNING)\b")


@runtime_checkable
class Runtime(Protocol):
    kind: str  # "docker" | "process"

    def prepare(self) -> None:
        """docker: build or check the image (BuildProgress events); process: check the command."""

    def start(self, env: Mapping[str, str]) -> None:
        """Start the service with these extra env vars (on top of the profile's)."""

    def wait_ready(self) -> float:
        """Seconds from the last start/restart until ready; raises ServiceNotReady(logs=...)."""

    def restart(self) -> None:
        """Restart the service's process (after a sync)."""

    def sync(self, paths: Sequence[Path]) -> None:
        """Copy changed files in (docker); no-op (process)."""

    def rebuild(self) -> None:
        """New image, container replaced (docker); restart (process)."""

    def stop(self) -> None:
        """Stop and remove everything this runtime started. Idempotent."""

    def keep(self) -> None:
        """What runs is to outlive this process ("quit, keep running"): stop guarding it."""

    def describe(self) -> str:
        """The image or the command, for the UI."""

    def tail(self, n: int = TAIL_LINES) -> tuple[str, ...]:
        """The last n lines of the service's output."""

    def check_alive(self) -> str | None:
        """None while the service runs, else why not ("exited with code 1")."""

    @property
    def port(self) -> int:
        """Where the service answers on 127.0.0.1."""

    @property
    def session(self) -> str: ...


def level_of(line: str) -> str:
    if _ERROR_RE.search(line):
        return "error"
    if _WARN_RE.search(line):
        return "warning"
    return "info"


def merged_env(profile: Profile, env: Mapping[str, str], port: int) -> dict[str, str]:
    """The profile's env, then the caller's (mock URLs win), then PORT unless set."""
    out = dict(profile.service.env)
    out.update(env)
    out.setdefault("PORT", str(port))
    return out


class RuntimeBase:
    """Event plumbing, the log tail and the state shared by both runtimes."""

    kind = "base"

    def __init__(
        self,
        profile: Profile,
        *,
        on_event: EventSink | None = None,
        session: str,
        port: int | None = None,
    ) -> None:
        self.profile = profile
        self.service = profile.service
        self._on_event = on_event
        self._session = session
        self._port = port if port is not None else profile.service.port
        self._tail: collections.deque[str] = collections.deque(maxlen=200)
        self._tail_lock = threading.Lock()
        self.log_watch = LogWatch(profile.service.ready.log)
        self.restarts = 0
        self._started_at = time.monotonic()
        self._state = "stopped"

    @property
    def port(self) -> int:
        return self._port

    @property
    def session(self) -> str:
        return self._session

    @property
    def state(self) -> str:
        return self._state

    def keep(self) -> None:
        """Nothing guards a process-runtime child: it ends with devbox anyway."""

    def emit(self, event: Event) -> None:
        safe_emit(self._on_event, event)  # a broken view must not take the service down

    def set_state(self, state: str, detail: str = "") -> None:
        self._state = state
        self.emit(
            ServiceState(
                name=self.service.name,
                runtime=self.kind,
                state=state,
                detail=detail or self.describe(),
                port=self._port,
                restarts=self.restarts,
            )
        )

    def log_line(self, text: str, at: float | None = None, generation: int | None = None) -> None:
        text = text.rstrip("\r\n")
        with self._tail_lock:
            self._tail.append(text)
        self.log_watch.feed(text, generation)
        if at is None:
            self.emit(Log(source=self.service.name, text=text, level=level_of(text)))
        else:
            self.emit(Log(source=self.service.name, text=text, level=level_of(text), at=at))

    def devbox_log(self, text: str, level: str = "info") -> None:
        self.emit(Log(source="devbox", text=text, level=level))

    def tail(self, n: int = TAIL_LINES) -> tuple[str, ...]:
        with self._tail_lock:
            lines = list(self._tail)
        return tuple(lines[-n:])

    def describe(self) -> str:
        return self.service.name

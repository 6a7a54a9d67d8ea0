"""Everything the engine tells its views, as immutable values.

The headless CLI prints these; the Textual dashboard turns them into widget
updates. Neither view holds logic the other lacks: if a view needs a fact, it
becomes an event here. Pure: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from devbox.core.diff import Difference
from devbox.core.model import Response


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class Event:
    pass


EventSink = Callable[[Event], None]


def safe_emit(sink: EventSink | None, event: Event) -> Exception | None:
    """Hand ``event`` to a view. A broken view must not stop the sandbox, a mock or a
    runtime: its exception is returned (None when delivered) for the caller to report
    the way it can (the engine logs it to the other views)."""
    if sink is None:
        return None
    try:
        sink(event)
    except Exception as exc:  # any view error: the caller reports it
        return exc
    return None


@dataclass(frozen=True, slots=True)
class Log(Event):
    """A line of output from the service (source = service name) or devbox itself ("devbox")."""

    source: str
    text: str
    level: str = "info"  # info | warning | error
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ServiceState(Event):
    name: str
    runtime: str  # "docker" | "process"
    state: str  # "building" | "starting" | "ready" | "crashed" | "stopped"
    detail: str = ""  # image or command; why it crashed
    port: int = 0
    restarts: int = 0
    since: float = field(default_factory=_now)  # when this state began (uptime when ready)


@dataclass(frozen=True, slots=True)
class BuildProgress(Event):
    name: str
    line: str
    step: int | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class MockMiss(Event):
    dependency: str
    method: str
    target: str
    explanation: str  # nearest candidates and which fields differed, human-readable
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class MockStats(Event):
    dependency: str
    mode: str  # "replay" | "passthrough" | "record"  (replay == on_miss "fail")
    port: int
    hits: int
    misses: int
    last_miss: str = ""


@dataclass(frozen=True, slots=True)
class IterationStarted(Event):
    iteration: int
    changed: tuple[str, ...]  # paths, relative to the project root
    # "sync+restart" | "rebuild" | "reload-mocks" | "reload-profile" | "replay" | "restart"
    action: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StageTimed(Event):
    iteration: int
    stage: str  # "event" | "applied" | "ready" | "replayed" | "diffed"
    ms: float  # since the iteration's first file event


@dataclass(frozen=True, slots=True)
class ReplayResult(Event):
    """One request's verdict. ``report`` holds the replay module's full result object."""

    iteration: int
    index: int
    method: str
    target: str
    status: int | None
    verdict: str  # "pass" | "fail" | "error"
    latency_ms: float
    differences: tuple[str, ...] = ()
    exchange_id: str = ""
    # the recorded and the actual response, for views that show a side-by-side diff
    # and for "accept the actual response as the recording" (None when unknown)
    recorded: Response | None = None
    actual: Response | None = None
    # the recorded status (HTTP status, gRPC status code), known for every verdict:
    # views show it where a passing request's bodies were not kept
    expected_status: int | None = None
    # against the previous iteration, decided by the replay (devbox.replay.report.trend_of):
    # "newly failing" | "newly passing" | "still failing" | "" (views show it, never recompute)
    trend: str = ""
    # the differences the verdict counted, as the replay decided them
    # (devbox.core.diff.request_differences: scoped ignore rules applied); ``differences``
    # is their text. Views show these and never recompute them
    details: tuple[Difference, ...] = ()


class LatencySummary(Protocol):
    @property
    def p50_ms(self) -> float: ...
    @property
    def p99_ms(self) -> float: ...


class RequestOutcome(Protocol):
    """One replayed request as views read it (``devbox.replay.RequestResult``)."""

    @property
    def method(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def exchange_id(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def differences(self) -> tuple[Difference, ...]: ...
    def to_dict(self) -> dict[str, Any]: ...


class IterationReport(Protocol):
    """What views may read of an iteration's replay (``devbox.replay.ReplayReport``
    implements it); typed here because the core cannot import the replay edge."""

    @property
    def passed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def latency(self) -> LatencySummary: ...
    def failures(self) -> tuple[RequestOutcome, ...]: ...


@dataclass(frozen=True, slots=True)
class IterationFinished(Event):
    iteration: int
    action: str
    passed: int
    failed: int
    errors: int
    newly_failing: tuple[str, ...] = ()
    newly_passing: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()
    stages: tuple[tuple[str, float], ...] = ()
    cancelled: bool = False
    report: IterationReport | None = None  # the replay's report, for views that show diffs

    @property
    def verdict(self) -> str:
        """PASS | FAIL | ERROR (nothing was replayed: the iteration failed) | CANCELLED.

        Every view shows this one word, so they cannot disagree about an iteration."""
        if self.cancelled:
            return "CANCELLED"
        if self.failed or self.errors:
            return "FAIL"
        if self.passed == 0 and self.report is None:
            return "ERROR"
        return "PASS"


@dataclass(frozen=True, slots=True)
class Problem(Event):
    """A DevboxError the engine survived: build failed, service crashed, profile invalid."""

    message: str
    hint: str | None = None
    logs: tuple[str, ...] = ()
    at: float = field(default_factory=_now)

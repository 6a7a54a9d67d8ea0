"""The dashboard's model: engine events folded into plain data. No Textual here.

Theory of operation
-------------------
Events arrive from the engine's threads at any rate (a replay of thousands of
requests emits thousands of ``ReplayResult`` in a second). The app queues them
and, a few times a second, folds a bounded batch into ``DashboardState.apply``
on its own thread. ``apply`` only updates data and records *what changed*
(``dirty`` panel names, the results and log lines added since the last render),
so the widgets are updated once per batch, never once per event.

Everything a panel shows is derived here: verdict trend per request (compared with
the previous finished iteration), the timeline, the latest miss per dependency,
and the status line the tmux end-to-end test reads ("iteration 3: PASS").
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from devbox.core.events import (
    BuildProgress,
    Event,
    IterationFinished,
    IterationStarted,
    Log,
    MockMiss,
    MockStats,
    Problem,
    ReplayResult,
    ServiceState,
    StageTimed,
)

LOG_CAP = 5000
MISS_CAP = 500
PROBLEM_CAP = 50
BUILD_LINES = 200
STAGES = ("event", "applied", "ready", "replayed", "diffed")


@dataclass(slots=True)
class IterationRow:
    iteration: int
    action: str
    changed: tuple[str, ...] = ()
    reason: str = ""
    stages: dict[str, float] = field(default_factory=dict)
    finished: IterationFinished | None = None
    results: int = 0
    started_at: float = field(default_factory=time.time)

    @property
    def verdict(self) -> str:
        """ "PASS" | "FAIL" | "CANCELLED" | "RUNNING"."""
        f = self.finished
        if f is None:
            return "RUNNING"
        if f.cancelled:
            return "CANCELLED"
        return "FAIL" if f.failed or f.errors else "PASS"


@dataclass(slots=True)
class ProblemRow:
    """A problem and whether it is still open. ``after`` is the newest iteration that had
    started when it arrived: only a later one can show it gone."""

    problem: Problem
    after: int
    resolved: bool = False

    def resolved_by(self, row: IterationRow) -> bool:
        """Whether ``row`` (finished, not cancelled) shows the problem gone.

        A rejected profile edit is only fixed by a later edit of the profile that loads
        (action reload-profile); a stopped watcher only by a new session; anything else
        (a failed build or start, a crash) by any later iteration that finishes with
        the service up."""
        if row.iteration <= self.after:
            return False
        message = self.problem.message
        if message.startswith("file watching stopped"):
            return False
        if message.startswith("profile not reloaded"):
            return "reload-profile" in row.action
        return True


@dataclass(frozen=True, slots=True)
class ResultRow:
    result: ReplayResult
    trend: str  # ReplayResult.trend: "" | "newly failing" | "newly passing" | "still failing"

    @property
    def key(self) -> str:
        return result_key(self.result)


def result_key(r: ReplayResult) -> str:
    # the recorded exchange is the stable identity of a request across iterations
    return r.exchange_id or f"#{r.index} {r.method} {r.target}"


def compile_filter(text: str) -> tuple[Callable[[str], bool], str | None]:
    """A log/result filter: a case-insensitive regex; a leading ``!`` inverts it.

    An invalid regex falls back to a plain substring match, and the second value
    says why (shown next to the input)."""
    invert = text.startswith("!")
    body = text[1:] if invert else text
    error = None
    if not body:
        return (lambda s: True), None
    try:
        rx = re.compile(body, re.IGNORECASE)
        search: Callable[[str], bool] = lambda s: rx.search(s) is not None  # noqa: E731
    except re.error as exc:
        error = f"not a regex ({exc}); matching as text"
        low = body.lower()
        search = lambda s: low in s.lower()  # noqa: E731
    if invert:
        return (lambda s: not search(s)), error
    return search, error


def result_text(r: ReplayResult) -> str:
    """What the results filter matches against."""
    status = "" if r.status is None else str(r.status)
    return f"{r.method} {r.target} {status} {r.verdict} {' '.join(r.differences)}"


def log_text(line: Log) -> str:
    return f"{line.source} {line.level} {line.text}"


class DashboardState:
    def __init__(self, *, log_cap: int = LOG_CAP) -> None:
        self.services: dict[str, ServiceState] = {}
        self.build: dict[str, BuildProgress] = {}
        self.build_lines: deque[str] = deque(maxlen=BUILD_LINES)
        self.mocks: dict[str, MockStats] = {}
        self.last_miss: dict[str, MockMiss] = {}
        self.misses: deque[MockMiss] = deque(maxlen=MISS_CAP)
        self.iterations: dict[int, IterationRow] = {}
        self.results_iteration = -1
        self.results: list[ResultRow] = []
        self.counts = {"pass": 0, "fail": 0, "error": 0}
        self.logs: deque[Log] = deque(maxlen=log_cap)
        self.log_total = 0  # lines ever received; the ring keeps the newest log_cap
        self.problem_rows: deque[ProblemRow] = deque(maxlen=PROBLEM_CAP)
        self.last_finished: IterationFinished | None = None
        self.watching = True
        self.phase = "starting"  # starting | running | start failed | stopping
        self.clock: Callable[[], float] = time.time  # stamps lines made here (build output)
        # verdicts of the last finished iteration: the baseline of the trend column
        self._baseline: dict[str, str] = {}
        self._trend_base: dict[str, str] = {}
        # what changed since the views last rendered
        self.dirty: set[str] = set()
        self.results_reset = False
        self.new_results: list[ResultRow] = []
        self.new_logs: list[Log] = []
        self.new_misses: list[MockMiss] = []
        self.new_problems: list[Problem] = []

    # ------------------------------------------------------------ folding

    def apply_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.apply(ev)

    def apply(self, ev: Event) -> None:
        if isinstance(ev, ReplayResult):
            self._result(ev)
        elif isinstance(ev, Log):
            self._log(ev)
        elif isinstance(ev, MockStats):
            self.mocks[ev.dependency] = ev
            self.dirty.add("mocks")
        elif isinstance(ev, MockMiss):
            self.misses.append(ev)
            self.new_misses.append(ev)
            self.last_miss[ev.dependency] = ev
            self.dirty.add("mocks")
        elif isinstance(ev, ServiceState):
            self.services[ev.name] = ev
            if ev.state != "building":
                self.build.pop(ev.name, None)
            self.dirty.update(("services", "status"))
        elif isinstance(ev, BuildProgress):
            self.build[ev.name] = ev
            self.build_lines.append(ev.line)
            self._log(Log(source=f"{ev.name}:build", text=ev.line, at=self.clock()))
            self.dirty.add("services")
        elif isinstance(ev, IterationStarted):
            self.iterations[ev.iteration] = IterationRow(
                ev.iteration, ev.action, ev.changed, ev.reason
            )
            self.dirty.update(("timeline", "status"))
        elif isinstance(ev, StageTimed):
            row = self._iteration(ev.iteration)
            row.stages[ev.stage] = ev.ms
            self.dirty.add("timeline")
        elif isinstance(ev, IterationFinished):
            self._finished(ev)
        elif isinstance(ev, Problem):
            after = max(self.iterations) if self.iterations else -1
            self.problem_rows.append(ProblemRow(ev, after))
            self.new_problems.append(ev)
            self._log(Log(source="devbox", text=ev.message, level="error", at=ev.at))
            if ev.hint:
                self._log(Log(source="devbox", text=f"hint: {ev.hint}", level="error", at=ev.at))
            self.dirty.update(("services", "status"))

    def _iteration(self, n: int) -> IterationRow:
        row = self.iterations.get(n)
        if row is None:
            row = self.iterations[n] = IterationRow(n, "?")
        return row

    def _log(self, line: Log) -> None:
        self.logs.append(line)
        self.log_total += 1
        self.new_logs.append(line)
        cap = self.logs.maxlen or LOG_CAP
        if len(self.new_logs) > 2 * cap:
            # more arrived in one batch than the view can show: keep the newest
            del self.new_logs[:-cap]
        self.dirty.add("logs")

    def _result(self, r: ReplayResult) -> None:
        if r.iteration > self.results_iteration:
            # a new iteration's first result: the table starts over
            self.results_iteration = r.iteration
            self.results = []
            self.counts = {"pass": 0, "fail": 0, "error": 0}
            self.new_results = []
            self.results_reset = True
            self._trend_base = self._baseline
        elif r.iteration < self.results_iteration:
            return  # a straggler of a superseded iteration
        row = ResultRow(r, r.trend)  # decided by the replay, shown as it is
        self.results.append(row)
        self.new_results.append(row)
        self.counts[r.verdict] = self.counts.get(r.verdict, 0) + 1
        self._iteration(r.iteration).results += 1
        self.dirty.update(("results", "trend"))

    def _finished(self, ev: IterationFinished) -> None:
        row = self._iteration(ev.iteration)
        row.finished = ev
        if ev.action and row.action == "?":
            row.action = ev.action
        for stage, ms in ev.stages:
            row.stages.setdefault(stage, ms)
        if not ev.cancelled:
            self.last_finished = ev
            self._resolve(row)
            if ev.iteration == self.results_iteration:
                self._baseline = {row.key: row.result.verdict for row in self.results}
            elif ev.passed + ev.failed + ev.errors == 0:
                # an iteration that replayed nothing: its (empty) table is the latest
                self.results_iteration = ev.iteration
                self.results = []
                self.counts = {"pass": 0, "fail": 0, "error": 0}
                self.results_reset = True
        self.phase = "running"
        self.dirty.update(("timeline", "status", "trend", "results"))

    def _resolve(self, row: IterationRow) -> None:
        crashed = any(s.state == "crashed" for s in self.services.values())
        if crashed:
            return
        for p in self.problem_rows:
            if not p.resolved and p.resolved_by(row):
                p.resolved = True
                self.dirty.update(("services", "status"))

    def restarted(self) -> None:
        """The sandbox is starting again (rebuild after a failed start): the engine
        numbers its iterations from 0 again, so earlier ones are history."""
        for p in self.problem_rows:
            p.after = -1
        self.iterations.clear()
        self.results_iteration = -1
        self.last_finished = None
        self._baseline = {}
        self.phase = "starting"
        self.dirty.update(("timeline", "status", "results", "trend"))

    @property
    def problems(self) -> list[Problem]:
        """The problems still open (the status line's badge counts these)."""
        return [p.problem for p in self.problem_rows if not p.resolved]

    def take_changes(self) -> None:
        """Forget what changed; the views have rendered it."""
        self.dirty.clear()
        self.results_reset = False
        self.new_results = []
        self.new_logs = []
        self.new_misses = []
        self.new_problems = []

    # ------------------------------------------------------------ derived views

    def sorted_iterations(self) -> list[IterationRow]:
        return [self.iterations[k] for k in sorted(self.iterations)]

    @property
    def current(self) -> IterationRow | None:
        return self.iterations[max(self.iterations)] if self.iterations else None

    def verdict_line(self) -> str:
        """``iteration 3: PASS 100/100`` (what the tmux test reads), or the phase."""
        f = self.last_finished
        cur = self.current
        parts = []
        if f is not None:
            total = f.passed + f.failed + f.errors
            parts.append(f"iteration {f.iteration}: {f.verdict} {f.passed}/{total}")
        if cur is not None and cur.finished is None:
            parts.append(f"iteration {cur.iteration} running ({cur.action})")
        if not parts:
            parts.append(self.phase)
        return " | ".join(parts)

    def trend_line(self) -> str:
        f = self.last_finished
        n = self.results_iteration
        c = self.counts
        if n < 0:
            return "no replay yet"
        head = f"iteration {n}: {c['pass']} pass, {c['fail']} fail, {c['error']} error"
        if f is None or f.iteration != n:
            return head + " (running)"
        if not self._trend_base:
            # iteration 1 is not the first when iteration 0 (the start) left no baseline
            return head + (" | first iteration" if n == 0 else " | no earlier result to compare")
        newly_failing = sum(1 for r in self.results if r.trend == "newly failing")
        newly_passing = sum(1 for r in self.results if r.trend == "newly passing")
        # the engine's own trend lists win when present (they cover cancelled rows too)
        nf = len(f.newly_failing) or newly_failing
        np_ = len(f.newly_passing) or newly_passing
        return f"{head} | newly failing {nf}, newly passing {np_}"

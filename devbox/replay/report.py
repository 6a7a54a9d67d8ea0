"""The outcome of a replay: one ``RequestResult`` per request sent, one ``ReplayReport`` per run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devbox.core.diff import Difference
from devbox.core.model import Response
from devbox.replay.stats import LatencyStats

VERDICTS = ("pass", "fail", "error")


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One replayed request and its verdict.

    ``index``: the order in which it was scheduled (0-based). ``copy``: which copy or
    round (0 for a plain replay). ``actual`` is kept only for failures (a passing
    response equals the recording, an error has none), so memory stays flat.
    """

    index: int
    exchange_id: str
    method: str
    target: str
    status: int | None  # what the service answered now (None: error)
    verdict: str  # "pass" | "fail" | "error"
    latency_ms: float
    differences: tuple[Difference, ...] = ()
    actual: Response | None = None
    expected_status: int | None = None
    error: str = ""  # for verdict "error": refused, reset, timed out…
    copy: int = 0

    @property
    def label(self) -> str:
        return f"{self.method} {self.target}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "exchange_id": self.exchange_id,
            "method": self.method,
            "target": self.target,
            "status": self.status,
            "expected_status": self.expected_status,
            "verdict": self.verdict,
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.copy:
            d["copy"] = self.copy
        if self.error:
            d["error"] = self.error
        if self.differences:
            d["differences"] = [x.to_dict() for x in self.differences]
        return d


def trend_of(before: str | None, now: str) -> str:
    """A request's trend: its verdict now against the previous run's (None: it was not in
    that run, or there was none). The one rule every view shows; no trend without a
    baseline. "newly failing" | "newly passing" | "still failing" | "" (passing, as before)."""
    if before is None:
        return ""
    if now == "pass":
        return "newly passing" if before != "pass" else ""
    return "newly failing" if before == "pass" else "still failing"


@dataclass(frozen=True, slots=True)
class Trend:
    """How this run compares with the previous one, by exchange id."""

    newly_failing: tuple[str, ...] = ()
    newly_passing: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)  # exchange id -> "GET /x"


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """A whole run. ``results`` holds every result when ``results_complete``; a load run
    (copies, count, duration) keeps only the failures and errors, in send order."""

    results: tuple[RequestResult, ...]
    total: int
    passed: int
    failed: int
    errors: int
    latency: LatencyStats
    duration_s: float
    target: str
    skipped: int = 0  # recorded exchanges without a response: nothing to compare
    cancelled: bool = False
    results_complete: bool = True
    outbound_checked: bool = False
    concurrency: int = 1
    fail_if: tuple[str, ...] = ()  # violated --fail-if expressions, filled by the caller
    notes: tuple[str, ...] = ()  # things the user should know about this run

    @property
    def throughput_rps(self) -> float:
        return self.total / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def match_pct(self) -> float:
        return 100.0 * self.passed / self.total if self.total else 100.0

    @property
    def counts(self) -> dict[str, int]:
        return {
            "total": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
        }

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0 and not self.fail_if

    def failures(self) -> tuple[RequestResult, ...]:
        return tuple(r for r in self.results if r.verdict != "pass")

    def metrics(self) -> dict[str, float]:
        """Values for ``--fail-if`` (latencies in ms, match in percent)."""
        lat = self.latency
        return {
            "p50": lat.p50_ms,
            "p90": lat.p90_ms,
            "p95": lat.p95_ms,
            "p99": lat.p99_ms,
            "max": lat.max_ms,
            "mean": lat.mean_ms,
            "match": self.match_pct,
            "errors": float(self.errors),
            "failures": float(self.failed),
            "passed": float(self.passed),
            "requests": float(self.total),
            "rps": self.throughput_rps,
        }

    def verdicts(self) -> dict[str, tuple[str, str]]:
        """exchange id -> (worst verdict over its copies, label)."""
        rank = {"pass": 0, "fail": 1, "error": 2}
        out: dict[str, tuple[str, str]] = {}
        for r in self.results:
            prev = out.get(r.exchange_id)
            if prev is None or rank[r.verdict] > rank[prev[0]]:
                out[r.exchange_id] = (r.verdict, r.label)
        return out

    def trend(self, previous: ReplayReport | None) -> Trend:
        now = self.verdicts()
        before = previous.verdicts() if previous is not None else {}
        labels = {k: lbl for k, (_, lbl) in now.items()}
        kinds = {k: trend_of(before[k][0] if k in before else None, v) for k, (v, _) in now.items()}

        def of(kind: str) -> tuple[str, ...]:
            return tuple(k for k, t in kinds.items() if t == kind)

        return Trend(of("newly failing"), of("newly passing"), of("still failing"), labels)

    def verdict_map(self) -> dict[str, str]:
        """exchange id -> its worst verdict: the baseline of the next run's trend."""
        return {k: v for k, (v, _) in self.verdicts().items()}

    def with_fail_if(self, violations: list[str] | tuple[str, ...]) -> ReplayReport:
        from dataclasses import replace

        return replace(self, fail_if=tuple(violations))

"""``--fail-if`` expressions: parsed once, evaluated against a run's metrics. Pure.

An expression is ``METRIC OP VALUE[UNIT]`` and names a condition that *fails* the
run: ``p99 > 250ms``, ``match < 100%``, ``errors > 0``. A malformed expression is
a UsageError that quotes it and says what is accepted.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from devbox.errors import UsageError

# metric -> (kind, description); kind decides which units are accepted
METRICS: dict[str, tuple[str, str]] = {
    "p50": ("latency", "median latency"),
    "p90": ("latency", "90th percentile latency"),
    "p95": ("latency", "95th percentile latency"),
    "p99": ("latency", "99th percentile latency"),
    "max": ("latency", "slowest request"),
    "mean": ("latency", "mean latency"),
    "match": ("percent", "share of requests that matched the recording"),
    "errors": ("count", "requests that got no response"),
    "failures": ("count", "requests whose response differed"),
    "failed": ("count", "requests whose response differed"),
    "passed": ("count", "requests that matched"),
    "requests": ("count", "requests sent"),
    "rps": ("rate", "requests per second"),
}
_ALIASES = {"failed": "failures", "throughput": "rps", "median": "p50", "total": "requests"}

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
}
_UNITS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}
_EXPR = re.compile(
    r"^\s*(?P<metric>[A-Za-z][A-Za-z0-9_]*)\s*(?P<op>>=|<=|==|!=|>|<|=)\s*"
    r"(?P<num>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|us|µs|s|%|/s|rps)?\s*$"
)
_HELP = (
    'write METRIC OP VALUE, e.g. "p99 > 250ms", "match < 100%", "errors > 0"; '
    "metrics: " + ", ".join(sorted(set(METRICS) - {"failed"}))
)


class HasMetrics(Protocol):
    def metrics(self) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class Assertion:
    expression: str  # as the user wrote it
    metric: str
    op: str
    value: float  # in the metric's base unit: ms, percent, count, requests/s

    def violated(self, metrics: Mapping[str, float]) -> bool:
        actual = metrics.get(self.metric)
        if actual is None:
            return False
        return _OPS[self.op](actual, self.value)

    def describe_violation(self, metrics: Mapping[str, float]) -> str:
        actual = metrics.get(self.metric, float("nan"))
        return f"{self.expression.strip()} (was {format_metric(self.metric, actual)})"


def format_metric(metric: str, value: float) -> str:
    kind = METRICS.get(metric, ("count", ""))[0]
    if kind == "latency":
        return f"{value:.1f}ms"
    if kind == "percent":
        return f"{value:.1f}%"
    if kind == "rate":
        return f"{value:.1f}/s"
    return f"{value:g}"


def parse_fail_if(expr: str, where: str = "--fail-if") -> Assertion:
    """Parse one expression; raise UsageError naming it (and ``where`` it came from)."""
    return _parse(expr, f"{where} {expr!r}")


def _parse(expr: str, label: str) -> Assertion:
    m = _EXPR.match(expr)
    if m is None:
        raise UsageError(f"{label}: not an expression", hint=_HELP)
    metric = m.group("metric").lower()
    metric = _ALIASES.get(metric, metric)
    if metric not in METRICS:
        raise UsageError(f"{label}: unknown metric {m.group('metric')!r}", hint=_HELP)
    kind = METRICS[metric][0]
    value = float(m.group("num"))
    unit = m.group("unit")
    if kind == "latency":
        if unit is None:
            raise UsageError(
                f"{label}: a latency needs a unit (ms, s or us)", hint="e.g. p99 > 250ms"
            )
        if unit not in _UNITS:
            raise UsageError(f"{label}: {unit!r} is not a unit of time", hint=_HELP)
        value *= _UNITS[unit]
    elif kind == "percent":
        if unit not in (None, "%"):
            raise UsageError(f"{label}: match is a percentage", hint="e.g. match < 100%")
        if value > 100:
            raise UsageError(f"{label}: a percentage is at most 100")
    elif kind == "rate":
        if unit not in (None, "/s", "rps"):
            raise UsageError(f"{label}: rps is in requests per second", hint="rps < 500")
    elif unit is not None:
        raise UsageError(f"{label}: {metric} is a count and takes no unit")
    return Assertion(expr, metric, m.group("op"), value)


def parse_all(exprs: Iterable[str]) -> tuple[Assertion, ...]:
    return tuple(parse_fail_if(e) for e in exprs)


def evaluate(
    assertions: Iterable[Assertion], report: HasMetrics | Mapping[str, float]
) -> list[str]:
    """The violated assertions, each as one line; empty when all hold."""
    metrics = report if isinstance(report, Mapping) else report.metrics()
    return [a.describe_violation(metrics) for a in assertions if a.violated(metrics)]

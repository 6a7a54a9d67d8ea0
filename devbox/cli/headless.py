"""The headless view of the engine: events become compact terminal lines (or JSON lines).

It is the dashboard's twin: whatever the dashboard shows, this prints, and it
holds no logic of its own beyond formatting.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

from devbox.core.events import (
    BuildProgress,
    Event,
    IterationFinished,
    IterationStarted,
    Log,
    MockMiss,
    Problem,
    ServiceState,
)

_STATE_STYLE = {
    "building": "cyan",
    "starting": "cyan",
    "ready": "green",
    "crashed": "bold red",
    "stopped": "dim",
}
MAX_MISSES_SHOWN = 5


def iteration_dict(ev: IterationFinished) -> dict[str, Any]:
    """One iteration as a JSON object (``devbox watch --json``)."""
    report = ev.report
    d: dict[str, Any] = {
        "iteration": ev.iteration,
        "action": ev.action,
        "verdict": ev.verdict,
        "passed": ev.passed,
        "failed": ev.failed,
        "errors": ev.errors,
        "newly_failing": list(ev.newly_failing),
        "newly_passing": list(ev.newly_passing),
        "still_failing": list(ev.still_failing),
        "stages_ms": {name: round(ms, 1) for name, ms in ev.stages},
        "cancelled": ev.cancelled,
    }
    if report is not None:
        d["failures"] = [r.to_dict() for r in report.failures()]
        d["latency_ms"] = {
            "p50": round(report.latency.p50_ms, 2),
            "p99": round(report.latency.p99_ms, 2),
        }
    return d


class HeadlessPrinter:
    """Subscribes to an engine and prints. Thread-safe: events come from several threads."""

    def __init__(
        self,
        console: Console,
        *,
        json_lines: bool = False,
        show_logs: bool = False,
        quiet: bool = False,
    ) -> None:
        self.console = console
        self.json_lines = json_lines
        self.show_logs = show_logs
        self.quiet = quiet
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}
        self._misses: dict[str, int] = {}

    def __call__(self, ev: Event) -> None:
        with self._lock:
            if self.json_lines:
                self._json(ev)
            else:
                self._text(ev)

    def _json(self, ev: Event) -> None:
        if isinstance(ev, IterationFinished):
            sys.stdout.buffer.write(orjson.dumps(iteration_dict(ev)) + b"\n")
            sys.stdout.flush()
        elif isinstance(ev, Problem):
            payload = {"problem": ev.message, "hint": ev.hint, "logs": list(ev.logs)}
            sys.stdout.buffer.write(orjson.dumps(payload) + b"\n")
            sys.stdout.flush()

    def _text(self, ev: Event) -> None:
        c = self.console
        if isinstance(ev, ServiceState):
            if self._states.get(ev.name) == ev.state:
                return
            self._states[ev.name] = ev.state
            style = _STATE_STYLE.get(ev.state, "")
            detail = f" [dim]{escape(ev.detail)}[/dim]" if ev.detail else ""
            c.print(f"{ev.name}: [{style}]{ev.state}[/{style}] ({ev.runtime}){detail}")
        elif isinstance(ev, BuildProgress):
            if not self.quiet:
                step = f"[{ev.step}/{ev.total}] " if ev.step and ev.total else ""
                c.print(f"[dim]build {ev.name}: {step}{escape(ev.line)}[/dim]")
        elif isinstance(ev, IterationStarted):
            what = ", ".join(ev.changed[:3]) + (" ..." if len(ev.changed) > 3 else "")
            c.print(
                f"[bold]iteration {ev.iteration}[/bold]: {ev.action}"
                + (f" [dim]({escape(what)})[/dim]" if what else "")
            )
        elif isinstance(ev, IterationFinished):
            self._finished(ev)
        elif isinstance(ev, Problem):
            c.print(f"[bold red]problem:[/bold red] {escape(ev.message)}")
            if ev.hint:
                c.print(f"[yellow]hint:[/yellow] {escape(ev.hint)}")
            for line in ev.logs[-10:]:
                c.print(f"  [dim]{escape(line)}[/dim]")
        elif isinstance(ev, MockMiss):
            n = self._misses.get(ev.dependency, 0) + 1
            self._misses[ev.dependency] = n
            if n <= MAX_MISSES_SHOWN:
                c.print(
                    f"[yellow]mock miss[/yellow] {ev.dependency}: {escape(ev.method)} "
                    f"{escape(ev.target)}\n  [dim]{escape(ev.explanation)}[/dim]"
                )
            elif n == MAX_MISSES_SHOWN + 1:
                c.print(f"[yellow]more misses on {ev.dependency}: see /__devbox/misses[/yellow]")
        elif isinstance(ev, Log):
            if ev.source == "devbox":
                if not self.quiet or ev.level != "info":
                    c.print(f"[dim]devbox: {escape(ev.text)}[/dim]")
            elif self.show_logs or ev.level == "error":
                c.print(f"[dim]{ev.source} |[/dim] {escape(ev.text)}")

    def _finished(self, ev: IterationFinished) -> None:
        c = self.console
        verdict = ev.verdict
        if verdict == "CANCELLED":
            c.print(f"iteration {ev.iteration}: [dim]cancelled by a newer change[/dim]")
            return
        style = {"PASS": "bold green", "FAIL": "bold red"}.get(verdict, "bold red")
        total = ev.passed + ev.failed + ev.errors
        stages = " · ".join(f"{name} {ms:.0f}ms" for name, ms in ev.stages)
        c.print(
            f"iteration {ev.iteration}: [{style}]{verdict}[/{style}] "
            f"{ev.passed}/{total} passed"
            + (f", {ev.errors} errors" if ev.errors else "")
            + (f"  [dim]{stages}[/dim]" if stages else "")
        )
        for label, items, colour in (
            ("newly failing", ev.newly_failing, "red"),
            ("newly passing", ev.newly_passing, "green"),
            ("still failing", ev.still_failing, "yellow"),
        ):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                shown = ", ".join(items[:5]) + more
                c.print(f"  [{colour}]{label}[/{colour}]: {escape(shown)}")
        report = ev.report
        if report is not None and not self.quiet:
            for r in report.failures()[:3]:
                c.print(f"  [red]✗[/red] {escape(r.label)}")
                for d in r.differences[:4]:
                    c.print(f"      {escape(d.describe())}")
                if r.error:
                    c.print(f"      {escape(r.error)}")

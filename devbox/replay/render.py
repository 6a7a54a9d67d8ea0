"""The terminal report: a summary, then every failure's differences, colour-coded.

Everything is built from ``rich.text.Text`` (never markup strings), because
response values can contain square brackets; lines are kept short enough to read
at 80 columns, long values are cut by the diff already.
"""

from __future__ import annotations

from collections import Counter

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from devbox.core.diff import Difference
from devbox.replay.report import ReplayReport, RequestResult

_CHANGE_STYLE = {
    "changed": "yellow",
    "type": "yellow",
    "call": "yellow",
    "order": "cyan",
    "added": "green",
    "extra": "green",
    "removed": "red",
    "missing": "red",
}


def _ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.2f}s"
    if v >= 100:
        return f"{v:.0f}ms"
    return f"{v:.1f}ms"


def summary_tables(report: ReplayReport) -> tuple[Table, Table]:
    counts = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("requests", "passed", "failed", "errors", "match", "req/s", "time"):
        counts.add_column(col, justify="right")
    match_style = "green" if report.match_pct >= 100 else "red"
    counts.add_row(
        f"{report.total:,}",
        Text(f"{report.passed:,}", style="green" if report.passed else ""),
        Text(f"{report.failed:,}", style="red" if report.failed else ""),
        Text(f"{report.errors:,}", style="magenta" if report.errors else ""),
        Text(f"{report.match_pct:.1f}%", style=match_style),
        f"{report.throughput_rps:,.0f}",
        f"{report.duration_s:.2f}s",
    )
    lat = report.latency
    latency = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("min", "p50", "p90", "p99", "max", "mean"):
        latency.add_column(col, justify="right")
    latency.add_row(
        *(_ms(v) for v in (lat.min_ms, lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.max_ms, lat.mean_ms))
    )
    return counts, latency


def difference_lines(d: Difference, indent: str = "    ") -> list[Text]:
    style = _CHANGE_STYLE.get(d.change, "yellow")
    lines = [Text(indent) + Text(d.describe(), style=style)]
    if d.detail and d.change in ("text", "format", "call"):
        for raw in d.detail.splitlines():
            if d.change == "call" and raw == d.expected:
                continue
            if raw.startswith(("+++", "---")):
                st = "bold"
            elif raw.startswith("+"):
                st = "green"
            elif raw.startswith("-"):
                st = "red"
            elif raw.startswith("@@"):
                st = "cyan"
            else:
                st = "dim"
            lines.append(Text(indent + "  ") + Text(raw, style=st))
    return lines


def result_header(r: RequestResult) -> Text:
    if r.verdict == "error":
        t = Text("! ", style="bold magenta") + Text(r.label, style="bold")
        t += Text(f"  error: {r.error}", style="magenta")
        return t
    t = Text("✗ ", style="bold red") + Text(r.label, style="bold")
    if r.status != r.expected_status:
        t += Text(f"  {r.expected_status} → {r.status}", style="red")
    else:
        t += Text(f"  {r.status}", style="dim")
    t += Text(f"  {_ms(r.latency_ms)}  [{r.exchange_id}]", style="dim")
    return t


def render_terminal(
    report: ReplayReport,
    console: Console,
    *,
    max_failures: int = 30,
    max_differences: int = 20,
    title: str | None = None,
) -> None:
    """Print the report: a summary, then the differences of each failure."""
    heading = title or f"Replay against {report.target}"
    extra = f" · concurrency {report.concurrency}"
    if report.outbound_checked:
        extra += " · outbound calls checked"
    if report.cancelled:
        extra += " · cancelled"
    console.print(Text(heading, style="bold") + Text(extra, style="dim"))
    counts, latency = summary_tables(report)
    console.print(counts)
    console.print(latency)
    for note in report.notes:
        console.print(Text(f"note: {note}", style="dim"))
    failures = [r for r in report.results if r.verdict != "pass"]
    for r in failures[:max_failures]:
        console.print(result_header(r))
        shown = r.differences[:max_differences]
        for d in shown:
            for line in difference_lines(d):
                console.print(line, overflow="fold")
        if len(r.differences) > len(shown):
            console.print(
                Text(f"    … {len(r.differences) - len(shown)} more differences", style="dim")
            )
    hidden = (report.failed + report.errors) - min(len(failures), max_failures)
    if hidden > 0:
        rest = Counter(r.label for r in failures[max_failures:])
        common = ", ".join(f"{k} x{v}" for k, v in rest.most_common(3))
        more = f" ({common})" if common else ""
        console.print(
            Text(f"… {hidden:,} more failing requests{more}; see --report json", style="dim")
        )
    for violation in report.fail_if:
        console.print(Text("✗ fail-if ", style="bold red") + Text(violation, style="red"))
    if report.total == 0:
        console.print(Text("nothing was replayed", style="yellow"))
    elif report.failed == 0 and report.errors == 0:
        console.print(
            Text(f"✓ all {report.total:,} requests matched the recording", style="bold green")
        )

"""The dashboard's five panels. Each renders from ``DashboardState`` when the app
says its part changed; none talks to the engine (the app does)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Label, ProgressBar, RichLog, Static

from devbox.core.events import Log, MockMiss, ReplayResult
from devbox.tui import keys
from devbox.tui.state import (
    DashboardState,
    ResultRow,
    compile_filter,
    log_text,
    result_text,
)

if TYPE_CHECKING:
    from devbox.tui.app import DevboxApp

LOG_VIEW_LINES = 2000


@dataclass(frozen=True, slots=True)
class Palette:
    """Semantic styles taken from the current theme, so light and dark both read well."""

    error: str = "red"
    success: str = "green"
    warning: str = "yellow"
    accent: str = "blue"
    diff_bg: str = "on #441E27"
    noise_bg: str = "on #593E19"

    @classmethod
    def from_variables(cls, v: dict[str, str]) -> Palette:
        def pick(name: str, default: str) -> str:
            value = v.get(name, "")
            return value if value.startswith("#") else default

        return cls(
            error=pick("text-error", "red"),
            success=pick("text-success", "green"),
            warning=pick("text-warning", "yellow"),
            accent=pick("text-primary", "blue"),
            diff_bg="on " + pick("error-muted", "#441E27"),
            noise_bg="on " + pick("warning-muted", "#593E19"),
        )

    def verdict(self, verdict: str) -> str:
        return {"pass": self.success, "fail": self.error, "error": self.error}.get(verdict, "")

    def state(self, state: str) -> str:
        return {
            "ready": self.success,
            "crashed": f"bold {self.error}",
            "building": self.warning,
            "starting": self.warning,
        }.get(state, "dim")


BindingList = list[Binding | tuple[str, str] | tuple[str, str, str]]


def key_bindings(ks: tuple[keys.Key, ...]) -> BindingList:
    return [Binding(k, a, lbl, show=s) for k, a, lbl, s in keys.bindings(ks)]


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.0f}" if ms >= 10 else f"{ms:.1f}"


def fmt_duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


class Panel(Vertical):
    """A tab's content; ``render_state`` is called with the state after each batch."""

    def devbox(self) -> DevboxApp:
        from devbox.tui.app import DevboxApp

        app = self.app
        assert isinstance(app, DevboxApp)
        return app

    def render_state(self, state: DashboardState, palette: Palette, full: bool = False) -> None:
        raise NotImplementedError

    def focus_main(self) -> None:
        for table in self.query(DataTable):
            table.focus()
            return


# ---------------------------------------------------------------- services


class ServicesPanel(Panel):
    def compose(self) -> ComposeResult:
        yield DataTable(id="services", cursor_type="row", zebra_stripes=False)
        with Vertical(id="build-box"):
            yield Label("", id="build-label")
            yield ProgressBar(id="build-progress", show_eta=False)
        yield Label("Problems", id="problems-title", classes="section")
        with VerticalScroll(id="problems-scroll"):
            yield Static("none", id="problems")

    def on_mount(self) -> None:
        t = self.query_one("#services", DataTable)
        for label, key in (
            ("Service", "name"),
            ("Runtime", "runtime"),
            ("State", "state"),
            ("Port", "port"),
            ("Restarts", "restarts"),
            ("Uptime", "uptime"),
            ("Image / command", "detail"),
        ):
            t.add_column(label, key=key)
        self.query_one("#build-box").display = False

    def render_state(self, state: DashboardState, palette: Palette, full: bool = False) -> None:
        t = self.query_one("#services", DataTable)
        now = self.devbox().now()
        for name, s in state.services.items():
            uptime = fmt_duration(now - s.since) if s.state == "ready" else ""
            cells: list[Any] = [
                Text(name, style="bold"),
                s.runtime,
                Text(s.state, style=palette.state(s.state)),
                str(s.port) if s.port else "",
                str(s.restarts),
                uptime,
                Text(s.detail),
            ]
            if name in t.rows:
                for col, value in zip(
                    ("name", "runtime", "state", "port", "restarts", "uptime", "detail"),
                    cells,
                    strict=True,
                ):
                    t.update_cell(name, col, value, update_width=True)
            else:
                t.add_row(*cells, key=name)
        box = self.query_one("#build-box")
        building = [
            b
            for n, b in state.build.items()
            if state.services.get(n) is None or state.services[n].state == "building"
        ]
        box.display = bool(building)
        if building:
            b = building[-1]
            step = f" step {b.step}/{b.total}" if b.step and b.total else ""
            self.query_one("#build-label", Label).update(
                Text(f"building {b.name}{step}: {b.line}", overflow="ellipsis", no_wrap=True)
            )
            bar = self.query_one("#build-progress", ProgressBar)
            if b.step and b.total:
                bar.update(total=b.total, progress=b.step)
            else:
                bar.update(total=None)
        problems = self.query_one("#problems", Static)
        if state.problems:
            text = Text()
            for p in reversed(state.problems):
                text.append(f"{clock(p.at)} ", style="dim")
                text.append(p.message + "\n", style=palette.error)
                if p.hint:
                    text.append(f"         hint: {p.hint}\n", style=palette.warning)
                for line in p.logs[-5:]:
                    text.append(f"         {line}\n", style="dim")
            problems.update(text)
        else:
            problems.update(Text("none", style="dim"))

    def tick(self, state: DashboardState) -> None:
        """Once a second: the uptime column."""
        t = self.query_one("#services", DataTable)
        now = self.devbox().now()
        for name, s in state.services.items():
            if s.state == "ready" and name in t.rows:
                t.update_cell(name, "uptime", fmt_duration(now - s.since))


# ---------------------------------------------------------------- mocks


class MocksPanel(Panel):
    BINDINGS = key_bindings(keys.MOCKS)

    def compose(self) -> ComposeResult:
        yield DataTable(id="mocks", cursor_type="row")
        yield Label("Misses (select one to see why)", classes="section")
        yield DataTable(id="misses", cursor_type="row")
        with VerticalScroll(id="explanation-scroll"):
            yield Static(Text("no misses", style="dim"), id="explanation")

    def on_mount(self) -> None:
        t = self.query_one("#mocks", DataTable)
        for label, key in (
            ("Dependency", "dependency"),
            ("Mode", "mode"),
            ("Port", "port"),
            ("Hits", "hits"),
            ("Misses", "misses"),
            ("Last miss", "last"),
        ):
            t.add_column(label, key=key)
        m = self.query_one("#misses", DataTable)
        m.add_column("Time", key="time")
        m.add_column("Dependency", key="dependency")
        m.add_column("Request", key="request")
        self._misses: dict[str, MockMiss] = {}
        self._seq = 0

    def selected_dependency(self) -> str | None:
        t = self.query_one("#mocks", DataTable)
        if t.row_count == 0:
            return None
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        return str(key) if key is not None else None

    def render_state(self, state: DashboardState, palette: Palette, full: bool = False) -> None:
        t = self.query_one("#mocks", DataTable)
        names = list(dict.fromkeys([*self.devbox().dependency_names(), *state.mocks]))
        for name in names:
            s = state.mocks.get(name)
            last = state.last_miss.get(name)
            mode_style = {
                "replay": palette.success,
                "passthrough": palette.warning,
                "record": palette.error,
            }.get(s.mode if s else "", "dim")
            cells: list[Any] = [
                Text(name, style="bold"),
                Text(s.mode if s else "-", style=mode_style),
                str(s.port) if s and s.port else "",
                str(s.hits) if s else "0",
                Text(str(s.misses) if s else "0", style=palette.error if s and s.misses else ""),
                Text(
                    s.last_miss
                    if s and s.last_miss
                    else (f"{last.method} {last.target}" if last else ""),
                    overflow="ellipsis",
                ),
            ]
            if name in t.rows:
                for col, value in zip(
                    ("dependency", "mode", "port", "hits", "misses", "last"), cells, strict=True
                ):
                    t.update_cell(name, col, value, update_width=True)
            else:
                t.add_row(*cells, key=name)
        m = self.query_one("#misses", DataTable)
        new = list(state.misses) if full else state.new_misses
        if full:
            m.clear()
            self._misses.clear()
        for miss in new:
            self._seq += 1
            key = str(self._seq)
            self._misses[key] = miss
            m.add_row(
                clock(miss.at), miss.dependency, Text(f"{miss.method} {miss.target}"), key=key
            )
        if len(self._misses) > 1000:
            for key in list(self._misses)[:-500]:
                del self._misses[key]
                m.remove_row(key)
        if new and m.row_count == len(new):
            self._show(new[0])

    def _show(self, miss: MockMiss) -> None:
        text = Text()
        text.append(f"{miss.dependency}: {miss.method} {miss.target}\n", style="bold")
        text.append(miss.explanation or "(no explanation)")
        self.query_one("#explanation", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "misses" and event.row_key.value in self._misses:
            self._show(self._misses[str(event.row_key.value)])

    def action_explain(self) -> None:
        m = self.query_one("#misses", DataTable)
        if m.row_count:
            m.focus()

    def action_switch_mode(self) -> None:
        self.devbox().choose_mode(self.selected_dependency())


# ---------------------------------------------------------------- replay results


class ReplayPanel(Panel):
    BINDINGS = key_bindings(keys.REPLAY)

    def compose(self) -> ComposeResult:
        yield Static("no replay yet", id="trend")
        with Horizontal(classes="filter-row"):
            yield Input(
                placeholder="filter: regex, !regex inverts", id="results-filter", compact=True
            )
            yield Static("", id="results-filter-state")
        yield DataTable(id="results", cursor_type="row")

    def on_mount(self) -> None:
        t = self.query_one("#results", DataTable)
        for label, key in (
            ("#", "index"),
            ("Method", "method"),
            ("Route", "route"),
            ("Status", "status"),
            ("Verdict", "verdict"),
            ("ms", "latency"),
            ("Trend", "trend"),
        ):
            t.add_column(label, key=key)
        self._rows: dict[str, ResultRow] = {}
        self._match: Callable[[str], bool] = lambda s: True
        self.failures_only = False
        self._sorted_for = -1

    def _visible(self, row: ResultRow) -> bool:
        r = row.result
        if self.failures_only and r.verdict == "pass":
            return False
        return self._match(result_text(r))

    def _cells(self, row: ResultRow, palette: Palette) -> list[Any]:
        r = row.result
        trend_style = {"newly failing": palette.error, "still failing": palette.warning}.get(
            row.trend, palette.success
        )
        return [
            str(r.index),
            r.method,
            Text(r.target, overflow="ellipsis", no_wrap=True),
            "" if r.status is None else str(r.status),
            Text(r.verdict.upper(), style=f"bold {palette.verdict(r.verdict)}"),
            fmt_ms(r.latency_ms),
            Text(row.trend, style=trend_style),
        ]

    def render_state(self, state: DashboardState, palette: Palette, full: bool = False) -> None:
        self.query_one("#trend", Static).update(Text(state.trend_line()))
        t = self.query_one("#results", DataTable)
        if full or state.results_reset:
            t.clear()
            self._rows.clear()
            rows = state.results
        else:
            rows = state.new_results
        for row in rows:
            if not self._visible(row):
                continue
            key = f"{row.result.iteration}:{row.result.index}"
            if key in self._rows:
                continue
            self._rows[key] = row
            t.add_row(*self._cells(row, palette), key=key)
        # results arrive in completion order; once the iteration is over, show them in
        # recorded order (while it runs, new rows at the bottom are easier to follow)
        f = state.last_finished
        done = f is not None and f.iteration == state.results_iteration
        if done and (rows or self._sorted_for != state.results_iteration):
            t.sort("index", key=lambda cell: int(str(cell)))
            self._sorted_for = state.results_iteration

    def selected(self) -> ResultRow | None:
        t = self.query_one("#results", DataTable)
        if t.row_count == 0:
            return None
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        return self._rows.get(str(key))

    def selected_result(self) -> ReplayResult | None:
        row = self.selected()
        return row.result if row else None

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "results-filter":
            return
        self._match, error = compile_filter(event.value)
        self.query_one("#results-filter-state", Static).update(Text(error or "", style="dim"))
        app = self.devbox()
        self.render_state(app.state, app.palette, full=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#results", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "results":
            event.stop()
            self.action_open_diff()

    def action_open_diff(self) -> None:
        r = self.selected_result()
        if r is not None:
            self.devbox().open_diff(r)

    def action_mark_noise(self) -> None:
        self.devbox().mark_noise(self.selected_result(), None)

    def action_accept(self) -> None:
        self.devbox().accept(self.selected_result())

    def action_edit(self) -> None:
        self.devbox().edit(self.selected_result())

    def action_toggle_failures(self) -> None:
        self.failures_only = not self.failures_only
        app = self.devbox()
        self.render_state(app.state, app.palette, full=True)
        app.notify("showing failures only" if self.failures_only else "showing all requests")

    def action_focus_filter(self) -> None:
        self.query_one("#results-filter", Input).focus()


# ---------------------------------------------------------------- timeline


class TimelinePanel(Panel):
    def compose(self) -> ComposeResult:
        yield DataTable(id="timeline", cursor_type="row")

    def on_mount(self) -> None:
        t = self.query_one("#timeline", DataTable)
        for label, key in (
            ("#", "iteration"),
            ("Action", "action"),
            ("Changed", "changed"),
            ("apply", "applied"),
            ("ready", "ready"),
            ("replay", "replayed"),
            ("diff", "diffed"),
            ("Verdict", "verdict"),
        ):
            t.add_column(label, key=key)

    def render_state(self, state: DashboardState, palette: Palette, full: bool = False) -> None:
        t = self.query_one("#timeline", DataTable)
        for row in state.sorted_iterations():
            changed = ", ".join(p.rsplit("/", 1)[-1] for p in row.changed) or row.reason or "-"
            f = row.finished
            verdict = row.verdict
            if f is not None and not f.cancelled:
                total = f.passed + f.failed + f.errors
                verdict = f"{verdict} {f.passed}/{total}"
            style = {
                "PASS": palette.success,
                "FAIL": palette.error,
                "RUNNING": palette.warning,
            }.get(row.verdict, "dim")
            cells: list[Any] = [
                str(row.iteration),
                row.action,
                Text(changed, overflow="ellipsis", no_wrap=True),
                fmt_ms(row.stages.get("applied")),
                fmt_ms(row.stages.get("ready")),
                fmt_ms(row.stages.get("replayed")),
                fmt_ms(row.stages.get("diffed")),
                Text(verdict, style=f"bold {style}"),
            ]
            key = str(row.iteration)
            if key in t.rows:
                for col, value in zip(
                    (
                        "iteration",
                        "action",
                        "changed",
                        "applied",
                        "ready",
                        "replayed",
                        "diffed",
                        "verdict",
                    ),
                    cells,
                    strict=True,
                ):
                    t.update_cell(key, col, value, update_width=True)
            else:
                t.add_row(*cells, key=key)
                t.move_cursor(row=t.row_count - 1)


# ---------------------------------------------------------------- logs


class LogsPanel(Panel):
    BINDINGS = key_bindings(keys.LOGS)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="filter-row"):
            yield Input(placeholder="filter: regex, !regex inverts", id="log-filter", compact=True)
            yield Static("following", id="log-state")
        yield RichLog(
            id="log",
            max_lines=LOG_VIEW_LINES,
            wrap=False,
            markup=False,
            highlight=False,
            auto_scroll=True,
        )

    def on_mount(self) -> None:
        self.following = True
        self._match: Callable[[str], bool] = lambda s: True
        self._filter_error: str | None = None
        self._held = 0
        self._cleared_at = 0  # lines before this index in state.logs are cleared

    def focus_main(self) -> None:
        self.query_one("#log", RichLog).focus()

    def _line(self, line: Log, palette: Palette) -> Text:
        style = {"error": palette.error, "warning": palette.warning}.get(line.level, "")
        text = Text(no_wrap=True)
        text.append(clock(line.at) + " ", style="dim")
        text.append(f"{line.source:>8} ", style=palette.accent)
        text.append(line.text, style=style)
        return text

    def _state_label(self) -> None:
        label = "following" if self.following else f"paused, {self._held} new"
        if self._filter_error:
            label += f" | {self._filter_error}"
        self.query_one("#log-state", Static).update(Text(label, style="dim"))

    def render_state(self, state: DashboardState, palette: Palette, full: bool = False) -> None:
        if not self.following and not full:
            self._held += len(state.new_logs)
            self._state_label()
            return
        log = self.query_one("#log", RichLog)
        if full:
            log.clear()
            dropped = state.log_total - len(state.logs)
            lines = list(state.logs)[max(0, self._cleared_at - dropped) :]
        else:
            lines = state.new_logs
        picked = [ln for ln in lines if self._match(log_text(ln))][-LOG_VIEW_LINES:]
        for ln in picked:
            log.write(self._line(ln, palette), scroll_end=self.following)
        self._held = 0
        self._state_label()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "log-filter":
            return
        self._match, self._filter_error = compile_filter(event.value)
        app = self.devbox()
        self.render_state(app.state, app.palette, full=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.focus_main()

    def action_toggle_follow(self) -> None:
        self.following = not self.following
        app = self.devbox()
        if self.following:
            self.render_state(app.state, app.palette, full=True)
        self._state_label()

    def action_clear_logs(self) -> None:
        app = self.devbox()
        self._cleared_at = app.state.log_total
        self.query_one("#log", RichLog).clear()
        self._held = 0
        self._state_label()

    def action_focus_filter(self) -> None:
        self.query_one("#log-filter", Input).focus()

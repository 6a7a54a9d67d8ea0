"""The dashboard's panels: the base every tab's content derives from, and the
Services, Mocks and Timeline tabs (Replay is in ``results``, Logs in ``logs``). Each
renders from ``DashboardState`` when the app says its part changed; none talks to the
engine (the app does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Label, ProgressBar, Static

from devbox.core.events import MockMiss
from devbox.tui import keys
from devbox.tui.state import DashboardState
from devbox.tui.style import Palette, clock, fmt_duration, fmt_ms, key_bindings

if TYPE_CHECKING:
    from devbox.tui.app import DevboxApp


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
        if state.problem_rows:
            text = Text()
            for row in reversed(state.problem_rows):
                p = row.problem
                text.append(f"{clock(p.at)} ", style="dim")
                if row.resolved:
                    # kept as history, out of the way: a later iteration ran without it
                    text.append(f"resolved: {p.message}\n", style="dim")
                    continue
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


class FilterInput(Input):
    """A panel's filter box. Esc (or Enter) hands the keys back to the panel, so the
    keys that work anywhere work again; the filter text stays applied."""

    BINDINGS = [Binding("escape", "leave", "Leave filter", show=False)]

    def action_leave(self) -> None:
        for panel in self.ancestors:
            if isinstance(panel, Panel):
                panel.focus_main()
                return


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

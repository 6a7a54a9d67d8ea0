"""The Replay tab: the latest iteration's results, their trend, a filter and the
failures-only view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Static

from devbox.core.events import ReplayResult
from devbox.tui import keys
from devbox.tui.panels import FilterInput, Panel
from devbox.tui.state import DashboardState, ResultRow, compile_filter, result_text
from devbox.tui.style import Palette, fmt_ms, key_bindings


class ReplayPanel(Panel):
    BINDINGS = key_bindings(keys.REPLAY)

    def compose(self) -> ComposeResult:
        yield Static("no replay yet", id="trend")
        with Horizontal(classes="filter-row"):
            yield FilterInput(
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
        self._filter = ""
        self._filter_error: str | None = None
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
        self._view_label(state, palette)

    def _view_label(self, state: DashboardState, palette: Palette) -> None:
        """Next to the filter: which view is on and how much it hides, so a short table
        is never mistaken for a short replay."""
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.failures_only or self._filter:
            what = " + ".join(
                w
                for w, on in (("failures only", self.failures_only), ("filter", self._filter))
                if on
            )
            text.append(
                f"{what}: {len(self._rows)} of {len(state.results)} shown",
                style=f"bold {palette.warning}",
            )
        if self._filter_error:
            text.append((" | " if text else "") + self._filter_error, style="dim")
        self.query_one("#results-filter-state", Static).update(text)

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
        self._match, self._filter_error = compile_filter(event.value)
        self._filter = event.value
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

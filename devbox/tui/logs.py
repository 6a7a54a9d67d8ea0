"""The Logs tab: the service's and devbox's lines, filtered, paused or following."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, RichLog, Static

from devbox.core.events import Log
from devbox.tui import keys
from devbox.tui.panels import FilterInput, Panel
from devbox.tui.state import DashboardState, compile_filter, log_text
from devbox.tui.style import Palette, clock, key_bindings

LOG_VIEW_LINES = 2000


class LogsPanel(Panel):
    BINDINGS = key_bindings(keys.LOGS)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="filter-row"):
            yield FilterInput(
                placeholder="filter: regex, !regex inverts", id="log-filter", compact=True
            )
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

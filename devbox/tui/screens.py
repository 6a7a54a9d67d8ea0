"""Screens over the dashboard: the side-by-side diff, confirmations, choices, help."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Label, OptionList, Static
from textual.widgets.option_list import Option

from devbox.core.diff import Difference
from devbox.core.events import ReplayResult
from devbox.core.profile import ReplaySettings
from devbox.tui import keys
from devbox.tui.diffview import DiffView, Line, diff_of, rule_from_text, status_value
from devbox.tui.style import Palette, key_bindings

if TYPE_CHECKING:
    from devbox.tui.app import DevboxApp


class DiffScreen(Screen[None]):
    """Recorded vs actual, side by side, differing lines highlighted; the list of
    differences below is where a field is picked to mark as noise."""

    BINDINGS = key_bindings(keys.DIFF)

    def __init__(self, result: ReplayResult, settings: ReplaySettings, palette: Palette) -> None:
        super().__init__()
        self.result = result
        self.palette = palette
        self.view: DiffView = diff_of(result, settings)
        self._diffs: list[tuple[str, str | None]] = []  # (description, path) per row

    def compose(self) -> ComposeResult:
        r = self.result
        title = Text()
        title.append(f"{r.method} {r.target}", style="bold")
        title.append(f"  {r.verdict.upper()}", style=f"bold {self.palette.verdict(r.verdict)}")
        rec = status_value(r.recorded) if r.recorded else r.expected_status
        rec = "?" if rec is None else rec
        act = status_value(r.actual) if r.actual else "-" if r.status is None else r.status
        title.append(f"  recorded {rec} / actual {act}  {r.latency_ms:.0f} ms", style="dim")
        yield Static(title, id="diff-title")
        with Horizontal(id="diff-heads"):
            yield Label("recorded", classes="diff-head")
            yield Label("actual", classes="diff-head")
        with VerticalScroll(id="diff-scroll"):
            yield Static(self._body(), id="diff-body")
        yield Label("Differences (n marks the selected one as noise)", classes="section")
        yield DataTable(id="differences", cursor_type="row")
        yield Footer()

    def _body(self) -> Table | Text:
        if self.result.recorded is None and self.result.actual is None:
            if self.result.verdict == "pass":
                return Text(
                    "Passed: the response matched the recording (response bodies are "
                    "kept for failing requests only).",
                    style="dim",
                )
            return Text(
                "The engine sent no response bodies for this request; "
                "the differences it reported are listed below.",
                style="dim",
            )
        table = Table(show_header=False, box=None, expand=True, padding=(0, 1, 0, 0))
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        for left, right in self.view.rows:
            table.add_row(self._cell(left), self._cell(right))
        if self.view.truncated:
            table.add_row(Text("(cut)", style="dim"), Text("(cut)", style="dim"))
        return table

    def _cell(self, line: Line | None) -> Text:
        if line is None:
            return Text("")
        if line.mark == "diff":
            return Text(line.text, style=f"bold {self.palette.diff_bg}")
        if line.mark == "noise":
            return Text(line.text, style=f"dim {self.palette.noise_bg}")
        return Text(line.text)

    def on_mount(self) -> None:
        t = self.query_one("#differences", DataTable)
        t.add_column("Difference", key="what")
        t.add_column("", key="kind")
        rows: list[tuple[str, str | None, str]] = []
        if self.view.differences or self.view.noise:
            rows += [(d.describe(), _path(d), "fails") for d in self.view.differences]
            rows += [(d.describe(), _path(d), "ignored") for d in self.view.noise]
        else:
            rows += [(s, rule_from_text(s), "fails") for s in self.result.differences]
        for i, (text, path, kind) in enumerate(rows):
            style = self.palette.error if kind == "fails" else "dim"
            t.add_row(
                Text(text, overflow="ellipsis", no_wrap=True), Text(kind, style=style), key=str(i)
            )
            self._diffs.append((text, path))
        if not rows:
            t.add_row(Text("no differences", style="dim"), "", key="none")
        t.focus()

    def selected_path(self) -> str | None:
        t = self.query_one("#differences", DataTable)
        if not self._diffs or t.row_count == 0:
            return None
        return self._diffs[t.cursor_row][1] if t.cursor_row < len(self._diffs) else None

    def _app(self) -> DevboxApp:
        from devbox.tui.app import DevboxApp

        assert isinstance(self.app, DevboxApp)
        return self.app

    def action_mark_noise(self) -> None:
        self._app().mark_noise(self.result, self.selected_path(), view=self.view)

    def action_accept(self) -> None:
        self._app().accept(self.result)

    def action_edit(self) -> None:
        self._app().edit(self.result)

    def action_close(self) -> None:
        self.dismiss(None)


def _path(d: Difference) -> str | None:
    return d.where if d.where.startswith(("$", "header:")) else None


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no before anything is written to disk."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, message: Text | str, yes: str = "Yes") -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.message, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="primary")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one of a few values (a mock mode, a noise rule); Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        message: Text | str,
        options: list[tuple[str, str]],
        current: str | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.options = options
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.message, classes="dialog-body")
            yield OptionList(
                *[Option(Text(label), id=value) for value, label in self.options],
                id="choices",
            )
            yield Static(Text("Enter: choose   Esc: cancel", style="dim"))

    def on_mount(self) -> None:
        ol = self.query_one("#choices", OptionList)
        ol.focus()
        for i, (value, _) in enumerate(self.options):
            if value == self.current:
                ol.highlighted = i
                break
        else:
            ol.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=True, expand=True, padding=(0, 1))
        table.add_column("Key", no_wrap=True, style="bold")
        table.add_column("Where", no_wrap=True, style="dim")
        table.add_column("What it does")
        for k in keys.ALL:
            shown = " ".join(keys.display(part) for part in k.key.split(","))
            table.add_row(shown, k.where, k.description)
        table.add_row("ctrl+p", "anywhere", "Command palette: every action by name")
        with Vertical(classes="dialog", id="help"):
            yield Label("devbox dashboard keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(Group(table))
            yield Static(Text("Esc or ? closes", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)

"""What the dashboard does with a selection: open the diff, switch a mock's mode, mark a
field as noise, accept a new response (one, or every identical one), open the
recording in an editor. A mixin of ``DevboxApp``; the engine calls go through its
``call_engine`` (a worker thread), the dialogs through Textual screens."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from rich.text import Text
from textual.app import App, SuspendNotSupported

from devbox.core.events import ReplayResult
from devbox.core.model import Response
from devbox.engine.driver import MOCK_MODES, EngineDriver, find_exchange
from devbox.tui.diffview import DiffView, diff_of, rule_candidates, rule_from_text
from devbox.tui.editor import editor_command
from devbox.tui.logs import LogsPanel
from devbox.tui.panels import MocksPanel, Panel
from devbox.tui.results import ReplayPanel
from devbox.tui.screens import ChoiceScreen, ConfirmScreen, DiffScreen
from devbox.tui.state import DashboardState
from devbox.tui.style import Palette

MODE_HELP = {
    "replay": "replay: answer from the recording; a request not recorded is a miss",
    "passthrough": "passthrough: answer from the recording, forward misses to the real upstream",
    "record": "record: forward to the real upstream and record what comes back",
}


class Acting(App[int]):
    """The selection actions of ``DevboxApp`` (which provides what is declared here)."""

    driver: EngineDriver
    state: DashboardState
    palette: Palette

    def _panel(self, tab_id: str) -> Panel:
        raise NotImplementedError

    def call_engine(
        self,
        what: str,
        fn: Callable[[], object],
        *,
        done: str | None = None,
        after: Callable[[], None] | None = None,
    ) -> None:
        raise NotImplementedError

    def dependency_names(self) -> list[str]:
        return [d.name for d in self.driver.profile.dependencies]

    def selected_result(self) -> ReplayResult | None:
        panel = self._panel("replay")
        assert isinstance(panel, ReplayPanel)
        return panel.selected_result()

    def selected_dependency(self) -> str | None:
        panel = self._panel("mocks")
        assert isinstance(panel, MocksPanel)
        return panel.selected_dependency()

    def open_diff(self, result: ReplayResult | None) -> None:
        if result is None:
            self.notify("no request selected", severity="warning")
            return
        self.push_screen(DiffScreen(result, self.driver.profile.replay, self.palette))

    def choose_mode(self, dependency: str | None) -> None:
        if dependency is None:
            self.notify("this profile has no dependencies", severity="warning")
            return
        stats = self.state.mocks.get(dependency)
        current = stats.mode if stats else None
        self.push_screen(
            ChoiceScreen(
                f"Mock mode of {dependency}",
                "What the mock does with the requests your service sends it:",
                [(m, MODE_HELP[m]) for m in MOCK_MODES],
                current,
            ),
            partial(self._mode_chosen, dependency),
        )

    def _mode_chosen(self, dependency: str, mode: str | None) -> None:
        if mode:
            self.set_mode(dependency, mode)

    def set_mode(self, dependency: str, mode: str) -> None:
        def after() -> None:
            old = self.state.mocks.get(dependency)
            if old is not None:
                self.state.apply(replace(old, mode=mode))

        self.call_engine(
            f"mock {dependency}",
            partial(self.driver.set_mock_mode, dependency, mode),
            done=f"{dependency}: {mode}",
            after=after,
        )

    def mark_noise(
        self, result: ReplayResult | None, path: str | None, view: DiffView | None = None
    ) -> None:
        if result is None:
            self.notify("select a request first", severity="warning")
            return
        if path:
            paths: list[str] = [path]
        else:
            view = view or diff_of(result, self.driver.profile.replay)
            paths = [d.where for d in view.differences]
            if not paths:
                paths = [p for p in (rule_from_text(s) for s in result.differences) if p]
        rules = list(dict.fromkeys(r for p in paths for r in rule_candidates(p)))
        if not rules:
            self.notify(
                "no field here can be ignored by a rule (status, text and binary bodies, "
                "and outbound calls are not noise)",
                severity="warning",
            )
            return
        profile = _rel(self.driver.profile.path, self.driver.profile.root)
        message = Text()
        message.append("Add a rule to ")
        message.append("[replay] ignore", style="bold")
        message.append(f" in {profile}? ")
        message.append("The file keeps its comments and layout; the next diff skips the field.")
        options = [(r, f"{r}   (every element)" if "[*]" in r else r) for r in rules]
        self.push_screen(
            ChoiceScreen("Mark as noise", message, options, rules[0]), self._noise_chosen
        )

    def _noise_chosen(self, rule: str | None) -> None:
        if not rule:
            return
        profile = _rel(self.driver.profile.path, self.driver.profile.root)
        self.call_engine(
            "mark noise",
            partial(self.driver.mark_noise, rule),
            done=f"{rule} added to [replay] ignore in {profile}",
        )

    def accept(self, result: ReplayResult | None) -> None:
        if result is None:
            self.notify("select a request first", severity="warning")
            return
        if not result.exchange_id:
            self.notify("this request has no recorded exchange id", severity="warning")
            return
        actual = result.actual
        if actual is None:
            self.notify(
                "the engine did not send the actual response of this request", severity="warning"
            )
            return
        path = self.driver.recording_path(result.exchange_id)
        where = _rel(path, self.driver.profile.root) if path else "its recording"
        same = self.identical(result)
        message = Text()
        message.append("Replace the recorded response of ")
        message.append(f"{result.method} {result.target}", style="bold")
        message.append(f"\n(exchange {result.exchange_id} in {where})\nwith the actual one: ")
        message.append(f"HTTP {actual.status}, {len(actual.body)} bytes", style="bold")
        message.append("?\nThe file is rewritten atomically; every other exchange is kept.")
        if not same:
            self.push_screen(
                ConfirmScreen("Accept the new response", message, yes="Accept"),
                partial(self._accept_chosen, [result]),
            )
            return
        message.append(
            f"\n{len(same)} more recorded request{'s' if len(same) > 1 else ''} of this "
            "route had the same recorded response and got the same actual one."
        )
        options = [
            ("one", "Accept this request only"),
            ("all", f"Accept all {len(same) + 1} identical requests"),
        ]
        self.push_screen(
            ChoiceScreen("Accept the new response", message, options, "all"),
            lambda choice: self._accept_chosen(
                [result, *same] if choice == "all" else [result], bool(choice)
            ),
        )

    def identical(self, result: ReplayResult) -> list[ReplayResult]:
        """Other failing results of the shown iteration that are the same request with the
        same outcome: method, route, recorded and actual response all equal. Accepting
        one of three identical calls would leave the other two failing."""
        return [
            r.result
            for r in self.state.results
            if r.result.exchange_id
            and r.result.exchange_id != result.exchange_id
            and r.result.verdict != "pass"
            and (r.result.method, r.result.target) == (result.method, result.target)
            and _outcome(r.result.recorded) == _outcome(result.recorded)
            and _outcome(r.result.actual) == _outcome(result.actual)
        ]

    def _accept_chosen(self, results: list[ReplayResult], yes: bool | None) -> None:
        if not yes:
            return
        first = results[0]
        pairs = [(r.exchange_id, r.actual) for r in results if r.exchange_id and r.actual]

        def accept_all() -> None:
            for exchange_id, actual in pairs:
                self.driver.accept_response(exchange_id, actual)

        many = f" ({len(pairs)} exchanges)" if len(pairs) > 1 else ""
        self.call_engine(
            "accept response",
            accept_all,
            done=f"recording of {first.method} {first.target} updated{many}",
        )

    def edit(self, result: ReplayResult | None) -> None:
        if result is None or not result.exchange_id:
            self.notify("select a recorded request first", severity="warning")
            return
        path = self.driver.recording_path(result.exchange_id)
        if path is None:
            self.notify(f"no recording file holds {result.exchange_id}", severity="warning")
            return
        found = find_exchange(path.parent, result.exchange_id, include_partial=True)
        line = found[1] if found and found[0] == path else None
        command = editor_command(path, line, os.environ)
        try:
            try:
                with self.suspend():
                    code = _run_editor(command, interactive=True)
            except SuspendNotSupported:
                # no terminal to hand over (tests, Textual web): run it detached from input
                code = _run_editor(command, interactive=False)
        except OSError as exc:
            self.notify(
                f"cannot run {command[0]}: {exc.strerror}",
                title="editor",
                severity="error",
                timeout=8,
            )
            return
        if code:
            self.notify(f"{command[0]} exited with status {code}", severity="warning")

    def _clear_logs(self) -> None:
        panel = self._panel("logs")
        assert isinstance(panel, LogsPanel)
        panel.action_clear_logs()


def _outcome(response: Response | None) -> tuple[int, bytes] | None:
    # headers such as Date differ between otherwise identical answers
    return None if response is None else (response.status, response.body)


def _run_editor(command: list[str], *, interactive: bool) -> int:
    # the command is the user's own $EDITOR, run without a shell
    if interactive:
        return subprocess.run(command, check=False).returncode  # noqa: S603
    return subprocess.run(  # noqa: S603
        command,
        check=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).returncode


def _rel(path: Path, root: Path) -> str:
    """A path as the developer thinks of it: relative to the project root."""
    for base in (root, Path.cwd()):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)

"""The dashboard's command palette (ctrl+p): every action by name."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from devbox.engine.driver import MOCK_MODES
from devbox.tui import keys
from devbox.tui.acting import MODE_HELP

if TYPE_CHECKING:
    from devbox.tui.app import DevboxApp


def dashboard_commands(app: DevboxApp) -> Iterable[SystemCommand]:
    for k in keys.GLOBAL:
        if k.action.startswith("show_tab"):
            tab = k.action.split("'")[1]
            yield SystemCommand(f"Show {k.label}", k.description, partial(app.action_show_tab, tab))
    yield SystemCommand("Replay now", keys.GLOBAL[0].description, app.action_replay)
    yield SystemCommand("Rebuild", keys.GLOBAL[1].description, app.action_rebuild)
    yield SystemCommand("Restart service", keys.GLOBAL[2].description, app.action_restart)
    yield SystemCommand(
        "Resume watching" if not app.state.watching else "Pause watching",
        keys.GLOBAL[3].description,
        app.action_toggle_watch,
    )
    yield SystemCommand(
        "Open diff of selected request",
        "Side-by-side recorded vs actual",
        lambda: app.open_diff(app.selected_result()),
    )
    yield SystemCommand(
        "Mark noise",
        "Add a differing field of the selected request to [replay] ignore",
        lambda: app.mark_noise(app.selected_result(), None),
    )
    yield SystemCommand(
        "Accept response",
        "Make the actual response of the selected request the recording",
        lambda: app.accept(app.selected_result()),
    )
    yield SystemCommand(
        "Edit recording",
        "Open the selected request's recording in $EDITOR",
        lambda: app.edit(app.selected_result()),
    )
    yield SystemCommand("Clear logs", "Clear the log view", app._clear_logs)
    for dep in app.dependency_names():
        for mode in MOCK_MODES:
            yield SystemCommand(
                f"Mock {dep}: {mode}", MODE_HELP[mode], partial(app.set_mode, dep, mode)
            )
    yield SystemCommand(
        "Quit, tear down", "Stop the service and mocks, then quit", partial(app._quit_teardown)
    )
    yield SystemCommand(
        "Quit, keep running",
        "Quit and leave the sandbox running",
        partial(app.action_quit_app, True),
    )
    yield SystemCommand("Help", "Show every key", app.action_help)

"""The dashboard's key map: one table for the bindings, the help screen, the command
palette and docs/dashboard.md (a test checks the page lists every key). No Textual here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Key:
    key: str  # Textual key name(s), comma-separated
    action: str  # action name (without "action_"), may carry arguments
    label: str  # short, for the footer
    description: str  # for the help screen, the palette and the docs
    where: str = "anywhere"  # anywhere | Replay | Mocks | Logs | Diff
    footer: bool = True


GLOBAL = (
    Key("r", "replay", "Replay", "Replay the recorded traffic now"),
    Key("b", "rebuild", "Rebuild", "Rebuild the image (or restart the process), then replay"),
    Key(
        "R",
        "restart",
        "Restart",
        "Restart the service without rebuilding, then replay",
        footer=False,
    ),
    Key("w", "toggle_watch", "Watch", "Pause or resume reacting to file changes"),
    Key("question_mark", "help", "Help", "Show every key"),
    Key("q,ctrl+c", "quit_app(False)", "Quit", "Quit and tear the sandbox down"),
    Key("Q", "quit_app(True)", "Quit+keep", "Quit and leave the sandbox running", footer=False),
    Key("1", "show_tab('services')", "Services", "Show services and build progress", footer=False),
    Key("2", "show_tab('mocks')", "Mocks", "Show dependencies, mocks and misses", footer=False),
    Key("3", "show_tab('replay')", "Replay", "Show the latest replay results", footer=False),
    Key("4", "show_tab('timeline')", "Timeline", "Show one row per iteration", footer=False),
    Key("5", "show_tab('logs')", "Logs", "Show service and devbox logs", footer=False),
)

REPLAY = (
    Key(
        "enter", "open_diff", "Diff", "Open the side-by-side diff of the selected request", "Replay"
    ),
    Key(
        "n", "mark_noise", "Noise", "Mark a differing field as noise (writes the profile)", "Replay"
    ),
    Key("a", "accept", "Accept", "Accept the actual response as the recording", "Replay"),
    Key("e", "edit", "Edit", "Open the selected recording in $EDITOR", "Replay", footer=False),
    Key(
        "x",
        "toggle_failures",
        "Failures",
        "Show only failing requests, or all",
        "Replay",
        footer=False,
    ),
    Key(
        "slash",
        "focus_filter",
        "Filter",
        "Filter results (regex; ! inverts)",
        "Replay",
        footer=False,
    ),
)

MOCKS = (
    Key(
        "m",
        "switch_mode",
        "Mode",
        "Switch the selected dependency: replay/passthrough/record",
        "Mocks",
    ),
    Key(
        "enter", "explain", "Explain", "Show why the selected request missed", "Mocks", footer=False
    ),
)

LOGS = (
    Key("f", "toggle_follow", "Follow", "Pause or follow the log", "Logs"),
    Key("c", "clear_logs", "Clear", "Clear the log view", "Logs"),
    Key("slash", "focus_filter", "Filter", "Filter lines (regex; ! inverts)", "Logs"),
)

DIFF = (
    Key("n", "mark_noise", "Noise", "Mark the selected difference as noise", "Diff"),
    Key("a", "accept", "Accept", "Accept the actual response as the recording", "Diff"),
    Key("e", "edit", "Edit", "Open the recording in $EDITOR", "Diff"),
    Key("escape", "close", "Back", "Back to the results", "Diff"),
)

ALL = GLOBAL + REPLAY + MOCKS + LOGS + DIFF

_DISPLAY = {"question_mark": "?", "slash": "/", "enter": "Enter", "escape": "Esc"}


def display(key: str) -> str:
    return _DISPLAY.get(key, key)


def bindings(keys: tuple[Key, ...]) -> list[tuple[str, str, str, bool]]:
    """(key, action, label, show) for Textual's Binding."""
    return [(k.key, k.action, k.label, k.footer) for k in keys]

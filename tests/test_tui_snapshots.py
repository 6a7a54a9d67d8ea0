"""SVG snapshots of the dashboard's main screens (pytest-textual-snapshot).

Update after an intended change with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and review the SVGs under tests/__snapshots__/. The engine is
the scripted FakeEngine with a pinned clock and time zone, so a snapshot changes
only when the rendering does. ``docs/img`` is written from the same scenes by
``python tests/tui_screenshots.py``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from tui_fakes import (
    T0,
    FakeEngine,
    make_project,
    second_iteration,
    startup_events,
)

from devbox.core.events import BuildProgress, Event, ServiceState
from devbox.core.profile import load_profile
from devbox.tui.app import DevboxApp, make_app

pytestmark = pytest.mark.tui

SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def scene(
    fake: FakeEngine, *keys: str, extra: tuple[Event, ...] = (), theme: str | None = None
) -> tuple[DevboxApp, Callable[[Pilot[int]], Awaitable[None]]]:
    """An app over ``fake`` and a run_before that waits for the script, emits
    ``extra``, then presses ``keys``."""
    app = make_app(fake)
    app.now = lambda: T0 + 75
    if theme:
        app.theme = theme

    async def run_before(pilot: Pilot[int]) -> None:
        deadline = time.monotonic() + 10
        while not fake.started.is_set() and time.monotonic() < deadline:
            await pilot.pause(0.02)
        if extra:
            fake.emit(*extra)
        app.drain()
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        await pilot.pause()
        app.drain()
        app.clear_notifications()
        await pilot.pause()

    return app, run_before


def building_script(profile_path: Path) -> list[Event]:
    profile = load_profile(profile_path)
    build = [e for e in startup_events(profile) if isinstance(e, ServiceState | BuildProgress)]
    # stop in the middle of the build: the build box shows step 2 of 3
    return [*startup_events(profile)[:4], build[0], build[1], build[2]]


def test_replay_results_80x24(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, run_before = scene(FakeEngine(make_project(tmp_path)))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_trend_after_an_edit(snap_compare: SnapCompare, tmp_path: Path) -> None:
    fake = FakeEngine(make_project(tmp_path))
    app, run_before = scene(fake, extra=tuple(second_iteration(fake.profile)))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_building(snap_compare: SnapCompare, tmp_path: Path) -> None:
    profile = make_project(tmp_path)
    app, run_before = scene(FakeEngine(profile, building_script(profile)))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_mocks_and_a_miss(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, run_before = scene(FakeEngine(make_project(tmp_path)), "2")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_timeline(snap_compare: SnapCompare, tmp_path: Path) -> None:
    fake = FakeEngine(make_project(tmp_path))
    app, run_before = scene(fake, "4", extra=tuple(second_iteration(fake.profile)))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_logs(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, run_before = scene(FakeEngine(make_project(tmp_path)), "5")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_diff(snap_compare: SnapCompare, tmp_path: Path) -> None:
    fake = FakeEngine(make_project(tmp_path))
    app, run_before = scene(
        fake, "down", "down", "enter", extra=tuple(second_iteration(fake.profile))
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_noise_dialog(snap_compare: SnapCompare, tmp_path: Path) -> None:
    fake = FakeEngine(make_project(tmp_path))
    app, run_before = scene(fake, "down", "enter", "n", extra=tuple(second_iteration(fake.profile)))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_problem(snap_compare: SnapCompare, tmp_path: Path) -> None:
    from devbox.core.events import Problem

    crash = Problem(
        "orders crashed (exit status 1)",
        "the last log lines are in the Logs tab",
        ("Traceback (most recent call last):", "KeyError: 'sku'"),
        at=T0 + 50,
    )
    app, run_before = scene(FakeEngine(make_project(tmp_path)), "1", extra=(crash,))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_light_theme_wide(snap_compare: SnapCompare, tmp_path: Path) -> None:
    fake = FakeEngine(make_project(tmp_path))
    app, run_before = scene(
        fake, extra=tuple(second_iteration(fake.profile)), theme="textual-light"
    )
    assert snap_compare(app, terminal_size=(120, 32), run_before=run_before)


def test_help(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, run_before = scene(FakeEngine(make_project(tmp_path)), "question_mark")
    assert snap_compare(app, terminal_size=(100, 40), run_before=run_before)

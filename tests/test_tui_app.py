"""The dashboard driven through Textual's pilot against a scripted engine: keys call
the engine, flows write the right files, errors show and the app keeps running,
and a flood of results does not freeze it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual import events
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Input, RichLog, Static, TabbedContent
from tui_fakes import T0, FakeEngine, make_project, second_iteration

from devbox.core.events import Log, ReplayResult
from devbox.errors import ServiceNotReady
from devbox.store import load_dir
from devbox.tui.app import DevboxApp, make_app
from devbox.tui.screens import ChoiceScreen, ConfirmScreen, DiffScreen, HelpScreen

pytestmark = [pytest.mark.tui, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    # clock columns are local time; pin the zone so they read the same everywhere
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(make_project(tmp_path))


def app_for(fake: FakeEngine) -> DevboxApp:
    app = make_app(fake)
    app.now = lambda: T0 + 75
    return app


async def wait_for(
    pilot: Pilot[int], cond: Callable[[], bool], what: str, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if pilot.app.is_running:
            await pilot.pause(0.02)
        else:  # pausing waits for an idle app, which a closed one never is
            await asyncio.sleep(0.02)


async def press_to_quit(pilot: Pilot[int], key: str) -> None:
    """Press a key that ends the app. ``pilot.press`` would wait for the screen to go
    idle afterwards, which a closing app never does; send the key as the driver does."""
    event = events.Key(key, key)
    event.set_sender(pilot.app)
    pilot.app.post_message(event)
    await wait_for(pilot, lambda: not pilot.app.is_running, "the app to exit")


async def settle(pilot: Pilot[int], fake: FakeEngine) -> None:
    app = pilot.app
    assert isinstance(app, DevboxApp)
    await wait_for(pilot, fake.started.is_set, "engine start")
    await wait_for(pilot, lambda: app.pending_events == 0, "events applied")
    await pilot.pause()
    await pilot.pause()


def status(app: DevboxApp) -> str:
    return str(app.query_one("#status", Static).render())


def active(app: DevboxApp) -> str:
    return app.query_one(TabbedContent).active


# Read through a call: mypy keeps an ``isinstance``/``is`` narrowing of ``app.screen`` or
# ``app.focused`` across the key presses that change them, and then calls the next check
# unreachable.
def current_screen(app: DevboxApp) -> Screen[object]:
    return app.screen


def focused(app: DevboxApp) -> Widget | None:
    return app.focused


def results(app: DevboxApp) -> DataTable[object]:
    return app.query_one("#results", DataTable)


async def select_result(pilot: Pilot[int], app: DevboxApp, index: int) -> None:
    await pilot.press("3")
    table = results(app)
    table.focus()
    keys = [str(k.value) for k in table.rows]
    row = next(i for i, k in enumerate(keys) if k.endswith(f":{index}"))
    table.move_cursor(row=row)
    await pilot.pause()


async def test_startup_renders_every_panel(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        assert "iteration 0: FAIL 5/6" in status(app)
        assert "orders ready :7080" in status(app)
        # the first verdict brings the results forward
        assert active(app) == "tab-replay"
        assert results(app).row_count == 6
        services = app.query_one("#services", DataTable)
        assert [str(c) for c in services.get_row("orders")][:4] == [
            "orders",
            "process",
            "ready",
            "7080",
        ]
        assert str(services.get_cell("orders", "uptime")) == "1m13s"
        mocks = app.query_one("#mocks", DataTable)
        assert str(mocks.get_cell("payments", "misses")) == "1"
        assert app.query_one("#misses", DataTable).row_count == 1
        explanation = str(app.query_one("#explanation", Static).render())
        assert "Nearest candidates" in explanation
        assert app.query_one("#timeline", DataTable).row_count == 1
        assert "start" in str(app.query_one("#timeline", DataTable).get_row_at(0)[1])


async def test_keys_drive_the_engine(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await pilot.press("r", "b", "R")
        await wait_for(pilot, lambda: len(fake.calls) >= 4, "three engine calls")
        assert set(fake.calls[1:4]) == {("replay_now",), ("rebuild",), ("restart",)}
        await pilot.press("w")
        await wait_for(pilot, lambda: ("set_watching", False) in fake.calls, "watch paused")
        await wait_for(pilot, lambda: "watch paused" in status(app), "status says paused")
        await pilot.press("w")
        await wait_for(pilot, lambda: ("set_watching", True) in fake.calls, "watch resumed")
        await wait_for(pilot, lambda: "watching" in status(app), "status says watching")
        for key, tab in (
            ("1", "services"),
            ("2", "mocks"),
            ("4", "timeline"),
            ("5", "logs"),
            ("3", "replay"),
        ):
            await pilot.press(key)
            assert active(app) == f"tab-{tab}"


async def test_a_new_iteration_shows_its_trend(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        fake.emit(*second_iteration(fake.profile))
        await wait_for(pilot, lambda: "iteration 1" in status(app), "second verdict")
        await pilot.pause()
        table = results(app)
        trends = {
            str(table.get_row_at(i)[2]): str(table.get_row_at(i)[6]) for i in range(table.row_count)
        }
        assert trends["/items/A-1"] == "newly failing"
        assert trends["/catalog"] == "newly failing"
        assert trends["/quote?sku=A-1&qty=2"] == "newly passing"
        assert trends["/healthz"] == ""
        trend = str(app.query_one("#trend", Static).render())
        assert "iteration 1: 4 pass, 2 fail" in trend
        assert "newly failing 2, newly passing 1" in trend
        assert "iteration 1: FAIL 4/6" in status(app)
        timeline = app.query_one("#timeline", DataTable)
        assert timeline.row_count == 2
        row = [str(c) for c in timeline.get_row("1")]
        assert row[1] == "sync+restart" and row[2] == "app.py" and row[-1] == "FAIL 4/6"


async def test_mark_noise_from_the_table_writes_the_profile(fake: FakeEngine) -> None:
    before = fake.profile_path.read_text()
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await select_result(pilot, app, 3)  # /quote: $.total differs
        await pilot.press("n")
        assert isinstance(app.screen, ChoiceScreen)
        # cancelling writes nothing
        await pilot.press("escape")
        await pilot.pause()
        assert fake.profile_path.read_text() == before
        await pilot.press("n")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: ("mark_noise", "$.total") in fake.calls, "mark_noise")
        # the profile's section is named as written, not eaten as a style tag
        await wait_for(
            pilot,
            lambda: any(
                "to [replay] ignore" in n.message and not n.markup for n in app._notifications
            ),
            "the done message",
        )
    after = fake.profile_path.read_text()
    assert '"$.total"' in after
    # comments and every other line are kept
    assert [ln for ln in before.splitlines() if not ln.startswith("ignore =")] == [
        ln for ln in after.splitlines() if not ln.startswith("ignore =")
    ]
    assert fake.profile.replay.ignore[-1] == "$.total"


async def test_mark_noise_from_the_diff_offers_the_general_rule(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, fake)
        fake.emit(*second_iteration(fake.profile))
        await wait_for(pilot, lambda: "iteration 1" in status(app), "second verdict")
        await select_result(pilot, app, 1)  # /catalog: $.items[0].price differs
        await pilot.press("enter")
        assert isinstance(app.screen, DiffScreen)
        diffs = app.screen.query_one("#differences", DataTable)
        assert "$.items[0].price: 12.5 → 13.0" in str(diffs.get_row_at(0)[0])
        await pilot.press("n")
        assert isinstance(app.screen, ChoiceScreen)
        assert [v for v, _ in app.screen.options] == ["$.items[*].price", "$.items[0].price"]
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: ("mark_noise", "$.items[*].price") in fake.calls, "mark_noise"
        )
        assert isinstance(app.screen, DiffScreen)
        await pilot.press("escape")
        assert not isinstance(current_screen(app), DiffScreen)
    assert "$.items[*].price" in fake.profile.replay.ignore


async def test_a_passing_requests_detail_shows_both_statuses_and_why_no_bodies(
    fake: FakeEngine,
) -> None:
    app = app_for(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, fake)
        await select_result(pilot, app, 0)  # GET /health passes in iteration 0
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DiffScreen)
        title = str(screen.query_one("#diff-title", Static).render())
        assert "PASS" in title and "recorded 200 / actual 200" in title
        body = str(screen.query_one("#diff-body", Static).render())
        assert body.startswith("Passed: the response matched the recording")


async def test_diff_marks_noise_and_real_differences(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, fake)
        fake.emit(*second_iteration(fake.profile))
        await wait_for(pilot, lambda: "iteration 1" in status(app), "second verdict")
        await select_result(pilot, app, 2)  # /items/A-1: price and stock changed, checked_at noise
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DiffScreen)
        marks = {(ln.path, ln.mark) for row in screen.view.rows for ln in row if ln is not None}
        assert ("$.price", "diff") in marks and ("$.stock", "diff") in marks
        assert ("$.checked_at", "noise") in marks
        assert ("$.sku", "") in marks
        kinds = [
            str(screen.query_one("#differences", DataTable).get_row_at(i)[1]) for i in range(3)
        ]
        assert kinds == ["fails", "fails", "ignored"]


async def test_accept_writes_the_actual_response_after_confirmation(fake: FakeEngine) -> None:
    inbound = fake.profile.inbound_dir
    before = {ex.id: ex for ex in load_dir(inbound)}
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await select_result(pilot, app, 3)
        await pilot.press("a")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # declined: nothing written
        await pilot.pause()
        assert {ex.id: ex for ex in load_dir(inbound)} == before
        await pilot.press("a")
        await pilot.press("y")
        await wait_for(
            pilot, lambda: any(c[0] == "accept_response" for c in fake.calls), "accept_response"
        )
    after = {ex.id: ex for ex in load_dir(inbound)}
    resp = after["in-0004"].response
    assert resp is not None and json.loads(resp.body)["total"] == 26.0
    assert after["in-0004"].request == before["in-0004"].request
    assert {k: v for k, v in after.items() if k != "in-0004"} == {
        k: v for k, v in before.items() if k != "in-0004"
    }


async def test_switching_a_mock_mode(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await pilot.press("2", "m")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("down", "enter")
        await wait_for(
            pilot,
            lambda: ("set_mock_mode", "payments", "passthrough") in fake.calls,
            "set_mock_mode",
        )
        await pilot.pause()
        mocks = app.query_one("#mocks", DataTable)
        assert str(mocks.get_cell("payments", "mode")) == "passthrough"
        # an engine refusal is shown and the app goes on
        app.set_mode("nope", "replay")
        await wait_for(
            pilot, lambda: any("nope" in ln.text for ln in app.state.logs), "error logged"
        )
        assert app.is_running


async def test_problems_show_with_their_hint_and_the_app_keeps_running(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        fake.problem("orders crashed (exit status 1)", "see the logs tab for its last lines")
        await wait_for(pilot, lambda: "1 problem" in status(app), "problem counted")
        await pilot.press("1")
        text = str(app.query_one("#problems", Static).render())
        assert "orders crashed (exit status 1)" in text
        assert "hint: see the logs tab for its last lines" in text
        await pilot.press("4")
        assert active(app) == "tab-timeline"


async def test_a_failed_start_is_shown_and_quitting_still_tears_down(tmp_path: Path) -> None:
    fake = FakeEngine(
        make_project(tmp_path),
        script=[Log("orders", "Traceback: boom", "error", at=T0)],
        start_error=ServiceNotReady(
            "orders did not become ready in 20s", hint="its last log lines are in the Logs tab"
        ),
    )
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.phase == "start failed", "start failure")
        await pilot.pause()
        assert "start failed" in status(app)
        problems = str(app.query_one("#problems", Static).render())
        assert "orders did not become ready in 20s" in problems
        assert "its last log lines are in the Logs tab" in problems
        await press_to_quit(pilot, "q")
    assert fake.stopped.is_set()
    assert app.return_code == 1


async def test_q_tears_down_and_capital_q_keeps(fake: FakeEngine, tmp_path: Path) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await press_to_quit(pilot, "q")
    assert ("stop",) in fake.calls and app.stopped and not app.kept
    assert app.return_code == 0

    keep = FakeEngine(make_project(tmp_path / "k"))
    app2 = app_for(keep)
    async with app2.run_test(size=(80, 24)) as pilot:
        await settle(pilot, keep)
        await press_to_quit(pilot, "Q")
    assert ("stop",) not in keep.calls and app2.kept


async def test_logs_filter_invert_pause_and_clear(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await pilot.press("5")
        log = app.query_one("#log", RichLog)
        all_lines = len(log.lines)
        assert all_lines >= 8
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"healthz", "enter")
        await pilot.pause()
        assert len(log.lines) == 1 and "GET /healthz 200" in log.lines[0].text
        filt = app.query_one("#log-filter", Input)
        filt.value = "!healthz"
        await pilot.pause()
        assert len(log.lines) == all_lines - 1
        filt.value = "("  # not a regex: matched as text, and said so
        await pilot.pause()
        assert "not a regex" in str(app.query_one("#log-state", Static).render())
        filt.value = ""
        app.query_one("#log", RichLog).focus()
        await pilot.press("f")  # pause
        fake.emit(Log("orders", "while paused", at=T0 + 60))
        await wait_for(
            pilot,
            lambda: "paused, 1 new" in str(app.query_one("#log-state", Static).render()),
            "held line",
        )
        assert not any("while paused" in ln.text for ln in log.lines)
        await pilot.press("f")  # follow again: the held line appears
        await pilot.pause()
        assert any("while paused" in ln.text for ln in log.lines)
        await pilot.press("c")
        await pilot.pause()
        assert len(log.lines) == 0
        fake.emit(Log("orders", "after clear", at=T0 + 61))
        await wait_for(pilot, lambda: len(log.lines) == 1, "new line after clear")


async def test_results_filter_and_failures_only(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await pilot.press("3", "x")
        assert results(app).row_count == 1
        await pilot.press("x", "slash", *"^GET /(items|quote)", "enter")
        await pilot.pause()
        assert results(app).row_count == 2
        app.query_one("#results-filter", Input).value = "!GET"
        await pilot.pause()
        assert results(app).row_count == 1  # POST /orders


async def test_a_flood_of_results_keeps_the_app_responsive(fake: FakeEngine) -> None:
    """5,000 results arrive from another thread as fast as it can emit them; keys are
    handled between batches and every result lands in the table."""
    app = app_for(fake)
    n = 5000
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        ticks_before = app.pump_ticks
        pending_at_key: list[int] = []
        original = app.action_show_tab

        def spy(tab_id: str) -> None:
            pending_at_key.append(app.pending_events)
            original(tab_id)

        app.action_show_tab = spy  # type: ignore[method-assign]

        def flood() -> None:
            for i in range(n):
                fake.emit(
                    ReplayResult(5, i, "GET", f"/items/{i}", 200, "pass" if i % 10 else "fail", 1.0)
                )

        emitter = threading.Thread(target=flood)
        emitter.start()
        emitter.join(timeout=30)
        await pilot.press("4")
        assert active(app) == "tab-timeline"
        await pilot.press("3")
        assert active(app) == "tab-replay"
        await wait_for(pilot, lambda: app.pending_events == 0, "flood applied", timeout=60)
        await pilot.pause()
        assert results(app).row_count == n
        assert app.state.counts == {"pass": 4500, "fail": 500, "error": 0}
        # the keys ran while results were still queued: the UI did not wait for them
        assert pending_at_key and pending_at_key[0] > 0
        assert app.pump_ticks - ticks_before >= n // 1000


async def test_editor_opens_the_recording_at_its_line(
    fake: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "argv.json"
    editor = tmp_path / "bin" / "vim"  # named like vim: it gets "+LINE FILE"
    editor.parent.mkdir()
    editor.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    editor.chmod(0o755)
    monkeypatch.setenv("VISUAL", str(editor))
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await select_result(pilot, app, 3)
        await pilot.press("e")
        await wait_for(pilot, out.exists, "editor ran")
    argv = json.loads(out.read_text())
    path = fake.recording_path("in-0004")
    assert path is not None and argv[1] == str(path)
    line = int(argv[0].lstrip("+"))
    assert path.read_text().splitlines()[line - 1].strip() == '"id": "in-0004",'


async def test_timers_and_verdicts_while_another_screen_is_on_top(fake: FakeEngine) -> None:
    # the one-second timer and the event pump run whatever screen is on top (the help,
    # a diff, a confirmation): they draw the dashboard underneath and leave the top alone
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        fake.emit(*second_iteration(fake.profile))
        await wait_for(pilot, lambda: app.pending_events == 0, "events applied under the help")
        app._second()
        app.drain()
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(current_screen(app), HelpScreen)
        await wait_for(pilot, lambda: "iteration 1" in status(app), "verdict drawn underneath")
        assert active(app) == "tab-replay"
    # after the app has closed (no screen at all) the timer's work is a no-op
    app._second()
    app._render_status()


async def test_command_palette_offers_every_action(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in (
            "Replay now",
            "Rebuild",
            "Restart service",
            "Pause watching",
            "Mark noise",
            "Accept response",
            "Edit recording",
            "Clear logs",
            "Mock payments: passthrough",
            "Mock inventory: record",
            "Quit, keep running",
            "Quit, tear down",
            "Show Logs",
        ):
            assert title in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"Replay now")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: ("replay_now",) in fake.calls, "replay via palette")


async def test_help_lists_every_key(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, fake)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(current_screen(app), HelpScreen)


def test_docs_list_every_key() -> None:
    from devbox.tui import keys

    doc = (Path(__file__).resolve().parent.parent / "docs" / "dashboard.md").read_text()
    for k in keys.ALL:
        shown = " ".join(keys.display(part) for part in k.key.split(","))
        assert f"`{shown}`" in doc, f"docs/dashboard.md does not list the key {shown!r}"


def test_importing_the_engine_loads_no_textual() -> None:
    import subprocess

    code = (
        "import sys, devbox.engine.driver, devbox.tui.state, devbox.tui.diffview; "
        "print('textual' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ}
    )
    assert out.stdout.strip() == "False"

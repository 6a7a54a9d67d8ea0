"""The dashboard's recoveries (issue 14): a failed start fixed and rebuilt with ``b``,
edits saved while watching is paused applied on resume (both with the real engine
and a real service), Esc out of a filter box, a problem badge that clears once a
later iteration shows it gone, accepting every identical request at once, and a
visible mark while the results are filtered."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from test_tui_app import active, app_for, focused, settle, status, wait_for
from textual.widgets import DataTable, Input, Static
from tui_fakes import T0, FakeEngine, make_project, second_iteration

from devbox.core.events import IterationFinished, IterationStarted, Problem, ReplayResult
from devbox.core.model import Direction, Exchange, Request, Response
from devbox.core.profile import load_profile
from devbox.engine.session import Engine, EngineOptions
from devbox.store import load_dir, write_recording
from devbox.tui.app import make_app
from devbox.tui.screens import ChoiceScreen

pytestmark = [pytest.mark.tui, pytest.mark.anyio]

APP = Path("examples/demo/orders/app.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(make_project(tmp_path))


def filter_state(app: object) -> str:
    from devbox.tui.app import DevboxApp

    assert isinstance(app, DevboxApp)
    return str(app.query_one("#results-filter-state", Static).render())


async def test_escape_leaves_the_filter_and_the_keys_work_again(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await pilot.press("3", "slash")
        box = app.query_one("#results-filter", Input)
        assert app.focused is box
        await pilot.press("q", "u", "o", "t", "e")  # typed, not "quit"
        assert box.value == "quote" and app.is_running
        await pilot.press("escape")
        assert focused(app) is app.query_one("#results", DataTable)
        assert box.value == "quote"  # the filter stays applied
        assert app.query_one("#results", DataTable).row_count == 1
        await pilot.press("r")
        await wait_for(pilot, lambda: ("replay_now",) in fake.calls, "r reaches the engine")
        # the log filter too
        await pilot.press("5", "slash")
        log_box = app.query_one("#log-filter", Input)
        assert app.focused is log_box
        await pilot.press("w", "escape")
        assert log_box.value == "w" and app.focused is not log_box
        await pilot.press("1")
        assert active(app) == "tab-services"


async def test_filtered_and_failures_only_views_are_marked(fake: FakeEngine) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await pilot.press("3")
        assert filter_state(app) == ""
        await pilot.press("x")
        assert "failures only: 1 of 6 shown" in filter_state(app)
        await pilot.press("slash", "G", "E", "T", "escape")
        assert "failures only + filter: 1 of 6 shown" in filter_state(app)
        await pilot.press("x")
        assert "filter: 5 of 6 shown" in filter_state(app)
        await pilot.press("slash", "backspace", "backspace", "backspace", "escape")
        assert filter_state(app) == ""


async def test_the_problem_badge_clears_once_a_later_iteration_shows_it_gone(
    fake: FakeEngine,
) -> None:
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        fake.problem("orders crashed (exit status 1)", "see the logs tab")
        fake.emit(Problem("profile not reloaded: profiles/demo.toml:3: bad port", at=T0 + 51))
        await wait_for(pilot, lambda: "2 problems" in status(app), "two problems")
        # the developer fixes the code: iteration 1 runs with the service up
        fake.emit(*second_iteration(fake.profile))
        await wait_for(pilot, lambda: "iteration 1:" in status(app), "iteration 1")
        await wait_for(pilot, lambda: "1 problem" in status(app), "the crash resolved")
        problems = str(app.query_one("#problems", Static).render())
        assert "resolved: orders crashed" in problems
        assert "profile not reloaded" in problems and "resolved: profile" not in problems
        # only a later profile edit that loads resolves the rejected one
        fake.emit(
            IterationStarted(2, ("profiles/demo.toml",), "reload-profile", ""),
            IterationFinished(2, "reload-profile", 5, 1, 0),
        )
        await wait_for(pilot, lambda: "problem" not in status(app), "badge gone")


def _stock_exchanges() -> list[Exchange]:
    return [
        Exchange(
            id=f"in-01{i:02d}",
            direction=Direction.INBOUND,
            source="inbound",
            request=Request("GET", "/stock/A-1", (), (("host", "svc"),)),
            response=Response(200, (("content-type", "application/json"),), b'{"stock":3}'),
            origin="devbox record",
        )
        for i in range(3)
    ]


async def test_accept_all_identical_requests(tmp_path: Path) -> None:
    profile = make_project(tmp_path)
    write_recording(
        tmp_path / "mocks" / "demo" / "inbound" / "recording-2.json",
        "inbound",
        Direction.INBOUND,
        _stock_exchanges(),
        origin="devbox record",
    )
    fake = FakeEngine(profile)
    new = Response(200, (("content-type", "application/json"),), b'{"stock":2}')
    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        results = [
            ReplayResult(
                iteration=1,
                index=i,
                method="GET",
                target="/stock/A-1",
                status=200,
                verdict="fail",
                latency_ms=1.0,
                differences=("$.stock: 3 → 2",),
                exchange_id=ex.id,
                recorded=ex.response,
                actual=new,
            )
            for i, ex in enumerate(_stock_exchanges())
        ]
        fake.emit(
            IterationStarted(1, (), "replay", ""), *results, IterationFinished(1, "replay", 0, 3, 0)
        )
        await wait_for(pilot, lambda: "iteration 1: FAIL 0/3" in status(app), "iteration 1")
        await pilot.press("3")
        app.query_one("#results", DataTable).focus()
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), "the choice")
        body = "".join(str(s.render()) for s in app.screen.query(Static))
        assert "2 more recorded requests of this route" in body
        await pilot.press("enter")  # "all" is preselected
        await wait_for(
            pilot,
            lambda: sum(c[0] == "accept_response" for c in fake.calls) == 3,
            "three accepted",
        )
        on_disk = {e.id: e for e in load_dir(fake.profile.inbound_dir)}
        for ex in _stock_exchanges():
            got = on_disk[ex.id].response
            assert got is not None and got.body == b'{"stock":2}'
        # the other recording is untouched
        first = on_disk["in-0001"].response
        assert first is not None and first.body == b'{"ok": true}'


async def test_accept_offers_one_only_when_nothing_is_identical(fake: FakeEngine) -> None:
    from devbox.tui.screens import ConfirmScreen

    app = app_for(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, fake)
        await pilot.press("3", "x")
        app.query_one("#results", DataTable).focus()
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("escape")


# ---------------------------------------------------------------- with the real engine


def _edit(root: Path, old: str, new: str) -> None:
    path = root / APP
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


async def test_b_after_a_failed_start_and_edits_saved_while_paused(demo_project: Path) -> None:
    root = demo_project.parent.parent
    profile = load_profile(demo_project)
    payments = profile.dependency("payments").port
    assert payments
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", payments))
    blocker.listen()
    engine = Engine(profile, EngineOptions(runtime="process"))
    app = make_app(engine)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.state.phase == "start failed", "start failure", 60)
            assert "start failed" in status(app) and "1 problem" in status(app)
            await pilot.press("r")  # nothing runs: it says how to recover
            await wait_for(
                pilot,
                lambda: any("rebuild (b)" in ln.text for ln in app.state.logs),
                "the hint to rebuild",
            )
            blocker.close()  # the user frees the port
            await pilot.press("b")
            await wait_for(
                pilot, lambda: "iteration 0: PASS 100/100" in status(app), "the new start", 90
            )
            assert "problem" not in status(app)
            assert "resolved: start failed" in str(app.query_one("#problems", Static).render())

            # paused: a saved edit does nothing now...
            await pilot.press("w")
            await wait_for(pilot, lambda: "watch paused" in status(app), "paused")
            _edit(root, "TAX_RATE = 0.20", "TAX_RATE = 0.25")
            await wait_for(
                pilot,
                lambda: any("watching paused: held" in ln.text for ln in app.state.logs),
                "the edit held",
                30,
            )
            assert engine.iteration == 0
            # ...and is applied on resume
            await pilot.press("w")
            await wait_for(pilot, lambda: "iteration 1: FAIL" in status(app), "applied", 60)
            row = app.state.iterations[1]
            assert row.action == "sync+restart" and str(APP) in row.changed
    finally:
        blocker.close()
        engine.stop()

"""Issue 12, point 6: a difference is counted the same way everywhere. With an ignore rule
scoped to one route (``"GET /quote $.tax"``), the dashboard's diff view lists as failing
exactly what the engine's verdict counted (the differences the headless view, ``devbox
watch`` and the JUnit report print), and shows the scoped rule's field as ignored on its
route only. Real engine, real service, the dashboard driven through Textual's pilot."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_tui_app import status, wait_for
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from devbox.core.events import Event, ReplayResult
from devbox.core.profile import load_profile
from devbox.engine.session import Engine, EngineOptions
from devbox.replay import ReplayReport, to_junit
from devbox.tui.app import DevboxApp, make_app
from devbox.tui.screens import DiffScreen

pytestmark = [pytest.mark.tui, pytest.mark.anyio]

APP = Path("examples/demo/orders/app.py")
SCOPED = "GET /quote $.tax"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def select(pilot: Pilot[int], app: DevboxApp, r: ReplayResult) -> None:
    """Put the results table's cursor on ``r``'s row (rows are sorted once an iteration
    ends: the row's place in the table, not its insertion order)."""
    await pilot.press("3")
    table = app.query_one("#results", DataTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(f"{r.iteration}:{r.index}"))
    await pilot.pause()


def _rows(screen: DiffScreen) -> list[tuple[str, str]]:
    table = screen.query_one("#differences", DataTable)
    return [
        (str(table.get_row_at(i)[0]), str(table.get_row_at(i)[1])) for i in range(table.row_count)
    ]


async def test_the_diff_view_counts_what_the_verdict_counts(demo_project: Path) -> None:
    root = demo_project.parent.parent
    text = demo_project.read_text()
    demo_project.write_text(
        text.replace('ignore = ["$.order_id",', f'ignore = ["{SCOPED}", "$.order_id",')
    )
    profile = load_profile(demo_project)
    assert SCOPED in profile.replay.ignore
    engine = Engine(profile, EngineOptions(runtime="process"))
    seen: list[ReplayResult] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, ReplayResult) and ev.iteration == 1:
            seen.append(ev)

    engine.subscribe(on_event)
    app = make_app(engine)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: "iteration 0: PASS 100/100" in status(app), "start", 90)
            path = root / APP
            path.write_text(path.read_text().replace("TAX_RATE = 0.20", "TAX_RATE = 0.25"))
            await wait_for(pilot, lambda: "iteration 1: FAIL" in status(app), "the edit", 90)
            finished = engine.last_finished
            assert finished is not None and finished.iteration == 1
            failing = [r for r in seen if r.verdict == "fail"]
            assert failing and {r.target.split("?")[0] for r in failing} >= {"/quote", "/orders"}
            quotes = [r for r in failing if r.target.startswith("/quote")]
            # the verdict: $.tax is ignored on GET /quote, $.total is not
            assert all(not any(d.startswith("$.tax") for d in r.differences) for r in quotes)
            assert all(any(d.startswith("$.total") for d in r.differences) for r in quotes)

            # the JUnit report counts the same failures with the same differences
            assert isinstance(finished.report, ReplayReport)
            suite = ET.fromstring(to_junit(finished.report))
            cases = {c.get("name", ""): c.find("failure") for c in suite.iter("testcase")}
            assert sum(f is not None for f in cases.values()) == finished.failed == len(failing)
            for r in failing:
                failure = cases[f"{r.method} {r.target} [{r.exchange_id}]"]
                assert failure is not None and failure.text is not None
                assert failure.text.splitlines()[: len(r.differences)] == list(r.differences)

            # the dashboard's diff view, opened the way a user does (select, enter)
            for r in [quotes[0], next(r for r in failing if r.target == "/orders")]:
                await select(pilot, app, r)
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), "the diff")
                screen = app.screen
                assert isinstance(screen, DiffScreen) and screen.result.index == r.index
                rows = _rows(screen)
                fails = [what for what, kind in rows if kind == "fails"]
                assert sorted(fails) == sorted(r.differences), (r.target, rows)
                if r.target.startswith("/quote"):
                    assert any(w.startswith("$.tax") and k == "ignored" for w, k in rows), rows
                    marks = {ln.path: ln.mark for row in screen.view.rows for ln in row if ln}
                    assert marks["$.tax"] == "noise" and marks["$.total"] == "diff"
                await pilot.press("escape")
                await wait_for(pilot, lambda: not isinstance(app.screen, DiffScreen), "closed")

            # a passing request: the engine keeps no bodies, but says what was recorded
            passing = next(r for r in seen if r.verdict == "pass" and r.status == 200)
            assert passing.expected_status == 200 and passing.recorded is None
            await select(pilot, app, passing)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), "the pass")
            title = str(app.screen.query_one("#diff-title", Static).render())
            assert "PASS" in title and "recorded 200 / actual 200" in title
            await pilot.press("escape")
    finally:
        engine.stop()

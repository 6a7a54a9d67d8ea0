"""One safe-emit rule (``devbox.core.events.safe_emit``) for every producer of events:
a view that raises never stops a mock or a recording, and the recording says so."""

from __future__ import annotations

from conftest import ROOT
from mock_helpers import call, exchange

from devbox.core.events import Event, Log, MockMiss, Problem
from devbox.core.profile import Dependency, load_profile
from devbox.engine.record_session import RecordPlan, RecordSession
from devbox.mock import MockFleet, MockSpec


def test_a_mock_keeps_answering_when_its_view_raises() -> None:
    seen: list[Event] = []

    def broken(ev: Event) -> None:
        seen.append(ev)
        raise RuntimeError("view bug")

    spec = MockSpec(dependency=Dependency(name="dep"), exchanges=(exchange(1, "GET", "/a"),))
    fleet = MockFleet.from_specs([spec], on_event=broken, ports={"dep": 0})
    port = fleet.start()["dep"]
    try:
        for _ in range(3):
            assert call(port, "GET", "/a")[0] == 200
            assert call(port, "GET", "/missing")[0] != 200  # a miss: a MockMiss event
    finally:
        fleet.stop()
    assert any(isinstance(ev, MockMiss) for ev in seen)  # the view was called, and raised


def test_a_recording_logs_a_view_that_failed_and_goes_on() -> None:
    got: list[Event] = []

    def picky(ev: Event) -> None:
        if isinstance(ev, Problem):
            raise RuntimeError("cannot show problems")
        got.append(ev)

    session = RecordSession(load_profile(ROOT / "profiles/demo.toml"), RecordPlan(), on_event=picky)
    session._emit(Problem("upstream down"))
    (warning,) = [ev for ev in got if isinstance(ev, Log)]
    assert warning.level == "warning"
    assert "a view failed on Problem: cannot show problems" in warning.text

    def broken(ev: Event) -> None:
        raise RuntimeError("view bug")

    # a view that fails even on the warning: nothing raised, no endless loop
    RecordSession(load_profile(ROOT / "profiles/demo.toml"), RecordPlan(), on_event=broken)._emit(
        Problem("x")
    )

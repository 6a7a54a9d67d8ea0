"""Requests whose dependency calls share a recorded sequence are replayed in order.

Two POST /orders of the demo call payments with the same match key and got different
answers (declined charges with different ids); replayed concurrently they could swap
answers (98 passed, 2 failed, about one replay in 60). ``sequence_lanes`` puts such
requests in one lane; requests without such calls stay concurrent.
"""

from __future__ import annotations

from conftest import ROOT

from devbox.core.matching import MatchIndex
from devbox.core.profile import load_profile
from devbox.replay.lanes import sequence_lanes
from devbox.store import load_dir


def test_callers_of_one_recorded_sequence_share_a_lane() -> None:
    p = load_profile(ROOT / "profiles" / "demo.toml")
    calls = {
        d.name: (d.match, [e for e in load_dir(p.recordings_dir(d.name)) if e.parent])
        for d in p.dependencies
    }
    lanes = sequence_lanes(calls)
    ordered_groups = 0
    for rules, linked in calls.values():
        index = MatchIndex((), rules)
        by_key: dict[object, list] = {}  # type: ignore[type-arg]
        for c in linked:
            by_key.setdefault(index.key_for(c.request), []).append(c)
        for group in by_key.values():
            answers = {(c.response.status, c.response.body) for c in group}
            owners = {c.parent for c in group}
            if len(owners) > 1 and len(answers) > 1:
                ordered_groups += 1
                assert len({lanes[o] for o in owners}) == 1, owners
    assert ordered_groups > 0
    inbound = {e.id for e in load_dir(p.inbound_dir)}
    assert set(lanes) <= inbound
    assert len(set(lanes.values())) > 1, "unrelated sequences stay in separate lanes"


def test_no_recorded_calls_no_lanes() -> None:
    assert sequence_lanes({}) == {}

"""Noise learning that cannot hide a real change, proven on a third-party stateful REST
server (json-server from npm, scripts/setup): recorded by ``devbox record``, each learning
pass starts from the same state (the profile's ``[replay] reset`` hook), the learned
rules are scoped to their route, replay is then 100 %, and a change of one value in the
server's data shows exactly that JSON path in every response that carries it."""

from __future__ import annotations

from pathlib import Path

import pytest
import rest_proof as R

pytestmark = pytest.mark.slow


def test_learned_rules_are_scoped_replay_is_100_and_a_real_change_shows_everywhere(
    tmp_path: Path,
) -> None:
    project = R.make_project(tmp_path)
    R.record(project)
    with R.server(project):
        before = R.replay(project)
        # json-server gives every created item a random id: real noise, in 4 requests
        assert before["counts"]["total"] == 14 and before["counts"]["passed"] < 14
        learned = R.learn(project)
        rules = {p["rule"] for p in learned["proposals"]}
        assert rules == {
            "POST /posts $.id",
            "POST /comments $.id",
            "GET /posts $[2].id",  # the created post in the list; $[0].id, $[1].id stay
            # GET /comments lists comment 1 with a stable id: the rule is narrowed to the
            # query whose answer is the created comment
            "GET /comments?postId=2 $[0].id",
        }
        # nothing that an earlier request of the pass changed (views 101, the deleted
        # comment, the replaced post) was taken for noise
        assert learned["held_back"] == []
        after = R.replay(project)
        assert after["counts"]["passed"] == after["counts"]["total"] == 14, R.differences(after)

        # one value of the server's data changes: every response carrying it shows it, at
        # its path, and nothing else does
        carrying = R.carrying(project, "json-server")
        assert len(carrying) == 4
        R.change_one_value(project, "json-server", "JSON Server")
        changed = R.replay(project)
        assert R.differences(changed) == carrying

"""The reviews example end to end with no database and no inventory service: the real mock
fleet serves Postgres and HTTP from mocks/reviews, the service runs as a subprocess with
the fleet's DATABASE_URL and INVENTORY_URL, and the recorded inbound traffic replays clean
(twice: the fleet's reset starts the recorded sequences again)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from conftest import ROOT, Proc, free_port, wait_port

from devbox.core.profile import load_profile
from devbox.mock.fleet import MockFleet
from devbox.replay import run_replay
from devbox.store import load_dir


def test_the_reviews_example_replays_clean_from_postgres_and_http_mocks(tmp_path: Path) -> None:
    text = (ROOT / "profiles/reviews.toml").read_text()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/reviews.toml").write_text(
        text.replace("port = 7132\n", "").replace("port = 7112\n", "")
    )
    (tmp_path / "mocks").symlink_to(ROOT / "mocks")
    profile = load_profile(tmp_path / "profiles/reviews.toml")
    inbound = load_dir(profile.recordings_dir("inbound"))
    assert len(inbound) == 13
    with MockFleet(profile) as fleet:
        env = fleet.urls()
        assert env["DATABASE_URL"].startswith("postgresql://reviews@127.0.0.1:")
        port = free_port()
        proc = Proc(
            [sys.executable, str(ROOT / "examples/reviews/app.py")],
            env={**env, "PORT": str(port), "PGPASSWORD": "not-the-recorded-one"},
        )
        try:
            wait_port(port)
            for _ in range(2):
                fleet.reset()
                report = asyncio.run(
                    run_replay(inbound, f"http://127.0.0.1:{port}", profile.replay)
                )
                assert report.failed == 0, [r.to_dict() for r in report.failures()]
                assert report.passed == 13
        finally:
            proc.stop()
        stats = {s.dependency: s for s in fleet.stats()}
        assert stats["db"].misses == 0 and stats["db"].hits > 0

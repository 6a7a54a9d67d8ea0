"""A project's first hour: a dependency URL with a path is recorded and replayed as
compose would call it, and what `record` says matches what happened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from firsthour_helpers import DEVBOX, ENV, path_server, write_project

from devbox.store import load_dir


def _record(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEVBOX, "record", "web", *extra, "--", sys.executable, "client.py", "{inbound}"],
        cwd=root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_base_path_of_a_dependency_url_is_kept_end_to_end(tmp_path: Path) -> None:
    with path_server({"/visit": (200, b'{"visits": 1}')}) as analytics:
        write_project(tmp_path, f"http://127.0.0.1:{analytics.port}/visit")
        r = _record(tmp_path)
        assert r.returncode == 0, r.stderr
        # the service called exactly $ANALYTICS_URL, the proxy forwarded it as it was
        assert analytics.seen == ["/visit"] * 3
    recorded = load_dir(tmp_path / "mocks/web/analytics")
    assert [(e.request.path, e.response.status) for e in recorded] == [("/visit", 200)] * 3
    inbound = load_dir(tmp_path / "mocks/web/inbound")
    assert all(json.loads(e.response.body)["analytics"] == 200 for e in inbound)
    # replayed against the mock (the upstream is gone): the same path answers, all match
    up = subprocess.run(
        [*DEVBOX, "up", "web", "--once"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert "miss" not in up.stdout.lower() or "0 miss" in up.stdout.lower()

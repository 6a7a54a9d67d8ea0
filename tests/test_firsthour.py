"""A project's first hour: a dependency URL with a path is recorded and replayed as
compose would call it, and what `record` says matches what happened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import free_port, wait_port
from firsthour_helpers import DEVBOX, ENV, path_server, write_project

from devbox.core.model import Exchange, Response
from devbox.store import load_dir


def _response(e: Exchange) -> Response:
    assert e.response is not None, f"{e.request.path} was recorded without a response"
    return e.response


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
    assert [(e.request.path, _response(e).status) for e in recorded] == [("/visit", 200)] * 3
    inbound = load_dir(tmp_path / "mocks/web/inbound")
    assert all(json.loads(_response(e).body)["analytics"] == 200 for e in inbound)
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


def test_record_reports_4xx_per_dependency_and_traffic_ls_counts_them(tmp_path: Path) -> None:
    with path_server({"/visit": (402, b'{"error": "payment required"}')}) as analytics:
        write_project(tmp_path, f"http://127.0.0.1:{analytics.port}/visit")
        r = _record(tmp_path)
    # answered, so recorded (a 402 is a real answer worth replaying), and said
    assert r.returncode == 0, r.stderr
    assert "analytics: 3 of 3 failed: answered 402 x3 in mocks/web/analytics/" in r.stdout
    ls = subprocess.run(
        [*DEVBOX, "traffic", "ls", "web", "--json"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = {row["source"]: row for row in json.loads(ls.stdout)}
    show = subprocess.run(
        [*DEVBOX, "traffic", "show", "mocks/web/analytics", "--limit", "2"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "2 of 3 exchanges" in show.stdout, show.stdout
    assert rows["analytics"]["failures"] == 3 and rows["analytics"]["errors"] == 0
    assert rows["inbound"]["failures"] == 0


def test_requests_without_an_answer_are_not_committed_unless_allowed(tmp_path: Path) -> None:
    with path_server({}) as gone:
        port = gone.port  # closed when the block ends: connection refused from then on
    write_project(tmp_path, f"http://127.0.0.1:{port}/visit")
    r = _record(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "analytics: 3 of 3 failed: 3 got no answer (connection refused)" in r.stdout
    assert "not committed" in r.stdout
    assert not list((tmp_path / "mocks/web/analytics").glob("*.json"))
    # the withheld set stays in *.json.partial, which the user deletes once read (a second
    # run in the same second would otherwise reuse its name: see the report)
    for leftover in (tmp_path / "mocks/web").rglob("*.partial"):
        leftover.unlink()
    r = _record(tmp_path, "--allow-errors")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(load_dir(tmp_path / "mocks/web/analytics")) == 3


def test_an_unresolvable_compose_hostname_fails_before_recording(tmp_path: Path) -> None:
    write_project(tmp_path, "http://analytics.invalid:5001/visit")
    r = _record(tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "upstream host 'analytics.invalid' does not resolve" in r.stderr
    assert "compose service name" in r.stderr
    assert not (tmp_path / "mocks").exists() or not any((tmp_path / "mocks").rglob("*.json"))


def test_learn_noise_counts_requests_not_observations(tmp_path: Path) -> None:
    with path_server({"/visit": (200, b'{"visits": 1}')}) as analytics:
        write_project(tmp_path, f"http://127.0.0.1:{analytics.port}/visit")
        assert _record(tmp_path).returncode == 0
        port = free_port()
        env = {
            **ENV,
            "PORT": str(port),
            "ANALYTICS_URL": f"http://127.0.0.1:{analytics.port}/visit",
        }
        svc = subprocess.Popen([sys.executable, "src/app.py"], cwd=tmp_path, env=env)
        try:
            wait_port(port)
            args = [
                *DEVBOX,
                "replay",
                "web",
                "--learn-noise",
                "--no-write",
                "--target",
                f"http://127.0.0.1:{port}",
            ]
            text = subprocess.run(
                args, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60
            )
            js = subprocess.run(
                [*args, "--report", "json"],
                cwd=tmp_path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            svc.terminate()
            svc.wait(10)
    # 3 requests replayed twice, and the 3 identical recorded requests are one more group
    assert "no noise found in 3 request(s) replayed twice and 1 group(s)" in text.stdout
    data = json.loads(js.stdout)
    assert (data["replayed"], data["pairs"], data["observations"]) == (3, 3, 4)


def test_a_crash_before_ready_shows_the_last_output_without_verbose(tmp_path: Path) -> None:
    write_project(tmp_path, "http://127.0.0.1:9/visit")
    app = tmp_path / "src/app.py"
    app.write_text("import sys\nprint('boom: missing SECRET_KEY', file=sys.stderr)\nsys.exit(3)\n")
    r = _record(tmp_path)
    assert r.returncode != 0
    assert "last output is shown above" in r.stderr
    before_hint = r.stderr.split("last output is shown above")[0]
    assert "boom: missing SECRET_KEY" in before_hint

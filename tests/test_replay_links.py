"""A call the service makes while serving inbound request X is answered with X's recorded
call, whatever order concurrent calls reach the mock in (docs/fidelity.md, "Links").

Recorded through ``devbox record`` with a sequential client: the dependency (a real
stateful server) answered 1, 2, 3, 4 in that order. Replayed at concurrency 4 against a
service made to call in the reverse order: with ``[record] correlation_header`` every
quote still gets its own rate. Without it the four requests share the mock's recorded
sequence, so replay sends them one after another in recorded order (an ordered lane,
``devbox.replay.lanes``) and every quote gets its rate too, without the concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, Proc, free_port, run_devbox, wait_port

from devbox.core.profile import load_profile
from devbox.mock.fleet import MockFleet
from devbox.store import load_dir

pytestmark = pytest.mark.slow
DATA = ROOT / "tests/data/linked"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}


def devbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_devbox(cwd, *args, timeout=180, env=ENV)


def profile_text(port: int, rates: int, *, linked: bool) -> str:
    link = '[record]\ncorrelation_header = "X-Request-Id"\n\n' if linked else ""
    return f"""name = "linked"

[service]
name = "quotes"
port = {port}
command = ["{sys.executable}", "{DATA / "quotes.py"}"]
ready = {{ http = "/healthz", timeout_s = 20 }}

[[dependency]]
name = "rates"
upstream = "http://127.0.0.1:{rates}"
env = "RATES_URL"

{link}[replay]
concurrency = 4
"""


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Path]:
    """A project whose recording was made by `devbox record` against the real rates server."""
    rates = free_port()
    upstream = Proc([sys.executable, str(DATA / "rates.py"), str(rates)])
    try:
        wait_port(rates)
        (tmp_path / "profiles").mkdir()
        (tmp_path / "profiles/linked.toml").write_text(
            profile_text(free_port(), rates, linked=True)
        )
        r = devbox(
            "record", "linked", "--runtime", "process", "--json", "--",
            sys.executable, str(DATA / "client.py"), "{inbound}",
            cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
    finally:
        upstream.stop()
    yield tmp_path


def replay(project: Path, *, linked: bool, gather: int = 4) -> dict[str, object]:
    """Mocks of the profile (with or without the link header) and the service, made to
    call in reverse order when ``gather``; the JSON report of one replay at concurrency 4."""
    port = free_port()
    (project / "profiles/linked.toml").write_text(profile_text(port, free_port(), linked=linked))
    fleet = MockFleet(load_profile(project / "profiles/linked.toml"))
    ports = fleet.start()
    try:
        service = Proc(
            [sys.executable, str(DATA / "quotes.py")],
            env={
                "PORT": str(port),
                "RATES_URL": f"http://127.0.0.1:{ports['rates']}",
                "GATHER": str(gather),
            },
        )
        try:
            wait_port(port)
            r = devbox(
                "replay", "linked", "--target", f"http://127.0.0.1:{port}", "--json",
                f"--mock=rates=http://127.0.0.1:{ports['rates']}",
                cwd=project,
            )  # fmt: skip
            assert r.stdout.startswith("{"), r.stderr[-2000:]
            report: dict[str, object] = json.loads(r.stdout)
            return report
        finally:
            service.stop()
    finally:
        fleet.stop()


def test_calls_are_answered_by_their_own_inbound_requests_recorded_calls(recorded: Path) -> None:
    inbound = load_dir(recorded / "mocks/linked/inbound")
    calls = load_dir(recorded / "mocks/linked/rates")
    # the recording: a, b, c, d one after another, their calls answered 1, 2, 3, 4
    by_id = {e.id: e for e in inbound}
    got = {
        by_id[c.parent].request.target: json.loads(c.response.body)["rate"]
        for c in calls
        if c.parent and c.response
    }
    assert got == {"/quote?item=a": 1, "/quote?item=b": 2, "/quote?item=c": 3, "/quote?item=d": 4}
    assert all(c.request.header("x-request-id") is None for c in calls)  # linked by replay

    report = replay(recorded, linked=True)
    assert report["counts"] == {**report["counts"], "total": 4, "passed": 4}, report  # type: ignore[dict-item]


def test_without_the_link_the_shared_sequence_is_replayed_in_recorded_order(
    recorded: Path,
) -> None:
    # each quote gets its recorded rate only if the calls reached the mock in recorded
    # order; no GATHER: it would wait for four requests that now come one at a time
    report = replay(recorded, linked=False, gather=0)
    assert report["counts"] == {**report["counts"], "total": 4, "passed": 4}, report  # type: ignore[dict-item]

"""MockFleet with real profiles: the demo service served entirely by mocks, ports, URLs,
modes, events, errors."""

from __future__ import annotations

import http.client
import socket
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, Proc, free_port, wait_port
from mock_helpers import call, exchange

from devbox.core.events import Event, MockMiss, MockStats
from devbox.core.model import Direction
from devbox.core.profile import load_profile
from devbox.errors import EngineError, NotFoundError, RecordingError, UsageError
from devbox.mock import MockFleet
from devbox.store import load_dir, write_recording


def test_the_demo_service_runs_entirely_on_mocks() -> None:
    """orders (the real demo service) calls payments and inventory; both are mocks replaying
    mocks/demo. Replaying the 100 recorded inbound requests must cause no miss at all and
    reproduce every recorded status, including redacted card numbers and bearer tokens."""
    profile = load_profile(ROOT / "profiles" / "demo.toml")
    events: list[Event] = []
    fleet = MockFleet(
        profile, on_event=events.append, ports={d.name: 0 for d in profile.dependencies}
    )
    ports = fleet.start()
    service_port = free_port()
    env = {
        **fleet.urls(),
        "PORT": str(service_port),
        "BIND": "127.0.0.1",
        "PAYMENTS_TOKEN": "sk_test_demo",
    }
    proc = Proc([sys.executable, str(ROOT / "examples/demo/orders/app.py")], env=env)
    try:
        wait_port(service_port)
        inbound = load_dir(profile.inbound_dir)
        assert len(inbound) == 100
        conn = http.client.HTTPConnection("127.0.0.1", service_port, timeout=10)
        statuses = []
        for ex in inbound:
            r = ex.request
            headers = {k: v for k, v in r.headers if k.lower() in ("content-type", "accept")}
            statuses.append(
                call(service_port, r.method, r.target, r.body or None, headers, conn=conn)[0]
            )
        conn.close()
        assert statuses == [ex.response.status for ex in inbound if ex.response]
        misses = fleet.misses()
        assert misses == [], misses[0].explanation if misses else ""
        stats = {s.dependency: s for s in fleet.stats()}
        assert stats["payments"].hits == 16 and stats["inventory"].hits == 100
        assert set(ports) == {"payments", "inventory"}
    finally:
        proc.stop()
        fleet.stop()
    assert not [e for e in events if isinstance(e, MockMiss)]
    final = {e.dependency: e for e in events if isinstance(e, MockStats)}
    assert final["payments"].hits == 16


def _project(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "profiles").mkdir()
    p = tmp_path / "profiles" / "shop.toml"
    p.write_text(
        f"""
name = "shop"
[service]
port = 8000
command = ["true"]

[[dependency]]
name = "payments"
env = "PAYMENTS_URL"
port = {free_port()}
on_miss = "fail"
match = {{ ignore_body = ["$.request_id"] }}

[[dependency]]
name = "tax-service"
{extra}
"""
    )
    rec = tmp_path / "mocks" / "shop"
    write_recording(
        rec / "payments" / "a.json",
        "payments",
        Direction.OUTBOUND,
        [exchange(1, "POST", "/charges", body=b'{"request_id": "r1", "amount": 3}')],
    )
    write_recording(
        rec / "tax-service" / "a.json",
        "tax-service",
        Direction.OUTBOUND,
        [exchange(2, "GET", "/rates")],
    )
    return p


def test_profile_ports_urls_modes_and_rules(tmp_path: Path) -> None:
    profile = load_profile(_project(tmp_path))
    fixed = profile.dependency("payments").port
    with MockFleet(profile) as fleet:
        ports = fleet.ports()
        assert ports["payments"] == fixed and ports["tax-service"] > 0
        assert fleet.urls() == {
            "PAYMENTS_URL": f"http://127.0.0.1:{fixed}",
            "TAX_SERVICE_URL": f"http://127.0.0.1:{ports['tax-service']}",
        }
        assert fleet.exchanges() == {"payments": 1, "tax-service": 1}
        # the profile's match rules apply: $.request_id is ignored
        assert call(fixed, "POST", "/charges", b'{"amount": 3, "request_id": "zz"}')[0] == 200
        fleet.set_mode("payments", "passthrough")
        assert {s.dependency: s.mode for s in fleet.stats()}["payments"] == "passthrough"
        with pytest.raises(UsageError):
            fleet.set_mode("payments", "bogus")
        with pytest.raises(NotFoundError):
            fleet.set_mode("nope", "replay")
        fleet.reset()
        fleet.reload()
    fleet.stop()  # twice is fine


def test_only_and_port_overrides(tmp_path: Path) -> None:
    profile = load_profile(_project(tmp_path))
    with MockFleet(profile, only=["tax-service"], ports={"tax-service": 0}) as fleet:
        assert list(fleet.ports()) == ["tax-service"]
    with pytest.raises(NotFoundError):
        MockFleet(profile, only=["nope"])


def test_busy_port_and_broken_recordings_are_devbox_errors(tmp_path: Path) -> None:
    profile = load_profile(_project(tmp_path))
    port = profile.dependency("payments").port
    assert port is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        fleet = MockFleet(profile)
        with pytest.raises(EngineError, match=f"mock payments: cannot listen on 127.0.0.1:{port}"):
            fleet.start()
        fleet.stop()
    bad = tmp_path / "mocks" / "shop" / "payments" / "b.json"
    bad.write_text('{"devbox_recording": true, "format": 99}\n')
    with pytest.raises(RecordingError, match="unsupported format version 99"):
        MockFleet(profile).start()


def test_stats_events_follow_traffic(tmp_path: Path) -> None:
    profile = load_profile(_project(tmp_path))
    events: list[Event] = []
    with MockFleet(profile, on_event=events.append) as fleet:
        port = fleet.ports()["tax-service"]
        for _ in range(3):
            call(port, "GET", "/rates")
        call(port, "GET", "/nope")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            last = [e for e in events if isinstance(e, MockStats) and e.dependency == "tax-service"]
            if last and (last[-1].hits, last[-1].misses) == (3, 1):
                break
            time.sleep(0.05)
        assert (last[-1].hits, last[-1].misses, last[-1].port) == (3, 1, port)
        assert "GET /nope: no recording matches" in last[-1].last_miss

"""The admin API against a hostile web page, over real sockets: DNS rebinding (a
foreign Host), a cross-site Origin, a missing or wrong token; and the ``--har`` mock
that must not be switched to passthrough."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest
from mock_helpers import ADMIN, ADMIN_TOKEN, call, exchange, running

from devbox.core.profile import load_profile
from devbox.mock import MockFleet
from devbox.wire.admin_token import read_token, token_path

OK = exchange(1, "GET", "/ok")
EVIL = "https://evil.example"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_foreign_host_is_refused_with_421(method: str) -> None:
    with running([OK]) as (fleet, port):
        target = "/__devbox/stats" if method == "GET" else "/__devbox/reset?journal=1"
        headers = {"Host": f"rebind.evil.example:{port}", **ADMIN}
        status, _, body = call(port, method, target, headers=headers)
        assert status == 421, body
        assert fleet.servers["dep"].admin_refused == 1
        # the mocked traffic itself answers whatever Host the service uses
        assert call(port, "GET", "/ok", headers={"Host": "payments.internal"})[0] == 200


@pytest.mark.parametrize(
    "target", ["/__devbox/stats", "/__devbox/journal", "/__devbox/mode?mode=replay"]
)
def test_a_cross_site_origin_is_refused_with_403(target: str) -> None:
    with running([OK]) as (_fleet, port):
        method = "POST" if "mode" in target else "GET"
        for origin in (EVIL, "null", "http://localhost.evil.example"):
            status, _, body = call(port, method, target, headers={"Origin": origin, **ADMIN})
            assert status == 403, (origin, body)
        # a page served from loopback (devbox's own tools) may ask
        status, _, _ = call(
            port, "GET", "/__devbox/stats", headers={"Origin": "http://127.0.0.1:9"}
        )
        assert status == 200


def test_state_changes_need_the_token() -> None:
    with running([OK, exchange(2, "GET", "/ok")]) as (fleet, port):
        assert call(port, "GET", "/ok")[2] == b'{"n": 1}'
        for headers in ({}, {"X-Devbox-Token": "wrong"}, {"X-Devbox-Token": ""}):
            for target in ("/__devbox/reset?journal=1", "/__devbox/mode?mode=replay"):
                status, _, body = call(port, "POST", target, headers=headers)
                assert status == 403 and b"X-Devbox-Token" in body, body
            assert call(port, "POST", "/__devbox/reload", headers=headers)[0] == 403
        # nothing changed: the sequence goes on, the journal is whole
        assert call(port, "GET", "/ok")[2] == b'{"n": 2}'
        assert len(fleet.journal("dep", after=0)["entries"]) == 2
        # reads stay open to loopback clients
        assert call(port, "GET", "/__devbox/stats")[0] == 200
        assert call(port, "POST", "/__devbox/reset", headers=ADMIN)[0] == 200
        assert call(port, "GET", "/ok")[2] == b'{"n": 1}'


def test_without_a_token_the_admin_api_is_read_only() -> None:
    with running([OK], admin_token=None) as (_fleet, port):
        assert call(port, "POST", "/__devbox/reset", headers=ADMIN)[0] == 403
        assert call(port, "GET", "/__devbox/stats")[0] == 200


def test_a_har_mock_refuses_passthrough_even_through_the_admin_api() -> None:
    with running([OK]) as (fleet, port):
        for mode in ("passthrough", "record"):
            status, _, body = call(port, "POST", f"/__devbox/mode?mode={mode}", headers=ADMIN)
            assert status == 409 and b"needs an upstream" in body
        assert fleet.stats()[0].mode == "replay"
        # the miss still fails instead of being forwarded somewhere
        assert call(port, "GET", "/elsewhere")[0] == 502


def test_stats_say_when_the_recordings_were_loaded() -> None:
    with running([OK]) as (_fleet, port):
        stats = orjson.loads(call(port, "GET", "/__devbox/stats")[2])
        assert stats["loaded_at"] > 1.6e9


def test_a_profile_fleet_uses_the_project_token_file(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/p.toml").write_text(
        'name = "p"\n\n[service]\ncommand = ["true"]\nport = 1\n\n'
        '[[dependency]]\nname = "inv"\nupstream = "http://127.0.0.1:9"\n'
    )
    profile = load_profile(tmp_path / "profiles/p.toml")
    with MockFleet(profile, ports={"inv": 0}) as fleet:
        port = fleet.ports()["inv"]
        token = read_token(tmp_path)
        assert token and token != ADMIN_TOKEN
        assert stat.S_IMODE(os.stat(token_path(tmp_path)).st_mode) == 0o600
        assert call(port, "POST", "/__devbox/reset", headers=ADMIN)[0] == 403
        ok = {"X-Devbox-Token": token}
        status, _, body = call(port, "POST", "/__devbox/mode?mode=passthrough", headers=ok)
        assert status == 200 and orjson.loads(body)["mode"] == "passthrough"

"""``devbox mock`` as a user runs it: a real process, real ports, Ctrl-C, bad input."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from conftest import ROOT, free_port, wait_port
from mock_helpers import call, exchange

from devbox.core.har import exchanges_to_har
from devbox.core.model import Direction
from devbox.store import write_recording

DEVBOX = [sys.executable, "-m", "devbox"]


def start(args: list[str], cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DEVBOX, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200"},
    )


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return proc.returncode, out, err


def run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEVBOX, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200"},
    )


def test_mock_a_profile_prints_the_table_serves_and_exits_cleanly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    (tmp_path / "profiles").mkdir()
    pay, inv = free_port(), free_port()
    (tmp_path / "profiles" / "shop.toml").write_text(
        f"""name = "shop"
[service]
port = 8000
command = ["true"]
[[dependency]]
name = "payments"
port = {pay}
[[dependency]]
name = "inventory"
port = {inv}
"""
    )
    rec = tmp_path / "mocks" / "shop"
    write_recording(
        rec / "payments" / "a.json",
        "payments",
        Direction.OUTBOUND,
        [exchange(1, "POST", "/charges", body=b'{"a": 1}', status=201)],
    )
    write_recording(
        rec / "inventory" / "a.json",
        "inventory",
        Direction.OUTBOUND,
        [exchange(i, "GET", f"/items/{i}") for i in range(3)],
    )
    proc = start(["mock", "shop"], cwd=tmp_path)
    try:
        wait_port(pay)
        wait_port(inv)
        assert call(pay, "POST", "/charges", b'{"a":1}')[0] == 201
        assert call(inv, "GET", "/items/2")[2] == b'{"n": 2}'
        assert call(inv, "GET", "/items/9")[0] == 502
        time.sleep(0.3)
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["payments"][1:3] == [str(pay), "1"]
    assert rows["inventory"][1:3] == [str(inv), "3"]
    assert rows["payments"][3] == "replay"
    assert "miss inventory GET /items/9: no recording matches" in err
    assert "inventory: 1 hits, 1 misses" in err


def test_a_profile_with_only_wire_mocks_announces_no_http_admin_api(tmp_path: Path) -> None:
    """A Redis-only fleet has no ``/__devbox/`` admin API and no https:// on its port: the
    banner must not promise them (it once printed the HTTP banner for any fleet)."""
    (tmp_path / "profiles").mkdir()
    port = free_port()
    (tmp_path / "profiles" / "shop.toml").write_text(
        'name = "shop"\n[service]\nport = 8000\ncommand = ["true"]\n'
        f'[[dependency]]\nname = "cache"\nkind = "redis"\nport = {port}\n'
        'upstream = "redis://127.0.0.1:6379/0"\n'
    )
    proc = start(["mock", "shop"], cwd=tmp_path)
    try:
        wait_port(port)
        time.sleep(0.3)
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert out.split("\n")[1].split()[:2] == ["cache", str(port)]
    assert "serving 1 mock; Ctrl-C to stop" in err
    assert "__devbox" not in err and "https://" not in err


def test_standalone_har_and_sigterm(tmp_path: Path) -> None:
    har = tmp_path / "t.har"
    exs = [
        exchange(i, "GET", f"/h/{i}", resp_headers=(("X-Request-Id", f"r{i}"),)) for i in range(5)
    ]
    har.write_bytes(orjson.dumps(exchanges_to_har(exs)))
    port = free_port()
    proc = start(["mock", "--har", str(har), "--port", str(port)])
    try:
        wait_port(port)
        status, headers, body = call(port, "GET", "/h/3")
        assert (status, headers["x-request-id"], body) == (200, "r3", b'{"n": 3}')
    finally:
        code, out, err = stop(proc, signal.SIGTERM)  # how benchmarks and supervisors stop it
    assert code == 0, err
    assert re.search(rf"mock\s+{port}\s+5\s+replay", out)


def test_standalone_recording_on_a_free_port_with_json_output(tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    write_recording(rec, "pay", Direction.OUTBOUND, [exchange(1, "GET", "/x")])
    proc = start(["mock", "--recording", str(rec), "--port", "0", "--json", "--name", "pay"])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        serving = json.loads(line)
        (mock,) = serving["mocks"]
        assert mock["dependency"] == "pay" and mock["exchanges"] == 1
        port = mock["port"]
        assert call(port, "GET", "/x")[0] == 200
        assert call(port, "GET", "/y")[0] == 502
        miss = json.loads(proc.stdout.readline())
        assert miss["event"] == "miss" and miss["target"] == "/y"
        assert "GET /y: no recording matches" in miss["explanation"]
    finally:
        code, _, err = stop(proc)
    assert code == 0, err


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    r = run(["mock"])
    assert r.returncode == 2 and "give a profile, or --har FILE, or --recording PATH" in r.stderr
    r = run(["mock", "--har", str(tmp_path / "missing.har")])
    assert r.returncode == 2 and "missing.har: no such HAR file" in r.stderr
    bad = tmp_path / "bad.har"
    bad.write_text('{"log": {\n  "entries": [\n    {oops}\n]}}')
    r = run(["mock", "--har", str(bad)])
    assert r.returncode == 2 and f"{bad}:3: invalid JSON" in r.stderr
    rec = tmp_path / "r.json"
    write_recording(rec, "pay", Direction.OUTBOUND, [exchange(1)])
    r = run(["mock", "--recording", str(rec), "--ignore-body", "amount"])
    assert r.returncode == 2 and "--ignore-body: not a JSON path: 'amount'" in r.stderr
    r = run(["mock", "--recording", str(rec), "--on-miss", "passthrough"])
    assert r.returncode == 2 and "needs --upstream URL" in r.stderr
    r = run(["mock", "demo", "--port", "1234"])
    assert r.returncode == 2 and "--port PORT is ambiguous" in r.stderr
    r = run(["mock", "nosuchprofile"])
    assert r.returncode == 2 and "no profile named 'nosuchprofile'" in r.stderr
    assert "Traceback" not in r.stderr


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    rec = tmp_path / "r.json"
    write_recording(rec, "pay", Direction.OUTBOUND, [exchange(1)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run(["mock", "--recording", str(rec), "--port", str(port)])
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr

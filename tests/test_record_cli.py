"""``devbox record`` as a user runs it: the demo through the real runtime, a wrapped client
command's exit code, Ctrl-C with a summary and no orphan, usage errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, free_port, wait_port
from record_helpers import Upstream, all_bytes, exchanges, start_upstream, wait_for, write_profile

DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.close()


def _demo_project(tmp: Path, upstreams: dict[str, int]) -> dict[str, int]:
    """A copy of the demo profile on free ports, the demo's code linked in."""
    ports = {"service": free_port(), "payments": free_port(), "inventory": free_port()}
    text = (ROOT / "profiles/demo.toml").read_text()
    text = text.replace("port = 7080", f"port = {ports['service']}")
    text = text.replace("port = 7101", f"port = {ports['payments']}")
    text = text.replace("port = 7102", f"port = {ports['inventory']}")
    text = text.replace("127.0.0.1:7201", f"127.0.0.1:{upstreams['payments']}")
    text = text.replace("127.0.0.1:7202", f"127.0.0.1:{upstreams['inventory']}")
    (tmp / "profiles").mkdir()
    (tmp / "profiles/demo.toml").write_text(text)
    (tmp / "examples").symlink_to(ROOT / "examples")
    return ports


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_demo_record_through_the_runtime_with_a_wrapped_client(
    tmp_path: Path, demo_upstreams: dict[str, int]
) -> None:
    _demo_project(tmp_path, demo_upstreams)
    r = subprocess.run(
        [
            *DEVBOX,
            "record",
            "demo",
            "--runtime",
            "process",
            "--json",
            "--",
            sys.executable,
            "examples/demo/traffic.py",
            "{inbound}",
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    # the client's own output comes first on stdout, then the JSON summary
    client_line, _, summary_text = r.stdout.partition("\n")
    assert json.loads(client_line)["sent"] == 100
    summary = json.loads(summary_text)
    assert summary["committed"] and summary["sources"]["inbound"]["exchanges"] == 100
    mocks = tmp_path / "mocks/demo"
    inbound = exchanges(mocks, "inbound")
    inventory = exchanges(mocks, "inventory")
    payments = exchanges(mocks, "payments")
    assert len(inbound) == 100 and all(e.ok for e in inbound)
    assert len(payments) == summary["sources"]["payments"]["exchanges"] > 0
    ids = {e.id for e in inbound}
    # sequential client: every outbound call is linked to the inbound request it served
    assert all(e.parent in ids for e in inventory + payments)
    by_id = {e.id: e for e in inbound}
    assert {by_id[e.parent].request.path for e in payments if e.parent} == {"/orders"}
    # redacted before writing: card numbers, e-mails and the service's token never hit disk
    on_disk = all_bytes(mocks)
    for secret in (b"4242424242424242", b"4000000000000002", b"@example.com", b"sk_test_demo"):
        assert secret not in on_disk
    assert summary["redactions"]["authorization"] == len(payments)
    assert "orders ready in" in r.stderr


def test_wrapped_command_exit_code_is_returned_and_the_set_committed(
    tmp_path: Path, upstream: Upstream
) -> None:
    write_profile(tmp_path, {"payments": upstream.url})
    client = (
        "import sys, urllib.request as u\n"
        "for i in range(3): u.urlopen(sys.argv[1] + f'/n/{i}').read()\n"
        "sys.exit(3)\n"
    )
    r = subprocess.run(
        [
            *DEVBOX,
            "record",
            "rec",
            "--no-service",
            "--",
            sys.executable,
            "-c",
            client,
            "{payments}",
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3, r.stderr
    assert "recorded 3 exchanges" in r.stdout
    assert [e.request.path for e in exchanges(tmp_path / "mocks/rec", "payments")] == [
        "/n/0",
        "/n/1",
        "/n/2",
    ]
    assert "Traceback" not in r.stderr


def test_ctrl_c_prints_a_summary_commits_and_leaves_no_process(
    tmp_path: Path, demo_upstreams: dict[str, int]
) -> None:
    ports = _demo_project(tmp_path, demo_upstreams)
    listen = free_port()
    proc = subprocess.Popen(
        [*DEVBOX, "record", "demo", "--runtime", "process", "--listen", str(listen)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(ports["service"], timeout=30)
        wait_port(listen, timeout=30)
        for path in ("/catalog", "/items/KB-101", "/quote?sku=MS-202&qty=2"):
            urllib.request.urlopen(f"http://127.0.0.1:{listen}{path}", timeout=10).read()
        descendants = _children(proc.pid)
        assert descendants, "the service should run as a child of devbox record"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert re.search(r"recorded 6 exchanges", out), out
    assert re.search(r"inbound\s+3\s+0\s+0", out), out
    assert "redactions:" in out
    wait_for(lambda: not any(_alive(p) for p in descendants), timeout=10)
    assert [e.request.path for e in exchanges(tmp_path / "mocks/demo", "inbound")] == [
        "/catalog",
        "/items/KB-101",
        "/quote",
    ]


def test_sigterm_during_a_wrapped_command_stops_it_and_commits(
    tmp_path: Path, upstream: Upstream
) -> None:
    write_profile(tmp_path, {"payments": upstream.url})
    # the handler is in place before "sent" is printed: with a try around the sleep only,
    # a SIGINT landing between the print and the try gave a traceback (1 run in 5)
    client = (
        "import signal, sys, time, urllib.request as u\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(130))\n"
        "u.urlopen(sys.argv[1] + '/n/1').read()\n"
        "print('sent', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [
            *DEVBOX,
            "record",
            "rec",
            "--no-service",
            "--",
            sys.executable,
            "-c",
            client,
            "{payments}",
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "sent"
        kids = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the client was interrupted (SIGINT forwarded): its exit code is passed on
    assert proc.returncode == 130, err
    assert "recorded 1 exchanges" in out and "Traceback" not in err
    assert not any(_alive(p) for p in kids)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "nope=1"], "has no dependency 'nope'"),
        (["--max-body-kb", "0"], "must be at least 1"),
        (["--listen", "99999"], "port out of range"),
        (["--ca-bundle", "/nonexistent/ca.pem"], "no such CA bundle file"),
        (["--append", "stray"], "unexpected arguments"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    tmp_path: Path, upstream: Upstream, args: list[str], message: str
) -> None:
    write_profile(tmp_path, {"payments": upstream.url})
    r = subprocess.run(
        [*DEVBOX, "record", "rec", "--no-service", *args],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "mocks").exists()


def test_a_service_that_never_gets_ready_records_nothing(
    tmp_path: Path, upstream: Upstream
) -> None:
    write_profile(
        tmp_path,
        {"payments": upstream.url},
        service_port=free_port(),
        service='command = ["' + sys.executable + '", "-c", "import sys; sys.exit(4)"]\n'
        "ready = { tcp = true, timeout_s = 5 }",
    )
    started = time.monotonic()
    r = subprocess.run(
        [*DEVBOX, "record", "rec", "--runtime", "process", "--", "true"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "error:" in r.stderr
    assert time.monotonic() - started < 30
    assert not list(tmp_path.glob("mocks/**/*.json*"))

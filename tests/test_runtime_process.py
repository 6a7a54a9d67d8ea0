"""The process runtime end to end on the demo service: real processes, sockets and signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, free_port, wait_port
from runtime_support import Events, edit_tax, get_json, make_project, upstream_env

from devbox.core.events import Log, ServiceState
from devbox.core.profile import load_profile
from devbox.errors import EngineError, ServiceNotReady
from devbox.runtime import ProcessRuntime, down, reap_orphans
from devbox.runtime.ownership import same_process
from devbox.runtime.sessions import group_members, iter_sessions

APP_CMD = 'command = ["python3", "examples/demo/orders/app.py"]'
READY = 'ready = { http = "/healthz", timeout_s = 20 }'


def py_cmd(code: str) -> str:
    return 'command = ["python3", "-c", "' + code.replace('"', '\\"') + '"]'


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    path = make_project(tmp_path, port=free_port())
    yield path
    down(root=tmp_path, use_docker=False)


def test_runs_the_demo_with_env_restarts_and_stops_cleanly(
    project: Path, demo_upstreams: dict[str, int]
) -> None:
    profile = load_profile(project)
    events = Events()
    rt = ProcessRuntime(profile, on_event=events, session="t1")
    try:
        rt.prepare()
        rt.start(upstream_env(demo_upstreams))
        took = rt.wait_ready()
        assert 0 < took < 20
        status, body = get_json(rt.port, "/quote?sku=KB-101&qty=1")
        assert status == 200 and body["tax"] == 17.8 and body["total"] == 111.75
        assert any("listening on 127.0.0.1:" in e.text for e in events.of(Log))
        assert [e.state for e in events.of(ServiceState)][:2] == ["starting", "ready"]
        pid1 = rt.pid
        assert pid1 is not None

        edit_tax(profile.root / "examples/demo/orders/app.py", "0.5")
        rt.sync([profile.root / "examples/demo/orders/app.py"])  # no-op: runs from the tree
        rt.restart()
        rt.wait_ready()
        assert rt.pid != pid1 and not same_process(pid1, None)
        status, body = get_json(rt.port, "/quote?sku=KB-101&qty=1")
        assert status == 200 and body["tax"] == 44.5
        assert rt.restarts == 1

        rt.rebuild()  # the process runtime's rebuild is a restart
        rt.wait_ready()
        assert rt.restarts == 2
        sessions = list(iter_sessions(profile.root))
        assert [s.session for s in sessions] == ["t1"]
        assert sessions[0].children[0].pid == rt.pid
        last = rt.pid
    finally:
        rt.stop()
    assert last is not None and not same_process(last, None)
    assert group_members(last) == []
    assert list(iter_sessions(profile.root)) == []
    assert events.of(ServiceState)[-1].state == "stopped"
    rt.stop()  # idempotent


def test_crash_is_reported_at_once_with_its_output(tmp_path: Path) -> None:
    path = make_project(
        tmp_path,
        port=free_port(),
        replace={APP_CMD: py_cmd("import sys; print('config missing: DB_URL'); sys.exit(3)")},
    )
    rt = ProcessRuntime(load_profile(path), session="crash")
    rt.start({})
    t0 = time.monotonic()
    with pytest.raises(ServiceNotReady) as exc:
        rt.wait_ready()
    assert time.monotonic() - t0 < 10  # not the 20 s timeout
    assert "exited with code 3" in exc.value.message
    assert "config missing: DB_URL" in exc.value.logs
    assert rt.check_alive() == "exited with code 3"
    rt.stop()


def test_never_ready_times_out_with_the_probe_named(tmp_path: Path) -> None:
    path = make_project(
        tmp_path,
        port=free_port(),
        replace={
            APP_CMD: py_cmd("import time; print('warming up', flush=True); time.sleep(30)"),
            READY: 'ready = { http = "/healthz", timeout_s = 0.5 }',
        },
    )
    rt = ProcessRuntime(load_profile(path), session="slow")
    rt.start({})
    try:
        expected = r"not ready after 0.5s: waited for GET http://127.0.0.1:\d+/healthz"
        with pytest.raises(ServiceNotReady, match=expected) as exc:
            rt.wait_ready()
        assert "warming up" in exc.value.logs
    finally:
        pid = rt.pid
        rt.stop()
    assert pid is not None and not same_process(pid, None)


def test_log_line_readiness(tmp_path: Path) -> None:
    path = make_project(
        tmp_path,
        port=free_port(),
        replace={READY: 'ready = { log = "listening on [0-9.]+:[0-9]+", timeout_s = 10 }'},
    )
    rt = ProcessRuntime(load_profile(path), session="logready")
    try:
        rt.start({})
        rt.wait_ready()
        assert get_json(rt.port, "/healthz")[0] == 200
        rt.restart()
        rt.wait_ready()
        assert get_json(rt.port, "/healthz")[0] == 200
    finally:
        rt.stop()


def test_a_busy_port_is_refused_before_starting(project: Path) -> None:
    profile = load_profile(project)
    with socket.socket() as s:
        s.bind(("127.0.0.1", profile.service.port))
        s.listen()
        rt = ProcessRuntime(profile, session="busy")
        with pytest.raises(EngineError, match=f"port {profile.service.port} is already in use"):
            rt.start({})
        assert rt.pid is None


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    code = (
        "import subprocess, http.server, os; subprocess.Popen(['sleep', '60']);"
        "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])),"
        " http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    path = make_project(
        tmp_path,
        port=free_port(),
        replace={APP_CMD: py_cmd(code), READY: "ready = { tcp = true, timeout_s = 10 }"},
    )
    rt = ProcessRuntime(load_profile(path), session="group")
    rt.start({})
    rt.wait_ready()
    leader = rt.pid
    assert leader is not None
    deadline = time.monotonic() + 5
    while len(group_members(leader)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(group_members(leader)) == 2  # the server and its sleep
    rt.restart()
    rt.wait_ready()
    assert group_members(leader) == []  # restart took the old worker too
    second = rt.pid
    assert second is not None and len(group_members(second)) >= 1
    rt.stop()
    assert group_members(second) == []


def _devbox(*args: str) -> list[str]:
    return [sys.executable, "-m", "devbox", *args]


def test_sigkilled_devbox_run_leaves_nothing_after_down(project: Path) -> None:
    """`devbox run --runtime process` killed with SIGKILL: its child dies with it
    (PDEATHSIG); a grandchild would survive, so `devbox down` finishes from the session file."""
    profile = load_profile(project)
    proc = subprocess.Popen(
        _devbox("run", str(project), "--runtime", "process"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(profile.service.port, timeout=20)
        sessions = list(iter_sessions(profile.root))
        assert len(sessions) == 1
        child = sessions[0].children[0]
        assert child.alive()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        out = subprocess.run(
            _devbox("down", str(project)), cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 5
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not child.alive()
        assert group_members(child.pid) == []
        assert list(iter_sessions(profile.root)) == []
        assert "nothing to remove" in out.stdout or "removed" in out.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_and_ctrl_c_stop_devbox_run_cleanly(project: Path) -> None:
    profile = load_profile(project)
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen(
            _devbox("run", str(project), "--runtime", "process"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_port(profile.service.port, timeout=20)
            child = next(iter_sessions(profile.root)).children[0]
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=20)
            assert proc.returncode == 0, out
            assert "stopped orders" in out
            assert not child.alive()
            assert list(iter_sessions(profile.root)) == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_reap_orphans_ends_grandchildren_of_a_dead_session(tmp_path: Path) -> None:
    """A session whose owner died and whose service left a worker behind."""
    code = (
        "import subprocess, time; subprocess.Popen(['sleep', '60']);"
        "print('up', flush=True); time.sleep(60)"
    )
    path = make_project(
        tmp_path,
        port=free_port(),
        replace={APP_CMD: py_cmd(code), READY: 'ready = { log = "^up$", timeout_s = 10 }'},
    )
    script = (
        "from devbox.core.profile import load_profile; from devbox.runtime import ProcessRuntime;"
        f"rt = ProcessRuntime(load_profile({str(path)!r}), session='dead');"
        "rt.start({}); rt.wait_ready(); print(rt.pid, flush=True); import time; time.sleep(60)"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
    assert owner.stdout is not None
    leader = int(owner.stdout.readline())
    deadline = time.monotonic() + 5
    while len(group_members(leader)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(5)
    deadline = time.monotonic() + 5
    while len(group_members(leader)) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(group_members(leader)) == 1  # the leader died with devbox; its sleep did not
    removed = reap_orphans(root=tmp_path, use_docker=False)
    assert any(r.startswith("process ") and "session dead" in r for r in removed)
    assert group_members(leader) == []
    assert list(iter_sessions(tmp_path)) == []

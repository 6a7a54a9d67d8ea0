"""The dashboard in a real terminal: ``devbox up demo`` inside tmux on a private copy
of the demo, an edit to the service's code, the new verdict read off the screen,
``q``, and nothing left listening."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devbox.core.profile import load_profile

pytestmark = [pytest.mark.tmux, pytest.mark.tui]

APP = Path("examples/demo/orders/app.py")


def _tmux(*args: str) -> str:
    out = subprocess.run(["tmux", *args], capture_output=True, text=True, check=False)
    return out.stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait_screen(session: str, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = _screen(session)
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not on screen after {timeout}s:\n{_screen(session)}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("runtime", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_up_edit_verdict_quit(demo_project: Path, tmp_path: Path, runtime: str) -> None:
    # conftest skips tmux tests where tmux is missing, except under CI=true
    root = demo_project.parent.parent
    profile = load_profile(demo_project)
    ports = [profile.service.port, *(d.port for d in profile.dependencies if d.port)]
    session = f"devbox-tui-{os.getpid()}"
    done = tmp_path / "exit-code"
    cmd = (
        f"{sys.executable} -m devbox up {demo_project} --runtime {runtime}; "
        f"echo $? > {done}; sleep 60"
    )
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", "-c", str(root), cmd)
    try:
        first = _wait_screen(session, "iteration 0: PASS", 90)
        assert "ready" in first
        # a real change to a pricing rule: some routes now fail
        path = root / APP
        text = path.read_text()
        assert "TAX_RATE = 0.20" in text
        path.write_text(text.replace("TAX_RATE = 0.20", "TAX_RATE = 0.25"))
        _wait_screen(session, "iteration 1: FAIL", 60)
        # the verdict is drawn first, on a frame of its own; the results follow
        _wait_screen(session, "newly failing", 10)
        _tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done.exists(), _screen(session)
        assert done.read_text().strip() == "0"
        assert not [p for p in ports if _listening(p)]
        if runtime == "docker":
            import docker

            from devbox.runtime.ownership import project_hash

            label = f"devbox.project={project_hash(root.resolve())}"
            client = docker.from_env()
            assert not client.containers.list(all=True, filters={"label": label})
    finally:
        _tmux("kill-session", "-t", session)

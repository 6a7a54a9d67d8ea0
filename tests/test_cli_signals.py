"""Ctrl-C stops a long-running command whichever of its threads the kernel hands the
signal to. Python runs the handler in the main thread only; a signal taken by another
thread (a mock's loop, the engine's) left the main thread in an hour-long (``devbox
mock``) or endless (``devbox up --headless``) wait, and under load ``devbox mock`` was
seen to ignore SIGINT in about one stop of three. Here the signal is sent to one thread
that is not the main one (``tgkill``), which makes that case certain."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

from mock_helpers import call, exchange
from test_engine_e2e import _alive, _children, up_until_first_pass
from test_mock_cli import DEVBOX

from devbox.core.model import Direction
from devbox.store import write_recording

_TGKILL = {"x86_64": 234, "aarch64": 131}


def signal_another_thread(pid: int, sig: int) -> None:
    """``sig`` to a thread of ``pid`` other than its main one (the newest)."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert tids, "the command should run a thread besides its main one"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_TGKILL[platform.machine()], pid, tids[-1], sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


def test_devbox_mock_stops_on_a_sigint_another_thread_takes(tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    write_recording(rec, "pay", Direction.OUTBOUND, [exchange(1, "GET", "/x")])
    proc = subprocess.Popen(
        [*DEVBOX, "mock", "--recording", str(rec), "--port", "0", "--json", "--name", "pay"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["mocks"][0]["port"]
        assert call(port, "GET", "/x")[0] == 200
        signal_another_thread(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_devbox_up_stops_on_a_sigint_another_thread_takes(demo_project: Path) -> None:
    proc = up_until_first_pass(demo_project)
    try:
        children = _children(proc.pid)
        assert children, "the service should run as a child of devbox"
        signal_another_thread(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        time.sleep(0.3)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out
    assert "stopping: tearing the sandbox down" in out

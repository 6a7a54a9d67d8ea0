"""A container dies with the devbox process that owns it (real Docker engine).

``devbox up`` killed with SIGKILL runs no teardown; the watchdog it started next to
its container (devbox/runtime/reaper.py) removes the container. ``devbox down`` from
another terminal while ``up`` runs is noticed and reported. Each test counts only its
own project's containers, by the ``devbox.project`` label.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from runtime_support import reapers

from devbox.runtime.ownership import project_hash

pytestmark = pytest.mark.docker


class Up:
    """`devbox up demo --headless` on the Docker runtime, its output collected by a thread."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devbox", "up", "demo", "--headless", "--runtime", "docker"],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # the terminal view wraps long lines: compare with whitespace collapsed
        while needle not in " ".join(" ".join(self.lines).split()):
            if time.monotonic() > deadline or (
                self.proc.poll() is not None and not self._reader.is_alive()
            ):
                pytest.fail(f"{needle!r} never came:\n" + "".join(self.lines))
            time.sleep(0.05)

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)


def containers(client: Any, root: Path) -> list[Any]:
    label = f"devbox.project={project_hash(root.resolve())}"
    return list(client.containers.list(all=True, filters={"label": label}))


def until(cond: Any, timeout: float) -> float | None:
    """Seconds until ``cond()`` held, or None when it did not within ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def down(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devbox", "down", "demo"],
        cwd=root, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_sigkill_of_up_takes_its_container_along(demo_project: Path) -> None:
    import docker

    root = demo_project.parent.parent
    client = docker.from_env()
    up = Up(root)
    try:
        up.wait_for("iteration 0: PASS", 180)
        (container,) = containers(client, root)
        assert reapers(container.id), "a watchdog guards the container"
        os.kill(up.proc.pid, signal.SIGKILL)  # no teardown can run
        up.proc.wait(20)
        # the requirement is 10 s; the bound is loose for a loaded machine (the figure
        # is measured by bench/bench_reaper.py)
        took = until(lambda: not containers(client, root), 60)
        assert took is not None, "the container outlived its owner"
        assert until(lambda: not reapers(container.id), 30) is not None, "the watchdog stayed"
    finally:
        up.end()
        down(root)


def test_down_from_another_terminal_is_noticed_by_up(demo_project: Path) -> None:
    import docker

    root = demo_project.parent.parent
    client = docker.from_env()
    up = Up(root)
    try:
        up.wait_for("iteration 0: PASS", 180)
        (container,) = containers(client, root)
        out = down(root)
        assert out.returncode == 0, out.stderr
        up.wait_for("was removed while devbox was running it", 60)
        assert up.proc.poll() is None, "up keeps running and says so"
        assert until(lambda: not reapers(container.id), 30) is not None, "the watchdog stayed"
    finally:
        up.end()
        down(root)

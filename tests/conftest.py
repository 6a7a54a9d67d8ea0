"""Shared fixtures: free ports, the demo's stand-in upstreams, and the rules for
tests that need Docker or tmux (they run under CI=true and never skip there)."""

from __future__ import annotations

import collections
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loop_support import Loop

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# devbox's local CA (HTTPS mocks, interception) lives in the user's data directory: the
# tests, and every devbox they start, get one of their own, never the user's
if not os.environ.get("DEVBOX_TEST_KEEP_XDG"):
    import atexit
    import tempfile

    _XDG = tempfile.mkdtemp(prefix="devbox-test-xdg-")
    os.environ["XDG_DATA_HOME"] = _XDG
    atexit.register(shutil.rmtree, _XDG, True)


_HANDED_OUT: set[int] = set()


def opaque_token() -> str:
    """An opaque API token as a service mints one (``secrets``, no dash) that devbox takes
    for a generated value (``devbox.core.generated``). About 1 in 200 of
    ``token_urlsafe``'s read as words to ``looks_random`` (long lower-case runs) and are
    not taken: drawn again, or a test that binds one failed one run in a hundred."""
    import secrets

    from devbox.core.secret_formats import looks_random

    while True:
        t = secrets.token_urlsafe(24)
        if "-" not in t and looks_random(t):
            return t


def free_port() -> int:
    """A port nothing listens on, never the same one twice in this process.

    The kernel may hand the same ephemeral port to two ``bind(0)`` calls once the
    first socket is closed, so a test that asks for three ports can get one twice
    (CI once started a demo whose service and payments mock shared a port)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh free port after 200 tries")


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside CI, tests needing an absent Docker engine or tmux are skipped; under CI they run
    (and fail loudly if the engine is missing: .ci/run must have started it)."""
    if IN_CI:
        return
    have_docker = docker_available()
    have_tmux = shutil.which("tmux") is not None
    for item in items:
        if "docker" in item.keywords and not have_docker:
            item.add_marker(
                pytest.mark.skip(reason="no Docker engine answers (runs under CI=true)")
            )
        if "tmux" in item.keywords and not have_tmux:
            item.add_marker(pytest.mark.skip(reason="tmux is not installed (runs under CI=true)"))


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """End a child the test started, by its PID: SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def run_devbox(
    cwd: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m devbox ARGS`` in ``cwd`` as a user runs it, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "devbox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


class Proc:
    """A child process the test started; ended by PID at teardown.

    Its output is drained by a thread into the last ``KEEP_LINES`` lines (``output()``):
    a pipe nobody reads fills at 64 KiB and then every ``print`` of the child blocks. The
    demo service logs each request, so its 14th replay of 100 requests hung on a log
    line, which looked like a request lost under concurrency (docs/fidelity.md)."""

    KEEP_LINES = 200

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._lines: collections.deque[bytes] = collections.deque(maxlen=self.KEEP_LINES)
        self._drain = threading.Thread(target=self._read, daemon=True, name="proc-drain")
        self._drain.start()

    def _read(self) -> None:
        stream = self.popen.stdout
        assert stream is not None
        for line in iter(stream.readline, b""):
            self._lines.append(line)

    def output(self) -> str:
        """The child's last lines of output (stdout and stderr merged)."""
        return b"".join(self._lines).decode("utf-8", "replace")

    def stop(self) -> None:
        stop_process(self.popen, 5)


def demo_orders(mocks: dict[str, int]) -> tuple[Proc, int]:
    """The real demo service (examples/demo/orders) as a process on a free port, calling
    payments and inventory on the ``mocks`` ports; listening when this returns. The
    caller stops it."""
    port = free_port()
    proc = Proc(
        [sys.executable, str(ROOT / "examples/demo/orders/app.py")],
        env={
            "PORT": str(port),
            "PAYMENTS_URL": f"http://127.0.0.1:{mocks['payments']}",
            "INVENTORY_URL": f"http://127.0.0.1:{mocks['inventory']}",
        },
    )
    try:
        wait_port(port)
    except BaseException:
        proc.stop()
        raise
    return proc, port


@pytest.fixture
def demo_upstreams() -> Iterator[dict[str, int]]:
    """The demo's real payments and inventory stand-ins on free loopback ports."""
    ports = {"payments": free_port(), "inventory": free_port()}
    procs = [
        Proc(
            [
                sys.executable,
                str(ROOT / "examples/demo/upstreams/standins.py"),
                name,
                "--port",
                str(p),
            ]
        )
        for name, p in ports.items()
    ]
    try:
        for p in ports.values():
            wait_port(p)
        yield ports
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture(scope="module")
def devbox_ca() -> Path:
    """devbox's local CA certificate (in the session's XDG_DATA_HOME): what a client that
    trusts devbox is given."""
    from devbox.wire.ca import ensure_ca

    return ensure_ca()[1].cert


@pytest.fixture
def root() -> Path:
    return ROOT


def make_demo_project(dest: Path) -> Path:
    """A private copy of the demo (profile, service, recordings) on free ports.

    Tests that edit the service's code or run the sandbox do it here, never in the
    repository, so parallel tests and the developer's tree are left alone."""
    import re as _re

    shutil.copytree(ROOT / "examples" / "demo", dest / "examples" / "demo")
    shutil.copytree(ROOT / "mocks" / "demo", dest / "mocks" / "demo")
    (dest / "profiles").mkdir(parents=True)
    text = (ROOT / "profiles" / "demo.toml").read_text()
    ports = {"7080": free_port(), "7101": free_port(), "7102": free_port()}
    for old, new in ports.items():
        text = _re.sub(rf"\bport = {old}\b", f"port = {new}", text)
    (dest / "profiles" / "demo.toml").write_text(text)
    return dest / "profiles" / "demo.toml"


@pytest.fixture
def demo_project(tmp_path: Path) -> Path:
    """Path of profiles/demo.toml inside a private copy of the demo."""
    return make_demo_project(tmp_path / "project")


@pytest.fixture
def loop() -> Iterator[Loop]:
    """A loop on a thread of its own for the test's relays and mocks (loop_support)."""
    lp = Loop()
    try:
        yield lp
    finally:
        lp.close()

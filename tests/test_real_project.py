"""A real third-party project, end to end, as its user would run devbox on it (issue 14).

The project is docker/awesome-compose's ``flask`` sample, vendored unchanged (CC0) in
``examples/awesome-compose-flask``: a compose file building ``app/Dockerfile``'s
``builder`` stage, ``stop_signal: SIGINT``, port 8000, and an app that answers
``GET /`` with ``Hello World!`` on a port it hard-codes. The real CLI runs on a copy:

    devbox init --yes                         (the profile is never edited afterwards)
    devbox record web -- CLIENT {inbound}     (GET / and GET /nope, through the proxy)
    devbox watch web --json                   (iteration 0 green; edit the greeting: only
                                               GET / fails, with exactly that body change;
                                               revert: green again)

It runs as a process: the Dockerfile uses ``RUN --mount`` and heredocs, which devbox's
builder (the engine's classic builder) refuses, so ``init`` writes ``runtime =
"process"`` and says why; the second test shows what the Docker runtime says when asked.
The process runs ``python3 app.py`` with the interpreter running these tests first on
PATH (flask is in the test extras: the user's ``pip install -r app/requirements.txt``).

Port 8000 is the app's own (``app.run(port=8000)``; devbox cannot move a port the code
hard-codes): when something else holds it the test fails at once, saying so.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from devbox.core.profile import load_profile
from devbox.store import load_dir

EXAMPLE = ROOT / "examples" / "awesome-compose-flask"
PORT = 8000  # hard-coded by the sample's app.py
DEVBOX = [sys.executable, "-m", "devbox"]
# `python3` on PATH is the interpreter running the tests (it has flask), as a user's
# activated virtualenv would be; nothing else of the environment changes
ENV = {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "NO_COLOR": "1",
    "COLUMNS": "200",
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
}
# the traffic: the greeting and a page that does not exist (recorded as the 404 it is)
CLIENT = """\
import sys, urllib.error, urllib.request
for path in ("/", "/nope"):
    try:
        with urllib.request.urlopen(sys.argv[1] + path, timeout=10) as r:
            print(path, r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        print(path, e.code)
"""
GREETING = "Hello World!"
EDITED = "Hello from devbox!"


def _devbox(project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEVBOX, *args], cwd=project, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _require_python3_with_flask() -> None:
    python3 = shutil.which("python3", path=str(Path(sys.executable).parent))
    assert python3 is not None, f"no python3 next to {sys.executable} for the app to run with"
    r = subprocess.run([python3, "-c", "import flask"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (
        f"{python3} cannot import flask (pip install -e '.[test]'): {r.stderr}"
    )


def _require_port_8000() -> None:
    if not _port_is_free(PORT):
        pytest.fail(
            f"port {PORT} is in use on 127.0.0.1: the awesome-compose flask sample hard-codes "
            f"it (app.run(port={PORT})), so this test needs it free; who holds it: "
            f"ss -ltnp 'sport = :{PORT}'"
        )


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "flask"
    shutil.copytree(EXAMPLE, project)
    return project


class _Lines:
    """A child's stdout, line by line, read by a thread: every wait is bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout

        def read() -> None:
            for line in stream:
                self.q.put(line)
            self.q.put(None)

        threading.Thread(target=read, daemon=True, name="watch-stdout").start()

    def next_iteration(self, timeout: float, stderr: Path) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # not one of --json's objects: kept for the failure message
            if isinstance(obj, dict) and "iteration" in obj:
                return obj
        pytest.fail(
            f"no iteration within {timeout}s; stdout:\n{''.join(self.seen)}\n"
            f"stderr:\n{stderr.read_text(errors='replace')[-3000:]}"
        )


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _stop(proc: subprocess.Popen[str]) -> int:
    """Ctrl-C, as a user stops it; the child is ours, ended by its PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            pytest.fail("devbox watch did not stop within 60s of SIGINT")
    return proc.returncode


@pytest.mark.slow
def test_awesome_compose_flask_init_record_watch_edit_verdict(tmp_path: Path) -> None:
    _require_python3_with_flask()
    _require_port_8000()
    project = _project(tmp_path)

    # 1. init: everything from the Dockerfile and compose.yaml, nothing asked
    r = _devbox(project, "init", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    profile_path = project / "profiles" / "web.toml"
    written = profile_path.read_bytes()
    p = load_profile(profile_path)
    assert (p.name, p.service.port, p.service.stop_signal) == ("web", PORT, "SIGINT")
    assert p.service.build is not None and p.service.build.target == "builder"
    assert (p.service.command, p.service.cwd) == (("python3", "app.py"), "app")
    # why not Docker, said on the terminal and in the profile
    assert p.service.runtime == "process"
    assert "line 7: RUN --mount" in r.stdout and "line 7: RUN --mount" in written.decode()
    assert "pip install -r app/requirements.txt first" in r.stdout
    assert p.dependencies == ()
    # and `devbox doctor` finds nothing to fix: the FROM image is not built, so not missing
    r = _devbox(project, "doctor", "web", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"], r.stdout
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["dockerfile"]["detail"] == "not built: the service runs as a process"
    assert not any(name.startswith("FROM ") for name in checks)

    # 2. record: a client sends real requests through the inbound proxy
    r = _devbox(project, "record", "web", "--", sys.executable, "-c", CLIENT, "{inbound}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"/ 200 {GREETING}" in r.stdout and "/nope 404" in r.stdout
    recorded = load_dir(project / "mocks" / "web" / "inbound")
    got = [(e.request.path, e.response.status if e.response else None) for e in recorded]
    assert sorted(got) == [("/", 200), ("/nope", 404)]
    assert _port_is_free(PORT), "record left the service running"

    # 3. watch: green, then an edit fails exactly GET / with the new greeting, then green
    stderr = tmp_path / "watch.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [*DEVBOX, "watch", "web", "--json"],
            cwd=project,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    app = project / "app" / "app.py"
    try:
        lines = _Lines(proc)
        first = lines.next_iteration(90, stderr)
        assert (first["iteration"], first["action"], first["verdict"]) == (0, "start", "PASS")
        assert (first["passed"], first["failed"], first["errors"]) == (2, 0, 0), first

        _edit(app, GREETING, EDITED)
        second = lines.next_iteration(60, stderr)
        assert (second["action"], second["verdict"]) == ("sync+restart", "FAIL"), second
        assert (second["passed"], second["failed"], second["errors"]) == (1, 1, 0), second
        assert second["newly_failing"] == ["GET /"] and second["newly_passing"] == []
        (failure,) = second["failures"]
        assert (failure["method"], failure["target"]) == ("GET", "/")
        assert (failure["status"], failure["expected_status"]) == (200, 200)
        (diff,) = failure["differences"]
        assert (diff["section"], diff["change"]) == ("body", "text")
        assert (diff["expected"], diff["actual"]) == (f'"{GREETING}"', f'"{EDITED}"')
        assert f"-{GREETING}" in diff["detail"] and f"+{EDITED}" in diff["detail"]

        _edit(app, EDITED, GREETING)
        third = lines.next_iteration(60, stderr)
        assert (third["verdict"], third["passed"], third["failed"]) == ("PASS", 2, 0), third
        assert third["newly_passing"] == ["GET /"]
    finally:
        code = _stop(proc)
    assert code == 130, stderr.read_text(errors="replace")  # Ctrl-C's exit status
    assert _port_is_free(PORT), "the flask process outlived devbox watch"

    # 4. CI mode: the same verdict from `up --once`, as its exit status and report
    _edit(app, GREETING, EDITED)
    r = _devbox(project, "up", "web", "--once")
    assert r.returncode == 1, r.stdout + r.stderr
    failed = [line.split() for line in r.stdout.splitlines() if line.startswith("✗ GET")]
    assert [f[:3] for f in failed] == [["✗", "GET", "/"]], r.stdout  # /nope still matches
    assert f'body (text): "{GREETING}" → "{EDITED}"' in r.stdout, r.stdout
    _edit(app, EDITED, GREETING)
    r = _devbox(project, "up", "web", "--once")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all 2 requests matched the recording" in r.stdout

    # 5. nothing left behind; the profile is exactly what init wrote
    assert _port_is_free(PORT), "the flask process outlived devbox up --once"
    r = _devbox(project, "down", "web", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [], r.stdout
    assert profile_path.read_bytes() == written


@pytest.mark.docker
def test_the_docker_runtime_says_why_it_cannot_build_the_sample(tmp_path: Path) -> None:
    """Asked for Docker anyway, the classic builder refuses the heredocs: the error says
    which lines and what to do, and nothing is left behind."""
    project = _project(tmp_path)
    assert _devbox(project, "init", "--yes").returncode == 0
    r = _devbox(project, "run", "web", "--runtime", "docker", timeout=180)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "building devbox/web-web:latest" in out, out
    assert "hint: Dockerfile uses syntax only BuildKit builds (line 7: RUN --mount" in out, out
    assert "--runtime process" in out
    r = _devbox(project, "down", "web", "--json", timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stdout + r.stderr

"""The edit loop end to end: a real service (process or Docker), real mocks, real files.

Each test runs the engine on a private copy of the demo, edits the service's code
the way a developer would, and checks what the iteration reports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from runtime_support import kill_reapers, reapers

from devbox.core.events import Event, IterationFinished, IterationStarted, StageTimed
from devbox.core.profile import load_profile
from devbox.engine.session import Engine, EngineOptions

APP = Path("examples/demo/orders/app.py")


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        with self.lock:
            self.events.append(ev)

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


def edit(root: Path, old: str, new: str) -> None:
    path = root / APP
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def wait_for(engine: Engine, after: int, timeout: float = 30.0) -> IterationFinished:
    ev = engine.wait_iteration(after, timeout=timeout)
    assert ev is not None, f"no iteration after {after} within {timeout}s"
    return ev


def run_loop(profile_path: Path, runtime: str) -> None:
    root = profile_path.parent.parent
    engine = Engine(load_profile(profile_path), EngineOptions(runtime=runtime))
    rec = Recorder()
    engine.subscribe(rec)
    # a view that asks the engine when it sees an iteration finish finds that iteration
    # (the dashboard showed "iteration 1" while last_finished still said 0)
    asked: list[tuple[int, int | None]] = []

    def ask(ev: object) -> None:
        if isinstance(ev, IterationFinished):
            now = engine.last_finished
            asked.append((ev.iteration, now.iteration if now is not None else None))

    engine.subscribe(ask)
    try:
        engine.start()
        first = engine.last_finished
        assert first is not None and first.iteration == 0
        assert (first.passed, first.failed, first.errors) == (100, 0, 0)
        assert engine.runtime is not None and engine.runtime.kind == runtime

        # a real change to one pricing rule: exactly the routes that price things fail
        edit(root, "TAX_RATE = 0.20", "TAX_RATE = 0.25")
        changed = wait_for(engine, 0)
        assert changed.action == "sync+restart"
        assert changed.failed > 0
        failing = set(changed.newly_failing)
        assert failing and all(
            label.startswith(("GET /quote", "POST /orders")) for label in failing
        ), failing
        assert not changed.still_failing
        report = changed.report
        assert report is not None
        tax_diffs = [
            d.describe() for r in report.failures() if r.method == "GET" for d in r.differences
        ]
        assert any(d.startswith("$.tax") for d in tax_diffs), tax_diffs
        stage_names = [name for name, _ in changed.stages]
        assert stage_names == ["event", "applied", "ready", "replayed", "diffed"]
        assert [s.stage for s in rec.of(StageTimed) if s.iteration == changed.iteration] == (
            stage_names
        )

        # revert: everything that failed passes again
        edit(root, "TAX_RATE = 0.25", "TAX_RATE = 0.20")
        back = wait_for(engine, changed.iteration)
        assert (back.passed, back.failed, back.errors) == (100, 0, 0)
        assert set(back.newly_passing) == failing

        # two saves in quick succession: one result, and it describes the final state
        before = back.iteration
        edit(root, "SHIPPING_FLAT = 4.95", "SHIPPING_FLAT = 9.95")
        time.sleep(0.01)
        edit(root, "SHIPPING_FLAT = 9.95", "SHIPPING_FLAT = 4.95")
        final = wait_for(engine, before)
        time.sleep(1.5)  # would a second, stale result still arrive?
        done = [e for e in rec.of(IterationFinished) if e.iteration > before and not e.cancelled]
        assert len(done) == 1, [(e.iteration, e.passed, e.failed) for e in done]
        assert (final.passed, final.failed) == (100, 0)
        assert len(asked) >= 4 and all(seen == now for seen, now in asked), asked
    finally:
        engine.stop()


def test_edit_loop_on_the_process_runtime(demo_project: Path) -> None:
    run_loop(demo_project, "process")


@pytest.mark.docker
def test_edit_loop_in_docker(demo_project: Path) -> None:
    run_loop(demo_project, "docker")


@pytest.mark.docker
def test_dockerfile_change_rebuilds(demo_project: Path) -> None:
    root = demo_project.parent.parent
    engine = Engine(load_profile(demo_project), EngineOptions(runtime="docker"))
    rec = Recorder()
    engine.subscribe(rec)
    try:
        engine.start()
        dockerfile = root / "examples/demo/orders/Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + "ENV DEVBOX_TEST_REBUILD=1\n")
        ev = wait_for(engine, 0, timeout=120)
        assert ev.action == "rebuild"
        assert (ev.passed, ev.failed) == (100, 0)
        started = [e for e in rec.of(IterationStarted) if e.iteration == ev.iteration]
        assert started and "examples/demo/orders/Dockerfile" in started[0].changed
    finally:
        engine.stop()


def test_recording_change_reloads_mocks_and_replays(demo_project: Path) -> None:
    root = demo_project.parent.parent
    engine = Engine(load_profile(demo_project), EngineOptions(runtime="process"))
    try:
        engine.start()
        # a recorded inventory price changes on disk: the mock reloads, replay notices
        rec = next((root / "mocks/demo/inventory").glob("*.json"))
        text = rec.read_text()
        assert '"price": 24.5' in text
        rec.write_text(text.replace('"price": 24.5', '"price": 25.5'))
        ev = wait_for(engine, 0)
        assert ev.action == "reload-mocks"
        assert ev.failed > 0
        assert any("MS-202" in label for label in ev.newly_failing)
    finally:
        engine.stop()


def test_invalid_profile_edit_keeps_the_sandbox_running(demo_project: Path) -> None:
    from devbox.core.events import Problem

    engine = Engine(load_profile(demo_project), EngineOptions(runtime="process"))
    rec = Recorder()
    engine.subscribe(rec)
    try:
        engine.start()
        text = demo_project.read_text()
        demo_project.write_text(text.replace('on_miss = "fail"', 'on_miss = "explode"'))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not rec.of(Problem):
            time.sleep(0.05)
        problems = rec.of(Problem)
        assert problems, "an invalid profile edit must be reported"
        assert "demo.toml" in problems[0].message and "on_miss" in problems[0].message
        engine.replay_now()
        last = engine.last_finished
        assert last is not None and last.passed == 100
    finally:
        engine.stop()


def _cli(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devbox", *args],
        cwd=profile.parent.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_up_once_is_the_ci_mode(demo_project: Path, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    ok = _cli(
        demo_project,
        "up",
        "demo",
        "--once",
        "--runtime",
        "process",
        "--report",
        "junit",
        "--out",
        str(junit),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "100" in ok.stdout and "matched" in ok.stdout
    import xml.etree.ElementTree as ET

    suite = ET.parse(junit).getroot()
    assert len(suite.findall(".//testcase")) == 100
    assert not suite.findall(".//failure")

    edit(demo_project.parent.parent, "TAX_RATE = 0.20", "TAX_RATE = 0.30")
    bad = _cli(demo_project, "up", "demo", "--once", "--runtime", "process")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "$.tax" in bad.stdout


def test_up_once_with_a_bad_fail_if_is_a_usage_error(demo_project: Path) -> None:
    res = _cli(demo_project, "up", "demo", "--once", "--runtime", "process", "--fail-if", "p99 >")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "p99 >" in res.stderr


def up_until_first_pass(project: Path) -> subprocess.Popen[str]:
    """``devbox up demo --headless`` (process runtime) in ``project``, once its first
    replay passed (its output merged, the rest of it unread)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devbox", "up", "demo", "--headless", "--runtime", "process"],
        cwd=project.parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "iteration 0: PASS" in line:
            return proc
        if not line:
            break
    proc.kill()
    proc.communicate()
    pytest.fail("".join(lines))


def test_sigterm_tears_everything_down(demo_project: Path) -> None:
    proc = up_until_first_pass(demo_project)
    try:
        children = _children(proc.pid)
        assert children, "the service should run as a child of devbox"
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        time.sleep(0.3)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and ") Z " not in stat.read_text()


def test_profile_edit_recreates_only_the_service(demo_project: Path) -> None:
    engine = Engine(load_profile(demo_project), EngineOptions(runtime="process"))
    try:
        engine.start()
        assert engine.runtime is not None and engine.fleet is not None
        old_runtime, old_fleet = engine.runtime, engine.fleet
        text = demo_project.read_text()
        demo_project.write_text(
            text.replace(
                'env = { PAYMENTS_TOKEN = "sk_test_demo" }',
                'env = { PAYMENTS_TOKEN = "sk_test_demo", LOG_LEVEL = "debug" }',
            )
        )
        ev = wait_for(engine, 0)
        assert ev.action == "reload-profile"
        assert (ev.passed, ev.failed) == (100, 0)
        assert engine.runtime is not old_runtime  # the service's config changed
        assert engine.fleet is old_fleet  # the dependencies did not
        assert engine.profile.service.env["LOG_LEVEL"] == "debug"
    finally:
        engine.stop()


@pytest.mark.docker
def test_keep_leaves_service_and_mocks_running_until_down(demo_project: Path) -> None:
    import urllib.request

    import docker

    root = demo_project.parent.parent
    profile = load_profile(demo_project)
    engine = Engine(profile, EngineOptions(runtime="docker", watch=False))
    engine.start()
    try:
        message = engine.detach()
    except BaseException:
        engine.stop()
        raise
    port = profile.service.port
    try:
        assert "devbox down demo" in message
        # a kept container must outlive devbox: its watchdog was ended
        cid = getattr(engine.runtime, "container_id", None)
        assert cid and not reapers(cid)
        # the service still answers, and its calls still reach the (detached) mocks
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/KB-101", timeout=10) as r:
            assert r.status == 200
            assert b"Mechanical keyboard" in r.read()
    finally:
        down = _cli(demo_project, "down", "demo")
    assert down.returncode == 0, down.stdout + down.stderr
    from devbox.runtime.ownership import project_hash

    client = docker.from_env()
    label = f"devbox.project={project_hash(root.resolve())}"
    assert not client.containers.list(all=True, filters={"label": label})
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    for dep in profile.dependencies:  # the detached mocks are gone too
        assert dep.port is not None
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{dep.port}/__devbox/stats", timeout=2)


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    """Lines of proc's stdout up to and including the first that contains needle."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if needle in line:
            return lines
    pytest.fail(f"{needle!r} never came:\n" + "".join(lines))


def test_watch_json_prints_one_object_per_iteration(demo_project: Path) -> None:
    import json

    root = demo_project.parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "devbox", "watch", "demo", "--json", "--runtime", "process"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = json.loads(_read_until(proc, '"iteration"', 60)[-1])
        assert first["iteration"] == 0 and first["verdict"] == "PASS" and first["passed"] == 100
        assert first["action"] == "start"
        edit(root, "TAX_RATE = 0.20", "TAX_RATE = 0.40")
        second = json.loads(_read_until(proc, '"iteration"', 60)[-1])
        assert second["iteration"] == 1 and second["verdict"] == "FAIL"
        assert second["action"] == "sync+restart"
        assert second["newly_failing"] and not second["newly_passing"]
        assert set(second["stages_ms"]) == {"event", "applied", "ready", "replayed", "diffed"}
        assert any(
            d["where"].startswith("$.tax")
            for f in second["failures"]
            for d in f.get("differences", [])
        )
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.docker
def test_sigkill_of_up_leaves_nothing_after_the_next_up(demo_project: Path) -> None:
    import docker

    from devbox.runtime.ownership import project_hash

    root = demo_project.parent.parent
    label = f"devbox.project={project_hash(root.resolve())}"
    client = docker.from_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devbox", "up", "demo", "--headless", "--runtime", "docker"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _read_until(proc, "iteration 0: PASS", 120)
        # SIGKILL of devbox and of its container's watchdog (a whole-machine kill): no
        # teardown can run, and the next `up` reaps what is left
        kill_reapers([c.id for c in client.containers.list(all=True, filters={"label": label})])
        proc.kill()
        proc.wait(20)
        assert client.containers.list(all=True, filters={"label": label}), "a leftover to reap"
        again = _cli(demo_project, "up", "demo", "--once", "--runtime", "docker")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "removed a leftover of a dead session" in again.stdout
        assert not client.containers.list(all=True, filters={"label": label})
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _cli(demo_project, "down", "demo")

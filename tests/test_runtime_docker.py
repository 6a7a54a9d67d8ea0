"""The Docker runtime end to end with the real engine on the demo service.

Every test works in its own copy of the demo project (its own project hash) and
session; containers are counted through the Docker API by label, and removed at
teardown whatever happened.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, free_port, wait_port
from runtime_support import (
    Events,
    edit_tax,
    get_json,
    kill_reapers,
    make_project,
    upstream_env,
)

from devbox.core.events import BuildProgress, Log, ServiceState
from devbox.core.profile import load_profile
from devbox.errors import EngineError, ServiceNotReady
from devbox.runtime import DockerRuntime, down, ensure_base_image, reap_orphans
from devbox.runtime.ownership import project_hash

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def docker_api() -> Any:
    import docker

    return docker.from_env(timeout=120).api


@pytest.fixture(scope="session")
def base_image(docker_api: Any) -> str:
    """devbox/base:bookworm, built offline (~1 min) the first time only."""
    return ensure_base_image().image_id


@pytest.fixture
def project(tmp_path: Path, docker_api: Any, base_image: str) -> Iterator[Path]:
    path = make_project(tmp_path, port=free_port())
    yield path
    down(root=tmp_path, docker_api=docker_api)
    assert containers(docker_api, tmp_path) == []


def containers(api: Any, root: Path, **labels: str) -> list[dict[str, Any]]:
    filters = [f"devbox.project={project_hash(root)}"]
    filters += [f"devbox.{k}={v}" for k, v in labels.items()]
    return list(api.containers(all=True, filters={"label": filters}))


def test_build_run_sync_restart_rebuild_stop(
    project: Path, docker_api: Any, demo_upstreams: dict[str, int]
) -> None:
    profile = load_profile(project)
    events = Events()
    rt = DockerRuntime(profile, on_event=events, session="d1")
    try:
        rt.prepare()
        steps = [e for e in events.of(BuildProgress) if e.step is not None]
        assert steps and steps[-1].step == steps[-1].total  # "Step 5/5"
        assert rt.image_id and rt.image_id.startswith("sha256:")
        rt.start(upstream_env(demo_upstreams))
        rt.wait_ready()
        status, body = get_json(rt.port, "/quote?sku=KB-101&qty=1")
        assert status == 200 and body["tax"] == 17.8

        [c] = containers(docker_api, profile.root, session="d1")
        info = docker_api.inspect_container(c["Id"])
        labels = info["Config"]["Labels"]
        assert labels["devbox.profile"] == "rtdemo" and labels["devbox.session"] == "d1"
        assert labels["devbox.owner_pid"] == str(os.getpid())
        assert labels["devbox.project"] == project_hash(profile.root)
        assert re.fullmatch(r"[0-9a-f]{16}", labels["devbox.config_hash"])
        assert info["HostConfig"]["Init"] is True
        assert info["HostConfig"]["Privileged"] is False
        assert info["HostConfig"]["NetworkMode"] == "host"
        assert f"PORT={rt.port}" in info["Config"]["Env"]
        inventory = f"INVENTORY_URL=http://127.0.0.1:{demo_upstreams['inventory']}"
        assert inventory in info["Config"]["Env"]
        assert any("listening on 127.0.0.1" in e.text for e in events.of(Log))

        # sync + restart: the change shows, no new image, same container
        image, cid = rt.image_id, rt.container_id
        app = profile.root / "examples/demo/orders/app.py"
        edit_tax(app, "0.5")
        helper = profile.root / "examples/demo/orders/lib/extra.py"
        helper.parent.mkdir()
        helper.write_text("X = 1\n")
        rt.sync([app, helper])
        rt.restart()
        rt.wait_ready()
        assert get_json(rt.port, "/quote?sku=KB-101&qty=1")[1]["tax"] == 44.5
        assert (rt.image_id, rt.container_id) == (image, cid)
        # as root beside the engine, files go straight into the container's mounted root
        assert rt.last_sync_path == ("rootfs" if os.geteuid() == 0 else "put_archive")
        ex = docker_api.exec_create(cid, ["cat", "/app/lib/extra.py"])
        assert docker_api.exec_start(ex["Id"]) == b"X = 1\n"
        helper.unlink()
        rt.sync([helper])  # a deleted file is deleted in the container too
        ex = docker_api.exec_create(cid, ["ls", "/app/lib"])
        assert docker_api.exec_start(ex["Id"]) == b""
        # one "listening" line per run, none repeated by the log follower across the restart
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            n = sum("listening on" in e.text for e in events.of(Log))
            if n >= 2:
                break
            time.sleep(0.05)
        assert sum("listening on" in e.text for e in events.of(Log)) == 2

        # rebuild: new image (the Dockerfile changed), container replaced
        df = profile.root / "examples/demo/orders/Dockerfile"
        df.write_text(df.read_text() + "ENV DEVBOX_TEST_REBUILD=1\n")
        rt.rebuild()
        rt.wait_ready()
        assert rt.image_id != image and rt.container_id != cid
        assert get_json(rt.port, "/quote?sku=KB-101&qty=1")[1]["tax"] == 44.5
        assert len(containers(docker_api, profile.root)) == 1
        states = [e.state for e in events.of(ServiceState)]
        assert states.count("building") == 2 and states.count("ready") == 3
    finally:
        rt.stop()
    assert containers(docker_api, profile.root) == []
    assert events.of(ServiceState)[-1].state == "stopped"


def test_engine_copy_fallback_and_symlinks_in_the_container(
    project: Path,
    docker_api: Any,
    monkeypatch: pytest.MonkeyPatch,
    demo_upstreams: dict[str, int],
) -> None:
    profile = load_profile(project)
    rt = DockerRuntime(profile, session="d6")
    try:
        rt.start({})
        rt.wait_ready()
        # a symlink inside the container pointing at an absolute path: the fast path must not
        # follow it on the host; the engine's copy resolves it inside the container
        ex = docker_api.exec_create(rt.container_id, ["ln", "-s", "/tmp", "/app/linked"])
        docker_api.exec_start(ex["Id"])
        name = f"devbox-probe-{os.getpid()}.txt"
        target = profile.root / "examples/demo/orders/linked" / name
        target.parent.mkdir()
        target.write_text("inside\n")
        rt.sync([target])
        assert rt.last_sync_path == "put_archive"
        assert not (Path("/tmp") / name).exists()  # the host's /tmp was not touched
        ex = docker_api.exec_create(rt.container_id, ["cat", f"/tmp/{name}"])
        assert docker_api.exec_start(ex["Id"]) == b"inside\n"
        # DEVBOX_SYNC=archive forces the engine's copy everywhere
        monkeypatch.setenv("DEVBOX_SYNC", "archive")
        rt2 = DockerRuntime(profile, session="d7", port=free_port())
        try:
            rt2.start(upstream_env(demo_upstreams))
            rt2.wait_ready()
            app = profile.root / "examples/demo/orders/app.py"
            edit_tax(app, "0.25")
            rt2.sync([app])
            assert rt2.last_sync_path == "put_archive"
            rt2.restart()
            rt2.wait_ready()
            assert get_json(rt2.port, "/quote?sku=CB-404&qty=1")[1]["tax"] == 2.5
        finally:
            rt2.stop()
    finally:
        rt.stop()


def test_config_change_recreates_the_container(project: Path, docker_api: Any) -> None:
    rt = DockerRuntime(load_profile(project), session="d2")
    try:
        rt.start({"A": "1"})
        rt.wait_ready()
        first = rt.container_id
        rt.start({"A": "1"})  # same config: kept
        assert rt.container_id == first
        rt.start({"A": "2"})  # env changed: recreated
        rt.wait_ready()
        assert rt.container_id != first
        assert len(containers(docker_api, project.parent.parent)) == 1
    finally:
        rt.stop()


def test_crash_in_the_container_reports_its_logs(
    tmp_path: Path, docker_api: Any, base_image: str
) -> None:
    path = make_project(tmp_path, port=free_port())
    app = tmp_path / "examples/demo/orders/app.py"
    app.write_text(
        "import sys\nprint('cannot read config /etc/orders.toml', flush=True)\nsys.exit(4)\n"
    )
    rt = DockerRuntime(load_profile(path), session="d3")
    try:
        rt.start({})
        with pytest.raises(ServiceNotReady) as exc:
            rt.wait_ready()
        assert "exited with code 4" in exc.value.message
        assert "cannot read config /etc/orders.toml" in exc.value.logs
    finally:
        rt.stop()
    assert containers(docker_api, tmp_path) == []


def test_a_missing_base_image_says_how_to_make_it(tmp_path: Path, docker_api: Any) -> None:
    path = make_project(tmp_path, port=free_port())
    df = tmp_path / "examples/demo/orders/Dockerfile"
    df.write_text(df.read_text().replace("devbox/base:bookworm", "devbox/base:no-such-tag"))
    rt = DockerRuntime(load_profile(path), session="d4")
    with pytest.raises(EngineError) as exc:
        rt.prepare()
    assert "base image devbox/base:no-such-tag is missing" in exc.value.message
    assert exc.value.hint is not None and "devbox image base" in exc.value.hint


def test_bridge_network_publishes_on_loopback_and_rewrites_urls(
    tmp_path: Path, docker_api: Any, base_image: str
) -> None:
    path = make_project(tmp_path, port=free_port(), service_extra='network = "bridge"')
    rt = DockerRuntime(load_profile(path), session="d5")
    try:
        rt.start({"INVENTORY_URL": "http://127.0.0.1:7102"})
        rt.wait_ready()
        assert get_json(rt.port, "/healthz") == (200, {"status": "ok"})
        info = docker_api.inspect_container(rt.container_id)
        assert info["HostConfig"]["NetworkMode"] in ("default", "bridge")
        bindings = info["HostConfig"]["PortBindings"][f"{rt.port}/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(rt.port)}]
        assert "INVENTORY_URL=http://host.docker.internal:7102" in info["Config"]["Env"]
        assert "host.docker.internal:host-gateway" in info["HostConfig"]["ExtraHosts"]
    finally:
        rt.stop()


def test_reap_orphans_takes_only_containers_of_dead_owners(project: Path, docker_api: Any) -> None:
    profile = load_profile(project)
    alive = DockerRuntime(profile, session="live")
    alive.start({})
    # a second runtime started by a process that then dies (its container stays behind)
    port2 = free_port()
    script = (
        "import dataclasses; from devbox.core.profile import load_profile;"
        "from devbox.runtime import DockerRuntime;"
        f"p = load_profile({str(project)!r});"
        f"p = dataclasses.replace(p, service=dataclasses.replace(p.service, port={port2}));"
        "rt = DockerRuntime(p, session='dead'); rt.start({}); rt.wait_ready();"
        # its watchdog gone too (a whole-machine kill), or it would remove the container
        # itself before reap_orphans looks: reaping is the fallback under test
        "rt._reaper is not None and rt._reaper.disarm();"
        "print('up', flush=True)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "up", out.stderr
    try:
        assert len(containers(docker_api, profile.root, session="dead")) == 1
        removed = reap_orphans("rtdemo", docker_api=docker_api, use_docker=True, root=profile.root)
        assert any("session dead" in r for r in removed)
        assert containers(docker_api, profile.root, session="dead") == []
        assert len(containers(docker_api, profile.root, session="live")) == 1
    finally:
        alive.stop()


def _devbox(*args: str) -> list[str]:
    return [sys.executable, "-m", "devbox", *args]


def test_sigkilled_devbox_run_is_cleaned_by_down(project: Path, docker_api: Any) -> None:
    profile = load_profile(project)
    proc = subprocess.Popen(
        _devbox("run", str(project), "--runtime", "docker"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(profile.service.port, timeout=120)
        assert len(containers(docker_api, profile.root)) == 1
        # devbox and the container's watchdog both killed (a whole-machine kill): the
        # engine keeps the container...
        kill_reapers([c["Id"] for c in containers(docker_api, profile.root)])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        assert len(containers(docker_api, profile.root)) == 1
        out = subprocess.run(
            _devbox("down", str(project), "--images"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "removed container devbox-rtdemo-orders-" in out.stdout
        assert "removed image devbox/rtdemo-orders:latest" in out.stdout
        assert docker_api.images(name="devbox/rtdemo-orders") == []
        # ...but down (or the next run's reaping) leaves nothing
        assert containers(docker_api, profile.root) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_next_run_reaps_what_a_killed_run_left_and_sigterm_cleans_up(
    project: Path, docker_api: Any
) -> None:
    profile = load_profile(project)
    first = subprocess.Popen(
        _devbox("run", str(project), "--runtime", "docker"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    second = None
    try:
        wait_port(profile.service.port, timeout=120)
        kill_reapers([c["Id"] for c in containers(docker_api, profile.root)])  # see above
        os.kill(first.pid, signal.SIGKILL)
        first.wait(5)
        second = subprocess.Popen(
            _devbox("run", str(project), "--runtime", "docker"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            cs = containers(docker_api, profile.root)
            if (
                len(cs) == 1
                and cs[0]["Labels"]["devbox.owner_pid"] == str(second.pid)
                and get_json_ok(profile.service.port)
            ):
                break
            time.sleep(0.1)
        cs = containers(docker_api, profile.root)
        assert [c["Labels"]["devbox.owner_pid"] for c in cs] == [str(second.pid)]
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0, out
        assert "removed leftover container" in out
        assert containers(docker_api, profile.root) == []
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def get_json_ok(port: int) -> bool:
    try:
        return get_json(port, "/healthz", timeout=1)[0] == 200
    except OSError:
        return False


def test_cli_image_base_doctor_and_down_report_json(project: Path, docker_api: Any) -> None:
    import json

    out = subprocess.run(
        _devbox("image", "base", "--json"), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["image"] == "devbox/base:bookworm" and result["built"] is False
    out = subprocess.run(
        _devbox("doctor", str(project), "--json"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(out.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["docker engine"]["status"] == "ok"
    assert checks["base image"]["status"] == "ok"
    assert checks["FROM devbox/base:bookworm"]["status"] == "ok"
    assert checks["runtime"]["detail"] == "docker: docker engine answered"
    assert out.returncode == (0 if report["ok"] else 1)
    rt = DockerRuntime(load_profile(project), session="cli")
    rt.start({})
    out = subprocess.run(
        _devbox("down", str(project), "--json"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    [removed] = json.loads(out.stdout)
    assert removed["kind"] == "container" and removed["session"] == "cli"
    assert containers(docker_api, project.parent.parent) == []
    rt.stop()  # its container is already gone: still fine


def test_a_failing_build_is_an_error_with_its_output(tmp_path: Path, base_image: str) -> None:
    path = make_project(tmp_path, port=free_port())
    df = tmp_path / "examples/demo/orders/Dockerfile"
    failing = "RUN echo checking deps && false\nCOPY app.py"
    df.write_text(df.read_text().replace("COPY app.py", failing))
    events = Events()
    rt = DockerRuntime(load_profile(path), on_event=events, session="d8")
    expected = r"building devbox/rtdemo-orders:latest failed: .*non-zero"
    with pytest.raises(EngineError, match=expected):
        rt.prepare()
    lines = [e.line for e in events.of(BuildProgress)]
    assert "checking deps" in lines
    assert events.of(ServiceState)[-1].state == "crashed"
    rt.stop()


def test_log_line_readiness_across_restarts(tmp_path: Path, base_image: str) -> None:
    path = make_project(
        tmp_path,
        port=free_port(),
        replace={
            'ready = { http = "/healthz", timeout_s = 20 }': (
                'ready = { log = "orders listening on", timeout_s = 20 }'
            )
        },
    )
    app = tmp_path / "examples/demo/orders/app.py"
    # a slow start: the old run's "listening" line must not count for the new run
    app.write_text(
        app.read_text().replace(
            "def main() -> None:\n", "def main() -> None:\n    time.sleep(0.3)\n"
        )
    )
    rt = DockerRuntime(load_profile(path), session="d9")
    try:
        rt.start({})
        rt.wait_ready()
        assert get_json(rt.port, "/healthz")[0] == 200
        for _ in range(2):
            rt.restart()
            assert rt.wait_ready() >= 0.3
            assert get_json(rt.port, "/healthz")[0] == 200
    finally:
        rt.stop()


def test_a_named_local_image_runs_without_a_build(
    project: Path, tmp_path: Path, docker_api: Any
) -> None:
    built = DockerRuntime(load_profile(project), session="img-build")
    built.prepare()
    docker_api.tag(built.image_id, "devbox-test/orders", tag="local")
    try:
        other = make_project(
            tmp_path / "img",
            name="rtimage",
            port=free_port(),
            replace={
                'build = { context = "examples/demo/orders", dockerfile = "Dockerfile" }': (
                    'image = "devbox-test/orders:local"'
                )
            },
        )
        rt = DockerRuntime(load_profile(other), session="img")
        try:
            rt.prepare()
            assert rt.image_id == built.image_id
            rt.start({})
            rt.wait_ready()
            assert get_json(rt.port, "/healthz") == (200, {"status": "ok"})
            assert rt.describe().startswith("devbox-test/orders:local")
        finally:
            rt.stop()
        missing = make_project(
            tmp_path / "missing",
            name="rtmissing",
            port=free_port(),
            replace={
                'build = { context = "examples/demo/orders", dockerfile = "Dockerfile" }':
                # the pull that is tried goes to loopback only
                'image = "127.0.0.1:9/devbox-test/nothing:here"'
            },
        )
        with pytest.raises(EngineError, match="not present locally and could not be pulled"):
            DockerRuntime(load_profile(missing), session="img2").prepare()
    finally:
        docker_api.remove_image("devbox-test/orders:local")

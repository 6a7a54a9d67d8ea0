"""Runtime building blocks with real sockets, processes and files (no Docker needed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port
from runtime_support import make_project

from devbox.core.profile import Ready, Service, load_profile
from devbox.errors import DockerUnavailable, ServiceNotReady, UsageError
from devbox.runtime.base import level_of, merged_env
from devbox.runtime.base_image import debian_mirror
from devbox.runtime.choose import select_runtime
from devbox.runtime.docker_image import dockerfile_bases
from devbox.runtime.docker_runtime import bridge_env
from devbox.runtime.doctor import run_checks
from devbox.runtime.ownership import Owner, config_hash, process_start, same_process
from devbox.runtime.readiness import LogWatch, http_status, probe_tcp, wait_until_ready
from devbox.runtime.sessions import Child, SessionFile, group_members, kill_group, session_path

# ---------------------------------------------------------------- readiness


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = {"/ok": 200, "/missing": 404, "/boom": 500}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def http_server() -> object:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_http_probe_counts_any_status_below_500(http_server: ThreadingHTTPServer) -> None:
    port = http_server.server_address[1]
    assert http_status("127.0.0.1", port, "/ok") == 200
    assert http_status("127.0.0.1", port, "/missing") == 404
    assert http_status("127.0.0.1", port, "/boom") == 500
    assert wait_until_ready(Ready(http="/missing", timeout_s=2), port) < 2
    with pytest.raises(ServiceNotReady, match=r"not ready after 0\.3s"):
        wait_until_ready(Ready(http="/boom", timeout_s=0.3), port)


def test_tcp_probe_and_timeout_carries_the_log_tail() -> None:
    port = free_port()
    assert not probe_tcp("127.0.0.1", port)
    with pytest.raises(ServiceNotReady) as exc:
        wait_until_ready(Ready(tcp=True, timeout_s=0.2), port, tail=lambda: ("a", "b"))
    assert exc.value.logs == ("a", "b")
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert wait_until_ready(Ready(tcp=True, timeout_s=2), port) < 2


def test_a_dead_service_fails_at_once_not_after_the_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(ServiceNotReady, match="exited with code 3"):
        wait_until_ready(
            Ready(tcp=True, timeout_s=30), free_port(), check_alive=lambda: "exited with code 3"
        )
    assert time.monotonic() - t0 < 5


def _seen(w: LogWatch) -> bool:
    # through a call: mypy would keep the narrowing of ``w.seen`` across ``w.reset()``
    return w.seen


def test_log_watch_ignores_lines_of_an_earlier_generation() -> None:
    w = LogWatch(r"listening on \d+")
    g1 = w.reset()
    w.feed("listening on 80", g1)
    assert _seen(w)
    g2 = w.reset()
    assert not _seen(w)
    w.feed("listening on 80", g1)  # late line of the previous run
    assert not _seen(w)
    w.feed("starting", g2)
    assert not _seen(w)
    w.feed("listening on 81", g2)
    assert _seen(w)
    ready = Ready(log=r"listening on \d+", timeout_s=1)
    assert wait_until_ready(ready, free_port(), log_watch=w) < 1


def test_level_of_lines() -> None:
    assert level_of("Traceback (most recent call last):") == "error"
    assert level_of("ValueError: bad") == "error"
    assert level_of("2024 WARNING disk") == "warning"
    assert level_of("GET /healthz 200") == "info"


# ---------------------------------------------------------------- ownership and sessions


def test_process_identity_survives_pid_reuse_checks() -> None:
    me = Owner.me()
    assert me.alive() is True
    assert same_process(os.getpid(), process_start(os.getpid()))
    assert not same_process(os.getpid(), (process_start(os.getpid()) or 0) + 1)  # "reused"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not same_process(p.pid, None)
    assert Owner(pid=me.pid, start=me.start, boot="someother", host=me.host).alive() is False
    assert Owner(pid=me.pid, start=me.start, boot=me.boot, host="elsewhere").alive() is None


def test_config_hash_follows_what_the_container_is_made_of() -> None:
    svc = Service(name="s", port=1, image="x")
    h = config_hash(svc, "sha256:a", {"A": "1"}, "host")
    assert h == config_hash(svc, "sha256:a", {"A": "1"}, "host")
    assert h != config_hash(svc, "sha256:b", {"A": "1"}, "host")
    assert h != config_hash(svc, "sha256:a", {"A": "2"}, "host")
    assert h != config_hash(svc, "sha256:a", {"A": "1"}, "bridge")


def test_session_file_round_trip_and_group_kill(tmp_path: Path) -> None:
    # a leader that starts a grandchild in its own process group, as a service with workers would
    code = (
        "import subprocess,sys,time; subprocess.Popen(['sleep','60']); print('up', flush=True);"
        "time.sleep(60)"
    )
    leader = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE
    )
    assert leader.stdout is not None
    assert leader.stdout.readline().strip() == b"up"
    child = Child(pid=leader.pid, start=process_start(leader.pid), command=("python3", "-c"))
    s = SessionFile(
        path=session_path(tmp_path, "s1"),
        session="s1",
        profile="p",
        owner=Owner.me(),
        children=[child],
    )
    s.save()
    loaded = SessionFile.load(s.path)
    assert loaded is not None and loaded.children == [child] and loaded.owner == s.owner
    members = group_members(leader.pid, child.start)
    assert len(members) == 2
    # a Child whose start time does not match is someone else's process: untouched
    assert kill_group(Child(pid=leader.pid, start=(child.start or 0) + 7, command=())) == []
    assert leader.poll() is None
    killed = kill_group(child, grace_s=2)
    assert sorted(killed) == sorted(members)
    leader.wait(5)
    deadline = time.monotonic() + 5
    while group_members(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert group_members(leader.pid) == []


# ---------------------------------------------------------------- docker helpers (pure)


def test_dockerfile_bases_skip_stages_and_scratch() -> None:
    text = (
        "FROM devbox/base:bookworm AS build\nRUN x\nFROM build\nFROM scratch\n"
        "from --platform=linux/amd64 python:3.11 as py\nFROM py\n"
    )
    assert dockerfile_bases(text) == [(1, "devbox/base:bookworm"), (5, "python:3.11")]


def test_bridge_env_points_loopback_urls_at_the_host() -> None:
    env = bridge_env(
        {
            "A": "http://127.0.0.1:7101",
            "B": "http://localhost/x",
            "C": "https://api.example.com",
            "D": "127.0.0.1",
            "BIND": "1.2.3.4",
        }
    )
    assert env["A"] == "http://host.docker.internal:7101"
    assert env["B"] == "http://host.docker.internal/x"
    assert env["C"] == "https://api.example.com"
    assert env["D"] == "127.0.0.1"  # not a URL: left alone
    assert env["BIND"] == "1.2.3.4" and env["HOST"] == "0.0.0.0"


def test_merged_env_order(tmp_path: Path) -> None:
    profile = load_profile(make_project(tmp_path, port=7999))
    env = merged_env(profile, {"PAYMENTS_TOKEN": "override", "X": "1"}, 7999)
    assert env == {"PAYMENTS_TOKEN": "override", "X": "1", "PORT": "7999"}


def test_debian_mirror_from_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVBOX_DEBIAN_MIRROR", raising=False)
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    (d / "other.list").write_text("deb [arch=amd64] https://elsewhere.example/apt stable main\n")
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb http://old.example/debian bookworm main\n")
    assert debian_mirror(tmp_path) == "http://old.example/debian"
    monkeypatch.setenv("DEVBOX_DEBIAN_MIRROR", "http://override.example/debian")
    assert debian_mirror(tmp_path) == "http://override.example/debian"
    assert debian_mirror(tmp_path / "none") == "http://override.example/debian"
    monkeypatch.delenv("DEVBOX_DEBIAN_MIRROR")
    assert debian_mirror(tmp_path / "none") == "http://deb.debian.org/debian"


# ---------------------------------------------------------------- selection and doctor


def test_select_runtime_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = load_profile(make_project(tmp_path, port=free_port()))
    rt, why = select_runtime(profile, "process")
    assert rt.kind == "process" and why == "asked for process"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    rt, why = select_runtime(profile)
    assert rt.kind == "process"
    assert why.startswith(f"no Docker engine answered at unix://{tmp_path}/no.sock: ")
    with pytest.raises(DockerUnavailable, match="asked for docker"):
        select_runtime(profile, "docker")
    with pytest.raises(UsageError):
        select_runtime(profile, "vm")
    forced = load_profile(
        make_project(tmp_path / "p2", port=free_port(), service_extra='runtime = "process"')
    )
    monkeypatch.delenv("DOCKER_HOST")
    rt, why = select_runtime(forced)
    assert rt.kind == "process" and why == "profile asks for process"


def test_doctor_without_docker_warns_and_names_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    port = free_port()
    profile = load_profile(make_project(tmp_path, port=port))
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        checks = {c.name: c for c in run_checks(profile)}
    assert checks["docker engine"].status == "warn"
    assert "scripts/setup" in checks["docker engine"].fix
    assert checks["inotify max_user_watches"].status in ("ok", "warn")
    assert checks[f"port {port}"].status == "fail"
    assert "ss -ltnp" in checks[f"port {port}"].fix
    assert checks["runtime"].detail.startswith("process: no Docker engine answered")


def test_process_children_die_with_their_parent(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a devbox killed with SIGKILL takes its service along."""
    port = free_port()
    path = make_project(tmp_path, port=port)
    script = (
        "import sys; from devbox.core.profile import load_profile;"
        "from devbox.runtime import ProcessRuntime;"
        f"rt = ProcessRuntime(load_profile({str(path)!r}), session='pd');"
        "rt.start({}); rt.wait_ready(); print(rt.pid, flush=True);"
        "import time; time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        start = process_start(child_pid)
        assert same_process(child_pid, start)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while same_process(child_pid, start) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not same_process(child_pid, start)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# ---------------------------------------------------------------- fast sync into a rootfs


def test_rootfs_sync_writes_atomically_and_refuses_symlinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import PurePosixPath

    from devbox.runtime import rootfs_sync

    merged = tmp_path / "merged"
    (merged / "app").mkdir(parents=True)
    outside = tmp_path / "host-etc"
    outside.mkdir()
    (merged / "app" / "evil").symlink_to(outside)  # an absolute link inside a container
    src = tmp_path / "app.py"
    src.write_text("print('v2')\n")
    os.chmod(src, 0o640)
    monkeypatch.setattr("devbox.runtime.rootfs_sync.os.path.ismount", lambda p: True)
    if os.geteuid() != 0:
        monkeypatch.setattr("devbox.runtime.rootfs_sync.os.chown", lambda *a: None)

    rootfs_sync.write_files(
        merged, [(src, PurePosixPath("/app/app.py")), (src, PurePosixPath("/app/new/dir/m.py"))], []
    )
    assert (merged / "app/app.py").read_text() == "print('v2')\n"
    assert (merged / "app/app.py").stat().st_mode & 0o777 == 0o640
    assert (merged / "app/new/dir/m.py").exists()
    assert not list(merged.rglob("*.devbox-sync"))
    rootfs_sync.write_files(merged, [], [PurePosixPath("/app/new"), PurePosixPath("/app/none")])
    assert not (merged / "app/new").exists()

    with pytest.raises(rootfs_sync.UnsafeTarget):
        rootfs_sync.write_files(merged, [(src, PurePosixPath("/app/evil/x.py"))], [])
    with pytest.raises(rootfs_sync.UnsafeTarget):
        rootfs_sync.write_files(merged, [(src, PurePosixPath("/app/evil"))], [])
    assert list(outside.iterdir()) == []

    monkeypatch.setattr("devbox.runtime.rootfs_sync.os.path.ismount", lambda p: False)
    with pytest.raises(rootfs_sync.UnsafeTarget, match="not mounted"):
        rootfs_sync.write_files(merged, [(src, PurePosixPath("/app/app.py"))], [])

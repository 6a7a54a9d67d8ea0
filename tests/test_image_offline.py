"""Ordinary images without a registry: `devbox image import` and `build.offline_base`
(FROM python:* -> devbox/base + Debian's python), with the real Docker engine. Every
image and tag a test makes has a name of its own and is removed at teardown."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, free_port

from devbox.core.events import Log
from devbox.core.profile import load_profile
from devbox.runtime import DockerRuntime, ensure_base_image
from devbox.runtime.base_image import BASE_IMAGE, rewrite_for_debian

DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"}


def test_rewrite_names_what_it_did_and_keeps_stage_names() -> None:
    text = (
        "# syntax\nFROM python:3.12-slim AS build\nRUN pip install x\n"
        "FROM node:20 \nFROM build\nFROM debian:bookworm\n"
    )
    out, done = rewrite_for_debian(text)
    lines = out.splitlines()
    assert lines[1] == f"FROM {BASE_IMAGE} AS build"
    assert "python3-pip" in lines[2] and lines[3].startswith("ENV PIP_BREAK_SYSTEM_PACKAGES=1")
    assert [(r.line, r.runtime) for r in done] == [(2, "python"), (4, "node")]
    assert "FROM build" in lines and "FROM debian:bookworm" in lines
    assert "(asked for 3.12-slim)" in done[0].describe()
    # an image present in the local store is left alone
    assert rewrite_for_debian(text, keep=lambda ref: ref.startswith("python"))[1][0].runtime == (
        "node"
    )


@pytest.fixture(scope="module")
def docker_api() -> Any:
    import docker

    return docker.from_env(timeout=300).api


@pytest.fixture
def tags(docker_api: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for tag in made:
        try:
            docker_api.remove_image(tag, force=True)
        except Exception:
            pass


def _tiny_image(docker_api: Any, tag: str) -> str:
    """An image of one file, imported from a tarball made here (no registry)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"hello\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repo, name = tag.rsplit(":", 1)
    docker_api.import_image_from_data(buf.getvalue(), repository=repo, tag=name)
    return str(docker_api.inspect_image(tag)["Id"])


@pytest.mark.docker
def test_import_a_docker_save_tarball_and_a_local_image(
    tmp_path: Path, docker_api: Any, tags: list[str]
) -> None:
    uid = uuid.uuid4().hex[:8]
    tag, alias = f"devbox-test/tiny-{uid}:1", f"devbox-test/python-{uid}:3.11-slim"
    tags += [tag, alias]
    image_id = _tiny_image(docker_api, tag)
    saved = tmp_path / "tiny.tar"
    with saved.open("wb") as f:
        for chunk in docker_api.get_image(tag):
            f.write(chunk)
    docker_api.remove_image(tag)
    r = subprocess.run(
        [*DEVBOX, "image", "import", str(saved), "--json"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["how"], data["images"], data["image_id"]) == ("loaded", [tag], image_id)
    r = subprocess.run(
        [*DEVBOX, "image", "import", tag, "--tag", alias],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert f"FROM {alias}` now builds without a registry" in r.stdout
    assert docker_api.inspect_image(alias)["Id"] == image_id
    # a name that is neither a file nor a local image: one line and a way out
    r = subprocess.run(
        [*DEVBOX, "image", "import", f"devbox-test/absent-{uid}:1"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "docker save" in r.stderr and "Traceback" not in r.stderr


APP = """\
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"python {sys.version_info[0]}.{sys.version_info[1]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


@pytest.mark.docker
@pytest.mark.slow
def test_a_python_slim_dockerfile_builds_offline_from_debian_packages(
    tmp_path: Path, docker_api: Any, tags: list[str]
) -> None:
    ensure_base_image()
    try:
        docker_api.inspect_image("python:3.11-slim")
        pytest.fail("python:3.11-slim is in the local store: this test needs it absent")
    except Exception as exc:
        if "absent" in str(exc):
            raise
    name = f"offline{uuid.uuid4().hex[:6]}"
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "Dockerfile").write_text(
        'FROM python:3.11-slim\nWORKDIR /app\nCOPY app.py .\nCMD ["python", "app.py"]\n'
    )
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / f"{name}.toml").write_text(
        f'name = "{name}"\n[service]\nname = "web"\nport = {free_port()}\n'
        'build = { context = ".", offline_base = true }\nruntime = "docker"\n'
        'ready = { http = "/", timeout_s = 60 }\n'
    )
    profile = load_profile(tmp_path / "profiles" / f"{name}.toml")
    tags.append(f"devbox/{name}-web:latest")
    said: list[str] = []
    rt = DockerRuntime(
        profile,
        on_event=lambda ev: said.append(ev.text) if isinstance(ev, Log) else None,
        session="off1",
    )
    try:
        rt.prepare()
        rt.start({})
        rt.wait_ready()
        with urllib.request.urlopen(f"http://127.0.0.1:{rt.port}/", timeout=10) as resp:
            assert resp.read() == b"python 3.11"
    finally:
        rt.stop()
    assert any(
        "offline base: Dockerfile line 1: FROM python:3.11-slim -> devbox/base:bookworm" in s
        for s in said
    ), said
    # the user's Dockerfile is untouched; the rewritten copy is kept out of the way
    assert (tmp_path / "Dockerfile").read_text().startswith("FROM python:3.11-slim")
    copy = tmp_path / ".devbox/offline" / f"Dockerfile.{name}.web"
    assert copy.is_file()
    # another session (an xdist worker, a second `devbox up`) does not write it again
    before = copy.stat().st_mtime_ns
    other = DockerRuntime(profile, session="off2")
    assert other._offline_dockerfile(tmp_path / "Dockerfile") == copy
    assert copy.stat().st_mtime_ns == before

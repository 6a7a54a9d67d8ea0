"""`devbox image mock`: the image built offline from devbox/base:bookworm answers the recorded
traffic under Docker, with the restrictions the Kubernetes manifests put on it (non-root,
read-only root file system, no capabilities, no privilege escalation)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import ROOT

from devbox.cli.main import main
from devbox.core.profile import load_profile
from devbox.k8s.export import export_spec
from devbox.k8s.manifests import MOCK_PORT, manifests
from devbox.store import load_dir

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The demo's profile and recordings, with a unique comment so the image tag is ours."""
    (tmp_path / "profiles").mkdir()
    text = (ROOT / "profiles/demo.toml").read_text()
    (tmp_path / "profiles/demo.toml").write_text(f"# test {uuid.uuid4().hex}\n{text}")
    shutil.copytree(ROOT / "mocks/demo", tmp_path / "mocks/demo")
    return tmp_path / "profiles/demo.toml"


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=120)
    yield client
    client.close()


def _get(port: int, path: str, deadline: float) -> tuple[int, bytes]:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_mock_image_serves_the_recorded_bytes_locked_down(
    project: Path, engine: docker.DockerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = export_spec(load_profile(project))
    tag = spec.mock_image
    name = f"devbox-test-mock-image-{uuid.uuid4().hex[:10]}"
    stages = len(engine.images.list(all=True, filters={"label": "devbox.build"}))
    try:
        assert main(["image", "mock", str(project), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["image"] == tag and result["built"] is True
        # the install stage (wheels and all) does not stay behind as an untagged image
        assert len(engine.images.list(all=True, filters={"label": "devbox.build"})) == stages
        assert main(["image", "mock", str(project), "--json"]) == 0  # the tag is the cache
        assert json.loads(capsys.readouterr().out)["built"] is False
        # the container exactly as the Deployment runs it
        pod = manifests(spec)["base/mock-inventory.yaml"][0]["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        container = engine.containers.run(
            tag, args, name=name, detach=True, read_only=True, tmpfs={"/tmp": ""},
            user=f"{pod['securityContext']['runAsUser']}", cap_drop=["ALL"],
            security_opt=["no-new-privileges"], ports={f"{MOCK_PORT}/tcp": ("127.0.0.1", None)},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        port = 0
        while not port:
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{MOCK_PORT}/tcp")
            if bindings:
                port = int(bindings[0]["HostPort"])
            else:
                assert container.status != "exited", container.logs().decode()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        recorded = [
            x for x in load_dir(project.parent.parent / "mocks/demo/inventory")
            if x.request.method == "GET" and x.response is not None
        ]  # fmt: skip
        assert recorded
        for x in recorded[:3]:
            assert x.response is not None
            status, body = _get(port, x.request.target, deadline)
            assert (status, body) == (x.response.status, x.response.body)
        status, body = _get(port, "/never/recorded", deadline)
        assert status == 502 and b"never/recorded" in body  # a miss says what it missed
    finally:
        for c in engine.containers.list(all=True, filters={"name": name}):
            c.remove(force=True)
        if engine.images.list(name=tag):
            engine.images.remove(tag, force=True)

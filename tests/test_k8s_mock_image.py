"""`devbox image mock` and the exported pods, run for real under Docker.

The image is built offline from devbox/base:bookworm; every container runs with the
restrictions the manifests put on it (non-root uid, read-only root file system, no
capabilities, no privilege escalation). The last tests run a whole preview as the
manifests describe it: pods as containers, Services as network aliases, the ConfigMaps
as read-only mounts, and the replay Job's init container and container in turn; the
demo's (two HTTP mocks) and the reviews example's (a Postgres mock and an HTTP one).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import grpc
import pytest
from conftest import ROOT
from grpc_support import PROTO_DIR, compile_protos, load_modules

from devbox.cli.main import main
from devbox.core.profile import load_profile
from devbox.k8s.export import export_spec
from devbox.k8s.manifests import MOCK_PORT, ExportSpec, manifests
from devbox.mock.kinds import WireMock
from devbox.store import load_dir
from devbox.wire.files import ObjectWriter

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PREFIX = f"devbox-test-k8s-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=120)
    yield client
    _remove_containers(client)
    client.close()


def _remove_containers(client: docker.DockerClient, prefix: str = PREFIX) -> None:
    for c in client.containers.list(all=True, filters={"name": prefix}):
        c.remove(force=True)
    for n in client.networks.list(names=[prefix]):
        if n.name.startswith(prefix):  # the engine's name filter matches substrings
            n.remove()


def _copy_example(root: Path, example: str, name: str, source: str) -> Path:
    """profiles/EXAMPLE.toml under the profile name ``name``, its recordings and the
    service's source, so every image tag is this module's."""
    (root / "profiles").mkdir()
    text = (ROOT / f"profiles/{example}.toml").read_text()
    # the first `name =` is the profile's (a [service] may share it: reviews)
    text = text.replace(f'name = "{example}"', f'name = "{name}"', 1)
    (root / f"profiles/{example}.toml").write_text(text)
    shutil.copytree(ROOT / f"mocks/{example}", root / f"mocks/{name}")
    shutil.copytree(ROOT / source, root / source)
    return root / f"profiles/{example}.toml"


def _built(engine: docker.DockerClient, project: Path, prefix: str) -> Iterator[ExportSpec]:
    spec = export_spec(load_profile(project))
    stages = len(engine.images.list(all=True, filters={"label": "devbox.build"}))
    try:
        assert main(["image", "mock", str(project), "--json"]) == 0
        # the install stage (wheels and all) does not stay behind as an untagged image
        assert len(engine.images.list(all=True, filters={"label": "devbox.build"})) == stages
        yield spec
    finally:
        _remove_containers(engine, prefix)  # first: an image in use would only lose its tag
        for tag in (spec.mock_image, spec.service_image):
            if engine.images.list(name=tag):
                engine.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo: two HTTP dependencies."""
    name = PREFIX.replace("devbox-test-k8s-", "k8s")
    return _copy_example(tmp_path_factory.mktemp("k8s"), "demo", name, "examples/demo/orders")


@pytest.fixture(scope="module")
def spec(project: Path, engine: docker.DockerClient) -> Iterator[ExportSpec]:
    yield from _built(engine, project, f"{PREFIX}-demo")


@pytest.fixture(scope="module")
def reviews_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reviews example: a Postgres dependency (db) and an HTTP one (inventory)."""
    name = PREFIX.replace("devbox-test-k8s-", "k8s") + "-reviews"
    root = tmp_path_factory.mktemp("k8s-reviews")
    return _copy_example(root, "reviews", name, "examples/reviews")


@pytest.fixture(scope="module")
def visits_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The visits example: its one dependency is Redis (cache)."""
    name = PREFIX.replace("devbox-test-k8s-", "k8s") + "-visits"
    root = tmp_path_factory.mktemp("k8s-visits")
    return _copy_example(root, "visits", name, "examples/visits")


@pytest.fixture(scope="module")
def visits_spec(visits_project: Path, engine: docker.DockerClient) -> Iterator[ExportSpec]:
    yield from _built(engine, visits_project, f"{PREFIX}-visits")


@pytest.fixture(scope="module")
def grpc_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gRPC dependency whose ``protos`` is a folder of .proto files, and one recorded
    call (field numbers: the descriptors name them when the mock loads them)."""
    name = PREFIX.replace("devbox-test-k8s-", "k8s") + "-grpc"
    root = tmp_path_factory.mktemp("k8s-grpc")
    (root / "profiles").mkdir()
    shutil.copytree(PROTO_DIR, root / "protos", ignore=shutil.ignore_patterns("*.js"))
    (root / "profiles/routes.toml").write_text(
        f'name = "{name}"\n[service]\nname = "api"\nport = 9000\nimage = "{name}/api:1"\n'
        'ready = { tcp = true }\n[[dependency]]\nname = "routes"\nkind = "grpc"\n'
        'upstream = "grpc://routes.internal:50051"\nprotos = "protos"\non_miss = "fail"\n'
    )
    path = root / f"mocks/{name}/routes/recording-20260101T000000Z.json"
    writer = ObjectWriter(path, "grpc", "routes")
    writer.append({
        "seq": 1, "service": "routeguide.RouteGuide", "method": "GetFeature",
        "request": [{"1": 1, "2": -2}], "response": [{"1": "numbered", "2": {"1": 1, "2": -2}}],
        "status": 0,
    })  # fmt: skip
    writer.close()
    return root / "profiles/routes.toml"


@pytest.fixture(scope="module")
def grpc_spec(grpc_project: Path, engine: docker.DockerClient) -> Iterator[ExportSpec]:
    yield from _built(engine, grpc_project, f"{PREFIX}-grpc")


@pytest.fixture(scope="module")
def reviews_spec(reviews_project: Path, engine: docker.DockerClient) -> Iterator[ExportSpec]:
    yield from _built(engine, reviews_project, f"{PREFIX}-reviews")


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


def _pod(spec: ExportSpec, file: str, kind: str = "Deployment") -> dict[str, Any]:
    obj = next(o for o in manifests(spec)[f"base/{file}"] if o["kind"] == kind)
    pod: dict[str, Any] = obj["spec"]["template"]["spec"]
    return pod


def _create(
    engine: docker.DockerClient,
    spec_pod: dict[str, Any],
    container: dict[str, Any],
    *,
    name: str,
    network: str | None = None,
    alias: str | None = None,
    binds: dict[str, str] | None = None,
    publish: bool = False,
) -> str:
    """A container as the pod spec describes it (security, env, mounts), not started."""
    api = engine.api
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
    tmpfs = {m["mountPath"]: "" for m in container.get("volumeMounts", []) if m["name"] == "tmp"}
    host_config = api.create_host_config(
        read_only=True, tmpfs=tmpfs, cap_drop=["ALL"], security_opt=["no-new-privileges"],
        binds={h: {"bind": c, "mode": "ro"} for h, c in (binds or {}).items()},
        network_mode=network,
        port_bindings={MOCK_PORT: ("127.0.0.1", None)} if publish else None,
    )  # fmt: skip
    user = spec_pod["securityContext"]
    networking = None
    if network and alias:
        networking = api.create_networking_config(
            {network: api.create_endpoint_config(aliases=[alias])}
        )
    created = api.create_container(
        container["image"], command=container.get("args"), entrypoint=container.get("command"),
        environment={e["name"]: e["value"] for e in container.get("env", [])}, name=name,
        user=f"{user['runAsUser']}:{user['runAsGroup']}", host_config=host_config,
        networking_config=networking, ports=[MOCK_PORT] if publish else None,
    )  # fmt: skip
    return str(created["Id"])


def test_the_mock_image_serves_the_recorded_bytes(
    spec: ExportSpec, project: Path, engine: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    capsys.readouterr()
    assert main(["image", "mock", str(project), "--json"]) == 0  # the tag is the cache
    assert json.loads(capsys.readouterr().out)["built"] is False
    pod = _pod(spec, "mock-inventory.yaml")
    cid = _create(engine, pod, pod["containers"][0], name=f"{PREFIX}-served", publish=True)
    engine.api.start(cid)
    deadline = time.monotonic() + 60
    port = 0
    while not port:
        info = engine.api.inspect_container(cid)
        bindings = info["NetworkSettings"]["Ports"].get(f"{MOCK_PORT}/tcp")
        if bindings:
            port = int(bindings[0]["HostPort"])
        else:
            assert info["State"]["Status"] != "exited", engine.api.logs(cid).decode()
            assert time.monotonic() < deadline
            time.sleep(0.2)
    directory = project.parent.parent / f"mocks/{spec.profile}/inventory"
    recorded = [x for x in load_dir(directory) if x.request.method == "GET" and x.response]
    assert recorded
    for x in recorded[:3]:
        assert x.response is not None
        status, body = _get(port, x.request.target, deadline)
        assert (status, body) == (x.response.status, x.response.body)
    status, body = _get(port, "/never/recorded", deadline)
    assert status == 502 and b"never/recorded" in body  # a miss says what it missed


def _configmap_volume(directory: Path, cm: dict[str, Any]) -> Path:
    """A ConfigMap volume laid out as the kubelet writes it: the data in a timestamped
    folder, ``..data`` a link to it, each key a link through ``..data`` (the mock must
    find its recordings among those links and folders, whatever their kind)."""
    stamp = directory / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    for fname, text in cm["data"].items():
        (stamp / fname).write_text(text)
        (directory / fname).symlink_to(f"..data/{fname}")
    (directory / "..data").symlink_to(stamp.name)
    return directory


def _run_preview(
    engine: docker.DockerClient, spec: ExportSpec, project: Path, tmp_path: Path, prefix: str
) -> str:
    """The preview as the manifests describe it; the replay's JUnit report, green for
    every recorded inbound request."""
    profile = load_profile(project)
    assert profile.service.build is not None
    engine.images.build(path=str(profile.root / profile.service.build.context),
                        tag=spec.service_image, rm=True, forcerm=True)  # fmt: skip
    net = engine.networks.create(f"{prefix}-net", driver="bridge")
    files = manifests(spec)
    for file, objs in files.items():
        if not file.startswith("base/") or file.endswith("replay-job.yaml"):
            continue
        deployment = next(o for o in objs if o["kind"] == "Deployment")
        service = next(o for o in objs if o["kind"] == "Service")
        pod = deployment["spec"]["template"]["spec"]
        binds = {}
        for cm in (o for o in objs if o["kind"] == "ConfigMap"):
            mount = next(
                m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "recordings"
            )
            binds[str(_configmap_volume(tmp_path / cm["metadata"]["name"], cm))] = mount[
                "mountPath"
            ]
        name = service["metadata"]["name"]
        cid = _create(engine, pod, pod["containers"][0], name=f"{prefix}-{name}",
                      network=net.name, alias=name, binds=binds)  # fmt: skip
        engine.api.start(cid)
    job = _pod(spec, "replay-job.yaml", kind="Job")
    results: list[str] = []
    for step in [*job["initContainers"], *job["containers"]]:
        cid = _create(engine, job, step, name=f"{prefix}-job-{step['name']}", network=net.name)
        engine.api.start(cid)
        code = engine.api.wait(cid, timeout=300)["StatusCode"]
        out = engine.api.logs(cid, stdout=True, stderr=False).decode()
        err = engine.api.logs(cid, stdout=False, stderr=True).decode()
        assert code == 0, (step["name"], out[-2000:], err[-2000:])
        results.append(out)
    junit = results[-1]
    assert junit.startswith("<?xml")
    recorded = len(load_dir(project.parent.parent / f"mocks/{spec.profile}/inbound"))
    assert recorded and f'tests="{recorded}" failures="0" errors="0"' in junit, junit[-2000:]
    return junit


def test_the_exported_preview_replays_green_under_docker(
    spec: ExportSpec, project: Path, engine: docker.DockerClient, tmp_path: Path
) -> None:
    _run_preview(engine, spec, project, tmp_path, f"{PREFIX}-demo")


def test_the_reviews_preview_replays_green_from_a_postgres_mock(
    reviews_spec: ExportSpec, reviews_project: Path, engine: docker.DockerClient, tmp_path: Path
) -> None:
    """The service finds its database at the db mock's Service (DATABASE_URL as `up`
    wires it), the mock serves the Postgres recordings from their ConfigMap, and every
    recorded request replays green, the INSERTs included."""
    env = dict(reviews_spec.env)
    assert env["DATABASE_URL"] == "postgresql://reviews@db:8080/reviews"
    db = next(m for m in reviews_spec.mocks if m.dependency == "db")
    assert db.kind == "postgres" and db.configmap_files
    junit = _run_preview(engine, reviews_spec, reviews_project, tmp_path, f"{PREFIX}-reviews")
    assert 'tests="13" failures="0" errors="0"' in junit  # 13 recorded requests
    # the db mock served every recorded Postgres exchange (a miss would have answered
    # SQLSTATE DX404, a 500 in the replay), on its named port, as a Postgres URL
    profile = load_profile(reviews_project)
    exchanges = WireMock(profile.dependency("db"), profile.recordings_dir("db")).load()
    assert exchanges > 0
    logs = engine.api.logs(f"{PREFIX}-reviews-db").decode()
    assert re.search(rf"^db +{MOCK_PORT} +{exchanges} +replay +postgresql://", logs, re.M), logs


def test_the_visits_preview_replays_green_from_a_redis_mock(
    visits_spec: ExportSpec, visits_project: Path, engine: docker.DockerClient, tmp_path: Path
) -> None:
    """The Redis kind the same way: REDIS_URL at the cache mock's Service, port `redis`,
    the counters' recorded answers in order (the Job replays one request at a time)."""
    assert dict(visits_spec.env)["REDIS_URL"] == "redis://cache:8080/0"
    cache = manifests(visits_spec)["base/mock-cache.yaml"]
    service = next(o for o in cache if o["kind"] == "Service")
    assert service["spec"]["ports"][0]["name"] == "redis"
    _run_preview(engine, visits_spec, visits_project, tmp_path, f"{PREFIX}-visits")
    profile = load_profile(visits_project)
    exchanges = WireMock(profile.dependency("cache"), profile.recordings_dir("cache")).load()
    logs = engine.api.logs(f"{PREFIX}-visits-cache").decode()
    assert re.search(rf"^cache +{MOCK_PORT} +{exchanges} +replay +redis://", logs, re.M), logs


def _wait_log(engine: docker.DockerClient, cid: str, text: str, deadline: float) -> str:
    while True:
        logs: str = engine.api.logs(cid).decode()
        if text in logs:
            return logs
        assert engine.api.inspect_container(cid)["State"]["Status"] != "exited", logs
        assert time.monotonic() < deadline, logs
        time.sleep(0.2)


def test_a_grpc_mock_with_protos_serves_from_the_image(
    grpc_spec: ExportSpec, engine: docker.DockerClient, tmp_path: Path
) -> None:
    """The image installs devbox's grpc extra when a mocked gRPC dependency names
    ``protos``: the mock compiles the copied .proto folder at start (read-only root, /tmp
    only) and matches and explains by field name."""
    pod = _pod(grpc_spec, "mock-routes.yaml")
    container = pod["containers"][0]
    assert container["ports"][0]["name"] == "grpc"
    assert dict(grpc_spec.env)["ROUTES_URL"] == "grpc://routes:8080"
    cid = _create(engine, pod, container, name=f"{PREFIX}-grpc-routes", publish=True)
    engine.api.start(cid)
    _wait_log(engine, cid, "serving 1 mock", time.monotonic() + 120)
    bound = engine.api.inspect_container(cid)["NetworkSettings"]["Ports"][f"{MOCK_PORT}/tcp"]
    pb, pbg = load_modules(compile_protos(tmp_path / "gen"))
    with grpc.insecure_channel(f"127.0.0.1:{bound[0]['HostPort']}") as channel:
        guide = pbg.RouteGuideStub(channel)
        reply = guide.GetFeature(pb.Point(latitude=1, longitude=-2), timeout=30)
        assert reply.name == "numbered"
        with pytest.raises(grpc.RpcError) as err:
            guide.GetFeature(pb.Point(latitude=5, longitude=-2), timeout=30)
    assert "$[0].latitude recorded 1, now 5" in err.value.details()


def test_a_missing_base_image_is_named_before_any_wheel_is_made() -> None:
    """Without ``devbox image base`` the build asked Docker Hub for the base image and
    failed with "lookup registry-1.docker.io: no such host", naming neither the image
    nor the fix, after a minute of making wheels."""
    from devbox.errors import EngineError
    from devbox.runtime.mock_image import build_mock_image

    asked: list[tuple[str, str]] = []

    def dockerfile(wheel: str, build: str) -> str:
        asked.append((wheel, build))
        return "FROM devbox/base:no-such-tag AS install\nRUN true\n"

    with pytest.raises(EngineError) as caught:
        build_mock_image(f"devbox/test-no-base:{uuid.uuid4().hex[:8]}", dockerfile, [], labels={})
    assert caught.value.message.endswith(":1: base image devbox/base:no-such-tag is missing")
    assert caught.value.hint is not None and "devbox image base" in caught.value.hint
    # only the check's Dockerfile was made: the build's own comes after the wheels
    assert asked == [("pip.whl", "check")]

"""`devbox export k8s`: schema-valid manifests, the env `up` wires, a stable golden output.

Update the golden files after an intended change to the manifests (or to the
demo's profile or recordings, which they embed):

    DEVBOX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_k8s_export.py -k golden
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import ROOT
from kubernetes_validate.utils import latest_version

from devbox.cli.main import main
from devbox.core.profile import load_profile
from devbox.core.wiring import Endpoint
from devbox.core.wiring import service_url as wired_url
from devbox.engine.wiring import service_env as up_service_env
from devbox.k8s.export import export_spec, image_files, service_env, write_export
from devbox.k8s.manifests import CONFIGMAP_MAX_BYTES, MOCK_PORT, manifests, mock_address, render
from devbox.mock import MockFleet
from devbox.runtime.base import merged_env
from devbox.runtime.docker_runtime import bridge_env
from devbox.wire.ca import BUNDLE_VARS, CA_VARS

GOLDEN = ROOT / "tests/data/k8s/demo"
# the newest schemas kubernetes-validate ships, and an older minor still widely run
VERSIONS = (latest_version() + ".0", "1.31.0")
EXAMPLE_PROFILES = sorted(
    {*ROOT.glob("profiles/*.toml"), *ROOT.glob("examples/**/profiles/*.toml")}
)


def _docs(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for f in sorted(directory.rglob("*.yaml")):
        out += [(f, d) for d in yaml.safe_load_all(f.read_text()) if d is not None]
    return out


@pytest.mark.parametrize("profile_path", EXAMPLE_PROFILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_example_profile_exports_schema_valid_manifests(
    profile_path: Path, version: str, tmp_path: Path
) -> None:
    profile = load_profile(profile_path)
    write_export(export_spec(profile, image_registry="registry.example:5000"), tmp_path)
    kinds = []
    for f, doc in _docs(tmp_path):
        if doc["kind"] == "Kustomization":
            # every resource a kustomization names exists next to it
            for res in doc["resources"]:
                assert (f.parent / res).exists(), (f, res)
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any violation
        kinds.append(doc["kind"])
    assert kinds.count("Job") == 1
    assert kinds.count("Namespace") == 1
    # one mock per dependency, whatever its kind (reviews: postgres, visits: redis)
    assert kinds.count("Deployment") == kinds.count("Service") == 1 + len(profile.dependencies)


def test_the_examples_cover_the_kinds_devbox_mocks() -> None:
    """The validation above sees a Postgres and a Redis mock, not only HTTP ones."""
    kinds = {d.kind for p in EXAMPLE_PROFILES for d in load_profile(p).dependencies}
    assert {"http", "postgres", "redis"} <= kinds


def test_an_invalid_manifest_is_rejected_by_the_validator(tmp_path: Path) -> None:
    """The validation above can fail: a misspelt field does, in strict mode."""
    spec = export_spec(load_profile(ROOT / "profiles/demo.toml"))
    deployment = manifests(spec)["base/orders.yaml"][0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_golden_files_of_the_demo() -> None:
    profile = load_profile(ROOT / "profiles/demo.toml")
    spec = export_spec(profile, namespace="preview-main", image_registry="registry.example:5000")
    files = render(spec)
    if os.environ.get("DEVBOX_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, text in files.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(text)
    committed = {p.relative_to(GOLDEN).as_posix(): p.read_text() for p in GOLDEN.rglob("*.yaml")}
    hint = "intended? DEVBOX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_k8s_export.py -k golden"
    assert sorted(committed) == sorted(files), hint
    for rel, text in files.items():
        assert committed[rel] == text, f"{rel} changed; {hint}"


def test_every_pod_meets_the_restricted_security_profile() -> None:
    spec = export_spec(load_profile(ROOT / "profiles/demo.toml"))
    pods = 0
    for objects in manifests(spec).values():
        for obj in objects:
            if obj["kind"] not in ("Deployment", "Job"):
                continue
            pod = obj["spec"]["template"]["spec"]
            pods += 1
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] != 0
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod["automountServiceAccountToken"] is False
            for c in pod["containers"] + pod.get("initContainers", []):
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["capabilities"] == {"drop": ["ALL"]}
                assert set(c["resources"]) == {"requests", "limits"}
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "devbox"
            assert labels["app.kubernetes.io/part-of"] == "demo"
            assert labels["devbox.dev/profile"] == "demo"
    assert pods == 4  # orders, payments, inventory, the replay job


def _project(tmp_path: Path, deps: str, env: str = "") -> Path:
    (tmp_path / "profiles").mkdir()
    path = tmp_path / "profiles/shop.toml"
    path.write_text(
        'name = "shop"\n[service]\nname = "api"\nport = 9000\nimage = "shop/api:1"\n'
        f"env = {{ {env} }}\n"
        "ready = { tcp = true, timeout_s = 7 }\n" + deps
    )
    return path


def test_the_service_env_is_the_env_devbox_up_gives_it(tmp_path: Path) -> None:
    """What a bridged `devbox up` container gets from a running fleet, mock URLs in-cluster."""
    path = _project(
        tmp_path,
        '[[dependency]]\nname = "billing-api"\n'
        '[[dependency]]\nname = "catalog"\nenv = "CATALOG_ENDPOINT"\n',
        env='LOG_LEVEL = "debug", PORT = "9100", HOST = "::"',
    )
    profile = load_profile(path)
    with MockFleet(profile) as fleet:
        fleet.start()
        up_env = bridge_env(merged_env(profile, fleet.urls(), profile.service.port))
    exported = dict(export_spec(profile).env)
    assert sorted(exported) == sorted(up_env) == [
        "BILLING_API_URL", "BIND", "CATALOG_ENDPOINT", "HOST", "LOG_LEVEL", "PORT",
    ]  # fmt: skip
    for name in ("LOG_LEVEL", "PORT", "BIND", "HOST"):
        assert exported[name] == up_env[name]
    assert exported["PORT"] == "9100" and exported["HOST"] == "::"  # the profile's win
    assert exported["BIND"] == "0.0.0.0"  # reachable through the pod's address
    assert mock_address("billing-api") == ("billing-api", MOCK_PORT)
    assert exported["BILLING_API_URL"] == "http://billing-api:8080"
    assert exported["CATALOG_ENDPOINT"] == "http://catalog:8080"
    assert dict(service_env(profile, {})) == {
        "LOG_LEVEL": "debug", "PORT": "9100", "HOST": "::", "BIND": "0.0.0.0",
    }  # fmt: skip


def test_tcp_readiness_image_service_and_recordings_placement(tmp_path: Path) -> None:
    path = _project(tmp_path, '[[dependency]]\nname = "billing"\n[[dependency]]\nname = "big"\n')
    small = ROOT / "mocks/demo/payments"
    shutil.copytree(small, tmp_path / "mocks/shop/billing")
    (tmp_path / "mocks/shop/big").mkdir(parents=True)
    blob = (ROOT / "mocks/demo/inventory").glob("*.json").__next__()
    assert blob.stat().st_size > CONFIGMAP_MAX_BYTES
    shutil.copy(blob, tmp_path / "mocks/shop/big")
    spec = export_spec(load_profile(path))
    files = manifests(spec)
    api = files["base/api.yaml"][0]["spec"]["template"]["spec"]["containers"][0]
    assert api["image"] == "shop/api:1"
    assert api["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert api["startupProbe"]["failureThreshold"] == 4  # ceil(7 s / 2 s)
    billing = files["base/mock-billing.yaml"]
    assert billing[0]["kind"] == "ConfigMap"
    assert billing[0]["data"] == {
        f.name: f.read_text() for f in sorted(small.glob("recording-*.json"))
    }
    mounts = billing[1]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "recordings", "mountPath": "/srv/devbox/mocks/shop/billing",
            "readOnly": True} in mounts  # fmt: skip
    assert [o["kind"] for o in files["base/mock-big.yaml"]] == ["Deployment", "Service"]
    only_image = manifests(export_spec(load_profile(path), recordings="image"))
    assert [o["kind"] for o in only_image["base/mock-billing.yaml"]] == ["Deployment", "Service"]


def test_the_mock_image_tag_names_its_content(tmp_path: Path) -> None:
    path = _project(tmp_path, '[[dependency]]\nname = "billing"\n')
    shutil.copytree(ROOT / "mocks/demo/payments", tmp_path / "mocks/shop/billing")
    before = export_spec(load_profile(path)).mock_image
    assert before == export_spec(load_profile(path)).mock_image
    rec = next((tmp_path / "mocks/shop/billing").glob("*.json"))
    rec.write_text(rec.read_text().replace("succeeded", "failed"))
    after = export_spec(load_profile(path)).mock_image
    assert before.split(":")[0] == after.split(":")[0] == "devbox/shop-mock"
    assert before != after


def test_cli_export_k8s_writes_kustomize_tree_and_prunes_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deploy"
    argv = ["export", "k8s", str(ROOT / "profiles/demo.toml"), "-o", str(out)]
    assert main([*argv, "--namespace", "preview-feat-x", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["namespace"] == "preview-feat-x"
    assert result["mocks"] == ["payments", "inventory"]
    assert result["configmaps"] == ["payments"]
    top = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert top["resources"] == ["overlays/preview-feat-x"]
    overlay = yaml.safe_load((out / "overlays/preview-feat-x/kustomization.yaml").read_text())
    assert overlay["namespace"] == "preview-feat-x"
    assert "images" not in overlay  # no --image-registry: local names (kind, minikube)
    stale = out / "base/mock-gone.yaml"
    stale.write_text((out / "base/mock-payments.yaml").read_text())
    mine = out / "base/notes.yaml"
    mine.write_text("# my own file\n")
    assert main([*argv, "--namespace", "preview-feat-x", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == ["base/mock-gone.yaml"]
    assert not stale.exists() and mine.exists()


def test_cli_usage_errors_and_the_har_form_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "k8s"]) == 2
    assert "needs a PROFILE" in capsys.readouterr().err
    assert main(["export", str(ROOT / "mocks/demo/payments")]) == 2
    assert "--har" in capsys.readouterr().err
    demo = str(ROOT / "profiles/demo.toml")
    assert main(["export", "k8s", demo, "-o", str(tmp_path), "--namespace", "Bad_NS"]) == 2
    assert "not a valid Kubernetes name" in capsys.readouterr().err
    assert main(["export", "k8s", demo, "-o", str(tmp_path), "--recordings", "configmap"]) == 2
    assert "do not fit in a ConfigMap" in capsys.readouterr().err
    har = tmp_path / "p.har"
    assert main(["export", str(ROOT / "mocks/demo/payments"), "--har", str(har)]) == 0
    assert json.loads(har.read_text())["log"]["entries"]


def _wire_project(tmp_path: Path) -> Path:
    return _project(
        tmp_path,
        '[[dependency]]\nname = "db"\nkind = "postgres"\n'
        'upstream = "postgresql://shop:pw@pg.internal:5432/shop?sslmode=disable"\n'
        'env = "DATABASE_URL"\n'
        '[[dependency]]\nname = "cache"\nkind = "redis"\n'
        'upstream = "rediss://:secret@cache.internal:6380/2"\n'
        '[[dependency]]\nname = "greeter"\nkind = "grpc"\n'
        'upstream = "grpc://greeter.internal:50051"\n'
        '[[dependency]]\nname = "billing"\nupstream = "https://billing.example/v2"\n',
    )


def test_every_kind_is_wired_as_devbox_up_wires_it(tmp_path: Path) -> None:
    """Each variable is the one `up` gives for a running fleet (devbox.engine.wiring), with
    the mock's Service name and port for the fleet's 127.0.0.1 and bound port."""
    profile = load_profile(_wire_project(tmp_path))
    exported = dict(export_spec(profile).env)
    with MockFleet(profile) as fleet:
        ports = fleet.start()
        up_env = up_service_env(profile, fleet.host, ports, "mock")
    assert set(ports) == {"db", "cache", "greeter", "billing"}  # the fleet serves every kind
    for dep in profile.dependencies:
        var = dep.env or dep.name.upper() + "_URL"
        up_value = up_env[var].replace(f"127.0.0.1:{ports[dep.name]}", f"{dep.name}:{MOCK_PORT}")
        if dep.kind == "http":
            # the one deliberate difference: no devbox CA in a pod, so http on the same port
            assert up_value.startswith("https://")
            up_value = "http://" + up_value.removeprefix("https://")
        assert exported[var] == up_value, var
        assert exported[var] == wired_url(dep, Endpoint(dep.name, MOCK_PORT), tls=False)
    assert exported["DATABASE_URL"] == "postgresql://shop:pw@db:8080/shop?sslmode=disable"
    assert exported["CACHE_URL"] == "redis://:secret@cache:8080/2"  # the mock speaks plain TCP
    assert exported["GREETER_URL"] == "grpc://greeter:8080"
    assert exported["BILLING_URL"] == "http://billing:8080/v2"
    assert sorted(exported) == [  # `up`'s CA trust variables are not there: no CA in a pod
        "BILLING_URL", "BIND", "CACHE_URL", "DATABASE_URL", "GREETER_URL", "HOST", "PORT",
    ]  # fmt: skip
    # exactly the trust variables (devbox.wire.ca) are what `up` adds and a pod lacks
    assert set(up_env) - set(exported) == set(BUNDLE_VARS) | set(CA_VARS)
    assert {"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"} <= set(
        up_env
    )


def test_the_reviews_database_url_points_at_the_db_mock() -> None:
    spec = export_spec(load_profile(ROOT / "profiles/reviews.toml"))
    env = dict(spec.env)
    assert env["DATABASE_URL"] == "postgresql://reviews@db:8080/reviews"
    assert env["INVENTORY_URL"] == "http://inventory:8080"
    assert env["PGPASSWORD"] == "reviews-dev"  # the profile's own env, as `up` keeps it


def test_a_mock_of_every_kind_names_its_port_and_probes_tcp(tmp_path: Path) -> None:
    files = manifests(export_spec(load_profile(_wire_project(tmp_path))))
    names = {"db": "postgres", "cache": "redis", "greeter": "grpc", "billing": "http"}
    for dep, port in names.items():
        objs = {o["kind"]: o for o in files[f"base/mock-{dep}.yaml"]}
        container = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:4] == ["mock", "profiles/shop.toml", "--only", dep]
        assert container["args"][-2:] == ["--port", f"{dep}={MOCK_PORT}"]
        assert container["ports"] == [{"name": port, "containerPort": MOCK_PORT, "protocol": "TCP"}]
        assert container["readinessProbe"]["tcpSocket"] == {"port": port}
        assert objs["Service"]["spec"]["ports"] == [
            {"name": port, "port": MOCK_PORT, "targetPort": port, "protocol": "TCP"}
        ]


def test_wire_recordings_go_to_the_image_and_to_a_configmap() -> None:
    """The Postgres recordings (a JSON stream, not HTTP exchanges) are in the image and,
    being small, mounted from a ConfigMap over the image's copy, as HTTP ones are."""
    profile = load_profile(ROOT / "profiles/reviews.toml")
    db_files = sorted((ROOT / "mocks/reviews/db").glob("recording-*.json"))
    assert db_files and b'"kind": "postgres"' in db_files[0].read_bytes()[:200]
    in_image = dict(image_files(profile))
    for f in db_files:
        assert in_image[f"mocks/reviews/db/{f.name}"] == f
    objs = manifests(export_spec(profile))["base/mock-db.yaml"]
    assert objs[0]["kind"] == "ConfigMap"
    assert objs[0]["data"] == {f.name: f.read_text() for f in db_files}
    pod = objs[1]["spec"]["template"]["spec"]
    assert {"name": "recordings", "mountPath": "/srv/devbox/mocks/reviews/db",
            "readOnly": True} in pod["containers"][0]["volumeMounts"]  # fmt: skip


def test_the_image_carries_a_grpc_mocks_protos(tmp_path: Path) -> None:
    path = _project(
        tmp_path,
        '[[dependency]]\nname = "greeter"\nkind = "grpc"\nprotos = "protos"\n'
        '[[dependency]]\nname = "routes"\nkind = "grpc"\nprotos = "routes.binpb"\n',
    )
    (tmp_path / "protos/sub").mkdir(parents=True)
    (tmp_path / "protos/sub/greeter.proto").write_text('syntax = "proto3";\n')
    (tmp_path / "protos/README").write_text("not a proto\n")
    (tmp_path / "routes.binpb").write_bytes(b"\n\x00")
    paths = [rel for rel, _ in image_files(load_profile(path))]
    assert "protos/sub/greeter.proto" in paths and "routes.binpb" in paths
    assert "protos/README" not in paths


def test_the_mock_image_installs_the_grpc_extra_only_for_protos(tmp_path: Path) -> None:
    from devbox.k8s.export import image_extras
    from devbox.k8s.image import mock_dockerfile

    with_protos = load_profile(
        _project(tmp_path, '[[dependency]]\nname = "greeter"\nkind = "grpc"\nprotos = "p"\n')
    )
    assert image_extras(with_protos) == ("grpc",)
    (tmp_path / "plain").mkdir()
    assert image_extras(load_profile(_wire_project(tmp_path / "plain"))) == ()
    assert image_extras(load_profile(ROOT / "profiles/demo.toml")) == ()
    plain = mock_dockerfile("demo", "profiles/demo.toml", "pip-24.whl")
    grpc = mock_dockerfile("shop", "profiles/shop.toml", "pip-24.whl", extras=("grpc",))
    assert "--no-compile 'devbox'\n" in plain
    assert "--no-compile 'devbox[grpc]'\n" in grpc  # quoted: [] is a shell pattern


def test_a_grpc_service_names_its_port_grpc_and_validates(tmp_path: Path) -> None:
    """``[service] protocol = "grpc"``: meshes take the protocol from the port's name, so
    the service's port, probes and Service say ``grpc`` (an ``http`` port would be proxied
    as HTTP/1.1 by Istio and break every call)."""
    path = _project(tmp_path, "")
    path.write_text(path.read_text().replace("port = 9000\n", 'port = 9000\nprotocol = "grpc"\n'))
    spec = export_spec(load_profile(path))
    assert spec.service_protocol == "grpc"
    objects = manifests(spec)["base/api.yaml"]
    container = objects[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "grpc", "containerPort": 9000, "protocol": "TCP"}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert container["startupProbe"]["tcpSocket"] == {"port": "grpc"}
    assert objects[1]["spec"]["ports"][0]["name"] == "grpc"
    assert objects[1]["spec"]["ports"][0]["targetPort"] == "grpc"
    for doc in objects:
        kubernetes_validate.validate(doc, VERSIONS[0], strict=True)

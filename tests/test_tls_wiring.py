"""The service trusts devbox's CA without code changes: https:// dependencies stay https,
the trust variables point at the bundle (system CAs + devbox's), the Docker runtime
mounts them; `devbox up --once` with https upstreams is green with the demo's own urllib
client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devbox.core.profile import load_profile
from devbox.core.wiring import Endpoint, wire
from devbox.engine.wiring import service_env, trust_env
from devbox.wire.ca import (
    CONTAINER_DIR,
    container_trust,
    ensure_ca,
    system_bundle,
    trust_variables,
)

TRUST = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "NODE_EXTRA_CA_CERTS",
)


def _https_demo(demo_project: Path) -> Path:
    text = demo_project.read_text()
    for port in ("7201", "7202"):
        text = text.replace(
            f'upstream = "http://127.0.0.1:{port}"', f'upstream = "https://127.0.0.1:{port}"'
        )
    demo_project.write_text(text)
    return demo_project


def test_https_upstreams_stay_https_and_bring_the_trust_variables(demo_project: Path) -> None:
    plain = load_profile(demo_project)
    assert trust_env(plain) == {}  # nothing https: nothing to trust
    assert set(trust_env(plain, forward=True)) == set(TRUST)  # interception needs it
    profile = load_profile(_https_demo(demo_project))
    w = wire(profile, {"payments": Endpoint("127.0.0.1", 7101)})
    assert w.env["PAYMENTS_URL"] == "https://127.0.0.1:7101"
    off = wire(profile, {"payments": Endpoint("127.0.0.1", 7101)}, tls=False)
    assert off.env["PAYMENTS_URL"] == "http://127.0.0.1:7101"  # record --no-intercept
    env = service_env(profile, "127.0.0.1", {"payments": 7101, "inventory": 7102}, "mock")
    _ca, files, _ = ensure_ca()
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == env["CURL_CA_BUNDLE"]
    assert env["SSL_CERT_FILE"] == str(files.bundle)
    assert env["NODE_EXTRA_CA_CERTS"] == str(files.cert)
    assert env["INVENTORY_URL"] == "https://127.0.0.1:7102"


def test_service_env_wins_over_the_trust_variables(demo_project: Path) -> None:
    text = _https_demo(demo_project).read_text()
    text = text.replace(
        'env = { PAYMENTS_TOKEN = "sk_test_demo" }',
        'env = { PAYMENTS_TOKEN = "sk_test_demo", SSL_CERT_FILE = "/mine.pem" }',
    )
    demo_project.write_text(text)
    env = trust_env(load_profile(demo_project))
    assert "SSL_CERT_FILE" not in env and "REQUESTS_CA_BUNDLE" in env


def test_container_gets_the_files_mounted_read_only_never_the_key() -> None:
    _ca, files, _ = ensure_ca()
    env = {**trust_variables(files), "OTHER": str(files.key)}
    out, binds = container_trust(env)
    assert out["SSL_CERT_FILE"] == f"{CONTAINER_DIR}/bundle.pem"
    assert out["NODE_EXTRA_CA_CERTS"] == f"{CONTAINER_DIR}/ca.pem"
    assert out["OTHER"] == str(files.key)  # not a trust variable: left alone, not mounted
    assert sorted(binds) == sorted(
        [
            f"{files.bundle}:{CONTAINER_DIR}/bundle.pem:ro",
            f"{files.cert}:{CONTAINER_DIR}/ca.pem:ro",
        ]
    )
    assert not any(str(files.key) in b for b in binds)


def test_up_once_with_https_dependencies_is_green(demo_project: Path) -> None:
    profile = _https_demo(demo_project)
    r = subprocess.run(
        [sys.executable, "-m", "devbox", "up", "demo", "--once", "--runtime", "process"],
        cwd=profile.parent.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )
    # the orders service (urllib, no code change) called https:// mocks and trusted them
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100" in r.stdout and "matched" in r.stdout
    # the calls really were TLS: trusting only the system's CAs, they fail
    system = system_bundle()
    assert system is not None
    text = profile.read_text().replace(
        'env = { PAYMENTS_TOKEN = "sk_test_demo" }',
        f'env = {{ PAYMENTS_TOKEN = "sk_test_demo", SSL_CERT_FILE = "{system}" }}',
    )
    profile.write_text(text)
    bad = subprocess.run(
        [sys.executable, "-m", "devbox", "up", "demo", "--once", "--runtime", "process"],
        cwd=profile.parent.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr


@pytest.mark.docker
def test_up_once_in_docker_mounts_the_ca(demo_project: Path) -> None:
    profile = _https_demo(demo_project)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "devbox", "up", "demo", "--once", "--runtime", "docker"],
            cwd=profile.parent.parent,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # inside the container, SSL_CERT_FILE names the mounted bundle: urllib trusts the
        # mocks' leaves with no change to the image
        assert r.returncode == 0, r.stdout + r.stderr
        assert "100" in r.stdout and "matched" in r.stdout
    finally:
        subprocess.run(
            [sys.executable, "-m", "devbox", "down", "demo"],
            cwd=profile.parent.parent,
            capture_output=True,
            timeout=120,
        )

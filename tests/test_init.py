"""``devbox init`` as a user runs it: the real CLI on sample repositories made here
(Dockerfile + compose with two HTTP dependencies and a postgres; Dockerfile only;
neither), the written profile loaded back with the real profile parser, prompts on a
real pseudo-terminal, and the never-overwrite rule."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from devbox.core.profile import Profile, load_profile

DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG PY=3.12
FROM python:${PY}-slim AS build
RUN pip wheel -w /wheels flask

FROM python:${PY}-slim
ARG APP_PORT=8080
WORKDIR /srv/orders
COPY --from=build /wheels /wheels
COPY requirements.txt .
RUN pip install -r requirements.txt \\
    && rm -rf /root/.cache
COPY . .
ENV PYTHONUNBUFFERED=1 \\
    PORT=${APP_PORT}
EXPOSE ${APP_PORT}/tcp
HEALTHCHECK --interval=5s CMD curl -fsS http://localhost:8080/healthz || exit 1
ENTRYPOINT ["tini", "--"]
CMD ["python", "/srv/orders/app.py"]
"""

COMPOSE = """\
x-common: &common
  restart: unless-stopped
services:
  orders:
    <<: *common
    build:
      context: .
      dockerfile: Dockerfile
    ports:
      - "127.0.0.1:18080:8080"
    environment:
      PAYMENTS_URL: http://payments:8081
      INVENTORY_URL: ${INVENTORY_URL:-http://inventory:8082/api}
      DATABASE_URL: postgres://orders:secret@db:5432/orders
      LOG_LEVEL: debug
      FEATURE_FLAGS: "a,b"
      API_TOKEN: ${API_TOKEN}
      PORT: "8080"
    depends_on: [payments, inventory, db]
  payments:
    image: example/payments:1.4
    ports: ["18081:8081"]
  inventory:
    image: example/inventory:2
    expose: ["8082"]
  db:
    image: postgres:16-alpine
    environment:
      - POSTGRES_PASSWORD=secret
"""


def devbox(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEVBOX, *args],
        cwd=cwd,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "orders-repo"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    return repo


def _load(repo: Path, name: str) -> Profile:
    return load_profile(repo / "profiles" / f"{name}.toml")


def test_dockerfile_and_compose_with_two_http_dependencies_and_postgres(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        {
            "Dockerfile": DOCKERFILE,
            "docker-compose.yml": COMPOSE,
            "app.py": "print('orders')\n",
            "requirements.txt": "flask\n",
            "orders/models.py": "",
        },
    )
    r = devbox(tmp_path, "init", str(repo), "--yes")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    assert "devbox record orders -- <your client> {inbound}" in r.stdout
    assert "devbox up orders" in r.stdout
    assert f"cd {repo.relative_to(tmp_path)}" in r.stdout

    p = _load(repo, "orders")
    assert p.name == "orders"
    assert p.root == repo.resolve()
    assert p.service.name == "orders"
    assert p.service.port == 8080
    assert p.service.build is not None
    assert (p.service.build.context, p.service.build.dockerfile) == (".", "Dockerfile")
    assert p.service.workdir == "/srv/orders"
    # tini dropped, the image path made relative to the build context, python -> python3
    assert p.service.command == ("python3", "app.py")
    assert p.service.ready.http == "/healthz"
    # dependency URLs are set by devbox; PORT too; the shell's ${API_TOKEN} is unknown here
    assert dict(p.service.env) == {"LOG_LEVEL": "debug", "FEATURE_FLAGS": "a,b"}
    deps = {d.name: d for d in p.dependencies}
    assert set(deps) == {"payments", "inventory", "db"}
    # db maps to the postgres kind, wired through DATABASE_URL like compose wires it
    db = deps.pop("db")
    assert (db.kind, db.env, db.upstream) == (
        "postgres",
        "DATABASE_URL",
        "postgresql://orders:secret@127.0.0.1:5432/orders",
    )
    # compose publishes payments on this machine: that is where `devbox record` forwards
    assert (deps["payments"].env, deps["payments"].upstream) == (
        "PAYMENTS_URL",
        "http://127.0.0.1:18081",
    )
    assert (deps["inventory"].env, deps["inventory"].upstream) == (
        "INVENTORY_URL",
        "http://inventory:8082/api",
    )
    assert all(d.kind == "http" and d.on_miss == "fail" for d in deps.values())
    assert "**/*.py" in p.service.watch.sync
    assert {"Dockerfile", "requirements.txt"} <= set(p.service.watch.rebuild)

    text = (repo / "profiles/orders.toml").read_text()
    assert 'kind = "postgres"' in text and "# kind" not in text
    assert "is mocked as kind 'postgres'" in r.stdout
    assert "DATABASE_URL = " not in text  # devbox sets it to the mock's URL
    r = devbox(repo, "explain", "orders")
    assert r.returncode == 0, r.stderr
    assert re.search(r"DATABASE_URL=postgres(ql)?://orders:secret@127\.0\.0\.1:", r.stdout), (
        r.stdout
    )
    assert "Compose calls it http://payments:8081" in text
    assert "API_TOKEN" in text  # told, as a note, not copied
    # a comment line above every key
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[")) and not _in_env_table(lines, i):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"
    assert all(len(line) <= 100 for line in lines)


def _in_env_table(lines: list[str], i: int) -> bool:
    for line in reversed(lines[:i]):
        if line.startswith("["):
            return line == "[service.env]"
    return False


def test_never_overwrites_without_force(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"Dockerfile": 'FROM scratch\nEXPOSE 9000\nCMD ["/server"]\n'})
    assert devbox(repo, "init", "--yes").returncode == 0
    target = repo / "profiles" / "orders-repo.toml"
    target.write_text(target.read_text() + "# my edit\n")
    r = devbox(repo, "init", "--yes")
    assert r.returncode == 2
    assert "profiles/orders-repo.toml already exists: not overwritten" in r.stderr
    assert "--force" in r.stderr
    assert target.read_text().endswith("# my edit\n")
    r = devbox(repo, "init", "--yes", "--force", "--port", "9100")
    assert r.returncode == 0, r.stderr
    assert "# my edit" not in target.read_text()
    assert _load(repo, "orders-repo").service.port == 9100


def test_dockerfile_only(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        {
            "services/api/Dockerfile": (
                "FROM node:20\nWORKDIR /app\nCOPY package.json .\nRUN npm ci\nCOPY . .\n"
                "EXPOSE 3000\nCMD node server.js --color=false\n"
            ),
            "services/api/package.json": "{}",
            "services/api/server.js": "",
            "README.md": "",
        },
    )
    r = devbox(repo, "init", "--yes", "--name", "api")
    assert r.returncode == 0, r.stderr
    p = _load(repo, "api")
    assert p.service.port == 3000
    assert p.service.build is not None
    assert (p.service.build.context, p.service.build.dockerfile) == ("services/api", "Dockerfile")
    assert p.service.command == ("node", "server.js", "--color=false")
    assert p.service.cwd == "services/api"
    assert p.service.ready.tcp and p.service.ready.http is None
    assert p.dependencies == ()
    assert "services/api/**/*.js" in p.service.watch.sync
    assert "services/api/package.json" in p.service.watch.rebuild
    assert "dependencies: none yet" in r.stdout


def test_no_dockerfile_needs_a_command(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"README.md": "a service\n"})
    r = devbox(repo, "init", "--yes")
    assert r.returncode == 2
    assert r.stderr.startswith("error: no Dockerfile or compose build in")
    assert '--command "python3 app.py"' in r.stderr
    assert not (repo / "profiles").exists()

    r = devbox(
        repo,
        "init",
        "--name",
        "svc",
        "--port",
        "7000",
        "--command",
        "python3 server.py --reload 'a b'",
    )
    assert r.returncode == 0, r.stderr
    p = _load(repo, "svc")
    assert p.service.command == ("python3", "server.py", "--reload", "a b")
    assert p.service.build is None and p.service.image is None
    assert p.service.port == 7000
    assert p.service.cwd == "."


def test_no_dockerfile_guesses_from_files(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"app.py": "", "requirements.txt": ""})
    r = devbox(repo, "init", "--yes")
    assert r.returncode == 0, r.stderr
    p = _load(repo, "orders-repo")
    assert p.service.command == ("python3", "app.py")
    assert p.service.port == 8080
    assert "no port found in the repository" in r.stdout


def test_bad_input(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"compose.yaml": "services:\n  a: [1,\n", "Dockerfile": "FROM x\n"})
    r = devbox(repo, "init", "--yes")
    assert r.returncode == 2
    assert r.stderr.startswith("error: compose.yaml:"), r.stderr
    assert "invalid YAML" in r.stderr
    r = devbox(repo, "init", "--yes", "--name", "Bad Name")
    assert r.returncode == 2 and "--name: expected lowercase" in r.stderr
    r = devbox(tmp_path, "init", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no such directory" in r.stderr
    (repo / "compose.yaml").write_text("services:\n  a:\n    build: .\n")
    r = devbox(repo, "init", "--yes", "--service", "nope")
    assert r.returncode == 2 and "--service nope: no such service in compose.yaml" in r.stderr
    assert "services: a" in r.stderr


def test_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"Dockerfile": "FROM x\nEXPOSE 5000\n"})
    r = devbox(repo, "init", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# devbox profile 'orders-repo'")
    assert "port = 5000" in r.stdout
    assert not (repo / "profiles").exists()


def test_prompts_on_a_terminal(tmp_path: Path) -> None:
    """On a real pseudo-terminal: the name and port are asked, defaults shown."""
    repo = _repo(tmp_path, {"Dockerfile": 'FROM x\nEXPOSE 5000\nCMD ["./run"]\n'})
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*DEVBOX, "init"],
        cwd=repo,
        env={**ENV, "TERM": "dumb"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    seen = b""

    def expect(text: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 20
        while text not in seen:
            assert time.monotonic() < deadline, f"no {text!r} in {seen!r}"
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break

    try:
        expect(b"profile name [orders-repo]: ")
        os.write(master, b"Not Valid\n")
        expect(b"lowercase letters")
        os.write(master, b"mine\n")
        expect(b"port the service listens on [5000]: ")
        os.write(master, b"70000\n")
        expect(b"out of range")
        os.write(master, b"\n")  # the default
        expect(b"devbox up mine")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    p = _load(repo, "mine")
    assert p.service.port == 5000
    assert p.service.command == ("./run",)


@pytest.mark.parametrize("name", ["compose.yaml", "docker-compose.yaml"])
def test_compose_file_names_and_several_builds(tmp_path: Path, name: str) -> None:
    repo = _repo(
        tmp_path,
        {
            name: (
                "services:\n"
                "  worker:\n    build: ./worker\n"
                "  web:\n    build: {context: ./web, dockerfile: Dockerfile.dev}\n"
                '    ports: ["9090"]\n'
                "    environment:\n      - CATALOG_URL=http://catalog-svc:80\n"
                "  catalog:\n    image: example/catalog\n    hostname: catalog-svc\n"
                '    ports: ["8088:80"]\n'
            ),
            "web/Dockerfile.dev": 'FROM x\nCMD ["./web"]\n',
            "worker/Dockerfile": "FROM x\n",
        },
    )
    r = devbox(repo, "init", "--yes", "--service", "web")
    assert r.returncode == 0, r.stderr
    p = _load(repo, "web")
    assert p.service.build is not None
    assert (p.service.build.context, p.service.build.dockerfile) == ("web", "Dockerfile.dev")
    assert p.service.port == 9090
    (dep,) = p.dependencies
    # published on this machine as 8088: where `devbox record` can reach it
    assert (dep.name, dep.env, dep.upstream) == ("catalog", "CATALOG_URL", "http://127.0.0.1:8088")
    text = (repo / "profiles/web.toml").read_text()
    assert "Compose calls it http://catalog-svc:80" in text
    r = devbox(repo, "init", "--yes", "--dry-run")
    assert "several compose services build from this repository (worker, web)" in r.stderr


CLIENT = """\
import sys, urllib.error, urllib.request
base = sys.argv[1].rstrip("/")
for path in ["/catalog", "/items/KB-101", "/items/MS-202", "/quote?sku=KB-101&qty=2",
             "/quote?sku=MN-303&qty=5", "/items/NOPE-1", "/healthz"] * 3:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            r.read()
    except urllib.error.HTTPError as e:
        e.read()
"""


@pytest.mark.slow
def test_first_five_minutes_init_record_up(tmp_path: Path, demo_upstreams: dict[str, int]) -> None:
    """What a newcomer does: init in their repository, record real traffic with the
    command init printed, then `devbox up --once`: a green replay against the mocks."""
    from conftest import free_port

    repo = _repo(
        tmp_path,
        {
            "app.py": (ROOT / "examples/demo/orders/app.py").read_text(),
            "client.py": CLIENT,
            "Dockerfile": (
                "FROM devbox/base:bookworm\nWORKDIR /app\nCOPY . .\nEXPOSE 8080\n"
                "HEALTHCHECK CMD curl -fs http://localhost:8080/healthz\n"
                'CMD ["python3", "/app/app.py"]\n'
            ),
            "compose.yaml": (
                "services:\n"
                "  orders:\n    build: .\n    ports: ['8080:8080']\n"
                "    environment:\n"
                "      PAYMENTS_URL: http://payments:8081\n"
                "      INVENTORY_URL: http://inventory:8082\n"
                "  payments:\n    image: example/payments\n"
                f"    ports: ['{demo_upstreams['payments']}:8081']\n"
                "  inventory:\n    image: example/inventory\n"
                f"    ports: ['{demo_upstreams['inventory']}:8082']\n"
                "  db:\n    image: postgres:16\n"
            ),
        },
    )
    r = devbox(repo, "init", "--yes", "--port", str(free_port()))
    assert r.returncode == 0, r.stderr
    record_line = next(
        line.strip() for line in r.stdout.splitlines() if line.strip().startswith("devbox record")
    )
    assert record_line.startswith("devbox record orders -- <your client> {inbound}")
    profile_path = repo / "profiles/orders.toml"
    text = profile_path.read_text()
    # recording from the laptop, outside compose: init wrote the published addresses as the
    # upstreams (no hand edit), the compose URLs in comments
    for name in ("payments", "inventory"):
        published = f"http://127.0.0.1:{demo_upstreams[name]}"
        assert f'upstream = "{published}"' in text
        assert f"Compose calls it http://{name}:" in text
    # the stand-in inventory stamps each answer (checked_at): replayed concurrently, repeated
    # identical calls may meet their recordings in another order; the user marks it as noise
    text = text.replace('ignore = ["header:date"]', 'ignore = ["header:date", "$.checked_at"]')
    profile_path.write_text(text)

    r = subprocess.run(
        [
            *DEVBOX,
            "record",
            "orders",
            "--runtime",
            "process",
            "--",
            sys.executable,
            "client.py",
            "{inbound}",
        ],
        cwd=repo,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert list((repo / "mocks/orders/inbound").glob("*.json"))
    assert list((repo / "mocks/orders/inventory").glob("*.json"))

    r = subprocess.run(
        [*DEVBOX, "up", "orders", "--once", "--runtime", "process"],
        cwd=repo,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"all \d+ requests matched the recording", r.stdout), r.stdout


def test_a_flask_redis_project_keeps_target_signal_port_and_comments_out_hosts(
    tmp_path: Path,
) -> None:
    repo = _repo(
        tmp_path,
        {
            "web/Dockerfile": (
                "FROM python:3.11-slim AS base\nWORKDIR /app\nCOPY . .\n"
                'FROM base AS dev\nSTOPSIGNAL SIGINT\nCMD ["python", "app.py"]\n'
                'FROM base AS prod\nCMD ["gunicorn", "app:app"]\n'
            ),
            "web/app.py": "",
            "analytics/Dockerfile": "FROM python:3.11-slim\n",
            "cache/Dockerfile": "FROM redis:7-alpine\n",
            "compose.yaml": (
                "services:\n"
                "  web:\n"
                "    build: {context: ./web, target: dev}\n"
                "    stop_signal: SIGQUIT\n"
                "    environment:\n"
                "      FLASK_SERVER_PORT: '9091'\n"
                "      REDIS_PORT: '6379'\n"
                "      ANALYTICS_URL: http://analytics:5001/visit\n"
                "      REDIS_HOST: redis\n"
                "      DATABASE_HOST: db\n"
                "  analytics:\n    build: ./analytics\n    ports: ['5001:5001']\n"
                "  redis:\n    build: ./cache\n    ports: ['16379:6379']\n"
                "  db:\n    image: postgres:16\n"
                "    environment: {POSTGRES_USER: app, POSTGRES_DB: shop}\n"
            ),
        },
    )
    r = devbox(repo, "init", "--yes", "--service", "web")
    assert r.returncode == 0, r.stderr
    p = _load(repo, "web")
    assert p.service.port == 9091
    assert p.service.build is not None and p.service.build.target == "dev"
    assert p.service.stop_signal == "SIGQUIT"  # compose's wins over the stage's STOPSIGNAL
    # the dev stage's command, not the last stage's
    assert p.service.command == ("python3", "app.py")
    # redis (built FROM redis) and db (postgres) map to their kinds; the host and port
    # variables naming them are wired like compose wires them: to the mocks' fixed ports
    deps = {d.name: d for d in p.dependencies}
    assert set(deps) == {"analytics", "redis", "db"}
    redis, db = deps["redis"], deps["db"]
    assert (redis.kind, redis.upstream) == ("redis", "redis://127.0.0.1:16379")
    assert (db.kind, db.upstream) == ("postgres", "postgresql://app@127.0.0.1:5432/shop")
    assert redis.port and db.port and redis.port != db.port
    assert dict(p.service.env) == {
        "FLASK_SERVER_PORT": "9091",
        "REDIS_PORT": str(redis.port),
        "REDIS_HOST": "127.0.0.1",
        "DATABASE_HOST": "127.0.0.1",
    }
    dep = deps["analytics"]
    assert (dep.name, dep.upstream, dep.env) == (
        "analytics",
        "http://127.0.0.1:5001/visit",
        "ANALYTICS_URL",
    )
    assert "is mocked as kind 'redis'" in r.stdout and "is mocked as kind 'postgres'" in r.stdout
    assert "DATABASE_PORT" in r.stdout  # told: the service needs it to reach the mock

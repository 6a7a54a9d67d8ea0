"""The noise-learning proof on a real third-party stateful REST server (json-server, from
npm, installed by scripts/setup into .cache/npm-rest): record it through ``devbox
record``, learn noise with ``devbox replay --learn-noise --write``, replay, then change one
value of its data and replay again. Used by tests/test_noise_stateful.py and
``python -m bench.fidelity.noise_rest`` (the figures in docs/fidelity.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import ROOT, Proc, free_port, wait_port

DATA = ROOT / "tests/data/rest"
JSON_SERVER = ROOT / ".cache/npm-rest/node_modules/json-server/lib/bin.js"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}


@dataclass(frozen=True)
class RestProject:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pristine(self) -> Path:
        return self.root / "db.pristine.json"


def devbox(project: RestProject, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devbox", *args],
        cwd=project.root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def server_argv(port: int) -> list[str]:
    """json-server on ./db.json, listening on 127.0.0.1 only (tests/data/rest/loopback.mjs)."""
    node = shutil.which("node") or "node"
    loopback = str(DATA / "loopback.mjs")
    return [node, "--import", loopback, str(JSON_SERVER), "db.json", "--port", str(port)]


def make_project(root: Path) -> RestProject:
    """A project whose service is json-server on db.json, reset by tests/data/rest/reset_db.py."""
    if not JSON_SERVER.exists():
        raise RuntimeError(f"{JSON_SERVER} is missing: run bash scripts/setup")
    port = free_port()
    project = RestProject(root, port)
    shutil.copy(DATA / "db.json", project.pristine)
    shutil.copy(DATA / "db.json", root / "db.json")
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "public").mkdir(exist_ok=True)  # json-server serves it; in production it must exist
    reset = [sys.executable, str(DATA / "reset_db.py"), "db.pristine.json", project.url]
    (root / "profiles/rest.toml").write_text(
        f"""name = "rest"

[service]
name = "json-server"
port = {port}
command = {json.dumps(server_argv(port))}
# no file watcher: its reloads of db.json race the API calls that change the data
env = {{ NODE_ENV = "production" }}
ready = {{ http = "/profile", timeout_s = 30 }}

[replay]
# its traffic changes its state: replayed in recorded order
concurrency = 1
reset = {json.dumps(reset)}
"""
    )
    return project


def record(project: RestProject) -> None:
    r = devbox(
        project, "record", "rest", "--runtime", "process", "--json", "--",
        sys.executable, str(DATA / "traffic.py"), "{inbound}",
    )  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"devbox record failed: {r.stderr[-2000:]}")


@contextmanager
def server(project: RestProject) -> Iterator[Proc]:
    """json-server on the project's db.json (reset to the pristine data first)."""
    shutil.copy(project.pristine, project.root / "db.json")
    proc = Proc(server_argv(project.port), env={"NODE_ENV": "production"}, cwd=project.root)
    try:
        wait_port(project.port, timeout=30)
        yield proc
    finally:
        proc.stop()


def replay(project: RestProject, *extra: str) -> dict[str, Any]:
    r = devbox(project, "replay", "rest", "--report", "json", *extra)
    if not r.stdout.startswith("{"):
        raise RuntimeError(f"devbox replay gave no report: {r.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(r.stdout)
    return report


def learn(project: RestProject) -> dict[str, Any]:
    r = devbox(project, "replay", "rest", "--learn-noise", "--write", "--report", "json")
    if r.returncode != 0 or not r.stdout.startswith("{"):
        raise RuntimeError(f"--learn-noise failed: {r.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(r.stdout)
    return report


def differences(report: dict[str, Any]) -> set[tuple[str, str]]:
    """(request label, JSON path) of every difference in a replay report."""
    return {
        (f"{res['method']} {res['target']}", d["where"])
        for res in report["results"]
        for d in res.get("differences", [])
    }


def change_one_value(project: RestProject, old: object, new: object) -> None:
    """Change the first value equal to ``old`` in the pristine data (what reset restores)."""
    data = json.loads(project.pristine.read_text())
    for post in data["posts"]:
        if post["title"] == old:
            post["title"] = new
            break
    else:
        raise ValueError(f"no post titled {old!r}")
    project.pristine.write_text(json.dumps(data, indent=2))


def carrying(project: RestProject, value: object) -> set[tuple[str, str]]:
    """(request label, JSON path) of every recorded response value equal to ``value``."""
    from devbox.core.diff import flatten_json, format_path, parse_json_body
    from devbox.store import load_dir

    out = set()
    for ex in load_dir(project.root / "mocks/rest/inbound"):
        if ex.response is None:
            continue
        ok, body = parse_json_body(ex.response)
        if not ok:
            continue
        for path, v in flatten_json(body):
            if v == value:
                out.add((f"{ex.request.method} {ex.request.target}", format_path(path)))
    return out

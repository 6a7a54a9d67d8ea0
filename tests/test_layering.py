"""The layering cannot rot silently: the pure core and the store load no I/O framework, and the
CLI's entry point stays cheap (heavy imports happen inside the command that needs them).
The import-linter contracts in pyproject.toml check the same statically (scripts/test)."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import devbox.core

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("textual", "docker", "watchfiles", "asyncio")


def loaded_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    r = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_core_modules_exist() -> None:
    names = {m.name for m in pkgutil.iter_modules(devbox.core.__path__)}
    assert {"model", "profile", "recording", "redact", "har"} <= names


def test_core_and_store_import_no_io_framework() -> None:
    names = sorted(m.name for m in pkgutil.iter_modules(devbox.core.__path__))
    code = "\n".join(f"import devbox.core.{n}" for n in names) + "\nimport devbox.store"
    modules = loaded_after(code)
    assert {f"devbox.core.{n}" for n in names} <= modules
    assert heavy_in(modules) == []
    # nor does it reach into the edges
    edges = (
        "devbox.mock",
        "devbox.record",
        "devbox.replay",
        "devbox.runtime",
        "devbox.watch",
        "devbox.engine",
        "devbox.tui",
        "devbox.cli",
    )
    assert sorted(m for m in modules if m.startswith(edges)) == []


def test_each_core_module_alone() -> None:
    # one at a time, so a module cannot hide behind another that happens to import first
    for name in ("model", "profile", "recording", "redact", "har"):
        assert heavy_in(loaded_after(f"import devbox.core.{name}")) == [], name


def test_the_cli_parser_is_cheap_to_build() -> None:
    modules = loaded_after("from devbox.cli.main import build_parser\nbuild_parser()")
    assert heavy_in(modules) == []
    assert "rich.table" not in modules  # tables are imported by the commands that print them


def test_asking_the_http_kind_loads_no_server() -> None:
    # the profile, the wiring and the recorders ask the registry about HTTP: that must not
    # import the mock's servers, matching or an event loop (devbox.mock is lazy)
    modules = loaded_after(
        "from devbox.wire import registry\n"
        "registry.capabilities('http'); registry.get('http').service_url('http://a', 'h', 1)"
    )
    assert heavy_in(modules) == []
    assert not {"devbox.mock.server", "devbox.mock.fleet", "devbox.core.matching"} & modules

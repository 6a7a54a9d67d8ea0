"""``devbox traffic ls|show TARGET``: a profile's name wins over a directory of that name
(``./DIR`` is the directory), a path-looking target is a path, anything else that exists
is a path (docs/recordings.md, "Which recordings"). The real CLI, in a project of its own."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import run_devbox
from record_helpers import write_profile
from test_record_sink import _ex

from devbox.core.model import Direction
from devbox.store import write_recording

ROOT = Path(__file__).resolve().parent.parent


def devbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    return run_devbox(cwd, *args, timeout=60, env=env)


def _project(tmp_path: Path) -> Path:
    """A profile ``web`` (dependency ``api``, 2 recorded calls) next to the service's own
    code in ``web/``, which holds a recording too (a fixture of the service's tests)."""
    write_profile(tmp_path, {"api": "http://127.0.0.1:9"}, name="web")
    write_recording(
        tmp_path / "mocks/web/api/recording-1.json", "api", Direction.OUTBOUND, [_ex(1), _ex(2)]
    )
    write_recording(
        tmp_path / "web/api/fixtures/recording-x.json", "api", Direction.OUTBOUND, [_ex(7)]
    )
    return tmp_path


def _ls(*args: str, cwd: Path) -> tuple[dict[str, int], str]:
    r = devbox("traffic", "ls", *args, "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return {s["source"]: s["exchanges"] for s in json.loads(r.stdout)}, r.stderr


def test_a_profile_name_wins_over_a_directory_of_that_name(tmp_path: Path) -> None:
    root = _project(tmp_path)
    sources, note = _ls("web", cwd=root)
    assert sources["api"] == 2 and "inbound" in sources  # the profile's sources
    assert "./web" in note  # ...and how to reach the directory
    sources, note = _ls("./web", cwd=root)
    assert sources == {"api/fixtures": 1} and not note
    # PROFILE/SOURCE too, though web/api is a directory here
    r = devbox("traffic", "show", "web/api", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    assert [x["id"] for x in json.loads(r.stdout)] == ["payments-1", "payments-2"]
    r = devbox("traffic", "show", "./web/api/fixtures", "--json", cwd=root)
    assert [x["id"] for x in json.loads(r.stdout)] == ["payments-7"]


def test_a_name_that_is_no_profile_is_a_path(tmp_path: Path) -> None:
    root = _project(tmp_path)
    sources, note = _ls("mocks/web/api", cwd=root)
    assert sources == {"api": 2} and not note
    r = devbox("traffic", "ls", "nothing", cwd=root)
    assert r.returncode == 2 and "no profile named 'nothing'" in r.stderr
    assert "Traceback" not in r.stderr

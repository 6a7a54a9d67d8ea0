"""`devbox scan`: the redaction rules over files on disk, reported and fixed in place."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from secret_corpus import sample

from devbox.core.model import Direction, Exchange, Request, Response
from devbox.store import load_dir, write_recording

DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}


def scan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEVBOX, "scan", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60
    )


def test_scan_reports_fixes_and_then_finds_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    gh, stripe = sample("github-pat", rng), sample("stripe-secret-key", rng)
    rec_dir = tmp_path / "mocks/p/api"
    body = json.dumps({"data": {"note": f"key {stripe}"}, "password": "hunter2"}).encode()
    ex = Exchange(
        "e1",
        Direction.OUTBOUND,
        "api",
        Request("GET", "/x", (("q", gh),), (("Host", "api"),), b"", "http", "api"),
        Response(200, (("Content-Type", "application/json"),), body),
    )
    rec = write_recording(rec_dir / "r.json", "api", Direction.OUTBOUND, [ex])  # unredacted
    rec.chmod(0o640)
    env_file = tmp_path / "conf" / "app.env"
    env_file.parent.mkdir()
    env_file.write_text(f"DEBUG=1\nGITHUB_TOKEN={gh}\n")
    js = tmp_path / "conf" / "lib.js"
    js_text = "function f(Y,e){Y.password=e;return Y}\n"
    js.write_text(js_text)

    r = scan(".", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert gh not in out and stripe not in out and "hunter2" not in out
    assert "conf/app.env:2: github-pat ghp_…" in out
    assert "mocks/p/api/r.json:" in out and "stripe-secret-key" in out and "secret" in out
    assert "lib.js" not in out

    r = scan("--json", "mocks", cwd=tmp_path)
    assert r.returncode == 1
    rules = {json.loads(line)["rule"] for line in r.stdout.splitlines()}
    assert {"github-pat", "stripe-secret-key", "secret"} <= rules

    r = scan(".", "--fix", cwd=tmp_path)
    assert r.returncode == 1  # found (and fixed): a pre-commit hook stops for a review
    assert scan(".", cwd=tmp_path).returncode == 0
    fixed = load_dir(rec_dir)[0]  # still a recording that loads
    assert fixed.request.query[0][1].startswith("ghp_<redacted:github-pat:")
    assert gh not in env_file.read_text() and "DEBUG=1\n" in env_file.read_text()
    assert js.read_text() == js_text
    assert stat.S_IMODE(rec.stat().st_mode) == 0o640


def test_scan_of_a_missing_path_is_a_one_line_error(tmp_path: Path) -> None:
    r = scan("nope", cwd=tmp_path)
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr

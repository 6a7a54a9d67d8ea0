"""``devbox replay`` as a user runs it: a real profile, real recordings on disk, a real
service subprocess; exit codes, reports, --fail-if, --learn-noise --write."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import tomlkit
from conftest import ROOT, Proc, free_port, wait_port
from replay_helpers import record

from devbox.core.assertions import evaluate, parse_fail_if
from devbox.core.model import Direction
from devbox.core.profile import load_profile
from devbox.errors import UsageError
from devbox.replay.profile_writer import add_ignore_rules, write_ignore_rules
from devbox.store import write_recording

APP = str(ROOT / "examples/misbehaving/app.py")
PROFILE = """\
# a profile written by a person: these comments must survive --learn-noise --write
name = "shop"

[service]
name = "shop"
port = {port}
command = ["python3", "app.py"]

[replay]
concurrency = 4   # keep it gentle
ignore = [
  "$.request_id",   # a UUID per response
]
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A project dir with a profile and an inbound recording of the well-behaved service."""
    port = free_port()
    proc = Proc([sys.executable, APP, "--port", str(port)])
    try:
        wait_port(port)
        exs = record(
            f"http://127.0.0.1:{port}",
            [("GET", "/products/KB-101", b""), ("GET", "/profile", b""), ("GET", "/products", b"")],
        )
    finally:
        proc.stop()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/shop.toml").write_text(PROFILE.format(port=port))
    write_recording(tmp_path / "mocks/shop/inbound/rec.json", "inbound", Direction.INBOUND, exs)
    yield tmp_path, port


def devbox(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devbox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80", "NO_COLOR": "1"},
    )


def test_exit_codes_reports_and_fail_if(project: tuple[Path, int]) -> None:
    root, port = project
    proc = Proc([sys.executable, APP, "--port", str(port), "--misbehave", "changed_field"])
    try:
        wait_port(port)
        # volatile fields not yet ignored: fails
        r = devbox(root, "replay", "shop")
        assert r.returncode == 1, r.stderr
        assert "$.served_at" in r.stdout
        ok = devbox(
            root,
            "replay",
            "shop",
            "--ignore",
            "$.served_at",
            "--ignore",
            "$.generated_at",
            "--route",
            "GET /profile",
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "all 1 requests matched" in ok.stdout
        # JSON on stdout, nothing else
        j = devbox(
            root,
            "replay",
            "shop",
            "--json",
            "--ignore",
            "$.served_at",
            "--ignore",
            "$.generated_at",
        )
        assert j.returncode == 1
        data = orjson.loads(j.stdout)
        assert data["counts"]["failed"] == 1
        (fail,) = [x for x in data["results"] if x["verdict"] == "fail"]
        assert fail["differences"] == [
            {
                "section": "body",
                "where": "$.price",
                "change": "changed",
                "expected": "89.0",
                "actual": "99.0",
            }
        ]
        # JUnit to a file, terminal report still printed
        out = root / "reports/replay.xml"
        u = devbox(
            root, "replay", "shop", "--report", "junit", "--out", str(out), "--fail-if", "p99 > 60s"
        )
        assert u.returncode == 1 and "Replay against" in u.stdout
        suite = ET.parse(out).getroot().find("testsuite")
        assert suite is not None and len(suite.findall("testcase")) == 3
        assert len(suite.findall("testcase/failure")) >= 1
        # --fail-if violated alone fails a run whose responses all match
        v = devbox(
            root,
            "replay",
            "shop",
            "--ignore",
            "$.served_at",
            "--ignore",
            "$.generated_at",
            "--route",
            "GET /profile",
            "--fail-if",
            "requests < 5",
        )
        assert v.returncode == 1 and "fail-if requests < 5" in v.stdout
    finally:
        proc.stop()


def test_usage_errors_exit_2_with_one_line(project: tuple[Path, int]) -> None:
    root, _ = project
    bad = devbox(root, "replay", "shop", "--fail-if", "p99 >> 3")
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0] == "error: --fail-if 'p99 >> 3': not an expression"
    unit = devbox(root, "replay", "shop", "--fail-if", "p99 > 250")
    assert unit.returncode == 2 and "needs a unit" in unit.stderr
    assert devbox(root, "replay", "shop", "--speed", "1", "--rate", "5").returncode == 2
    assert devbox(root, "replay", "shop", "--count", "0").returncode == 2
    assert devbox(root, "replay", "shop", "--ignore", "created_at").returncode == 2
    assert devbox(root, "replay", "nope").returncode == 2
    assert devbox(root, "replay", "shop", "--target", "ftp://x").returncode == 2
    # a bad profile fail_if names the file and the field
    prof = root / "profiles/shop.toml"
    good = prof.read_text()
    prof.write_text(
        prof.read_text().replace("concurrency = 4", 'concurrency = 4\nfail_if = ["latency is bad"]')
    )
    r = devbox(root, "replay", "shop")
    one_line = r.stderr.replace("\n", "")  # rich folds long lines at 80 columns
    assert r.returncode == 2
    assert "shop.toml: replay.fail_if: expression 'latency is bad': not an expression" in one_line
    prof.write_text(good)
    empty = root / "empty"
    empty.mkdir()
    r = devbox(root, "replay", "shop", "--recordings", str(empty))
    assert r.returncode == 2 and "no recorded inbound traffic" in r.stderr


def test_service_down_is_an_error_verdict_exit_1(project: tuple[Path, int]) -> None:
    root, _ = project
    r = devbox(root, "replay", "shop", "--target", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1
    assert "cannot connect" in r.stdout


def test_learn_noise_writes_rules_keeping_comments(project: tuple[Path, int]) -> None:
    root, port = project
    proc = Proc([sys.executable, APP, "--port", str(port), "--misbehave", "changed_field"])
    try:
        wait_port(port)
        dry = devbox(root, "replay", "shop", "--learn-noise")
        assert dry.returncode == 0, dry.stderr
        assert "$.served_at" in dry.stdout and "not written" in dry.stderr
        before = (root / "profiles/shop.toml").read_text()
        w = devbox(root, "replay", "shop", "--learn-noise", "--write")
        assert w.returncode == 0, w.stderr
        after = (root / "profiles/shop.toml").read_text()
        again = devbox(root, "replay", "shop")
    finally:
        proc.stop()
    assert before != after
    for kept in ("# a profile written by a person", "# keep it gentle", "# a UUID per response"):
        assert kept in after
    ignore = load_profile(root / "profiles/shop.toml").replay.ignore
    # request_id and served_at vary on every route: unscoped; generated_at is in the
    # responses of one route only: scoped to it
    assert set(ignore) == {"$.request_id", "$.served_at", "GET /products $.generated_at"}
    assert "$.price" not in after
    # with the learned rules, only the real change is left
    assert again.returncode == 1
    assert "$.price: 89.0 → 99.0" in again.stdout and "$.served_at" not in again.stdout


def test_add_ignore_rules_creates_table_and_skips_duplicates(tmp_path: Path) -> None:
    text = '# top\nname = "x"\n\n[service]\nport = 1\ncommand = ["a"]\n'
    new, added = add_ignore_rules(text, ["$.a", "header:date", "$.a"])
    assert added == ["$.a", "header:date"] and new.startswith("# top\n")
    assert tomlkit.parse(new)["replay"]["ignore"] == ["$.a", "header:date"]
    again, added2 = add_ignore_rules(new, ["$.a"])
    assert added2 == [] and again == new
    p = tmp_path / "profiles/x.toml"
    p.parent.mkdir()
    p.write_text(text)
    assert write_ignore_rules(p, ["$.b"]) == ["$.b"]
    assert load_profile(p).replay.ignore == ("$.b",)


def test_fail_if_parsing_and_evaluation() -> None:
    a = parse_fail_if("p99 > 0.25s")
    assert (a.metric, a.op, a.value) == ("p99", ">", 250.0)
    assert parse_fail_if("match<100%").value == 100.0
    assert parse_fail_if("errors >= 1").metric == "errors"
    assert parse_fail_if("throughput < 100/s").metric == "rps"
    metrics = {"p99": 300.0, "match": 100.0, "errors": 0.0}
    out = evaluate(
        [parse_fail_if("p99 > 250ms"), parse_fail_if("match < 100%"), parse_fail_if("errors > 0")],
        metrics,
    )
    assert out == ["p99 > 250ms (was 300.0ms)"]
    for bad, why in [
        ("p99 >", "not an expression"),
        ("latency > 3ms", "unknown metric"),
        ("p99 > 3", "needs a unit"),
        ("p99 > 3%", "not a unit of time"),
        ("match < 101%", "at most 100"),
        ("errors > 1ms", "takes no unit"),
    ]:
        with pytest.raises(UsageError, match=why):
            parse_fail_if(bad)

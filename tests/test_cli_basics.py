"""The CLI as a user meets it: help, version, JSON output, and bad input rendered as one line
(file, line, field, what was expected) with exit status 2 and never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import run_devbox

from devbox.cli.main import build_parser
from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.store import RecordingWriter, write_recording

ROOT = Path(__file__).resolve().parent.parent

SERVICE = '[service]\nport = 8000\ncommand = ["python3", "app.py"]\n'


def devbox(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DEVBOX_NO_HINTS"}
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "160"  # tables, not the error lines, depend on the width
    return run_devbox(cwd, *args, timeout=60, env=env)


def one_error(r: subprocess.CompletedProcess[str]) -> str:
    """The error line; asserts exit 2, no traceback, at most an error line and a hint line."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, r.stderr
    assert lines[0].startswith("error: ")
    if len(lines) == 2:
        assert lines[1].startswith("hint: ")
    return lines[0][len("error: ") :]


def profile(tmp_path: Path, text: str, name: str = "p") -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    path = tmp_path / "profiles" / f"{name}.toml"
    path.write_text(text)
    return path


def ex(i: int) -> Exchange:
    return Exchange(
        id=f"pay-{i:04d}",
        direction=Direction.OUTBOUND,
        source="payments",
        request=Request(
            "POST",
            "/charges",
            (),
            (("Content-Type", "application/json"),),
            b'{"amount":100}',
            host="payments:8081",
        ),
        response=Response(
            201 if i % 4 else 402,
            (("Content-Type", "application/json"),),
            b'{"id":"ch_1","status":"ok"}',
        ),
        timing=Timing(started_at=1709284502.0 + i, duration_ms=3.25, wait_ms=3.0),
        parent=f"in-{i:04d}",
    )


# ---------------------------------------------------------------- help and version


def test_help_lists_the_commands() -> None:
    r = devbox("--help")
    assert r.returncode == 0 and r.stderr == ""
    for cmd in ("validate", "traffic", "import", "export"):
        assert cmd in r.stdout
    assert "usage: devbox" in r.stdout and "--version" in r.stdout


def test_no_command_prints_help_and_fails() -> None:
    r = devbox()
    assert r.returncode == 2 and "usage: devbox" in r.stdout


def test_version() -> None:
    from devbox import __version__

    r = devbox("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"devbox {__version__}"


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices is not None
    names = list(sub.choices)
    assert {"validate", "traffic", "import", "export"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([name, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: devbox " + name), name
    for name in ("ls", "show"):
        with pytest.raises(SystemExit):
            parser.parse_args(["traffic", name, "--help"])
        assert "usage: devbox traffic " + name in capsys.readouterr().out


def test_validate_reports_and_prints_json() -> None:
    r = devbox("validate", "demo")
    assert r.returncode == 0 and "ok" in r.stdout and "orders" in r.stdout
    r = devbox("validate", "demo", "--json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["service"]["port"] == 7080
    assert [d["name"] for d in data["dependencies"]] == ["payments", "inventory"]


# ---------------------------------------------------------------- bad input, one line


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = profile(tmp_path, SERVICE + "[[dependency]]\nname = payments\n")
    line = one_error(devbox("validate", str(path)))
    assert line.startswith(f"{path}:5: invalid TOML")


def test_unknown_key_with_did_you_mean(tmp_path: Path) -> None:
    path = profile(tmp_path, SERVICE + "[service.watch]\nsynk = ['**/*.py']\n")
    r = devbox("validate", "p", cwd=tmp_path)
    line = one_error(r)
    assert line == f"{path}:5: service.watch.synk: unknown key 'synk'"
    assert "hint: did you mean 'sync'?" in r.stderr


def test_wrong_type(tmp_path: Path) -> None:
    path = profile(tmp_path, '[service]\ncommand = ["x"]\nport = "8000"\n')
    line = one_error(devbox("validate", str(path)))
    assert line == f"{path}:3: service.port: expected an integer, got a string"


def test_bad_enum_in_the_second_dependency(tmp_path: Path) -> None:
    text = (
        SERVICE + '[[dependency]]\nname = "payments"\non_miss = "fail"\n\n'
        '[[dependency]]\nname = "inventory"\non_miss = "ignore"\n'
    )
    path = profile(tmp_path, text)
    line = one_error(devbox("validate", str(path)))
    assert line == (
        f"{path}:10: dependency[1].on_miss: expected one of fail, passthrough, record, got 'ignore'"
    )


def test_missing_profile(tmp_path: Path) -> None:
    profile(tmp_path, SERVICE, "shop")
    r = devbox("validate", "shopp", cwd=tmp_path)
    line = one_error(r)
    assert line.startswith("no profile named 'shopp'")
    assert "hint: known profiles: shop" in r.stderr
    line = one_error(devbox("validate", str(tmp_path / "nope.toml")))
    assert line == f"{tmp_path / 'nope.toml'}: no such profile file"


def test_corrupt_recording_names_the_line(tmp_path: Path) -> None:
    d = tmp_path / "mocks" / "p" / "payments"
    path = write_recording(d / "rec.json", "payments", Direction.OUTBOUND, [ex(1), ex(2), ex(3)])
    text = path.read_text()
    bad_line = text[: text.index('"id": "pay-0002"')].count("\n") + 1
    path.write_text(text.replace('"id": "pay-0002",', '"id": "pay-0002" "oops",'))
    for args in (
        ("traffic", "show", str(path)),
        ("traffic", "ls", str(d)),
        ("export", str(d), "--har", str(tmp_path / "x.har")),
    ):
        line = one_error(devbox(*args))
        assert line.startswith(f"{path}:{bad_line}: invalid JSON"), (args, line)
    assert not (tmp_path / "x.har").exists()


def test_semantic_recording_error_names_field(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "rec.json", "payments", Direction.OUTBOUND, [ex(1)])
    path.write_text(path.read_text().replace('"status": 201', '"status": "bad"'))
    line = one_error(devbox("traffic", "show", str(path)))
    assert line.startswith(f"{path}:8: exchange[0]: malformed exchange")


def test_bad_har_names_the_line(tmp_path: Path) -> None:
    har = tmp_path / "bad.har"
    har.write_text('{"log": {\n  "entries": [\n    {"request": }\n  ]\n}}\n')
    line = one_error(devbox("import", str(har), "--into", str(tmp_path / "out")))
    assert line.startswith(f"{har}:3: invalid JSON")
    line = one_error(devbox("import", str(tmp_path / "none.har"), "--into", "x"))
    assert line == f"{tmp_path / 'none.har'}: no such HAR file"
    har.write_text('{"log": {"entries": [{"request": {"method": "GET"}}]}}')
    line = one_error(devbox("import", str(har), "--into", str(tmp_path / "out")))
    assert line == f"{har}: log.entries[0].request.url: no entry could be imported: missing url"
    assert not (tmp_path / "out").exists()


def test_bad_arguments_are_usage_errors() -> None:
    r = devbox("traffic", "show")
    assert r.returncode == 2 and "usage:" in r.stderr and "Traceback" not in r.stderr
    line = one_error(devbox("traffic", "show", "/nonexistent/dir"))
    assert "no such recording file or directory" in line


# ---------------------------------------------------------------- traffic ls / show


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    d = tmp_path / "mocks" / "p" / "payments"
    write_recording(d / "a.json", "payments", Direction.OUTBOUND, [ex(i) for i in range(1, 9)])
    with RecordingWriter(d / "b.json", "payments", Direction.OUTBOUND) as w:
        w.append(ex(20))
        w.append(ex(21))
    data = (d / "b.json").read_bytes()
    (d / "b.json").write_bytes(data[:-50])  # killed mid-append: a torn tail
    inbound = tmp_path / "mocks" / "p" / "inbound"
    write_recording(
        inbound / "in.json",
        "inbound",
        Direction.INBOUND,
        [
            Exchange(
                f"in-{i:04d}",
                Direction.INBOUND,
                "inbound",
                Request("GET", f"/items/KB-{i}", (("lang", "en"),), (), host="svc"),
                Response(200, (), b"{}"),
                Timing(1709284502.0, 2.0),
            )
            for i in range(3)
        ],
    )
    profile(
        tmp_path,
        SERVICE + '[[dependency]]\nname = "payments"\n[[dependency]]\nname = "inventory"\n',
    )
    return tmp_path


def test_traffic_ls(recorded: Path) -> None:
    r = devbox("traffic", "ls", "p", cwd=recorded)
    assert r.returncode == 0, r.stderr
    assert "payments" in r.stdout and "inventory" in r.stdout and "inbound" in r.stdout
    assert "no recordings yet" in r.stdout
    assert "GET /items/{id}" in r.stdout and "POST /charges" in r.stdout
    assert "torn tail" in r.stderr and "b.json" in r.stderr
    r = devbox("traffic", "ls", "p", "--json", cwd=recorded)
    rows = {row["source"]: row for row in json.loads(r.stdout)}
    pay = rows["payments"]
    assert pay["exchanges"] == 9 and pay["methods"] == {"POST": 9}
    assert pay["torn_tails"] == 1 and pay["statuses"] == {"201": 6, "402": 3}
    assert [f["torn_tail"] for f in pay["files"]] == [False, True]
    assert rows["inventory"]["exchanges"] == 0 and rows["inventory"]["files"] == []
    assert rows["inbound"]["routes"] == {"GET /items/{id}": 3}
    # a directory, and the default (./mocks)
    r = devbox("traffic", "ls", "mocks/p/payments", "--files", "--json", cwd=recorded)
    assert [row["exchanges"] for row in json.loads(r.stdout)] == [8, 1]
    r = devbox("traffic", "ls", "--json", cwd=recorded)
    assert {row["source"] for row in json.loads(r.stdout)} == {"p/inbound", "p/payments"}


def test_traffic_show(recorded: Path) -> None:
    r = devbox("traffic", "show", "mocks/p/payments", cwd=recorded)
    assert r.returncode == 0, r.stderr
    assert "9 of 9 exchanges" in r.stdout and "/charges" in r.stdout and "402" in r.stdout
    r = devbox("traffic", "show", "p/payments", "--status", "402", "--json", cwd=recorded)
    assert [e["id"] for e in json.loads(r.stdout)] == ["pay-0004", "pay-0008", "pay-0020"]
    r = devbox("traffic", "show", "mocks/p/payments", "--id", "pay-0003", cwd=recorded)
    assert r.returncode == 0, r.stderr
    for text in (
        "POST http://payments:8081/charges",
        "pay-0003",
        "parent",
        "in-0003",
        "Content-Type",
        '"amount": 100',
        "201",
    ):
        assert text in r.stdout, text
    r = devbox("traffic", "show", "mocks/p/payments", "--id", "#9", "--json", cwd=recorded)
    assert json.loads(r.stdout)["id"] == "pay-0020"
    line = one_error(devbox("traffic", "show", "mocks/p/payments", "--id", "pay-", cwd=recorded))
    assert "matches 9 exchanges" in line
    line = one_error(devbox("traffic", "show", "mocks/p/payments", "--id", "#99", cwd=recorded))
    assert line == "no exchange #99: there are 9"
    r = devbox(
        "traffic",
        "show",
        "mocks/p/inbound",
        "--method",
        "get",
        "--grep",
        "KB-1",
        "--json",
        cwd=recorded,
    )
    assert [e["id"] for e in json.loads(r.stdout)] == ["in-0001"]

"""The file edits behind the dashboard's "mark as noise" and "accept response" actions
(devbox.engine.driver), on real files: comments kept, validation before writing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devbox.core.model import Direction, Exchange, Request, Response
from devbox.core.profile import load_profile
from devbox.engine.driver import (
    add_ignore_rule,
    check_ignore_rule,
    find_exchange,
    replace_recorded_response,
)
from devbox.errors import ConfigError, NotFoundError, UsageError
from devbox.store import load_file, write_recording

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_profile(tmp_path: Path) -> Path:
    (tmp_path / "profiles").mkdir()
    dst = tmp_path / "profiles" / "demo.toml"
    shutil.copy(ROOT / "profiles" / "demo.toml", dst)
    return dst


def test_rule_is_appended_and_comments_survive(demo_profile: Path) -> None:
    before = demo_profile.read_text()
    assert add_ignore_rule(demo_profile, "$.items[*].price") is True
    after = demo_profile.read_text()
    # every original comment line is still there, in order
    comments = [ln for ln in before.splitlines() if ln.lstrip().startswith("#") or " # " in ln]
    assert comments and all(c in after for c in comments)
    assert load_profile(demo_profile).replay.ignore[-1] == "$.items[*].price"
    # only the ignore line changed
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1 and changed[0][0].startswith("ignore =")


def test_rule_already_present_is_not_duplicated(demo_profile: Path) -> None:
    before = demo_profile.read_text()
    assert add_ignore_rule(demo_profile, "$.order_id") is False
    assert demo_profile.read_text() == before


def test_header_rule_is_normalised(demo_profile: Path) -> None:
    assert add_ignore_rule(demo_profile, "header:X-Trace") is True
    assert "header:x-trace" in load_profile(demo_profile).replay.ignore


def test_profile_without_replay_table_gets_one(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text('# mine\nname = "p"\n\n[service]\nport = 9000  # the port\ncommand = ["x"]\n')
    assert add_ignore_rule(p, "$.ts")
    text = p.read_text()
    assert "# mine" in text and "# the port" in text
    assert load_profile(p).replay.ignore == ("$.ts",)


def test_multiline_array_with_comments(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text(
        'name = "p"\n[service]\nport = 9000\ncommand = ["x"]\n\n[replay]\nignore = [\n'
        '  "$.a",  # volatile\n  "$.b",\n]\n'
    )
    add_ignore_rule(p, "$.c")
    assert "# volatile" in p.read_text()
    assert load_profile(p).replay.ignore == ("$.a", "$.b", "$.c")


@pytest.mark.parametrize("bad", ["", "$", "created_at", "$.a b", "header:", "$..x"])
def test_malformed_rules_are_refused_and_nothing_written(demo_profile: Path, bad: str) -> None:
    before = demo_profile.read_bytes()
    with pytest.raises(UsageError):
        add_ignore_rule(demo_profile, bad)
    assert demo_profile.read_bytes() == before


def test_check_rule_accepts_the_profile_forms() -> None:
    for ok in ("$.a", "$.items[*].id", "$.items[3]", "$.*.ts", "header:date"):
        assert check_ignore_rule(ok) == ok


def test_invalid_profile_is_not_made_worse(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    # port 0 is out of range: the profile is already invalid before the edit
    p.write_text('name = "p"\n[service]\nport = 0\ncommand = ["x"]\n[replay]\nignore = ["$.a"]\n')
    before = p.read_bytes()
    with pytest.raises(ConfigError):
        add_ignore_rule(p, "$.b")
    assert p.read_bytes() == before


def _ex(i: int, body: bytes) -> Exchange:
    return Exchange(
        id=f"ex-{i}",
        direction=Direction.INBOUND,
        source="inbound",
        request=Request("GET", f"/items/{i}", headers=(("host", "svc"),)),
        response=Response(200, (("content-type", "application/json"),), body),
        origin="test",
    )


def test_replace_recorded_response_keeps_the_rest(tmp_path: Path) -> None:
    d = tmp_path / "inbound"
    path = write_recording(
        d / "a.json",
        "inbound",
        Direction.INBOUND,
        [_ex(1, b'{"n":1}'), _ex(2, b'{"n":2}')],
        origin="record",
    )
    before = load_file(path).decoded
    found = find_exchange(d, "ex-2")
    assert found is not None and found[0] == path
    assert path.read_text().splitlines()[found[1] - 1].strip().startswith('"id": "ex-2"')
    replace_recorded_response(
        path, "ex-2", Response(201, (("content-type", "application/json"),), b'{"n":3}')
    )
    after = load_file(path).decoded
    assert after.header == before.header
    assert after.exchanges[0] == before.exchanges[0]
    assert after.exchanges[1].response is not None
    assert after.exchanges[1].response.status == 201
    assert after.exchanges[1].response.body == b'{"n":3}'
    assert after.exchanges[1].request == before.exchanges[1].request
    with pytest.raises(NotFoundError):
        replace_recorded_response(path, "nope", Response(200))
    assert find_exchange(d, "nope") is None

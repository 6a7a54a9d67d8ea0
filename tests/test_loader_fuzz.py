"""Loaders turn any input into a value or one clean error: never a traceback, never a hang.

Hypothesis feeds the profile loader and the recording loader mutated real files,
generated documents and hostile shapes (5,000-deep nesting, 5,000-digit numbers,
invalid UTF-8). Every outcome is a value or a ``ConfigError`` / ``RecordingError``
naming the file (and a line where one exists). The suite runs a bounded number of
examples; the long run (>= 5,000 each) is a documented command:

    DEVBOX_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_loader_fuzz.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devbox.core.profile import parse_profile
from devbox.core.recording import decode
from devbox.errors import ConfigError, RecordingError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("DEVBOX_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 150,  # the suite's run is the same every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEMO_PROFILE = (ROOT / "profiles" / "demo.toml").read_text(encoding="utf-8")
DEMO_RECORDING = next(sorted((ROOT / "mocks" / "demo").rglob("*.json")).__iter__()).read_bytes()


# ---------------------------------------------------------------- hostile shapes


def nested(depth: int, toml: bool) -> str:
    if toml:
        return "[" * depth + "]" * depth if depth % 2 else "{a=" * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth if depth % 2 else '{"a":' * depth + "1" + "}" * depth


def mutate(data: st.DataObject, text: str, alphabet: str, hostile: list[str]) -> str:
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(("insert", "delete", "hostile", "duplicate")))
        if op == "insert":
            text = text[:at] + data.draw(st.text(alphabet, max_size=12)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + data.draw(st.integers(1, 40)) :]
        elif op == "hostile":
            text = text[:at] + data.draw(st.sampled_from(hostile)) + text[at:]
        else:
            end = data.draw(st.integers(at, min(len(text), at + 200)))
            text = text[:end] + text[at:end] + text[end:]
    return text


TOML_HOSTILE = [
    nested(500, True),
    nested(5001, True),
    nested(501, True),
    "x = " + "9" * 5000 + "\n",
    'x = """' + "a" * 100,
    "x = 1e99999\n",
    "[service]\n[service]\n",
    "\x00",
    "port = -1\n",
    "port = 99999999999999999999\n",
    "quiet_ms = inf\n",
]
JSON_HOSTILE = [
    nested(5000, False),
    nested(5001, False),
    "9" * 5000,
    "-" + "9" * 5000,
    "1e99999",
    '"\\ud800"',
    "NaN",
    "\n}\n{\n",
    '{"devbox_recording": true, "format": 1}',
    "null",
    "[]",
]


def clean_config_error(exc: ConfigError, path: str) -> None:
    assert exc.file == path, exc.one_line()
    assert exc.message and "\n" not in exc.one_line()


# ---------------------------------------------------------------- profile


@FUZZ
@given(st.data())
def test_profile_loader_on_mutated_profiles(data: st.DataObject) -> None:
    text = mutate(data, DEMO_PROFILE, "[]{}=\"',.#\n 0123456789abcxyz-_", TOML_HOSTILE)
    check_profile(text)


toml_keys = st.sampled_from(
    ["name", "service", "port", "command", "build", "ready", "watch", "dependency", "kind",
     "upstream", "on_miss", "match", "replay", "redact", "env", "http", "timeout_s", "x"]
)  # fmt: skip
toml_scalars = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True).map(lambda f: repr(f).replace("inf", "inf")),
    st.text(max_size=8).map(json.dumps),
    st.booleans().map(lambda b: str(b).lower()),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(toml_keys, inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "[service]", "[[dependency]]", "[replay]", "[service.watch]"]),
            st.dictionaries(toml_keys, toml_values, max_size=4),
        ),
        max_size=4,
    )
)
def test_profile_loader_on_generated_documents(
    sections: list[tuple[str, dict[str, str]]],
) -> None:
    lines = []
    for header, keys in sections:
        lines.append(header)
        lines.extend(f"{k} = {v}" for k, v in keys.items())
    check_profile("\n".join(lines) + "\n")


@pytest.mark.parametrize("hostile", TOML_HOSTILE)
def test_profile_loader_on_each_hostile_shape(hostile: str) -> None:
    check_profile(f"x = {hostile}\n")
    check_profile(DEMO_PROFILE.replace('on_miss = "fail"', f"on_miss = {hostile}", 1))


def check_profile(text: str) -> None:
    path = ROOT / "profiles" / "fuzz.toml"  # parse_profile reads nothing from it
    try:
        parse_profile(text, path)
    except ConfigError as exc:
        clean_config_error(exc, str(path))


def test_a_value_nested_500_deep_names_its_line(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "deep.toml").write_text(
        "[service]\nport = 8080\ncommand = " + nested(501, True) + "\n", encoding="utf-8"
    )
    out = subprocess.run(
        [sys.executable, "-m", "devbox", "validate", "deep"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "deep.toml:3" in out.stderr and "nested" in out.stderr


# ---------------------------------------------------------------- recordings


@FUZZ
@given(st.data())
def test_recording_loader_on_mutated_recordings(data: st.DataObject) -> None:
    text = mutate(
        data, DEMO_RECORDING.decode("utf-8"), '{}[]":,\n 0123456789-.eEtruefalsn\\', JSON_HOSTILE
    )
    raw = text.encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[at:]
    check_recording(raw)


@FUZZ
@given(st.binary(max_size=300))
def test_recording_loader_on_bytes(raw: bytes) -> None:
    check_recording(raw)


@pytest.mark.parametrize("hostile", JSON_HOSTILE)
def test_recording_loader_on_each_hostile_shape(hostile: str) -> None:
    text = DEMO_RECORDING.decode("utf-8")
    status = '"status": 200'
    assert status in text
    check_recording(text.replace(status, f'"status": {hostile}', 1).encode())
    check_recording(text.replace(status, f'"status": 200, "x": {hostile}', 1).encode())
    check_recording(hostile.encode())


def check_recording(raw: bytes) -> None:
    try:
        decode(raw, "fuzz.json")
    except RecordingError as exc:
        clean_config_error(exc, "fuzz.json")


def test_invalid_utf8_names_the_line() -> None:
    raw = DEMO_RECORDING.replace(b'"status": 200', b'"status": 200, "x": "\xff"', 1)
    line = raw[: raw.index(b"\xff")].count(b"\n") + 1
    with pytest.raises(RecordingError) as err:
        decode(raw, "bad.json")
    assert err.value.line == line, err.value.one_line()


@pytest.mark.parametrize(("what", "value"), [("deep", nested(5000, False)), ("long", "9" * 5000)])
def test_cli_on_hostile_recordings_exits_2(tmp_path: Path, what: str, value: str) -> None:
    text = DEMO_RECORDING.decode("utf-8").replace('"status": 200', f'"status": {value}', 1)
    rec = tmp_path / "mocks" / "demo" / "inventory" / f"{what}.json"
    rec.parent.mkdir(parents=True)
    rec.write_text(text, encoding="utf-8")
    for argv in (["traffic", "ls", str(rec.parent)], ["mock", "--recording", str(rec)]):
        out = subprocess.run(
            [sys.executable, "-m", "devbox", *argv],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 2, (argv, out.stderr)
        assert "Traceback" not in out.stderr
        assert f"{what}.json:" in out.stderr, out.stderr

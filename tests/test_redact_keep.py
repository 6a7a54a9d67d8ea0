"""``[redact] keep``: fields whose values are written as they are, whatever a rule says.

A test user's password hash has to survive for a login to replay (Django checks it, and
its session holds an HMAC of it: ``tests/test_django_postgres.py``); before, the only way
was turning the by-name rule off for every field. Here: every place a name is read in an
HTTP exchange keeps that field and only that field, the profile refuses names it cannot
honour, and ``devbox import --profile`` writes the kept field to disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

from devbox.core.model import Request, Response
from devbox.core.profile import load_profile
from devbox.core.profile_model import RedactRules
from devbox.core.redact import Redactor
from devbox.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
PASSWORD = "Tr0ub4dor&3-horse"
TOKEN = "sk_live_51HqLmXabcDEF9876543210zyx"
KEEP = Redactor(RedactRules(keep=("password", "x-test-user")))
DEFAULT = Redactor()


def body_of(redactor: Redactor, body: bytes, ctype: str) -> bytes:
    return redactor.request(Request("POST", "/login", (), (("content-type", ctype),), body)).body


@pytest.mark.parametrize(
    "body",
    [
        # a body the text rules have nothing to look for in (the names-only path)...
        {"user": "ada", "password": PASSWORD},
        # ...and one they do, nested, beside a secret that is still redacted
        {"user": {"password": PASSWORD, "api_key": TOKEN, "note": f"key {TOKEN}"}},
        # case does not matter, and everything under the name is kept
        {"PassWord": {"old": PASSWORD, "new": [PASSWORD + "!"]}},
    ],
)
def test_a_kept_json_field_is_written_as_it_is(body: dict[str, object]) -> None:
    raw = json.dumps(body).encode()
    kept = body_of(KEEP, raw, "application/json")
    assert PASSWORD in kept.decode() and TOKEN not in kept.decode()
    assert PASSWORD not in body_of(DEFAULT, raw, "application/json").decode()


def test_kept_form_query_multipart_and_header_values() -> None:
    form = urlencode({"user": "ada", "password": PASSWORD, "token": TOKEN}).encode()
    out = body_of(KEEP, form, "application/x-www-form-urlencoded").decode()
    assert "password=Tr0ub4dor%263-horse" in out and TOKEN not in out
    req = KEEP.request(
        Request(
            "GET",
            "/x",
            (("password", PASSWORD), ("api_key", TOKEN)),
            (("X-Test-User", "ada:" + PASSWORD), ("X-Api-Key", TOKEN)),
        )
    )
    assert dict(req.query)["password"] == PASSWORD and dict(req.query)["api_key"] != TOKEN
    assert dict(req.headers)["X-Test-User"] == "ada:" + PASSWORD
    assert dict(req.headers)["X-Api-Key"] != TOKEN
    multipart = (
        b'--b\r\nContent-Disposition: form-data; name="password"\r\n\r\n'
        + PASSWORD.encode()
        + b'\r\n--b\r\nContent-Disposition: form-data; name="secret"\r\n\r\n'
        + TOKEN.encode()
        + b"\r\n--b--\r\n"
    )
    out = body_of(KEEP, multipart, "multipart/form-data; boundary=b").decode()
    assert PASSWORD in out and TOKEN not in out
    resp = KEEP.response(
        Response(200, (("content-type", "application/json"),), b'{"password":"x1"}')
    )
    assert resp.body == b'{"password":"x1"}'


def test_a_kept_name_keeps_wire_values_and_only_those() -> None:
    assert KEEP.value("password", PASSWORD) == PASSWORD
    assert KEEP.value("PASSWORD", TOKEN) == TOKEN
    assert KEEP.value("api_key", PASSWORD) != PASSWORD
    assert KEEP.value("note", TOKEN) != TOKEN  # by format, under any other name
    assert DEFAULT.value("password", PASSWORD) != PASSWORD


def profile_with(tmp_path: Path, redact: str) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    path = tmp_path / "profiles" / "p.toml"
    path.write_text(
        '[service]\nport = 8080\ncommand = ["python3", "app.py"]\n\n[redact]\n' + redact,
        encoding="utf-8",
    )
    return path


def test_the_profile_reads_keep_and_refuses_what_it_cannot_honour(tmp_path: Path) -> None:
    rules = load_profile(profile_with(tmp_path, 'keep = ["Password"]\n')).redact
    assert rules.keep == ("password",)
    for text, message in (
        ('keep = ["$.user.password"]\n', "not a field name: '$.user.password'"),
        ('keep = [" "]\n', "not a field name"),
        ('json = ["card"]\nkeep = ["card"]\n', "'card' is also a name [redact] redacts"),
        ('headers = ["X-Test"]\nkeep = ["x-test"]\n', "'x-test' is also a name"),
    ):
        with pytest.raises(ConfigError) as info:
            load_profile(profile_with(tmp_path, text))
        err = info.value
        assert err.field == "redact.keep" and message in err.message, err.message
        assert err.line == (6 if text.startswith("keep") else 7)


def test_devbox_import_writes_a_kept_field_and_redacts_the_rest(tmp_path: Path) -> None:
    profile_with(tmp_path, 'keep = ["password"]\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for profile in ("p", None):
        into = tmp_path / "mocks" / ("kept" if profile else "default")
        argv = [sys.executable, "-m", "devbox", "import", str(DATA / "chrome.har")]
        argv += ["--into", str(into)] + (["--profile", profile] if profile else [])
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
    kept = "\n".join(p.read_text() for p in (tmp_path / "mocks/kept").glob("*.json"))
    default = "\n".join(p.read_text() for p in (tmp_path / "mocks/default").glob("*.json"))
    assert PASSWORD in kept and PASSWORD not in default
    # the login's e-mail beside it, and every other secret, are redacted all the same
    for other in ("jane.doe+shop@example.com", "at_7Hq2LmX9vK4pW8rT1nB6cY3zD5fG0jS2"):
        assert other not in kept and other not in default
    # the firefox capture's fields are named current_password and new_password: not kept
    assert "correct horse battery staple" not in kept

"""A real Django 5 service on psycopg2 (``tests/data/django_flow``): its first requests
recorded through devbox's Postgres relay from a real server, redacted as ``devbox
record`` writes them, then run again, in a fresh process, against the mock made from the
recording.

The second run makes up everything afresh: the password's salt, the session key and its
signed data, every order's uuid4 key and creation time, the time "now" a session is
loaded as of. Before this round, the first ``create_user`` missed and every step after
it failed; a password hash and an e-mail reached the recording whole, in the SQL text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pg_support import WireServers, running_postgres

from devbox.core.profile_model import RedactRules
from devbox.wire.contract import Hit, Miss
from devbox.wire.files import value_redactor
from devbox.wire.registry import get

FLOW = Path(__file__).parent / "data" / "django_flow"


def django(port: int, step: str, user: str, password: str) -> Any:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(FLOW), os.environ.get("PYTHONPATH", "")]),
        "PGUSER": user,
        "PGPASSWORD": password,
    }
    done = subprocess.run(  # our own script, an argument list
        [sys.executable, str(FLOW / "flow.py"), str(port), step],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]) if step != "migrate" else None


def test_a_django_service_replays_with_fresh_values() -> None:
    with running_postgres() as pg:
        django(pg.port, "migrate", pg.user, pg.password)  # the schema, not recorded
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            recorded = django(port, "flow", pg.user, pg.password)
            stored = ws.stored_once(lambda s: sum("DELETE" in str(o) for o in s) >= 1, 20)
            stored = ws.stored_once(lambda s: len(s) > len(stored), 2)  # and what follows
        finally:
            ws.close()
    assert recorded == [
        ["user", "ada", "ada@example.com"],
        ["session", True],
        ["order", "book", {"qty": 1}, True],
        ["orders", [["book", "ada"], ["pen", "ada"]]],
        ["tag", "gift", True],
        ["paid", "paid"],
        ["qty 2", ["pen"]],
        ["deleted", 1],
        ["left", 1],
    ]
    kind, red = get("postgres"), value_redactor(None)
    written = [kind.redact(o, red) if o.get("type") == "query" else o for o in stored]
    text = json.dumps(written)
    assert "ada@example.com" not in text and "pbkdf2_sha256$" not in text
    mock = WireServers()
    try:
        mport = mock.mock(written)
        replayed = django(mport, "flow", "devbox", "whatever")
    finally:
        mock.close()
    misses = [f"{o.request}: {o.explanation}" for o in mock.outputs if isinstance(o, Miss)]
    assert misses == []
    # the e-mail comes back as the recording holds it: redacted
    assert replayed[0][2].startswith("<redacted:email:")
    assert replayed[1:] == recorded[1:]
    aside = [o for o in mock.outputs if isinstance(o, Hit) and "set aside" in o.request]
    assert len(aside) >= 6, [o.request for o in mock.outputs if isinstance(o, Hit)]


def test_a_login_replays_when_the_profile_keeps_the_password_hash() -> None:
    """Django's login checks the password against the stored hash, and its session holds
    an HMAC of that hash: a redacted hash logs nobody in. ``[redact] keep = ["password"]``
    writes the test user's hash as it is (and nothing else changes): the login replays."""
    with running_postgres() as pg:
        django(pg.port, "migrate", pg.user, pg.password)
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            recorded = django(port, "login", pg.user, pg.password)
            stored = ws.stored_once(lambda s: sum("DELETE" in str(o) for o in s) >= 1, 20)
            stored = ws.stored_once(lambda s: len(s) > len(stored), 2)
        finally:
            ws.close()
    assert recorded[1:4] == [["login", True], ["session", True], ["still logged in", True]]
    kind = get("postgres")
    results = {}
    for keep in ((), ("password",)):
        red = value_redactor(RedactRules(keep=keep))
        written = [kind.redact(o, red) if o.get("type") == "query" else o for o in stored]
        text = json.dumps(written)
        assert "ada@example.com" not in text  # whatever is kept, the rest is redacted
        assert ("pbkdf2_sha256$" in text) == bool(keep)
        mock = WireServers()
        try:
            mport = mock.mock(written, redact=red)
            results[keep] = django(mport, "login", "devbox", "whatever")
        finally:
            mock.close()
        misses = [f"{o.request}: {o.explanation}" for o in mock.outputs if isinstance(o, Miss)]
        assert misses == []
    # redacted, the hash matches no password. (The session's HMAC still matches the user
    # read back: the mock answers the placeholder this run wrote, as a server would.)
    assert results[()][1] == ["login", False]
    assert results[("password",)][1:] == recorded[1:]

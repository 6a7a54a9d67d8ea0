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
    # the e-mail is redacted in the recording, and comes back as this run wrote it
    assert replayed == recorded
    aside = [o for o in mock.outputs if isinstance(o, Hit) and "set aside" in o.request]
    assert len(aside) >= 6, [o.request for o in mock.outputs if isinstance(o, Hit)]


def recorded_flow(step: str) -> tuple[Any, list[dict[str, Any]]]:
    """``step`` run through the recording relay (after ``migrate`` on the real server)."""
    with running_postgres() as pg:
        django(pg.port, "migrate", pg.user, pg.password)
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            recorded = django(port, step, pg.user, pg.password)
            stored = ws.stored_once(lambda s: sum("django_session" in str(o) for o in s) >= 2, 20)
            stored = ws.stored_once(lambda s: len(s) > len(stored), 2)
        finally:
            ws.close()
    return recorded, stored


def replayed_flow(step: str, stored: list[dict[str, Any]], keep: tuple[str, ...]) -> Any:
    """``step`` against a mock of ``stored`` redacted as ``devbox record`` writes it with
    ``[redact] keep``; no miss."""
    kind, red = get("postgres"), value_redactor(RedactRules(keep=keep))
    written = [kind.redact(o, red) if o.get("type") == "query" else o for o in stored]
    text = json.dumps(written)
    assert "@example.com" not in text  # whatever is kept, the rest is redacted
    assert ("pbkdf2_sha256$" in text) == bool(keep)
    mock = WireServers()
    try:
        mport = mock.mock(written, redact=red)
        result = django(mport, step, "devbox", "whatever")
    finally:
        mock.close()
    misses = [f"{o.request}: {o.explanation}" for o in mock.outputs if isinstance(o, Miss)]
    assert misses == []
    return result


def test_a_login_replays_with_the_hash_this_run_wrote() -> None:
    """Django's login checks the password against the stored hash, and its session holds
    an HMAC of that hash. The hash is redacted in the recording; the mock remembers what
    this run's placeholder stood for and answers the user's row with the hash this run
    wrote, so a user created in the flow logs in with default redaction."""
    recorded, stored = recorded_flow("login")
    assert recorded[1:4] == [["login", True], ["session", True], ["still logged in", True]]
    assert replayed_flow("login", stored, ()) == recorded


def test_a_user_the_database_held_before_logs_in_when_its_hash_is_kept() -> None:
    """A user made before recording (a fixture) has a hash no run writes: redacted, it
    matches no password. ``[redact] keep = ["password"]`` writes it as it is."""
    recorded, stored = recorded_flow("existing")
    assert recorded == [["login", True], ["still logged in", True]]
    assert replayed_flow("existing", stored, ()) == [["login", False]]
    assert replayed_flow("existing", stored, ("password",)) == recorded

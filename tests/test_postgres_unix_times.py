"""A parameter the statement says is a Unix time (``to_timestamp($2)``) stands for any
other (``devbox.wire.postgres.clock_params``).

connect-pg-simple, the usual Postgres session store of Express, reads a session with
``… WHERE sid = $1 AND expire >= to_timestamp($2)``, ``$2`` the second it asks in, and
writes the session's expiry the same way. Replayed, every one of those statements
missed, so every request after a login found no session: the app logged its user out
on the next request. Recorded here from a real server with the real packages (Express 4,
express-session, connect-pg-simple 10, node-postgres), replayed in a fresh process.
"""

from __future__ import annotations

from pathlib import Path

from express_support import SEEN, express_flow
from pg_support import against_mock, as_written, relayed

from devbox.wire.contract import Miss
from devbox.wire.postgres.clock_params import MARK, timeless, unix_time_params
from devbox.wire.postgres.sql import normalise

SESSION_TABLE = (
    'CREATE TABLE "session" ("sid" varchar NOT NULL COLLATE "default", "sess" json NOT NULL,'
    ' "expire" timestamp(6) NOT NULL); ALTER TABLE "session" ADD CONSTRAINT "session_pkey"'
    ' PRIMARY KEY ("sid"); CREATE INDEX "IDX_session_expire" ON "session" ("expire")'
)


def test_the_parameters_a_statement_says_are_unix_times() -> None:
    read = 'SELECT sess FROM "session" WHERE sid = $1 AND expire >= to_timestamp($2)'
    assert unix_time_params(normalise(read)) == {2}
    write = (
        'INSERT INTO "session" (sess, expire, sid) SELECT $1, to_timestamp($2), $3'
        " ON CONFLICT (sid) DO UPDATE SET sess=$1, expire=to_timestamp($2) RETURNING sid"
    )
    assert unix_time_params(write) == {2}
    assert unix_time_params("DELETE FROM s WHERE t < TO_TIMESTAMP($1::float8 / 1000)") == {1}
    # a time the statement does not declare is no time: an id stays an id
    for sql in (
        "SELECT * FROM orders WHERE id = $1",
        "SELECT to_timestamp($1, $2)",  # text and a format
        "SELECT to_timestamp($1 + $2)",
        "SELECT to_timestamp(created) FROM t WHERE id = $1",
    ):
        assert unix_time_params(sql) == frozenset(), sql
    assert timeless(read, ("sid-1", "1765170000")) == ("sid-1", MARK)


def test_an_express_session_in_postgres_survives_replay(tmp_path: Path) -> None:
    flow = express_flow(tmp_path, "pg")
    with relayed(SESSION_TABLE) as (_pg, ws, url):
        recorded = flow(url)
        stored = as_written(ws.stored_once(lambda s: sum("to_timestamp" in str(o) for o in s) >= 4))
    assert recorded == SEEN
    # the statements asked with the second they ran in, and the session's expiry
    asked = [o for o in stored if "to_timestamp($2)" in str(o.get("sql"))]
    assert len(asked) >= 3
    replayed, outputs = against_mock(stored, flow)
    assert [o.explanation for o in outputs if isinstance(o, Miss)] == []
    assert replayed == SEEN


def test_every_express_session_id_is_redacted_under_its_name() -> None:
    """express-session's ids (uid-safe: 24 random bytes, base64url) under ``sid``: one in
    about 150 did not look random enough (``looks_random``'s entropy bar), went to disk
    whole and never bound on replay, so that run's session missed."""
    import base64
    import random

    from devbox.wire.files import default_redactor

    redact, rng = default_redactor(), random.Random(20261208)
    ids = [base64.urlsafe_b64encode(rng.randbytes(24)).decode().rstrip("=") for _ in range(5000)]
    ids.append("YFYrKDEiyXXlOLNhjH-P-rQyaBJnBtrm")  # one looks_random refused
    kept = [v for v in ids if not redact("sid", v).startswith("<redacted:token:")]
    assert kept == []
    assert redact("sid", "42") == "42" and redact("sid", "active") == "active"

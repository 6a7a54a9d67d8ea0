"""What Django on psycopg2 sends, recorded from a real server and replayed by the mock:
values written into the SQL text (psycopg2 sends no parameters), savepoints named after
the thread (``s<thread id>_x<n>``), a ``ROLLBACK`` after a failure.

Found by running a Django 5.2 service's first hour through devbox:
- a password hash, an e-mail and a GitHub token written into an ``INSERT``'s text reached
  the recording whole (only parameters were redacted);
- ``create_user`` (a fresh salt each run) missed;
- every nested ``transaction.atomic()`` missed: its savepoint's name holds the thread id;
- after any miss inside a transaction, the client's ``ROLLBACK`` missed too, and the
  connection answered 25P02 for good.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from pg_support import WireServers, relayed

from devbox.core.profile_model import RedactRules
from devbox.wire.contract import Hit, Miss
from devbox.wire.files import value_redactor
from devbox.wire.registry import get

SETUP = (
    'CREATE TABLE "auth_user" ("id" serial PRIMARY KEY, "password" text, "email" text,'
    ' "username" text UNIQUE, "api_token" text);'
    'CREATE TABLE "shop_order" ("id" serial PRIMARY KEY, "item" text)'
)
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # a GitHub token's format


def password_hash() -> str:
    """Django's format; a fresh salt every time, as ``make_password`` makes one."""
    return f"pbkdf2_sha256$1000000${secrets.token_urlsafe(16)}${secrets.token_urlsafe(32)}="


def signup(url: str, hashed: str) -> list[Any]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                'INSERT INTO "auth_user" ("password", "email", "username", "api_token")'
                ' VALUES (%s, %s, %s, %s) RETURNING "auth_user"."id"',
                (hashed, "ada@example.com", "ada", TOKEN),
            )
            uid = cur.fetchall()
            cur.execute(
                'SELECT "auth_user"."username" FROM "auth_user" WHERE "auth_user"."email" = %s',
                ("ada@example.com",),
            )
            return [uid, cur.fetchall()]
    finally:
        conn.close()


def redacted(
    stored: list[dict[str, Any]], rules: RedactRules | None = None
) -> list[dict[str, Any]]:
    """As ``devbox record`` writes them (``record.wire_relay``: the kind's redaction with
    the profile's rules, the default ones without)."""
    kind, red = get("postgres"), value_redactor(rules)
    return [kind.redact(o, red) if o.get("type") == "query" else o for o in stored]


def mocked(
    stored: list[dict[str, Any]], fn: Any, rules: RedactRules | None = None
) -> tuple[Any, list[Any]]:
    mock = WireServers()
    try:
        port = mock.mock(stored, value_redactor(rules))
        return fn(f"postgresql://devbox:whatever@127.0.0.1:{port}/app"), mock.outputs
    finally:
        mock.close()


def test_values_in_the_sql_text_are_redacted_and_a_fresh_hash_binds() -> None:
    first = password_hash()
    with relayed(SETUP) as (_pg, ws, url):
        recorded = signup(url, first)
        stored = redacted(ws.stored_once(lambda s: any(o.get("sql") == "COMMIT" for o in s)))
    text = json.dumps(stored)
    for secret in (first, TOKEN, "ada@example.com"):
        assert secret not in text, secret
    assert "<redacted:secret:" in text and "<redacted:email:" in text
    # the same values again find their placeholders; a fresh password hash (another
    # salt, as every create_user makes) is bound as a generated value
    for hashed in (first, password_hash()):
        replayed, outputs = mocked(stored, lambda u, h=hashed: signup(u, h))
        assert replayed == recorded == [[(1,)], [("ada",)]]
        assert not [o for o in outputs if isinstance(o, Miss)]
        shown = " ".join(o.request for o in outputs if isinstance(o, Hit))
        assert TOKEN not in shown and hashed not in shown  # nor in what the mock reports


def test_a_kept_password_hash_binds_as_a_fresh_one() -> None:
    """With the by-name rule off (``[redact] disable = ["secret-field"]``, so that Django's
    logins, which check the hash, replay), the hash is kept: it was redacted all the
    same. A fresh hash (another salt) is a generated value by its format."""
    first = password_hash()
    with relayed(SETUP) as (_pg, ws, url):
        recorded = signup(url, first)
        raw = ws.stored_once(lambda s: any(o.get("sql") == "COMMIT" for o in s))
    stored = redacted(raw, RedactRules(disable=("secret-field",)))
    text = json.dumps(stored)
    assert first in text and "ada@example.com" not in text
    replayed, outputs = mocked(
        stored, lambda u: signup(u, password_hash()), RedactRules(disable=("secret-field",))
    )
    assert replayed == recorded
    assert not [o for o in outputs if isinstance(o, Miss)]


def nested(url: str, thread: int) -> list[Any]:
    """Django's ``atomic()`` inside ``atomic()``: savepoints named after the thread's id
    (another in every process) and a counter."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SAVEPOINT "s{thread}_x1"')
            cur.execute('INSERT INTO "shop_order" ("item") VALUES (%s) RETURNING "id"', ("pen",))
            row: list[Any] = cur.fetchall()
            cur.execute(f'RELEASE SAVEPOINT "s{thread}_x1"')
            cur.execute(f'SAVEPOINT "s{thread}_x2"')
            cur.execute(f'ROLLBACK TO SAVEPOINT "s{thread}_x2"')
            cur.execute(f'RELEASE SAVEPOINT "s{thread}_x2"')
        return row
    finally:
        conn.close()


def test_savepoints_named_after_another_thread() -> None:
    with relayed(SETUP) as (_pg, ws, url):
        recorded = nested(url, 140531781859008)
        stored = ws.stored_once(lambda s: any(o.get("sql") == "COMMIT" for o in s))
    replayed, outputs = mocked(stored, lambda u: nested(u, 139822671058496))
    assert replayed == recorded == [(1,)]
    assert not [o for o in outputs if isinstance(o, Miss)]


def after_a_failure(url: str, fail: bool) -> list[Any]:
    conn = psycopg2.connect(url)
    out: list[Any] = []
    try:
        cur = conn.cursor()
        if fail:
            with pytest.raises(psycopg2.Error):
                cur.execute('SELECT "item" FROM "shop_order" WHERE "id" = 99')  # a miss
            conn.rollback()  # never recorded
        cur.execute('SELECT count(*) FROM "shop_order"')
        out.append(cur.fetchall())
        conn.commit()
    finally:
        conn.close()
    return out


def test_rollback_the_recording_lacks_ends_the_failed_transaction() -> None:
    with relayed(SETUP) as (_pg, ws, url):
        recorded = after_a_failure(url, False)
        stored = ws.stored_once(lambda s: any(o.get("sql") == "COMMIT" for o in s))
    replayed, outputs = mocked(stored, lambda u: after_a_failure(u, True))
    assert replayed == recorded == [[(0,)]]
    assert [o.request for o in outputs if isinstance(o, Miss)] == [
        'SELECT "item" FROM "shop_order" WHERE "id" = 99'
    ]


SESSIONS = (
    'CREATE TABLE "django_session" ("session_key" varchar(40) PRIMARY KEY,'
    ' "session_data" text NOT NULL, "expire_date" timestamptz NOT NULL)'
)


def session_key() -> str:
    """``get_random_string(32)`` of Django's session backends (lower case and digits)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        key = "".join(secrets.choice(alphabet) for _ in range(32))
        if sum(c.isdigit() for c in key) >= 4 and sum(c.isalpha() for c in key) >= 4:
            return key


def payload(data: dict[str, Any]) -> str:
    """A session's data as Django signs it: compact JSON, urlsafe base64, no padding."""
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(payload: str) -> str:
    """``signing.dumps``: the payload, the second it was signed in base 62, an HMAC."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    n, stamp = int(time.time()), ""
    while n:
        n, r = divmod(n, 62)
        stamp = digits[r] + stamp
    return f"{payload}:{stamp}:{secrets.token_urlsafe(32)}"


def login(url: str) -> list[Any]:
    """Django's database session backend on a login: a fresh key checked free, the
    session written, then loaded as long as it has not expired (as of now)."""
    key, now = session_key(), datetime.now(UTC)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(
            'SELECT 1 AS "a" FROM "django_session" WHERE "django_session"."session_key" = %s'
            " LIMIT 1",
            (key,),
        )
        free = cur.fetchall()
        cur.execute(
            'INSERT INTO "django_session" ("session_key", "session_data", "expire_date")'
            " VALUES (%s, %s, %s)",
            (key, signed(payload({"_auth_user_id": "1"})), now + timedelta(days=14)),
        )
        cur.execute(
            'SELECT "django_session"."session_data" FROM "django_session" WHERE'
            ' ("django_session"."expire_date" > %s AND "django_session"."session_key" = %s)'
            " LIMIT 21",
            (datetime.now(UTC), key),
        )
        return [free, cur.rowcount, len(cur.fetchall())]
    finally:
        conn.close()


def test_a_database_session_is_created_and_loaded_with_fresh_values() -> None:
    with relayed(SESSIONS) as (_pg, ws, url):
        recorded = login(url)
        stored = ws.stored_once(lambda s: sum("session_data" in str(o) for o in s) >= 2)
    time.sleep(1.1)  # another second to sign in: the signed data differs in its stamp too
    replayed, outputs = mocked(stored, login)
    assert replayed == recorded == [[], 1, 1]
    assert not [o for o in outputs if isinstance(o, Miss)]


def requests(url: str) -> list[Any]:
    """Three requests of one session: each saves the cart, the next loads it as of now."""
    key = session_key()
    conn = psycopg2.connect(url)
    conn.autocommit = True
    carts = []
    try:
        cur = conn.cursor()
        cur.execute(
            'INSERT INTO "django_session" ("session_key", "session_data", "expire_date")'
            " VALUES (%s, %s, %s)",
            (key, signed(payload({})), datetime.now(UTC) + timedelta(days=14)),
        )
        for item in ("a", "b", "c"):
            cur.execute(
                'UPDATE "django_session" SET "session_data" = %s, "expire_date" = %s'
                ' WHERE "django_session"."session_key" = %s',
                (signed(payload({"cart": item})), datetime.now(UTC) + timedelta(days=14), key),
            )
            cur.execute(
                'SELECT "django_session"."session_data" FROM "django_session" WHERE'
                ' ("django_session"."expire_date" > %s AND "django_session"."session_key" = %s)',
                (datetime.now(UTC), key),
            )
            carts.append(cur.fetchall()[0][0].split(":")[0])
    finally:
        conn.close()
    return carts


def test_each_load_as_of_now_gets_its_own_recorded_answer() -> None:
    """Every load differs from every recorded one only in its clock reading: the first
    recorded load answered all three (the cart as after the first request), silently."""
    with relayed(SESSIONS) as (_pg, ws, url):
        recorded = requests(url)
        stored = ws.stored_once(lambda s: sum("SELECT" in str(o) for o in s) >= 3)
    time.sleep(1.1)  # signed in another second: the stamps differ (an empty session's too)
    replayed, outputs = mocked(stored, requests)
    assert replayed == recorded == [payload({"cart": item}) for item in "abc"]
    assert not [o for o in outputs if isinstance(o, Miss)]

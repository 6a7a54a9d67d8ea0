"""Values a client wrote into the SQL text (psycopg2, Django, SQLAlchemy on it), redacted
by the column they are for (``devbox.wire.postgres.redaction.redact_literals``).

An adversarial run over Django's SQL found a password hash left whole in a bulk update's
``CASE … THEN``, an ``INSERT … SELECT``, after an ``ARRAY[…]`` (whose commas shifted
every later column by one) and in a ``U&'…'`` constant, and session keys whole in
``session_key IN (…)``. Redaction must not change the statement otherwise: the mock
redacts the live text the same way and matches it exactly.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pglast import parser

from devbox.wire.files import value_redactor
from devbox.wire.postgres.redaction import redact_literals

REDACT = value_redactor(None)
HASH = "pbkdf2_sha256$1000000$Zx9aQabcdefgh$Abc+def/ghiJKLmnop="
KEY = "njlxqfzfayqxrin9t29i3czblk64sb5y"


def test_each_place_a_value_goes_is_named_by_its_column() -> None:
    cases = {
        # Django's create_user, the e-mail by its format
        f'INSERT INTO "auth_user" ("password", "email", "username") VALUES (\'{HASH}\','
        " 'ada@example.com', 'ada')": ["ada"],
        # bulk_update
        f'UPDATE "auth_user" SET "password" = CASE WHEN ("id" = 1) THEN \'{HASH}\''
        f" ELSE 'x{HASH}' END WHERE \"id\" IN (1, 2)": [],
        # a logout, a cycle_key
        f"DELETE FROM \"django_session\" WHERE \"session_key\" IN ('{KEY}', 'k2')": [],
        f"INSERT INTO t (tags, password, note) VALUES (ARRAY['a','b'], '{HASH}', 'plain')": [
            "a",
            "b",
            "plain",
        ],
        f"INSERT INTO t (name, password) SELECT 'bob', '{HASH}' WHERE NOT EXISTS"
        " (SELECT 1 FROM t WHERE name = 'bob')": ["bob", "bob"],
        f"INSERT INTO t (password) VALUES (U&'{HASH}')": [],
        f"SELECT 1 FROM t WHERE password <> '{HASH}' AND name = 'ada' AND token LIKE 'ab%'": [
            "ada"
        ],
    }
    for sql, kept in cases.items():
        out = redact_literals(sql, REDACT)
        assert HASH not in out and KEY not in out and "ada@example.com" not in out, out
        constants = [
            out[t.start : t.end + 1] for t in parser.scan(out) if t.name in ("SCONST", "USCONST")
        ]
        plain = [c.strip("'") for c in constants if "<redacted:" not in c]
        assert plain == kept, (sql, out)


def test_quoting_comments_and_dollars_are_kept() -> None:
    sql = "SELECT 'it''s', E'a\\'b', $$dollar$$ -- a comment with 'quotes'\n; SELECT 'x'"
    assert redact_literals(sql, REDACT) == sql
    assert redact_literals("SELECT 'unterminated", REDACT) == "SELECT 'unterminated"


_pieces = st.sampled_from(
    [
        "INSERT INTO t (a, password) VALUES ",
        "(",
        ")",
        "[",
        "]",
        ", ",
        "'x'",
        f"'{HASH}'",
        "E'a\\'b'",
        "U&'u'",
        "$$d$$",
        " = ",
        " IN ",
        " CASE WHEN ",
        " THEN ",
        " ELSE ",
        " END ",
        " SELECT ",
        " WHERE ",
        "password",
        '"token"',
        ";",
        "-- c\n",
        "/* c */",
        "'",
        "\ud800",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=30))
def test_any_text_keeps_its_tokens(pieces: list[str]) -> None:
    """Whatever the text, no exception, and what the lexer reads stays the same tokens."""
    sql = "".join(pieces)
    out = redact_literals(sql, REDACT)
    try:
        before = [t.name for t in parser.scan(sql)]
    except Exception:
        return  # unreadable: redacted by format, whole
    assert [t.name for t in parser.scan(out)] == before

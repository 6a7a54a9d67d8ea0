"""A LATIN1 client's text value recorded in binary format (not UTF-8: stored as its bytes,
``{"hex": ...}``) and asked for in text: a text type's binary form is its text, so the
server sends a text client the same bytes. The mock sent the stored hex as ``\\x...``
text (``caf\\xe9`` came out as ``\\x636166e9``).

Recorded through devbox's relay from a real server (a UTF8 database, a LATIN1 client:
the server converts) by psycopg's binary cursor; replayed to psycopg's text cursor (the
extended protocol, text results) and to psql (a simple query), each compared with what
the real server gives that client.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pg_support import mocked, relayed

pytestmark = pytest.mark.slow

SETUP = """
CREATE TABLE items (id int PRIMARY KEY, name text, v varchar(10));
INSERT INTO items VALUES (1, 'café', 'naïve'), (2, 'plain', 'x');
"""
PARAMS = "SELECT name, v FROM items WHERE name = %s"
# no parameters: psql sends the very SQL as a simple query
LITERAL = "SELECT id, name, v FROM items ORDER BY id"


def psycopg_client(url: str, *, binary: bool) -> list[Any]:
    with psycopg.connect(url, client_encoding="latin1", autocommit=True) as c:
        with c.cursor(binary=binary) as cur:
            cur.execute(PARAMS, ("café",))
            first = cur.fetchall()
            cur.execute(LITERAL)
            return [first, cur.fetchall()]


def psql_client(url: str) -> bytes:
    done = subprocess.run(
        ["psql", url, "-X", "-A", "-t", "-c", LITERAL],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PGCLIENTENCODING": "LATIN1", "PGCONNECT_TIMEOUT": "10"},
        check=False,
    )
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The binary cursor through the relay; what the text clients get from the server."""
    with relayed(SETUP) as (pg, ws, url):
        live = {
            "binary": psycopg_client(url, binary=True),
            "text": psycopg_client(pg.url(), binary=False),
            "psql": psql_client(pg.url()),
        }
        stored = ws.stored_once(lambda s: sum(o.get("type") == "query" for o in s) >= 2)
        yield live, stored


def test_the_binary_recording_keeps_the_latin1_bytes(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    assert live["binary"] == live["text"]
    assert live["psql"] == "1|café|naïve\n2|plain|x\n".encode("latin-1")
    rows = next(o for o in stored if o.get("sql") == PARAMS.replace("%s", "$1"))
    assert rows["results"][0]["columns"][0]["format"] == "binary"
    assert rows["results"][0]["rows"][0] == [{"hex": "636166e9"}, {"hex": "6e61ef7665"}]


def test_a_latin1_value_recorded_in_binary_is_sent_to_a_text_client_as_its_bytes(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    with mocked(stored) as url:
        assert psycopg_client(url, binary=False) == live["text"]
        assert psycopg_client(url, binary=True) == live["binary"]
        assert psql_client(url) == live["psql"]

"""A fastpath FunctionCall (libpq's large objects: ruby-pg's ``lo_creat``, PHP's
``pg_lo_create``, psycopg2's ``lobject``) is refused with an error and the connection
goes on. The mock answered the error and then waited for a Sync that never comes: the
client hung until it was killed."""

from __future__ import annotations

import psycopg2
from pg_support import WireServers, relayed


def test_a_function_call_is_refused_and_the_connection_goes_on() -> None:
    with relayed("CREATE TABLE t (n int)") as (_pg, ws, url):
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.lobject().close()  # libpq looks up the functions' oids first: recorded
        conn.rollback()
        conn.close()
        stored = ws.stored_once(lambda s: any(o.get("sql") == "ROLLBACK" for o in s))
    mock = WireServers()
    try:
        port = mock.mock(stored)
        conn = psycopg2.connect(
            f"postgresql://devbox:whatever@127.0.0.1:{port}/app", options="-c statement_timeout=0"
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            try:
                conn.lobject()
                said = "created"
            except psycopg2.Error as exc:
                said = str(exc)
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                after = cur.fetchall()
        finally:
            conn.close()
    finally:
        mock.close()
    assert "FunctionCall (fastpath) not supported" in said, said
    assert after == [(1,)]

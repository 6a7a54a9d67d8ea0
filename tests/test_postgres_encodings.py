"""Clients whose ``client_encoding`` is not UTF-8 (LATIN1), recorded through devbox's relay
against a real PostgreSQL server (a UTF8 database: the server converts, so the client's
SQL, parameters, rows, column names, errors and notifications are LATIN1 bytes on the
wire), written to a recording file as ``devbox record`` writes it, read back, and
replayed by the mock: every client must get what the server sent it, byte for byte."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_support import WireServers, running_postgres

from devbox.wire import files, objects
from devbox.wire.registry import get

pytestmark = pytest.mark.slow

SETUP = """
CREATE TABLE items (id int PRIMARY KEY, name text, v varchar(10));
INSERT INTO items VALUES (1, 'café', 'naïve'), (2, 'plain', 'x');
"""
LITERAL = "SELECT id, v AS \"naïve\" FROM items WHERE name = 'café'"
PSQL_SQL = "SELECT id, name, v FROM items WHERE name <> 'plaïn' ORDER BY id"


def latin1_psycopg(url: str) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(url, client_encoding="latin1", autocommit=True) as c:
        # a non-UTF-8 byte in the SQL (and in a column name of its answer)
        cur = c.execute(LITERAL)
        out.append([[d.name for d in cur.description or []], cur.fetchall()])
        # ... in a parameter, text and binary, and in binary-format text results
        for binary in (False, True):
            with c.cursor(binary=binary) as cur:
                cur.execute("SELECT name, v FROM items WHERE name = %s", ("café",))
                out.append([binary, cur.fetchall()])
        # ... in the server's error message
        try:
            c.execute("SELECT 'crème'::int")
        except psycopg.errors.InvalidTextRepresentation as exc:
            out.append([exc.sqlstate, exc.diag.message_primary])
        # ... in a notification's payload (the session's own: sent with the NOTIFY)
        got: list[str] = []
        c.add_notify_handler(lambda n: got.append(n.payload))
        c.execute("LISTEN jobs")
        c.execute("NOTIFY jobs, 'prêt'")
        c.execute("SELECT 2").fetchall()
        out.append(got)
        # the connection is still there
        out.append(c.execute("SELECT 1").fetchall())
    return out


def latin1_psql(url: str) -> bytes:
    """psql's output as bytes: what the server sent, in LATIN1 (simple query protocol)."""
    done = subprocess.run(
        ["psql", url, "-X", "-A", "-t", "-c", PSQL_SQL.encode("latin-1")],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PGCLIENTENCODING": "LATIN1", "PGCONNECT_TIMEOUT": "10"},
        check=False,
    )
    return done.stdout + done.stderr


def scenario(url: str) -> dict[str, Any]:
    return {"psycopg": latin1_psycopg(url), "psql": latin1_psql(url)}


def _relay_writing_to(ws: WireServers, path: Path, upstream: tuple[str, int]) -> int:
    """devbox record's relay whose sink writes the recording file as ``devbox record``
    does (redacted, then ``ObjectWriter``): a store that fails fails inside the relay."""
    kind = get("postgres")
    writer = files.ObjectWriter(path, "postgres", "db")

    def sink(stored: list[dict[str, Any]]) -> None:
        for obj in stored:
            writer.append(kind.redact({"connection": 1, **obj}, files.value_redactor(None)))
            ws.stored.append(obj)

    return ws.relay(upstream, sink)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Path]]:
    directory = tmp_path_factory.mktemp("latin1")
    with running_postgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as c:
            c.execute(SETUP)
        ws = WireServers()
        try:
            port = _relay_writing_to(ws, directory / "recording-1.json", (pg.host, pg.port))
            live = scenario(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app")
            deadline = time.monotonic() + 10
            # the relay stores a connection's last objects when it sees the close
            while time.monotonic() < deadline and not any(
                "plaïn".encode("latin-1").decode("utf-8", "surrogateescape") in str(o.get("sql"))
                for o in ws.stored
            ):
                time.sleep(0.05)
            yield live, directory
        finally:
            ws.close()


def test_the_live_clients_got_latin1_from_the_server(
    recorded: tuple[dict[str, Any], Path],
) -> None:
    live, _ = recorded
    assert live["psycopg"] == [
        [["id", "naïve"], [(1, "naïve")]],
        [False, [("café", "naïve")]],
        [True, [("café", "naïve")]],
        ["22P02", 'invalid input syntax for type integer: "crème"'],
        ["prêt"],
        [(1,)],
    ]
    assert live["psql"] == "1|café|naïve\n2|plain|x\n".encode("latin-1")


def test_the_recording_is_readable_json_and_loads_back_every_query(
    recorded: tuple[dict[str, Any], Path],
) -> None:
    _, directory = recorded
    raw = (directory / "recording-1.json").read_bytes()
    raw.decode("utf-8")  # JSON text, as every recording
    # SQL that is not UTF-8 is stored escaped, readable as the SQL it was
    assert b"WHERE name = 'caf\\\\xe9'" in raw
    stored = [obj for _f, _l, obj in files.read_stored(directory, "postgres")]
    sqls = {o["sql"] for o in stored if o["type"] == "query"}
    for sql in (LITERAL, PSQL_SQL, "SELECT 'crème'::int", "NOTIFY jobs, 'prêt'", "SELECT 1"):
        # loaded back as the relay read it: the LATIN1 bytes, decoded as the mock decodes
        assert sql.encode("latin-1").decode("utf-8", "surrogateescape") in sqls, sql
    binary = next(
        o
        for o in stored
        if o.get("sql", "").startswith("SELECT name, v FROM items WHERE name = $1")
        and o["results"][0]["columns"][0]["format"] == "binary"
    )
    # a binary text value that is not UTF-8 is kept as its bytes, not as text
    assert binary["results"][0]["rows"] == [[{"hex": "636166e9"}, {"hex": "6e61ef7665"}]]


def test_the_mock_answers_latin1_clients_byte_for_byte(
    recorded: tuple[dict[str, Any], Path],
) -> None:
    live, directory = recorded
    index = get("postgres").load(files.read_stored(directory, "postgres"))
    ws = WireServers()
    try:
        port = ws.serve(index)
        replayed = scenario(f"postgresql://devbox:any-password@127.0.0.1:{port}/app")
    finally:
        ws.close()
    assert replayed["psql"] == live["psql"]
    assert replayed["psycopg"] == live["psycopg"]
    assert not [o for o in ws.outputs if type(o).__name__ == "Miss"]


def test_strings_that_are_not_utf8_round_trip_through_a_recording_file() -> None:
    raw = b"SELECT 'caf\xe9', '\\x41', 'd\xe9j\\\\\xe0', '\xc3\xa9'"
    text = raw.decode("utf-8", "surrogateescape")
    obj = {"sql": text, "rows": [[text, {"hex": "e9"}, None]], "startup": {text: text}}
    data = objects.header_text("postgres", "db", "now") + objects.object_text(obj)
    data.decode("utf-8")
    loaded = objects.decode(data, "f").objects[0][1]
    assert loaded == obj
    assert loaded["sql"].encode("utf-8", "surrogateescape") == raw


def test_recordings_without_escapes_load_as_before() -> None:
    data = (
        objects.header_text("postgres", "db", "now")
        + b'{\n  "sql": "SELECT \'\\\\xe9\'",\n  "v": {"hex": "e9"},\n'
        + b'  "j": "{\\"$bytes\\": \\"x\\"}"\n}\n'
    )
    loaded = objects.decode(data, "f").objects[0][1]
    assert loaded == {"sql": "SELECT '\\xe9'", "v": {"hex": "e9"}, "j": '{"$bytes": "x"}'}

"""LISTEN/NOTIFY: notifications recorded through devbox's relay from a real PostgreSQL
server, with the query each one followed and the time since, then replayed by the mock
(the server gone) to a psycopg client that listens: same channels, same payloads, same
order, including a session's own NOTIFY delivered with its query's answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pg_support import WireServers, running_postgres

from devbox.wire import tcp
from devbox.wire.contract import MockOptions
from devbox.wire.registry import get


def listen_scenario(url: str) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    with (
        psycopg.connect(url, autocommit=True) as listener,
        psycopg.connect(url, autocommit=True) as sender,
    ):
        listener.execute("LISTEN jobs")
        sender.execute("NOTIFY jobs, 'job 42'")
        sender.execute("SELECT pg_notify('jobs', 'job 43')")
        got += [(n.channel, n.payload) for n in listener.notifies(timeout=10, stop_after=2)]
        # the listener's own NOTIFY: the server sends it before that query's ReadyForQuery
        # (psycopg keeps it for notifies())
        listener.execute("NOTIFY jobs, 'own'")
        got += [(n.channel, n.payload) for n in listener.notifies(timeout=10, stop_after=1)]
    return got


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[list[tuple[str, str]], list[dict[str, Any]]]]:
    with running_postgres() as pg:
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            got = listen_scenario(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _done(ws.stored):
                time.sleep(0.05)
            yield got, list(ws.stored)
        finally:
            ws.close()


def _done(stored: list[dict[str, Any]]) -> bool:
    notes = [o for o in stored if o["type"] == "notification"]
    own = any(o.get("sql", "").startswith("NOTIFY jobs, 'own'") for o in stored)
    return len(notes) >= 3 and own


def test_notifications_are_stored_readably_after_the_query_they_followed(
    recorded: tuple[list[tuple[str, str]], list[dict[str, Any]]],
) -> None:
    got, stored = recorded
    assert got == [("jobs", "job 42"), ("jobs", "job 43"), ("jobs", "own")]
    notes = [o for o in stored if o["type"] == "notification"]
    assert [(n["channel"], n["payload"]) for n in notes] == got
    listen = next(o for o in stored if o.get("sql") == "LISTEN jobs")
    own = next(o for o in stored if o.get("sql") == "NOTIFY jobs, 'own'")
    assert [n["conn"] for n in notes] == [listen["conn"]] * 3
    # the two from the other session follow the LISTEN, the own one its NOTIFY
    assert [n["after_seq"] for n in notes] == [listen["seq"], listen["seq"], own["seq"]]
    assert notes[0]["after_ms"] > 0 and notes[2]["after_ms"] == 0
    assert all(isinstance(n["pid"], int) and n["pid"] > 0 for n in notes)


def test_the_mock_replays_the_notifications_to_a_listener(
    recorded: tuple[list[tuple[str, str]], list[dict[str, Any]]],
) -> None:
    got, stored = recorded
    ws = WireServers()
    try:
        port = ws.mock(stored)  # the stream loop
        assert listen_scenario(f"postgresql://devbox:x@127.0.0.1:{port}/app") == got
    finally:
        ws.close()
    assert not [o for o in ws.outputs if type(o).__name__ == "Miss"]


def test_a_sessions_own_notification_comes_before_its_ready_for_query(
    recorded: tuple[list[tuple[str, str]], list[dict[str, Any]]],
) -> None:
    """A client that polls once right after its NOTIFY (PHP's ``pg_get_notify``) finds it:
    the mock sent it after ReadyForQuery, in a write of its own, and the poll raced it."""
    _got, stored = recorded
    ws = WireServers()
    try:
        port = ws.mock(stored)
        with psycopg.connect(f"postgresql://devbox:x@127.0.0.1:{port}/app", autocommit=True) as c:
            c.pgconn.exec_(b"LISTEN jobs")
            c.pgconn.exec_(b"NOTIFY jobs, 'own'")
            heard = []
            while (n := c.pgconn.notifies()) is not None:  # what arrived with the answers
                heard.append(n.extra)
    finally:
        ws.close()
    assert b"own" in heard, heard


def test_the_fast_loop_replays_them_too(
    recorded: tuple[list[tuple[str, str]], list[dict[str, Any]]],
) -> None:
    """The Protocol loop ``devbox mock`` serves wire kinds with."""
    got, stored = recorded
    kind = get("postgres")
    index = kind.load([("rec.json", i + 2, obj) for i, obj in enumerate(stored)])
    ws = WireServers()
    try:

        async def start() -> int:
            server = await tcp.start_mock_server(
                lambda: kind.mock_connection(index, MockOptions("db"))
            )
            ws.servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        port = int(ws.call(start()))
        assert listen_scenario(f"postgresql://devbox:x@127.0.0.1:{port}/app") == got
    finally:
        ws.close()


def test_a_notification_without_its_fields_names_file_line_and_field() -> None:
    from devbox.errors import ConfigError

    bad = {"type": "notification", "conn": 1, "after_seq": 1, "payload": "x"}
    with pytest.raises(ConfigError) as info:
        get("postgres").load([("rec.json", 7, bad)])
    assert info.value.field == "channel" and info.value.line == 7

"""Session-level behaviours with real clients, recorded through the relay from a real
PostgreSQL server and replayed by the mock fleet (``devbox mock``'s own loop) with the
server gone: psycopg's pipeline mode (pipelined Parse/Bind/Execute with Flush and one
Sync), a ``CancelRequest`` (psycopg's ``cancel_safe``), and a miss reported through the
fleet (``misses()``, ``MockMiss`` events) naming the nearest recorded query."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_support import WireServers, running_postgres

from devbox.core.events import Event, MockMiss
from devbox.core.profile import load_profile
from devbox.mock.fleet import MockFleet
from devbox.wire import files

QUERY = "SELECT n, n * n AS sq FROM generate_series(1, %s) n"


def scenario(url: str) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(url, autocommit=True) as c:
        # pipeline mode: several queries sent before any answer is read
        with c.pipeline():
            curs = [c.execute(QUERY, (n,)) for n in (1, 2, 3)]
            label = c.execute("SELECT %s::text AS label", ("pipelined",))
        out.append([cur.fetchall() for cur in curs])
        out.append(label.fetchone())
        # a cancel request on its own connection; nothing runs, the session goes on
        c.cancel_safe(timeout=10)
        out.append(c.execute(QUERY, (2,)).fetchall())
    return out


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[list[Any], list[dict[str, Any]]]]:
    with running_postgres() as pg:
        ws = WireServers()
        try:
            port = ws.relay((pg.host, pg.port))
            results = scenario(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/app")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                o.get("sql") == QUERY.replace("%s", "$1")
                and isinstance(seq := o.get("seq"), int)
                and seq >= 5
                for o in ws.stored
            ):
                time.sleep(0.05)
            time.sleep(0.2)  # the relay stores the connection's last objects at its close
            yield results, list(ws.stored)
        finally:
            ws.close()


def _fleet(
    tmp_path: Path, stored: list[dict[str, Any]], events: list[Event] | None = None
) -> MockFleet:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/pg.toml").write_text(
        'name = "pg"\n[service]\nname = "svc"\nport = 1\ncommand = ["true"]\n'
        '[[dependency]]\nname = "db"\nkind = "postgres"\n'
        'upstream = "postgresql://devbox@127.0.0.1:5432/app"\nenv = "DATABASE_URL"\n'
    )
    profile = load_profile(tmp_path / "profiles/pg.toml")
    writer = files.ObjectWriter(
        profile.recordings_dir("db") / "recording-20260101T000000Z.json", "postgres", "db"
    )
    for obj in stored:
        writer.append(obj)
    writer.close()
    return MockFleet(profile, ports={"db": 0}, on_event=None if events is None else events.append)


def test_pipeline_mode_and_a_cancel_replay_from_the_fleet(
    recorded: tuple[list[Any], list[dict[str, Any]]], tmp_path: Path
) -> None:
    results, stored = recorded
    assert results[0] == [[(1, 1)], [(1, 1), (2, 4)], [(1, 1), (2, 4), (3, 9)]]
    with _fleet(tmp_path, stored) as fleet:
        url = fleet.urls()["DATABASE_URL"].replace("devbox@", "devbox:any@")
        assert scenario(url) == results
        assert fleet.misses("db") == []


def test_a_miss_shows_in_the_fleet_and_its_events(
    recorded: tuple[list[Any], list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, stored = recorded
    events: list[Event] = []  # appended from the fleet's thread; list.append is atomic
    with _fleet(tmp_path, stored, events) as fleet:
        url = fleet.urls()["DATABASE_URL"].replace("devbox@", "devbox:any@")
        with psycopg.connect(url, autocommit=True) as c:
            with pytest.raises(psycopg.DatabaseError) as info:
                c.execute(QUERY, (7,))
            assert info.value.sqlstate == "DX404"
            assert "$1 = '7' here, recorded" in str(info.value)
            # the session goes on: a recorded query still answers
            assert c.execute(QUERY, (1,)).fetchall() == [(1, 1)]
        misses = fleet.misses("db")
        assert [m.target for m in misses] == [
            "SELECT n, n * n AS sq FROM generate_series(1, $1) n [$1=7]"
        ]
        assert "recorded" in misses[0].explanation
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(isinstance(e, MockMiss) for e in list(events)):
        time.sleep(0.05)
    assert any(isinstance(e, MockMiss) and e.dependency == "db" for e in list(events))

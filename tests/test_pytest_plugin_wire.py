"""The pytest plugin with Redis and Postgres dependencies: pytester sessions in a copy of
the visits (Redis) and reviews (Postgres + HTTP) examples, real clients (redis-py,
psycopg) against the real mocks, and a real redis-server to record from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis
from conftest import ROOT
from redis_helpers import redis_server

pytest_plugins = ("pytester",)

QUIET = ("-p", "no:textual-snapshot", "-p", "no:cacheprovider")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    root = pytester.path
    shutil.copytree(ROOT / "profiles", root / "profiles")
    for name in ("visits", "reviews"):
        shutil.copytree(ROOT / "mocks" / name, root / "mocks" / name)
    return pytester


def test_redis_mock_as_a_fixture_with_redis_py(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_visits="""
        import os, pytest, redis

        pytestmark = pytest.mark.devbox(profile="visits")

        def client():
            return redis.Redis.from_url(os.environ["REDIS_URL"])

        def test_counts(devbox_mocks):
            assert devbox_mocks.url("cache") == os.environ["REDIS_URL"]
            assert devbox_mocks.urls["cache"].startswith("redis://127.0.0.1:")
            assert devbox_mocks.urls["cache"].endswith("/0")
            r = client()
            assert r.execute_command("INCR", "visits:home") == 1
            assert r.execute_command("INCR", "visits:home") == 2
            assert devbox_mocks.hits("cache") == 2
            assert [e["target"] for e in devbox_mocks.journal()] == ["INCR visits:home"] * 2
            assert all(e["matched"] for e in devbox_mocks.journal("cache"))

        def test_sequences_start_again(devbox_mocks):
            # the previous test's calls are not this one's: the counter is recorded, from 1
            assert devbox_mocks.hits() == 0 and devbox_mocks.journal() == []
            assert client().execute_command("INCR", "visits:home") == 1

        def test_unrecorded_command(devbox_mocks):
            try:
                client().get("visits:nowhere")
            except redis.ResponseError:
                pass  # the code under test may well swallow it: the miss still fails it

        @pytest.mark.devbox(allow_misses=True)
        def test_allowed(devbox_mocks):
            with pytest.raises(redis.ResponseError, match="DEVBOXMISS"):
                client().get("visits:nowhere")
            [miss] = devbox_mocks.misses("cache")
            assert miss.target == "GET visits:nowhere"
            assert devbox_mocks.journal()[0]["matched"] is None
        """
    )
    result = project.runpytest(*QUIET)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*devbox: unexpected mock misses*",
            "cache: no recorded reply for GET visits:nowhere; nearest recorded: *",
        ]
    )


def test_postgres_and_http_mocks_with_psycopg(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_reviews="""
        import json, os, urllib.request
        import psycopg, pytest

        pytestmark = pytest.mark.devbox(profile="reviews")
        KB = "SELECT author, stars, body FROM reviews WHERE sku = 'KB-101' ORDER BY id"

        def connect():
            return psycopg.connect(os.environ["DATABASE_URL"], password="any", autocommit=True)

        def test_both_kinds(devbox_mocks):
            assert set(devbox_mocks.env) == {"DATABASE_URL", "INVENTORY_URL"}
            assert devbox_mocks.urls["db"].startswith("postgresql://reviews@127.0.0.1:")
            assert devbox_mocks.urls["db"].endswith("/reviews")
            with connect() as conn:
                rows = conn.execute(KB).fetchall()
            assert rows == [("ana", 5, "best keyboard I have owned"), ("ben", 3, "keys wobble")]
            with urllib.request.urlopen(os.environ["INVENTORY_URL"] + "/items/KB-101") as r:
                assert json.loads(r.read())["sku"] == "KB-101"
            assert devbox_mocks.hits("db") == 1 and devbox_mocks.hits("inventory") == 1
            assert sorted(e["method"] for e in devbox_mocks.journal()) == ["GET", "POSTGRES"]

        def test_recorded_sequence_again(devbox_mocks):
            # the 1st KB-101 query of every test gets the 1st recorded answer (2 rows)
            with connect() as conn:
                assert len(conn.execute(KB).fetchall()) == 2
                assert len(conn.execute(KB).fetchall()) == 3  # recorded after an INSERT

        def test_unrecorded_query(devbox_mocks):
            with connect() as conn:
                with pytest.raises(psycopg.Error, match="no recorded answer"):
                    conn.execute("SELECT 2")
                # the connection goes on after a miss (it used to ignore every later query)
                assert len(conn.execute(KB).fetchall()) == 2

        def test_a_transaction_that_was_never_recorded(devbox_mocks):
            # psycopg opens a transaction with BEGIN: unrecorded, it fails with the mock's
            # explanation (the error used to arrive twice: "received 2 results")
            with psycopg.connect(os.environ["DATABASE_URL"], password="any") as conn:
                with pytest.raises(psycopg.Error, match="no recorded answer for BEGIN"):
                    conn.execute(KB)
        """
    )
    result = project.runpytest(*QUIET)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*devbox: unexpected mock misses*",
            "db: POSTGRES SELECT 2: query text never recorded; nearest recorded: SELECT 1",
        ]
    )
    result.stdout.fnmatch_lines(["db: POSTGRES BEGIN: query text never recorded*"])


def _texts(directory: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(directory.glob("*.json"))}


def test_record_once_then_replay_a_redis_dependency(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    cache = project.path / "mocks/visits/cache"
    shutil.rmtree(cache)
    project.makepyfile(
        test_rec="""
        import os, pytest, redis

        pytestmark = pytest.mark.devbox(profile="visits")

        def test_calls(devbox_mocks):
            r = redis.Redis.from_url(os.environ["REDIS_URL"])
            r.execute_command("SET", "greeting", "hello")
            assert r.execute_command("GET", "greeting") == b"hello"
            assert r.execute_command("INCR", "visits:pytest") == 1
        """
    )
    with redis_server(tmp_path / "redis") as real:
        profile = project.path / "profiles/visits.toml"
        profile.write_text(profile.read_text().replace("redis://127.0.0.1:6379/0", real.url))
        # none: nothing recorded for the cache, so its calls miss and the test fails
        project.runpytest(*QUIET).assert_outcomes(failed=1)
        assert not _texts(cache) if cache.exists() else True
        # once: the cache has no recording, so it records through the real server
        project.runpytest(*QUIET, "--devbox-record", "once").assert_outcomes(passed=1)
        recorded = _texts(cache)
        assert len(recorded) == 1
        text = next(iter(recorded.values()))
        assert '"kind": "redis"' in text and '"INCR"' in text and "visits:pytest" in text
        # once again: a recording exists now, so nothing is recorded (the real counter
        # would say 2: the answer comes from the recording)
        project.runpytest(*QUIET, "--devbox-record", "once").assert_outcomes(passed=1)
        assert _texts(cache) == recorded

        # new: only what misses goes to the real server, into a file of its own
        project.makepyfile(test_more=NEW_CALL)
        project.runpytest(*QUIET, "-k", "other").assert_outcomes(failed=1, deselected=1)
        project.runpytest(*QUIET, "--devbox-record", "new").assert_outcomes(passed=2)
        after_new = _texts(cache)
        assert set(recorded) < set(after_new)
        [added] = [v for k, v in after_new.items() if k not in recorded]
        assert "other" in added and "visits:pytest" not in added

        # all: everything afresh (the real counter starts again), replacing the old files
        redis.Redis.from_url(real.url).flushall()
        project.runpytest(*QUIET, "--devbox-record", "all").assert_outcomes(passed=2)
        fresh = _texts(cache)
        assert len(fresh) == 1 and not set(fresh) & set(after_new)
        assert "visits:pytest" in next(iter(fresh.values()))
    # the real server is gone: the recording answers on its own
    project.runpytest(*QUIET).assert_outcomes(passed=2)


NEW_CALL = """
import os, pytest, redis

@pytest.mark.devbox(profile="visits")
def test_other(devbox_mocks):
    assert redis.Redis.from_url(os.environ["REDIS_URL"]).execute_command("GET", "other") is None
"""


PG_TEST = """
import os, psycopg, pytest

pytestmark = pytest.mark.devbox(profile="shop")

def test_query(devbox_mocks):
    url = os.environ["DATABASE_URL"]
    assert url.startswith("postgresql://devbox@127.0.0.1:") and url.endswith("/app")
    with psycopg.connect(url, password=PASSWORD, autocommit=True) as conn:
        assert conn.execute("SELECT 41 + %s::int AS answer", [1]).fetchone() == (42,)
    assert devbox_mocks.misses() == []
"""


def test_record_once_then_replay_a_postgres_dependency(project: pytest.Pytester) -> None:
    from pg_support import PASSWORD, running_postgres

    project.makepyfile(test_pg=PG_TEST.replace("PASSWORD", repr(PASSWORD)))
    with running_postgres() as pg:
        (project.path / "profiles/shop.toml").write_text(
            'name = "shop"\n[service]\nport = 1\ncommand = ["true"]\n'
            '[[dependency]]\nname = "db"\nkind = "postgres"\n'
            f'upstream = "{pg.url(password=False)}"\nenv = "DATABASE_URL"\n'
        )
        project.runpytest(*QUIET).assert_outcomes(failed=1)  # none: nothing recorded
        project.runpytest(*QUIET, "--devbox-record", "once").assert_outcomes(passed=1)
    [recording] = (project.path / "mocks/shop/db").glob("*.json")
    text = recording.read_text()
    assert '"kind": "postgres"' in text and "SELECT 41 + $1::int AS answer" in text
    assert PASSWORD not in text
    # the database is gone: the recording answers (any password, as the mock accepts)
    project.runpytest(*QUIET).assert_outcomes(passed=1)

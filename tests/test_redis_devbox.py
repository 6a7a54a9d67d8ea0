"""Redis through devbox itself: the profile, ``devbox record`` (relay, redaction, ``{NAME}``),
the mock fleet (URLs, hits, misses as events, sequences, modes), ``devbox traffic`` and
the visits example's edit loop. Real redis-server, real clients, real files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from conftest import ROOT, free_port, run_devbox
from redis_helpers import redis_server

from devbox.core.events import Event, MockMiss, MockStats
from devbox.core.profile import load_profile, parse_profile
from devbox.errors import ConfigError
from devbox.mock import MockFleet

PROFILE = """\
name = "shop"

[service]
command = ["python3", "-c", "pass"]
port = {service_port}

[[dependency]]
name = "cache"
kind = "redis"
upstream = "{upstream}"
env = "REDIS_URL"
"""


def _project(tmp_path: Path, upstream: str) -> Path:
    (tmp_path / "profiles").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "profiles" / "shop.toml"
    path.write_text(PROFILE.format(service_port=free_port(), upstream=upstream))
    return path


_devbox = run_devbox


CLIENT = """
import sys, redis
r = redis.Redis.from_url(sys.argv[1])
r.set("greeting", "hello alice@example.com")
print(r.incr("visits"), r.incr("visits"), r.get("greeting").decode())
"""


def test_profile_accepts_redis_and_checks_its_upstream(tmp_path: Path) -> None:
    path = _project(tmp_path, "redis://:pw@127.0.0.1:6379/2")
    dep = load_profile(path).dependency("cache")
    assert (dep.kind, dep.env) == ("redis", "REDIS_URL")
    bad = path.read_text().replace("redis://:pw@127.0.0.1:6379/2", "http://127.0.0.1:6379")
    with pytest.raises(ConfigError) as err:
        parse_profile(bad, path)
    assert err.value.field == "dependency[0].upstream"
    assert err.value.line == 10
    assert "redis://" in err.value.message
    unknown = path.read_text().replace('kind = "redis"', 'kind = "ftp"')
    with pytest.raises(ConfigError) as err:
        parse_profile(unknown, path)
    assert "redis" in err.value.message and "'ftp'" in err.value.message
    ok = _devbox(tmp_path, "validate", "shop")
    assert ok.returncode == 0, ok.stderr


def test_record_then_mock_through_devbox(tmp_path: Path) -> None:
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    with redis_server(tmp_path / "redis") as server:
        # the real server wants a password: the client sends it, the recording must not keep it
        redis.Redis(port=server.port).config_set("requirepass", "s3cret-Passw0rd")
        _project(tmp_path, f"redis://:s3cret-Passw0rd@127.0.0.1:{server.port}/3")
        done = _devbox(
            tmp_path,
            "record",
            "shop",
            "--no-service",
            "--",
            sys.executable,
            str(client),
            "{cache}",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("1 2 hello alice@example.com")
        direct = redis.Redis(port=server.port, db=3, password="s3cret-Passw0rd")
        assert direct.get("visits") == b"2"  # the relay really reached the server, database 3
        direct.close()
    files = list((tmp_path / "mocks/shop/cache").glob("recording-*.json"))
    assert len(files) == 1, list((tmp_path / "mocks/shop/cache").iterdir())
    text = files[0].read_text()
    assert '"kind": "redis"' in text
    assert "s3cret-Passw0rd" not in text and "alice@example.com" not in text
    assert "<redacted:" in text

    # traffic ls / show read it
    ls = _devbox(tmp_path, "traffic", "ls", "shop", "--json")
    assert ls.returncode == 0, ls.stderr
    cache = next(r for r in json.loads(ls.stdout) if r["source"] == "cache")
    assert cache["exchanges"] >= 4 and cache["methods"].get("INCRBY") == 2, cache
    show = _devbox(tmp_path, "traffic", "show", "shop/cache", "--json")
    assert show.returncode == 0, show.stderr
    incrs = [o["reply"]["value"] for o in json.loads(show.stdout) if o.get("command") == "INCRBY"]
    assert incrs == [1, 2]
    table = _devbox(tmp_path, "traffic", "show", str(files[0]), "--method", "INCRBY")
    assert table.returncode == 0 and "visits" in table.stdout

    # the server is gone: the mock answers, redacted values included, sequences in order
    events: list[Event] = []
    lock = threading.Lock()

    def on_event(ev: Event) -> None:
        with lock:
            events.append(ev)

    fleet = MockFleet(load_profile(tmp_path / "profiles/shop.toml"), on_event=on_event)
    fleet.start()
    try:
        url = fleet.urls()["REDIS_URL"]
        assert re.fullmatch(r"redis://:s3cret-Passw0rd@127\.0\.0\.1:\d+/3", url), url
        again = subprocess.run(
            [sys.executable, str(client), url], capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0, again.stderr
        # the e-mail address stayed out of the recording; the client that wrote it reads
        # its own back (the mock learnt it from the write), not the placeholder
        assert again.stdout.split() == ["1", "2", "hello", "alice@example.com"]
        assert fleet.exchanges()["cache"] >= 4
        r = redis.Redis.from_url(url)
        with pytest.raises(redis.ResponseError, match=r"DEVBOXMISS.*GET nope.*nearest recorded"):
            r.get("nope")
        fleet.reset()
        assert r.incr("visits") == 1  # the recorded sequence starts again
        r.close()
        misses = fleet.misses("cache")
        assert [m.target for m in misses] == ["GET nope (db 3)"]
        stats = fleet.stats()[0]
        assert stats.hits >= 5 and stats.misses == 1 and stats.dependency == "cache"
    finally:
        fleet.stop()
    with lock:
        seen = list(events)
    assert any(isinstance(e, MockMiss) and e.dependency == "cache" for e in seen)
    assert any(isinstance(e, MockStats) and e.misses == 1 for e in seen)


def test_passthrough_mode_reaches_the_upstream(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        path = _project(tmp_path, server.url)
        fleet = MockFleet(load_profile(path))
        fleet.start()
        try:
            fleet.set_mode("cache", "passthrough")
            r = redis.Redis.from_url(fleet.urls()["REDIS_URL"])
            assert r.incr("n") == 1 and r.incr("n") == 2
            r.close()
            assert fleet.stats()[0].mode == "passthrough"
        finally:
            fleet.stop()


def _visits_project(tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(ROOT / "examples" / "visits", dest / "examples" / "visits")
    shutil.copytree(ROOT / "mocks" / "visits", dest / "mocks" / "visits")
    (dest / "profiles").mkdir()
    text = (ROOT / "profiles" / "visits.toml").read_text()
    text = re.sub(r"\bport = 7090\b", f"port = {free_port()}", text)
    (dest / "profiles" / "visits.toml").write_text(text)
    return dest / "profiles" / "visits.toml"


def test_visits_example_replays_green_and_sees_an_edit(tmp_path: Path) -> None:
    from devbox.engine.session import Engine, EngineOptions

    profile = _visits_project(tmp_path)
    engine = Engine(load_profile(profile), EngineOptions(runtime="process"))
    try:
        engine.start()
        first = engine.last_finished
        assert first is not None and (first.passed, first.failed, first.errors) == (25, 0, 0)
        app = profile.parent.parent / "examples/visits/app.py"
        app.write_text(app.read_text().replace('GREETING = "Total visits"', 'GREETING = "Visits"'))
        changed = engine.wait_iteration(0, timeout=60)
        assert changed is not None and changed.action == "sync+restart"
        assert changed.failed == 24 and changed.passed == 1  # every /visit, not /stats
        app.write_text(app.read_text().replace('GREETING = "Visits"', 'GREETING = "Total visits"'))
        back = engine.wait_iteration(changed.iteration, timeout=60)
        assert back is not None and (back.passed, back.failed) == (25, 0)
    finally:
        engine.stop()


def test_redis_benchmark_keys_are_recorded_verbatim_and_served(tmp_path: Path) -> None:
    """Issue 13: ``redis-benchmark``'s ``key:__rand_int__`` is a key name, not a credential
    after ``key:``. Recorded through ``devbox record``, it is stored as it was sent, and
    the mock answers it (the e-mail address in the same recording is still redacted, so
    the mock redacts live arguments, through its memo, before it matches them)."""
    bench = shutil.which("redis-benchmark")
    assert bench, "redis-benchmark is missing: scripts/setup installs redis-server with it"
    client = tmp_path / "client.py"
    client.write_text(
        "import sys, redis\n"
        "r = redis.Redis.from_url(sys.argv[1])\n"
        "r.set('user:1000:session', 'alice@example.com')\n"
        "r.set('api_key:lookup', 'hit')\n"
        "r.set('cache:key:profile:42', 'p')\n"
        "print(r.get('key:__rand_int__').decode())\n"
    )
    with redis_server(tmp_path / "redis") as server:
        _project(tmp_path, server.url)
        done = _devbox(
            tmp_path,
            "record",
            "shop",
            "--no-service",
            "--",
            bench,
            "-u",
            "{cache}",
            "-t",
            "set",
            "-n",
            "5",
            "-c",
            "1",
            "-q",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        done = _devbox(
            tmp_path,
            "record",
            "shop",
            "--no-service",
            "--append",
            "--",
            sys.executable,
            str(client),
            "{cache}",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        value = done.stdout.splitlines()[0]  # redis-benchmark's value, from the real server
    stored = [
        o
        for f in sorted((tmp_path / "mocks/shop/cache").glob("recording-*.json"))
        for o in json.loads(_devbox(tmp_path, "traffic", "show", str(f), "--json").stdout)
    ]
    sets = [o["args"] for o in stored if o.get("command") == "SET"]
    assert ["key:__rand_int__", value] in sets, sets
    assert ["api_key:lookup", "hit"] in sets and ["cache:key:profile:42", "p"] in sets
    session = next(a for a in sets if a[0] == "user:1000:session")
    assert session[1].startswith("<redacted:email:")
    text = "".join(f.read_text() for f in (tmp_path / "mocks/shop/cache").glob("*.json"))
    assert "alice@example.com" not in text and "<redacted:secret:" not in text

    fleet = MockFleet(load_profile(tmp_path / "profiles/shop.toml"))
    fleet.start()
    try:
        r = redis.Redis.from_url(fleet.urls()["REDIS_URL"])
        for _ in range(2):  # the second time from the mock's memo of redacted arguments
            assert r.set("key:__rand_int__", value) is True
            assert r.set("api_key:lookup", "hit") is True
            assert r.set("user:1000:session", "alice@example.com") is True
            assert r.get("key:__rand_int__") == value.encode()
        r.close()
        assert fleet.misses("cache") == []
    finally:
        fleet.stop()

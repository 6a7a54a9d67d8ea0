"""Real clients against a Redis mock: each workload is recorded through the relay from a
real redis-server, the server is stopped, and the same workload against the mock must
get exactly the recorded replies (redis-py sync and asyncio, RESP2 and RESP3, with and
without hiredis; redis-cli; node's ``redis``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from loop_support import Loop
from redis._parsers import (
    _AsyncHiredisParser,
    _AsyncRESP2Parser,
    _AsyncRESP3Parser,
    _HiredisParser,
    _RESP2Parser,
    _RESP3Parser,
)
from redis_helpers import NODE_MODULES, Mock, Recording, redis_server

from devbox.wire.contract import MockOptions


def record_then_mock(
    tmp_path: Path, loop: Loop, workload: Callable[[int], Any], **mock: Any
) -> tuple[Any, Any, Mock]:
    """(what the real server answered, what the mock answered, the mock)."""
    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        recorded = workload(rec.port)
        rec.close()
    m = Mock(loop, rec.stored, **mock).start()
    replayed = workload(m.port)
    m.close()
    return recorded, replayed, m


def _sync_workload(protocol: int, hiredis: bool) -> Callable[[int], list[Any]]:
    parser = _HiredisParser if hiredis else _RESP3Parser if protocol == 3 else _RESP2Parser

    def run(port: int) -> list[Any]:
        pool = redis.ConnectionPool(
            port=port, protocol=protocol, db=2, client_name="svc", parser_class=parser
        )
        r = redis.Redis(connection_pool=pool)
        out: list[Any] = [r.ping(), r.set("user:1", "ada"), r.get("user:1")]
        out.append([r.incr("visits") for _ in range(3)])
        out.append(r.get("visits"))
        out.append(r.hset("h", mapping={"a": "1", "b": "2"}))
        out.append(r.hgetall("h"))
        out.append(r.sadd("s", "x", "y"))
        out.append(sorted(r.smembers("s")))
        out.append(r.zadd("z", {"a": 1.5}))
        out.append(r.zscore("z", "a"))
        with r.pipeline(transaction=True) as p:
            p.incr("c")
            p.get("c")
            out.append(p.execute())
        with r.pipeline(transaction=False) as p:
            for i in range(20):
                p.set(f"k{i}", i)
                p.get(f"k{i}")
            out.append(p.execute())
        out.append(r.set(b"bin\xff", b"\x00\xfe"))
        out.append(r.get(b"bin\xff"))
        out.append(r.eval("return redis.call('GET', KEYS[1])", 1, "user:1"))
        out.append(r.get("missing"))
        try:
            r.lpush("user:1", "x")
        except redis.ResponseError as exc:
            out.append(str(exc))
        out.append(r.blpop(["queue"], timeout=0.2))
        r.close()
        pool.disconnect()
        return out

    return run


@pytest.mark.parametrize("hiredis", [False, True], ids=["python-parser", "hiredis"])
@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_redis_py_sync(tmp_path: Path, loop: Loop, protocol: int, hiredis: bool) -> None:
    recorded, replayed, mock = record_then_mock(tmp_path, loop, _sync_workload(protocol, hiredis))
    assert replayed == recorded
    assert recorded[2] == b"ada" and recorded[3] == [1, 2, 3]
    assert recorded[-1] is None  # BLPOP timed out, and the mock said so too
    assert mock.misses == []


def _async_workload(protocol: int, hiredis: bool) -> Callable[[int], list[Any]]:
    parser = (
        _AsyncHiredisParser
        if hiredis
        else _AsyncRESP3Parser
        if protocol == 3
        else _AsyncRESP2Parser
    )

    async def main(port: int) -> list[Any]:
        pool = redis.asyncio.ConnectionPool(port=port, protocol=protocol, parser_class=parser)
        r = redis.asyncio.Redis(connection_pool=pool)
        out: list[Any] = [await r.set("n", 10)]
        out.append([await r.incrby("n", 5) for _ in range(2)])
        out.append(await r.get("n"))
        out.append(await r.hgetall("nothing"))
        async with r.pipeline(transaction=True) as p:
            p.set("a", "1")
            p.incr("a")
            out.append(await p.execute())
        out.append(await r.exists("a", "n", "zzz"))
        await r.aclose()
        await pool.disconnect()
        return out

    return lambda port: asyncio.run(main(port))


@pytest.mark.parametrize("hiredis", [False, True], ids=["python-parser", "hiredis"])
@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_redis_py_asyncio(tmp_path: Path, loop: Loop, protocol: int, hiredis: bool) -> None:
    recorded, replayed, mock = record_then_mock(tmp_path, loop, _async_workload(protocol, hiredis))
    assert replayed == recorded
    assert recorded[1] == [15, 20]
    assert mock.misses == []


def test_redis_cli(tmp_path: Path, loop: Loop) -> None:
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli is missing: scripts/setup installs redis-tools"
    commands = [
        ["SET", "greeting", "hello world"],
        ["GET", "greeting"],
        ["INCR", "hits"],
        ["INCR", "hits"],
        ["RPUSH", "l", "a", "b", "c"],
        ["LRANGE", "l", "0", "-1"],
        ["-3", "HSET", "h", "f", "v"],
        ["-3", "HGETALL", "h"],
        ["-n", "3", "SET", "only-in-3", "x"],
        ["-n", "3", "GET", "only-in-3"],
        ["GET", "only-in-3"],
    ]

    def run(port: int) -> list[str]:
        return [
            subprocess.run(
                [cli, "-p", str(port), *c], capture_output=True, text=True, timeout=30, check=True
            ).stdout
            for c in commands
        ]

    recorded, replayed, mock = record_then_mock(tmp_path, loop, run)
    assert replayed == recorded
    assert recorded[1] == "hello world\n" and recorded[3] == "2\n"
    assert recorded[9] == "x\n" and recorded[10] == "\n"  # the database is part of the match
    assert mock.misses == []


NODE_SCRIPT = """
const { createClient } = require('redis');
(async () => {
  const c = createClient({ url: process.argv[2] });
  await c.connect();
  const out = [];
  out.push(await c.set('k', 'v'));
  out.push(await c.incr('n'));
  out.push(await c.incr('n'));
  out.push(await c.get('n'));
  out.push(await c.hSet('h', { a: '1', b: '2' }));
  out.push(await c.hGetAll('h'));
  out.push(await c.multi().incr('t').get('t').exec());
  out.push(await c.lRange('nothing', 0, -1));
  console.log(JSON.stringify(out));
  await c.quit();
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_node_redis_client(tmp_path: Path, loop: Loop) -> None:
    node = shutil.which("node")
    assert node, "node is missing: scripts/setup installs npm"
    assert (NODE_MODULES / "redis").is_dir(), "scripts/setup installs node's redis client"
    script = tmp_path / "client.js"
    script.write_text(NODE_SCRIPT)
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}

    def run(port: int) -> Any:
        done = subprocess.run(
            [node, str(script), f"redis://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    recorded, replayed, mock = record_then_mock(tmp_path, loop, run)
    assert replayed == recorded
    assert recorded[:4] == ["OK", 1, 2, "2"]
    assert mock.misses == []


def test_pubsub_messages_replayed_in_order(tmp_path: Path, loop: Loop) -> None:
    def run(port: int) -> list[Any]:
        sub = redis.Redis(port=port, protocol=3)
        pub = redis.Redis(port=port)
        ps = sub.pubsub()
        ps.subscribe("news")
        got: list[Any] = [ps.get_message(timeout=5)]
        for i in range(3):
            pub.publish("news", f"item {i}")
        while len(got) < 4:
            msg = ps.get_message(timeout=5)
            assert msg is not None, got
            got.append(msg)
        ps.close()
        sub.close()
        pub.close()
        return got

    recorded, replayed, _mock = record_then_mock(tmp_path, loop, run)
    assert replayed == recorded
    assert [m["data"] for m in recorded[1:]] == [b"item 0", b"item 1", b"item 2"]


def test_miss_names_the_nearest_recorded_command(tmp_path: Path, loop: Loop) -> None:
    def run(port: int) -> Any:
        r = redis.Redis(port=port)
        r.set("user:1", "ada")
        return r.get("user:1")

    _rec, _rep, mock = record_then_mock(tmp_path, loop, run)
    m = Mock(loop, mock.stored).start()
    r = redis.Redis(port=m.port)
    with pytest.raises(redis.ResponseError) as err:
        r.get("user:2")
    assert str(err.value).startswith("DEVBOXMISS no recorded reply for GET user:2")
    assert "nearest recorded: GET user:1" in str(err.value)
    assert [x.request for x in m.misses] == ["GET user:2"]
    r.close()
    m.close()


def test_passthrough_and_record_on_miss_reach_the_real_server(tmp_path: Path, loop: Loop) -> None:
    with redis_server(tmp_path / "redis") as server:
        m = Mock(loop, [], MockOptions("cache", on_miss="record"), upstream=server.port).start()
        r = redis.Redis(port=m.port, db=4, protocol=3)
        assert r.set("fresh", "1") is True
        assert r.incr("fresh") == 2
        with r.pipeline() as p:
            p.incr("fresh")
            p.ping()  # answered by the mock itself, after the forwarded INCR
            p.get("fresh")
            assert p.execute() == [3, True, b"3"]
        direct = redis.Redis(port=server.port, db=4)
        assert direct.get("fresh") == b"3"  # it really went to the server, in database 4
        direct.close()
        r.close()
        m.close()

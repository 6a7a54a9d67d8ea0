"""A ``SELECT`` inside ``MULTI`` changes the connection's database when ``EXEC`` runs it.
Recorded through the relay against a real redis-server with a real client (redis-py's
connection), the commands after the ``EXEC`` must be stored in the database they ran
in, and a mock passing a miss on to the real server must ask it in that database (the
recorder and the mock both kept the database from before the ``MULTI``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from loop_support import Loop
from redis._parsers import _RESP2Parser
from redis_helpers import Mock, Recording, redis_server

from devbox.wire.contract import MockOptions

_Connection: Any = redis.Connection  # redis-py's low-level API is untyped


def _ask(conn: Any, *args: Any) -> Any:
    conn.send_command(*args)
    try:
        return conn.read_response()
    except redis.RedisError as exc:
        return (type(exc).__name__, str(exc))


def _work(port: int, more: bool) -> list[Any]:
    conn = _Connection(port=port, protocol=2, parser_class=_RESP2Parser, socket_timeout=10)
    conn.connect()
    out = [_ask(conn, "MULTI"), _ask(conn, "SELECT", "2"), _ask(conn, "SET", "k", "in 2")]
    out += [_ask(conn, "EXEC"), _ask(conn, "GET", "k")]
    if more:  # never recorded
        out.append(_ask(conn, "GET", "other"))
    conn.disconnect()
    return out


def test_select_inside_multi_moves_the_commands_after_exec(tmp_path: Path, loop: Loop) -> None:
    with redis_server(tmp_path / "redis") as server:
        direct = redis.Redis(port=server.port, db=2)
        direct.set("other", "also in 2")
        rec = Recording(loop, server.port).start()
        recorded = _work(rec.port, more=False)
        rec.close()
        options = MockOptions("cache", on_miss="passthrough")
        m = Mock(loop, rec.stored, options, upstream=server.port).start()
        replayed = _work(m.port, more=True)
        m.close()
        direct.close()
    assert recorded == [b"OK", b"QUEUED", b"QUEUED", [b"OK", b"OK"], b"in 2"]
    assert [o["db"] for o in rec.stored if o.get("command") == "GET"] == [2]
    assert replayed == [*recorded, b"also in 2"]  # the miss, asked in database 2
    assert m.misses == []

"""Adversarial fidelity of the Redis relay and mock: each workload runs through the
recording relay against a real redis-server, then against the mock built from that
recording, with real clients (redis-py, its low-level ``Connection``, raw sockets for
what no library sends), and what the client got must be the same both times.

Each case here was a difference found with a real client: replies too big or too deep
for the relay's parser (the client's connection was cut), large values parsed in
quadratic time, commands refused inside ``MULTI``, a ``SELECT`` of a database the
server lacks, repeated channels in ``UNSUBSCRIBE``, a RESP3 reply that looks like a
pub/sub message, and the mock's own answers to malformed set-up commands."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from loop_support import Loop
from redis_helpers import Mock, Recording, ask, outcome, raw_conn, record_then_mock, redis_server

from devbox.wire.contract import MockOptions


def _command(client: Any, *args: Any) -> Any:
    return client.execute_command(*args)


def _nested(depth: int) -> str:
    return f"local t = {{1}} for i = 1, {depth} do t = {{t}} end return t"


def _depth(value: Any) -> int:
    n = 0
    while isinstance(value, list):
        value, n = value[0], n + 1
    return n


# ---------------------------------------------------------------- replies the relay cut


def test_a_reply_of_over_a_million_items_is_relayed_recorded_and_served(
    tmp_path: Path, loop: Loop
) -> None:
    items = 1_050_000  # the relay's parser refused aggregates over 2**20 and cut the client

    def prepare(port: int) -> None:
        r = redis.Redis(port=port)
        r.eval(
            "for i = 1, ARGV[1], 5000 do local t = {} "
            "for j = i, math.min(i + 4999, ARGV[1]) do t[#t + 1] = j end "
            "redis.call('RPUSH', KEYS[1], unpack(t)) end",
            1,
            "big",
            items,
        )
        r.close()

    def run(port: int) -> Any:
        r = redis.Redis(port=port, protocol=2, socket_timeout=60)
        got = r.lrange("big", 0, -1)
        out = [len(got), got[0], got[-1], r.ping(), r.llen("big")]
        r.close()
        return out

    recorded, replayed, _rec, mock = record_then_mock(tmp_path, loop, run, prepare)
    assert recorded == [items, b"1", b"%d" % items, True, items]
    assert replayed == recorded
    assert mock.misses == []


def test_nested_replies_are_recorded_and_a_too_deep_one_still_reaches_the_client(
    tmp_path: Path, loop: Loop
) -> None:
    def run(port: int) -> Any:
        r = redis.Redis(port=port, protocol=2, single_connection_client=True)
        out = [_depth(r.eval(_nested(100), 0)), r.set("after", "1")]
        if port == relay_port[0]:
            # deeper than a recording can hold: passed on untouched, the session goes on
            out += [_depth(r.eval(_nested(300), 0)), r.get("after"), r.ping()]
        r.close()
        return out

    relay_port = [0]
    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        relay_port[0] = rec.port
        recorded = run(rec.port)
        rec.close()
    assert recorded == [101, True, 301, b"1", True]
    evals = [o for o in rec.stored if o.get("command") == "EVAL"]
    assert "reply" in evals[0] and evals[1].get("incomplete") is True
    m = Mock(loop, rec.stored).start()
    assert run(m.port) == recorded[:2]  # the 100-deep reply, served as recorded
    m.close()


# ---------------------------------------------------------------- large values


def test_large_values_and_long_replies_do_not_stall(tmp_path: Path, loop: Loop) -> None:
    value = bytes(range(256)) * (80 * 4096)  # 80 MB, not UTF-8

    def prepare(port: int) -> None:
        r = redis.Redis(port=port)
        r.eval(
            "for i = 1, 600000, 5000 do local t = {} for j = i, i + 4999 do "
            "t[#t + 1] = j end redis.call('RPUSH', KEYS[1], unpack(t)) end",
            1,
            "long",
        )
        r.close()

    def run(port: int) -> Any:
        # re-joining and re-parsing every 64 KB read (quadratic) kept these replies from
        # the client for 14 s and more, past this timeout; linear, they take a second or
        # two even on a busy 2-core machine (the speed itself is not asserted here)
        r = redis.Redis(port=port, protocol=2, socket_timeout=30)
        out = [r.set(b"blob\xff", value), r.get(b"blob\xff") == value, len(r.lrange("long", 0, -1))]
        r.close()
        return out

    recorded, replayed, _rec, mock = record_then_mock(tmp_path, loop, run, prepare)
    assert recorded == replayed == [True, True, 600_000]
    assert mock.misses == []


# ---------------------------------------------------------------- transactions, SELECT


def test_a_command_refused_inside_multi_gets_the_same_error_and_execabort(
    tmp_path: Path, loop: Loop
) -> None:
    def run(port: int) -> Any:
        r = redis.Redis(port=port, protocol=2)
        out: list[Any] = []
        with r.pipeline(transaction=True) as p:
            p.set("a", "1")
            _command(p, "NOSUCHCMD", "x")
            p.get("a")
            out.append(outcome(p.execute))
        conn = raw_conn(port)
        out += [ask(conn, "MULTI"), ask(conn, "GET"), ask(conn, "SET", "b", "2")]
        out += [ask(conn, "EXEC"), ask(conn, "GET", "b")]
        conn.disconnect()
        r.close()
        return out

    recorded, replayed, _rec, mock = record_then_mock(tmp_path, loop, run)
    assert recorded[0][0] == "ResponseError" and "NOSUCHCMD" in recorded[0][1]
    assert recorded[2] == ("ResponseError", "wrong number of arguments for 'get' command")
    assert recorded[4][0] == "ExecAbortError"
    assert replayed == recorded
    assert mock.misses == []


def test_select_of_a_database_the_server_lacks(tmp_path: Path, loop: Loop) -> None:
    def run(port: int) -> Any:
        r = redis.Redis(port=port, protocol=2, db=5, single_connection_client=True)
        out = [r.set("k", "in 5"), outcome(lambda: _command(r, "SELECT", 99))]
        out.append(r.get("k"))  # still database 5
        conn = raw_conn(port)
        # pipelined: the GET after the refused SELECT runs in database 0
        conn.send_packed_command(conn.pack_commands([("SELECT", "99"), ("GET", "k")]))
        out += [outcome(conn.read_response), outcome(conn.read_response)]
        conn.disconnect()
        r.close()
        return out

    recorded, replayed, rec, mock = record_then_mock(tmp_path, loop, run)
    refused = ("ResponseError", "DB index is out of range")
    assert recorded == [True, refused, b"in 5", refused, None]
    gets = [o["db"] for o in rec.stored if o.get("command") == "GET"]
    assert gets == [5, 0]  # recorded in the database they really ran in
    assert replayed == recorded
    assert mock.misses == []


# ---------------------------------------------------------------- pub/sub pairing


def test_unsubscribe_naming_a_channel_twice_keeps_replies_paired(
    tmp_path: Path, loop: Loop
) -> None:
    def run(port: int) -> Any:
        conn = raw_conn(port)
        conn.send_command("SUBSCRIBE", "a")
        out = [conn.read_response()]
        conn.send_command("UNSUBSCRIBE", "a", "a")  # one reply per argument
        out += [conn.read_response(), conn.read_response()]
        out += [ask(conn, "PING"), ask(conn, "GET", "k"), ask(conn, "SET", "k", "v")]
        conn.disconnect()
        return out

    recorded, replayed, _rec, mock = record_then_mock(tmp_path, loop, run)
    assert recorded[3:] == [b"PONG", None, b"OK"]
    assert replayed == recorded
    assert mock.misses == []


def test_a_resp3_reply_that_looks_like_a_message_is_a_reply(tmp_path: Path, loop: Loop) -> None:
    def prepare(port: int) -> None:
        redis.Redis(port=port).rpush("l", "message", "ch", "not a push")

    def run(port: int) -> Any:
        conn = raw_conn(port, protocol=3)
        conn.send_command("SUBSCRIBE", "ch")
        out = [conn.read_response(push_request=True)]
        # RESP3 allows any command while subscribed; its array reply is not a message
        out += [ask(conn, "LRANGE", "l", "0", "-1"), ask(conn, "GET", "missing")]
        conn.disconnect()
        return out

    recorded, replayed, _rec, mock = record_then_mock(tmp_path, loop, run, prepare)
    assert recorded[1:] == [[b"message", b"ch", b"not a push"], None]
    assert replayed == recorded
    assert mock.misses == []


# ---------------------------------------------------------------- answered by the mock


def test_malformed_handshake_commands_get_redis_server_errors(tmp_path: Path, loop: Loop) -> None:
    def run(port: int) -> Any:
        conn = raw_conn(port)
        asks = [
            ("PING", "a", "b"),
            ("SELECT",),
            ("SELECT", "x"),
            ("SELECT", "1", "2"),
            ("CLIENT", "SETNAME"),
            ("CLIENT", "SETNAME", "has space"),
            ("CLIENT", "GETNAME"),
            ("HELLO", "3", "AUTH"),
            ("HELLO", "2", "NOPE"),
            ("CLIENT", "GETNAME"),
            ("PING",),
        ]
        out = [ask(conn, *a) for a in asks]
        conn.disconnect()
        return out

    recorded, replayed, _rec, _mock = record_then_mock(tmp_path, loop, run)
    assert recorded[0] == ("ResponseError", "wrong number of arguments for 'ping' command")
    assert replayed == recorded


# ---------------------------------------------------------------- hostile bytes


HOSTILE = [
    b"\x00\xff\xfe" * 30000,  # no line end at all
    b"*abc\r\n",
    b"*99999999999\r\n",
    b"*1\r\n$999999999999\r\n",
    b"*1\r\n$-3\r\n",
    b"*1\r\n" * 10000,  # arrays nested in arrays: not a command
    b"*1\r\n$" + b"9" * 100 + b"\r\n",
    b'SET "a\r\n',
    b"A" * 70000,
]


def test_hostile_bytes_get_an_error_and_a_close(
    tmp_path: Path, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    m = Mock(loop, []).start()
    for payload in HOSTILE:
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
            s.sendall(payload)
            got = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            assert got.startswith(b"-ERR Protocol error: "), (payload[:30], got)
    # a huge declared argument that never comes: nothing is answered, nothing is reserved,
    # and the mock keeps serving everyone else
    with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
        s.sendall(b"*2\r\n$3\r\nSET\r\n$536870912\r\n" + b"x" * 100_000)
        r = redis.Redis(port=m.port, socket_timeout=5)
        assert r.ping() is True
        r.close()
    m.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_passthrough_of_a_reply_too_deep_to_pass_on_answers_an_error(
    tmp_path: Path, loop: Loop
) -> None:
    with redis_server(tmp_path / "redis") as server:
        options = MockOptions("cache", on_miss="passthrough")
        m = Mock(loop, [], options, upstream=server.port).start()
        r = redis.Redis(port=m.port, protocol=2, socket_timeout=10)
        assert _depth(r.eval(_nested(100), 0)) == 101  # passed through, re-encoded
        got = outcome(lambda: r.eval(_nested(300), 0))
        assert got[0] == "ResponseError" and "cannot be passed on" in got[1], got
        r.close()
        m.close()

"""The Redis kind in-process, with bytes: the RESP2/RESP3 codec (round trips under
arbitrary splits, a short hypothesis run), the recorder's pairing of replies with
commands, and the mock connection's state, matching and outputs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.wire.contract import Hit, Miss, MockOptions, RemoteProtocolError, Reply, Wake
from devbox.wire.redis import KIND
from devbox.wire.redis.resp import (
    CommandParser,
    ReplyParser,
    Value,
    encode_command,
    serialize,
    split_inline,
)
from devbox.wire.redis.store import reply_from_json, reply_to_json

# ---------------------------------------------------------------- codec

_blob = st.binary(max_size=20)
_line = st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b)
_leaf = st.one_of(
    st.tuples(st.just("simple"), _line),
    st.tuples(st.just("error"), _line),
    st.tuples(st.just("integer"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("bulk"), _blob),
    st.tuples(st.just("null"), st.just("")),
    st.tuples(st.just("double"), st.sampled_from([b"1.5", b"inf", b"-0.25"])),
    st.tuples(st.just("boolean"), st.booleans()),
    st.tuples(st.just("bignum"), st.sampled_from([b"3492890328409238509324850943850943825"])),
    st.tuples(st.just("blob_error"), _blob),
    st.tuples(st.just("verbatim"), st.tuples(st.just(b"txt"), _blob)),
)
values: st.SearchStrategy[Any] = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(["array", "set", "push"]), st.lists(inner, max_size=4)),
        st.tuples(st.just("map"), st.lists(st.tuples(inner, inner), max_size=3)),
    ),
    max_leaves=12,
)


def _norm(v: Any) -> Any:
    """Tuples and lists compare alike (the parser builds lists of pairs as tuples)."""
    if isinstance(v, list | tuple):
        return [_norm(x) for x in v]
    return v


@settings(max_examples=150, deadline=None)
@given(values, st.integers(1, 7))
def test_resp3_values_round_trip_through_bytes_and_json(value: Value, step: int) -> None:
    data = serialize(value, 3)
    parser = ReplyParser()
    got: list[Value] = []
    for i in range(0, len(data), step):
        got.extend(parser.feed(data[i : i + step]))
    assert _norm(got) == [_norm(value)]
    assert _norm(reply_from_json(reply_to_json(value), "reply")) == _norm(value)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.binary(max_size=12), min_size=1, max_size=5), max_size=6),
    st.integers(1, 9),
)
def test_pipelined_commands_parse_under_any_split(cmds: list[list[bytes]], step: int) -> None:
    data = b"".join(encode_command(c) for c in cmds)
    parser = CommandParser()
    got: list[list[bytes]] = []
    for i in range(0, len(data), step):
        got.extend(parser.feed(data[i : i + step]))
    assert got == cmds
    assert parser.buffered == 0


def test_resp2_renders_resp3_types_as_resp2_clients_expect() -> None:
    m: Value = ("map", [(("bulk", b"a"), ("integer", 1))])
    assert serialize(m, 2) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert serialize(m, 3) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert serialize(("null", "array"), 2) == b"*-1\r\n"
    assert serialize(("null", "bulk"), 3) == b"_\r\n"
    assert serialize(("double", b"1.5"), 2) == b"$3\r\n1.5\r\n"
    assert serialize(("boolean", True), 2) == b":1\r\n"
    assert serialize(("push", [("bulk", b"x")]), 3) == b">1\r\n$1\r\nx\r\n"


def test_inline_commands_and_protocol_errors() -> None:
    assert CommandParser().feed(b'SET k "a b\\n"\r\nPING\r\n') == [
        [b"SET", b"k", b"a b\n"],
        [b"PING"],
    ]
    assert split_inline(b"MSET 'it\\'s' \"\\x41\"") == [b"MSET", b"it's", b"A"]
    with pytest.raises(RemoteProtocolError) as err:
        CommandParser().feed(b"*1\r\n+x\r\n")
    assert err.value.code == "ERR Protocol error: expected '$', got '+'"


# ---------------------------------------------------------------- recorder


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_recorder_pairs_replies_tracks_state_and_keeps_pushes() -> None:
    from devbox.wire.redis.recorder import RedisRecorder

    clock = Clock()
    rec = RedisRecorder(clock)
    rec.from_client(encode_command([b"SELECT", b"2"]) + encode_command([b"multi"]))
    rec.from_client(encode_command([b"INCR", b"n"]) + encode_command([b"EXEC"]))
    clock.t += 0.004
    rec.from_upstream(b"+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n:1\r\n")
    rec.from_client(encode_command([b"SUBSCRIBE", b"a", b"b"]))
    rec.from_upstream(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
    rec.from_upstream(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
    clock.t += 0.5
    rec.from_upstream(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n")
    rec.from_client(encode_command([b"PING"]))
    stored = rec.take_stored() + rec.close()
    by_cmd = [(o.get("command", "push"), o.get("db")) for o in stored]
    assert by_cmd == [
        ("SELECT", 0),
        ("MULTI", 2),
        ("INCR", 2),
        ("EXEC", 2),
        ("SUBSCRIBE", 2),
        ("push", None),
        ("PING", 2),
    ]
    assert stored[2]["queued"] is True
    assert stored[3]["transaction"] == [["INCR", "n"]]
    assert stored[3]["latency_ms"] == 4.0
    assert len(stored[4]["replies"]) == 2
    assert stored[5]["push"]["value"][2] == {"type": "bulk", "value": "hi"}
    assert stored[6]["incomplete"] is True


# ---------------------------------------------------------------- mock connection


def _cmd(name: str, *args: Any, reply: Value, **extra: Any) -> dict[str, Any]:
    return {"command": name, "args": list(args), "reply": reply_to_json(reply), **extra}


def _mock(objs: list[dict[str, Any]], **options: Any) -> Any:
    for i, o in enumerate(objs, start=1):
        o.setdefault("connection", 1)
        o.setdefault("seq", i)
    index = KIND.load([("rec.json", i, o) for i, o in enumerate(objs)])
    return KIND.mock_connection(index, MockOptions("cache", **options))


def _send(conn: Any, *cmds: list[bytes]) -> list[Any]:
    return list(conn.data_received(b"".join(encode_command(c) for c in cmds)))


def _bytes(outs: list[Any]) -> bytes:
    return b"".join(o.data for o in outs if isinstance(o, Reply | Miss))


def test_nth_call_sequences_and_pipelining_answer_in_one_write() -> None:
    objs = [_cmd("INCR", "n", reply=("integer", i)) for i in (1, 2, 3)]
    objs.append(_cmd("GET", "n", reply=("bulk", b"3")))
    conn = _mock(objs)
    outs = _send(conn, [b"incr", b"n"], [b"INCR", b"n"], [b"GET", b"n"])
    assert [type(o) for o in outs] == [Hit, Hit, Hit, Reply]
    assert outs[-1].data == b":1\r\n:2\r\n$1\r\n3\r\n"
    assert _bytes(_send(conn, [b"INCR", b"n"], [b"INCR", b"n"])) == b":3\r\n:3\r\n"
    conn.index.reset()
    assert _bytes(_send(conn, [b"INCR", b"n"])) == b":1\r\n"


def test_handshake_database_and_protocol_are_per_connection() -> None:
    objs = [
        _cmd("GET", "k", reply=("bulk", b"zero")),
        _cmd("GET", "k", reply=("bulk", b"one"), db=1),
        _cmd("HGETALL", "h", reply=("map", [(("bulk", b"a"), ("bulk", b"1"))])),
    ]
    conn = _mock(objs)
    hello = _bytes(_send(conn, [b"HELLO", b"3", b"AUTH", b"u", b"whatever"]))
    assert hello.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    assert _bytes(_send(conn, [b"HGETALL", b"h"])) == b"%1\r\n$1\r\na\r\n$1\r\n1\r\n"
    out = _bytes(_send(conn, [b"SELECT", b"1"], [b"GET", b"k"], [b"CLIENT", b"SETNAME", b"x"]))
    assert out == b"+OK\r\n$3\r\none\r\n+OK\r\n"
    other = _mock(objs)  # a second connection starts in RESP2, database 0
    assert _bytes(_send(other, [b"GET", b"k"], [b"HGETALL", b"h"])) == (
        b"$4\r\nzero\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    )


def test_transactions_match_on_the_queued_commands() -> None:
    objs = [
        _cmd(
            "EXEC",
            reply=("array", [("integer", 5), ("bulk", b"5")]),
            transaction=[["INCR", "c"], ["GET", "c"]],
        ),
    ]
    conn = _mock(objs)
    out = _bytes(_send(conn, [b"MULTI"], [b"incr", b"c"], [b"GET", b"c"], [b"EXEC"]))
    assert out == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:5\r\n$1\r\n5\r\n"
    assert _bytes(_send(conn, [b"EXEC"])) == b"-ERR EXEC without MULTI\r\n"
    outs = _send(conn, [b"MULTI"], [b"GET", b"c"], [b"EXEC"])
    miss = [o for o in outs if isinstance(o, Miss)]
    assert miss and miss[0].nearest == "MULTI … EXEC [INCR c; GET c]"
    assert _bytes(_send(conn, [b"MULTI"], [b"GET", b"c"], [b"DISCARD"])).endswith(b"+OK\r\n")


def test_miss_names_the_nearest_and_blocking_and_pushes_keep_recorded_timing() -> None:
    objs = [
        _cmd("GET", "user:1", reply=("bulk", b"ada")),
        _cmd("BLPOP", "q", "1", reply=("null", "array"), latency_ms=1000.0),
        _cmd(
            "SUBSCRIBE",
            "news",
            at_ms=10.0,
            latency_ms=1.0,
            reply=("push", [("bulk", b"subscribe"), ("bulk", b"news"), ("integer", 1)]),
        ),
        {
            "push": reply_to_json(
                ("push", [("bulk", b"message"), ("bulk", b"news"), ("bulk", b"a")])
            ),
            "at_ms": 111.0,
        },
        {
            "push": reply_to_json(
                ("push", [("bulk", b"message"), ("bulk", b"news"), ("bulk", b"b")])
            ),
            "at_ms": 311.0,
        },
    ]
    conn = _mock(objs)
    [miss] = _send(conn, [b"GET", b"user:2"])
    assert isinstance(miss, Miss)
    assert miss.data == (
        b"-DEVBOXMISS no recorded reply for GET user:2; nearest recorded: GET user:1\r\n"
    )
    outs = _send(conn, [b"BLPOP", b"q", b"1"])
    assert [o.delay_s for o in outs if isinstance(o, Reply)] == [1.0]
    outs = _send(conn, [b"SUBSCRIBE", b"news"])
    assert [round(o.delay_s, 3) for o in outs if isinstance(o, Reply)] == [0.0]
    # each message is made when it is due, at its recorded time from the subscription
    wakes = [o for o in outs if isinstance(o, Wake)]
    assert [round(o.delay_s, 3) for o in wakes] == [0.1, 0.3]
    replies = [r for w in wakes for r in conn.wake(w.token) if isinstance(r, Reply)]
    assert replies[1].data.endswith(b"$1\r\nb\r\n")
    assert replies[0].data.startswith(b"*3\r\n")  # RESP2 client: pushes arrive as arrays
    assert conn.wake(wakes[0].token) == []  # each once
    # a RESET leaves the subscription: none of its messages comes after
    again = conn.__class__(conn.index, conn.options)
    wakes = [o for o in _send(again, [b"SUBSCRIBE", b"news"]) if isinstance(o, Wake)]
    assert wakes and _bytes(_send(again, [b"RESET"])) == b"+RESET\r\n"
    assert [r for w in wakes for r in again.wake(w.token)] == []
    assert _bytes(_send(conn, [b"PING"])) == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"


def test_redacted_recordings_still_match_live_values() -> None:
    from devbox.wire.files import value_redactor

    redact = value_redactor(None)
    stored = KIND.redact(_cmd("GET", "mail:alice@example.com", reply=("bulk", b"x")), redact)
    assert "alice@example.com" not in str(stored)
    conn = _mock([stored], redact_value=redact)
    assert _bytes(_send(conn, [b"GET", b"mail:alice@example.com"])) == b"$1\r\nx\r\n"
    auth = KIND.redact(_cmd("AUTH", "admin", "hunter2-secret", reply=("simple", b"OK")), redact)
    assert "hunter2" not in str(auth) and "admin" not in str(auth)


def test_garbage_gets_the_redis_error_then_close() -> None:
    conn = _mock([])
    [out] = conn.data_received(b"*2\r\n$3\r\nGET\r\n:1\r\n")
    assert isinstance(out, Reply) and out.close
    assert out.data == b"-ERR Protocol error: expected '$', got ':'\r\n"

"""The Redis mock's fast paths give exactly what the general path gives.

The same command stream is fed to three mocks built from the same recording: one command
per read (the repeated-read memo answers every repeat), everything in one read (the
pipelined loop), and cut at random points (partial reads: the parser's buffer, never the
memo). Replies, hits and misses must be identical, whatever the commands: hits with
nth-call sequences, misses, a redacted argument, local handshakes, SELECT, MULTI/EXEC."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.wire import files
from devbox.wire.contract import Hit, Miss, MockOptions, Output, Reply
from devbox.wire.redis import KIND
from devbox.wire.redis.resp import encode_command
from devbox.wire.redis.store import redact_args, redact_object

REDACT = files.value_redactor(None)
OK = {"type": "simple", "value": "OK"}
EMAIL = "alice@example.com"


def _obj(seq: int, command: str, args: list[str], reply: dict[str, Any], db: int = 0) -> Any:
    return {
        "connection": 1,
        "seq": seq,
        "db": db,
        "command": command,
        "args": args,
        "reply": reply,
    }


STORED = [
    _obj(1, "SET", ["k", "v"], {"type": "simple", "value": "OK"}),
    _obj(2, "GET", ["k"], {"type": "bulk", "value": "v1"}),
    _obj(3, "GET", ["k"], {"type": "bulk", "value": "v2"}),
    _obj(4, "INCR", ["c"], {"type": "integer", "value": 1}),
    _obj(5, "INCR", ["c"], {"type": "integer", "value": 2}),
    _obj(6, "INCR", ["c"], {"type": "integer", "value": 3}),
    _obj(7, "GET", ["user", REDACT("arg", EMAIL)], {"type": "bulk", "value": "found"}),
    _obj(8, "GET", ["k"], {"type": "bulk", "value": "db1"}, db=1),
    {
        "connection": 1,
        "seq": 9,
        "command": "EXEC",
        "args": [],
        "transaction": [["INCR", "c"], ["GET", "k"]],
        "reply": {
            "type": "array",
            "value": [{"type": "integer", "value": 9}, {"type": "bulk", "value": "tx"}],
        },
    },
]

COMMANDS: list[list[bytes]] = [
    [b"GET", b"k"],
    [b"get", b"k"],
    [b"INCR", b"c"],
    [b"SET", b"k", b"v"],
    [b"GET", b"user", EMAIL.encode()],
    [b"GET", b"nope"],
    [b"PING"],
    [b"SELECT", b"1"],
    [b"SELECT", b"0"],
    [b"MULTI"],
    [b"EXEC"],
    [b"ECHO", b"hi"],
    [b"CLIENT", b"SETNAME", b"svc"],
]


def _run(chunks: list[bytes]) -> tuple[bytes, list[str]]:
    index = KIND.load([("rec.json", i + 2, o) for i, o in enumerate(STORED)])
    conn = KIND.mock_connection(index, MockOptions("cache", redact_value=REDACT))
    wire = b""
    seen: list[str] = []
    for chunk in chunks:
        outs: list[Output] = conn.data_received(chunk)
        for out in outs:
            if isinstance(out, Hit):
                seen.append(out.exchange_id)
            elif isinstance(out, Miss):
                seen.append("miss:" + out.request)
                wire += out.data
            elif isinstance(out, Reply):
                wire += out.data
    return wire, seen


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(COMMANDS))), min_size=1, max_size=30),
    st.lists(st.integers(1, 40), min_size=1, max_size=30),
)
def test_one_per_read_pipelined_and_split_reads_answer_alike(
    picks: list[int], cuts: list[int]
) -> None:
    commands = [encode_command(COMMANDS[i]) for i in picks]
    stream = b"".join(commands)
    split: list[bytes] = []
    pos = 0
    for n in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        if pos >= len(stream):
            break
        split.append(stream[pos : pos + n])
        pos += n
    one_per_read = _run(commands)
    assert _run([stream]) == one_per_read
    assert _run(split) == one_per_read


def test_repeats_follow_the_recorded_sequence_and_a_redacted_argument_matches() -> None:
    get, incr = encode_command([b"GET", b"k"]), encode_command([b"INCR", b"c"])
    secret = encode_command([b"GET", b"user", EMAIL.encode()])
    wire, seen = _run([get, get, get, incr, incr, incr, incr, secret, secret])
    assert wire == (
        b"$2\r\nv1\r\n$2\r\nv2\r\n$2\r\nv2\r\n:1\r\n:2\r\n:3\r\n:3\r\n$5\r\nfound\r\n" * 1
        + b"$5\r\nfound\r\n"
    )
    assert seen == ["1.2", "1.3", "1.3", "1.4", "1.5", "1.6", "1.6", "1.7", "1.7"]
    # a read holding the last bytes of a command is never taken for that command
    wire, seen = _run([get[:-2], get[-2:], get[-2:]])
    assert seen[:1] == ["1.2"] and len(seen) == 1


def test_a_key_name_is_stored_verbatim_and_matched_through_the_redaction_memo() -> None:
    # issue 13: "key:" + a token read as a credential; key:__rand_int__ is a key name
    sent = [b"SET", b"key:__rand_int__", b"x"]
    recorded = redact_object(_obj(10, "SET", ["key:__rand_int__", "x"], OK), REDACT)
    assert recorded["args"] == ["key:__rand_int__", "x"]
    assert redact_args(sent, REDACT) == sent
    index = KIND.load([("rec.json", i + 2, o) for i, o in enumerate([*STORED, recorded])])
    assert index.redacted  # the e-mail argument: live arguments are redacted before matching
    conn = KIND.mock_connection(index, MockOptions("cache", redact_value=REDACT))
    for _ in range(2):  # the second one is answered from the memo
        outs = conn.data_received(encode_command(sent))
        assert [o.exchange_id for o in outs if isinstance(o, Hit)] == ["1.10"]
        assert b"".join(o.data for o in outs if isinstance(o, Reply)) == b"+OK\r\n"
    assert index.redacted_memo[tuple(sent)] == sent

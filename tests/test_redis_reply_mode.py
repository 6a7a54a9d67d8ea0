"""``CLIENT REPLY OFF|SKIP|ON``: a client that turns replies off sends commands the server
runs without answering. The same script of commands goes to a real redis-server, through
devbox's recording relay, and to the mock made from that recording: each must send the
client the very bytes the real server sent, and the recording must pair every reply with
the command it answered (before, each reply after an unanswered command was stored as
the answer to the one before it)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from loop_support import Loop
from redis_helpers import Mock, Recording, redis_server

from devbox.wire.redis.resp import encode_command

SCRIPT: list[list[bytes]] = [
    [b"SET", b"a", b"1"],
    [b"CLIENT", b"REPLY", b"OFF"],
    [b"SET", b"b", b"2"],
    [b"GET", b"a"],
    [b"INCR", b"n"],
    [b"NOSUCHCOMMAND"],  # its error is not sent either
    [b"CLIENT", b"REPLY", b"ON"],
    [b"GET", b"b"],
    [b"CLIENT", b"REPLY", b"SKIP"],
    [b"INCR", b"n"],
    [b"GET", b"n"],
    [b"CLIENT", b"REPLY", b"SKIP"],
    [b"CLIENT", b"REPLY", b"SKIP"],  # the skip moves on to the command after this one
    [b"INCR", b"n"],
    [b"GET", b"n"],
    [b"CLIENT", b"REPLY", b"OFF"],
    [b"CLIENT", b"REPLY", b"SKIP"],  # nothing while off
    [b"SELECT", b"3"],
    [b"SET", b"c", b"in 3"],
    [b"CLIENT", b"REPLY", b"BOGUS"],
    [b"CLIENT", b"REPLY", b"ON"],
    [b"GET", b"c"],
    [b"CLIENT", b"REPLY", b"BOGUS"],
    [b"CLIENT", b"REPLY", b"OFF"],
    [b"RESET"],  # replies on again, database 0
    [b"GET", b"a"],
    [b"ECHO", b"done"],
]
# what redis-server 7 answers to SCRIPT, reply by reply
EXPECTED = (
    b"+OK\r\n"
    b"+OK\r\n"
    b"$1\r\n2\r\n"
    b"$1\r\n2\r\n"
    b"$1\r\n3\r\n"
    b"+OK\r\n"
    b"$4\r\nin 3\r\n"
    b"-ERR syntax error\r\n"
    b"+RESET\r\n"
    b"$1\r\n1\r\n"
    b"$4\r\ndone\r\n"
)


def _run(port: int, one_by_one: bool) -> bytes:
    """The bytes the client got for SCRIPT: sent in one write, or one write per command
    (a pause between, so the other side reads them apart)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if one_by_one:
            for args in SCRIPT:
                s.sendall(encode_command(args))
                time.sleep(0.002)
        else:
            s.sendall(b"".join(encode_command(a) for a in SCRIPT))
        got = b""
        deadline = time.monotonic() + 10
        while not got.endswith(b"$4\r\ndone\r\n") and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.parametrize("one_by_one", [False, True], ids=["pipelined", "one-by-one"])
def test_replies_turned_off_are_recorded_and_mocked_as_the_server_sent_them(
    tmp_path: Path, loop: Loop, one_by_one: bool
) -> None:
    with redis_server(tmp_path / "redis") as server:
        direct = _run(server.port, one_by_one)
        server_keys = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        server_keys.sendall(encode_command([b"FLUSHALL"]))
        assert server_keys.recv(100) == b"+OK\r\n"
        server_keys.close()
        rec = Recording(loop, server.port).start()
        relayed = _run(rec.port, one_by_one)
        rec.close()
    assert direct == EXPECTED
    assert relayed == EXPECTED

    stored = [o for o in rec.stored if "command" in o]
    assert [o["command"] for o in stored] == [a[0].decode() for a in SCRIPT]
    answered = [bool(o.get("reply") or o.get("replies")) for o in stored]
    silent = [o.get("noreply", False) for o in stored]
    assert answered == [not x for x in silent]
    assert sum(answered) == EXPECTED.count(b"\r\n") - EXPECTED.count(b"$")  # one per reply
    # each reply stored with the command it answered
    replies = {(o["command"], *o["args"]): o.get("reply") for o in stored if "reply" in o}
    assert replies[("GET", "b")] == {"type": "bulk", "value": "2"}
    assert replies[("GET", "c")] == {"type": "bulk", "value": "in 3"}
    assert replies[("CLIENT", "REPLY", "BOGUS")] == {"type": "error", "value": "ERR syntax error"}
    assert [o["db"] for o in stored if o["command"] == "GET" and o["args"] == ["c"]] == [3]
    assert not any(o.get("incomplete") for o in stored)

    m = Mock(loop, rec.stored).start()
    mocked = _run(m.port, one_by_one)
    m.close()
    assert mocked == EXPECTED
    assert m.misses == []


def _cmd(*args: str) -> list[bytes]:
    return [a.encode() for a in args]


# found by an adversarial run, each against redis-server 7: what it does, the relay's
# recording and the mock must do alike
SCRIPTS = {
    # RESET's own +RESET is skipped when a skip is on; replies are on after it
    "skip-reset": [_cmd("CLIENT", "REPLY", "SKIP"), _cmd("RESET"), _cmd("PING")],
    # (un)subscription replies go out as pushes, skipped or not, off or not
    "skip-subscribe": [
        _cmd("CLIENT", "REPLY", "SKIP"),
        _cmd("SUBSCRIBE", "a", "b"),
        _cmd("PING"),
        _cmd("RESET"),
    ],
    "off-subscribe": [
        _cmd("CLIENT", "REPLY", "OFF"),
        _cmd("SUBSCRIBE", "a"),
        _cmd("UNSUBSCRIBE"),
        _cmd("CLIENT", "REPLY", "ON"),
        _cmd("PING"),
    ],
    # refused with a subscription, after the same commands answered before it (each
    # gets its own recorded reply), and EXEC with no MULTI refused there too
    "refused-repeats": [
        _cmd("SELECT", "0"),
        _cmd("ECHO", "x"),
        _cmd("CLIENT", "SETNAME", "n"),
        _cmd("SUBSCRIBE", "a"),
        _cmd("SELECT", "0"),
        _cmd("ECHO", "x"),
        _cmd("CLIENT", "SETNAME", "n"),
        _cmd("EXEC"),
        _cmd("RESET"),
        _cmd("SELECT", "0"),
    ],
    # RESP2 with a subscription: CLIENT REPLY is refused and changes nothing
    "subscribed-refused": [
        _cmd("SUBSCRIBE", "a"),
        _cmd("CLIENT", "REPLY", "SKIP"),
        _cmd("PING"),
        _cmd("RESET"),
    ],
}


def _send(port: int, script: list[list[bytes]]) -> bytes:
    """The bytes the client got for ``script``, sent in one write, read until the
    connection has been quiet for 0.3 s (or 10 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"".join(encode_command(a) for a in script) + encode_command([b"QUIT"]))
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break  # QUIT: the server closes once it has answered all
            got += chunk
        return got


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_skips_resets_and_subscriptions_as_redis_server_does(
    tmp_path: Path, loop: Loop, name: str
) -> None:
    script = SCRIPTS[name]
    with redis_server(tmp_path / "redis") as server:
        direct = _send(server.port, script)
        rec = Recording(loop, server.port).start()
        relayed = _send(rec.port, script)
        rec.close()
    assert relayed == direct and direct.endswith(b"+OK\r\n")  # QUIT's
    assert not any(o.get("incomplete") for o in rec.stored)
    m = Mock(loop, rec.stored).start()
    mocked = _send(m.port, script)
    m.close()
    assert mocked == direct

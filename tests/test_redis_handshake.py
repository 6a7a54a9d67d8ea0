"""A connection's set-up, answered by the Redis mock itself, must be what the recorded
server answered: each workload runs through the recording relay against a real
redis-server (Debian's, 7.0 here), then against the mock, with real clients (redis-py,
redis-cli), and what the client got must be the same both times.

Each case was a difference a real client saw: ``CLIENT SETINFO`` accepted by the mock but
unknown to a server before 7.2, ``HELLO`` reporting the mock's own connection id (a
``CLIENT TRACKING … REDIRECT id`` then missed), a ``SELECT`` of a database the server
lacks accepted, and a server that refused ``HELLO 3`` (the recorder went on reading its
replies as RESP3, and lost the pub/sub messages; the mock accepted it)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from conftest import free_port, stop_process, wait_port
from loop_support import Loop
from redis_helpers import Mock, Recording, ask, outcome, raw_conn, record_then_mock, redis_server


@contextmanager
def server_without_hello(directory: Path) -> Iterator[int]:
    """A redis-server with ``HELLO`` renamed away: it answers it as a Redis older than 6
    (or a proxy without RESP3) does, ``-ERR unknown command``. Stopped by its PID."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is missing: scripts/setup installs it"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    args += ["no", "--dir", str(directory), "--logfile", str(directory / "log")]
    proc = subprocess.Popen(
        [*args, "--rename-command", "HELLO", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port
    finally:
        stop_process(proc)


def _cli(port: int, *args: str) -> tuple[str, str]:
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli is missing: scripts/setup installs redis-tools"
    done = subprocess.run(
        [cli, "-p", str(port), *args], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout, done.stderr


# ---------------------------------------------------------------- HELLO, client ids


def test_hello_and_client_id_report_the_recorded_ids_and_tracking_redirect_matches(
    tmp_path: Path, loop: Loop
) -> None:
    def run(port: int) -> Any:
        # RESP2 client-side caching: invalidations go to another connection, named by id
        a = raw_conn(port)
        a_id = ask(a, "CLIENT", "ID")
        out = [ask(a, "SUBSCRIBE", "__redis__:invalidate")]
        b = raw_conn(port)
        out += [ask(b, "CLIENT", "TRACKING", "ON", "REDIRECT", a_id), ask(b, "GET", "k")]
        c = raw_conn(port, protocol=3)
        out += [ask(c, "HELLO", "3"), ask(c, "CLIENT", "ID"), ask(c, "SET", "k", "v")]
        out.append(outcome(a.read_response))  # the invalidation of k, pushed to a
        for conn in (a, b, c):
            conn.disconnect()
        return out, a_id

    recorded, replayed, rec, m = record_then_mock(tmp_path, loop, run)
    hello = recorded[0][3]
    assert hello[b"id"] == recorded[0][4] and hello[b"version"].startswith(b"7.")
    assert recorded[0][1] == b"OK" and recorded[0][-1][:2] == [b"message", b"__redis__:invalidate"]
    assert replayed == recorded
    assert m.misses == []
    # devbox record numbers the connections of all its dependencies together: the
    # Redis ones may be 1, 3, 5…, and are still matched by their place
    spread = [{**o, "connection": 2 * o["connection"] - 1} for o in rec.stored]
    m = Mock(loop, spread).start()
    replayed = run(m.port)
    m.close()
    assert replayed == recorded


# ---------------------------------------------------------------- CLIENT SETINFO


def test_client_setinfo_is_refused_as_the_recorded_server_refused_it(
    tmp_path: Path, loop: Loop
) -> None:
    def run(port: int) -> Any:
        r = redis.Redis(port=port, protocol=2, single_connection_client=True)
        out = [r.ping(), outcome(lambda: r.client_setinfo("LIB-NAME", "svc"))]
        out += [outcome(lambda: r.client_setinfo("LIB-VER", "1.0")), r.set("k", "v")]
        r.close()
        return out

    recorded, replayed, _rec, m = record_then_mock(tmp_path, loop, run)
    assert recorded[1][0] == "ResponseError" and "SETINFO" in recorded[1][1]  # before 7.2
    assert replayed == recorded
    assert m.misses == []


def test_client_setinfo_never_recorded_is_answered_as_the_servers_version_would(
    tmp_path: Path, loop: Loop
) -> None:
    # redis-cli 7.0 sends no CLIENT SETINFO: only the version in the recorded HELLO tells
    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        recorded = _cli(rec.port, "-3", "SET", "k", "v")
        rec.close()
        direct = [_cli(server.port, "CLIENT", "SETINFO", "LIB-NAME", "x")]
        direct.append(_cli(server.port, "CLIENT", "SETINFO", "LIB-NAME"))
    assert recorded == ("OK\n", "")
    m = Mock(loop, rec.stored).start()
    replayed = [_cli(m.port, "CLIENT", "SETINFO", "LIB-NAME", "x")]
    replayed.append(_cli(m.port, "CLIENT", "SETINFO", "LIB-NAME"))
    m.close()
    assert "unknown subcommand" in direct[0][0]
    assert replayed == direct


# ---------------------------------------------------------------- SELECT


def test_select_of_a_database_never_recorded(tmp_path: Path, loop: Loop) -> None:
    def recorded_run(port: int) -> Any:
        conn = raw_conn(port)
        out = [ask(conn, "SELECT", "16"), ask(conn, "SELECT", "3")]
        out += [ask(conn, "SET", "k", "in 3"), ask(conn, "GET", "k")]
        conn.disconnect()
        return out

    def later(port: int) -> Any:
        # databases 0-15 by default: one above the first refused is refused too
        r = redis.Redis(port=port, db=40, protocol=2)
        out = [outcome(lambda: r.get("k"))]
        r.close()
        return out

    with redis_server(tmp_path / "redis") as server:
        rec = Recording(loop, server.port).start()
        recorded = recorded_run(rec.port)
        rec.close()
        direct = later(server.port)
    assert recorded[0] == ("ResponseError", "DB index is out of range")
    m = Mock(loop, rec.stored).start()
    assert later(m.port) == direct
    # a database the server has but the recording never saw: the miss names it
    r = redis.Redis(port=m.port, db=5, protocol=2)
    got = outcome(lambda: r.get("k"))
    r.close()
    m.close()
    assert got[0] == "ResponseError"
    assert got[1] == (
        "DEVBOXMISS no recorded reply for GET k (db 5): nothing was recorded in db 5; "
        "nearest recorded: GET k (db 3)"
    )


# ---------------------------------------------------------------- a server without HELLO


def test_hello_3_refused_by_the_server_keeps_the_recorder_and_the_mock_in_resp2(
    tmp_path: Path, loop: Loop
) -> None:
    def run(port: int) -> Any:
        sub = raw_conn(port)
        sub._sock.settimeout(5)  # a message the mock does not send must not hang the test
        # a client trying RESP3 first and going on in RESP2 when the server says no
        out = [ask(sub, "HELLO", "3"), ask(sub, "SUBSCRIBE", "ch")]
        pub = redis.Redis(port=port, protocol=2)
        out += [pub.publish("ch", "one"), pub.publish("ch", "two")]
        out += [outcome(sub.read_response), outcome(sub.read_response)]
        out += [ask(sub, "PING"), ask(sub, "UNSUBSCRIBE", "ch")]
        out.append(ask(sub, "GET", "k"))
        pub.close()
        sub.disconnect()
        # redis-cli -3 warns that HELLO failed and prints RESP2 replies
        out.append(_cli(port, "-3", "HSET", "h", "a", "1"))
        out.append(_cli(port, "-3", "--no-raw", "HGETALL", "h"))  # a map: 1# "a" => "1"
        return out

    with server_without_hello(tmp_path / "redis") as port:
        rec = Recording(loop, port).start()
        recorded = run(rec.port)
        rec.close()
    assert recorded[0][0] == "ResponseError" and "unknown command 'HELLO'" in recorded[0][1]
    assert recorded[4:6] == [[b"message", b"ch", b"one"], [b"message", b"ch", b"two"]]
    assert recorded[-1] == ('1) "a"\n2) "1"\n', "HELLO 3 failed: ERR " + recorded[0][1] + "\n")
    assert all(o.get("proto", 2) == 2 for o in rec.stored)
    m = Mock(loop, rec.stored).start()
    replayed = run(m.port)
    m.close()
    assert replayed == recorded

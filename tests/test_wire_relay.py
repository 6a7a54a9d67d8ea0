"""The generic recording relay (``devbox.wire.tcp.RelayConnection``) at its edges, with a
real redis-server behind it and raw sockets in front: a client that half-closes still
gets every answer and the commands are stored; a real server that is down ends the
client's connection and is reported; bytes a client sends before the real server has
answered the connect are not lost; a pipelined burst larger than the socket buffers
passes both ways."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from conftest import free_port
from loop_support import Loop
from redis_helpers import Recording, redis_server

from devbox.wire import tcp
from devbox.wire.redis import KIND


def _read_until_closed(sock: socket.socket, limit: int = 1 << 24) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_half_closed_client_gets_every_answer_and_its_commands_are_stored(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as server:
        loop = Loop()
        try:
            rec = Recording(loop, server.port).start()
            with socket.create_connection(("127.0.0.1", rec.port), timeout=10) as s:
                s.sendall(
                    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                )
                s.shutdown(socket.SHUT_WR)  # nothing more to say; the answers still come
                answers = _read_until_closed(s)
            rec.close()
        finally:
            loop.close()
    assert answers == b"+OK\r\n$2\r\nv1\r\n"
    commands = [(o["command"], o["args"]) for o in rec.stored if "command" in o]
    assert commands == [("SET", ["k", "v1"]), ("GET", ["k"])]


def test_a_real_server_that_is_down_ends_the_client_and_is_reported() -> None:
    loop = Loop()
    refused: list[OSError] = []
    ended = threading.Event()
    dead = free_port()  # nothing listens there
    try:

        def relay() -> tcp.RelayConnection:
            return tcp.RelayConnection(
                KIND.recorder_connection(),
                ("127.0.0.1", dead),
                lambda _objs: None,
                on_refused=refused.append,
                on_end=lambda _c: ended.set(),
            )

        async def start() -> int:
            server = await tcp.start_relay_server(relay, "127.0.0.1", 0)
            return int(server.sockets[0].getsockname()[1])

        port = loop.run(start())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            # Closed with no answer made up. Closed by FIN or, when the PING lands in the
            # relay's receive buffer after its last read, by RST (the kernel resets a
            # socket closed with unread bytes): both end the client, so both pass.
            try:
                answer = _read_until_closed(s)
            except ConnectionResetError:
                answer = b""
            assert answer == b""
        assert ended.wait(10)
    finally:
        loop.close()
    assert len(refused) == 1 and isinstance(refused[0], ConnectionRefusedError)


def test_a_burst_larger_than_the_socket_buffers_passes_both_ways(tmp_path: Path) -> None:
    """10,000 pipelined SETs and GETs of 1 KiB values (about 20 MiB of traffic) sent
    while the answers are read on another thread: every answer arrives, in order, and
    every command is stored."""
    n = 10_000
    value = b"x" * 1024
    one = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1024\r\n" + value + b"\r\n"
    get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    expected = (b"+OK\r\n" + b"$1024\r\n" + value + b"\r\n") * n
    with redis_server(tmp_path) as server:
        loop = Loop()
        try:
            rec = Recording(loop, server.port).start()
            with socket.create_connection(("127.0.0.1", rec.port), timeout=30) as s:
                got: list[bytes] = []
                reader = threading.Thread(
                    target=lambda: got.append(_read_until_closed(s, len(expected)))
                )
                reader.start()
                s.sendall((one + get) * n)
                reader.join(60)
            rec.close()
        finally:
            loop.close()
    assert got and got[0] == expected
    assert sum(1 for o in rec.stored if o.get("command") == "GET") == n

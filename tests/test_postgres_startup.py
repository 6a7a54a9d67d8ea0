"""Start-up: the ParameterStatus messages a client gets depend on what it asked for in its
start-up packet (libpq's ``options``, asyncpg's ``server_settings``, ``application_name``).
Clients that start up differently are recorded through devbox's relay against a real
server, then replayed by the mock in another order (so the last recorded connection is
not the one that matches): each must get the ParameterStatus messages the server sent it,
byte for byte and in the server's order, read from the wire by a tee in front of both."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from pg_support import PgServer, WireServers, running_postgres

pytestmark = pytest.mark.slow

TZ_OPTIONS = "-c TimeZone=Asia/Tokyo -c DateStyle=ISO,DMY"
# each client asks its own query: a recorded answer holds the text the server wrote in
# that session's TimeZone, and answers are matched by SQL, not by session
STAMP = "SELECT '2024-03-01 12:00:00+00'::timestamptz AS t, %s AS who"


def stamp(who: str) -> str:
    return STAMP % f"'{who}'"


class Tee:
    """A TCP proxy to ``upstream`` that keeps what the server side sent on each
    connection (the client's view of the wire)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.received: list[bytearray] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            seen = bytearray()
            self.received.append(seen)
            threading.Thread(target=_pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client, seen), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pump(src: socket.socket, dst: socket.socket, seen: bytearray | None) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            if seen is not None:
                seen.extend(data)
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def parameter_statuses(wire: bytes) -> list[bytes]:
    """The ParameterStatus messages, as sent, up to the first ReadyForQuery."""
    pos = 1 if wire[:1] == b"N" else 0  # the answer to SSLRequest: one byte, no frame
    found: list[bytes] = []
    while pos + 5 <= len(wire):
        typ = wire[pos : pos + 1]
        (length,) = struct.unpack_from("!i", wire, pos + 1)
        if typ == b"S":
            found.append(bytes(wire[pos : pos + 1 + length]))
        if typ == b"Z":
            break
        pos += 1 + length
    return found


def psycopg_client(who: str, **kwargs: Any) -> Callable[[str], Any]:
    def run(url: str) -> Any:
        with psycopg.connect(url, autocommit=True, **kwargs) as c:
            info = c.info
            return [str(info.timezone), c.execute(stamp(who)).fetchone()]

    return run


def asyncpg_client(who: str, **kwargs: Any) -> Callable[[str], Any]:
    async def go(url: str) -> Any:
        conn = await asyncpg.connect(url, **kwargs)
        try:
            return [tuple(await conn.fetchrow(stamp(who)) or ())]
        finally:
            await conn.close()

    return lambda url: asyncio.run(go(url))


# recorded in this order; replayed in the reverse order
CLIENTS: list[tuple[str, Callable[[str], Any]]] = [
    ("psycopg", psycopg_client("a")),
    ("psycopg-options", psycopg_client("b", options=TZ_OPTIONS)),
    ("psycopg-app", psycopg_client("c", application_name="billing")),
    ("asyncpg", asyncpg_client("d")),
    (
        "asyncpg-settings",
        asyncpg_client(
            "e", server_settings={"TimeZone": "America/New_York", "DateStyle": "German"}
        ),
    ),
]


def run_all(
    url: str, tee: Tee, clients: list[tuple[str, Callable[[str], Any]]]
) -> dict[str, tuple[Any, list[bytes]]]:
    out: dict[str, tuple[Any, list[bytes]]] = {}
    for name, client in clients:
        before = len(tee.received)
        answer = client(url)
        out[name] = (answer, parameter_statuses(bytes(tee.received[before])))
    return out


@contextlib.contextmanager
def teed(port: int) -> Iterator[Tee]:
    tee = Tee(("127.0.0.1", port))
    try:
        yield tee
    finally:
        tee.close()


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    with running_postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def recorded(server: PgServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ws = WireServers()
    try:
        with teed(ws.relay((server.host, server.port))) as tee:
            url = f"postgresql://{server.user}:{server.password}@127.0.0.1:{tee.port}/app"
            live = run_all(url, tee, CLIENTS)
        stored = ws.stored_once(lambda s: any(o.get("sql") == stamp("e") for o in s))
    finally:
        ws.close()
    return live, stored


def replay(stored: list[dict[str, Any]], clients: list[tuple[str, Callable[[str], Any]]]) -> Any:
    ws = WireServers()
    try:
        with teed(ws.mock(stored)) as tee:
            return run_all(f"postgresql://devbox:whatever@127.0.0.1:{tee.port}/app", tee, clients)
    finally:
        ws.close()


def test_the_server_reported_what_each_client_asked_for(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    live, _ = recorded
    zones = {
        name: [m for m in statuses if m[5:].startswith(b"TimeZone\x00")]
        for name, (_, statuses) in live.items()
    }
    assert zones["psycopg-options"][0].endswith(b"Asia/Tokyo\x00")
    assert zones["asyncpg-settings"][0].endswith(b"America/New_York\x00")
    assert live["psycopg-options"][0][0] == "Asia/Tokyo"


def test_each_mock_connection_gets_the_parameter_status_of_its_own_start_up(
    recorded: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    live, stored = recorded
    mocked = replay(stored, CLIENTS[::-1])
    for name, _ in CLIENTS:
        assert mocked[name][1] == live[name][1], name
        assert mocked[name][0] == live[name][0], name


def test_a_start_up_never_recorded_reports_what_the_client_asked_for(
    server: PgServer, recorded: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    """Options no recorded connection sent: the nearest recorded connection's values,
    with the client's own settings as the server reports them (``ISO, DMY`` learnt from
    the recorded ``ISO,DMY``) -- the same values the real server sends."""
    _, stored = recorded
    clients = [
        ("paris", psycopg_client("b", options="-c TimeZone=Europe/Paris -c DateStyle=ISO,DMY")),
        ("asyncpg-paris", asyncpg_client("e", server_settings={"TimeZone": "Europe/Paris"})),
    ]
    with teed(server.port) as tee:
        url = f"postgresql://{server.user}:{server.password}@127.0.0.1:{tee.port}/app"
        direct = run_all(url, tee, clients)
    mocked = replay(stored, clients)
    for name, _ in clients:
        assert mocked[name][1] == direct[name][1], name

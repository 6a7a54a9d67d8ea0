"""A SCRAM exchange the client gets wrong (its first message without the ``r=`` nonce,
without the GS2 header, cut short): the mock answers as the real server does, an
ErrorResponse with SQLSTATE 08P01 "malformed SCRAM message", then closes the connection,
where it once let a KeyError end the connection's task with no answer at all."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from pg_support import PASSWORD, WireServers, running_postgres

pytestmark = pytest.mark.slow

MALFORMED = [
    b"n,,n=,x=1",  # no nonce
    b"n,,",  # no attributes at all
    b"garbage",  # no GS2 header
]


def _message(typ: bytes, body: bytes) -> bytes:
    return typ + struct.pack("!i", len(body) + 4) + body


def _read(sock: socket.socket) -> tuple[bytes, bytes]:
    """One backend message (type, body); (b"", b"") when the server closed."""
    head = b""
    while len(head) < 5:
        more = sock.recv(5 - len(head))
        if not more:
            return b"", b""
        head += more
    body = b""
    (length,) = struct.unpack("!i", head[1:])
    while len(body) < length - 4:
        more = sock.recv(length - 4 - len(body))
        if not more:
            return b"", b""
        body += more
    return head[:1], body


def scram_with(port: int, first: bytes) -> tuple[dict[str, str], bool]:
    """Start up as ``devbox``, answer the SASL request with ``first`` as the client's
    first message: (the ErrorResponse's fields, whether the connection then closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        params = b"user\x00devbox\x00database\x00app\x00\x00"
        sock.sendall(struct.pack("!ii", len(params) + 8, 196608) + params)
        typ, body = _read(sock)
        assert typ == b"R" and struct.unpack("!i", body[:4])[0] == 10, (typ, body)
        sasl = b"SCRAM-SHA-256\x00" + struct.pack("!i", len(first)) + first
        sock.sendall(_message(b"p", sasl))
        typ, body = _read(sock)
        fields = {item[:1].decode(): item[1:].decode() for item in body.split(b"\x00") if item}
        assert typ == b"E", (typ, body)
        return fields, _read(sock) == (b"", b"")


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    with running_postgres() as pg:
        ws = WireServers()
        try:
            yield pg.port, ws.mock([], auth="scram-sha-256", password=PASSWORD)
        finally:
            ws.close()


@pytest.mark.parametrize("first", MALFORMED)
def test_a_malformed_scram_message_is_answered_as_the_server_answers_it(
    ports: tuple[int, int], first: bytes
) -> None:
    server, mock = ports
    real, real_closed = scram_with(server, first)
    got, closed = scram_with(mock, first)
    assert (got["C"], got["M"], got["S"]) == (real["C"], real["M"], real["S"])
    assert got["C"] == "08P01"
    assert closed and real_closed

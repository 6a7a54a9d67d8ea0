"""A request whose method arrives split across reads (TCP segments) is answered exactly as
the same request delivered whole, by both of the mock's parsers (httptools/llhttp on the
fast path, the wire reader otherwise): known, unknown and malformed methods, first on the
connection or pipelined behind another request, cut at every byte of the method and fed
byte by byte, in-process and over a real socket."""

from __future__ import annotations

import socket
import time

import pytest
from mock_helpers import exchange, running, send_raw
from test_http1_differential import answer

METHODS = [
    b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS", b"TRACE",
    b"CONNECT", b"PROPFIND", b"PURGE", b"FOO", b"GETX", b"get", b"G@T", b"PRI", b"P",
]  # fmt: skip
FIRST = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"


def _request(method: bytes, target: bytes = b"/ok") -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("parser", ["httptools", "python"])
@pytest.mark.parametrize("method", METHODS, ids=[m.decode() for m in METHODS])
@pytest.mark.parametrize("pipelined", [False, True], ids=["first", "pipelined"])
def test_a_method_split_anywhere_is_answered_as_whole(
    parser: str, method: bytes, pipelined: bool
) -> None:
    prefix = FIRST if pipelined else b""
    raw = prefix + _request(method)
    whole = answer(parser, [raw])
    assert whole[0], "an answer (a status line) for every method"
    for cut in range(len(prefix) + 1, len(prefix) + len(method) + 1):
        assert answer(parser, [raw[:cut], raw[cut:]]) == whole, (method, cut)
    assert answer(parser, [raw[i : i + 1] for i in range(len(raw))]) == whole
    # and both parsers agree, whole or byte by byte
    other = "python" if parser == "httptools" else "httptools"
    assert answer(other, [raw]) == whole


def _byte_by_byte(port: int, data: bytes) -> bytes:
    """Each byte its own TCP segment (no Nagle), a pause after each so the server reads
    them one at a time; then read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i in range(len(data)):
                s.sendall(data[i : i + 1])
                time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a bad method is refused before the rest arrives: the answer is there
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


@pytest.mark.parametrize("parser", ["httptools", "python"])
def test_byte_by_byte_over_a_socket(parser: str) -> None:
    recorded = [exchange(1, "GET", "/ok"), exchange(2, "POST", "/up", body=b"hello")]
    with running(recorded, parser=parser) as (_fleet, port):
        for raw in (
            b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            b"FOO /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ):
            whole = send_raw(port, raw)
            assert whole.startswith(b"HTTP/1.1 "), whole
            assert _byte_by_byte(port, raw) == whole
        assert _byte_by_byte(port, raw.replace(b"FOO", b"GET")).endswith(b'{"n": 1}')

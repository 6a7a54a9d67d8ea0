"""An ``Upgrade`` the mock does not take (``h2c`` over plain HTTP/1.1, a WebSocket asked
of a recording of plain answers) is answered in HTTP/1.1 and the connection goes on, as
nginx does. The mock closed it after the answer, without ``Connection: close``: curl
``--http2 http://...`` (which asks for h2c) found its reused connection dead and said
"Connection died, retrying"."""

from __future__ import annotations

import socket
import subprocess

import pytest
from mock_helpers import exchange, running

from devbox.core.model import Exchange

UPGRADE_H2C = (
    b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
)


def _recording() -> list[Exchange]:
    return [exchange(1, "GET", "/a"), exchange(2, "GET", "/b")]


def test_curl_asking_for_h2c_reuses_the_connection() -> None:
    with running(_recording()) as (_fleet, port):
        done = subprocess.run(
            ["curl", "-sv", "--http2", f"http://127.0.0.1:{port}/a", f"http://127.0.0.1:{port}/b"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"n": 1}{"n": 2}'
    assert "Connection died" not in done.stderr
    assert "Re-using existing connection" in done.stderr


@pytest.mark.parametrize("parser", ["httptools", "python"])
def test_the_request_after_an_upgrade_in_the_same_read_is_answered(parser: str) -> None:
    with running(_recording(), parser=parser) as (_fleet, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(UPGRADE_H2C + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while got.count(b"HTTP/1.1 200") < 2 or not got.endswith(b'{"n": 2}'):
                chunk = s.recv(65536)
                assert chunk, f"closed after {got!r}"
                got += chunk
    first, second = got.split(b"HTTP/1.1 200")[1:]
    assert first.endswith(b'{"n": 1}') and second.endswith(b'{"n": 2}')
    assert b"101" not in got.split(b"\r\n", 1)[0]  # no protocol is switched

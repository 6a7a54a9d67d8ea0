"""A client that takes nothing of what the mock writes is let go after
``Limits.send_timeout_s`` (as nginx's ``send_timeout``), over HTTP/1.1 (pipelined asks
for a large answer, never read) and HTTP/2 (a window of 0, never opened): both held the
connection and the answers' memory for ever, since the idle timeout spares a connection
with answers pending. A slow reader that keeps taking some is never cut, however far
behind it is. Real sockets against the mock; ``h2`` as the HTTP/2 client."""

from __future__ import annotations

import socket
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from mock_helpers import running

from devbox.mock import Limits

BIG = bytes(range(256)) * 12_000  # ~3 MB
LIMITS = Limits(header_timeout_s=5, request_timeout_s=5, idle_timeout_s=30, send_timeout_s=1)


def exchange_big() -> Any:
    from mock_helpers import exchange

    return exchange(1, "GET", "/big", resp_body=BIG)


def timeouts(fleet: Any) -> int:
    return int(fleet.servers["dep"].timeouts)


def drain(s: socket.socket, seconds: float) -> tuple[int, str]:
    """(bytes read, how it ended) reading all there is for up to ``seconds``."""
    s.settimeout(seconds)
    n = 0
    try:
        while d := s.recv(1 << 20):
            n += len(d)
        return n, "closed"
    except ConnectionResetError:
        return n, "reset"
    except TimeoutError:
        return n, "open"


def test_an_http1_client_that_never_reads_is_let_go() -> None:
    with running([exchange_big()], limits=LIMITS) as (fleet, port):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        deadline = time.monotonic() + 15
        while timeouts(fleet) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        got, how = drain(s, 5)
        s.close()
        assert timeouts(fleet) == 1
    # cut: far less than the three answers it asked for, and not a clean end
    assert how in ("reset", "closed") and got < 3 * len(BIG)


def test_a_slow_reader_that_keeps_reading_is_not_cut() -> None:
    with running([exchange_big()], limits=LIMITS) as (fleet, port):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(10)
        data = b""
        started = time.monotonic()
        # 5 KB every 5 ms at most (3 s or more for it all): seconds behind the mock,
        # several times its send timeout
        while (chunk := s.recv(5000)) and time.monotonic() - started < 60:
            data += chunk
            time.sleep(0.005)
        s.close()
        assert time.monotonic() - started > 2 * LIMITS.send_timeout_s
        assert timeouts(fleet) == 0
    assert data.endswith(BIG)


def h2_client(port: int, window: int) -> tuple[socket.socket, h2.connection.H2Connection]:
    s = socket.create_connection(("127.0.0.1", port))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    c.send_headers(
        1,
        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/big")],
        end_stream=True,
    )
    s.sendall(c.data_to_send())
    return s, c


def test_an_http2_client_that_never_opens_its_window_is_let_go() -> None:
    with running([exchange_big()], limits=LIMITS) as (fleet, port):
        s, c = h2_client(port, 0)
        s.settimeout(15)
        events: list[Any] = []
        started = time.monotonic()
        try:
            while data := s.recv(65536):  # read, but never acknowledge: no WINDOW_UPDATE
                events += c.receive_data(data)
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started
        s.close()
        assert timeouts(fleet) == 1
    assert LIMITS.send_timeout_s <= waited < 10
    assert not any(isinstance(e, h2.events.StreamEnded) for e in events)


def test_an_http2_client_that_reads_slowly_gets_it_all() -> None:
    with running([exchange_big()], limits=LIMITS) as (fleet, port):
        s, c = h2_client(port, 65_535)
        s.settimeout(10)
        got = bytearray()
        ended = False
        started = time.monotonic()
        while not ended and time.monotonic() - started < 60:
            data = s.recv(65536)
            assert data, "the mock closed the connection"
            for e in c.receive_data(data):
                if isinstance(e, h2.events.DataReceived):
                    got += e.data
                    # opens the window again, a little late each time (~3 s in all)
                    time.sleep(0.005)
                    c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                ended = ended or isinstance(e, h2.events.StreamEnded)
            s.sendall(c.data_to_send())
        s.close()
        assert timeouts(fleet) == 0
    assert ended and bytes(got) == BIG

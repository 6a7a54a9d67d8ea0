"""The recording proxy against bad framing and half-closing clients, over real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from record_helpers import Upstream, start_upstream, write_profile

from devbox.core.profile import load_profile
from devbox.record import Recorder, RecordOptions


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.close()


@pytest.fixture
def port(tmp_path: Path, upstream: Upstream) -> Iterator[int]:
    rec = Recorder(load_profile(write_profile(tmp_path, {"dep": upstream.url})), RecordOptions())
    rec.start()
    try:
        yield rec.listener("dep").port
    finally:
        rec.stop()


def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``data``, half-close, read until the proxy closes: (bytes, seconds taken)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - t0


@pytest.mark.parametrize("size", [b"-1", b"g", b"5 5", b"0x5"])
def test_an_invalid_chunk_size_is_answered_400_at_once_and_closed(port: int, size: bytes) -> None:
    raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n"
    # no half-close here: the proxy itself must answer and close, not wait for the client
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        t0 = time.monotonic()
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 400 "), got[:200]
    # bounded by the socket timeout above: a held connection would fail the recv, not pass
    assert took < 10


def test_a_bad_chunk_after_good_pipelined_requests_answers_those_first(port: int) -> None:
    raw = (
        b"GET /n/1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"
    )
    got, _ = exchange(port, raw)
    assert got.startswith(b"HTTP/1.1 200 ") and b'{"n": 1}' in got, got[:300]
    assert got.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 400 " in got


def _three_then_half_close(port: int, i: int) -> int:
    raw = b"".join(b"GET /n/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (i * 10 + k) for k in range(3))
    got, _ = exchange(port, raw, timeout=30)
    return sum(b'{"n": %d}' % (i * 10 + k) in got for k in range(3))


def test_pipelined_requests_then_half_close_get_every_response(port: int) -> None:
    n = 300
    with ThreadPoolExecutor(max_workers=50) as pool:
        delivered = list(pool.map(lambda i: _three_then_half_close(port, i), range(n)))
    assert sum(delivered) == 3 * n, [i for i, d in enumerate(delivered) if d != 3][:20]

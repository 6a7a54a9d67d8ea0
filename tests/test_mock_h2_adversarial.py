"""Hostile HTTP/2 clients at a mock's one port (h2c with prior knowledge; TLS with ALPN h2
goes through the same ``H2MockConn``), compared with what nginx does:

- a client opening more streams than MAX_CONCURRENT_STREAMS gets those streams refused
  (RST_STREAM REFUSED_STREAM, RFC 9113 5.1.2, as nginx does); the connection and its
  other streams live on (h2 ended the whole connection with a GOAWAY);
- whole requests are answered as they arrive, so a client that sends more than the
  limit before our SETTINGS reach it (h2load -m 200) is not refused (nginx alike);
- a protocol error gets one GOAWAY (two went out: h2's and ours);
- a client that never reads (a PING flood, or answers asked for behind a wide-open
  window) cannot make the mock hold what it sends back: reading stops while the
  client does not read (the mock's write buffer grew with every byte the client sent,
  without bound; nginx stops reading or drops such a flooder), and every answer still
  arrives, whole and in order, once it reads; over TLS too (answers made while a
  read was decrypted were held in the TLS bridge until its end, out of the reach of
  the transport's flow control).

Frames are built and parsed raw (hyperframe, HPACK from the ``hpack`` package): the
point is to send what a well-behaved client library refuses to.
"""

from __future__ import annotations

import select
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator

import h2.errors
import hpack
import pytest
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from mock_helpers import exchange, running

from devbox.mock import Limits, MockFleet
from devbox.wire.ca import ensure_ca
from devbox.wire.tls import H2_PREFACE

BIG = bytes(range(256)) * 4096  # 1 MiB
MAX_WINDOW = 2**31 - 1


@pytest.fixture(scope="module")
def mock() -> Iterator[tuple[MockFleet, int]]:
    exchanges = [
        exchange(1, "GET", "/items/1", resp_body=b'{"sku": 1}'),
        exchange(
            2,
            "GET",
            "/big",
            resp_headers=(("Content-Type", "application/octet-stream"),),
            resp_body=BIG,
        ),
    ]
    with running(exchanges) as (fleet, port):
        yield fleet, port


class RawH2:
    """An h2c client that writes whatever frames it is given and parses what comes back."""

    def __init__(
        self, port: int, settings: dict[int, int] | None = None, *, tls: bool = False
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:  # ALPN h2, devbox's CA
            ctx = ssl.create_default_context(cafile=str(ensure_ca()[1].cert))
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
            assert self.sock.selected_alpn_protocol() == "h2"
        self.encoder = hpack.Encoder()
        self.buf = b""
        first = SettingsFrame(0)
        first.settings = settings or {}
        self.sock.sendall(H2_PREFACE + first.serialize())

    def headers(self, sid: int, path: str = "/items/1", end_stream: bool = True) -> bytes:
        f = HeadersFrame(sid)
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        f.data = self.encoder.encode(
            [(":method", "GET"), (":scheme", "http"), (":authority", "dep"), (":path", path)]
        )
        return bytes(f.serialize())

    def send(self, *frames: Frame | bytes) -> None:
        self.sock.sendall(b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames))

    def frames_until(
        self, done: Callable[[list[Frame]], object], timeout: float = 10.0
    ) -> list[Frame]:
        """Frames read until ``done(frames)`` is true, the server closes, or ``timeout``."""
        frames: list[Frame] = []
        deadline = time.monotonic() + timeout
        while not done(frames):
            data = self._recv(deadline)
            if not data:
                break
            self.buf += data
            at = 0
            while len(self.buf) - at >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buf)[at : at + 9])
                if len(self.buf) - at < 9 + length:
                    break
                frame.parse_body(memoryview(self.buf)[at + 9 : at + 9 + length])
                at += 9 + length
                frames.append(frame)
            self.buf = self.buf[at:]
        return frames

    def skip_pings(self, n: int, out: bytes, timeout: float = 120.0) -> int:
        """Send ``out`` while reading (and dropping) frames until ``n`` PING
        acknowledgements came; how many did."""
        acks = 0
        deadline = time.monotonic() + timeout
        self.sock.setblocking(False)
        try:
            while acks < n and time.monotonic() < deadline:
                _r, w, _x = select.select([self.sock], [self.sock] if out else [], [], 1.0)
                if w:
                    out = out[self.sock.send(out) :]
                try:
                    data = self.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    break
                buf = self.buf + data
                at = 0
                while len(buf) - at >= 9:
                    length = int.from_bytes(buf[at : at + 3], "big")
                    if len(buf) - at < 9 + length:
                        break
                    acks += buf[at + 3] == 0x06 and buf[at + 4] == 0x01  # PING, ACK
                    at += 9 + length
                self.buf = buf[at:]
        finally:
            self.sock.setblocking(True)
        return acks

    def _recv(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            return b""
        self.sock.settimeout(left)
        try:
            return self.sock.recv(1 << 20)
        except (TimeoutError, ConnectionResetError):
            return b""

    def close(self) -> None:
        self.sock.close()


def _goaways(frames: list[Frame]) -> list[GoAwayFrame]:
    return [f for f in frames if isinstance(f, GoAwayFrame)]


def _answered(frames: list[Frame], sid: int) -> bytes | None:
    """The body of the answer on ``sid`` if it ended, else None."""
    body = b""
    for f in frames:
        if isinstance(f, DataFrame) and f.stream_id == sid:
            body += f.data
            if "END_STREAM" in f.flags:
                return body
    return None


def _write_buffered(fleet: MockFleet, requests: int = 0) -> int:
    """What the mock's HTTP/2 connections hold for their clients, in bytes, once they
    have taken ``requests`` requests (answered or waiting to be)."""

    def measure() -> tuple[int, int]:
        total = taken = 0
        for c in fleet.servers["dep"].h2_connections:
            taken += c.requests + len(getattr(c, "waiting", ()))
            if c.transport is not None:
                total += c.transport.get_write_buffer_size()
        return total, taken

    deadline = time.monotonic() + 60
    buffered, taken = fleet._call(measure)
    while taken < requests and time.monotonic() < deadline:
        time.sleep(0.05)
        buffered, taken = fleet._call(measure)
    assert taken >= requests
    return buffered


def test_streams_beyond_the_limit_are_refused_not_the_connection(
    mock: tuple[MockFleet, int],
) -> None:
    _fleet, port = mock
    c = RawH2(port)
    try:
        # 64 is the limit (Limits.max_pipeline): 68 requests whose ends are still to come
        limit = Limits().max_pipeline
        c.send(*(c.headers(1 + 2 * i, end_stream=False) for i in range(limit + 4)))
        over = [1 + 2 * i for i in range(limit, limit + 4)]
        frames = c.frames_until(
            lambda fs: sum(isinstance(f, RstStreamFrame) for f in fs) >= 4 or _goaways(fs)
        )
        refused = {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}
        assert not _goaways(frames)
        assert refused == dict.fromkeys(over, h2.errors.ErrorCodes.REFUSED_STREAM)
        # the streams within the limit, and the connection, carry on: one answered and
        # closed leaves room for one more, not two
        end = DataFrame(1)
        end.flags.add("END_STREAM")
        c.send(end)
        assert _answered(c.frames_until(lambda fs: _answered(fs, 1) is not None), 1)
        nxt = over[-1] + 2
        c.send(c.headers(nxt, end_stream=False), c.headers(nxt + 2, end_stream=False))
        end = DataFrame(nxt)
        end.flags.add("END_STREAM")
        c.send(end)
        frames = c.frames_until(
            lambda fs: (
                _answered(fs, nxt) is not None
                and any(isinstance(f, RstStreamFrame) and f.stream_id == nxt + 2 for f in fs)
            )
        )
        assert _answered(frames, nxt) == b'{"sku": 1}'
        assert [f.error_code for f in frames if isinstance(f, RstStreamFrame)] == [
            h2.errors.ErrorCodes.REFUSED_STREAM
        ]
        assert not _goaways(frames)
    finally:
        c.close()


def test_requests_sent_before_the_limit_is_known_are_answered(
    mock: tuple[MockFleet, int],
) -> None:
    """A client may open streams before our SETTINGS (and its MAX_CONCURRENT_STREAMS)
    reach it: whole requests are answered as they come, so it never meets the limit
    (nginx alike); they were all open at once, and the connection ended (h2's
    TooManyStreamsError)."""
    _fleet, port = mock
    c = RawH2(port)
    try:
        n = Limits().max_pipeline + 36
        c.send(*(c.headers(1 + 2 * i) for i in range(n)))
        frames = c.frames_until(lambda fs: all(_answered(fs, 1 + 2 * i) for i in range(n)))
        assert all(_answered(frames, 1 + 2 * i) == b'{"sku": 1}' for i in range(n))
        assert not [f for f in frames if isinstance(f, RstStreamFrame | GoAwayFrame)]
    finally:
        c.close()


def test_h2load_beyond_the_stream_limit(mock: tuple[MockFleet, int]) -> None:
    """h2load -m 200 sends up to 100 streams before it knows our limit of 64."""
    _fleet, port = mock
    h2load = shutil.which("h2load")
    assert h2load, "h2load is missing (Debian nghttp2-client)"
    r = subprocess.run(
        [h2load, "-n", "2000", "-c", "2", "-m", "200", f"http://127.0.0.1:{port}/items/1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "2000 succeeded, 0 failed" in r.stdout, r.stdout


def test_a_protocol_error_gets_one_goaway(mock: tuple[MockFleet, int]) -> None:
    _fleet, port = mock
    c = RawH2(port)
    try:
        # DATA on stream 0 (RFC 9113 6.1: PROTOCOL_ERROR), a frame hyperframe will not build
        c.send(b"\x00\x00\x03\x00\x00\x00\x00\x00\x00abc")
        frames = c.frames_until(lambda fs: False, timeout=5)
        codes = [g.error_code for g in _goaways(frames)]
        assert codes == [h2.errors.ErrorCodes.PROTOCOL_ERROR]
    finally:
        c.close()


def _flood(c: RawH2, chunk: bytes, cap: int) -> int:
    """Send ``chunk`` until ``cap`` bytes went or the mock stopped taking them (nothing
    could be sent for 2 s); the client reads nothing. Bytes sent are returned."""
    c.sock.setblocking(False)
    sent = 0
    stalled_since: float | None = None
    while sent < cap:
        try:
            # (a partial send goes on from where it stopped: the frames stay whole)
            sent += c.sock.send(chunk[sent % len(chunk) :])
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since > 2.0:
                break
            time.sleep(0.01)
    c.sock.setblocking(True)
    return sent


def test_ping_flood_from_a_client_that_never_reads(mock: tuple[MockFleet, int]) -> None:
    fleet, port = mock
    c = RawH2(port)
    try:
        ping = PingFrame(0)
        ping.opaque_data = b"devbox!!"
        frame = ping.serialize()
        sent = _flood(c, frame * 4096, 16 * 1024 * 1024)
        # every PING's acknowledgement was held for the client (16 MiB sent: most of it
        # in the mock's buffer, some MiB in the kernel's)
        assert _write_buffered(fleet) < 2 * 1024 * 1024
        # once the client reads, every PING is acknowledged and the connection works on
        # (the flood may have stopped inside a frame: its rest goes while we read)
        rest = frame[len(frame) - (-sent) % len(frame) :]
        pings = (sent + len(rest)) // len(frame)
        assert c.skip_pings(pings, rest) == pings
        c.send(c.headers(1))
        frames = c.frames_until(lambda fs: _answered(fs, 1) is not None)
        assert _answered(frames, 1) == b'{"sku": 1}'
    finally:
        c.close()


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_answers_for_a_client_that_never_reads(mock: tuple[MockFleet, int], tls: bool) -> None:
    fleet, port = mock
    # windows wide open: flow control no longer holds the answers back
    c = RawH2(port, {SettingsFrame.INITIAL_WINDOW_SIZE: MAX_WINDOW}, tls=tls)
    try:
        wu = WindowUpdateFrame(0)
        wu.window_increment = MAX_WINDOW - 65535
        c.send(wu)
        n = Limits().max_pipeline  # as many as may be open at once: 64 MiB of answers
        c.send(*(c.headers(1 + 2 * i, "/big") for i in range(n)))
        assert _write_buffered(fleet, n) < 8 * 1024 * 1024
        # once it reads, every answer arrives whole
        frames = c.frames_until(
            lambda fs: sum(isinstance(f, DataFrame) and "END_STREAM" in f.flags for f in fs) >= n,
            timeout=120,
        )
        assert all(_answered(frames, 1 + 2 * i) == BIG for i in range(n))
        assert not _goaways(frames)
    finally:
        c.close()


def test_wrong_and_split_preface(mock: tuple[MockFleet, int]) -> None:
    _fleet, port = mock
    # the preface one byte at a time is still h2c
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for b in H2_PREFACE + SettingsFrame(0).serialize():
            s.sendall(bytes([b]))
        s.settimeout(10)
        head = s.recv(9)
        assert head[3] == 0x04  # the server's SETTINGS
    # "PRI * HTTP/2.0" then not the rest of the preface: an HTTP/1.x answer, then closed
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        s.settimeout(10)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 ")

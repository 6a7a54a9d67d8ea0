"""Helpers for the mock tests: exchanges, a running fleet, raw-socket HTTP."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devbox.core.events import Event
from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.core.profile import Dependency
from devbox.mock import Limits, MockFleet, MockSpec

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"X-Devbox-Token": ADMIN_TOKEN}


def exchange(
    n: int,
    method: str = "GET",
    path: str = "/",
    *,
    query: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    req_headers: tuple[tuple[str, str], ...] = (),
    status: int = 200,
    resp_headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
    resp_body: bytes | None = None,
    wait_ms: float | None = None,
    error: str | None = None,
    source: str = "dep",
) -> Exchange:
    return Exchange(
        id=f"ex{n}",
        direction=Direction.OUTBOUND,
        source=source,
        request=Request(method, path, query, req_headers, body, host="upstream.test"),
        response=None
        if error
        else Response(status, resp_headers, b'{"n": %d}' % n if resp_body is None else resp_body),
        timing=Timing(started_at=1.7e9, duration_ms=wait_ms or 1.0, wait_ms=wait_ms),
        error=error,
    )


@contextmanager
def running(
    exchanges: Sequence[Exchange] | None = None,
    *,
    recordings: Path | None = None,
    parser: str = "auto",
    limits: Limits | None = None,
    events: list[Event] | None = None,
    poll_interval_s: float = 0.0,
    redact: Any = None,
    admin_token: str | None = ADMIN_TOKEN,
    **dep: Any,
) -> Iterator[tuple[MockFleet, int]]:
    dependency = Dependency(name=dep.pop("name", "dep"), **dep)
    spec = MockSpec(
        dependency=dependency,
        exchanges=tuple(exchanges) if exchanges is not None else None,
        recordings=recordings,
        redact=redact,
    )
    fleet = MockFleet.from_specs(
        [spec],
        on_event=events.append if events is not None else None,
        limits=limits,
        poll_interval_s=poll_interval_s,
        parser=parser,
        ports={dependency.name: 0},
        admin_token=admin_token,
    )
    ports = fleet.start()
    try:
        yield fleet, ports[dependency.name]
    finally:
        fleet.stop()


def call(
    port: int,
    method: str = "GET",
    target: str = "/",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, target, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if own:
            c.close()


def send_raw(port: int, data: bytes, *, timeout: float = 5.0, half_close: bool = False) -> bytes:
    """Send bytes, read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        return read_all(s, timeout)


def read_all(s: socket.socket, timeout: float) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_responses(s: socket.socket, count: int, timeout: float = 5.0) -> list[tuple[int, bytes]]:
    """Read ``count`` Content-Length framed responses from a socket: [(status, body)]."""
    buf = b""
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    s.settimeout(0.5)
    while len(out) < count and time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except TimeoutError:
            continue
        if not chunk:
            break
        buf += chunk
        done, buf = split_responses(buf)
        out += done
    return out[:count]


def split_responses(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    out: list[tuple[int, bytes]] = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return out, buf
        head = buf[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        length = 0
        for line in head[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if status < 200:
            buf = buf[end + 4 :]
            continue
        if len(buf) < end + 4 + length:
            return out, buf
        out.append((status, buf[end + 4 : end + 4 + length]))
        buf = buf[end + 4 + length :]


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else 0

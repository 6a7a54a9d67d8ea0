"""Readiness probes: is the service answering yet?

Three kinds, chosen by the profile's ``[service.ready]``: an HTTP GET of a path
(any status below 500 counts: a 404 still proves the server is up), a TCP
connect, or a regular expression seen in the service's output. Probes are plain
blocking functions with a per-attempt timeout; ``wait_until_ready`` polls them
every ``interval_ms`` (5 ms during the first 2 s: restart->ready is what the edit
loop waits for; a refused connect on loopback costs microseconds) while asking
the runtime whether the service is still alive, so a crash is reported at once
with its exit reason instead of after the full timeout.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable

from devbox.core.profile import Ready
from devbox.errors import ServiceNotReady

FAST_PHASE_S = 2.0
FAST_INTERVAL_S = 0.005


def probe_tcp(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(host: str, port: int, path: str, timeout: float = 1.0) -> int | None:
    """Status code of ``GET path`` or None when nothing (or no HTTP) answered."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: devbox-ready\r\n"
                "Accept: */*\r\nConnection: close\r\n\r\n".encode("ascii")
            )
            buf = b""
            while b"\r\n" not in buf and len(buf) < 4096:
                chunk = s.recv(1024)
                if not chunk:
                    break
                buf += chunk
    except (OSError, UnicodeEncodeError):
        return None
    m = re.match(rb"HTTP/\d(?:\.\d)? (\d{3})", buf)
    return int(m.group(1)) if m else None


def probe_http(host: str, port: int, path: str, timeout: float = 1.0) -> bool:
    status = http_status(host, port, path, timeout)
    return status is not None and status < 500


class LogWatch:
    """Remembers whether a line matching ``pattern`` arrived since the last ``reset``."""

    def __init__(self, pattern: str | None) -> None:
        self._re = re.compile(pattern) if pattern else None
        self._seen = threading.Event()
        self._gen = 0
        self._lock = threading.Lock()

    def reset(self) -> int:
        """Forget earlier matches; returns the new generation, which feed() may be given."""
        with self._lock:
            self._gen += 1
            self._seen.clear()
            return self._gen

    def feed(self, line: str, generation: int | None = None) -> None:
        if self._re is None:
            return
        with self._lock:
            if generation is not None and generation != self._gen:
                return  # a line from before the last restart
            if self._re.search(line):
                self._seen.set()

    @property
    def seen(self) -> bool:
        return self._seen.is_set()


def describe(ready: Ready, port: int) -> str:
    if ready.http:
        return f"GET http://127.0.0.1:{port}{ready.http} answering below 500"
    if ready.log:
        return f"a log line matching {ready.log!r}"
    return f"a TCP connection to 127.0.0.1:{port}"


def wait_until_ready(
    ready: Ready,
    port: int,
    *,
    host: str = "127.0.0.1",
    log_watch: LogWatch | None = None,
    check_alive: Callable[[], str | None] = lambda: None,
    alive_every_s: float = 0.05,
    tail: Callable[[], tuple[str, ...]] = tuple,
    name: str = "service",
    started_at: float | None = None,
    timeout_s: float | None = None,
) -> float:
    """Poll until the service is ready; return seconds since ``started_at`` (monotonic).

    ``check_alive`` returns None while the service runs, else why it is not (exit code);
    it is asked every ``alive_every_s`` because asking may cost an API round trip.
    Raises ServiceNotReady with the last log lines when it died or the timeout passed.
    """
    begin = started_at if started_at is not None else time.monotonic()
    timeout = ready.timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    interval = max(ready.interval_ms, 1) / 1000.0
    # most services are up within a second of a restart: poll faster then, since every
    # millisecond of polling delay is added to each edit-loop iteration
    fast_until = time.monotonic() + FAST_PHASE_S
    next_alive = time.monotonic() + alive_every_s
    while True:
        now = time.monotonic()
        per_try = min(1.0, max(0.05, deadline - now))
        if ready.http:
            ok = probe_http(host, port, ready.http, per_try)
        elif ready.log:
            ok = log_watch is not None and log_watch.seen
        else:
            ok = probe_tcp(host, port, per_try)
        if ok:
            # one look at the service itself: the probe may have reached something else
            why = check_alive()
            if why is not None:
                raise ServiceNotReady(f"{name} {why} while probing readiness", logs=tail())
            return time.monotonic() - begin
        now = time.monotonic()
        if now >= next_alive:
            why = check_alive()
            if why is not None:
                raise ServiceNotReady(
                    f"{name} {why} before it became ready ({describe(ready, port)})",
                    hint="its last output is shown above; fix the error and save again",
                    logs=tail(),
                )
            next_alive = now + alive_every_s
        if now >= deadline:
            raise ServiceNotReady(
                f"{name} was not ready after {timeout:g}s: waited for {describe(ready, port)}",
                hint="raise [service.ready] timeout_s, or check the port and the probe path",
                logs=tail(),
            )
        time.sleep(min(interval, FAST_INTERVAL_S) if now < fast_until else interval)

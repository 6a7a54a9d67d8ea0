"""Follow a container's log stream across restarts, and notice when it is removed."""

from __future__ import annotations

import calendar
import re
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devbox.runtime.docker_runtime import DockerRuntime


def ts_ns(stamp: bytes) -> int:
    """RFC 3339 with nanoseconds (what the engine prefixes log lines with) -> ns since epoch."""
    s = stamp.decode("ascii", "replace")
    secs = calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S"))
    frac = re.match(r"\.(\d+)", s[19:])
    ns = int((frac.group(1) + "000000000")[:9]) if frac else 0
    return secs * 1_000_000_000 + ns


class LogFollower:
    """Follows one container's log stream in a thread, across restarts, without duplicates."""

    def __init__(self, runtime: DockerRuntime, cid: str) -> None:
        self.rt = runtime
        self.cid = cid
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"devbox-logs-{runtime.service.name}", daemon=True
        )
        self.last_ns = 0
        self._seen_at_last: set[bytes] = set()

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        self._kick.set()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        import docker.errors

        api = self.rt.api
        while not self._stop.is_set():
            self._kick.clear()
            try:
                since = self.last_ns / 1e9 if self.last_ns else None
                stream = api.logs(
                    self.cid,
                    stream=True,
                    follow=True,
                    timestamps=True,
                    stdout=True,
                    stderr=True,
                    since=since,
                )
                pending = b""
                for chunk in stream:
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        self._line(line)
                    if self._stop.is_set():
                        return
                if pending:
                    self._line(pending)
            except docker.errors.NotFound:
                if not self._stop.is_set():
                    # removed by someone else (`devbox down`, docker rm) while we ran it
                    self.rt.container_vanished(self.cid)
                return
            except Exception:
                if self._stop.wait(0.2):
                    return
            # the stream ends when the container stops; a restart kicks us to follow again
            self._kick.wait(0.25)

    def _line(self, raw: bytes) -> None:
        stamp, _, text = raw.partition(b" ")
        try:
            ns = ts_ns(stamp)
        except (ValueError, OverflowError):
            self.rt.log_line(raw.decode("utf-8", "replace"))
            return
        if ns < self.last_ns:
            return
        if ns == self.last_ns:
            if raw in self._seen_at_last:
                return
        else:
            self.last_ns = ns
            self._seen_at_last = set()
        self._seen_at_last.add(raw)
        self.rt.log_line(
            text.decode("utf-8", "replace"), at=ns / 1e9, generation=self.rt.generation_for(ns)
        )

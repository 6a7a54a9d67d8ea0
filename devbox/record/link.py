"""The proxy's end of the pipe to the recording worker (see ``devbox.record.worker``)."""

from __future__ import annotations

import collections
import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

import devbox
from devbox.errors import EngineError
from devbox.record.frames import encode_frame

# ~150 captures: enough to absorb bursts, small enough that when the worker is the
# bottleneck the queue ahead of a response stays ~10 ms, not ~170 ms (1 MiB)
PIPE_BYTES = 1 << 16
F_SETPIPE_SZ = 1031  # Linux


class WorkerLink:
    """Starts the worker, sends it captures, collects its summary."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._lock = threading.Lock()
        self.dead: str | None = None  # why captures can no longer be written
        self.lost = 0  # captures that could not be handed over
        # exchanges the worker read itself (``devbox.record.streams``), as it reports them:
        # called on the link's reader thread with a list of ``Captured`` fields
        self.on_captured: Callable[[list[list[Any]]], None] | None = None
        self._summary: list[bytes] = []
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        env = dict(os.environ)
        # the worker imports the same devbox as we do, installed or not
        src = str(Path(devbox.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(  # noqa: S603 - our own worker, argument list, no shell
            [sys.executable, "-m", "devbox.record.worker", orjson.dumps(self.config).decode()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._fd = self.proc.stdin.fileno()
        try:
            fcntl.fcntl(self._fd, F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # a smaller pipe only means earlier back-pressure
        threading.Thread(target=self._drain_stderr, daemon=True, name="devbox-record-w").start()
        line = self.proc.stdout.readline()
        if line != b"ready\n":
            self.proc.wait(10)
            raise EngineError(
                "the recording worker did not start: " + (self.tail() or "no output"),
            )
        self._reader = threading.Thread(target=self._read_out, daemon=True, name="devbox-record-r")
        self._reader.start()

    def _read_out(self) -> None:
        """The worker's reports (``c`` lines) as they come; its last line is the summary."""
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(b"c "):
                if self.on_captured is not None:
                    try:
                        self.on_captured(orjson.loads(line[2:]))
                    except Exception:  # a live view's trouble never stops recording
                        pass
            elif line.strip():
                self._summary.append(line)

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def tail(self) -> str:
        return " | ".join(list(self._stderr)[-3:])

    def send(self, *messages: tuple[Any, ...]) -> None:
        """Hand captures over in one write; blocks while the pipe is full (back-pressure)."""
        if self.dead is not None:
            self.lost += _exchanges(messages)
            return
        # several as one frame: one marshal call each side, however many
        data = encode_frame(messages[0] if len(messages) == 1 else ("batch", messages))
        view = memoryview(data)
        with self._lock:
            try:
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
            except OSError as exc:
                self.lost += _exchanges(messages)
                self.dead = f"the recording worker exited ({exc.strerror}): {self.tail()}"
                raise EngineError(self.dead) from None

    def finish(self, *, commit: bool, timeout_s: float = 120.0) -> dict[str, Any]:
        """Ask the worker to commit (or just close) and return its summary."""
        proc = self.proc
        if proc is None:
            return {}
        assert proc.stdout is not None and proc.stdin is not None
        if self.dead is None:
            try:
                self.send(("end", commit))
            except EngineError:
                pass
        try:
            proc.stdin.close()
        except OSError:
            pass
        if self._reader is not None:
            self._reader.join(timeout_s)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        lines = self._summary
        if not lines:
            raise EngineError("the recording worker ended without a summary: " + self.tail())
        summary: dict[str, Any] = orjson.loads(lines[-1])
        return summary

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _exchanges(messages: tuple[tuple[Any, ...], ...]) -> int:
    """How many exchanges ``messages`` stand for: each capture, and each chunk a client
    sent on a relayed connection (``devbox.record.tee``; mostly one request each)."""
    return sum(1 for m in messages if m[0] == "x" or (m[0] == "d" and m[2] == 0))

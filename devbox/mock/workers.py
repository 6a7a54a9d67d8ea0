"""The worker processes of one wire mock (``workers = N`` in the profile): started,
loaded, handed connections, reset and ended by the mock that owns them.

``WireMock`` accepts every connection itself and hands it to the next worker that is
alive (round robin: a pool's connections are long-lived and equally busy); a mode that
passes traffic to the real server (passthrough, record) is served by the mock itself,
so the recordings it stores stay in one process. Every process answers from the same
stored objects and one set of shared counters (``worker_process.SharedSequences``);
each worker's hits and misses come back in batches to the mock's statistics, journal
and miss log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from devbox.errors import EngineError
from devbox.mock.worker_process import SharedSequences, buffers, receive, send

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 3.0


@dataclass(slots=True)
class _Worker:
    proc: subprocess.Popen[bytes]
    chan: socket.socket
    alive: bool = True
    ready: asyncio.Future[str] | None = None  # its result: why it failed, or ""
    error: str = ""


class WorkerPool:
    """``count`` processes serving one mock's connections; ``on_hits`` gets each
    worker's batches of hits, ``(request, exchange id)`` each, and ``on_events`` its
    misses, ``("m", request, explanation, nearest)`` each."""

    def __init__(
        self,
        count: int,
        setup: tuple[str, Mapping[str, Any], Any],
        on_events: Callable[[list[tuple[Any, ...]]], None],
        on_hits: Callable[[list[tuple[str, str]]], None],
    ) -> None:
        self.count = count
        self.setup = setup  # (kind name, MockOptions fields but redact_value, RedactRules)
        self.on_events = on_events
        self.on_hits = on_hits
        self.workers: list[_Worker] = []
        self._next = 0
        self._sequences: list[SharedSequences] = []
        self._generation = 0  # numbers the loads: a kept turn is only good in its own

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.count):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            proc = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
                [sys.executable, "-m", "devbox.mock.worker_process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # its own session: a terminal's Ctrl-C reaches the parent, which ends it
                start_new_session=True,
            )
            theirs.close()
            buffers(ours)
            ours.settimeout(10)
            worker = _Worker(proc, ours, ready=loop.create_future())
            self.workers.append(worker)
            loop.add_reader(ours.fileno(), self._readable, worker)
            send(ours, ("setup", *self.setup))
        why = ""
        try:
            for w in self.workers:
                assert w.ready is not None
                why = why or await asyncio.wait_for(asyncio.shield(w.ready), START_TIMEOUT_S)
        except TimeoutError:
            why = "did not start in time"
        if why:
            await self.close()
            raise EngineError(f"mock worker process: {why}")

    def load(self, stored: list[Any], keys: list[Hashable]) -> SharedSequences:
        """Give every worker ``stored`` (the objects the mock's index was built from) and
        new zeroed counters for ``keys``; the mock's own index takes the returned
        counters. Connections already open keep answering from what they started with."""
        fd = SharedSequences.create(len(keys))
        data = os.memfd_create("devbox-stored", os.MFD_CLOEXEC)
        try:
            with os.fdopen(os.dup(data), "wb") as f:
                pickle.dump(stored, f, protocol=pickle.HIGHEST_PROTOCOL)
            self._generation += 1
            for w in self._alive():
                self._send(w, ("load", len(keys), self._generation), [data, fd])
        finally:
            os.close(data)
        sequences = SharedSequences(fd, keys)
        self._sequences.append(sequences)
        return sequences

    def hand(self, sock: socket.socket) -> bool:
        """Give an accepted connection to the next live worker; False if none is."""
        alive = self._alive()
        if not alive:
            return False
        w = alive[self._next % len(alive)]
        self._next += 1
        return self._send(w, ("conn",), [sock.fileno()])

    def reset(self) -> None:
        for w in self._alive():
            self._send(w, ("reset",))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for w in self.workers:
            if w.alive:
                self._send(w, ("quit",))
            self._gone(w)
        deadline = loop.time() + STOP_TIMEOUT_S
        for w in self.workers:
            while w.proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        self.workers = []
        for s in self._sequences:
            s.close()
        self._sequences = []

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    # ------------------------------------------------------------ the channels

    def _alive(self) -> list[_Worker]:
        return [w for w in self.workers if w.alive]

    def _send(self, w: _Worker, message: tuple[Any, ...], fds: list[int] | None = None) -> bool:
        try:
            send(w.chan, message, fds)
        except OSError:
            self._gone(w)
            return False
        return True

    def _readable(self, w: _Worker) -> None:
        try:
            message, fds = receive(w.chan)
        except OSError:
            message, fds = None, []
        for fd in fds:
            os.close(fd)
        if message is None:
            self._gone(w)
            return
        what = message[0]
        if what == "hits":
            self.on_hits(message[1])
        elif what == "events":
            self.on_events(message[1])
        elif what == "kept":  # one worker's kept turns: every other worker keeps them too
            for other in self._alive():
                if other is not w:
                    self._send(other, ("keep", *message[1:]))
        elif what == "ready" and w.ready is not None and not w.ready.done():
            w.ready.set_result("")
        elif what == "error":
            w.error = str(message[1]).strip().splitlines()[-1]
            self._gone(w)

    def _gone(self, w: _Worker) -> None:
        """A worker that ended (or is being ended): no more connections for it."""
        if not w.alive:
            return
        w.alive = False
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(w.chan.fileno())
        with contextlib.suppress(OSError):
            w.chan.close()
        if w.ready is not None and not w.ready.done():
            w.ready.set_result(w.error or "ended before it was ready")

"""One worker process of a wire mock served by several (``workers`` in the profile).

One event loop thread answers every connection of a mock served in devbox's own process,
and it fills one core: pgbench with four clients ran the mock at about 0.6x the real
server, whose four backends spread over both cores; even a mock that sent constant bytes
on that loop reached only 0.67x. Workers are processes started with
``python -m devbox.mock.worker_process FD``; each serves the connections its parent
(``devbox.mock.workers``) accepts and hands over, each on its own thread with blocking
I/O (``devbox.wire.tcp.serve_blocking``: one ``recv`` and one ``send`` per query, about
half the CPU of an event loop's callbacks), from its own copy of the index.

What connections share is what makes the nth identical query get the nth answer:
the index's counters. ``SharedSequences`` keeps them in one shared memory file (a
``memfd``, passed as a descriptor: nothing is left on disk, whatever happens), one
64-bit slot per key with more than one answer, each advanced under a POSIX record lock
on its slot. Keys with one answer, the bulk of a read workload, take no lock at all.

The channel to the parent is a ``SOCK_SEQPACKET`` socket pair: each message is one
pickle (the two ends are this program's, started by the same user), descriptors ride
along with ``conn`` and ``load``. A worker exits when its parent's end closes, so a
parent that crashes or is killed leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import mmap
import os
import pickle
import signal
import socket
import sys
import threading
import traceback
from collections import deque
from collections.abc import Hashable
from typing import Any

from devbox.wire.contract import Hit, Miss
from devbox.wire.sequences import Sequences

SLOT = 8  # bytes per counter
# hits are sent when this many wait or the oldest is this old (misses go at once)
BATCH = 256
BATCH_AGE_S = 0.05
MAX_FDS = 4
# one message on the channel at most (its socket buffers are made this large); a batch is
# sent before its text reaches BATCH_BYTES, and one field longer than FIELD is cut
MAX_MESSAGE = 1 << 20
BATCH_BYTES = 1 << 16
FIELD = 1 << 15
# a kept turn larger than this (reply bytes and match key) is not passed on: siblings
# answer it the long way once each, as before
KEPT = 1 << 15


class SharedSequences(Sequences):
    """``Sequences`` in a shared memory file: every process that maps it answers one
    sequence. ``keys`` must be the same list, in the same order, in every process."""

    __slots__ = ("_fd", "_map", "_mutex", "_owner", "_slots", "_view")

    def __init__(self, fd: int, keys: list[Hashable], *, owner: bool = True) -> None:
        super().__init__()
        self._owner = owner  # only the owner's ``clear`` starts the shared sequences again
        # a record lock excludes other processes, not this one's other connection threads
        self._mutex = threading.Lock()
        self._fd = fd
        self._slots = {key: i for i, key in enumerate(keys)}
        self._map = mmap.mmap(fd, max(SLOT, SLOT * len(keys)))
        self._view = memoryview(self._map).cast("q")

    @staticmethod
    def create(count: int) -> int:
        """A new, zeroed counters file for ``count`` keys: its descriptor."""
        fd = os.memfd_create("devbox-sequences", os.MFD_CLOEXEC)
        os.ftruncate(fd, max(SLOT, SLOT * count))
        return fd

    def peek(self, key: Hashable, count: int) -> int:
        if count <= 1:
            return 0
        slot = self._slots.get(key)
        if slot is None:  # not a key of the shared list: this process's own counter
            return super().peek(key, count)
        return min(self._view[slot], count - 1)

    def take(self, key: Hashable, count: int) -> int:
        if count <= 1:
            return 0
        slot = self._slots.get(key)
        if slot is None:
            return super().take(key, count)
        with self._mutex:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, SLOT, SLOT * slot)
            try:
                n = self._view[slot]
                if n < count - 1:
                    self._view[slot] = n + 1
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, SLOT, SLOT * slot)
        return min(n, count - 1)

    def take_if(self, key: Hashable, seen: int, count: int) -> bool:
        if count <= 1:
            return True
        slot = self._slots.get(key)
        if slot is None:
            return super().take_if(key, seen, count)
        with self._mutex:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, SLOT, SLOT * slot)
            try:
                n = self._view[slot]
                if min(n, count - 1) != seen:
                    return False
                if n < count - 1:
                    self._view[slot] = n + 1
                return True
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, SLOT, SLOT * slot)

    def clear(self) -> None:
        super().clear()
        if not self._owner:
            # a worker's reset arrives after the parent zeroed the counters, maybe after
            # the new iteration's first queries: zeroing again would repeat their answers
            return
        with self._mutex:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                self._map[:] = bytes(len(self._map))
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._view.release()
        self._map.close()
        os.close(self._fd)


def buffers(chan: socket.socket) -> None:
    """Room for the largest message on the channel (its default is about 200 KiB)."""
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        chan.setsockopt(socket.SOL_SOCKET, option, 2 * MAX_MESSAGE)


def send(chan: socket.socket, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
    """One message on the channel (blocking: a message is small, the peer reads)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if fds:
        socket.send_fds(chan, [data], fds)
    else:
        chan.sendall(data)


def receive(chan: socket.socket) -> tuple[tuple[Any, ...] | None, list[int]]:
    """(the next message, the descriptors that came with it); (None, []) at the end."""
    data, fds, flags, _addr = socket.recv_fds(chan, MAX_MESSAGE, MAX_FDS)
    if not data or flags & socket.MSG_TRUNC:  # the end, or (never sent so) a cut message
        for fd in fds:
            os.close(fd)
        return (None, []) if not data else (("dropped",), [])
    message: tuple[Any, ...] = pickle.loads(data)
    return message, list(fds)


class Worker:
    """The worker's side: setup, loads, handed connections (each served on its own
    thread with blocking I/O, ``devbox.wire.tcp.serve_blocking``), resets; hits and
    misses sent back in batches."""

    def __init__(self, chan: socket.socket) -> None:
        self.chan = chan
        self.kind: Any = None
        self.options: Any = None
        self.index: Any = None
        self.batch: list[tuple[Any, ...]] = []  # misses
        self.hits: deque[tuple[str, str]] = deque()  # (request, exchange id) of each hit
        self.generation = -1  # the parent's number of the load the index came from
        self.kept: list[tuple[Any, ...]] = []  # kept turns for the siblings (``Index.adopt``)
        self.kept_bytes = 0  # their size: they go once it reaches BATCH_BYTES
        self.lock = threading.Lock()  # the batch and the channel's sends
        self.done = threading.Event()

    def run(self) -> None:
        """Read the parent's messages until it says quit or is gone."""
        threading.Thread(target=self._flusher, name="flush", daemon=True).start()
        while not self.done.is_set():
            try:
                message, fds = receive(self.chan)
            except OSError:  # the parent is gone
                message, fds = None, []
            if message is None:
                break
            try:
                self.handle(message, fds)
            except Exception:
                self._send(("error", traceback.format_exc()))
                break
        self.flush()

    def handle(self, message: tuple[Any, ...], fds: list[int]) -> None:
        what = message[0]
        if what == "conn":
            self.serve(socket.socket(fileno=fds[0]))
        elif what == "setup":
            from devbox.wire import files, registry
            from devbox.wire.contract import MockOptions

            _, kind, fields, redact = message
            self.kind = registry.get(kind)
            self.options = MockOptions(**fields, redact_value=files.value_redactor(redact))
            self._send(("ready", os.getpid()))
        elif what == "load":
            self.load(message[1], message[2], fds)
        elif what == "keep":
            # a sibling's kept turns, from the same load: answered at once here too
            if message[1] == self.generation and self.index is not None:
                self.index.adopt(message[2])
                gc.freeze()  # they live as long as the index: see ``load``
        elif what == "reset":
            if self.index is not None:
                self.index.reset()
        elif what == "quit":
            self.done.set()

    def load(self, count: int, generation: int, fds: list[int]) -> None:
        stored_fd, counters_fd = fds
        try:  # read from the start whatever the offset: every worker shares the file's
            with mmap.mmap(stored_fd, 0, prot=mmap.PROT_READ) as data:
                stored = pickle.loads(data)
        finally:
            os.close(stored_fd)
        index = self.kind.load(stored)
        keys = index.sequence_keys()
        if len(keys) != count:
            raise RuntimeError(f"the index has {len(keys)} sequences, the parent's {count}")
        index.sequences = SharedSequences(counters_fd, keys, owner=False)
        if hasattr(index, "on_keep"):
            index.on_keep = functools.partial(self._keep, generation)
        with self.lock:  # what was kept from the index before is not this one's
            self.generation, self.kept = generation, []
        self.index = index  # connections already open keep the index they started with
        # the index is most of this process's objects and lives until the next load: a
        # full collection walked all of it again and again (a third of a busy worker's
        # time under pgbench), so collections leave what exists now alone; what an earlier
        # load froze is looked at once more here, so a replaced index can be collected
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def serve(self, sock: socket.socket) -> None:
        from devbox.wire import tcp

        if self.index is None:
            sock.close()
            return
        conn = self.kind.mock_connection(self.index, self.options)
        thread = threading.Thread(
            target=tcp.serve_blocking, args=(sock, conn, self.output), daemon=True
        )
        thread.start()

    def output(self, _conn: Any, out: Any) -> None:
        """A connection thread's hit or miss (misses go to the parent at once)."""
        if out.__class__ is Hit:
            # the hot path (one per query): no lock, ``deque.append`` is atomic
            request = out.request
            if len(request) > FIELD:
                request = request[:FIELD] + "…"
            hits = self.hits
            hits.append((request, out.exchange_id or "hit"))
            if len(hits) >= BATCH:
                self.flush()
        elif out.__class__ is Miss:
            fields = [out.request, out.explanation, out.nearest]
            cut = [f[:FIELD] + "…" if f and len(f) > FIELD else f for f in fields]
            with self.lock:
                self.batch.append(("m", *cut))
            self.flush()

    def _keep(self, generation: int, kept: tuple[Any, ...]) -> None:
        """A connection thread kept a turn (``Index.on_keep`` of the index of load
        ``generation``): pass it on, batched."""
        size = len(kept[-1].data) + len(repr(kept[0]))
        if size > KEPT:
            return
        with self.lock:
            if generation != self.generation:
                return  # a connection still on an index loaded before: not the siblings'
            self.kept.append(kept)
            self.kept_bytes += size
            full = self.kept_bytes >= BATCH_BYTES
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, kept, self.batch, self.kept, self.kept_bytes = self.batch, self.kept, [], [], 0
            # hits appended while this drains wait for the next flush
            hits = self.hits
            taken = [hits.popleft() for _ in range(len(hits))]
            with contextlib.suppress(OSError):
                for chunk in _cut(taken):
                    send(self.chan, ("hits", chunk))
                if batch:
                    send(self.chan, ("events", batch))
                if kept:
                    send(self.chan, ("kept", self.generation, kept))
            if kept:
                gc.freeze()  # kept turns live as long as the index: see ``load``

    def _flusher(self) -> None:
        while not self.done.wait(BATCH_AGE_S):
            self.flush()

    def _send(self, message: tuple[Any, ...]) -> None:
        with self.lock, contextlib.suppress(OSError):
            send(self.chan, message)


def _cut(hits: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """``hits`` in messages of at most ``BATCH_BYTES`` of text (each field is at most
    ``FIELD``, so a message stays under ``MAX_MESSAGE``)."""
    chunks: list[list[tuple[str, str]]] = []
    size = 0
    for hit in hits:
        grow = len(hit[0]) + len(hit[1])
        if not chunks or size + grow > BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(hit)
        size += grow
    return chunks


def main(argv: list[str]) -> int:
    # Ctrl-C is the parent's: it closes the workers (and its end of the channel)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    chan = socket.socket(fileno=int(argv[0]))
    buffers(chan)
    chan.settimeout(None)  # blocking: the main thread only waits for the parent
    Worker(chan).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

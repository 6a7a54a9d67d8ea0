"""Raw file events, one reader thread per source: native (watchfiles' Rust backend,
inotify on Linux) or polling (our own stat scanner).

Why not ``watchfiles.awatch``: it arms inside the event loop (a large tree blocks
the loop for as long as inotify takes to add its watches), it cannot say when it
is armed (the canary needs that) and its batching counts distinct (change, path)
pairs, so events that are filtered out later still hold a batch open. We use its
documented backend, ``RustNotify``, with a short ``step`` and do the batching
ourselves (``devbox.watch.watcher``), after filtering.

``RustNotify.watch(debounce_ms, step_ms, timeout_ms, stop_event)`` sleeps ``step_ms``
at a time and returns once a step passes without new changes (or after
``debounce_ms``), so a chunk reaches us between one and two steps after the kernel
reported its last event.

Why our own polling: the Rust backend's poller compares modification times in
whole seconds, so a second save within the same second goes unseen. Ours compares
(mtime_ns, size, inode), which also catches a file replaced by a rename.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from watchfiles._rust_notify import RustNotify

RawChange = tuple[int, str]  # (1 added | 2 modified | 3 deleted, absolute path)
ChunkSink = Callable[[float, set[RawChange]], None]
ErrorSink = Callable[[BaseException], None]

ADDED, MODIFIED, DELETED = 1, 2, 3
# how often an idle native reader thread wakes up to look at its stop flag
_IDLE_TIMEOUT_MS = 500
# a changed file is re-checked up to this many steps for writes still in progress
_SETTLE_ROUNDS = 5


class EventSource(Protocol):
    paths: tuple[str, ...]
    recursive: bool

    def start(self, on_chunk: ChunkSink, on_error: ErrorSink) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float = 2.0) -> None: ...
    def close(self) -> None: ...


class _Threaded:
    paths: tuple[str, ...]
    recursive: bool

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_chunk: ChunkSink, on_error: ErrorSink) -> None:
        self._thread = threading.Thread(
            target=self._run,
            args=(on_chunk, on_error),
            name=f"devbox-watch-{type(self).__name__}",
            daemon=True,
        )
        self._thread.start()

    def _run(self, on_chunk: ChunkSink, on_error: ErrorSink) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._closed_unstarted()

    def _closed_unstarted(self) -> None:
        pass

    def close(self) -> None:
        self.stop()
        self.join()


class NativeSource(_Threaded):
    """One ``RustNotify`` (a set of paths, all recursive or all not) and its thread."""

    def __init__(
        self, paths: Sequence[str], *, recursive: bool, step_ms: int, debounce_ms: int
    ) -> None:
        super().__init__()
        self.paths = tuple(paths)
        self.recursive = recursive
        self._step_ms = step_ms
        self._debounce_ms = debounce_ms
        # arming happens here: inotify adds a watch per directory before this returns;
        # raises FileNotFoundError / OSError (watch limit) / WatchfilesRustInternalError
        self._notify = RustNotify(list(self.paths), False, False, 0, recursive, True)

    def _run(self, on_chunk: ChunkSink, on_error: ErrorSink) -> None:
        try:
            while not self._stop.is_set():
                raw = self._notify.watch(
                    self._debounce_ms, self._step_ms, _IDLE_TIMEOUT_MS, self._stop
                )
                if isinstance(raw, set):
                    if raw:
                        on_chunk(time.monotonic(), raw)
                elif raw == "stop":
                    break
                # "timeout": idle, look at the stop flag again; "signal": not for this thread
        except Exception as exc:  # the backend failed (queue overflow, watch limit...)
            if not self._stop.is_set():
                on_error(exc)
        finally:
            self._notify.close()

    def _closed_unstarted(self) -> None:
        self._notify.close()


Signature = tuple[int, int, int, bool]  # mtime_ns, size, inode, is a directory


class PollingSource(_Threaded):
    """Scans its directories every ``poll_delay_ms`` (measured from the end of one scan
    to the start of the next, so a slow file system cannot be polled into the ground)."""

    def __init__(
        self, paths: Sequence[str], *, recursive: bool, poll_delay_ms: int, settle_ms: int = 10
    ) -> None:
        super().__init__()
        self.paths = tuple(paths)
        self.recursive = recursive
        self._delay = max(1, poll_delay_ms) / 1000
        self._settle_s = max(1, settle_ms) / 1000
        for p in self.paths:
            if not os.path.isdir(p):
                raise FileNotFoundError(2, "No such directory", p)
        self.last_scan_ms = 0.0
        self._snapshot = self._scan()

    def _scan(self) -> dict[str, Signature]:
        t0 = time.perf_counter()
        out: dict[str, Signature] = {}
        stack = list(self.paths)
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(d)
            except OSError:
                continue  # gone or unreadable since: its entries read as deleted
            with it:
                for e in it:
                    try:
                        is_dir = e.is_dir(follow_symlinks=False)
                        st = e.stat(follow_symlinks=not is_dir)
                    except OSError:
                        continue
                    out[e.path] = (st.st_mtime_ns, st.st_size, st.st_ino, is_dir)
                    if is_dir and self.recursive:
                        stack.append(e.path)
        self.last_scan_ms = (time.perf_counter() - t0) * 1000
        return out

    def _run(self, on_chunk: ChunkSink, on_error: ErrorSink) -> None:
        try:
            while not self._stop.wait(self._delay):
                new = self._scan()
                old = self._snapshot
                changed = {p for p, sig in new.items() if old.get(p) != sig}
                changed |= old.keys() - new.keys()
                if changed:
                    self._settle(changed, new)
                self._snapshot = new
                changes: set[RawChange] = set()
                for path in changed:
                    before, after = old.get(path), new.get(path)
                    if before is None and after is not None:
                        changes.add((ADDED, path))
                    elif after is None and before is not None:
                        changes.add((DELETED, path))
                    elif before != after and not (before and after and before[3] and after[3]):
                        # a directory's own mtime moves with its entries: those are reported
                        changes.add((MODIFIED, path))
                if changes and not self._stop.is_set():
                    on_chunk(time.monotonic(), changes)
        except Exception as exc:
            if not self._stop.is_set():
                on_error(exc)

    def _settle(self, changed: set[str], new: dict[str, Signature]) -> None:
        """Re-stat what changed until it stops moving: a scan can land between an
        editor's truncate and its write, and must not report the empty file."""
        for _ in range(_SETTLE_ROUNDS):
            if self._stop.wait(self._settle_s):
                return
            moved = False
            for path in changed:
                try:
                    st = os.stat(path, follow_symlinks=not new.get(path, (0, 0, 0, False))[3])
                    sig: Signature | None = (
                        st.st_mtime_ns,
                        st.st_size,
                        st.st_ino,
                        os.path.isdir(path),
                    )
                except OSError:
                    sig = None
                if sig != new.get(path):
                    moved = True
                    if sig is None:
                        new.pop(path, None)
                    else:
                        new[path] = sig
            if not moved:
                return


def open_source(
    paths: Sequence[str],
    *,
    recursive: bool,
    polling: bool,
    poll_delay_ms: int,
    step_ms: int,
    debounce_ms: int,
) -> EventSource:
    """Arm a source (this is where it can fail: missing path, watch limit)."""
    if polling:
        return PollingSource(
            paths, recursive=recursive, poll_delay_ms=poll_delay_ms, settle_ms=step_ms
        )
    return NativeSource(paths, recursive=recursive, step_ms=step_ms, debounce_ms=debounce_ms)

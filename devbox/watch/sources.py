"""Raw file events from watchfiles' Rust backend, one reader thread per source.

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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from watchfiles._rust_notify import RustNotify

RawChange = tuple[int, str]  # (1 added | 2 modified | 3 deleted, absolute path)
ChunkSink = Callable[[float, set[RawChange]], None]
ErrorSink = Callable[[BaseException], None]

# how often an idle reader thread wakes up to look at its stop flag
_IDLE_TIMEOUT_MS = 500


class Source:
    """One ``RustNotify`` (a set of paths, all recursive or all not) and its thread."""

    def __init__(
        self,
        paths: Sequence[str],
        *,
        recursive: bool,
        polling: bool,
        poll_delay_ms: int,
        step_ms: int,
        debounce_ms: int,
    ) -> None:
        self.paths = tuple(paths)
        self.recursive = recursive
        self.polling = polling
        self._step_ms = step_ms
        self._debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # arming happens here: inotify adds a watch per directory before this returns;
        # raises FileNotFoundError / OSError (watch limit) / WatchfilesRustInternalError
        self._notify = RustNotify(list(self.paths), False, polling, poll_delay_ms, recursive, True)

    def start(self, on_chunk: ChunkSink, on_error: ErrorSink) -> None:
        self._thread = threading.Thread(
            target=self._run,
            args=(on_chunk, on_error),
            name=f"devbox-watch-{'tree' if self.recursive else 'dirs'}",
            daemon=True,
        )
        self._thread.start()

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

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._notify.close()

    def close(self) -> None:
        self.stop()
        self.join()

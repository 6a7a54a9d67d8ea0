"""The watcher: file events -> filtered batches of changes, with a self-check.

Theory of operation
-------------------
``start()`` arms one ``Source`` for the recursive trees and one for the directories
watched flat (parents of single files such as the profile, plus the canary
directory), on a worker thread so a large tree never blocks the event loop. Each
source's reader thread classifies raw events at once: the canary's own file is
noted and dropped, directory events only maintain the set of known directories
(a new directory is scanned, because inotify cannot report files created before
its watch on that directory existed), and every file event is passed through
``accept`` (for a profile: the plan says something other than "nothing"). So
``.git`` churn, swap files and ignored paths never start or extend a batch.

Accepted chunks are stamped with ``time.monotonic()`` and queued on the event loop.
``next_batch`` takes the first queued chunk's stamp as ``first_event_at``, then
waits until ``quiet_ms`` pass without another chunk, or until ``cap_ms`` after the
first event, whichever is earlier; chunks stamped after the cap stay queued for
the next batch. Nothing is dequeued until the batch is complete, so cancelling a
consumer loses no events. When delivering, each path's events are reduced to its
net change; a file created and removed within the batch (an atomic-save temp
file) is dropped, and a batch of nothing but such files is not delivered.

The canary: after arming, a file is written in ``<root>/.devbox/watch/``; if its
event does not arrive within ``canary_deadline_ms`` (a network file system, a
container bind mount without inotify, a full inotify table), or arming itself
fails (watch limit), the watcher re-arms with polling and says why in
``armed_info`` and through ``on_notice``. The same fallback happens if the native
backend fails mid-session. Targets that do not exist yet (no recordings yet) are
covered by watching their nearest existing ancestor; once they appear, the
watcher re-arms and reports their files as added.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from devbox.core.globs import relative_key
from devbox.core.plan import (
    ChangeKind,
    FileChange,
    Plan,
    Planner,
    WatchTargets,
    litter_reason,
    watch_targets,
)
from devbox.core.profile import Profile
from devbox.errors import EngineError
from devbox.watch.arming import (
    Armed,
    arm,
    arm_error,
    join_all,
    make_info,
    prepare_canary_dir,
    under,
    write_canary,
)
from devbox.watch.batch import ArmedInfo, Batch, Chunk, native_mode, net_changes
from devbox.watch.dirs import KnownDirs
from devbox.watch.dockerignore import read_dockerignore
from devbox.watch.sources import RawChange

Accept = Callable[[FileChange], bool]
CanaryWrite = Callable[[Path, str], None]  # (canary file, mode) -> write it

_KINDS: dict[int, ChangeKind] = {1: "added", 2: "modified", 3: "deleted"}
CANARY_DIR = ".devbox/watch"


class Watcher:
    """Async iterator of ``Batch`` es. Use as ``async with Watcher.for_profile(p) as w:
    async for batch in w: plan = w.plan(batch)``; ``w.armed_info`` says what is watched."""

    def __init__(
        self,
        targets: WatchTargets,
        *,
        accept: Accept | None = None,
        planner: Planner | None = None,
        quiet_ms: int = 50,
        cap_ms: int = 1000,
        stop_event: asyncio.Event | None = None,
        force_polling: bool = False,
        poll_delay_ms: int = 100,
        canary: bool = True,
        canary_deadline_ms: int = 1000,
        canary_write: CanaryWrite | None = None,
        step_ms: int | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        if quiet_ms < 0 or cap_ms < 1:
            raise ValueError("quiet_ms must be >= 0 and cap_ms >= 1")
        self._targets = targets
        self._planner = planner
        self._accept_fn = accept
        self.quiet_ms = quiet_ms
        self.cap_ms = cap_ms
        self.stop_event = stop_event
        self._force_polling = force_polling
        self.poll_delay_ms = max(1, poll_delay_ms)
        self._canary_on = canary
        self._canary_deadline_ms = canary_deadline_ms
        self._canary_write = canary_write or write_canary
        self.step_ms = step_ms if step_ms is not None else max(2, min(10, quiet_ms // 5))
        self._debounce_ms = max(2 * self.step_ms, min(quiet_ms, cap_ms))
        self._on_notice = on_notice
        self.notices: list[str] = []

        self._canary_dir = targets.root / CANARY_DIR
        self._canary_name: str | None = None
        self._canary_seen = threading.Event()
        self._canary_counter = itertools.count(1)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed: Armed | None = None
        self._polling = force_polling
        self._info: ArmedInfo | None = None
        self._pending: deque[Chunk] = deque()
        self._wakeup: asyncio.Event | None = None
        self._dirs = KnownDirs()  # shared with the reader threads
        # files that exist as far as batches told: tells "added" from "modified" after a
        # rename over a file, and a temp file that came and went from a real deletion
        self._known_files: set[str] = set()
        self._missing: tuple[str, ...] = ()
        self._rearm_task: asyncio.Task[None] | None = None
        self._rearm_again = False
        self._closed = False
        self._started = False

    # ---------------------------------------------------------------- construction

    @classmethod
    def for_profile(
        cls,
        profile: Profile,
        *,
        quiet_ms: int | None = None,
        cap_ms: int | None = None,
        stop_event: asyncio.Event | None = None,
        force_polling: bool = False,
        poll_delay_ms: int = 100,
        canary: bool = True,
        canary_deadline_ms: int = 1000,
        canary_write: CanaryWrite | None = None,
        step_ms: int | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> Watcher:
        """Watch what the profile's plan cares about. Only changes whose plan is not
        "nothing" are batched; quiet/cap default to ``service.watch``."""
        w = profile.service.watch
        return cls(
            watch_targets(profile),
            planner=Planner(profile, read_dockerignore(profile)),
            quiet_ms=w.quiet_ms if quiet_ms is None else quiet_ms,
            cap_ms=w.cap_ms if cap_ms is None else cap_ms,
            stop_event=stop_event,
            force_polling=force_polling,
            poll_delay_ms=poll_delay_ms,
            canary=canary,
            canary_deadline_ms=canary_deadline_ms,
            canary_write=canary_write,
            step_ms=step_ms,
            on_notice=on_notice,
        )

    @property
    def armed_info(self) -> ArmedInfo | None:
        return self._info

    @property
    def mode(self) -> str:
        return "polling" if self._polling else native_mode()

    @property
    def pending(self) -> bool:
        """Changes have arrived that no batch has handed out yet (one is forming)."""
        return bool(self._pending)

    @property
    def planner(self) -> Planner | None:
        return self._planner

    def plan(self, batch: Batch | Iterable[FileChange | Path | str]) -> Plan:
        """The plan for a batch (re-reading ``.dockerignore`` if the batch changed it)."""
        if self._planner is None:
            raise RuntimeError("plan() needs a watcher made with for_profile() or planner=")
        changes = batch.changes if isinstance(batch, Batch) else tuple(batch)
        di = self._planner.dockerignore_path
        if di is not None and any(
            (c.path if isinstance(c, FileChange) else Path(c)) == di for c in changes
        ):
            prof = self._planner.profile
            self._planner = Planner(prof, read_dockerignore(prof))
        return self._planner.plan(changes)

    def _accept(self, change: FileChange) -> bool:
        if self._accept_fn is not None:
            return self._accept_fn(change)
        if self._planner is not None:
            return self._planner.classify(change.path, change.kind).action != "nothing"
        key = relative_key(change.path.as_posix(), self._targets.root.as_posix())
        return litter_reason(key if key is not None else change.path.as_posix()) is None

    def _notice(self, text: str) -> None:
        self.notices.append(text)
        if self._on_notice is not None:
            self._on_notice(text)

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Watcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> ArmedInfo:
        """Arm, run the canary, fall back to polling where needed. Idempotent."""
        if self._started:
            assert self._info is not None
            return self._info
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        canary_ready = self._canary_on and await asyncio.to_thread(self._prepare_canary_dir)
        fallback = ""
        try:
            armed = await asyncio.to_thread(self._arm, self._polling)
        except (OSError, RuntimeError) as exc:
            if self._polling:
                raise arm_error(self._targets, exc) from None
            fallback = f"{native_mode()} could not arm: {exc}"
            self._polling = True
            armed = await self._arm_polling_or_raise()
        self._install(armed)
        canary, canary_ms = "off", None
        if canary_ready:
            canary, canary_ms = await self._run_canary()
            if canary == "failed" and not self._polling:
                fallback = (
                    f"no {native_mode()} event for the canary within "
                    f"{self._canary_deadline_ms} ms: a network file system or a full inotify table?"
                )
                await self._replace(polling=True)
                canary, canary_ms = await self._run_canary()
        elif self._canary_on:
            canary = "skipped"
        assert self._armed is not None
        self._info = self._make_info(self._armed, canary, canary_ms, fallback)
        if fallback:
            self._notice(f"file watching falls back to polling: {fallback}")
        if canary == "failed":
            self._notice("file watching: the canary change was not seen even when polling")
        return self._info

    async def close(self) -> None:
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._rearm_task is not None:
            self._rearm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._rearm_task
        armed, self._armed = self._armed, None
        if armed is not None:
            for s in armed.sources:
                s.stop()
            await asyncio.to_thread(join_all, armed.sources)

    async def reconfigure(self, profile: Profile) -> ArmedInfo:
        """Follow a reloaded profile: new targets and rules, same mode."""
        self._targets = watch_targets(profile)
        self._planner = Planner(profile, read_dockerignore(profile))
        self._canary_dir = self._targets.root / CANARY_DIR
        self.quiet_ms, self.cap_ms = profile.service.watch.quiet_ms, profile.service.watch.cap_ms
        if not self._started:
            return await self.start()
        await self._replace(polling=self._polling)
        assert self._armed is not None and self._info is not None
        self._info = self._make_info(
            self._armed, self._info.canary, self._info.canary_ms, self._info.fallback
        )
        return self._info

    async def check(self) -> ArmedInfo:
        """Run the canary again (e.g. after a suspend); fall back to polling if it fails."""
        if not self._started:
            return await self.start()
        assert self._info is not None and self._armed is not None
        if not self._canary_on or not await asyncio.to_thread(self._prepare_canary_dir):
            return self._info
        canary, ms = await self._run_canary()
        fallback = self._info.fallback
        if canary == "failed" and not self._polling:
            fallback = f"the canary stopped arriving through {native_mode()}"
            await self._replace(polling=True)
            canary, ms = await self._run_canary()
            self._notice(f"file watching falls back to polling: {fallback}")
        self._info = self._make_info(self._armed, canary, ms, fallback)
        return self._info

    # ---------------------------------------------------------------- arming

    def _prepare_canary_dir(self) -> bool:
        problem = prepare_canary_dir(self._canary_dir)
        if problem:
            self._notice(f"file watching: no canary ({self._canary_dir}: {problem})")
        return not problem

    def _arm(self, polling: bool) -> Armed:
        return arm(
            self._targets,
            canary_dir=self._canary_dir,
            canary_on=self._canary_on,
            polling=polling,
            poll_delay_ms=self.poll_delay_ms,
            step_ms=self.step_ms,
            debounce_ms=self._debounce_ms,
        )

    async def _arm_polling_or_raise(self) -> Armed:
        try:
            return await asyncio.to_thread(self._arm, True)
        except (OSError, RuntimeError) as exc:
            raise arm_error(self._targets, exc) from None

    def _install(self, armed: Armed) -> None:
        self._dirs.reset(armed.known_dirs)
        self._known_files = armed.known_files
        self._missing = armed.missing
        self._armed = armed
        for s in armed.sources:
            s.start(self._on_chunk, self._on_error)

    async def _replace(self, *, polling: bool) -> None:
        """Arm anew, then stop the old sources (they overlap briefly: no gap)."""
        was_missing = set(self._missing)
        try:
            armed = await asyncio.to_thread(self._arm, polling)
        except (OSError, RuntimeError) as exc:
            if polling:
                raise arm_error(self._targets, exc) from None
            self._notice(f"file watching falls back to polling: {native_mode()} failed: {exc}")
            polling = True
            armed = await self._arm_polling_or_raise()
        appeared = sorted(was_missing - set(armed.missing))
        # files under a target that just appeared may have been written before its watch
        # existed: report the ones no batch has shown yet, as added
        fresh = {f for f in armed.known_files if any(under(f, r) for r in appeared)}
        old_known = self._known_files
        pending = {p for ch in self._pending for _, p in ch.changes}
        report = sorted(fresh - old_known - pending)
        armed.known_files = old_known | (armed.known_files - fresh)
        old, self._polling = self._armed, polling
        self._install(armed)
        if old is not None:
            for s in old.sources:
                s.stop()
            await asyncio.to_thread(join_all, old.sources)
        added: list[tuple[ChangeKind, str]] = [
            ("added", f) for f in report if self._accept(FileChange(Path(f), "added"))
        ]
        if added:
            self._push(Chunk(time.monotonic(), added))

    def _make_info(
        self, armed: Armed, canary: str, canary_ms: float | None, fallback: str
    ) -> ArmedInfo:
        return make_info(
            armed, canary, canary_ms, fallback, self._polling, self._canary_dir, self.poll_delay_ms
        )

    async def _run_canary(self) -> tuple[str, float | None]:
        name = f"canary-{os.getpid()}-{next(self._canary_counter)}"
        path = self._canary_dir / name
        self._canary_seen.clear()
        self._canary_name = name
        deadline_ms = self._canary_deadline_ms
        if self._polling:
            deadline_ms = max(deadline_ms, 4 * self.poll_delay_ms + 200)
        t0 = time.monotonic()
        try:
            self._canary_write(path, self.mode)
        except OSError as exc:
            self._notice(f"file watching: cannot write the canary {path}: {exc.strerror}")
            self._canary_name = None
            return "skipped", None
        seen = await asyncio.to_thread(self._canary_seen.wait, deadline_ms / 1000)
        ms = (time.monotonic() - t0) * 1000
        self._canary_name = None
        with contextlib.suppress(OSError):
            path.unlink()
        return ("ok", ms) if seen else ("failed", None)

    # ---------------------------------------------------------------- reader threads

    def _on_chunk(self, at: float, raw: set[RawChange]) -> None:
        out: list[tuple[ChangeKind, str]] = []
        rearm = False
        canary_prefix = str(self._canary_dir) + os.sep
        for code, path in raw:
            kind = _KINDS.get(code)
            if kind is None:
                continue
            if path.startswith(canary_prefix):
                if self._canary_name is not None and path.endswith(os.sep + self._canary_name):
                    self._canary_seen.set()
                continue
            handled, new_dir = self._dirs.event(kind, path, out, self._accept)
            if new_dir and any(m == path or under(m, path) for m in self._missing):
                rearm = True
            elif not handled and kind != "deleted" and path in self._missing:
                rearm = True  # a missing file appeared: update what armed_info says
            if handled:
                continue
            if self._accept(FileChange(Path(path), kind)):
                out.append((kind, path))
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us
            if out:
                loop.call_soon_threadsafe(self._push, Chunk(at, out))
            if rearm:
                loop.call_soon_threadsafe(self._schedule_rearm)

    def _on_error(self, exc: BaseException) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._backend_failed, exc)

    # ---------------------------------------------------------------- loop side

    def _push(self, chunk: Chunk) -> None:
        self._pending.append(chunk)
        if self._wakeup is not None:
            self._wakeup.set()

    def _schedule_rearm(self, polling: bool | None = None) -> None:
        if self._closed:
            return
        if polling:
            self._polling = True
        if self._rearm_task is not None and not self._rearm_task.done():
            self._rearm_again = True
            return
        self._rearm_task = asyncio.get_running_loop().create_task(self._rearm())

    async def _rearm(self) -> None:
        while not self._closed:
            self._rearm_again = False
            try:
                await self._replace(polling=self._polling)
            except EngineError as exc:
                self._notice(f"file watching stopped: {exc.message}")
                return
            if self._armed is not None and self._info is not None:
                self._info = self._make_info(
                    self._armed, self._info.canary, self._info.canary_ms, self._info.fallback
                )
            if not self._rearm_again:
                return

    def _backend_failed(self, exc: BaseException) -> None:
        if self._closed:
            return
        if self._polling:
            self._notice(f"file watching (polling) failed: {exc}; re-arming")
        else:
            self._notice(f"file watching falls back to polling: {native_mode()} failed: {exc}")
            if self._info is not None:
                self._info = replace(self._info, fallback=f"{native_mode()} failed: {exc}")
        self._schedule_rearm(polling=True)

    def _stopped(self) -> bool:
        return self._closed or (self.stop_event is not None and self.stop_event.is_set())

    async def _wait(self, timeout: float | None) -> None:
        assert self._wakeup is not None
        self._wakeup.clear()
        waits: list[asyncio.Task[Any]] = [asyncio.ensure_future(self._wakeup.wait())]
        if self.stop_event is not None:
            waits.append(asyncio.ensure_future(self.stop_event.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waits:
                t.cancel()

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self

    async def __anext__(self) -> Batch:
        batch = await self.next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    async def next_batch(self, timeout: float | None = None) -> Batch | None:
        """The next batch; None when stopped, or when ``timeout`` seconds pass without
        a first change (once a batch has begun it completes, within ``cap_ms``)."""
        if not self._started:
            await self.start()
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            while not self._pending:
                if self._stopped():
                    return None
                remaining = None if give_up is None else give_up - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                await self._wait(remaining)
            batch = await self._collect()
            if batch is None:
                return None
            if batch.changes:
                return batch

    async def _collect(self) -> Batch | None:
        first = self._pending[0].at
        cap_at = first + self.cap_ms / 1000
        # the backend returns a chunk only after a step without news: that step is quiet too
        quiet_s = max(0, self.quiet_ms - self.step_ms) / 1000
        capped = False
        while True:
            taken = 0
            last = first
            for ch in self._pending:
                if ch.at > cap_at:
                    capped = True
                    break
                taken += 1
                last = ch.at
            if capped:
                break
            until = min(last + quiet_s, cap_at)
            remaining = until - time.monotonic()
            if remaining <= 0:
                capped = cap_at < last + quiet_s
                break
            await self._wait(remaining)
            if self._stopped():
                return None
        chunks = [self._pending.popleft() for _ in range(taken)]
        delivered = time.monotonic()
        changes, events = self._net_changes(chunks)
        plan = self.plan(changes) if self._planner is not None and changes else None
        return Batch(changes, first, last, delivered, capped, events, plan)

    def _net_changes(self, chunks: Sequence[Chunk]) -> tuple[tuple[FileChange, ...], int]:
        return net_changes(chunks, self._known_files)

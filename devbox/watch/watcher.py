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
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
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
from devbox.watch.dockerignore import read_dockerignore
from devbox.watch.sources import EventSource, RawChange, open_source

Accept = Callable[[FileChange], bool]
CanaryWrite = Callable[[Path, str], None]  # (canary file, mode) -> write it

_KINDS: dict[int, ChangeKind] = {1: "added", 2: "modified", 3: "deleted"}
_NEW_DIR_SCAN_LIMIT = 10_000  # entries reported from one newly created directory
CANARY_DIR = ".devbox/watch"


def native_mode() -> str:
    if sys.platform.startswith("linux"):
        return "inotify"
    if sys.platform == "darwin":
        return "fsevents"
    if sys.platform == "win32":
        return "windows"
    return "native"


@dataclass(frozen=True, slots=True)
class ArmedInfo:
    """What the watcher covers and how well: shown at start, in the TUI and in --json."""

    mode: str  # "inotify" (or the platform's native backend) | "polling"
    trees: tuple[str, ...]  # watched recursively
    flat_dirs: tuple[str, ...]  # watched without their subdirectories
    missing: tuple[str, ...]  # targets that do not exist yet (an ancestor is watched)
    dirs: int  # directories under watch
    files: int  # files under watch
    arm_ms: float  # arming the backend and counting what it covers
    canary: str  # "ok" | "failed" | "skipped" | "off"
    canary_ms: float | None
    fallback: str = ""  # why polling was chosen; empty when it was not
    poll_delay_ms: int = 0  # polling interval, when polling

    @property
    def paths(self) -> int:
        return self.dirs + self.files

    def summary(self) -> str:
        what = f"{len(self.trees)} tree{'s' * (len(self.trees) != 1)}"
        if self.flat_dirs:
            what += f" + {len(self.flat_dirs)} dir{'s' * (len(self.flat_dirs) != 1)}"
        how = self.mode if self.mode != "polling" else f"polling every {self.poll_delay_ms} ms"
        canary = {
            "ok": f"canary ok in {self.canary_ms or 0:.0f} ms",
            "failed": "canary FAILED: changes may be missed",
            "skipped": "canary skipped",
            "off": "canary off",
        }[self.canary]
        text = (
            f"watching {what} ({self.dirs} dirs, {self.files} files) with {how}; "
            f"armed in {self.arm_ms:.0f} ms; {canary}"
        )
        if self.missing:
            text += f"; waiting for {', '.join(self.missing)} to appear"
        if self.fallback:
            text += f" ({self.fallback})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "trees": list(self.trees),
            "flat_dirs": list(self.flat_dirs),
            "missing": list(self.missing),
            "dirs": self.dirs,
            "files": self.files,
            "arm_ms": round(self.arm_ms, 2),
            "canary": self.canary,
            "canary_ms": None if self.canary_ms is None else round(self.canary_ms, 2),
            "fallback": self.fallback,
            "poll_delay_ms": self.poll_delay_ms,
        }


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes that belong together: one edit-loop iteration."""

    changes: tuple[FileChange, ...]  # net change per path, sorted by path
    first_event_at: float  # time.monotonic() when the batch's first change reached devbox
    last_event_at: float
    delivered_at: float
    capped: bool = False  # delivered because cap_ms ran out while changes kept coming
    events: int = 0  # raw events folded into this batch
    # what the batch means for the service, decided here once (None without a planner)
    plan: Plan | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(c.path for c in self.changes)

    @property
    def latency_ms(self) -> float:
        """From the first change reaching devbox to this batch being handed out."""
        return (self.delivered_at - self.first_event_at) * 1000


@dataclass(slots=True)
class _Chunk:
    at: float
    changes: list[tuple[ChangeKind, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Armed:
    sources: list[EventSource]
    trees: tuple[str, ...]
    flat: tuple[str, ...]
    missing: tuple[str, ...]
    dirs: int
    files: int
    known_dirs: set[str]
    known_files: set[str]
    ms: float


def _write_canary(path: Path, mode: str) -> None:
    path.write_text(f"devbox watch canary ({mode}) {time.time()}\n", encoding="utf-8")


def _nearest_existing(p: Path) -> Path:
    for a in (p, *p.parents):
        if a.is_dir():
            return a
    return Path(p.anchor or "/")


def _join_all(sources: Sequence[EventSource]) -> None:
    for s in sources:
        s.join()


def _under(path: str, root: str) -> bool:
    return relative_key(path, root) is not None


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
        self._canary_write = canary_write or _write_canary
        self.step_ms = step_ms if step_ms is not None else max(2, min(10, quiet_ms // 5))
        self._debounce_ms = max(2 * self.step_ms, min(quiet_ms, cap_ms))
        self._on_notice = on_notice
        self.notices: list[str] = []

        self._canary_dir = targets.root / CANARY_DIR
        self._canary_name: str | None = None
        self._canary_seen = threading.Event()
        self._canary_counter = itertools.count(1)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed: _Armed | None = None
        self._polling = force_polling
        self._info: ArmedInfo | None = None
        self._pending: deque[_Chunk] = deque()
        self._wakeup: asyncio.Event | None = None
        self._known_dirs: set[str] = set()
        # files that exist as far as batches told: tells "added" from "modified" after a
        # rename over a file, and a temp file that came and went from a real deletion
        self._known_files: set[str] = set()
        self._dirs_lock = threading.Lock()
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
                raise self._arm_error(exc) from None
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
            await asyncio.to_thread(_join_all, armed.sources)

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
        try:
            self._canary_dir.mkdir(parents=True, exist_ok=True)
            ignore = self._canary_dir / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*\n", encoding="utf-8")
            return True
        except OSError as exc:
            self._notice(f"file watching: no canary ({self._canary_dir}: {exc.strerror})")
            return False

    def _resolve(self) -> tuple[list[str], list[str], list[str]]:
        trees: set[str] = set()
        flat: set[str] = set()
        missing: list[str] = []
        for t in self._targets.trees:
            if t.is_dir():
                trees.add(str(t))
            else:
                missing.append(str(t))
                flat.add(str(_nearest_existing(t)))
        for lit in self._targets.literals:
            if lit.is_dir():
                trees.add(str(lit))
                continue
            if not lit.exists():
                # a file or a directory to be: if it comes as a directory, re-arm for it
                missing.append(str(lit))
            flat.add(str(lit.parent if lit.parent.is_dir() else _nearest_existing(lit.parent)))
        if self._canary_on and self._canary_dir.is_dir():
            flat.add(str(self._canary_dir))
        kept_trees = sorted(t for t in trees if not any(u != t and _under(t, u) for u in trees))
        kept_flat = sorted(d for d in flat if not any(_under(d, t) for t in kept_trees))
        return kept_trees, kept_flat, sorted(missing)

    def _arm(self, polling: bool) -> _Armed:
        t0 = time.perf_counter()
        trees, flat, missing = self._resolve()
        sources: list[EventSource] = []
        try:
            for paths, recursive in ((trees, True), (flat, False)):
                if paths:
                    sources.append(
                        open_source(
                            paths,
                            recursive=recursive,
                            polling=polling,
                            poll_delay_ms=self.poll_delay_ms,
                            step_ms=self.step_ms,
                            debounce_ms=self._debounce_ms,
                        )
                    )
        except BaseException:
            for s in sources:
                s.close()
            raise
        known: set[str] = set()
        known_files: set[str] = set()
        dirs = 0
        for t in trees:
            for dirpath, _dirs, names in os.walk(t):
                known.add(dirpath)
                dirs += 1
                known_files.update(os.path.join(dirpath, n) for n in names)
        canary = str(self._canary_dir)
        for d in flat:
            known.add(d)
            if d == canary:
                continue  # our own: not something the user asked to watch
            dirs += 1
            with contextlib.suppress(OSError), os.scandir(d) as it:
                for e in it:
                    if e.is_dir():
                        known.add(e.path)
                    else:
                        known_files.add(e.path)
        files = sum(1 for f in known_files if not f.startswith(canary + os.sep))
        ms = (time.perf_counter() - t0) * 1000
        return _Armed(
            sources, tuple(trees), tuple(flat), tuple(missing), dirs, files, known, known_files, ms
        )

    async def _arm_polling_or_raise(self) -> _Armed:
        try:
            return await asyncio.to_thread(self._arm, True)
        except (OSError, RuntimeError) as exc:
            raise self._arm_error(exc) from None

    def _arm_error(self, exc: BaseException) -> EngineError:
        paths = ", ".join(str(p) for p in (*self._targets.trees, *self._targets.literals))
        return EngineError(
            f"cannot watch files: {exc}",
            hint=f"watched paths: {paths}; check they exist and are readable",
        )

    def _install(self, armed: _Armed) -> None:
        with self._dirs_lock:
            self._known_dirs = set(armed.known_dirs)
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
                raise self._arm_error(exc) from None
            self._notice(f"file watching falls back to polling: {native_mode()} failed: {exc}")
            polling = True
            armed = await self._arm_polling_or_raise()
        appeared = sorted(was_missing - set(armed.missing))
        # files under a target that just appeared may have been written before its watch
        # existed: report the ones no batch has shown yet, as added
        fresh = {f for f in armed.known_files if any(_under(f, r) for r in appeared)}
        old_known = self._known_files
        pending = {p for ch in self._pending for _, p in ch.changes}
        report = sorted(fresh - old_known - pending)
        armed.known_files = old_known | (armed.known_files - fresh)
        old, self._polling = self._armed, polling
        self._install(armed)
        if old is not None:
            for s in old.sources:
                s.stop()
            await asyncio.to_thread(_join_all, old.sources)
        added: list[tuple[ChangeKind, str]] = [
            ("added", f) for f in report if self._accept(FileChange(Path(f), "added"))
        ]
        if added:
            self._push(_Chunk(time.monotonic(), added))

    def _make_info(
        self, armed: _Armed, canary: str, canary_ms: float | None, fallback: str
    ) -> ArmedInfo:
        return ArmedInfo(
            mode="polling" if self._polling else native_mode(),
            trees=armed.trees,
            flat_dirs=tuple(d for d in armed.flat if d != str(self._canary_dir)),
            missing=armed.missing,
            dirs=armed.dirs,
            files=armed.files,
            arm_ms=armed.ms,
            canary=canary,
            canary_ms=canary_ms,
            fallback=fallback,
            poll_delay_ms=self.poll_delay_ms if self._polling else 0,
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
            handled, new_dir = self._directory_event(kind, path, out)
            if new_dir and any(m == path or _under(m, path) for m in self._missing):
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
                loop.call_soon_threadsafe(self._push, _Chunk(at, out))
            if rearm:
                loop.call_soon_threadsafe(self._schedule_rearm)

    def _directory_event(
        self, kind: ChangeKind, path: str, out: list[tuple[ChangeKind, str]]
    ) -> tuple[bool, bool]:
        """(is a directory event, is a new directory). New directories are scanned."""
        with self._dirs_lock:
            known = path in self._known_dirs
            if kind == "deleted":
                if known:
                    self._known_dirs.discard(path)
                return known, False
            if known:
                return True, False
        if not os.path.isdir(path):
            return False, False
        with self._dirs_lock:
            self._known_dirs.add(path)
        if kind == "added":
            self._scan_new_dir(path, out)
        return True, True

    def _scan_new_dir(self, top: str, out: list[tuple[ChangeKind, str]]) -> None:
        seen = 0
        for dirpath, _dirs, names in os.walk(top):
            with self._dirs_lock:
                self._known_dirs.add(dirpath)
            for n in names:
                seen += 1
                if seen > _NEW_DIR_SCAN_LIMIT:
                    return
                p = os.path.join(dirpath, n)
                if self._accept(FileChange(Path(p), "added")):
                    out.append(("added", p))

    def _on_error(self, exc: BaseException) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._backend_failed, exc)

    # ---------------------------------------------------------------- loop side

    def _push(self, chunk: _Chunk) -> None:
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

    def _net_changes(self, chunks: Sequence[_Chunk]) -> tuple[tuple[FileChange, ...], int]:
        """Each path's events reduced to what happened to it over the whole batch."""
        first_kinds: dict[str, set[str]] = {}
        events = 0
        for ch in chunks:
            in_chunk: dict[str, set[str]] = {}
            for kind, path in ch.changes:
                events += 1
                in_chunk.setdefault(path, set()).add(kind)
            for path, kinds in in_chunk.items():
                first_kinds.setdefault(path, kinds)
        out: list[FileChange] = []
        for path in sorted(first_kinds):
            existed = path in self._known_files
            # a path we never saw whose first event was not a creation existed all along
            existed = existed or "added" not in first_kinds[path]
            net: ChangeKind
            if os.path.lexists(path):
                net = "modified" if existed else "added"
                self._known_files.add(path)
            elif existed:
                net = "deleted"
                self._known_files.discard(path)
            else:
                continue  # created and gone again within the batch: a temp file
            out.append(FileChange(Path(path), net))
        return tuple(out), events

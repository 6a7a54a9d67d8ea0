"""Arming the watcher: which directories to watch how, and opening their sources.

Runs on a worker thread (``asyncio.to_thread``): resolving targets and counting what
they cover walks the tree, which must never block the event loop.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devbox.core.globs import relative_key
from devbox.core.plan import WatchTargets
from devbox.errors import EngineError
from devbox.watch.batch import ArmedInfo, native_mode
from devbox.watch.sources import EventSource, open_source


@dataclass(slots=True)
class Armed:
    """Open sources and what they cover, as one arming found it."""

    sources: list[EventSource]
    trees: tuple[str, ...]
    flat: tuple[str, ...]
    missing: tuple[str, ...]
    dirs: int
    files: int
    known_dirs: set[str]
    known_files: set[str]
    ms: float


def write_canary(path: Path, mode: str) -> None:
    path.write_text(f"devbox watch canary ({mode}) {time.time()}\n", encoding="utf-8")


def prepare_canary_dir(canary_dir: Path) -> str:
    """Create the canary directory (git-ignored); the reason it failed, or ""."""
    try:
        canary_dir.mkdir(parents=True, exist_ok=True)
        ignore = canary_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")
        return ""
    except OSError as exc:
        return exc.strerror or str(exc)


def nearest_existing(p: Path) -> Path:
    for a in (p, *p.parents):
        if a.is_dir():
            return a
    return Path(p.anchor or "/")


def join_all(sources: Sequence[EventSource]) -> None:
    for s in sources:
        s.join()


def under(path: str, root: str) -> bool:
    return relative_key(path, root) is not None


def resolve(
    targets: WatchTargets, canary_dir: Path | None
) -> tuple[list[str], list[str], list[str]]:
    """(recursive trees, flat directories, missing targets); ``canary_dir`` is watched
    flat when given and present."""
    trees: set[str] = set()
    flat: set[str] = set()
    missing: list[str] = []
    for t in targets.trees:
        if t.is_dir():
            trees.add(str(t))
        else:
            missing.append(str(t))
            flat.add(str(nearest_existing(t)))
    for lit in targets.literals:
        if lit.is_dir():
            trees.add(str(lit))
            continue
        if not lit.exists():
            # a file or a directory to be: if it comes as a directory, re-arm for it
            missing.append(str(lit))
        flat.add(str(lit.parent if lit.parent.is_dir() else nearest_existing(lit.parent)))
    if canary_dir is not None and canary_dir.is_dir():
        flat.add(str(canary_dir))
    kept_trees = sorted(t for t in trees if not any(u != t and under(t, u) for u in trees))
    kept_flat = sorted(d for d in flat if not any(under(d, t) for t in kept_trees))
    return kept_trees, kept_flat, sorted(missing)


def arm(
    targets: WatchTargets,
    *,
    canary_dir: Path,
    canary_on: bool,
    polling: bool,
    poll_delay_ms: int,
    step_ms: int,
    debounce_ms: int,
) -> Armed:
    t0 = time.perf_counter()
    trees, flat, missing = resolve(targets, canary_dir if canary_on else None)
    sources: list[EventSource] = []
    try:
        for paths, recursive in ((trees, True), (flat, False)):
            if paths:
                sources.append(
                    open_source(
                        paths,
                        recursive=recursive,
                        polling=polling,
                        poll_delay_ms=poll_delay_ms,
                        step_ms=step_ms,
                        debounce_ms=debounce_ms,
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
    canary = str(canary_dir)
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
    return Armed(
        sources, tuple(trees), tuple(flat), tuple(missing), dirs, files, known, known_files, ms
    )


def arm_error(targets: WatchTargets, exc: BaseException) -> EngineError:
    paths = ", ".join(str(p) for p in (*targets.trees, *targets.literals))
    return EngineError(
        f"cannot watch files: {exc}",
        hint=f"watched paths: {paths}; check they exist and are readable",
    )


def make_info(
    armed: Armed,
    canary: str,
    canary_ms: float | None,
    fallback: str,
    polling: bool,
    canary_dir: Path,
    poll_delay_ms: int,
) -> ArmedInfo:
    return ArmedInfo(
        mode="polling" if polling else native_mode(),
        trees=armed.trees,
        flat_dirs=tuple(d for d in armed.flat if d != str(canary_dir)),
        missing=armed.missing,
        dirs=armed.dirs,
        files=armed.files,
        arm_ms=armed.ms,
        canary=canary,
        canary_ms=canary_ms,
        fallback=fallback,
        poll_delay_ms=poll_delay_ms if polling else 0,
    )

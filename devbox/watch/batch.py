"""What the watcher hands out: a ``Batch`` of net changes and ``ArmedInfo`` on coverage.

``net_changes`` folds one batch's raw events into a net change per path; it lives
here, beside ``Batch``, because it decides what a batch says happened.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.core.plan import ChangeKind, FileChange, Plan


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
class Chunk:
    """Accepted changes from one reader-thread wakeup, stamped on arrival."""

    at: float
    changes: list[tuple[ChangeKind, str]] = field(default_factory=list)


def net_changes(
    chunks: Sequence[Chunk], known_files: set[str]
) -> tuple[tuple[FileChange, ...], int]:
    """Each path's events reduced to what happened to it over the whole batch.

    ``known_files`` (the files that exist as far as batches told) is updated in place.
    """
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
        existed = path in known_files
        # a path we never saw whose first event was not a creation existed all along
        existed = existed or "added" not in first_kinds[path]
        net: ChangeKind
        if os.path.lexists(path):
            net = "modified" if existed else "added"
            known_files.add(path)
        elif existed:
            net = "deleted"
            known_files.discard(path)
        else:
            continue  # created and gone again within the batch: a temp file
        out.append(FileChange(Path(path), net))
    return tuple(out), events

"""The directories known to be under watch, shared by the reader threads.

inotify cannot report files created in a new directory before its watch existed,
so a new directory is scanned at once and its files reported as added.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from devbox.core.plan import ChangeKind, FileChange

_NEW_DIR_SCAN_LIMIT = 10_000  # entries reported from one newly created directory


class KnownDirs:
    """A lock-guarded set of directory paths (reader threads and the loop both use it)."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def reset(self, dirs: Iterable[str]) -> None:
        with self._lock:
            self._known = set(dirs)

    def event(
        self,
        kind: ChangeKind,
        path: str,
        out: list[tuple[ChangeKind, str]],
        accept: Callable[[FileChange], bool],
    ) -> tuple[bool, bool]:
        """(is a directory event, is a new directory). New directories are scanned."""
        with self._lock:
            known = path in self._known
            if kind == "deleted":
                if known:
                    self._known.discard(path)
                return known, False
            if known:
                return True, False
        if not os.path.isdir(path):
            return False, False
        with self._lock:
            self._known.add(path)
        if kind == "added":
            self._scan_new_dir(path, out, accept)
        return True, True

    def _scan_new_dir(
        self,
        top: str,
        out: list[tuple[ChangeKind, str]],
        accept: Callable[[FileChange], bool],
    ) -> None:
        seen = 0
        for dirpath, _dirs, names in os.walk(top):
            with self._lock:
                self._known.add(dirpath)
            for n in names:
                seen += 1
                if seen > _NEW_DIR_SCAN_LIMIT:
                    return
                p = os.path.join(dirpath, n)
                if accept(FileChange(Path(p), "added")):
                    out.append(("added", p))

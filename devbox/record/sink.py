"""Where captured exchanges go: redacted in memory, then appended to disk.

Theory of operation
-------------------
Every exchange passes through the profile's ``Redactor`` *before* its bytes
exist anywhere but in this process's memory: no temporary file, no buffer on
disk ever holds a secret in clear. The redacted exchange is appended with one
``write()`` to a ``RecordingWriter`` (append-only, so a ``kill -9`` leaves a
file that loads and holds every exchange whose append returned). The recording
worker defers: what it read from one pipe read goes to each file in one write.

A *new recording set* (the default) must not destroy the old one until the new
one is complete. Each source directory ``D`` gets ``D/recording-<stamp>.json.partial``
(loaders skip ``.partial`` files unless asked), so while recording, and after a
crash, the old set is what mocks serve and the partial one stays inspectable.
``commit()`` then, per source that recorded something, moves the old ``*.json``
files to ``<mocks>/.trash/<stamp>/<source>/`` and renames the partial file to
``recording-<stamp>.json``. The moves are listed first in a journal
(``.trash/<stamp>/commit.json``, written atomically) so an interruption between
two renames is rolled forward by ``recover()`` at the next start, never left
half-done. Sources that saw no traffic keep their old recordings.

``--append`` writes ``D/recording-<stamp>.json`` directly: each completed
exchange joins the live set at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson

from devbox.core.model import Direction, Exchange
from devbox.core.profile import Profile
from devbox.errors import RecordingError
from devbox.store import (
    PARTIAL_SUFFIX,
    SUFFIX,
    RecordingWriter,
    atomic_write_bytes,
    new_stamp,
    recording_files,
)

ORIGIN = "devbox record"
TRASH = ".trash"
JOURNAL = "commit.json"


class Redacting(Protocol):
    """What the sink needs of ``devbox.core.redact.Redactor``."""

    def exchange(self, ex: Exchange) -> Exchange: ...

    @property
    def stats(self) -> Mapping[str, int]: ...


@dataclass(slots=True)
class SourceStats:
    source: str
    direction: Direction
    exchanges: int = 0
    errors: int = 0
    truncated: int = 0
    bytes_written: int = 0
    dropped: int = 0  # redaction failed: never written
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    files: tuple[Path, ...] = ()
    backup: Path | None = None  # where the old set went (new-set mode)
    kept: tuple[str, ...] = ()  # sources without traffic: their recordings untouched
    committed: bool = False


@dataclass(slots=True)
class _State:
    writers: dict[str, RecordingWriter] = field(default_factory=dict)
    stats: dict[str, SourceStats] = field(default_factory=dict)
    closed: bool = False


class RecordingSink:
    """Redacts and appends exchanges for one recording session of a profile."""

    def __init__(
        self,
        profile: Profile,
        redactor: Redacting,
        *,
        append: bool = False,
        fsync: bool = False,
        stamp: str | None = None,
        sources: Mapping[str, Direction] | None = None,
        defer: bool = False,
    ) -> None:
        self.profile = profile
        self.redactor = redactor
        self.append = append
        self.fsync = fsync
        # exchanges wait in memory for flush() (see RecordingWriter): the recording worker
        self.defer = defer
        self.stamp = stamp or new_stamp()
        self._lock = threading.Lock()
        self._s = _State()
        for name, direction in (sources or {}).items():
            self._s.stats[name] = SourceStats(name, direction)
        self.on_written: Callable[[Exchange], None] | None = None

    # ------------------------------------------------------------ paths

    def directory(self, source: str) -> Path:
        return self.profile.recordings_dir(source)

    def file_for(self, source: str) -> Path:
        name = f"recording-{self.stamp}"
        suffix = SUFFIX if self.append else PARTIAL_SUFFIX
        return self.directory(source) / (name + suffix)

    @property
    def trash_dir(self) -> Path:
        return self.profile.mocks_dir / TRASH / self.stamp

    # ------------------------------------------------------------ writing

    def write(self, ex: Exchange) -> Exchange | None:
        """Redact, then append. Returns the exchange as stored (None: dropped)."""
        with self._lock:
            if self._s.closed:
                return None
            st = self._s.stats.get(ex.source)
            if st is None:
                st = self._s.stats[ex.source] = SourceStats(ex.source, ex.direction)
            try:
                clean = self.redactor.exchange(ex)
            except Exception:
                # never fall back to writing the exchange unredacted
                st.dropped += 1
                return None
            writer = self._s.writers.get(ex.source)
            if writer is None:
                path = self.file_for(ex.source)
                try:
                    writer = RecordingWriter(
                        path,
                        ex.source,
                        ex.direction,
                        origin=ORIGIN,
                        fsync=self.fsync,
                        defer=self.defer,
                    )
                except OSError as exc:
                    raise RecordingError(f"cannot write: {exc.strerror}", file=str(path)) from None
                self._s.writers[ex.source] = writer
                st.path = path
            before = writer.bytes_written
            writer.append(clean)
            st.bytes_written += writer.bytes_written - before
            st.exchanges += 1
            if clean.error:
                st.errors += 1
            if clean.request_truncated or clean.response_truncated:
                st.truncated += 1
        if self.on_written is not None:
            self.on_written(clean)
        return clean

    def stats(self) -> list[SourceStats]:
        with self._lock:
            return [
                SourceStats(
                    s.source,
                    s.direction,
                    s.exchanges,
                    s.errors,
                    s.truncated,
                    s.bytes_written,
                    s.dropped,
                    s.path,
                )
                for s in self._s.stats.values()
            ]

    @property
    def total(self) -> int:
        return sum(s.exchanges for s in self._s.stats.values())

    def flush(self) -> None:
        """Write the exchanges waiting in memory (``defer``), one write per file."""
        with self._lock:
            for w in self._s.writers.values():
                w.flush()

    def close(self) -> None:
        """Stop accepting exchanges and close files; partial files stay as they are."""
        with self._lock:
            self._s.closed = True
            for w in self._s.writers.values():
                w.close()

    # ------------------------------------------------------------ completing

    def commit(self) -> CommitResult:
        """Make the new set the live one (see the module doc); idempotent."""
        self.close()
        recorded = [s for s in self._s.stats.values() if s.exchanges and s.path is not None]
        kept = tuple(
            s.source
            for s in self._s.stats.values()
            if not s.exchanges and recording_files(self.directory(s.source))
        )
        if self.append:
            return CommitResult(
                files=tuple(s.path for s in recorded if s.path is not None),
                kept=kept,
                committed=True,
            )
        if not recorded:
            # nothing new: the old set stays exactly as it was
            return CommitResult(kept=kept, committed=False)
        finals, backup = commit_sets(
            self.profile, self.stamp, [(s.source, s.path) for s in recorded if s.path]
        )
        return CommitResult(files=tuple(finals), backup=backup, kept=kept, committed=True)


def commit_sets(
    profile: Profile, stamp: str, partials: Sequence[tuple[str, Path]]
) -> tuple[list[Path], Path | None]:
    """Make new recording sets live, one ``(source, partial file)`` each: the source
    directory's old files move to ``<mocks>/.trash/<stamp>/<source>/`` and the partial
    file loses its ``.partial``. The moves are journaled first, so ``recover()`` rolls an
    interrupted commit forward. The one commit of every recorder (the HTTP sink, the
    Redis/Postgres relays). Returns (the committed files, the trash directory when old
    files went there)."""
    trash = profile.mocks_dir / TRASH / stamp
    moves: list[tuple[str, str]] = []
    finals: list[Path] = []
    for source, partial in partials:
        for old in recording_files(partial.parent):
            moves.append((str(old), str(trash / source / old.name)))
        final = partial.with_name(partial.name[: -len(PARTIAL_SUFFIX)] + SUFFIX)
        moves.append((str(partial), str(final)))
        finals.append(final)
    if not moves:
        return finals, None
    has_old = any(Path(dst).is_relative_to(trash) for _src, dst in moves)
    if has_old:
        _ignore_in_git(profile.mocks_dir / TRASH)
    journal = trash / JOURNAL
    atomic_write_bytes(journal, orjson.dumps({"moves": moves}, option=orjson.OPT_INDENT_2))
    _apply(journal)
    return finals, trash if has_old else None


def _ignore_in_git(trash: Path) -> None:
    gi = trash / ".gitignore"
    if not gi.exists():
        trash.mkdir(parents=True, exist_ok=True)
        gi.write_text("# old recording sets replaced by `devbox record`\n*\n", encoding="utf-8")


def _apply(journal: Path) -> None:
    """Perform (or finish) the moves a journal lists, then delete it."""
    try:
        moves = orjson.loads(journal.read_bytes())["moves"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        raise RecordingError(
            "unreadable commit journal of an interrupted recording",
            file=str(journal),
            hint="move the files it names by hand, then delete it",
        ) from None
    for src, dst in moves:
        s, d = Path(src), Path(dst)
        if s.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            os.replace(s, d)
    journal.unlink(missing_ok=True)
    for d in (journal.parent, journal.parent.parent):
        try:
            d.rmdir()  # only when empty: nothing was replaced
        except OSError:
            break


def recover(profile: Profile) -> list[Path]:
    """Roll forward commits a previous run was killed in the middle of."""
    base = profile.mocks_dir / TRASH
    if not base.is_dir():
        return []
    done = []
    for journal in sorted(base.glob(f"*/{JOURNAL}")):
        _apply(journal)
        done.append(journal.parent)
    return done


def unfinished(profile: Profile, sources: list[str]) -> list[Path]:
    """Partial files left by recordings that were killed (kept for inspection)."""
    out: list[Path] = []
    for s in sources:
        d = profile.recordings_dir(s)
        if d.is_dir():
            out.extend(sorted(d.glob(f"*{PARTIAL_SUFFIX}")))
    return out

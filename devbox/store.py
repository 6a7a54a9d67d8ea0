"""Recordings on disk: reading a directory of recording files, crash-safe writing.

Layout: ``mocks/<profile>/<source>/*.json``, one directory per dependency plus
``inbound`` for the traffic clients sent to the service. Every ``*.json`` file in
a source directory is a recording (see ``devbox.core.recording``); they are read
in name order, so imports and recording sessions can sit side by side.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from devbox.core.model import Direction, Exchange
from devbox.core.recording import (
    Decoded,
    RecordingHeader,
    decode,
    encode,
    exchange_to_text,
    header_to_text,
    is_torn_object,
)
from devbox.errors import NotFoundError, RecordingError

SUFFIX = ".json"
# a recording set still being written; readers include it, see RecordingWriter
PARTIAL_SUFFIX = ".json.partial"


@dataclass(frozen=True, slots=True)
class LoadedFile:
    path: Path
    decoded: Decoded


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_STAMPS_LOCK = threading.Lock()
_stamps: tuple[str, set[str]] = ("", set())  # the second last stamped, its suffixes


def new_stamp(now: datetime | None = None) -> str:
    """The stamp in a new recording's file name (and its ids, its trash directory): the
    UTC second, readable and sorting in time order, then six random hex digits, so two
    recordings begun in the same second (two terminals, a test session recording twice)
    never share a file: ``20261205T131055Z-3fa9c1``. One process never hands out the same
    stamp twice; two processes collide once in 16 million same-second starts."""
    global _stamps
    base = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    with _STAMPS_LOCK:
        if _stamps[0] != base:
            _stamps = (base, set())
        taken = _stamps[1]
        while (suffix := secrets.token_hex(3)) in taken:
            pass
        taken.add(suffix)
    return f"{base}-{suffix}"


def recording_files(directory: Path, *, include_partial: bool = False) -> list[Path]:
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.is_file() and p.name.endswith(SUFFIX)]
    if include_partial:
        files += [p for p in directory.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
    return sorted(files)


def load_file(path: Path) -> LoadedFile:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such recording file") from None
    except OSError as exc:
        raise RecordingError(f"cannot read: {exc.strerror}", file=str(path)) from None
    return LoadedFile(path, decode(data, str(path)))


def load_dir(directory: Path, *, include_partial: bool = False) -> list[Exchange]:
    """All exchanges of one source directory, in file order then recorded order."""
    out: list[Exchange] = []
    for f in recording_files(directory, include_partial=include_partial):
        out.extend(load_file(f).decoded.exchanges)
    return out


def load_path(path: Path) -> list[Exchange]:
    """A recording file or a source directory, whichever ``path`` is."""
    if path.is_dir():
        return load_dir(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such recording file or directory")
    return list(load_file(path).decoded.exchanges)


# One decision for every file devbox writes into a project (recordings by import and by
# record, rewritten profiles, reports): readable by all, writable by the owner, as the
# umask allows. Recordings are redacted before they exist and meant to be committed and
# reviewed like source, so they get the mode of a source file; a file being replaced
# keeps the mode it had (a user who made a recording private keeps it private).
FILE_MODE = 0o644


def _create_exclusive(directory: Path, prefix: str, mode: int) -> tuple[int, Path]:
    """A new file that did not exist (O_EXCL), created with ``mode`` less the umask."""
    for _ in range(100):
        tmp = directory / f"{prefix}{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), tmp
        except FileExistsError:
            continue
    raise RecordingError("cannot create a temporary file", file=str(directory))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-to-temp-then-rename: readers see the old file or the new one, never half.

    A new file gets ``FILE_MODE`` (less the umask); a replaced one keeps its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_exclusive(path.parent, f".{path.name}.", FILE_MODE)
    try:
        try:
            os.fchmod(fd, path.stat().st_mode & 0o7777)
        except FileNotFoundError:
            pass
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_recording(
    path: Path,
    source: str,
    direction: Direction,
    exchanges: Iterable[Exchange],
    origin: str = "",
) -> Path:
    header = RecordingHeader(
        source=source, direction=direction, created_at=now_iso(), origin=origin
    )
    atomic_write_bytes(path, encode(header, exchanges))
    return path


def free_path(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``stem-2.json``, ``stem-3.json``…:
    an import never overwrites a recording silently."""
    if not path.exists():
        return path
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    for n in range(2, 100_000):
        candidate = path.with_name(f"{name}-{n}{SUFFIX}")
        if not candidate.exists():
            return candidate
    raise RecordingError("no free file name", file=str(path))


def _drop_torn_tail(path: Path) -> int:
    """Cut a torn final object (a writer killed mid-append) before appending after it;
    otherwise it would sit in the middle of the file, which readers report as corruption.
    Returns the number of bytes dropped."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        window = 1 << 20
        while True:
            # the last object starts at the last "{" at column 0 (nested ones are indented)
            base = max(0, size - window)
            f.seek(base)
            tail = f.read(size - base)
            at = tail.rfind(b"\n{")
            if at != -1:
                start = base + at + 1
                break
            if base == 0:
                start = 0
                break
            window *= 4
        f.seek(start)
        last = f.read(size - start)
    if last.strip():
        try:
            orjson.loads(last)
            return 0
        except orjson.JSONDecodeError:
            pass
    if last.strip() and not is_torn_object(last):
        # not devbox's layout, or damaged in the middle: never cut what we did not write
        raise RecordingError(
            "cannot append: the file does not end with a complete object",
            file=str(path),
            hint="check it with `devbox traffic ls`, or record into a new file",
        )
    with path.open("r+b") as f:
        f.truncate(start)
    return size - start


class RecordingWriter:
    """Append-only writer: every ``append`` is one ``write()`` of a whole exchange.

    A ``kill -9`` at any moment leaves a file that loads with every exchange whose
    append returned. Appending to an existing file keeps its header.

    With ``defer``, appends wait in memory for ``flush()`` (or ``close()``), which writes
    them with one ``write()``: a kill then loses the exchanges appended since the last
    flush, never a part of one. The recording worker flushes after each read from its
    pipe, so a thousand exchanges a second cost a few writes, not a thousand.
    """

    def __init__(
        self,
        path: Path,
        source: str,
        direction: Direction,
        *,
        origin: str = "",
        fsync: bool = False,
        defer: bool = False,
    ) -> None:
        self.final_path = path
        self.path = path
        self.count = 0
        self.bytes_written = 0  # appended, flushed or not
        self._fsync = fsync
        self._later: list[bytes] | None = [] if defer else None
        path.parent.mkdir(parents=True, exist_ok=True)
        header = RecordingHeader(
            source=source, direction=direction, created_at=now_iso(), origin=origin
        )
        exists = path.exists() and path.stat().st_size > 0
        # a previous writer of this file may have been killed mid-append
        self.dropped_torn_bytes = _drop_torn_tail(path) if exists else 0
        if self.dropped_torn_bytes:
            exists = path.stat().st_size > 0
        # O_APPEND: concurrent appends from threads never interleave inside a chunk
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        if not exists:
            text = header_to_text(header)
            self._write(text)
            self.bytes_written += len(text)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self._fsync:
            os.fsync(self._fd)

    def append(self, exchange: Exchange) -> None:
        text = exchange_to_text(exchange)
        self.bytes_written += len(text)
        self.count += 1
        if self._later is None:
            self._write(text)
        else:
            self._later.append(text)

    def flush(self) -> None:
        """Write what waits (``defer``), in one ``write()``."""
        later = self._later
        if later:
            self._later = []
            self._write(b"".join(later) if len(later) > 1 else later[0])

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""What ``devbox traffic ls|show TARGET`` means by its target: a name before a path.

The rule (docs/recordings.md, "Which recordings"):

1. A target written as a path (``./web``, ``../x``, ``/abs``, ``~/x``, ``.``, or a name
   ending in ``.json``/``.json.partial``) is that file or directory.
2. Otherwise ``NAME`` or ``NAME/SOURCE`` is the profile ``profiles/NAME.toml`` (and its
   source: a dependency, ``inbound``, any directory of ``mocks/NAME/``) when that profile
   exists, even when a directory of that name exists too (a service's code in ``web/``
   next to a profile ``web`` is common): a note says how to reach the directory.
3. A name that is no profile is a file or directory when one exists
   (``mocks/demo/payments``).

So ``devbox traffic ls web`` always lists the profile ``web``'s recordings where there is
one, whatever directories the current one holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.cli import output
from devbox.errors import NotFoundError, RecordingError

if TYPE_CHECKING:
    from devbox.core.model import Exchange


@dataclass
class _FileInfo:
    path: Path
    exchanges: list[Exchange] = field(default_factory=list)
    torn_tail: bool = False
    partial: bool = False
    size: int = 0
    origin: str = ""
    created_at: str = ""
    error: RecordingError | None = None
    wire: list[Any] = field(default_factory=list)  # rows of a non-HTTP kind (traffic_wire)


@dataclass
class _Source:
    name: str
    directory: Path
    files: list[_FileInfo] = field(default_factory=list)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _source_dirs(root: Path) -> list[Path]:
    """Directories under ``root`` (itself included) holding recording files."""
    from devbox.store import PARTIAL_SUFFIX, SUFFIX

    found = []
    for d in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        if any(
            f.is_file() and (f.name.endswith(SUFFIX) or f.name.endswith(PARTIAL_SUFFIX))
            for f in d.iterdir()
        ):
            found.append(d)
    return found


def written_as_path(target: str) -> bool:
    from devbox.store import PARTIAL_SUFFIX, SUFFIX

    return (
        target in (".", "..")
        or target.startswith(("./", "../", "/", "~"))
        or target.endswith((SUFFIX, PARTIAL_SUFFIX))
    )


def profile_named(name: str) -> Path | None:
    """``profiles/NAME.toml`` under the current directory, when it exists."""
    if not name or name in (".", "..") or "\\" in name:
        return None
    candidate = Path.cwd() / "profiles" / f"{name}.toml"
    return candidate if candidate.is_file() else None


def as_path(target: str, *, note: bool = True) -> Path | None:
    """The file or directory ``target`` names by the rule above, or None: a profile."""
    if written_as_path(target):
        return Path(target).expanduser()
    if profile_named(target.partition("/")[0]) is not None:
        if note and Path(target).exists():
            output.info(
                f"{target}: the recordings of profile {target.partition('/')[0]!r} "
                f"(for the directory {target} write ./{target})"
            )
        return None
    path = Path(target)
    return path if path.exists() else None


def _resolve_sources(target: str | None, *, note: bool = True) -> list[_Source]:
    from devbox.core.profile import load_profile

    if target is None:
        root = Path("mocks")
        if not root.is_dir():
            raise NotFoundError(
                "no ./mocks directory here",
                hint="give a profile name or a directory: devbox traffic ls demo",
            )
        return [
            _Source(_display(d.relative_to(root)) if d != root else ".", d)
            for d in _source_dirs(root)
        ]
    path = as_path(target, note=note)
    if path is not None:
        if path.is_file():
            return [_Source(path.parent.name, path.parent, [_FileInfo(path)])]
        if path.is_dir():
            dirs = _source_dirs(path)
            return [
                _Source(_display(d.relative_to(path)) if d != path else path.name or str(path), d)
                for d in dirs
            ]
        raise NotFoundError(f"{target}: no such recording file or directory")
    name, _, source = target.partition("/")
    if "." in name or not name:
        raise NotFoundError(f"{target}: no such recording file or directory")
    profile = load_profile(name)  # not found: names the profiles there are
    if source:
        return [_Source(source, profile.recordings_dir(source))]
    sources = [_Source(d.name, profile.recordings_dir(d.name)) for d in profile.dependencies]
    sources.append(_Source("inbound", profile.inbound_dir))
    known = {s.directory.resolve() for s in sources}
    if profile.mocks_dir.is_dir():
        for d in sorted(profile.mocks_dir.iterdir()):
            if d.is_dir() and d.resolve() not in known:
                sources.append(_Source(d.name, d))
    return sources

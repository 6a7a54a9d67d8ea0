"""What a batch of changed files means for the running service: the plan.

Theory of operation
-------------------
Every changed path is classified on its own, by the first of these that applies:

1. editor and tool litter (vim swap files and its ``4913`` probe, ``~`` backups,
   emacs ``#autosave#`` and ``.#locks``, JetBrains ``___jb_tmp___``, VS Code
   ``.vsctmp``, kate/gedit temp files, ``.DS_Store``...) -> nothing
2. built-in ignored directories (``.git``, ``__pycache__``, ``.devbox``, tool caches) -> nothing
3. the profile's ``service.watch.ignore`` (``.gitignore`` style) -> nothing
4. the profile file -> reload-profile
5. a recordings directory (``mocks_dir`` or a dependency's ``recordings``) -> reload-mocks
6. the build context's ``.dockerignore`` (the file is not in the image) -> nothing,
   except the Dockerfile and ``.dockerignore`` themselves, which Docker always reads
7. ``service.watch.rebuild`` -> rebuild
8. the Dockerfile or ``.dockerignore`` of the build context -> rebuild
9. ``service.watch.sync`` -> sync+restart
10. anything else inside ``build.context`` -> rebuild: it may be copied into the image,
    and a rebuild is the only action that cannot be wrong
11. anything else -> nothing

The batch's action is the strongest one among its paths; ``Plan.actions`` lists every
distinct action, so a batch that changes code *and* recordings also reloads the mocks.
Deleted files are planned like any other: a deleted synced file must disappear from
the service too.

Pure: paths are compared as strings (the one look at the file system is resolving the
profile's own path, as ``load_profile`` did for ``Profile.root``). The caller reads
``.dockerignore`` (see ``devbox.watch``) and passes its lines in.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from devbox.core.globs import (
    Glob,
    IgnoreList,
    compile_glob,
    has_magic,
    literal_prefix,
    normalize_pattern,
    relative_key,
)
from devbox.core.profile import Profile

Action = Literal["rebuild", "reload-profile", "sync+restart", "reload-mocks", "nothing"]
ChangeKind = Literal["added", "modified", "deleted", "unknown"]

# weakest first: the index is the strength
ACTIONS: tuple[Action, ...] = (
    "nothing",
    "reload-mocks",
    "sync+restart",
    "reload-profile",
    "rebuild",
)
_STRENGTH = {a: i for i, a in enumerate(ACTIONS)}

# directories whose contents never matter to the running service
IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".jj",
        "__pycache__",
        ".devbox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".hypothesis",
        ".idea",
        ".vscode",
        ".venv",
    }
)

_VIM_SWAP = re.compile(r"^\..*\.sw[a-p]$|^\..*\.swx$|^.*\.sw[opx]$")
_EDITOR_TEMPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_VIM_SWAP, "vim swap file"),
    (re.compile(r"^.*~$"), "editor backup file (name~)"),
    (re.compile(r"^#.*#$"), "emacs auto-save file"),
    (re.compile(r"^\.#"), "emacs lock file"),
    (re.compile(r"___jb_(?:tmp|old|bak)___$"), "JetBrains safe-write temp file"),
    (re.compile(r"\.vsctmp$"), "VS Code atomic-save temp file"),
    (re.compile(r"\.kate-swp$"), "kate swap file"),
    (re.compile(r"^\.goutputstream-"), "gedit/GIO save temp file"),
    (re.compile(r"\.crswap$"), "browser save temp file"),
    (re.compile(r"^\.~lock\..*#$"), "LibreOffice lock file"),
    (re.compile(r"^\.nfs[0-9a-fA-F]+$"), "NFS silly-rename file"),
    (re.compile(r"\.py[cod]$"), "compiled Python file"),
    (re.compile(r"^(?:\.DS_Store|Thumbs\.db|desktop\.ini)$"), "OS metadata file"),
    (re.compile(r"^flycheck_"), "flycheck temp file"),
    (re.compile(r"^\.sublime-"), "Sublime Text temp file"),
)


def editor_temp_kind(name: str) -> str | None:
    """Why a file *name* is editor or tool litter, or None when it is a real file."""
    # vim writes "4913" (then 5036, 5159... while those exist) to test a directory is writable
    if name.isdigit() and int(name) >= 4913 and (int(name) - 4913) % 123 == 0:
        return "vim write-test file"
    for rx, kind in _EDITOR_TEMPS:
        if rx.search(name):
            return kind
    return None


def _litter(parts: Sequence[str]) -> tuple[str, str] | None:
    temp = editor_temp_kind(parts[-1]) if parts else None
    if temp:
        return "editor temp file", f"is editor or tool litter ({temp}); never triggers anything"
    for d in parts[:-1]:
        if d in IGNORED_DIRS:
            return f"built-in ignore '{d}/'", f"is inside {d}/, which never triggers anything"
    return None


def litter_reason(key: str) -> str | None:
    """Why a path (relative posix key) is editor/tool litter or inside an ignored
    directory such as ``.git``; None for a real file. Used when there is no profile."""
    hit = _litter([p for p in key.split("/") if p])
    return hit[1] if hit else None


@dataclass(frozen=True, slots=True)
class FileChange:
    """One changed path as the watcher saw it (``kind`` "unknown" when nobody said)."""

    path: Path
    kind: ChangeKind = "unknown"


@dataclass(frozen=True, slots=True)
class PlannedPath:
    path: str  # relative to the project root (posix), absolute when outside it
    abs_path: Path
    change: ChangeKind
    action: Action
    rule: str  # the rule that decided, e.g. "rebuild 'examples/demo/orders/Dockerfile'"
    field: str  # where that rule lives: "service.watch.rebuild[0]", ".dockerignore:3", ""
    reason: str  # one sentence a user reads

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "abs_path": str(self.abs_path),
            "change": self.change,
            "action": self.action,
            "rule": self.rule,
            "field": self.field,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    action: Action  # the strongest action of the batch
    steps: tuple[PlannedPath, ...]
    reason: str

    @property
    def actions(self) -> tuple[Action, ...]:
        """Every distinct action the batch needs, strongest first ("nothing" left out)."""
        seen = {s.action for s in self.steps} - {"nothing"}
        return tuple(sorted(seen, key=lambda a: -_STRENGTH[a]))

    def needs(self, action: Action) -> bool:
        return any(s.action == action for s in self.steps)

    @property
    def sync_paths(self) -> tuple[Path, ...]:
        """Absolute paths to mirror into the service: copy when present, delete when gone."""
        return tuple(s.abs_path for s in self.steps if s.action == "sync+restart")

    @property
    def deleted_paths(self) -> tuple[Path, ...]:
        return tuple(
            s.abs_path for s in self.steps if s.change == "deleted" and s.action != "nothing"
        )

    @property
    def changed(self) -> tuple[str, ...]:
        """Paths that lead to an action (for IterationStarted.changed)."""
        return tuple(s.path for s in self.steps if s.action != "nothing")

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "actions": list(self.actions),
            "reason": self.reason,
            "sync_paths": [str(p) for p in self.sync_paths],
            "steps": [s.as_dict() for s in self.steps],
        }


# ---------------------------------------------------------------- compiled rules


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: str  # as the user wrote it
    glob: Glob
    field: str
    absolute: bool  # matched against the absolute path (pattern outside the root)


def _posix(p: Path | str) -> str:
    return PurePosixPath(p).as_posix() if isinstance(p, Path) else p.replace("\\", "/")


def _abs(root: str, p: str) -> str:
    return posixpath.normpath(p if p.startswith("/") else posixpath.join(root, p))


def _rules(root: str, patterns: Sequence[str], field: str) -> tuple[_Rule, ...]:
    out = []
    for i, pat in enumerate(patterns):
        norm = normalize_pattern(pat)
        absolute = norm.startswith("/") or norm == ".." or norm.startswith("../")
        if absolute:
            norm = _abs(root, norm)
            # a pattern that lands inside the root is an ordinary relative one
            rel = relative_key(norm, root)
            if rel is not None:
                norm, absolute = rel, False
        out.append(_Rule(pat, compile_glob(norm), f"{field}[{i}]", absolute))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Compiled:
    root: str
    profile_file: str
    recordings: tuple[tuple[str, str], ...]  # (absolute dir, description)
    sync: tuple[_Rule, ...]
    rebuild: tuple[_Rule, ...]
    ignore: IgnoreList
    context: str | None  # absolute build context
    dockerfile: str | None  # absolute Dockerfile path
    dockerignore_path: str | None
    dockerignore: IgnoreList


def _compile(profile: Profile, dockerignore: Sequence[str]) -> _Compiled:
    root = _posix(profile.root)
    w = profile.service.watch
    recordings = [(_abs(root, _posix(profile.mocks_dir)), "the recordings directory")]
    for d in profile.dependencies:
        if d.recordings:
            recordings.append((_abs(root, d.recordings), f"{d.name}'s recordings directory"))
    build = profile.service.build
    context = _abs(root, build.context) if build else None
    return _Compiled(
        root=root,
        profile_file=posixpath.normpath(_abs(root, _posix(profile.path.resolve()))),
        recordings=tuple(recordings),
        sync=_rules(root, w.sync, "service.watch.sync"),
        rebuild=_rules(root, w.rebuild, "service.watch.rebuild"),
        ignore=IgnoreList.parse(w.ignore, basename_anywhere=True),
        context=context,
        dockerfile=_abs(context, build.dockerfile) if build and context else None,
        dockerignore_path=posixpath.join(context, ".dockerignore") if context else None,
        dockerignore=IgnoreList.parse(dockerignore, basename_anywhere=False),
    )


def _first(rules: tuple[_Rule, ...], rel: str | None, absolute: str) -> _Rule | None:
    for r in rules:
        key = absolute if r.absolute else rel
        if key is not None and r.glob.matches(key):
            return r
    return None


def _classify(c: _Compiled, absolute: str, change: ChangeKind) -> PlannedPath:
    rel = relative_key(absolute, c.root)
    shown = rel if rel else absolute
    parts = (rel if rel is not None else absolute.lstrip("/")).split("/")

    def step(action: Action, rule: str, field: str, reason: str) -> PlannedPath:
        return PlannedPath(shown, Path(absolute), change, action, rule, field, reason)

    litter = _litter(parts)
    if litter is not None:
        rule, reason = litter
        return step("nothing", rule, "", f"{shown} {reason}")
    if rel is not None:
        hit = c.ignore.match(rel)
        if hit is not None:
            return step(
                "nothing",
                f"ignore '{hit.line}'",
                f"service.watch.ignore[{hit.lineno - 1}]",
                f"{shown} matched ignore rule '{hit.line}'",
            )
    if absolute == c.profile_file:
        return step("reload-profile", "profile file", "", f"{shown} is the profile itself")
    for rec_dir, what in c.recordings:
        if relative_key(absolute, rec_dir) is not None:
            return step("reload-mocks", "recordings", "", f"{shown} is in {what}")
    in_context = c.context is not None and relative_key(absolute, c.context) is not None
    build_input = absolute in (c.dockerfile, c.dockerignore_path)
    if in_context and c.dockerignore and not build_input and c.context is not None:
        ctx_rel = relative_key(absolute, c.context)
        hit = c.dockerignore.match(ctx_rel) if ctx_rel else None
        if hit is not None:
            where = relative_key(c.dockerignore_path or "", c.root) or str(c.dockerignore_path)
            return step(
                "nothing",
                f".dockerignore '{hit.line}'",
                f"{where}:{hit.lineno}",
                f"{shown} is excluded from the build context by {where} ('{hit.line}')",
            )
    r = _first(c.rebuild, rel, absolute)
    if r is not None:
        return step(
            "rebuild",
            f"rebuild '{r.pattern}'",
            r.field,
            f"{shown} matched rebuild rule '{r.pattern}'",
        )
    if build_input:
        which = "Dockerfile" if absolute == c.dockerfile else ".dockerignore"
        return step(
            "rebuild",
            f"build.{'dockerfile' if which == 'Dockerfile' else 'context'}",
            "service.build",
            f"{shown} is the build context's {which}",
        )
    r = _first(c.sync, rel, absolute)
    if r is not None:
        return step(
            "sync+restart",
            f"sync '{r.pattern}'",
            r.field,
            f"{shown} matched sync rule '{r.pattern}'",
        )
    if in_context:
        ctx = relative_key(c.context or "", c.root) or c.context
        return step(
            "rebuild",
            "build.context",
            "service.build.context",
            f"{shown} is in the build context '{ctx}' but matches no sync or rebuild rule; "
            "rebuilding to be safe (add it to service.watch.sync or .ignore to change that)",
        )
    return step("nothing", "", "", f"{shown} matches no watch rule")


class Planner:
    """A profile's watch rules compiled once; ``classify`` is cheap enough to run on
    every file event (the watcher uses it as its filter)."""

    def __init__(self, profile: Profile, dockerignore: Sequence[str] = ()) -> None:
        self.profile = profile
        self.dockerignore = tuple(dockerignore)
        self._c = _compile(profile, self.dockerignore)

    @property
    def dockerignore_path(self) -> Path | None:
        """The build context's ``.dockerignore`` (whether or not it exists)."""
        p = self._c.dockerignore_path
        return Path(p) if p else None

    def classify(self, path: Path | str, change: ChangeKind = "unknown") -> PlannedPath:
        return _classify(self._c, _abs(self._c.root, _posix(path)), change)

    def plan(self, paths: Iterable[Path | str | FileChange]) -> Plan:
        steps: list[PlannedPath] = []
        seen: set[str] = set()
        for item in paths:
            kind: ChangeKind = "unknown"
            if isinstance(item, FileChange):
                raw, kind = _posix(item.path), item.kind
            else:
                raw = _posix(item)
            absolute = _abs(self._c.root, raw)
            if absolute in seen:
                continue
            seen.add(absolute)
            steps.append(_classify(self._c, absolute, kind))
        steps.sort(key=lambda s: (-_STRENGTH[s.action], s.path))
        return _summarize(tuple(steps))


def plan_changes(
    profile: Profile,
    paths: Iterable[Path | str | FileChange],
    *,
    dockerignore: Sequence[str] = (),
) -> Plan:
    """Plan a batch. Relative paths are taken from the project root (``profile.root``);
    ``dockerignore`` holds the lines of the build context's ``.dockerignore``."""
    return Planner(profile, dockerignore).plan(paths)


def combine_plans(*plans: Plan) -> Plan:
    """Several batches' plans as one, without classifying again: per path the newest step
    wins (a file deleted after it was modified is deleted)."""
    by_path: dict[Path, PlannedPath] = {}
    for plan in plans:
        for step in plan.steps:
            by_path[step.abs_path] = step
    steps = sorted(by_path.values(), key=lambda s: (-_STRENGTH[s.action], s.path))
    return _summarize(tuple(steps))


NO_CHANGES = Plan("nothing", (), "no files changed")


def _summarize(steps: tuple[PlannedPath, ...]) -> Plan:
    if not steps:
        return Plan("nothing", steps, "no files changed")
    top = steps[0]  # sorted strongest first
    if top.action == "nothing":
        n = len(steps)
        return Plan(
            "nothing",
            steps,
            f"{n} change{'s' * (n != 1)}, none matching a watch rule" if n > 1 else top.reason,
        )
    same = sum(1 for s in steps if s.action == top.action)
    more = f" (and {same - 1} more)" if same > 1 else ""
    return Plan(top.action, steps, f"{top.reason}{more}")


# ---------------------------------------------------------------- what to watch


@dataclass(frozen=True, slots=True)
class WatchTargets:
    """Where events can come from. ``trees`` are watched recursively; ``literals`` may
    be files (their parent directory is watched, non-recursively, so atomic saves that
    replace the file are seen) or directories (then watched as trees)."""

    root: Path
    trees: tuple[Path, ...]
    literals: tuple[Path, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "trees": [str(p) for p in self.trees],
            "literals": [str(p) for p in self.literals],
        }


def watch_targets(profile: Profile) -> WatchTargets:
    """The roots of the sync/rebuild globs, the build context, the profile file and
    every recordings directory. Overlaps are removed; the result is sorted."""
    root = _posix(profile.root)
    trees: set[str] = set()
    literals: set[str] = set()
    w = profile.service.watch
    for pat in (*w.sync, *w.rebuild):
        norm = normalize_pattern(pat)
        if not norm:
            continue
        prefix = literal_prefix(norm)
        full = _abs(root, prefix) if prefix else root
        if has_magic(norm) or "\\" in norm:
            trees.add(full)
        else:
            literals.add(full)
    build = profile.service.build
    if build is not None:
        context = _abs(root, build.context)
        trees.add(context)
        literals.add(_abs(context, build.dockerfile))
    trees.add(_abs(root, _posix(profile.mocks_dir)))
    for d in profile.dependencies:
        if d.recordings:
            trees.add(_abs(root, d.recordings))
    literals.add(_abs(root, _posix(profile.path.resolve())))

    def covered(p: str, exclude_self: bool) -> bool:
        return any(relative_key(p, t) is not None and not (exclude_self and t == p) for t in trees)

    kept_trees = sorted(t for t in trees if not covered(t, exclude_self=True))
    trees = set(kept_trees)
    kept_literals = sorted(p for p in literals if not covered(p, exclude_self=False))
    return WatchTargets(
        root=Path(root),
        trees=tuple(Path(t) for t in kept_trees),
        literals=tuple(Path(p) for p in kept_literals),
    )

"""Path globs with ``**``, as used by watch rules, ignore lists and ``.dockerignore``.

Theory of operation
-------------------
A pattern is split on ``/`` into components and compiled to one regular expression
that is matched against a *key*: a posix path relative to the project root (or an
absolute path, for patterns written as absolute paths).

* ``*`` matches any run of characters inside one component (never ``/``), ``?`` one
  character, ``[abc]`` / ``[a-z]`` / ``[!abc]`` / ``[^abc]`` one character of a class,
  ``\\x`` the character ``x`` itself.
* ``**`` as a whole component matches zero or more components: ``a/**/b`` matches
  ``a/b`` and ``a/x/y/b``; ``**/b`` matches ``b`` at any depth; ``a/**`` matches
  everything inside ``a``. ``**`` inside a component (``a**b``) is a plain ``*``.
* A pattern that matches a directory matches everything below it too, so
  ``rebuild = ["deps"]`` covers ``deps/x/y.txt`` (as ``.dockerignore`` does).

``IgnoreList`` adds the ``.gitignore`` conventions on top: ``!`` re-includes, the
last matching line wins, a trailing ``/`` matches only directories, and, when asked
for (``basename_anywhere``), a pattern without a ``/`` matches at any depth.
Docker's ``.dockerignore`` is anchored at the context root, so it is parsed with
``basename_anywhere=False``.

Pure: no file system access; the same input always gives the same answer.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

_MAGIC = frozenset("*?[")


def has_magic(pattern: str) -> bool:
    """True when the pattern contains a wildcard (an escaped one counts too)."""
    return any(c in _MAGIC for c in pattern)


def normalize_pattern(pattern: str) -> str:
    """Drop ``./`` prefixes, doubled slashes and whitespace the user did not mean."""
    p = pattern.strip()
    while p.startswith("./"):
        p = p[2:]
    absolute = p.startswith("/")
    parts = [c for c in p.split("/") if c not in ("", ".")]
    # ``**/**`` is the same as ``**``; collapsing keeps the regex linear
    collapsed: list[str] = []
    for c in parts:
        if c == "**" and collapsed and collapsed[-1] == "**":
            continue
        collapsed.append(c)
    out = "/".join(collapsed)
    return "/" + out if absolute else out


def literal_prefix(pattern: str) -> str:
    """The leading components without wildcards: the directory a watcher must cover.

    ``src/**/*.py`` -> ``src``; ``Dockerfile`` -> ``Dockerfile``; ``**/*.py`` -> ``""``.
    """
    parts = normalize_pattern(pattern).split("/")
    out: list[str] = []
    for c in parts:
        if has_magic(c) or "\\" in c:
            break
        out.append(c)
    joined = "/".join(out)
    if pattern.strip().startswith("/") and not joined.startswith("/"):
        joined = "/" + joined
    return joined


def _translate_component(comp: str) -> str:
    """One path component (no ``/``) to a regex fragment that cannot cross ``/``."""
    out: list[str] = []
    i, n = 0, len(comp)
    while i < n:
        c = comp[i]
        if c == "*":
            while i + 1 < n and comp[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(comp[i]))
        elif c == "[":
            j = i + 1
            negate = j < n and comp[j] in "!^"
            if negate:
                j += 1
            # a ``]`` right after the opening is a member, not the end
            if j < n and comp[j] == "]":
                j += 1
            while j < n and comp[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))  # unclosed: a literal ``[``, as fnmatch does
            else:
                body = comp[i + 1 : j]
                if negate:
                    body = body[1:]
                members = "".join("\\" + ch if ch in "\\^[]" else ch for ch in body)
                out.append(f"[^/{members}]" if negate else f"(?!/)[{members}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _translate(pattern: str) -> str:
    """A normalized pattern to the regex body (without anchors or the descendant tail)."""
    if pattern == "**":
        return ".+"
    absolute = pattern.startswith("/")
    parts = pattern.lstrip("/").split("/")
    pieces: list[str] = ["/" if absolute else ""]
    last = len(parts) - 1
    for i, comp in enumerate(parts):
        if comp == "**":
            if i == last:
                pieces.append(".+")  # ``a/**``: something inside a
            else:
                pieces.append("(?:[^/]+/)*")  # zero or more whole components
        else:
            pieces.append(_translate_component(comp))
            if i != last:
                pieces.append("/")
    return "".join(pieces)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled pattern; ``matches(key)`` is true for the path or anything below it."""

    pattern: str  # as the user wrote it
    normalized: str
    regex: re.Pattern[str]

    def matches(self, key: str) -> bool:
        return self.regex.match(key) is not None


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: str, *, dir_only: bool = False, anywhere: bool = False) -> Glob:
    """Compile a pattern. ``dir_only``: match only things below a matching directory;
    ``anywhere``: the pattern may start at any depth (``.gitignore`` without a slash)."""
    norm = normalize_pattern(pattern)
    if not norm:
        # an empty pattern matches nothing, rather than everything
        return Glob(pattern, norm, re.compile(r"(?!)"))
    body = _translate(norm)
    head = "(?:[^/]+/)*" if anywhere and not norm.startswith("/") else ""
    tail = "/.+" if dir_only else "(?:/.*)?"
    return Glob(pattern, norm, re.compile(f"^{head}{body}{tail}$", re.DOTALL))


def match_any(globs: Iterable[Glob], key: str) -> Glob | None:
    for g in globs:
        if g.matches(key):
            return g
    return None


@dataclass(frozen=True, slots=True)
class IgnoreRule:
    glob: Glob
    negated: bool
    line: str  # the line as written, for explanations
    lineno: int  # 1-based line in the file (index + 1 for a list)


@dataclass(frozen=True, slots=True)
class IgnoreList:
    """``.gitignore`` / ``.dockerignore`` semantics: the last matching rule decides."""

    rules: tuple[IgnoreRule, ...] = ()

    @classmethod
    def parse(cls, lines: Iterable[str], *, basename_anywhere: bool) -> IgnoreList:
        rules: list[IgnoreRule] = []
        for lineno, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            body = line[1:].strip() if negated else line
            dir_only = body.endswith("/")
            body = body.rstrip("/")
            anchored = body.startswith("/") or "/" in body.strip("/")
            body = body.lstrip("/")
            while body.startswith("./"):
                body = body[2:]
            if body in ("", "."):
                continue  # Docker ignores ``.``; an empty line means nothing
            glob = compile_glob(
                body, dir_only=dir_only, anywhere=basename_anywhere and not anchored
            )
            rules.append(IgnoreRule(glob, negated, line, lineno))
        return cls(tuple(rules))

    def match(self, key: str) -> IgnoreRule | None:
        """The rule that decides ``key``: an ignoring rule, or None when not ignored."""
        decided: IgnoreRule | None = None
        for rule in self.rules:
            if rule.glob.matches(key):
                decided = rule
        return decided if decided is not None and not decided.negated else None

    def __bool__(self) -> bool:
        return bool(self.rules)


def relative_key(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` as a posix key, or None when it lies outside.

    Both are absolute posix strings; no file system access, so ``..`` is resolved
    lexically.
    """
    p = posixpath.normpath(path)
    r = posixpath.normpath(root)
    if p == r:
        return ""
    prefix = r if r.endswith("/") else r + "/"
    if p.startswith(prefix):
        return p[len(prefix) :]
    return None

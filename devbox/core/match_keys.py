"""The canonical parts of a request that matching compares: query pairs, paths,
JSON paths to ignore, a body's canonical key and the header values a profile names.

Split out of ``matching`` by what it holds (the signature's ingredients); pure, no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, unquote_plus

import orjson

from devbox.core.profile import MatchRules

# (method, path, query, body, headers): hashable, cheap to build
Key = tuple[str, str, tuple[tuple[str, str], ...], object, tuple[str | None, ...]]

_FORM = "application/x-www-form-urlencoded"


# ---------------------------------------------------------------- canonical parts


def parse_query_fast(qs: str) -> tuple[tuple[str, str], ...]:
    """``urllib.parse.parse_qsl(qs, keep_blank_values=True)``, faster on plain input."""
    if not qs:
        return ()
    out = []
    for part in qs.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name = unquote_plus(name)
            value = unquote_plus(value)
        out.append((name, value))
    return tuple(out)


def normalize_path(path: str) -> str:
    if not path:
        return "/"
    return unquote(path) if "%" in path else path


_SEG_VOLATILE = re.compile(r"\d|^[0-9a-fA-F]{16,}$")


def path_shape(path: str) -> str:
    """``/items/KB-101/reviews`` -> ``/items/*/reviews``: segments with digits or long hex."""
    return "/".join("*" if _SEG_VOLATILE.search(seg) else seg for seg in path.split("/"))


Step = tuple[str, object]  # ("key", name) | ("idx", n) | ("all", None)
_STEP_RE = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\*\]|\.\*")


def parse_json_path(path: str) -> tuple[Step, ...]:
    """``$.items[*].sku`` -> steps. Raises ValueError on anything else."""
    if not path.startswith("$"):
        raise ValueError(f"not a JSON path: {path!r}")
    steps: list[Step] = []
    pos = 1
    while pos < len(path):
        m = _STEP_RE.match(path, pos)
        if m is None:
            raise ValueError(f"not a JSON path: {path!r}")
        if m.group(1) is not None:
            steps.append(("key", m.group(1)))
        elif m.group(2) is not None:
            steps.append(("idx", int(m.group(2))))
        else:
            steps.append(("all", None))
        pos = m.end()
    return tuple(steps)


def drop_paths(value: Any, paths: Sequence[tuple[Step, ...]]) -> Any:
    """Remove ignored parts of a freshly parsed JSON value (mutates and returns it).

    Object members are deleted (so absent and present compare equal); array
    elements become null, keeping positions meaningful."""
    for steps in paths:
        if not steps:
            return None
        _drop(value, steps, 0)
    return value


def _drop(value: Any, steps: tuple[Step, ...], i: int) -> None:
    kind, arg = steps[i]
    last = i == len(steps) - 1
    if kind == "key":
        if isinstance(value, dict) and arg in value:
            if last:
                del value[arg]
            else:
                _drop(value[arg], steps, i + 1)
    elif kind == "idx":
        assert isinstance(arg, int)
        if isinstance(value, list) and arg < len(value):
            if last:
                value[arg] = None
            else:
                _drop(value[arg], steps, i + 1)
    elif isinstance(value, dict):
        if last:
            value.clear()
        else:
            for v in value.values():
                _drop(v, steps, i + 1)
    elif isinstance(value, list):
        if last:
            value[:] = [None] * len(value)
        else:
            for v in value:
                _drop(v, steps, i + 1)


class _Rules:
    """MatchRules compiled for the hot path."""

    __slots__ = ("body_paths", "header_names", "ignore_query", "query_globs", "source")

    def __init__(self, rules: MatchRules) -> None:
        self.source = rules
        self.ignore_query = frozenset(q for q in rules.ignore_query if not _is_glob(q))
        self.query_globs = tuple(q for q in rules.ignore_query if _is_glob(q))
        self.body_paths = tuple(parse_json_path(p) for p in rules.ignore_body)
        self.header_names = tuple(sorted({h.lower() for h in rules.headers}))

    def query(self, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        if not pairs:
            return ()
        if self.ignore_query or self.query_globs:
            pairs = tuple(p for p in pairs if not self.ignored_param(p[0]))
        return tuple(sorted(pairs)) if len(pairs) > 1 else pairs

    def ignored_param(self, name: str) -> bool:
        if name in self.ignore_query:
            return True
        return any(fnmatch.fnmatchcase(name, g) for g in self.query_globs)


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _json_value(body: bytes, content_type: str | None) -> tuple[bool, Any]:
    """(True, value) when the body is JSON (or a form, as an object); else (False, None)."""
    head = body[:1]
    if head in (b" ", b"\t", b"\r", b"\n"):
        head = body.lstrip()[:1]
    if head == b"{" or head == b"[":
        try:
            return True, orjson.loads(body)
        except orjson.JSONDecodeError:
            return False, None
    if content_type is not None and content_type.startswith(_FORM):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return False, None
        form: dict[str, Any] = {}
        for k, v in parse_query_fast(text):
            prev = form.get(k)
            if prev is None:
                form[k] = v
            elif isinstance(prev, list):
                prev.append(v)
            else:
                form[k] = [prev, v]
        return True, form
    return False, None


def body_key(body: bytes, content_type: str | None, rules: _Rules) -> object:
    if not body:
        return b""
    is_json, value = _json_value(body, content_type)
    if not is_json:
        return body
    if rules.body_paths:
        value = drop_paths(value, rules.body_paths)
    # a tuple can never equal raw bytes: JSON and non-JSON bodies stay apart
    return ("json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def _header_values(headers: Iterable[tuple[str, str]], names: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for k, v in headers:
        low = k.lower()
        if low in names:
            v = v.strip()
            found[low] = f"{found[low]}, {v}" if low in found else v
    return found

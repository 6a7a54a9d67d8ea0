"""Paths into a JSON value (``$.items[3].price``) and the patterns that select them
(``$.items[*].id``, ``$.*.ts``): formatting, parsing and matching. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from devbox.errors import UsageError

# One step of a concrete path: an object key or an array index.
Step = str | int
Path = tuple[Step, ...]

# A step of a pattern: a key, an index, or WILDCARD (matches any one step).
WILDCARD = object()
PatternStep = str | int | object

_KEY_RE = re.compile(r"[A-Za-z0-9_\-]+")
_TOKEN_RE = re.compile(
    r"""\.(?P<key>[A-Za-z0-9_\-]+)      # .name
      | \.\*                           # .*
      | \[(?P<idx>\d+)\]               # [3]
      | \[\*\]                         # [*]
      | \[(?P<q>"(?:[^"\\]|\\.)*")\]   # ["odd key"]
    """,
    re.VERBOSE,
)

# ---------------------------------------------------------------- paths


def format_path(path: Iterable[Step]) -> str:
    """``("items", 3, "price")`` -> ``$.items[3].price``; odd keys are quoted."""
    out = ["$"]
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif _KEY_RE.fullmatch(step):
            out.append(f".{step}")
        else:
            out.append(f"[{orjson.dumps(step).decode()}]")
    return "".join(out)


def parse_pattern(text: str) -> tuple[PatternStep, ...]:
    """Parse ``$.a.b[*].c`` into steps; raises UsageError naming the pattern."""
    if not text.startswith("$"):
        raise UsageError(
            f"not a JSON path: {text!r}", hint='write paths as "$.a.b", "$.items[*].id"'
        )
    steps: list[PatternStep] = []
    pos = 1
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise UsageError(
                f"not a JSON path: {text!r} (at {text[pos:]!r})",
                hint='write paths as "$.a.b", "$.items[*].id"',
            )
        if m.group("key") is not None:
            steps.append(m.group("key"))
        elif m.group("idx") is not None:
            steps.append(int(m.group("idx")))
        elif m.group("q") is not None:
            steps.append(str(orjson.loads(m.group("q"))))
        else:
            steps.append(WILDCARD)
        pos = m.end()
    return tuple(steps)


def _step_matches(pat: PatternStep, step: Step) -> bool:
    if pat is WILDCARD:
        return True
    # bool is an int subclass; paths never hold bools, patterns never do either
    return type(pat) is type(step) and pat == step


def pattern_matches(pattern: Sequence[PatternStep], path: Sequence[Step], *, prefix: bool) -> bool:
    """Exact match, or (``prefix``) the pattern names an ancestor of ``path`` (or itself)."""
    if len(pattern) > len(path) or (not prefix and len(pattern) != len(path)):
        return False
    return all(_step_matches(p, s) for p, s in zip(pattern, path, strict=False))


def generalize(path: Sequence[Step]) -> str:
    """``$.items[3].id`` -> ``$.items[*].id`` (every index becomes a wildcard)."""
    return "$" + "".join("[*]" if isinstance(s, int) else format_path((s,))[1:] for s in path)


def flatten_json(value: Any, path: Path = ()) -> Iterable[tuple[Path, Any]]:
    """Every leaf (scalar or empty container) with its path; used by noise learning."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from flatten_json(v, (*path, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from flatten_json(v, (*path, i))
    else:
        yield path, value

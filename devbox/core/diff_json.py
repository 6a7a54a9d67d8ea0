"""Structural differences between two decoded JSON values, one per change. Pure.

Arrays are compared in order; a reordering is one ``order`` difference, and an
alignment pairs what it can so one inserted element is one ``added`` line.
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import Any

import orjson

from devbox.core.diff_paths import Path, format_path
from devbox.core.diff_types import NO_RULES, Difference, DiffRules, json_type, short

# ---------------------------------------------------------------- JSON


def diff_json(expected: Any, actual: Any, rules: DiffRules | None = None) -> list[Difference]:
    """Structural differences between two decoded JSON values, one per change."""
    out: list[Difference] = []
    _walk(expected, actual, (), rules or NO_RULES, out)
    return out


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 is the same JSON number; True == 1 is not the same JSON value
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    return bool(a == b)


def _walk(a: Any, b: Any, path: Path, rules: DiffRules, out: list[Difference]) -> None:
    if path and rules._paths and rules.ignores_path(path):
        return
    # orjson gives exact types: a dict lookup, json_type for anything else
    ta = _JSON_TYPES.get(type(a)) or json_type(a)
    tb = _JSON_TYPES.get(type(b)) or json_type(b)
    if ta != tb:
        out.append(
            Difference("body", format_path(path), "type", f"{ta} {short(a)}", f"{tb} {short(b)}")
        )
        return
    if ta == "object":
        missing = False
        for key, va in a.items():
            vb = b.get(key, _MISSING)
            if vb is _MISSING:
                missing = True
                sub = (*path, key)
                if not (rules.has_path_rules and rules.ignores_path(sub)):
                    out.append(Difference("body", format_path(sub), "removed", short(va)))
                continue
            tv = type(va)
            if tv is type(vb) and tv in _SCALARS:
                # _deep_equal's first case, inline: most values of a body are scalars
                if va == vb:
                    continue
            elif _deep_equal(va, vb):
                continue
            _walk(va, vb, (*path, key), rules, out)
        if missing or len(b) != len(a):
            # every key of a is in b and they are as many: b has no key a lacks
            for key, vb in b.items():
                if key not in a:
                    sub = (*path, key)
                    if not (rules.has_path_rules and rules.ignores_path(sub)):
                        out.append(Difference("body", format_path(sub), "added", None, short(vb)))
        return
    if ta == "array":
        _walk_array(a, b, path, rules, out)
        return
    if not _same(a, b):
        out.append(Difference("body", format_path(path), "changed", short(a), short(b)))


_SCALARS = (str, int, float, bool, type(None))
_JSON_TYPES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _deep_equal(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is type(b) and ta in _SCALARS:
        return bool(a == b)
    if ta is bool or type(b) is bool:
        return False  # True == 1 in Python, never in JSON
    if isinstance(a, dict | list) and type(a) is type(b):
        # the same JSON text is the same value; C-speed for the common equal case
        if orjson.dumps(a) == orjson.dumps(b):
            return True
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return json_type(a) == json_type(b) and bool(a == b)


def _canon(value: Any, path: Path, rules: DiffRules) -> str:
    """A canonical text of a value with its ignored sub-values removed, for multiset keys."""
    if rules.has_path_rules:
        value = _strip_ignored(value, path, rules)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def _strip_ignored(value: Any, path: Path, rules: DiffRules) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_ignored(v, (*path, k), rules)
            for k, v in value.items()
            if not rules.ignores_path((*path, k))
        }
    if isinstance(value, list):
        return [_strip_ignored(v, (*path, i), rules) for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _walk_array(
    a: list[Any], b: list[Any], path: Path, rules: DiffRules, out: list[Difference]
) -> None:
    # element keys with ignored sub-values stripped, so noise never looks like a change
    ka = [_canon(v, (*path, i), rules) for i, v in enumerate(a)]
    kb = [_canon(v, (*path, i), rules) for i, v in enumerate(b)]
    if ka == kb:
        return
    unordered = rules.is_unordered(path)
    if Counter(ka) == Counter(kb):
        if not unordered:
            out.append(
                Difference(
                    "body", format_path(path), "order", f"{len(a)} elements", f"{len(b)} elements"
                )
            )
        return
    if unordered:
        _multiset(a, b, ka, kb, path, rules, out)
        return
    sm = difflib.SequenceMatcher(a=ka, b=kb, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for k in range(paired):
            _walk(a[i1 + k], b[j1 + k], (*path, i1 + k), rules, out)
        for i in range(i1 + paired, i2):
            out.append(Difference("body", format_path((*path, i)), "removed", short(a[i])))
        for j in range(j1 + paired, j2):
            out.append(Difference("body", format_path((*path, j)), "added", None, short(b[j])))


def _multiset(
    a: list[Any],
    b: list[Any],
    ka: list[str],
    kb: list[str],
    path: Path,
    rules: DiffRules,
    out: list[Difference],
) -> None:
    left = Counter(kb)
    only_a: list[int] = []
    for i, k in enumerate(ka):
        if left[k] > 0:
            left[k] -= 1
        else:
            only_a.append(i)
    left = Counter(ka)
    only_b: list[int] = []
    for j, k in enumerate(kb):
        if left[k] > 0:
            left[k] -= 1
        else:
            only_b.append(j)
    paired = min(len(only_a), len(only_b))
    for i, j in zip(only_a[:paired], only_b[:paired], strict=True):
        _walk(a[i], b[j], (*path, i), rules, out)
    for i in only_a[paired:]:
        out.append(Difference("body", format_path((*path, i)), "removed", short(a[i])))
    for j in only_b[paired:]:
        out.append(Difference("body", format_path((*path, j)), "added", None, short(b[j])))

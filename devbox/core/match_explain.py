"""What a miss is explained with: field differences, candidates, the match result,
and the per-field diffs between a recorded request and a live one.

Split out of ``matching`` by what it holds (the explanation of a miss); pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from devbox.core.model import Exchange

MAX_DIFFS = 40  # per candidate; enough to explain, bounded for huge bodies
SHOWN_DIFFS = 4  # per candidate in the one-line explanation
SHOWN_CANDIDATES = 3
_MAX_FEATURES = 64


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field in which a recorded request differs from the live one."""

    field: str  # "method" | "path" | "query" | "body" | "header"
    name: str  # "$.amount", "page", "x-tenant"; "" for method, path, a non-JSON body
    recorded: str | None  # rendered value; None: absent in the recording
    got: str | None  # rendered value; None: absent in the live request

    def describe(self, *, continued: bool = False) -> str:
        """``body $.amount (recorded 12.5, got 13.0)``; ``continued`` drops the field
        word when the previous difference was in the same field."""
        label = {
            "method": "method",
            "path": "path",
            "query": f"query ?{self.name}",
            "body": f"body {self.name}".rstrip(),
            "header": f"header {self.name}",
        }[self.field]
        if continued and self.name and self.field in ("query", "body", "header"):
            label = label.split(" ", 1)[1]
        if self.recorded is None:
            return f"{label} (not recorded, got {self.got})"
        if self.got is None:
            return f"{label} (recorded {self.recorded}, missing)"
        return f"{label} (recorded {self.recorded}, got {self.got})"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A recorded request near a missed one, and how it differs."""

    position: int  # index into MatchIndex.exchanges; shown 1-based as "#N"
    exchange: Exchange
    differences: tuple[FieldDiff, ...]
    score: float  # share of compared fields that agree, 0..1
    more: int = 0  # differences beyond those kept

    @property
    def label(self) -> str:
        r = self.exchange.request
        return f"#{self.position + 1} {r.method} {r.path}"

    def describe(self) -> str:
        if not self.differences:
            return f"{self.label} (identical)"
        diffs = self.differences[:SHOWN_DIFFS]
        shown = [
            d.describe(continued=i > 0 and diffs[i - 1].field == d.field)
            for i, d in enumerate(diffs)
        ]
        rest = len(self.differences) - SHOWN_DIFFS + self.more
        tail = f" and {rest} more" if rest > 0 else ""
        return f"{self.label} differs in {', '.join(shown)}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position + 1,
            "id": self.exchange.id,
            "method": self.exchange.request.method,
            "target": self.exchange.request.target,
            "score": round(self.score, 3),
            "differences": [
                {"field": d.field, "name": d.name, "recorded": d.recorded, "got": d.got}
                for d in self.differences
            ],
            "more": self.more,
        }


@dataclass(frozen=True, slots=True)
class MatchResult:
    exchange: Exchange | None
    explanation: str  # why this answer (or why none), one line, for CLI/TUI/logs
    candidates: tuple[Candidate, ...] = ()
    position: int = -1  # index of ``exchange`` in MatchIndex.exchanges
    fuzzy: bool = False  # answered by the strongest candidate (match.fuzzy)
    call: int = 0  # 1-based: this was the n-th call answered by this recorded request
    hint: str = ""  # the rule to change, when one would fix the miss

    @property
    def hit(self) -> bool:
        return self.exchange is not None


@dataclass(slots=True)
class _Parts:
    """A request's signature fields kept apart, for diffs and ranking."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    is_json: bool
    body: Any  # JSON value with ignored paths dropped, or raw bytes
    headers: dict[str, str]

    def features(self) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = [("q", k, v) for k, v in self.query]
        out += [("h", k, v) for k, v in self.headers.items()]
        if self.is_json:
            _leaves(self.body, "$", out, _MAX_FEATURES)
        elif self.body:
            out.append(("b", "", str(hash(self.body))))
        return out[:_MAX_FEATURES]


def _leaves(value: Any, path: str, out: list[tuple[str, str, str]], cap: int) -> None:
    if len(out) >= cap:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _leaves(v, _child(path, k), out, cap)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _leaves(v, f"{path}[{i}]", out, cap)
    else:
        out.append(("b", path, _render(value)))


_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if _SIMPLE_KEY.match(key) else f"{path}[{orjson.dumps(key).decode()}]"


def _render(value: Any, limit: int = 48) -> str:
    if isinstance(value, dict):
        text = "{…}" if value else "{}"
    elif isinstance(value, list):
        text = f"[{len(value)} items]"
    else:
        text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _q(v: str | None) -> str | None:
    return None if v is None else orjson.dumps(v).decode()


def _names(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in dict.fromkeys(names))


_INDEX = re.compile(r"\[\d+\]")


def _generalize(paths: list[str]) -> list[str]:
    """``$.items[0].qty`` and ``$.items[1].qty`` -> ``$.items[*].qty``."""
    by_pattern: dict[str, list[str]] = {}
    for p in paths:
        by_pattern.setdefault(_INDEX.sub("[*]", p), []).append(p)
    out = []
    for pattern, members in by_pattern.items():
        out += [pattern] if len(members) > 1 else members
    return out


def _diff_query(
    rec: tuple[tuple[str, str], ...], live: tuple[tuple[str, str], ...], diffs: list[FieldDiff]
) -> int:
    if rec == live:
        return len(rec)
    rd: dict[str, list[str]] = {}
    ld: dict[str, list[str]] = {}
    for k, v in rec:
        rd.setdefault(k, []).append(v)
    for k, v in live:
        ld.setdefault(k, []).append(v)
    same = 0
    for k in sorted(rd.keys() | ld.keys()):
        rv, lv = rd.get(k), ld.get(k)
        if rv == lv:
            same += 1
        else:
            diffs.append(FieldDiff("query", k, _qv(rv), _qv(lv)))
    return same


def _qv(values: list[str] | None) -> str | None:
    if values is None:
        return None
    return _render(values[0]) if len(values) == 1 else _render(values, 64)


def _diff_json(rec: Any, got: Any, path: str, diffs: list[FieldDiff], counter: list[int]) -> None:
    """Leaf-level differences; counter = [equal leaves, differences beyond MAX_DIFFS]."""
    if isinstance(rec, dict) and isinstance(got, dict):
        for k, rv in rec.items():
            p = _child(path, k)
            if k in got:
                _diff_json(rv, got[k], p, diffs, counter)
            else:
                _add(diffs, counter, FieldDiff("body", p, _render(rv), None))
        for k, gv in got.items():
            if k not in rec:
                _add(diffs, counter, FieldDiff("body", _child(path, k), None, _render(gv)))
        return
    if isinstance(rec, list) and isinstance(got, list):
        for i in range(min(len(rec), len(got))):
            _diff_json(rec[i], got[i], f"{path}[{i}]", diffs, counter)
        for i in range(len(got), len(rec)):
            _add(diffs, counter, FieldDiff("body", f"{path}[{i}]", _render(rec[i]), None))
        for i in range(len(rec), len(got)):
            _add(diffs, counter, FieldDiff("body", f"{path}[{i}]", None, _render(got[i])))
        return
    # 1, 1.0 and true differ on the wire and in the signature; they differ here too
    if type(rec) is type(got) and rec == got:
        counter[0] += 1
    else:
        _add(diffs, counter, FieldDiff("body", path, _render(rec), _render(got)))


def _add(diffs: list[FieldDiff], counter: list[int], d: FieldDiff) -> None:
    if len(diffs) < MAX_DIFFS:
        diffs.append(d)
    else:
        counter[1] += 1


def _body_diff(rec: _Parts, live: _Parts) -> FieldDiff:
    def raw(p: _Parts) -> bytes:
        if p.is_json:
            return orjson.dumps(p.body, option=orjson.OPT_SORT_KEYS)
        return bytes(p.body)

    a, b = raw(rec), raw(live)
    if not a or not b:
        return FieldDiff(
            "body", "", _describe_bytes(a, 0) if a else None, _describe_bytes(b, 0) if b else None
        )
    i = 0
    n = min(len(a), len(b))
    while i < n and a[i] == b[i]:
        i += 1
    return FieldDiff("body", "", _describe_bytes(a, i), _describe_bytes(b, i))


def _describe_bytes(data: bytes, at: int) -> str:
    start = max(0, at - 12)
    window = data[start : at + 20]
    text = window.decode("utf-8", "replace")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text) or "\ufffd" in text:
        snippet = window.hex()
    else:
        snippet = orjson.dumps(text).decode()
    pre = "…" if start else ""
    post = "…" if at + 20 < len(data) else ""
    where = f" at byte {at}" if at else ""
    return f"{len(data)} bytes{where}: {pre}{snippet}{post}"


def hint_for(c: Candidate, of_dep: str, route_hint: str) -> str:
    """What to change so the nearest candidate ``c`` matches (``of_dep``: " of dependency
    NAME" or ""; ``route_hint``: what to say when the call was never recorded)."""
    fields = {d.field for d in c.differences}
    if not c.differences:
        return ""
    if fields & {"method", "path"}:
        return route_hint
    if len(c.differences) + c.more > 6:
        return (
            f"the nearest recording differs in {len(c.differences) + c.more} fields: this "
            "call was probably never recorded; " + route_hint
        )
    parts = []
    body = _generalize([d.name for d in c.differences if d.field == "body" and d.name])
    if body:
        parts.append(f"add {_names(body)} to match.ignore_body{of_dep}")
    elif any(d.field == "body" for d in c.differences):
        parts.append("the body differs and is not JSON, so no rule can ignore part of it")
    query = [d.name for d in c.differences if d.field == "query"]
    if query:
        parts.append(f"add {_names(query)} to match.ignore_query{of_dep}")
    headers = [d.name for d in c.differences if d.field == "header"]
    if headers:
        parts.append(f"remove {_names(headers)} from match.headers{of_dep}")
    return "; ".join(parts)

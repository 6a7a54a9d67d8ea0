"""What a diff follows and what it reports: ``DiffRules`` and ``Difference``. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from devbox.core.diff_paths import WILDCARD, PatternStep, Step, parse_pattern, pattern_matches
from devbox.core.scoped_rules import is_bare, parse_rule, rules_for
from devbox.errors import UsageError

MAX_VALUE_CHARS = 60
MAX_TEXT_DIFF_LINES = 40


# ---------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class DiffRules:
    """What to compare and what to ignore; build once per run, reuse for every request."""

    ignore: tuple[str, ...] = ()  # "$.created_at", "$.items[*].id", "header:date"
    headers: tuple[str, ...] = ()  # response headers compared besides status and body
    unordered: tuple[str, ...] = ()  # JSON paths of arrays compared as multisets
    _paths: tuple[tuple[PatternStep, ...], ...] = field(init=False, repr=False, compare=False)
    _unordered: tuple[tuple[PatternStep, ...], ...] = field(init=False, repr=False, compare=False)
    _ignored_headers: frozenset[str] = field(init=False, repr=False, compare=False)
    _compared_headers: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # rules scoped to a route ("POST /orders $.id", devbox.core.scoped_rules): applied by
    # for_route; (method, target) -> the rules of that request, built once
    _scoped: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _routes: dict[tuple[str, str], DiffRules] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        paths = []
        ignored_headers = set()
        object.__setattr__(self, "_scoped", tuple(r for r in self.ignore if not is_bare(r)))
        object.__setattr__(self, "_routes", {})
        for rule in self.ignore:
            if not is_bare(rule):
                try:
                    bare = parse_rule(rule).rule
                except ValueError as exc:
                    raise UsageError(f"ignore rule {rule!r}: {exc}") from None
                if not bare.lower().startswith("header:"):
                    parse_pattern(bare)  # validated now, applied by for_route
                continue
            if rule.lower().startswith("header:"):
                ignored_headers.add(rule[len("header:") :].strip().lower())
            else:
                paths.append(parse_pattern(rule))
        object.__setattr__(self, "_paths", tuple(paths))
        object.__setattr__(self, "_unordered", tuple(parse_pattern(p) for p in self.unordered))
        object.__setattr__(self, "_ignored_headers", frozenset(ignored_headers))
        compared = []
        for h in self.headers:
            low = h.lower()
            if low not in ignored_headers and low not in compared:
                compared.append(low)
        object.__setattr__(self, "_compared_headers", tuple(compared))

    @classmethod
    def from_settings(cls, settings: Any, extra_ignore: Iterable[str] = ()) -> DiffRules:
        """From a ``ReplaySettings`` (anything with ignore/headers/unordered)."""
        return cls(
            ignore=tuple(settings.ignore) + tuple(extra_ignore),
            headers=tuple(settings.headers),
            unordered=tuple(settings.unordered),
        )

    def with_ignore(self, more: Iterable[str]) -> DiffRules:
        return DiffRules(self.ignore + tuple(more), self.headers, self.unordered)

    def for_route(self, method: str, path: str, target: str | None = None) -> DiffRules:
        """These rules plus the scoped ones that apply to ``method path`` (``target``: the
        path with its query, for rules scoped to one); ``self`` when there are no scoped
        rules (the usual case costs nothing)."""
        if not self._scoped:
            return self
        key = (method, target or path)
        got = self._routes.get(key)
        if got is None:
            bare = tuple(r for r in self.ignore if is_bare(r))
            scoped = rules_for(self._scoped, method, path, target)
            got = DiffRules(bare + scoped, self.headers, self.unordered)
            if len(self._routes) < 4096:
                self._routes[key] = got
        return got

    def for_target(self, method: str, target: str) -> DiffRules:
        """``for_route`` for a request-target as sent (its path, then ``?`` and the query)."""
        return self.for_route(method, target.partition("?")[0], target)

    def ignores_path(self, path: Sequence[Step]) -> bool:
        # pattern_matches(p, path, prefix=True) for each pattern, unrolled: the walk asks
        # this at every node of every body it compares
        n = len(path)
        for pattern in self._paths:
            if len(pattern) > n:
                continue
            for pat, step in zip(pattern, path, strict=False):
                if pat is not WILDCARD and (type(pat) is not type(step) or pat != step):
                    break
            else:
                return True
        return False

    def ignores_header(self, name: str) -> bool:
        return name.lower() in self._ignored_headers

    def is_unordered(self, path: Sequence[Step]) -> bool:
        return any(pattern_matches(p, path, prefix=False) for p in self._unordered)

    @property
    def compared_headers(self) -> tuple[str, ...]:
        return self._compared_headers

    @property
    def ignored_headers(self) -> tuple[str, ...]:
        """The headers these rules ignore (bare ``header:NAME`` rules), sorted."""
        return tuple(sorted(self._ignored_headers))

    def without_ignore(self) -> DiffRules:
        """The same comparison with no ignore rule: every header these rules compare or
        ignore is compared (what a view shows as the noise the rules hide)."""
        return DiffRules(
            headers=self._compared_headers + self.ignored_headers, unordered=self.unordered
        )

    @property
    def has_path_rules(self) -> bool:
        return bool(self._paths)


# ---------------------------------------------------------------- differences


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing that changed between the recording and now.

    ``section``: "status" | "header" | "body" | "outbound".
    ``where``: "status", "header:content-type", "$.items[3].price", "body", or for
    outbound calls "payments POST /charges".
    ``change``: "changed" | "added" | "removed" | "type" | "order" | "text" | "binary"
    | "format" | "missing" | "extra" | "call" (an outbound call made differently).
    ``expected``/``actual``: short renderings of the two values (None when absent).
    ``detail``: multi-line detail, e.g. the unified diff of a text body.
    """

    section: str
    where: str
    change: str
    expected: str | None = None
    actual: str | None = None
    detail: str = ""

    def describe(self) -> str:
        """One line, e.g. ``$.items[3].price: 12.5 → 13.0`` or ``added $.x: 1``."""
        c = self.change
        if c == "changed":
            return f"{self.where}: {self.expected} → {self.actual}"
        if c == "added":
            return f"added {self.where}: {self.actual}"
        if c == "removed":
            return f"removed {self.where}: {self.expected}"
        if c == "type":
            return f"{self.where}: type changed {self.expected} → {self.actual}"
        if c == "order":
            return f"{self.where}: same elements in a different order"
        if c == "missing":
            return f"missing call {self.where}" + (f": {self.expected}" if self.expected else "")
        if c == "call":
            return f"changed call {self.where}" + (f": {self.expected}" if self.expected else "")
        if c == "extra":
            return f"extra call {self.where}" + (f": {self.actual}" if self.actual else "")
        if c in ("text", "binary", "format"):
            return f"{self.where} ({c}): {self.expected} → {self.actual}"
        return f"{self.where}: {c}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"section": self.section, "where": self.where, "change": self.change}
        if self.expected is not None:
            d["expected"] = self.expected
        if self.actual is not None:
            d["actual"] = self.actual
        if self.detail:
            d["detail"] = self.detail
        return d


def short(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A JSON value rendered compactly, cut to ``limit`` characters."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


NO_RULES = DiffRules()

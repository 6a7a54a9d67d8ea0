"""Comparing a recorded response with the one the service gives now. Pure.

Theory of operation
-------------------
``diff_responses(expected, actual, rules)`` returns one ``Difference`` per thing that
changed: the status, each compared header, and the body. JSON bodies are walked
structurally and every difference carries the path of the value
(``$.items[3].price: 12.5 → 13.0``); text bodies become one unified diff; binary
bodies are compared by size and SHA-256.

Byte-equal bodies never get parsed (the common case in a passing run), so the
cost of a replay that matches is a handful of comparisons per request.

Arrays are compared in order. When the elements are the same multiset in a
different order, that is *one* difference (``order``), not one per element; when
elements were inserted or removed, a sequence alignment pairs what it can so that
one inserted element is one ``added`` line rather than a cascade of changes.
Paths listed in ``unordered`` are compared as multisets outright.

``ignore`` patterns (``$.created_at``, ``$.items[*].id``, ``$.*.ts``,
``header:date``) drop a value and everything below it from the comparison.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from devbox.core.model import Headers, Response
from devbox.core.scoped_rules import is_bare, parse_rule, rules_for
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

MAX_VALUE_CHARS = 60
MAX_TEXT_DIFF_LINES = 40


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
    # for_route; (method, path) -> the rules of that route, built once per route
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


# ---------------------------------------------------------------- JSON


def diff_json(expected: Any, actual: Any, rules: DiffRules | None = None) -> list[Difference]:
    """Structural differences between two decoded JSON values, one per change."""
    out: list[Difference] = []
    _walk(expected, actual, (), rules or _NO_RULES, out)
    return out


_NO_RULES = DiffRules()
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


# ---------------------------------------------------------------- bodies and responses


def _header_values(headers: Headers, name: str) -> str | None:
    vals = [v for k, v in headers if k.lower() == name]
    return ", ".join(vals) if vals else None


def _content_type(headers: Headers) -> str:
    return (_header_values(headers, "content-type") or "").lower()


def _maybe_json(body: bytes, ctype: str) -> tuple[bool, Any]:
    if "json" not in ctype:
        head = body[:1] if body[:1] not in b" \t\r\n" else body.lstrip()[:1]
        if head not in (b"{", b"["):
            return False, None
    try:
        return True, orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, None


def _text(body: bytes, ctype: str) -> str | None:
    if b"\x00" in body[:1024] and "text" not in ctype:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _digest(body: bytes) -> str:
    return f"{len(body)} bytes sha256 {hashlib.sha256(body).hexdigest()[:12]}"


def diff_bodies(
    expected: bytes,
    actual: bytes,
    rules: DiffRules | None = None,
    *,
    expected_type: str = "",
    actual_type: str = "",
    truncated: bool = False,
) -> list[Difference]:
    """Differences between two decoded bodies (JSON, text or binary)."""
    return _diff_bodies(expected, actual, rules, expected_type, actual_type, truncated, None)


def _diff_bodies(
    expected: bytes,
    actual: bytes,
    rules: DiffRules | None,
    expected_type: str,
    actual_type: str,
    truncated: bool,
    expected_json: ExpectedResponse | None,
) -> list[Difference]:
    if expected == actual:
        return []
    rules = rules or _NO_RULES
    if truncated:
        # the recorder kept only a prefix: compare what it kept
        if actual[: len(expected)] == expected:
            return []
        return [
            Difference(
                "body",
                "body",
                "binary",
                f"first {_digest(expected)}",
                _digest(actual[: len(expected)]),
            )
        ]
    if expected_json is not None:
        ja, va = expected_json.json()
    else:
        ja, va = _maybe_json(expected, expected_type)
    jb, vb = _maybe_json(actual, actual_type)
    if ja and jb:
        return diff_json(va, vb, rules)
    ta, tb = _text(expected, expected_type), _text(actual, actual_type)
    if ja != jb and ta is not None and tb is not None and (expected or actual):
        kind_a = "JSON" if ja else ("empty" if not expected else "text")
        kind_b = "JSON" if jb else ("empty" if not actual else "text")
        return [
            Difference("body", "body", "format", kind_a, kind_b, _unified(ta, tb)),
        ]
    if ta is not None and tb is not None:
        detail = _unified(ta, tb)
        changed = sum(
            1 for line in detail.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
        )
        return [
            Difference(
                "body",
                "body",
                "text",
                f"{len(ta.splitlines())} lines",
                f"{changed} lines changed",
                detail,
            )
        ]
    return [Difference("body", "body", "binary", _digest(expected), _digest(actual))]


def _unified(a: str, b: str) -> str:
    lines = list(
        difflib.unified_diff(a.splitlines(), b.splitlines(), "recorded", "actual", n=2, lineterm="")
    )
    if len(lines) > MAX_TEXT_DIFF_LINES:
        more = len(lines) - MAX_TEXT_DIFF_LINES
        lines = [*lines[:MAX_TEXT_DIFF_LINES], f"… {more} more lines"]
    return "\n".join(lines)


def diff_headers(expected: Headers, actual: Headers, rules: DiffRules) -> list[Difference]:
    out = []
    for name in rules.compared_headers:
        va, vb = _header_values(expected, name), _header_values(actual, name)
        if va == vb:
            continue
        where = f"header:{name}"
        if va is None:
            out.append(Difference("header", where, "added", None, vb))
        elif vb is None:
            out.append(Difference("header", where, "removed", va))
        else:
            out.append(Difference("header", where, "changed", va, vb))
    return out


class ExpectedResponse:
    """A recorded response made ready to be diffed many times (a load replay sends each
    recorded request over and over): its content type is found, and its body parsed as
    JSON, once rather than once per request. Diffs are the same as ``diff_responses``'s.
    The parsed body is shared: the walk only reads it."""

    __slots__ = ("_parsed", "content_type", "response")

    def __init__(self, response: Response) -> None:
        self.response = response
        self.content_type = _content_type(response.headers)
        self._parsed: tuple[bool, Any] | None = None

    def json(self) -> tuple[bool, Any]:
        """(True, value) when the body is JSON; parsed on first use."""
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = _maybe_json(self.response.body, self.content_type)
        return parsed

    def diff(
        self, actual: Response, rules: DiffRules | None = None, *, truncated: bool = False
    ) -> tuple[Difference, ...]:
        return _diff_responses(self.response, actual, rules, truncated, self)


def diff_responses(
    expected: Response, actual: Response, rules: DiffRules | None = None, *, truncated: bool = False
) -> tuple[Difference, ...]:
    """Every difference between a recorded response and an actual one, status first."""
    return _diff_responses(expected, actual, rules, truncated, None)


def _diff_responses(
    expected: Response,
    actual: Response,
    rules: DiffRules | None,
    truncated: bool,
    prepared: ExpectedResponse | None,
) -> tuple[Difference, ...]:
    rules = rules or _NO_RULES
    out: list[Difference] = []
    if expected.status != actual.status:
        out.append(
            Difference("status", "status", "changed", str(expected.status), str(actual.status))
        )
    if rules.compared_headers:
        out.extend(diff_headers(expected.headers, actual.headers, rules))
    if expected.body != actual.body:
        out.extend(
            _diff_bodies(
                expected.body,
                actual.body,
                rules,
                prepared.content_type if prepared else _content_type(expected.headers),
                _content_type(actual.headers),
                truncated,
                prepared,
            )
        )
    return tuple(out)


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


def parse_json_body(resp: Response) -> tuple[bool, Any]:
    """(True, value) when the body is JSON."""
    if not resp.body:
        return False, None
    return _maybe_json(resp.body, _content_type(resp.headers))

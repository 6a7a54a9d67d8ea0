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
``header:date``) drop a value and everything below it from the comparison; a rule may
be scoped to a route (``"POST /orders $.id"``). ``request_differences`` applies the rules
of one request's route and is what decides, for replay's verdict and for every view,
which differences count.

The path language is in ``diff_paths``, the rules and ``Difference`` in
``diff_types``, the JSON walk in ``diff_json``; this module compares responses
and re-exports the rest.
"""

from __future__ import annotations

import difflib
import hashlib
from typing import Any

import orjson

from devbox.core.diff_json import diff_json
from devbox.core.diff_paths import (
    WILDCARD,
    Path,
    PatternStep,
    Step,
    flatten_json,
    format_path,
    generalize,
    parse_pattern,
    pattern_matches,
)
from devbox.core.diff_types import (
    MAX_TEXT_DIFF_LINES,
    MAX_VALUE_CHARS,
    NO_RULES,
    Difference,
    DiffRules,
    json_type,
    short,
)
from devbox.core.model import Headers, Response

__all__ = [
    "MAX_TEXT_DIFF_LINES",
    "MAX_VALUE_CHARS",
    "WILDCARD",
    "DiffRules",
    "Difference",
    "ExpectedResponse",
    "Path",
    "PatternStep",
    "Step",
    "diff_bodies",
    "diff_headers",
    "diff_json",
    "diff_responses",
    "flatten_json",
    "format_path",
    "generalize",
    "ignored_differences",
    "json_type",
    "parse_json_body",
    "parse_pattern",
    "pattern_matches",
    "request_differences",
    "short",
]


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
    rules = rules or NO_RULES
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
        short_a, short_b = _one_line(ta), _one_line(tb)
        if short_a is not None and short_b is not None:
            # a one-line body (Hello World!) says itself: "Hello World!" → "Hello devbox!"
            return [Difference("body", "body", "text", short_a, short_b, detail)]
        return [
            Difference(
                "body",
                "body",
                "text",
                _lines(len(ta.splitlines())),
                f"{_lines(changed)} changed",
                detail,
            )
        ]
    return [Difference("body", "body", "binary", _digest(expected), _digest(actual))]


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def _one_line(text: str, limit: int = 80) -> str | None:
    """A body of at most one short line, quoted as JSON would (so "" and spaces show)."""
    lines = text.splitlines()
    if len(lines) > 1 or len(text) > limit:
        return None
    return orjson.dumps(lines[0] if lines else "").decode()


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


def request_differences(
    expected: Response | ExpectedResponse,
    actual: Response,
    rules: DiffRules,
    method: str,
    target: str,
    *,
    truncated: bool = False,
) -> tuple[Difference, ...]:
    """The differences that count for one replayed request, ``method target`` (the path
    and its query as sent): the rules that apply to its route (``DiffRules.for_route``:
    the bare rules and the scoped ones, ``"POST /orders $.id"``), then the diff. Replay's
    verdict and every view that shows or counts a difference decide it here, so a view
    never fails a value the verdict ignored, nor the reverse."""
    routed = rules.for_target(method, target)
    if isinstance(expected, ExpectedResponse):
        return expected.diff(actual, routed, truncated=truncated)
    return _diff_responses(expected, actual, routed, truncated, None)


def ignored_differences(
    expected: Response,
    actual: Response,
    rules: DiffRules,
    method: str,
    target: str,
    *,
    counted: tuple[Difference, ...] | None = None,
    truncated: bool = False,
) -> tuple[Difference, ...]:
    """What the ignore rules that apply to ``method target`` hide: the differences found
    without them that are not among those that count (``counted``, when the caller has
    them; else ``request_differences``)."""
    if counted is None:
        counted = request_differences(expected, actual, rules, method, target, truncated=truncated)
    routed = rules.for_target(method, target)
    real = {d.where for d in counted}
    everything = _diff_responses(expected, actual, routed.without_ignore(), truncated, None)
    return tuple(d for d in everything if d.where not in real)


def _diff_responses(
    expected: Response,
    actual: Response,
    rules: DiffRules | None,
    truncated: bool,
    prepared: ExpectedResponse | None,
) -> tuple[Difference, ...]:
    rules = rules or NO_RULES
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


def parse_json_body(resp: Response) -> tuple[bool, Any]:
    """(True, value) when the body is JSON."""
    if not resp.body:
        return False, None
    return _maybe_json(resp.body, _content_type(resp.headers))

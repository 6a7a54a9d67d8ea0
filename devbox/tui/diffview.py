"""The side-by-side diff of a replayed request, as plain data. No Textual here.

Both responses are pretty-printed line by line, every line tagged with the JSON
path of the value on it (``$.items[3].price``), in the same notation as
``devbox.core.diff``. What fails is what the replay's verdict counted (the engine sends
its differences with each result; ``devbox.core.diff.request_differences`` decides them,
scoped ignore rules applied), and what is noise is what the ignore rules of the request's
route hide (``ignored_differences``): the view never decides a difference itself. A line is marked
``diff`` or ``noise`` when its path is, or lies under, such a difference, and the
two sides are aligned with a sequence match so that a changed value sits next to
the value it replaced.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from devbox.core.diff import (
    Difference,
    DiffRules,
    format_path,
    ignored_differences,
    parse_json_body,
    request_differences,
)
from devbox.core.events import ReplayResult
from devbox.core.model import Response
from devbox.core.profile import ReplaySettings
from devbox.engine.driver import check_ignore_rule
from devbox.errors import UsageError

MAX_LINES = 3000
_RULE_IN_TEXT = re.compile(r"^(?:added |removed )?(\$[^\s:]*|header:[A-Za-z0-9_\-]+)")
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True, slots=True)
class Line:
    path: str  # "$.a[0].b", "status", "header:date", or "" for plain text
    text: str
    mark: str = ""  # "" | "diff" | "noise"


@dataclass(frozen=True, slots=True)
class DiffView:
    rows: tuple[tuple[Line | None, Line | None], ...]  # (recorded, actual), aligned
    differences: tuple[Difference, ...]  # what fails the replay
    noise: tuple[Difference, ...]  # what the profile's ignore rules hide
    truncated: bool = False


# ---------------------------------------------------------------- lines


def _json_lines(
    value: Any,
    out: list[Line],
    path: tuple[str | int, ...] = (),
    indent: int = 0,
    prefix: str = "",
    comma: str = "",
) -> None:
    if len(out) >= MAX_LINES:
        return
    pad = "  " * indent
    p = format_path(path)
    if isinstance(value, dict) and value:
        out.append(Line(p, f"{pad}{prefix}{{"))
        items = list(value.items())
        for i, (k, v) in enumerate(items):
            key = orjson.dumps(k).decode() + ": "
            _json_lines(v, out, (*path, k), indent + 1, key, "," if i < len(items) - 1 else "")
        out.append(Line(p, f"{pad}}}{comma}"))
    elif isinstance(value, list) and value:
        out.append(Line(p, f"{pad}{prefix}["))
        for i, v in enumerate(value):
            _json_lines(v, out, (*path, i), indent + 1, "", "," if i < len(value) - 1 else "")
        out.append(Line(p, f"{pad}]{comma}"))
    else:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        out.append(Line(p, f"{pad}{prefix}{text}{comma}"))


def _grpc(resp: Response) -> bool:
    # a gRPC answer (devbox.wire.grpc.inbound): its status below 100, its name the reason
    return resp.status < 100 and bool(resp.reason)


def status_value(resp: Response) -> str:
    """``404``, or for a gRPC answer ``NOT_FOUND (5)``."""
    return f"{resp.reason} ({resp.status})" if _grpc(resp) else str(resp.status)


def status_text(resp: Response) -> str:
    """``HTTP 404``, or for a gRPC answer ``gRPC NOT_FOUND (5)``."""
    return f"{'gRPC' if _grpc(resp) else 'HTTP'} {status_value(resp)}"


def response_lines(resp: Response | None, headers: tuple[str, ...] = ()) -> list[Line]:
    """Status, the compared headers, then the body: JSON pretty-printed with paths,
    text as its lines, binary as a size."""
    if resp is None:
        return [Line("status", "(no response)")]
    # no reason phrase: "OK" against "" is not a difference worth a highlight
    out = [Line("status", status_text(resp))]
    for name in headers:
        value = resp.header(name)
        if value is not None:
            out.append(Line(f"header:{name}", f"{name}: {value}"))
    if not resp.body:
        out.append(Line("body", "(empty body)"))
        return out
    is_json, value = parse_json_body(resp)
    if is_json:
        _json_lines(value, out)
        return out[:MAX_LINES]
    try:
        text = resp.body.decode("utf-8")
    except UnicodeDecodeError:
        return [*out, Line("body", f"({len(resp.body)} bytes, binary)")]
    out.extend(Line("body", t) for t in text.splitlines()[:MAX_LINES])
    return out


def _under(path: str, where: str) -> bool:
    if path == where:
        return True
    if where.startswith("$") and path.startswith(where):
        return path[len(where)] in ".["
    return where == "body" and path.startswith("$")


def _marked(
    lines: list[Line], diffs: tuple[Difference, ...], noise: tuple[Difference, ...]
) -> list[Line]:
    dw = [d.where for d in diffs]
    nw = [d.where for d in noise]
    out = []
    for ln in lines:
        mark = ""
        if ln.path and any(_under(ln.path, w) for w in dw):
            mark = "diff"
        elif ln.path and any(_under(ln.path, w) for w in nw):
            mark = "noise"
        elif ln.path == "body" and any(w == "body" for w in dw):
            mark = "diff"
        out.append(Line(ln.path, ln.text, mark) if mark else ln)
    return out


def build_diff(
    recorded: Response | None,
    actual: Response | None,
    settings: ReplaySettings,
    *,
    method: str,
    target: str,
    counted: tuple[Difference, ...] | None = None,
) -> DiffView:
    """The side-by-side view of one replayed request, ``method target``. What fails is
    what the verdict counted (``counted``, the replay's own differences, when the engine
    sent them; else ``request_differences`` decides it the same way); what is marked as
    noise is what the ignore rules of that request's route hide."""
    rules = DiffRules.from_settings(settings).for_target(method, target)
    compared = rules.compared_headers
    ignored_headers = rules.ignored_headers
    diffs: tuple[Difference, ...] = counted or ()
    noise: tuple[Difference, ...] = ()
    if recorded is not None and actual is not None:
        if counted is None:
            diffs = request_differences(recorded, actual, rules, method, target)
        noise = ignored_differences(recorded, actual, rules, method, target, counted=diffs)
    # compared headers always; ignored ones where present (they show as noise)
    shown = tuple(dict.fromkeys(compared + ignored_headers))
    left = _marked(response_lines(recorded, shown), diffs, noise)
    right = _marked(response_lines(actual, shown), diffs, noise)
    rows = align(left, right)
    truncated = len(left) >= MAX_LINES or len(right) >= MAX_LINES
    return DiffView(tuple(rows), diffs, noise, truncated)


def diff_of(result: ReplayResult, settings: ReplaySettings) -> DiffView:
    """The view of one result the engine sent: the differences its verdict counted, and
    the noise the ignore rules of its route hide."""
    return build_diff(
        result.recorded,
        result.actual,
        settings,
        method=result.method,
        target=result.target,
        counted=result.details or None,
    )


def align(left: list[Line], right: list[Line]) -> list[tuple[Line | None, Line | None]]:
    """Pair the lines of two listings so that unchanged lines sit side by side."""
    sm = difflib.SequenceMatcher(
        a=[ln.text for ln in left], b=[ln.text for ln in right], autojunk=False
    )
    rows: list[tuple[Line | None, Line | None]] = []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            rows.extend(zip(left[i1:i2], right[j1:j2], strict=True))
            continue
        n = max(i2 - i1, j2 - j1)
        for k in range(n):
            a = left[i1 + k] if i1 + k < i2 else None
            b = right[j1 + k] if j1 + k < j2 else None
            rows.append((a, b))
    return rows


# ---------------------------------------------------------------- noise rules


def rule_candidates(where: str) -> list[str]:
    """The ignore rules that would hide a difference at ``where``: the exact path
    and, when it has array indexes, the path for every element. Only rules the
    profile accepts; none for status, text/binary bodies or outbound calls."""
    if not (where.startswith("$") or where.startswith("header:")):
        return []
    out = []
    for rule in dict.fromkeys((where, _INDEX.sub("[*]", where))):
        try:
            out.append(check_ignore_rule(rule))
        except UsageError:
            continue
    # the general rule first: one noisy element is usually all of them
    return sorted(set(out), key=lambda r: ("[*]" not in r, r))


def rule_from_text(difference: str) -> str | None:
    """The path a difference line (``Difference.describe()``) is about, if any."""
    m = _RULE_IN_TEXT.match(difference.strip())
    if m is None or m.group(1) in ("$",):
        return None
    return m.group(1)

"""Matching a live request against recorded exchanges: a lookup, and a precise miss.

Theory of operation
-------------------
Every recorded request is reduced to its *signature*: method, path, the query
parameters as a sorted multiset, the body in canonical form (JSON with sorted
keys and no whitespace, form bodies as a JSON object, anything else as bytes)
and the values of the headers the profile names. The profile's rules are applied
while the signature is built, so ignored query parameters, ignored JSON paths and
unnamed headers never reach it. Identical signatures form a *group*; a group
answers with its recorded responses in order and then repeats the last one.

A live request is answered by hashing its signature into ``MatchIndex._groups``:
the cost does not depend on how many exchanges were recorded. Recordings are
stored redacted, so when the request as sent misses, it is redacted with the same
rules (placeholders are stable) and looked up again; redacting an already
redacted value changes nothing, so a hit on the request as sent is the hit the
redacted request would have had.

Only a miss pays for an explanation. Candidates come from the request's
(method, path) bucket, then from the same path with other methods, then from
paths of the same shape (``/items/KB-101`` ~ ``/items/KB-102``). Inside a large
bucket an inverted index of field values (built lazily, on the bucket's first
miss) ranks the groups that share the most values with the request, and only the
best few are diffed field by field; so explaining a miss stays cheap with
100,000 recordings too. The nearest candidate's differences become a hint that
names the exact rule to add to the profile.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

import orjson

from devbox.core.model import Exchange, Request
from devbox.core.profile import MatchRules

# (method, path, query, body, headers): hashable, cheap to build
Key = tuple[str, str, tuple[tuple[str, str], ...], object, tuple[str | None, ...]]

MAX_DIFFS = 40  # per candidate; enough to explain, bounded for huge bodies
SHOWN_DIFFS = 4  # per candidate in the one-line explanation
SHOWN_CANDIDATES = 3
_DIFF_ALL = 64  # buckets up to this size are diffed in full
_SHORTLIST = 12  # larger buckets: diff only the best-ranked groups
_POSTING_CAP = 512  # field values shared by more groups than this carry no signal
_MAX_FEATURES = 64
_FORM = "application/x-www-form-urlencoded"
_MEMO_SIZE = 4096  # wire request -> group, for requests sent again and again


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


# ---------------------------------------------------------------- index


class _Group:
    """Recorded exchanges with one signature; answers in recorded order."""

    __slots__ = ("bucket", "calls", "first", "key", "parts", "positions")

    def __init__(self, key: Key, first: int) -> None:
        self.key = key
        self.first = first
        self.positions = [first]
        self.calls = 0
        self.bucket: tuple[str, str] = (key[0], key[1])
        self.parts: _Parts | None = None  # for explanations; built on first need

    def take(self) -> tuple[int, int]:
        """(position, call number), advancing the sequence."""
        n = self.calls
        self.calls = n + 1
        pos = self.positions[n] if n < len(self.positions) else self.positions[-1]
        return pos, n + 1


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


class _Bucket:
    """Groups of one (method, path), plus a lazily built inverted index of field values."""

    __slots__ = ("groups", "postings")

    def __init__(self) -> None:
        self.groups: list[_Group] = []
        self.postings: dict[tuple[str, str, str], list[int]] | None = None


class MatchIndex:
    """Recorded exchanges indexed by signature; ``match`` is a hash lookup, not a scan.

    ``redactor`` (e.g. ``Redactor(profile.redact).request``) is applied to a live
    request that misses as sent, because recordings are stored redacted.
    """

    def __init__(
        self,
        exchanges: Iterable[Exchange],
        rules: MatchRules,
        *,
        name: str = "",
        redactor: Callable[[Request], Request] | None = None,
    ) -> None:
        self.rules = rules
        self.name = name  # the dependency, for hints
        self.redactor = redactor
        self._r = _Rules(rules)
        self._exchanges: list[Exchange] = []
        self._groups: dict[Key, _Group] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._by_path: dict[str, list[tuple[str, str]]] = {}
        self._by_shape: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._memo: dict[tuple[object, ...], _Group | None] = {}
        # explanations of misses, per (redacted) signature: a service retrying an
        # unrecorded call in a loop must not cost a diff per attempt
        self._misses: dict[Key, MatchResult] = {}
        # the headers a signature needs: content-type decides how a body is read
        self.wanted_headers: frozenset[str] = frozenset((*self._r.header_names, "content-type"))
        for ex in exchanges:
            self.add(ex)

    # ------------------------------------------------------------ building

    def __len__(self) -> int:
        return len(self._exchanges)

    @property
    def exchanges(self) -> Sequence[Exchange]:
        return self._exchanges

    def add(self, exchange: Exchange) -> int:
        """Index one more exchange (record mode); returns its position."""
        pos = len(self._exchanges)
        self._exchanges.append(exchange)
        self._misses.clear()
        self._memo.clear()  # a remembered miss may be a hit now
        key = self.key_for(exchange.request)
        group = self._groups.get(key)
        if group is not None:
            group.positions.append(pos)
            return pos
        group = _Group(key, pos)
        self._groups[key] = group
        method, path = group.bucket
        bucket = self._buckets.get(group.bucket)
        if bucket is None:
            bucket = self._buckets[group.bucket] = _Bucket()
            self._by_path.setdefault(path, []).append(group.bucket)
            self._by_shape.setdefault((method, path_shape(path)), []).append(group.bucket)
        bucket.groups.append(group)
        if bucket.postings is not None:
            self._post(bucket, len(bucket.groups) - 1, group)
        return pos

    def reset(self) -> None:
        """Start every recorded sequence again from its first response."""
        for g in self._groups.values():
            g.calls = 0

    # ------------------------------------------------------------ signatures

    def key_for(self, req: Request) -> Key:
        hv = _header_values(req.headers, (*self._r.header_names, "content-type"))
        return self._key(req.method, req.path, req.query, hv, req.body)

    def key_raw(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Key:
        """Signature straight from the wire: ``target`` as sent, ``headers`` keyed by
        lower-case name (only ``wanted_headers`` are read)."""
        return self._key_raw(method, target, headers, body)

    def lookup_raw(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> int:
        """``lookup(key_raw(...))`` for the server's hot path: position or -1, advancing the
        sequence. Wire request -> group is memoised (bounded): signatures are a pure
        function of the request, and a service sends the same requests again and again."""
        if self._r.header_names:
            memo_key: tuple[object, ...] = (
                method,
                target,
                body,
                headers.get("content-type") if body else None,
                *[headers.get(h) for h in self._r.header_names],
            )
        else:
            memo_key = (method, target, body, headers.get("content-type") if body else None)
        try:
            g = self._memo[memo_key]
        except KeyError:
            g = self._groups.get(self._key_raw(method, target, headers, body))
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[memo_key] = g
        if g is None:
            return -1
        n = g.calls
        g.calls = n + 1
        ps = g.positions
        return ps[n] if n < len(ps) else ps[-1]

    def _key_raw(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Key:
        path, _, qs = target.partition("?")
        if "#" in qs:
            qs = qs.partition("#")[0]
        return self._key(method, path, parse_query_fast(qs), headers, body)

    def _key(
        self,
        method: str,
        path: str,
        query: tuple[tuple[str, str], ...],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Key:
        r = self._r
        return (
            method.upper(),
            (unquote(path) if "%" in path else path) or "/",
            r.query(query) if query else (),
            body_key(body, headers.get("content-type"), r) if body else b"",
            tuple([headers.get(h) for h in r.header_names]) if r.header_names else (),
        )

    # ------------------------------------------------------------ lookup

    def take(self, key: Key) -> tuple[int, int]:
        """(position, call number) for an exact signature, advancing its sequence;
        (-1, 0) when nothing was recorded with this signature."""
        group = self._groups.get(key)
        if group is None:
            return -1, 0
        return group.take()

    def lookup(self, key: Key) -> int:
        """Like ``take`` without the call number: the server's hot path."""
        g = self._groups.get(key)
        if g is None:
            return -1
        n = g.calls
        g.calls = n + 1
        ps = g.positions
        return ps[n] if n < len(ps) else ps[-1]

    def match(self, req: Request) -> MatchResult:
        """The recorded answer for ``req`` (advancing the n-th call sequence), the
        strongest candidate when ``match.fuzzy`` allows it, or a miss that says why."""
        pos, call = self.take(self.key_for(req))
        if pos < 0 and self.redactor is not None:
            req = self.redactor(self._slim(req))
            pos, call = self.take(self.key_for(req))
        if pos >= 0:
            ex = self._exchanges[pos]
            return MatchResult(ex, f"matched #{pos + 1} (call {call})", position=pos, call=call)
        if self.rules.fuzzy:
            return self._miss(req)
        key = self.key_for(req)
        cached = self._misses.get(key)
        if cached is None:
            cached = self._miss(req)
            if len(self._misses) >= _MEMO_SIZE:
                self._misses.clear()
            self._misses[key] = cached
        return cached

    def explain(self, req: Request) -> MatchResult:
        """Like ``match`` for a request known to miss, without touching sequences."""
        if self.redactor is not None:
            req = self.redactor(self._slim(req))
        return self._miss(req, allow_fuzzy=False)

    def _slim(self, req: Request) -> Request:
        # redact only what takes part in matching: it is the hot path of a miss
        keep = self.wanted_headers
        headers = tuple((k, v) for k, v in req.headers if k.lower() in keep)
        return Request(
            method=req.method,
            path=req.path,
            query=req.query,
            headers=headers,
            body=req.body,
            host=req.host,
        )

    # ------------------------------------------------------------ misses

    def _parts_of(self, req: Request) -> _Parts:
        r = self._r
        hv = _header_values(req.headers, (*r.header_names, "content-type"))
        body: Any = req.body
        is_json = False
        if req.body:
            is_json, value = _json_value(req.body, hv.get("content-type"))
            if is_json:
                body = drop_paths(value, r.body_paths) if r.body_paths else value
        return _Parts(
            method=req.method.upper(),
            path=normalize_path(req.path),
            query=r.query(req.query),
            is_json=is_json,
            body=body,
            headers={h: hv[h] for h in r.header_names if h in hv},
        )

    def _group_parts(self, g: _Group) -> _Parts:
        if g.parts is None:
            g.parts = self._parts_of(self._exchanges[g.first].request)
        return g.parts

    def _post(self, bucket: _Bucket, i: int, g: _Group) -> None:
        assert bucket.postings is not None
        for f in self._group_parts(g).features():
            bucket.postings.setdefault(f, []).append(i)

    def _shortlist(self, bucket: _Bucket, live: _Parts) -> list[_Group]:
        groups = bucket.groups
        if len(groups) <= _DIFF_ALL:
            return groups
        if bucket.postings is None:
            bucket.postings = {}
            for i, g in enumerate(groups):
                self._post(bucket, i, g)
        counts: dict[int, int] = {}
        for f in live.features():
            posting = bucket.postings.get(f)
            if posting is None or len(posting) > _POSTING_CAP:
                continue
            for i in posting:
                counts[i] = counts.get(i, 0) + 1
        best = sorted(counts, key=lambda i: (-counts[i], i))[:_SHORTLIST]
        if len(best) < _SHORTLIST:
            seen = set(best)
            best += [i for i in range(min(len(groups), _SHORTLIST * 2)) if i not in seen]
            best = best[:_SHORTLIST]
        return [groups[i] for i in best]

    def _candidates(self, live: _Parts) -> tuple[list[tuple[Candidate, _Group]], bool]:
        """Nearest candidates, best first; True when they share the live (method, path)."""
        bucket = self._buckets.get((live.method, live.path))
        same_route = bucket is not None
        groups: list[_Group] = []
        if bucket is not None:
            groups = self._shortlist(bucket, live)
        else:
            seen: set[tuple[str, str]] = set()
            for bk in self._by_path.get(live.path, []):
                seen.add(bk)
                groups += self._buckets[bk].groups[:_SHORTLIST]
            for bk in self._by_shape.get((live.method, path_shape(live.path)), [])[:_SHORTLIST]:
                if bk not in seen:
                    groups += self._buckets[bk].groups[:2]
        cands = [(self._compare(g, live), g) for g in groups]
        cands.sort(
            key=lambda cg: (len(cg[0].differences) + cg[0].more, -cg[0].score, cg[0].position)
        )
        return cands, same_route

    def _compare(self, g: _Group, live: _Parts) -> Candidate:
        rec = self._group_parts(g)
        diffs: list[FieldDiff] = []
        same = 0
        if rec.method != live.method:
            diffs.append(FieldDiff("method", "", rec.method, live.method))
        else:
            same += 1
        if rec.path != live.path:
            diffs.append(FieldDiff("path", "", rec.path, live.path))
        else:
            same += 1
        same += _diff_query(rec.query, live.query, diffs)
        for h in self._r.header_names:
            rv, lv = rec.headers.get(h), live.headers.get(h)
            if rv != lv:
                diffs.append(FieldDiff("header", h, _q(rv), _q(lv)))
            else:
                same += 1
        more = 0
        if rec.is_json and live.is_json:
            counter = [0, 0]
            _diff_json(rec.body, live.body, "$", diffs, counter)
            same += counter[0]
            more = counter[1]
        elif rec.is_json or live.is_json or rec.body != live.body:
            diffs.append(_body_diff(rec, live))
        elif rec.body:
            same += 1
        total = same + len(diffs) + more
        return Candidate(
            position=g.first,
            exchange=self._exchanges[g.first],
            differences=tuple(diffs),
            score=same / total if total else 1.0,
            more=more,
        )

    def _miss(self, req: Request, *, allow_fuzzy: bool = True) -> MatchResult:
        live = self._parts_of(req)
        what = f"{live.method} {live.path}"
        if not self._exchanges:
            where = f" for dependency {self.name}" if self.name else ""
            return MatchResult(
                None,
                f"{what}: no recording matches: no recordings are loaded{where}",
                hint="record some traffic first (devbox record), or point the mock at a HAR file",
            )
        ranked, same_route = self._candidates(live)
        shown = [c for c, _ in ranked[:SHOWN_CANDIDATES]]
        if allow_fuzzy and self.rules.fuzzy and same_route and ranked:
            best, group = ranked[0]
            pos, call = group.take()
            return MatchResult(
                self._exchanges[pos],
                f"{what}: fuzzy match, strongest candidate {best.describe()}",
                candidates=tuple(shown),
                position=pos,
                fuzzy=True,
                call=call,
            )
        hint = self._hint(shown[0]) if shown else self._route_hint()
        if shown:
            text = f"{what}: no recording matches. nearest: " + "; ".join(
                c.describe() for c in shown
            )
        else:
            text = (
                f"{what}: no recording matches: nothing recorded for this route ({self._routes()})"
            )
        if hint:
            text += f"; hint: {hint}"
        return MatchResult(None, text, candidates=tuple(shown), hint=hint)

    def _of_dep(self) -> str:
        return f" of dependency {self.name}" if self.name else ""

    def _hint(self, c: Candidate) -> str:
        fields = {d.field for d in c.differences}
        if not c.differences:
            return ""
        if fields & {"method", "path"}:
            return self._route_hint()
        if len(c.differences) + c.more > 6:
            return (
                f"the nearest recording differs in {len(c.differences) + c.more} fields: this "
                "call was probably never recorded; " + self._route_hint()
            )
        parts = []
        body = _generalize([d.name for d in c.differences if d.field == "body" and d.name])
        if body:
            parts.append(f"add {_names(body)} to match.ignore_body{self._of_dep()}")
        elif any(d.field == "body" for d in c.differences):
            parts.append("the body differs and is not JSON, so no rule can ignore part of it")
        query = [d.name for d in c.differences if d.field == "query"]
        if query:
            parts.append(f"add {_names(query)} to match.ignore_query{self._of_dep()}")
        headers = [d.name for d in c.differences if d.field == "header"]
        if headers:
            parts.append(f"remove {_names(headers)} from match.headers{self._of_dep()}")
        return "; ".join(parts)

    def _route_hint(self) -> str:
        dep = f" for dependency {self.name}" if self.name else ""
        return (
            f'record this call (devbox record), or set on_miss = "passthrough"{dep} '
            "to forward unrecorded calls to the real upstream"
        )

    def _routes(self) -> str:
        counts: dict[str, int] = {}
        for (method, path), b in self._buckets.items():
            route = f"{method} {path_shape(path)}"
            counts[route] = counts.get(route, 0) + sum(len(g.positions) for g in b.groups)
            if len(counts) > 2000:
                break
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:4]
        listed = ", ".join(f"{r} x{n}" for r, n in top)
        more = f", {len(counts) - len(top)} more routes" if len(counts) > len(top) else ""
        return f"recorded: {listed}{more}"

    # ------------------------------------------------------------ inspection

    def route_calls(self) -> list[tuple[str, str, int, int]]:
        """(method, path, recorded exchanges, calls answered) for every recorded route."""
        return [
            (m, p, sum(len(g.positions) for g in b.groups), sum(g.calls for g in b.groups))
            for (m, p), b in self._buckets.items()
        ]

    def routes(self) -> list[tuple[str, str, int]]:
        """(method, path, recorded exchanges) for every recorded route."""
        return [
            (m, p, sum(len(g.positions) for g in b.groups)) for (m, p), b in self._buckets.items()
        ]


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

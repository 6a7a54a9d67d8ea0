"""Automatic noise detection: which values vary on their own, and rules to ignore them. Pure.

Theory of operation
-------------------
The evidence is a set of *observations*: the responses one request got when it
was sent several times with nothing changed in between (two replays in a row),
or recorded duplicates (the same request recorded twice). A value that differs
within one observation is noise by definition: the code did not change, the
value did. A value that is the same within every observation is *stable*, even
if it differs from the recording: a price that changed because the code changed
is a real change and both replays agree on it.

Each varying value is classified (timestamp, UUID, JWT, hash, random id,
counter, …) and its concrete paths are generalized (``$.items[3].id`` ->
``$.items[*].id``). A rule is proposed only if it hides nothing that was stable
anywhere in the evidence; otherwise the narrower concrete paths are tried, and
whatever still covers a stable value is held back, with the reason.

Rules are scoped to the route they were learned on (``"POST /orders $.id"``): an id
that is noise in ``POST /orders`` must not hide a change of ``$.id`` in ``GET
/orders/7``. A rule is left unscoped only when the same path varied on every route
(two or more) whose responses carry it, and hides no stable value anywhere.

The evidence must come from passes that start from the same state (devbox replay resets
the mocks and runs the profile's ``[replay] reset`` hook before each pass, and learning
replays one request at a time, in recorded order): then a value that differs because an
earlier request changed the server's state is the same in both passes, hence stable, not
noise. Recorded duplicates count only when no state-changing request (POST, PUT, PATCH,
DELETE) was recorded between them, for the same reason.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from devbox.core.diff import (
    DiffRules,
    Path,
    flatten_json,
    format_path,
    generalize,
    parse_json_body,
    parse_pattern,
    pattern_matches,
    short,
)
from devbox.core.model import Exchange, Response
from devbox.core.scoped_rules import rules_for, scoped

_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[1-8][0-9a-fA-F]{3}-?[89abAB][0-9a-fA-F]{3}-?[0-9a-fA-F]{12}$"
)
_JWT = re.compile(r"^eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
_HTTP_DATE = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_PREFIXED_ID = re.compile(r"^[A-Za-z]{1,12}[_\-:][A-Za-z0-9_\-]{6,}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-+/=]{8,}$")
_HASH_LENGTHS = (32, 40, 64, 128)
# plausible epoch times: 2001-09-09 .. 2100
_EPOCH_S = (1_000_000_000, 4_102_444_800)
_EPOCH_MS = (1_000_000_000_000, 4_102_444_800_000)

KINDS = ("timestamp", "uuid", "jwt", "hash", "random id", "counter", "random number", "varies")


@dataclass(frozen=True, slots=True)
class Observation:
    """One request seen several times with nothing changed in between."""

    label: str  # "POST /orders"
    responses: tuple[Response, ...]
    origin: str = "replays"  # "replays" | "recorded duplicates"
    recorded: Response | None = None  # the recording, to explain what is held back
    route: str = ""  # "POST /orders" (method and path); "": the label's first two words

    @property
    def route_key(self) -> str:
        if self.route:
            return self.route
        method, _, rest = self.label.partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        return f"{method} {path}" if path else method


@dataclass(frozen=True, slots=True)
class NoiseProposal:
    rule: str  # "$.created_at", "$.items[*].id", "header:date"
    kind: str  # one of KINDS
    requests: int  # observations in which it varied
    evidence: tuple[str, ...]  # a few human-readable examples

    def describe(self) -> str:
        return f"{self.rule}  ({self.kind}; varied in {self.requests} request(s))"


@dataclass(frozen=True, slots=True)
class HeldBack:
    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class NoiseReport:
    proposals: tuple[NoiseProposal, ...] = ()
    held_back: tuple[HeldBack, ...] = ()
    observations: int = 0

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(p.rule for p in self.proposals)


# ---------------------------------------------------------------- classification


def classify(values: Sequence[Any]) -> str:
    """What kind of varying value this is, from the values observed (in order)."""
    vals = [v for v in values if v is not None]
    if not vals or len({type(v) for v in vals}) > 1:
        return "varies"
    if all(isinstance(v, bool) for v in vals):
        return "varies"
    if all(isinstance(v, str) for v in vals):
        return _classify_strings(vals)
    if all(isinstance(v, int | float) for v in vals):
        return _classify_numbers(vals)
    return "varies"


def _classify_strings(vals: list[str]) -> str:
    if all(_JWT.match(v) for v in vals):
        return "jwt"
    if all(_UUID.match(v) for v in vals):
        return "uuid"
    if all(_ISO.match(v) or _HTTP_DATE.match(v) for v in vals):
        return "timestamp"
    if all(v.lstrip("-").isdigit() for v in vals):
        return _classify_numbers([int(v) for v in vals])
    if all(_HEX.match(v) and len(v) in _HASH_LENGTHS for v in vals):
        return "hash"
    lengths = {len(v) for v in vals}
    if all(_PREFIXED_ID.match(v) for v in vals):
        return "random id"
    if len(lengths) == 1 and all(_TOKEN.match(v) and any(c.isdigit() for c in v) for v in vals):
        return "random id"
    if all(_HEX.match(v) and len(v) >= 8 for v in vals):
        return "random id"
    return "varies"


def _classify_numbers(vals: Sequence[float]) -> str:
    if all(_EPOCH_S[0] <= v <= _EPOCH_S[1] or _EPOCH_MS[0] <= v <= _EPOCH_MS[1] for v in vals):
        return "timestamp"
    if all(isinstance(v, int) for v in vals) and all(b > a for a, b in itertools.pairwise(vals)):
        return "counter"
    return "random number"


# ---------------------------------------------------------------- evidence


_ABSENT = object()


@dataclass(slots=True)
class _Seen:
    varied_in: list[tuple[str, str, list[Any]]] = field(
        default_factory=list
    )  # (label, origin, values)
    stable_in: list[str] = field(default_factory=list)


def _leaves(resp: Response) -> dict[Path, Any] | None:
    ok, value = parse_json_body(resp)
    if not ok:
        return None
    return dict(flatten_json(value))


def learn_noise(
    observations: Iterable[Observation],
    *,
    existing: Sequence[str] = (),
    headers: Sequence[str] = (),
    max_evidence: int = 3,
) -> NoiseReport:
    """Propose ignore rules for the values that varied within observations.

    ``existing``: rules already in the profile (never proposed again, and values
    they cover are not considered). ``headers``: the response headers that replay
    compares; only those can be noise worth a rule.
    """
    current = DiffRules(ignore=tuple(r for r in existing if r.startswith(("$", "header:"))))
    by_route: dict[str, dict[Path, _Seen]] = defaultdict(lambda: defaultdict(_Seen))
    by_target: dict[str, dict[Path, _Seen]] = defaultdict(lambda: defaultdict(_Seen))
    route_rules: dict[str, DiffRules] = {}
    head_seen: dict[str, _Seen] = defaultdict(_Seen)
    held: list[HeldBack] = []
    count = 0
    recorded_vs: dict[tuple[str, Path], list[tuple[str, Any, Any]]] = defaultdict(list)
    for obs in observations:
        if len(obs.responses) < 2:
            continue
        count += 1
        route = obs.route_key
        rules = route_rules.get(obs.label)
        if rules is None:
            method, _, path = route.partition(" ")
            target = obs.label.partition(" ")[2]
            rules = route_rules[obs.label] = DiffRules(
                ignore=rules_for(existing, method, path, target)
            )
        paths = by_route[route]
        in_target = by_target[obs.label]
        statuses = {r.status for r in obs.responses}
        if len(statuses) > 1:
            held.append(
                HeldBack(f"status of {obs.label}", f"flaky: {sorted(statuses)} across {obs.origin}")
            )
        for name in headers:
            low = name.lower()
            if current.ignores_header(low):
                continue
            hv = [r.header(low) for r in obs.responses]
            if len(set(hv)) > 1:
                head_seen[low].varied_in.append((obs.label, obs.origin, hv))
            else:
                head_seen[low].stable_in.append(obs.label)
        leaves = [_leaves(r) for r in obs.responses]
        if any(lv is None for lv in leaves):
            texts = {r.body for r in obs.responses}
            if len(texts) > 1 and not all(
                lv is None and not r.body for lv, r in zip(leaves, obs.responses, strict=True)
            ):
                held.append(
                    HeldBack(
                        f"body of {obs.label}",
                        f"varies across {obs.origin} but is not JSON: no path to ignore",
                    )
                )
            continue
        maps = [lv for lv in leaves if lv is not None]
        keys: set[Path] = set()
        for m in maps:
            keys.update(m)
        for p in keys:
            if rules.ignores_path(p):
                continue
            vals = [m.get(p, _ABSENT) for m in maps]
            first = vals[0]
            if all(v is not _ABSENT and _eq(v, first) for v in vals):
                paths[p].stable_in.append(obs.label)
                in_target[p].stable_in.append(obs.label)
                if obs.recorded is not None:
                    recorded_vs[(route, p)].append((obs.label, obs.recorded, first))
            else:
                varied = (obs.label, obs.origin, [None if v is _ABSENT else v for v in vals])
                paths[p].varied_in.append(varied)
                in_target[p].varied_in.append(varied)
    proposals: list[NoiseProposal] = []
    proposals.extend(_propose_scoped(by_route, by_target, held, max_evidence))
    for name, seen in sorted(head_seen.items()):
        if not seen.varied_in:
            continue
        if seen.stable_in:
            held.append(HeldBack(f"header:{name}", _stable_reason(seen)))
            continue
        proposals.append(_proposal(f"header:{name}", seen.varied_in, max_evidence))
    held.extend(_changed_but_stable(recorded_vs, (*existing, *(p.rule for p in proposals))))
    proposals.sort(key=lambda p: p.rule)
    return NoiseReport(tuple(proposals), tuple(held), count)


def _eq(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


def _stable_reason(seen: _Seen) -> str:
    return (
        f"varied in {len(seen.varied_in)} request(s) but was stable in {len(seen.stable_in)} "
        f"(e.g. {seen.stable_in[0]}): a rule would hide a real value"
    )


def _propose_scoped(
    by_route: Mapping[str, Mapping[Path, _Seen]],
    by_target: Mapping[str, Mapping[Path, _Seen]],
    held: list[HeldBack],
    max_evidence: int,
) -> list[NoiseProposal]:
    """Per generalized path: one unscoped rule when it varied on every route (two or more)
    that carries it and hides no stable value anywhere; else one rule per route; and where
    a route-wide rule would hide a value stable in another request of the route, one rule
    per request target (``GET /comments?postId=2 $[0].id``) where it never was stable."""
    varied_on: dict[str, set[str]] = defaultdict(set)
    present_on: dict[str, set[str]] = defaultdict(set)
    for route, paths in by_route.items():
        for p, seen in paths.items():
            g = generalize(p)
            present_on[g].add(route)
            if seen.varied_in:
                varied_on[g].add(route)
    merged: dict[Path, _Seen] = defaultdict(_Seen)
    for paths in by_route.values():
        for p, seen in paths.items():
            merged[p].varied_in.extend(seen.varied_in)
            merged[p].stable_in.extend(seen.stable_in)
    everywhere = {
        g for g, routes in varied_on.items() if len(routes) > 1 and routes == present_on[g]
    }
    out: list[NoiseProposal] = []
    unscoped = _propose_paths(merged, [], max_evidence, only=everywhere, strict=True)
    done = {p.rule for p in unscoped}
    out.extend(unscoped)
    for route in sorted(by_route):
        narrow: list[HeldBack] = []
        out.extend(
            _propose_paths(
                by_route[route], narrow, max_evidence, skip=done, scope=route, label=route
            )
        )
        for h in narrow:
            out.extend(_per_target(h, by_route[route], by_target, held, max_evidence))
    return out


def _per_target(
    h: HeldBack,
    paths: Mapping[Path, _Seen],
    by_target: Mapping[str, Mapping[Path, _Seen]],
    held: list[HeldBack],
    max_evidence: int,
) -> list[NoiseProposal]:
    """Rules scoped to each request target (path and query) where the held-back path
    varied and was never stable; what cannot be narrowed so stays held back."""
    concrete = "$" + h.where.partition(" $")[2]
    p = next((q for q in paths if format_path(q) == concrete), None)
    if p is None:
        held.append(h)
        return []
    out = []
    for label in sorted({lbl for lbl, _, _ in paths[p].varied_in}):
        target = label.partition(" ")[2]
        here = by_target.get(label, {})
        seen = here.get(p)
        stable_below = any(tuple(q[: len(p)]) == tuple(p) and s.stable_in for q, s in here.items())
        if (
            seen is None
            or stable_below
            or "?" not in target
            or " " in target
            or not target.startswith("/")
        ):
            held.append(HeldBack(f"{label} {concrete}", h.reason))
            continue
        out.append(_proposal(scoped(label, concrete), seen.varied_in, max_evidence))
    return out


def _propose_paths(
    paths: Mapping[Path, _Seen],
    held: list[HeldBack],
    max_evidence: int,
    *,
    only: set[str] | None = None,
    skip: AbstractSet[str] = frozenset(),
    strict: bool = False,
    scope: str | None = None,
    label: str = "",
) -> list[NoiseProposal]:
    """Rules for the varying paths of ``paths`` (scoped to ``scope``). ``strict``: propose
    only general rules that hide nothing stable, never the concrete fallbacks."""
    by_general: dict[str, list[Path]] = defaultdict(list)
    for p, seen in paths.items():
        if seen.varied_in:
            g = generalize(p)
            if (only is None or g in only) and g not in skip:
                by_general[g].append(p)
    stable_paths = [p for p, seen in paths.items() if seen.stable_in]
    out: list[NoiseProposal] = []
    where = f"{label} " if label else ""
    for general, members in sorted(by_general.items()):
        pattern = parse_pattern(general)
        if not any(pattern_matches(pattern, sp, prefix=True) for sp in stable_paths):
            evidence = [e for m in members for e in paths[m].varied_in]
            out.append(_proposal(scoped(scope, general), evidence, max_evidence))
            continue
        if strict:
            continue
        # the general rule would hide a stable value: try each concrete path on its own
        for m in sorted(members, key=format_path):
            seen = paths[m]
            concrete = format_path(m)
            if seen.stable_in:
                held.append(HeldBack(where + concrete, _stable_reason(seen)))
            elif concrete != general:
                out.append(_proposal(scoped(scope, concrete), seen.varied_in, max_evidence))
            else:
                held.append(
                    HeldBack(where + concrete, "a rule would also hide stable values below it")
                )
    return out


def _proposal(
    rule: str, varied: list[tuple[str, str, list[Any]]], max_evidence: int
) -> NoiseProposal:
    kinds = Counter(classify(vals) for _, _, vals in varied)
    # prefer a specific kind over "varies" when the observations disagree
    ranked = sorted(kinds.items(), key=lambda kv: (kv[0] == "varies", -kv[1]))
    kind = ranked[0][0]
    labels = {label for label, _, _ in varied}
    evidence = []
    for label, origin, vals in varied[:max_evidence]:
        rendered = " vs ".join(short(v, 40) for v in vals[:3])
        evidence.append(f"{label} ({origin}): {rendered}")
    return NoiseProposal(rule, kind, len(labels), tuple(evidence))


def _changed_but_stable(
    recorded_vs: Mapping[tuple[str, Path], list[tuple[str, Any, Any]]],
    rules: Sequence[str],
) -> list[HeldBack]:
    """Values that agree across replays but differ from the recording: real changes, said so."""
    covered: dict[str, DiffRules] = {}
    out = []
    cache: dict[int, dict[Path, Any] | None] = {}
    reported: set[Path] = set()
    for (route, p), entries in sorted(recorded_vs.items(), key=lambda kv: format_path(kv[0][1])):
        if route not in covered:
            method, _, path = route.partition(" ")
            covered[route] = DiffRules(ignore=rules_for(rules, method, path))
        if p in reported or covered[route].ignores_path(p):
            continue
        for label, recorded, now in entries:
            key = id(recorded)
            if key not in cache:
                cache[key] = _leaves(recorded)
            leaves = cache[key]
            if leaves is None or p not in leaves:
                continue
            was = leaves[p]
            if not _eq(was, now):
                out.append(
                    HeldBack(
                        format_path(p),
                        f"{label}: {short(was, 30)} in the recording, {short(now, 30)} in both "
                        "replays: a real change, not noise",
                    )
                )
                reported.add(p)
                break
    return out


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def duplicate_observations(exchanges: Iterable[Exchange]) -> list[Observation]:
    """Recorded duplicates: the same request (method, target, body) recorded more than once
    with no state-changing request recorded between them (in recorded order): a ``GET
    /posts`` before and after a ``POST /posts`` differ because of the POST, not by noise."""
    groups: dict[tuple[int, str, str, bytes], list[Response]] = defaultdict(list)
    routes: dict[tuple[int, str, str, bytes], str] = {}
    epoch = 0
    for ex in sorted(exchanges, key=lambda e: e.timing.started_at):
        req = ex.request
        if req.method.upper() not in _SAFE_METHODS:
            epoch += 1  # what follows may see another state: a new group
        if ex.response is None:
            continue
        key = (epoch, req.method, req.target, req.body)
        groups[key].append(ex.response)
        routes[key] = f"{req.method} {req.path}"
    out = []
    for key, resps in groups.items():
        if len(resps) > 1:
            _, method, target, _ = key
            out.append(
                Observation(
                    f"{method} {target}", tuple(resps), "recorded duplicates", route=routes[key]
                )
            )
    return out

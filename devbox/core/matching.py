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

HTTP semantics (``devbox.core.http_semantics``) refine a group: a recorded 304 or 206
answers only a request carrying the same validator or Range, and when the recording
holds more than one origin the Host is part of the signature.

Links: with ``link_header`` (the profile's ``[record] correlation_header``) a group of
several exchanges also indexes them by the inbound request they were recorded for (their
``parent`` id and the header's value on the recorded call). A live call carrying the
header is answered from that request's own calls, in order; so under concurrency each
call gets its own request's answer whatever order the calls arrive in. Replay sends the
header with each inbound request (the recorded value, else the exchange's id) and the
service copies it onto its calls, as it would a request id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from devbox.core.http_semantics import (
    VARIANT_HEADERS,
    explain_variant_miss,
    live_variants,
    origin,
    origins_of,
    recorded_variant,
    split_absolute,
)
from devbox.core.match_explain import (
    MAX_DIFFS,
    SHOWN_CANDIDATES,
    SHOWN_DIFFS,
    Candidate,
    FieldDiff,
    MatchResult,
    _body_diff,
    _diff_json,
    _diff_query,
    _Parts,
    _q,
    hint_for,
)
from devbox.core.match_groups import _Bucket, _Group
from devbox.core.match_keys import (
    Key,
    Step,
    _header_values,
    _json_value,
    _Rules,
    body_key,
    drop_paths,
    normalize_path,
    parse_json_path,
    parse_query_fast,
    path_shape,
)
from devbox.core.model import Exchange, Request
from devbox.core.profile import MatchRules

# the public names stay importable from here
__all__ = [
    "MAX_DIFFS",
    "SHOWN_CANDIDATES",
    "SHOWN_DIFFS",
    "Candidate",
    "FieldDiff",
    "Key",
    "MatchIndex",
    "MatchResult",
    "Step",
    "body_key",
    "drop_paths",
    "normalize_path",
    "parse_json_path",
    "parse_query_fast",
    "path_shape",
]

_DIFF_ALL = 64  # buckets up to this size are diffed in full
_SHORTLIST = 12  # larger buckets: diff only the best-ranked groups
_POSTING_CAP = 512  # field values shared by more groups than this carry no signal
_MEMO_SIZE = 4096  # wire request -> group, for requests sent again and again


# ---------------------------------------------------------------- index


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
        link_header: str | None = None,
    ) -> None:
        self.rules = rules
        self.link_header = link_header.lower() if link_header else None
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
        exchanges = list(exchanges)
        # more than one origin: Host is part of the signature; an unknown Host is matched
        # as the origin with the most recorded requests
        counts = origins_of(exchanges)
        self.origins: tuple[str, ...] = tuple(o for o, _ in counts.most_common())
        self._multi = len(self.origins) > 1
        # the headers a signature needs: content-type decides how a body is read
        wanted = {*self._r.header_names, "content-type"}
        if self._multi:
            wanted.add("host")
        if any(recorded_variant(e) is not None for e in exchanges):
            wanted.update(VARIANT_HEADERS)
        if self.link_header is not None:
            wanted.add(self.link_header)
        self._variant_aware = "range" in wanted
        self.wanted_headers: frozenset[str] = frozenset(wanted)
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
        variant = recorded_variant(exchange)
        if group is not None:
            group.add(pos, variant)
            if self.link_header is not None:
                group.add_links(pos, self._links_of(exchange))
            return pos
        group = _Group(key, pos)
        if variant is not None:
            group.variants = {variant: [pos]}
        if self.link_header is not None:
            group.add_links(pos, self._links_of(exchange))
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

    def _links_of(self, exchange: Exchange) -> tuple[str, ...]:
        """What links a recorded call to its inbound request: the parent's id and the
        correlation header's value the service copied onto the call."""
        assert self.link_header is not None
        value = exchange.request.header(self.link_header)
        return tuple(v for v in (exchange.parent, value) if v)

    def reset(self) -> None:
        """Start every recorded sequence again from its first response."""
        for g in self._groups.values():
            g.calls = 0
            g.vcalls.clear()
            g.lcalls.clear()

    # ------------------------------------------------------------ signatures

    def key_for(self, req: Request) -> Key:
        hv = _header_values(req.headers, (*self._r.header_names, "content-type"))
        host = req.host or req.header("host") if self._multi else None
        return self._key(req.method, req.path, req.query, hv, req.body, host)

    def key_raw(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Key:
        """Signature straight from the wire: ``target`` as sent, ``headers`` keyed by
        lower-case name (only ``wanted_headers`` are read)."""
        return self._key_raw(method, target, headers, body)

    def lookup_raw(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> int:
        """``lookup(key_raw(...))`` for the server's hot path: position or -1, advancing the
        sequence. Wire request -> group is memoised (bounded): signatures are a pure
        function of the request, and a service sends the same requests again and again."""
        if self._r.header_names or self._multi:
            memo_key: tuple[object, ...] = (
                method,
                target,
                body,
                headers.get("content-type") if body else None,
                headers.get("host") if self._multi else None,
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
        if g.variants is not None:
            return g.take_for(headers)[0]
        if g.links is not None:
            assert self.link_header is not None
            return g.take_linked(headers.get(self.link_header))[0]
        n = g.calls
        g.calls = n + 1
        ps = g.positions
        return ps[n] if n < len(ps) else ps[-1]

    def _key_raw(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Key:
        authority, target = split_absolute(target)
        path, _, qs = target.partition("?")
        if "#" in qs:
            qs = qs.partition("#")[0]
        host = (authority or headers.get("host")) if self._multi else None
        return self._key(method, path, parse_query_fast(qs), headers, body, host)

    def _key(
        self,
        method: str,
        path: str,
        query: tuple[tuple[str, str], ...],
        headers: Mapping[str, str],
        body: bytes,
        host: str | None = None,
    ) -> Key:
        r = self._r
        hv: tuple[str | None, ...] = (
            tuple([headers.get(h) for h in r.header_names]) if r.header_names else ()
        )
        if self._multi:
            o = origin(host)
            hv = (*hv, o if o in self.origins else self.origins[0])
        return (
            method.upper(),
            (unquote(path) if "%" in path else path) or "/",
            r.query(query) if query else (),
            body_key(body, headers.get("content-type"), r) if body else b"",
            hv,
        )

    # ------------------------------------------------------------ lookup

    def take(self, key: Key, headers: Mapping[str, str] | None = None) -> tuple[int, int]:
        """(position, call number) for an exact signature, advancing its sequence;
        (-1, 0) when nothing was recorded with this signature (or only 304/206 answers
        to validators or ranges *headers* does not carry)."""
        group = self._groups.get(key)
        if group is None:
            return -1, 0
        if group.variants is not None:
            return group.take_for(headers or {})
        if group.links is not None and self.link_header is not None:
            return group.take_linked((headers or {}).get(self.link_header))
        return group.take()

    def lookup(self, key: Key) -> int:
        """Like ``take`` without the call number: the server's hot path."""
        g = self._groups.get(key)
        if g is None:
            return -1
        if g.variants is not None:
            return g.take_for({})[0]
        n = g.calls
        g.calls = n + 1
        ps = g.positions
        return ps[n] if n < len(ps) else ps[-1]

    def match(self, req: Request) -> MatchResult:
        """The recorded answer for ``req`` (advancing the n-th call sequence), the
        strongest candidate when ``match.fuzzy`` allows it, or a miss that says why."""
        hv = self._variant_headers(req)
        pos, call = self.take(self.key_for(req), hv)
        if pos < 0 and self.redactor is not None:
            req = self.redactor(self._slim(req))
            pos, call = self.take(self.key_for(req), hv)
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

    def _variant_headers(self, req: Request) -> dict[str, str]:
        out: dict[str, str] = {}
        if self._variant_aware:
            out = _header_values(req.headers, VARIANT_HEADERS)
        if self.link_header is not None:
            value = req.header(self.link_header)
            if value is not None:
                out[self.link_header] = value
        return out

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
        group = self._groups.get(self.key_for(req))
        if group is not None and group.variants is not None:
            wanted = live_variants(self._variant_headers(req))
            text = explain_variant_miss(what, group.variants, wanted)
            return MatchResult(None, text + self._origin_note(req))
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
        hint = (
            hint_for(shown[0], self._of_dep(), self._route_hint()) if shown else self._route_hint()
        )
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
        text += self._origin_note(req)
        return MatchResult(None, text, candidates=tuple(shown), hint=hint)

    def _origin_note(self, req: Request) -> str:
        if not self._multi:
            return ""
        sent = origin(req.host or req.header("host"))
        used = sent if sent in self.origins else self.origins[0]
        listed = ", ".join(self.origins[:5]) + (", ..." if len(self.origins) > 5 else "")
        how = f"Host {sent}" if sent == used else f"Host {sent or '(none)'} is none of them: {used}"
        n = len(self.origins)
        return f" (origin is part of the match: {n} origins recorded, {listed}; {how})"

    def _of_dep(self) -> str:
        return f" of dependency {self.name}" if self.name else ""

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

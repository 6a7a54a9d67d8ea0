"""The outbound check: did the service call its dependencies as it did when recorded?

While replay sends one inbound request, the service calls the mocks; each mock
keeps a journal (``GET <mock>/__devbox/journal?after=SEQ``). After the response,
replay reads every journal from where it last stopped and compares those calls
with the recorded outbound exchanges whose ``parent`` is the inbound exchange's
id: calls recorded but not made are ``missing``, made but not recorded ``extra``,
and the same method and path with another query or body ``changed``.

Attribution needs that no other inbound request is in flight, so the runner
replays one request at a time when the outbound check is on (see docs/replay.md).
Calls a service makes *after* it has responded (background work) land in the
next request's window; that is a limit of black-box attribution.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from devbox.core.diff import Difference, DiffRules, diff_json
from devbox.core.model import Exchange, Request, parse_query
from devbox.core.profile import MatchRules
from devbox.replay.http import Client, HttpError, parse_target, prepare


@dataclass(frozen=True, slots=True)
class Call:
    """One call a mock saw (from its journal) or one recorded outbound request."""

    dependency: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes
    matched: str | None = None  # the recorded exchange the mock answered with
    id: str | None = None  # recorded calls: the exchange id

    @property
    def target(self) -> str:
        return f"{self.path}?{urlencode(self.query)}" if self.query else self.path


def call_from_exchange(ex: Exchange) -> Call:
    r = ex.request
    return Call(ex.source, r.method, r.path, r.query, r.body, id=ex.id)


def call_from_journal(dependency: str, entry: Mapping[str, Any]) -> Call:
    target = str(entry.get("target", "/"))
    parts = urlsplit(target)
    return Call(
        dependency,
        str(entry.get("method", "GET")).upper(),
        parts.path or "/",
        parse_query(parts.query),
        _journal_body(entry.get("body")),
        matched=entry.get("matched"),
    )


def _journal_body(raw: Any) -> bytes:
    if raw is None:
        return b""
    if isinstance(raw, dict):
        if "base64" in raw:
            return _b64(str(raw["base64"]))
        if "text" in raw:
            return str(raw["text"]).encode()
        if "json" in raw:
            return orjson.dumps(raw["json"])
        return b""
    text = str(raw)
    if text.startswith("base64:"):
        return _b64(text[len("base64:") :])
    return text.encode("utf-8")


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode()


# ---------------------------------------------------------------- comparing


class OutboundComparer:
    """Compares the calls of one inbound request; holds the per-dependency match rules."""

    def __init__(
        self,
        recorded: Sequence[Exchange],
        rules: Mapping[str, MatchRules] | None = None,
        normalize: Callable[[str, Request], Request] | None = None,
    ) -> None:
        self._by_parent: dict[str, list[Call]] = defaultdict(list)
        for ex in recorded:
            if ex.parent:
                self._by_parent[ex.parent].append(call_from_exchange(ex))
        self._rules = dict(rules or {})
        self._body_rules = {
            name: DiffRules(ignore=r.ignore_body) for name, r in self._rules.items()
        }
        self._normalize = normalize

    def recorded_for(self, inbound_id: str) -> list[Call]:
        return self._by_parent.get(inbound_id, [])

    def has_links(self) -> bool:
        return bool(self._by_parent)

    def _norm(self, call: Call) -> Call:
        if self._normalize is None:
            return call
        req = self._normalize(
            call.dependency, Request(call.method, call.path, call.query, (), call.body)
        )
        return Call(
            call.dependency, req.method, req.path, req.query, req.body, call.matched, call.id
        )

    def _query(self, call: Call) -> tuple[tuple[str, str], ...]:
        rules = self._rules.get(call.dependency)
        if rules is None or not rules.ignore_query:
            return tuple(sorted(call.query))
        drop = set(rules.ignore_query)
        return tuple(sorted((k, v) for k, v in call.query if k not in drop))

    def _body_diff(self, a: Call, b: Call) -> list[str]:
        if a.body == b.body:
            return []
        try:
            ja, jb = orjson.loads(a.body), orjson.loads(b.body)
        except orjson.JSONDecodeError:
            return [f"body: {len(a.body)} bytes → {len(b.body)} bytes (text differs)"]
        rules = self._body_rules.get(a.dependency)
        return [d.describe() for d in diff_json(ja, jb, rules)]

    def _same(self, a: Call, b: Call) -> bool:
        return (
            a.method == b.method
            and a.path == b.path
            and self._query(a) == self._query(b)
            and not self._body_diff(a, b)
        )

    def compare(self, inbound_id: str, actual: Sequence[Call]) -> list[Difference]:
        expected = list(self.recorded_for(inbound_id))
        made = [self._norm(c) for c in actual]
        out: list[Difference] = []
        # 1. the mock says which recording it answered with: trust it when it is ours
        ids = {c.id: i for i, c in enumerate(expected)}
        rest: list[Call] = []
        for c in made:
            i = ids.pop(c.matched, None) if c.matched else None
            if i is None:
                rest.append(c)
            else:
                expected[i] = _TAKEN
        expected = [c for c in expected if c is not _TAKEN]
        # 2. equal calls (under the dependency's match rules)
        unmatched: list[Call] = []
        for c in rest:
            for i, e in enumerate(expected):
                if e.dependency == c.dependency and self._same(e, c):
                    del expected[i]
                    break
            else:
                unmatched.append(c)
        # 3. same method and path: changed
        extra: list[Call] = []
        for c in unmatched:
            for i, e in enumerate(expected):
                if e.dependency == c.dependency and e.method == c.method and e.path == c.path:
                    del expected[i]
                    out.append(self._changed(e, c))
                    break
            else:
                extra.append(c)
        for e in expected:
            out.append(Difference("outbound", f"{e.dependency} {e.method} {e.target}", "missing"))
        for c in extra:
            out.append(Difference("outbound", f"{c.dependency} {c.method} {c.target}", "extra"))
        return out

    def _changed(self, e: Call, c: Call) -> Difference:
        details = []
        if self._query(e) != self._query(c):
            details.append(f"query: {e.target} → {c.target}")
        details.extend(self._body_diff(e, c))
        return Difference(
            "outbound",
            f"{e.dependency} {e.method} {e.path}",
            "call",
            details[0] if details else "",
            None,
            "\n".join(details),
        )


_TAKEN = Call("", "", "", (), b"")


# ---------------------------------------------------------------- journals


JOURNAL_PAGE = 1000


class JournalReader:
    """Reads the new entries of each mock's journal since the last read."""

    def __init__(self, journals: Mapping[str, str], timeout: float) -> None:
        self._clients = {name: Client(parse_target(url), timeout) for name, url in journals.items()}
        self._after = dict.fromkeys(journals, 0)

    async def _fetch(self, name: str, after: int) -> tuple[int, list[Call], int]:
        client = self._clients[name]
        req = Request(
            "GET", "/__devbox/journal", (("after", str(after)), ("limit", str(JOURNAL_PAGE)))
        )
        try:
            resp, _ = await client.send(prepare(req, client.target))
        except HttpError as exc:
            raise HttpError(f"mock {name}: journal unreachable: {exc}") from None
        if resp.status != 200:
            raise HttpError(f"mock {name}: journal answered {resp.status}")
        try:
            data = orjson.loads(resp.body)
            raw = [e for e in data.get("entries", []) if isinstance(e, dict)]
            nxt = int(data.get("next", after))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            raise HttpError(f"mock {name}: journal is not the expected JSON") from None
        return nxt, [call_from_journal(name, e) for e in raw], len(raw)

    async def _drain(self, name: str) -> list[Call]:
        out: list[Call] = []
        while True:
            nxt, calls, n = await self._fetch(name, self._after[name])
            self._after[name] = max(nxt, self._after[name])
            out.extend(calls)
            if n < JOURNAL_PAGE:
                return out

    async def start(self) -> None:
        """Skip what is already in the journals: only calls from now on count."""
        for name in self._clients:
            await self._drain(name)

    async def read(self) -> list[Call]:
        out: list[Call] = []
        for name in self._clients:
            out.extend(await self._drain(name))
        return out

    def close(self) -> None:
        for c in self._clients.values():
            c.close()

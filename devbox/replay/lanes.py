"""Which recorded requests must be replayed one after another, in recorded order.

A mock answers the n-th call with the n-th recorded response when several recorded calls
have the same match key and different answers. Two inbound requests replayed
concurrently may then reach the mock in either order and each get the other's answer: a
failure that says nothing about the code (the demo's two declined POST /orders, whose
error text names the charge: about one replay in 30 at concurrency 8). Every replay that
judges responses against the recording (``devbox replay``, the edit loop) puts such
requests in one ordered lane (``ReplayOptions.ordered_lanes``); all others stay
concurrent, and so do all requests of a profile whose calls carry a correlation header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from devbox.core.matching import MatchIndex
from devbox.core.model import Exchange
from devbox.core.profile import MatchRules, Profile
from devbox.store import load_dir
from devbox.wire import registry

Calls = dict[str, tuple[MatchRules, list[Exchange]]]


def linked_calls(profile: Profile) -> Calls:
    """Dependency -> (its match rules, its recorded calls linked to an inbound request),
    for the dependencies whose kind links its calls (``Capabilities.linked_calls``: HTTP;
    other kinds' sequences are their mocks' business)."""
    calls: Calls = {}
    for d in profile.dependencies:
        if not registry.capabilities(d.kind).linked_calls:
            continue
        calls[d.name] = (d.match, [e for e in load_dir(profile.recordings_dir(d.name)) if e.parent])
    return calls


def sequence_lanes(outbound: Mapping[str, tuple[MatchRules, Iterable[Exchange]]]) -> dict[str, str]:
    """Inbound exchange id -> lane, for requests whose calls to a dependency share a
    recorded sequence. ``outbound``: dependency -> (its match rules, its recorded calls)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for rules, calls in outbound.values():
        linked = [c for c in calls if c.parent]
        index = MatchIndex((), rules)
        by_key: dict[object, list[Exchange]] = {}
        for c in linked:
            by_key.setdefault(index.key_for(c.request), []).append(c)
        for group in by_key.values():
            owners = sorted({c.parent for c in group if c.parent})
            answers = {(c.response.status, c.response.body) for c in group if c.response}
            if len(owners) < 2 or len(answers) < 2:
                continue  # one caller, or every answer the same: order cannot matter
            for other in owners[1:]:
                a, b = root(owners[0]), root(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {x: root(x) for x in {*parent, *parent.values()}}


def recorded_lanes(profile: Profile, calls: Calls | None = None) -> dict[str, str]:
    """The ordered lanes of a replay of ``profile`` (``calls``: its ``linked_calls``, when
    already loaded). None with ``[record] correlation_header``: replay sends each request
    with its link and the mocks answer each call from that request's recorded calls,
    whatever order they arrive in, so such requests keep their concurrency."""
    if profile.record.correlation_header:
        return {}
    return sequence_lanes(linked_calls(profile) if calls is None else calls)


__all__ = ["linked_calls", "recorded_lanes", "sequence_lanes"]

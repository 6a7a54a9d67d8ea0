"""What the engine's loop queues: one requested iteration, and how two become one."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from devbox.core.matching import MatchIndex
from devbox.core.model import Exchange
from devbox.core.plan import NO_CHANGES, Plan, combine_plans
from devbox.core.profile import MatchRules

_RANK = {"replay": 0, "start": 0, "batch": 1, "restart": 2, "rebuild": 3}


@dataclass(frozen=True, slots=True)
class Job:
    """One requested iteration: a batch's plan to apply, or an explicit action.

    The plan is the watcher's (``Batch.plan``): the engine applies it as it is and never
    classifies the files again."""

    action: str  # "start" | "batch" | "replay" | "restart" | "rebuild"
    plan: Plan = NO_CHANGES
    first_event_at: float = field(default_factory=time.monotonic)

    @property
    def has_changes(self) -> bool:
        return bool(self.plan.steps)


def merge(a: Job, b: Job) -> Job:
    """Two requests as one: the union of their plans (the newer step wins per path), the
    stronger explicit action."""
    plan = (
        combine_plans(a.plan, b.plan)
        if a.has_changes and b.has_changes
        else (a.plan if a.has_changes else b.plan)
    )
    action = a.action if _RANK[a.action] >= _RANK[b.action] else b.action
    if action in ("replay", "start") and plan.steps:
        action = "batch"
    return Job(action, plan, min(a.first_event_at, b.first_event_at))


def sequence_lanes(outbound: Mapping[str, tuple[MatchRules, Iterable[Exchange]]]) -> dict[str, str]:
    """Inbound exchange id -> lane, for requests whose calls to a dependency share a
    recorded sequence. ``outbound``: dependency -> (its match rules, its recorded calls).

    A mock answers the n-th call with the n-th recorded response when several recorded
    calls have the same match key and different answers. Two inbound requests replayed
    concurrently may then reach the mock in either order and each get the other's answer:
    a failure that says nothing about the code (about one replay in 60 of the demo: two
    POST /orders with declined charges). Such requests are replayed one after another,
    in recorded order; all others stay concurrent."""
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

"""What the engine's loop queues: one requested iteration, and how two become one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from devbox.core.plan import NO_CHANGES, Plan, combine_plans

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

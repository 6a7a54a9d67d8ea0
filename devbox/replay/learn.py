"""``--learn-noise``: replay twice from the same state, compare the passes, propose rules.

Each pass starts from the same state: ``before_pass`` (the CLI resets the profile's
mocks and runs its ``[replay] reset`` hook) runs before each one, and a pass sends one
request at a time in recorded order, so what an earlier request did to the server is the
same in both passes: a value it changed is stable, not noise (``devbox.core.noise``).

The passes are spaced by at least ``gap_s`` (default 1.1 s) so that timestamps with
one-second resolution differ between them: otherwise a ``created_at`` would look stable
and be held back as a real change. Recorded duplicates (the same request recorded more
than once, with no state-changing request between them) are evidence too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from devbox.core.model import Exchange
from devbox.core.noise import NoiseReport, Observation, duplicate_observations, learn_noise
from devbox.core.profile import ReplaySettings
from devbox.replay.report import ReplayReport, RequestResult
from devbox.replay.runner import ReplayOptions, run_replay, select


async def learn_noise_replay(
    exchanges: Sequence[Exchange],
    target: str,
    settings: ReplaySettings,
    *,
    options: ReplayOptions | None = None,
    gap_s: float = 1.1,
    on_result: Callable[[RequestResult], None] | None = None,
    cancel: asyncio.Event | None = None,
    before_pass: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[NoiseReport, ReplayReport, ReplayReport]:
    """Two passes ``gap_s`` apart, each after ``before_pass(n)``; returns the proposals
    and both passes' reports."""
    base = options or ReplayOptions()
    # one serial pass over the recording, in recorded order, keeping every actual response
    opts = replace(
        base,
        keep="all",
        keep_bodies=True,
        copies=1,
        count=None,
        duration_s=None,
        speed=None,
        rate=None,
        concurrency=1,
    )
    reports: list[ReplayReport] = []
    started = 0.0
    for n in (1, 2):
        if n == 2:
            await asyncio.sleep(max(0.0, gap_s - (time.monotonic() - started)))
        if before_pass is not None:
            await before_pass(n)
        started = time.monotonic()
        reports.append(
            await run_replay(
                exchanges, target, settings, options=opts, on_result=on_result, cancel=cancel
            )
        )
    first, second = reports
    items, _ = select(exchanges, base.routes or settings.routes)
    recorded = {ex.id: ex for ex in items}
    observations: list[Observation] = []
    by_index = {r.index: r for r in second.results}
    for r1 in first.results:
        r2 = by_index.get(r1.index)
        if r2 is None or r1.actual is None or r2.actual is None:
            continue
        ex = recorded.get(r1.exchange_id)
        observations.append(
            Observation(
                r1.label,
                (r1.actual, r2.actual),
                "replays",
                ex.response if ex is not None else None,
                route=f"{ex.request.method} {ex.request.path}" if ex is not None else "",
            )
        )
    observations.extend(duplicate_observations(items))
    report = learn_noise(observations, existing=settings.ignore, headers=settings.headers)
    return report, first, second

"""``--learn-noise``: replay twice, compare the two runs, propose ignore rules.

The replays are spaced by at least ``gap_s`` (default 1.1 s) so that timestamps
with one-second resolution differ between them: otherwise a ``created_at`` would
look stable and be held back as a real change. Recorded duplicates (the same
request recorded more than once) are evidence too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
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
) -> tuple[NoiseReport, ReplayReport, ReplayReport]:
    """Two replays ``gap_s`` apart; returns the proposals and both runs' reports."""
    base = options or ReplayOptions()
    # one plain pass over the recording, keeping every actual response
    opts = replace(
        base,
        keep="all",
        keep_bodies=True,
        copies=1,
        count=None,
        duration_s=None,
        speed=None,
        rate=None,
    )
    first = await run_replay(
        exchanges, target, settings, options=opts, on_result=on_result, cancel=cancel
    )
    await asyncio.sleep(max(0.0, gap_s))
    second = await run_replay(
        exchanges, target, settings, options=opts, on_result=on_result, cancel=cancel
    )
    items, _ = select(exchanges, base.routes or settings.routes)
    recorded = {ex.id: ex.response for ex in items}
    observations: list[Observation] = []
    by_index = {r.index: r for r in second.results}
    for r1 in first.results:
        r2 = by_index.get(r1.index)
        if r2 is None or r1.actual is None or r2.actual is None:
            continue
        observations.append(
            Observation(r1.label, (r1.actual, r2.actual), "replays", recorded.get(r1.exchange_id))
        )
    observations.extend(duplicate_observations(items))
    report = learn_noise(observations, existing=settings.ignore, headers=settings.headers)
    return report, first, second

"""Which request to send when, and in which ordered lane.

``schedule`` lazily yields ``Job``s: a plain replay sends each recorded request
once; ``copies`` sends each one N times (each copy its own set of lanes, as N
users would); ``count`` and ``duration`` cycle through the recording in rounds.
A job's ``at`` is its send time in seconds from the start: recorded offsets
divided by ``speed``, or ``seq / rate``; ``None`` means as soon as a worker is free.

Lanes keep order where requests depend on each other: requests that carried
the same session cookie or Authorization value were one client's conversation,
so they go one after the other, in recorded order. Everything else is
independent and runs concurrently.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from devbox.core.model import Exchange, Request
from devbox.errors import UsageError


@dataclass(frozen=True, slots=True)
class Pacing:
    speed: float | None = None  # 1.0 = as recorded, 2.0 = twice as fast
    rate: float | None = None  # fixed requests per second
    count: int | None = None  # send exactly this many requests (cycling)
    duration_s: float | None = None  # keep sending for this long (cycling)
    copies: int = 1  # each request this many times

    def validate(self) -> None:
        if self.speed is not None and self.rate is not None:
            raise UsageError("--speed and --rate cannot be combined", hint="pick one way to pace")
        if self.speed is not None and self.speed <= 0:
            raise UsageError(f"--speed {self.speed:g}: must be greater than 0")
        if self.rate is not None and self.rate <= 0:
            raise UsageError(f"--rate {self.rate:g}: must be greater than 0")
        if self.count is not None and self.count < 1:
            raise UsageError(f"--count {self.count}: must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"--duration {self.duration_s:g}: must be greater than 0")
        if self.copies < 1:
            raise UsageError(f"--copies {self.copies}: must be at least 1")

    @property
    def is_load(self) -> bool:
        """A load run: results are streamed, only failures kept."""
        return self.copies > 1 or self.count is not None or self.duration_s is not None

    @property
    def cycles(self) -> bool:
        return self.count is not None or self.duration_s is not None


@dataclass(frozen=True, slots=True)
class Job:
    seq: int  # global send order
    item: int  # index into the replayed exchanges
    copy: int  # copy number (copies) or round (count/duration)
    at: float | None  # seconds from the start; None: as soon as possible
    lane: Hashable | None  # None: independent


_SESSION_COOKIE_HINTS = ("session", "sid", "auth", "token", "jwt", "login", "user")


def lane_key(req: Request) -> str | None:
    """The conversation a request belongs to: its Authorization or session cookie value."""
    auth = req.header("authorization")
    if auth:
        return "auth:" + auth
    cookie = req.header("cookie")
    if cookie:
        pairs = [p.strip() for p in cookie.split(";") if "=" in p]
        session = [
            p for p in pairs if any(h in p.split("=", 1)[0].lower() for h in _SESSION_COOKIE_HINTS)
        ]
        # no recognisable session cookie: the whole cookie header is the identity
        return "cookie:" + ";".join(sorted(session or pairs or [cookie]))
    return None


def recorded_offsets(items: Sequence[Exchange]) -> list[float]:
    """Seconds since the first request, never going backwards."""
    if not items:
        return []
    t0 = min(ex.timing.started_at for ex in items)
    out = []
    last = 0.0
    for ex in items:
        off = max(ex.timing.started_at - t0, last)
        out.append(off)
        last = off
    return out


def schedule(
    items: Sequence[Exchange], pacing: Pacing, ordered: Mapping[str, str] | None = None
) -> Iterator[Job]:
    """``ordered``: exchange id -> lane of requests that must run one after another in
    recorded order (e.g. their calls to a mock share a recorded sequence)."""
    n = len(items)
    if n == 0:
        return
    ordered = ordered or {}
    lanes = [
        ("seq:" + ordered[ex.id]) if ex.id in ordered else lane_key(ex.request) for ex in items
    ]
    offsets = recorded_offsets(items) if pacing.speed else []
    span = 0.0
    if offsets:
        # a round lasts as long as the recording plus one average gap
        span = offsets[-1] + (offsets[-1] / (n - 1) if n > 1 else 1.0)
    seq = 0
    rounds = itertools.count() if pacing.cycles else range(1)
    for rnd in rounds:
        for i in range(n):
            for c in range(pacing.copies):
                if pacing.count is not None and seq >= pacing.count:
                    return
                copy = rnd * pacing.copies + c
                at: float | None = None
                if pacing.speed:
                    at = (rnd * span + offsets[i]) / pacing.speed
                elif pacing.rate:
                    at = seq / pacing.rate
                lane = lanes[i]
                yield Job(seq, i, copy, at, None if lane is None else (copy, lane))
                seq += 1

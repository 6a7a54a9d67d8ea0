"""Latency statistics in bounded memory.

Exact percentiles for the first ``EXACT_LIMIT`` samples (an edit loop replays a
few hundred requests and its p99 should be the real one); past that, a
log-bucketed histogram with ~1% relative error, so a 100,000-request load replay
keeps a few hundred counters instead of every sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXACT_LIMIT = 10_000
_PER_OCTAVE = 64  # buckets per doubling: 2**(1/64) - 1 = 1.09% relative width


@dataclass(frozen=True, slots=True)
class LatencyStats:
    count: int = 0
    min_ms: float = 0.0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    exact: bool = True  # False: percentiles come from the histogram (±1%)

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "count": self.count,
            "min_ms": round(self.min_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "exact": self.exact,
        }


class LatencyRecorder:
    __slots__ = ("_buckets", "_count", "_max", "_min", "_samples", "_sum")

    def __init__(self) -> None:
        self._samples: list[float] | None = []
        self._buckets: dict[int, int] = {}
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = 0.0

    def add(self, ms: float) -> None:
        self._count += 1
        self._sum += ms
        if ms < self._min:
            self._min = ms
        if ms > self._max:
            self._max = ms
        samples = self._samples
        if samples is not None:
            if len(samples) < EXACT_LIMIT:
                samples.append(ms)
                return
            # past the limit: from now on only the histogram, seeded with the samples so far
            for v in samples:
                self._bucket_add(v)
            self._samples = None
        self._bucket_add(ms)

    def _bucket_add(self, ms: float) -> None:
        b = _bucket(ms)
        self._buckets[b] = self._buckets.get(b, 0) + 1

    @property
    def count(self) -> int:
        return self._count

    def snapshot(self) -> LatencyStats:
        if self._count == 0:
            return LatencyStats()
        if self._samples is not None:
            s = sorted(self._samples)
            pct = [_exact(s, q) for q in (50, 90, 95, 99)]
            exact = True
        else:
            pct = [self._from_buckets(q) for q in (50, 90, 95, 99)]
            exact = False
        return LatencyStats(
            count=self._count,
            min_ms=self._min,
            mean_ms=self._sum / self._count,
            p50_ms=pct[0],
            p90_ms=pct[1],
            p95_ms=pct[2],
            p99_ms=pct[3],
            max_ms=self._max,
            exact=exact,
        )

    def _from_buckets(self, q: float) -> float:
        rank = math.ceil(q / 100 * self._count)
        seen = 0
        for b in sorted(self._buckets):
            seen += self._buckets[b]
            if seen >= rank:
                return min(max(_upper(b), self._min), self._max)
        return self._max


def _exact(sorted_samples: list[float], q: float) -> float:
    # nearest-rank: the smallest sample with at least q% of samples at or below it
    rank = max(1, math.ceil(q / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


def _bucket(ms: float) -> int:
    us = max(ms * 1000.0, 1.0)
    return int(math.log2(us) * _PER_OCTAVE)


def _upper(bucket: int) -> float:
    return float(2.0 ** ((bucket + 1) / _PER_OCTAVE) / 1000.0)

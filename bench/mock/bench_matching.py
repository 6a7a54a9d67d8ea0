#!/usr/bin/env python3
"""Matching cost as the number of recorded exchanges grows: a lookup, not a scan.

    .venv/bin/python bench/mock/bench_matching.py [--sizes 1000,10000,100000]

Builds a MatchIndex over N synthetic exchanges shaped like real traffic (GET by id
with a page parameter, POST with JSON bodies, all on a handful of routes, so the
POST bucket holds a quarter of everything), then times per request, in process:

  hit, hot path        MatchIndex.lookup_raw: wire parts -> group (memoised) -> position,
                       exactly what the server does per request
  hit, signature      the same without the memo: canonical signature (query parsed and
                       sorted, JSON body parsed and re-serialised with sorted keys) + lookup
  hit (Request)       MatchIndex.match(Request), the API other parts call
  miss         a request recorded nowhere: candidates from its (method, path) bucket,
               field-by-field diff of a shortlist, explanation text (first time each)
  first miss   the first miss in a bucket also builds that bucket's inverted index
  build        building the index, per exchange

Prints a markdown table; median of 5 rounds each.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson

from devbox.core.matching import MatchIndex
from devbox.core.model import Direction, Exchange, Request, Response
from devbox.core.profile import MatchRules


def dataset(n: int, seed: int = 7) -> list[Exchange]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 4 == 0:
            body = orjson.dumps(
                {
                    "customerId": f"cus_{i:06d}",
                    "currency": rng.choice(["EUR", "USD"]),
                    "items": [{"sku": f"SKU-{rng.randint(1, 400):06d}", "qty": rng.randint(1, 9)}],
                    "note": "x" * rng.randint(5, 40),
                }
            )
            req = Request("POST", "/api/orders", (), (("Content-Type", "application/json"),), body)
        else:
            req = Request("GET", f"/api/items/{i}", (("page", str(i % 25)),))
        out.append(
            Exchange(
                id=f"e{i}",
                direction=Direction.OUTBOUND,
                source="bench",
                request=req,
                response=Response(200, (), b"{}"),
            )
        )
    return out


def per_op(fn: object, items: list[object], rounds: int = 5) -> float:
    assert callable(fn)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for it in items:
            fn(it)
        times.append((time.perf_counter() - t) / len(items))
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args()
    print(
        "| recorded exchanges | hit, hot path µs | hit, signature computed µs | "
        "hit (Request) µs | miss, explained µs | first miss in bucket ms | build µs/exchange |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in (int(x) for x in args.sizes.split(",")):
        print(measure(n), flush=True)


def measure(n: int) -> str:
    exs = dataset(n)
    t = time.perf_counter()
    idx = MatchIndex(exs, MatchRules(), name="bench")
    build = (time.perf_counter() - t) / n * 1e6
    # as `devbox mock` does after loading: the recordings are never garbage-collected
    # cycles, so the collector need not walk them again and again
    gc.collect()
    gc.freeze()
    # the same traffic mix at every size: a seeded random sample
    sample = random.Random(1).sample(exs, min(2000, n))
    wire = [
        (
            e.request.method,
            e.request.target,
            {"content-type": "application/json"} if e.request.body else {},
            e.request.body,
        )
        for e in sample
    ]

    def hit_wire(w: tuple[str, str, dict[str, str], bytes]) -> None:
        assert idx.lookup_raw(*w) >= 0

    def sig_wire(w: tuple[str, str, dict[str, str], bytes]) -> None:
        assert idx.lookup(idx.key_raw(*w)) >= 0

    def hit_req(e: Exchange) -> None:
        assert idx.match(e.request).hit

    misses = [
        Request("POST", "/api/orders", (), (), e.request.body.replace(b'"qty":', b'"qty":1'))
        for e in sample
        if e.request.body
    ][:200]

    def miss(r: Request) -> None:
        res = idx.match(r)
        assert not res.hit and res.candidates

    # the first miss in a bucket builds its inverted index once (O(bucket)); time the rest
    t = time.perf_counter()
    miss(Request("POST", "/api/orders", (), (), b'{"warm": 1}'))
    first_miss = (time.perf_counter() - t) * 1e3

    # the signature memo is part of the hot path; the first of the rounds fills it
    h_wire = per_op(hit_wire, wire)  # type: ignore[arg-type]
    s_wire = per_op(sig_wire, wire)  # type: ignore[arg-type]
    h_req = per_op(hit_req, sample)  # type: ignore[arg-type]
    m = per_op(miss, misses, rounds=1)  # type: ignore[arg-type]
    gc.unfreeze()
    return (
        f"| {n:,} | {h_wire:.2f} | {s_wire:.2f} | {h_req:.2f} | {m:.0f} | {first_miss:.0f} "
        f"| {build:.1f} |"
    )


if __name__ == "__main__":
    main()

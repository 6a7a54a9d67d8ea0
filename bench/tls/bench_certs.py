"""Leaf certificate generation for the local CA: one signature per new host name.

    .venv/bin/python bench/tls/bench_certs.py [--n 300]

Prints per-leaf times (median, p99) for the pure certificate build
(``devbox.wire.certs.leaf_certificate``) and for a whole server context
(``CertStore.context_for``: build + PEM + ``ssl`` load), with a fresh host name each time,
so nothing is served from the cache; and a cached lookup for comparison.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time

from devbox.wire import certs
from devbox.wire.ca import CertStore


def _table(rows: list[tuple[str, list[float]]]) -> None:
    print(f"{'step':<44} {'n':>5} {'median ms':>10} {'p99 ms':>9}")
    for name, xs in rows:
        xs = sorted(xs)
        p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        print(f"{name:<44} {len(xs):>5} {statistics.median(xs):>10.3f} {p99:>9.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    n = max(10, min(ap.parse_args().n, 10_000))
    now = dt.datetime.now(dt.UTC)
    ca = certs.new_authority(now)
    leaf = certs.LeafKey.generate()
    build: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        certs.leaf_certificate(ca, leaf, (f"host{i}.example.test",), now)
        build.append((time.perf_counter() - t0) * 1000)
    with tempfile.TemporaryDirectory():
        store = CertStore(ca)
        ctx: list[float] = []
        for i in range(n):
            t0 = time.perf_counter()
            store.context_for((f"svc{i}.example.test",))
            ctx.append((time.perf_counter() - t0) * 1000)
        cached: list[float] = []
        for i in range(n):
            t0 = time.perf_counter()
            store.context_for((f"svc{i % 10}.example.test",))
            cached.append((time.perf_counter() - t0) * 1000)
    _table(
        [
            ("leaf certificate (build + EC sign)", build),
            ("server context (build, PEM, ssl load)", ctx),
            ("server context, cached", cached),
        ]
    )


if __name__ == "__main__":
    main()

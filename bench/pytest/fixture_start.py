"""How long the devbox_mocks fixture takes to start (target: under 300 ms for two HTTP deps).

Fresh: the first test in a new interpreter (an xdist worker), devbox's imports included
(a subprocess that has imported pytest, as every pytest process has by then).
Cold: what the first test of a process (an xdist worker) pays: load the profile's
recordings, bind both mocks on free ports, reset, open the test's window, set the
variables. Warm: what every later test pays (the fleet is kept per process).
Bounded: at most 50 cold and 500 warm rounds.

Usage: .venv/bin/python bench/pytest/fixture_start.py [--rounds 15] [--profile profiles/demo.toml]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devbox.core.profile import load_profile  # noqa: E402
from devbox.pytest_plugin.mocks import DevboxMocks, FleetCache  # noqa: E402


def fixture(cache: FleetCache, path: Path) -> DevboxMocks:
    """The body of the devbox_mocks fixture, without pytest around it."""
    profile = load_profile(path)
    mocks = DevboxMocks(profile, cache.get(profile))
    mocks.begin()
    os.environ.update(mocks.env)
    return mocks


FRESH = """
import os, sys, time
import pytest  # loaded in every pytest process before any fixture runs: not the fixture's
t0 = time.perf_counter()
from devbox.core.profile import load_profile
from devbox.pytest_plugin.mocks import DevboxMocks, FleetCache
cache = FleetCache()
profile = load_profile(sys.argv[1])
mocks = DevboxMocks(profile, cache.get(profile))
mocks.begin()
os.environ.update(mocks.env)
print((time.perf_counter() - t0) * 1000)
cache.close()
"""


def fresh(path: Path) -> float:
    out = subprocess.run(  # noqa: S603 - our interpreter, fixed code
        [sys.executable, "-c", FRESH, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--profile", type=Path, default=ROOT / "profiles/demo.toml")
    args = ap.parse_args()
    rounds = max(1, min(args.rounds, 50))
    cold: list[float] = []
    warm: list[float] = []
    kinds: dict[str, int] = {}
    for _ in range(rounds):
        cache = FleetCache()
        t0 = time.perf_counter()
        mocks = fixture(cache, args.profile)
        cold.append((time.perf_counter() - t0) * 1000)
        kinds = {}
        for d in mocks.profile.dependencies:
            kinds[d.kind] = kinds.get(d.kind, 0) + 1
        for _ in range(min(10, 500 // rounds)):
            t0 = time.perf_counter()
            fixture(cache, args.profile)
            warm.append((time.perf_counter() - t0) * 1000)
        cache.close()
    first = [fresh(args.profile) for _ in range(min(rounds, 10))]
    deps = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    table = Table(title=f"devbox_mocks start, dependencies: {deps} ({args.profile.name})")
    for col in ("", "rounds", "median", "p90", "max"):
        table.add_column(col, justify="right")
    for name, xs in (("fresh interpreter (imports too)", first),
                     ("cold (first test of a process)", cold),
                     ("warm (every later test)", warm)):  # fmt: skip
        xs = sorted(xs)
        p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
        table.add_row(name, str(len(xs)), f"{statistics.median(xs):.1f} ms", f"{p90:.1f} ms",
                      f"{xs[-1]:.1f} ms")  # fmt: skip
    Console().print(table)
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Watcher latency: from ``write()`` of a source file to its batch being delivered.

    .venv/bin/python bench/watch/latency.py [--count 50] [--quiet-ms 50] [--poll-delay-ms 100]

For each mode (inotify, polling) it writes one file ``--count`` times, each time waiting
for the batch, and reports the median / p90 / max of:
  write->batch  time.monotonic() before write() to Batch.delivered_at (what the loop sees)
  event->batch  Batch.first_event_at to delivered_at (the quiet period, our own share)
  extra batches  batches beyond one per write (a save seen half-done); should be 0
It also reports the time to arm (and count) a tree of --tree-dirs x 10 files, and the
CPU the watcher burns while idle. Bounded: at most 1000 writes, each waited for <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from devbox.core.profile import load_profile
from devbox.watch import Watcher

PROFILE = """
name = "bench"
[service]
port = 8080
build = {{ context = "svc" }}
command = ["python3", "svc/app.py"]
[service.watch]
sync = ["svc/**/*.py"]
quiet_ms = {quiet}
cap_ms = 1000
"""


def make_project(root: Path, quiet: int, tree_dirs: int = 0) -> Path:
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "svc").mkdir(exist_ok=True)
    (root / "svc/app.py").write_text("print(0)\n")
    for d in range(tree_dirs):
        sub = root / "svc" / f"pkg{d // 100}" / f"mod{d}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(10):
            (sub / f"f{f}.py").write_text("X = 1\n")
    path = root / "profiles/bench.toml"
    path.write_text(PROFILE.format(quiet=quiet))
    return path


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def measure(profile_path: Path, mode: str, count: int, poll_delay_ms: int) -> dict[str, Any]:
    profile = load_profile(profile_path)
    target = profile.root / "svc/app.py"
    polling = mode == "polling"
    w = Watcher.for_profile(profile, force_polling=polling, poll_delay_ms=poll_delay_ms)
    write_to_batch: list[float] = []
    event_to_batch: list[float] = []
    async with w:
        info = w.armed_info
        assert info is not None
        await asyncio.sleep(0.2)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(2.0)
        idle_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100
        extra = 0
        for i in range(count):
            # a batch still pending from the previous write would fake a tiny latency
            while await w.next_batch(timeout=0) is not None:
                extra += 1
            t0 = time.monotonic()
            target.write_text(f"print({i})\n")
            b = await w.next_batch(timeout=5)
            if b is None:
                raise SystemExit(f"{mode}: write {i} produced no batch within 5 s")
            write_to_batch.append((b.delivered_at - t0) * 1000)
            event_to_batch.append(b.latency_ms)
            # let the quiet period pass so every write is its own batch
            await asyncio.sleep(0.05 + w.quiet_ms / 1000)
    return {
        "mode": info.mode,
        "quiet_ms": w.quiet_ms,
        "poll_delay_ms": poll_delay_ms if polling else None,
        "count": count,
        "write_to_batch_ms": {
            "median": statistics.median(write_to_batch),
            "p90": pct(write_to_batch, 90),
            "max": max(write_to_batch),
        },
        "event_to_batch_ms": {
            "median": statistics.median(event_to_batch),
            "p90": pct(event_to_batch, 90),
        },
        "extra_batches": extra,
        "arm_ms": info.arm_ms,
        "canary_ms": info.canary_ms,
        "idle_cpu_pct": idle_cpu,
    }


async def measure_arm(root: Path, mode: str, tree_dirs: int, poll_delay_ms: int) -> dict[str, Any]:
    profile = load_profile(make_project(root, 50, tree_dirs))
    w = Watcher.for_profile(profile, force_polling=mode == "polling", poll_delay_ms=poll_delay_ms)
    async with w:
        info = w.armed_info
        assert info is not None
        await asyncio.sleep(0.2)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(2.0)
        idle_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100
        return {
            "mode": info.mode,
            "dirs": info.dirs,
            "files": info.files,
            "arm_ms": info.arm_ms,
            "canary_ms": info.canary_ms,
            "idle_cpu_pct": idle_cpu,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=50, help="writes per mode (max 1000)")
    ap.add_argument("--quiet-ms", type=int, default=50)
    ap.add_argument("--poll-delay-ms", type=int, default=100)
    ap.add_argument("--tree-dirs", type=int, default=1000, help="directories in the arm test")
    ap.add_argument("--modes", default="inotify,polling")
    ap.add_argument("--dir", type=Path, default=None, help="where to create the projects")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    count = max(1, min(args.count, 1000))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: list[dict[str, Any]] = []
    arms: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp).resolve()
        for mode in modes:
            root = base / f"latency-{mode}"
            results.append(
                asyncio.run(
                    measure(make_project(root, args.quiet_ms), mode, count, args.poll_delay_ms)
                )
            )
        for mode in modes:
            arms.append(
                asyncio.run(
                    measure_arm(base / f"arm-{mode}", mode, args.tree_dirs, args.poll_delay_ms)
                )
            )
    if args.json:
        print(json.dumps({"latency": results, "arm": arms}, indent=2))
        return 0
    print(f"write -> batch delivered, {count} writes per mode, quiet_ms={args.quiet_ms}")
    print()
    print(
        "| mode | write->batch median | p90 | max | event->batch median | extra batches "
        "| idle CPU |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        mode = r["mode"] + (f" ({r['poll_delay_ms']} ms)" if r["poll_delay_ms"] else "")
        w2b, e2b = r["write_to_batch_ms"], r["event_to_batch_ms"]
        print(
            f"| {mode} | {w2b['median']:.1f} ms | {w2b['p90']:.1f} ms | {w2b['max']:.1f} ms "
            f"| {e2b['median']:.1f} ms | {r['extra_batches']} | {r['idle_cpu_pct']:.1f} % |"
        )
    print()
    print(f"arming a tree of {args.tree_dirs} dirs x 10 files")
    print()
    print("| mode | dirs | files | arm (incl. count) | canary | idle CPU |")
    print("|---|---|---|---|---|---|")
    for a in arms:
        canary = f"{a['canary_ms']:.0f} ms" if a["canary_ms"] is not None else "-"
        print(
            f"| {a['mode']} | {a['dirs']} | {a['files']} | {a['arm_ms']:.0f} ms | {canary} "
            f"| {a['idle_cpu_pct']:.1f} % |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

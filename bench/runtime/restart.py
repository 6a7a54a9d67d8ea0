"""Restart -> ready: what one edit-loop iteration costs in the runtime.

Measures, on a private copy of the demo service (orders, ready = GET /healthz):

  docker  sync                  DockerRuntime.sync([app.py]) (written into the container's
                                mounted root when devbox runs as root beside the engine)
  docker  put_archive           the engine's copy of the same file (the fallback sync path)
  docker  sync+restart->ready   DockerRuntime.sync([app.py]) + restart() + wait_ready()
  docker  floor                 bare `docker restart` (API, same timeout) + a 1 ms HTTP poll,
                                on the SAME container in the same run: what no runtime can beat
  process restart->ready        ProcessRuntime.restart() + wait_ready()

The runs of devbox and of the floor alternate so that drift hits both alike.

    .venv/bin/python bench/runtime/restart.py [--runs 20] [--runtime both|docker|process]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devbox.core.profile import load_profile  # noqa: E402
from devbox.runtime import DockerRuntime, ProcessRuntime  # noqa: E402
from devbox.runtime.base_image import BASE_IMAGE  # noqa: E402
from devbox.runtime.readiness import probe_http  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_project(tmp: Path) -> Path:
    shutil.copytree(
        ROOT / "examples/demo/orders",
        tmp / "examples/demo/orders",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    text = (ROOT / "profiles/demo.toml").read_text()
    text = re.sub(r'^name = "demo"', 'name = "benchrt"', text, count=1, flags=re.M)
    text = re.sub(r"^port = 7080", f"port = {free_port()}", text, count=1, flags=re.M)
    (tmp / "profiles").mkdir()
    path = tmp / "profiles/benchrt.toml"
    path.write_text(text)
    return path


def stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "median_ms": statistics.median(xs) * 1000,
        "p90_ms": xs[min(len(xs) - 1, int(len(xs) * 0.9))] * 1000,
        "min_ms": xs[0] * 1000,
        "max_ms": xs[-1] * 1000,
    }


def touch(app: Path, i: int) -> None:
    text = app.read_text()
    text = re.sub(r"\n# bench edit \d+\n$", "\n", text)
    app.write_text(text + f"# bench edit {i}\n")


def bench_docker(tmp: Path, runs: int) -> dict[str, dict[str, float]]:
    profile = load_profile(make_project(tmp / "docker"))
    app = profile.root / "examples/demo/orders/app.py"
    rt = DockerRuntime(profile, session=f"bench-{int(time.time())}")
    sync_t: list[float] = []
    archive_t: list[float] = []
    devbox_t: list[float] = []
    floor_t: list[float] = []
    try:
        rt.prepare()
        rt.start({})
        rt.wait_ready()
        for i in range(runs + 1):  # the first of each is a warm-up, dropped
            touch(app, i)
            t0 = time.perf_counter()
            rt.sync([app])
            t1 = time.perf_counter()
            rt.restart()
            rt.wait_ready()
            t2 = time.perf_counter()
            # the floor: the engine's restart and the quickest possible readiness poll
            t3 = time.perf_counter()
            rt.api.restart(rt.container_id, timeout=rt.stop_timeout_s)
            deadline = time.monotonic() + 20
            while not probe_http("127.0.0.1", rt.port, "/healthz", 0.5):
                if time.monotonic() > deadline:
                    raise RuntimeError("floor: container not ready after 20 s")
                time.sleep(0.001)
            t4 = time.perf_counter()
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(str(app), arcname="app/app.py")
            t5 = time.perf_counter()
            rt.api.put_archive(rt.container_id, "/", buf.getvalue())
            t6 = time.perf_counter()
            if i:
                archive_t.append(t6 - t5)
                sync_t.append(t1 - t0)
                devbox_t.append(t2 - t0)
                floor_t.append(t4 - t3)
    finally:
        rt.stop()
    return {
        f"docker sync ({rt.last_sync_path})": stats(sync_t),
        "docker sync via put_archive": stats(archive_t),
        "docker sync+restart->ready": stats(devbox_t),
        "docker floor: bare restart+ready": stats(floor_t),
    }


def bench_process(tmp: Path, runs: int) -> dict[str, dict[str, float]]:
    profile = load_profile(make_project(tmp / "process"))
    rt = ProcessRuntime(profile, session=f"bench-{int(time.time())}")
    times: list[float] = []
    try:
        rt.start({})
        rt.wait_ready()
        for i in range(runs + 1):
            t0 = time.perf_counter()
            rt.restart()
            rt.wait_ready()
            if i:
                times.append(time.perf_counter() - t0)
    finally:
        rt.stop()
    return {"process restart->ready": stats(times)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--runtime", choices=("both", "docker", "process"), default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="devbox-bench-") as d:
        tmp = Path(d)
        if args.runtime in ("both", "docker"):
            from devbox.runtime.engine import client, why_no_engine

            why = why_no_engine()
            if why:
                print(f"docker: skipped ({why})", file=sys.stderr)
            elif client().api.images(name=BASE_IMAGE) == []:
                print(f"docker: skipped ({BASE_IMAGE} missing: devbox image base)", file=sys.stderr)
            else:
                results.update(bench_docker(tmp, args.runs))
        if args.runtime in ("both", "process"):
            results.update(bench_process(tmp, args.runs))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"restart -> ready, {args.runs} runs each (after one warm-up), demo orders service")
    print(f"{'path':36} {'median':>9} {'p90':>9} {'min':>9} {'max':>9}")
    for name, s in results.items():
        print(
            f"{name:36} {s['median_ms']:7.1f}ms {s['p90_ms']:7.1f}ms "
            f"{s['min_ms']:7.1f}ms {s['max_ms']:7.1f}ms"
        )
    if "docker sync+restart->ready" in results:
        over = (
            results["docker sync+restart->ready"]["median_ms"]
            - results["docker floor: bare restart+ready"]["median_ms"]
        )
        print(f"devbox over the floor (median): {over:+.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long a container outlives a `devbox up` killed with SIGKILL (target: gone within 10 s).

    .venv/bin/python bench/runtime/reaper.py [--runs 5]

Each run starts `devbox up demo --headless --runtime docker` on a private copy of the
demo, waits for the first verdict, SIGKILLs devbox (no teardown can run) and measures
until no container of that project (by its `devbox.project` label) is left, and until
the watchdog process is gone. Prints a table. Bounded: 180 s to start, 60 s to clear.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_demo_project  # noqa: E402
from runtime_support import reapers  # noqa: E402

from devbox.runtime.ownership import project_hash  # noqa: E402


def one_run(client: object, base: Path) -> tuple[float, float]:
    profile = make_demo_project(base)
    root = profile.parent.parent
    label = f"devbox.project={project_hash(root.resolve())}"

    def ours() -> list[object]:
        return list(client.containers.list(all=True, filters={"label": label}))  # type: ignore[attr-defined]

    proc = subprocess.Popen(
        [sys.executable, "-m", "devbox", "up", "demo", "--headless", "--runtime", "docker"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            if "iteration 0:" in line or time.monotonic() > deadline:
                break
        (container,) = ours()
        cid = container.id  # type: ignore[attr-defined]
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        gone = watchdog = float("nan")
        while time.monotonic() - t0 < 60:
            now = time.monotonic() - t0
            if gone != gone and not ours():
                gone = now
            if watchdog != watchdog and not reapers(cid):
                watchdog = now
            if gone == gone and watchdog == watchdog:
                break
            time.sleep(0.05)
        return gone, watchdog
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        subprocess.run(
            [sys.executable, "-m", "devbox", "down", "demo"], cwd=root,
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip


def main() -> int:
    import docker

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    client = docker.from_env()
    gone: list[float] = []
    dog: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            g, w = one_run(client, Path(tmp) / f"run{i}")
            gone.append(g)
            dog.append(w)
            print(f"run {i + 1}: container gone {g:.2f} s, watchdog gone {w:.2f} s", flush=True)
    print()
    print("| after SIGKILL of `devbox up` | median | max | runs left over after 10 s |")
    print("|---|---|---|---|")
    late = sum(1 for g in gone if not g <= 10)
    med, worst = statistics.median(gone), max(gone)
    print(f"| container removed | {med:.2f} s | {worst:.2f} s | {late} of {len(gone)} |")
    print(f"| watchdog exited | {statistics.median(dog):.2f} s | {max(dog):.2f} s | |")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0 if late == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Save -> verdict on screen: the dashboard next to ``devbox watch --json``, through tmux.

    .venv/bin/python bench/tui/verdict_latency.py [--saves 8] [--runtime process]
    PYTHONPATH=/tmp/old .venv/bin/python bench/tui/verdict_latency.py   # another tree

Runs two private copies of the demo side by side, each in its own tmux session: one
``devbox up`` (the dashboard), one ``devbox watch --json`` (the headless loop, which
prints the engine's verdict the moment it has it). Then, alternating between the two,
saves examples/demo/orders/app.py (a real pricing change, then its revert, so every
iteration restarts, replays 100 requests and diffs) and polls ``tmux capture-pane``
the same way for both until the new iteration's verdict is on screen. Prints the
save -> on-screen times and the dashboard's extra time over the headless loop
(median of the per-pair differences). Bounded: ``--saves`` per copy, 60 s each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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

APP = "examples/demo/orders/app.py"
POLL_S = 0.005
EDITS = (("TAX_RATE = 0.20", "TAX_RATE = 0.25"), ("TAX_RATE = 0.25", "TAX_RATE = 0.20"))


def tmux(*args: str) -> str:
    out = subprocess.run(["tmux", *args], capture_output=True, text=True, check=False)  # noqa: S603
    return out.stdout


def screen(session: str) -> str:
    # the same command for both sessions
    return tmux("capture-pane", "-p", "-t", session)


class Session:
    def __init__(self, kind: str, profile: Path, runtime: str) -> None:
        self.kind = kind
        self.root = profile.parent.parent
        self.name = f"devbox-bench-{kind}-{os.getpid()}"
        sub = ["up"] if kind == "dashboard" else ["watch", "--json"]
        cmd = " ".join([sys.executable, "-m", "devbox", *sub, str(profile), "--runtime", runtime])
        if kind == "headless":
            # a FAIL verdict is a line of several kB: keep its head on screen (cut writes
            # each line as it comes, to a terminal)
            cmd += " | cut -c -150"
        # PYTHONPATH=DIR runs another tree's devbox (a before/after comparison); the
        # tmux server may be older than this process, so it is handed over explicitly
        env = ["-e", f"PYTHONPATH={os.environ['PYTHONPATH']}"] if "PYTHONPATH" in os.environ else []
        tmux(
            "new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", *env,
            "-c", str(self.root), cmd,
        )  # fmt: skip

    def verdict_shown(self, iteration: int, text: str) -> bool:
        if self.kind == "dashboard":
            return re.search(rf"iteration {iteration}: (PASS|FAIL) \d+/\d+", text) is not None
        return f'{{"iteration":{iteration},' in text

    def wait_verdict(self, iteration: int, timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.verdict_shown(iteration, screen(self.name)):
                return time.monotonic()
            time.sleep(POLL_S)
        raise TimeoutError(f"{self.kind}: no iteration {iteration}:\n{screen(self.name)}")

    def save(self, i: int) -> float:
        old, new = EDITS[i % 2]
        path = self.root / APP
        text = path.read_text()
        assert old in text, (self.kind, i)
        path.write_text(text.replace(old, new))
        return time.monotonic()

    def quit(self) -> None:
        if self.kind == "dashboard":
            tmux("send-keys", "-t", self.name, "q")
        else:
            tmux("send-keys", "-t", self.name, "C-c")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.name in tmux("ls", "-F", "#S"):
            time.sleep(0.2)
        tmux("kill-session", "-t", self.name)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saves", type=int, default=8)
    ap.add_argument("--runtime", default="process", choices=("process", "docker"))
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is needed (scripts/setup installs it)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        sessions = [
            Session(kind, make_demo_project(Path(tmp) / kind), args.runtime)
            for kind in ("dashboard", "headless")
        ]
        times: dict[str, list[float]] = {s.kind: [] for s in sessions}
        try:
            for s in sessions:
                s.wait_verdict(0, timeout=120)
            time.sleep(1.0)  # let both settle (first-iteration work, timers)
            for i in range(args.saves):
                for s in sessions:
                    saved = s.save(i)
                    shown = s.wait_verdict(i + 1)
                    times[s.kind].append((shown - saved) * 1000)
                    time.sleep(0.5)  # the other's restart is not measured
        finally:
            for s in sessions:
                s.quit()
    dash, head = times["dashboard"], times["headless"]
    extra = [d - h for d, h in zip(dash, head, strict=True)]
    print(f"{args.saves} saves each, runtime {args.runtime}, tmux capture-pane every 5 ms")
    print(f"{'':28} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
    for label, vals in (
        ("dashboard save->screen ms", dash),
        ("watch --json save->screen ms", head),
        ("dashboard extra ms", extra),
    ):
        print(
            f"{label:28} {statistics.median(vals):8.0f} {pct(vals, 0.9):8.0f} "
            f"{min(vals):8.0f} {max(vals):8.0f}"
        )
    ratio = statistics.median(dash) / statistics.median(head)
    print(f"ratio dashboard/headless (medians): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

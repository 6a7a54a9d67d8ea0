"""Replays of an unchanged demo: every one must be 100/100 (no verdict by chance).

    .venv/bin/python bench/loop/replay_repeat.py [docker|process] [RUNS]

Starts the engine once on a private copy of the demo (no watching) and replays the 100
recorded requests RUNS times (default 100), printing every replay that was not all
passing with its failures, then how many were. Bounded by RUNS.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_demo_project  # noqa: E402

from devbox.core.profile import load_profile  # noqa: E402
from devbox.engine.session import Engine, EngineOptions  # noqa: E402


def main() -> int:
    runtime = sys.argv[1] if len(sys.argv) > 1 else "docker"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(
            load_profile(make_demo_project(Path(tmp) / "p")),
            EngineOptions(runtime=runtime, watch=False),
        )
        engine.start()
        bad = 0
        try:
            for i in range(runs):
                engine.replay_now()
                ev = engine.last_finished
                if ev is None or ev.failed or ev.errors:
                    bad += 1
                    print(f"replay {i}: {ev and (ev.passed, ev.failed, ev.errors)}")
                    for r in ev.report.failures() if ev and ev.report else ():
                        print("   ", r.label, [d.describe() for d in r.differences][:2], r.error)
        finally:
            engine.stop()
    print(f"{runtime}: {bad} of {runs} replays not 100% passing")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

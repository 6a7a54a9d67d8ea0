"""The edit loop's promise under fast saves: the last verdict describes the files on disk.

Bursts of saves and reverts, 0-50 ms apart, against a real service and real mocks. After
each burst the engine settles (nothing running, queued or forming in the watcher) and its
last verdict must match the content the burst left on disk: all 100 recorded requests pass
when the code is back to the original, and some fail when the change stayed.

A few bursts run in the suite; the long run is a documented command (docs/benchmarks.md):

    DEVBOX_STRESS_BURSTS=200 .venv/bin/pytest tests/test_engine_stress.py -q
    DEVBOX_STRESS_BURSTS=200 .venv/bin/pytest tests/test_engine_stress.py -q -k docker
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from devbox.core.events import Event, IterationFinished
from devbox.core.profile import load_profile
from devbox.engine.session import Engine, EngineOptions

APP = Path("examples/demo/orders/app.py")
ORIGINAL = "SHIPPING_FLAT = 4.95"
CHANGED = "SHIPPING_FLAT = 9.95"
# a settled engine whose verdict disagrees with the disk for this long is a real bug,
# not an event the kernel is still delivering
STALE_S = 10.0


def bursts(default: int) -> int:
    return int(os.environ.get("DEVBOX_STRESS_BURSTS", str(default)))


class Verdicts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finished: list[IterationFinished] = []

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, IterationFinished) and not ev.cancelled:
            with self.lock:
                self.finished.append(ev)

    def last(self) -> IterationFinished | None:
        with self.lock:
            return self.finished[-1] if self.finished else None


def matches(ev: IterationFinished | None, changed: bool) -> bool:
    if ev is None or ev.errors or ev.passed + ev.failed != 100:
        return False
    return ev.failed > 0 if changed else ev.failed == 0


def wait_settled(engine: Engine, verdicts: Verdicts, changed: bool, burst: int) -> None:
    """Until the engine is settled on a verdict of the content on disk; fail when it stays
    settled on a verdict of other content (or nothing settles within two minutes)."""
    deadline = time.monotonic() + 120
    wrong_since: float | None = None
    while True:
        now = time.monotonic()
        last = verdicts.last()
        if engine.settled:
            if matches(last, changed):
                return
            wrong_since = wrong_since or now
            seen = last and (last.iteration, last.passed, last.failed, last.errors)
            disk = "changed" if changed else "the original"
            assert now - wrong_since < STALE_S, f"burst {burst}: settled on {seen}; disk: {disk}"
        else:
            wrong_since = None
        assert now < deadline, f"burst {burst}: the engine never settled"
        time.sleep(0.05)


def run_bursts(profile_path: Path, runtime: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    app = profile_path.parent.parent / APP
    original = app.read_text()
    assert ORIGINAL in original
    changed_text = original.replace(ORIGINAL, CHANGED)
    engine = Engine(load_profile(profile_path), EngineOptions(runtime=runtime))
    verdicts = Verdicts()
    engine.subscribe(verdicts)
    try:
        engine.start()
        assert matches(engine.last_finished, changed=False)
        changed = False
        for burst in range(count):
            for _ in range(rng.randint(1, 6)):
                changed = not changed
                app.write_text(changed_text if changed else original)
                time.sleep(rng.choice((0.0, rng.uniform(0, 0.05))))
            # end on either content, about half the time each
            if rng.random() < 0.5:
                changed = not changed
                app.write_text(changed_text if changed else original)
            wait_settled(engine, verdicts, changed, burst)
    finally:
        engine.stop()


def test_bursts_of_saves_on_the_process_runtime(demo_project: Path) -> None:
    run_bursts(demo_project, "process", bursts(6), seed=21)


@pytest.mark.docker
def test_bursts_of_saves_in_docker(demo_project: Path) -> None:
    run_bursts(demo_project, "docker", bursts(3), seed=15)

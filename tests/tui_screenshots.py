"""Write the dashboard screenshots of docs/dashboard.md (SVG, from the FakeEngine).

.venv/bin/python tests/tui_screenshots.py [OUT_DIR]     # default: docs/img
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_tui_snapshots import building_script, scene
from tui_fakes import FakeEngine, make_project, second_iteration

from devbox.core.events import Problem

ROOT = Path(__file__).resolve().parent.parent


async def shoot(out: Path) -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()
    out.mkdir(parents=True, exist_ok=True)
    shots: list[tuple[str, tuple[int, int], str | None, tuple[str, ...], str]] = [
        ("dashboard-replay", (80, 24), None, (), "second"),
        ("dashboard-diff", (100, 30), None, ("down", "down", "enter"), "second"),
        ("dashboard-noise", (100, 30), None, ("down", "enter", "n"), "second"),
        ("dashboard-building", (80, 24), None, (), "building"),
        ("dashboard-mocks", (80, 24), None, ("2",), ""),
        ("dashboard-timeline", (80, 24), None, ("4",), "second"),
        ("dashboard-logs", (80, 24), None, ("5",), ""),
        ("dashboard-problem", (80, 24), None, ("1",), "problem"),
        ("dashboard-light", (120, 32), "textual-light", (), "second"),
    ]
    for name, size, theme, keys, extra_kind in shots:
        with tempfile.TemporaryDirectory() as tmp:
            profile = make_project(Path(tmp))
            if extra_kind == "building":
                fake = FakeEngine(profile, building_script(profile))
            else:
                fake = FakeEngine(profile)
            extra: tuple[object, ...] = ()
            if extra_kind == "second":
                extra = tuple(second_iteration(fake.profile))
            elif extra_kind == "problem":
                extra = (
                    Problem(
                        "orders crashed (exit status 1)",
                        "the last log lines are in the Logs tab",
                        ("Traceback (most recent call last):", "KeyError: 'sku'"),
                    ),
                )
            app, run_before = scene(fake, *keys, extra=extra, theme=theme)  # type: ignore[arg-type]
            async with app.run_test(size=size) as pilot:
                await run_before(pilot)
                await pilot.pause()
                app.save_screenshot(str(out / f"{name}.svg"))
        print(out / f"{name}.svg")


if __name__ == "__main__":
    asyncio.run(shoot(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"))

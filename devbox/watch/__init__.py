"""File watching for the edit loop: batches of changed files, filtered and self-checked.

async with Watcher.for_profile(profile, stop_event=stop) as w:
    info = w.armed_info            # what is watched, how, how fast it armed, canary
    async for batch in w:          # Batch(changes, first_event_at, delivered_at, ...)
        plan = w.plan(batch)       # devbox.core.plan.Plan: .action, .steps, .sync_paths
"""

from devbox.watch.batch import ArmedInfo, Batch, native_mode
from devbox.watch.dockerignore import dockerignore_path, read_dockerignore
from devbox.watch.watcher import Watcher

__all__ = [
    "ArmedInfo",
    "Batch",
    "Watcher",
    "dockerignore_path",
    "native_mode",
    "read_dockerignore",
]

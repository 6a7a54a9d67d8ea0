"""The event loop every socket-serving part of devbox runs on: uvloop when installed.

uvloop halves the recording proxy's CPU per request and about doubles what one core
replays or mocks (bench/record, bench/replay, bench/mock); the standard loop is the
fallback and behaves the same. ``DEVBOX_NO_UVLOOP=1`` forces the standard loop, to
compare the two or to rule uvloop out when chasing a bug. Decided here once for the
mocks, the recorders and replay.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default (``asyncio.Runner``)."""
    if os.environ.get("DEVBOX_NO_UVLOOP"):
        return None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop for a thread of its own (the mocks', a recorder's)."""
    factory = loop_factory()
    return factory() if factory is not None else asyncio.new_event_loop()

"""Running replay from synchronous code, on uvloop when it is installed.

uvloop roughly doubles the requests per second one core can replay (measured in
bench/replay); the standard loop is the fallback and behaves the same (``devbox.wire.loops``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from devbox.wire.loops import loop_factory

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)

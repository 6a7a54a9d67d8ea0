"""One asyncio loop on a thread, for the relays and mocks that blocking clients (grpcio,
redis-py, raw sockets) talk to in the tests; the ``loop`` fixture (conftest) gives each
test its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Loop:
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close_server(self, server: asyncio.Server) -> None:
        """Stop listening (on the loop's thread, where the server lives)."""
        self.run(_close_server(server))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self.thread is not None
        self.thread.join(10)
        self.loop.close()


async def _close_server(server: asyncio.Server) -> None:
    server.close()

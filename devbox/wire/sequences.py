"""nth-call counters: the nth identical request answers with the nth recorded answer,
then the last one again, whichever connection asks (a pool hands queries to any).

An index keeps them in a ``Sequences``. A key with one recorded answer needs no counter
at all, so ``take`` of a count of 1 touches nothing: the bulk of a read workload never
pays for sequences. A counter stops at its last answer, so a value in a counter is
always a position in the answer list (``devbox.mock.workers`` shares these counters
between processes as fixed-size integers).
"""

from __future__ import annotations

from collections.abc import Hashable


class Sequences:
    """The counters of one mock's index, in this process."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}

    def peek(self, key: Hashable, count: int) -> int:
        """The position ``take`` would answer with next."""
        if count <= 1:
            return 0
        return min(self._next.get(key, 0), count - 1)

    def take(self, key: Hashable, count: int) -> int:
        """The position to answer with, advancing the sequence of ``key``."""
        if count <= 1:
            return 0
        n = self._next.get(key, 0)
        if n < count - 1:
            self._next[key] = n + 1
        return min(n, count - 1)

    def take_if(self, key: Hashable, seen: int, count: int) -> bool:
        """Advance ``key`` as ``take`` does when its position is still ``seen`` (what a
        ``peek`` returned); False, and nothing taken, when another connection took it
        in between (only possible when several processes share the counters)."""
        if self.peek(key, count) != seen:
            return False
        self.take(key, count)
        return True

    def clear(self) -> None:
        """Start every sequence again (a new replay iteration)."""
        self._next.clear()

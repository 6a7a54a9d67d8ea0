"""A client that takes nothing of what a mock writes to it is let go.

A client may ask for a large answer (or pipeline many, or open HTTP/2 streams with a
window of 0) and then never read. Its answers sit in the transport's buffer (or wait
for a window that never opens) and the connection was never timed out: the idle
timeout spares a connection with answers pending, so a handful of such clients held a
mock's memory for ever. As nginx's ``send_timeout``: once answers wait on the client,
it must take some of them, or say something, within ``Limits.send_timeout_s``; if not,
the connection is aborted. Checked by the mock's once-a-second sweeper. Pure.
"""

from __future__ import annotations


class SendWatch:
    """Progress of one connection's pending answers, as the sweeper sees it."""

    __slots__ = ("heard", "since", "taken")

    def __init__(self) -> None:
        self.since: float | None = None  # when answers began to wait without progress
        self.taken = 0
        self.heard = 0.0

    def stalled(self, now: float, taken: int, waiting: bool, heard: float, limit: float) -> bool:
        """Whether, for ``limit`` seconds while answers wait (``waiting``: bytes in the
        transport's buffer, or data held for the flow-control window), the client has
        taken no byte (``taken``: bytes written minus those still buffered) and sent
        nothing (``heard``: when it last did). A slow reader that keeps taking some is
        never stalled, however far behind it is."""
        if not waiting:
            self.since = None
            return False
        # (over TLS, bytes written count as plaintext and buffered ones as ciphertext: a
        # new write lowers ``taken``, which is no progress; a drain raises it)
        since, before = self.since, self.taken
        self.taken = taken
        if since is None or taken > before or heard != self.heard:
            self.since, self.heard = now, heard
            return False
        return now - since > limit

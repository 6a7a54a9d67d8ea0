"""``CLIENT REPLY ON|OFF|SKIP``: which commands redis-server answers.

A client that only writes (a bulk loader, a fire-and-forget counter) turns replies off
and sends commands the server runs without answering, errors included; ``SKIP`` drops
the reply of the one command after it. The recorder must then wait for no reply (or
it pairs every later reply with the wrong command), and the mock must send none (or
the client reads an answer it never asked for as the answer to its next command).

The rules are redis-server's (``networking.c``, checked against redis-server 7): ``OFF``
and ``SKIP`` send nothing, ``ON`` answers ``+OK``; ``SKIP`` while replies are off does
nothing; after each command a pending skip moves on to the next one; ``RESET`` turns
replies back on, its own ``+RESET`` skipped if a skip was on; (un)subscription replies
go out as pushes whatever the mode; in RESP2's subscribed context ``CLIENT REPLY`` is
refused (an error, itself subject to the mode) and changes nothing. A ``CLIENT REPLY``
queued inside ``MULTI`` changes nothing until ``EXEC``, which this does not follow
(docs/redis.md).
"""

from __future__ import annotations

from collections.abc import Callable

# the (un)subscription replies, sent as pushes: even while replies are off
_PUSHED = frozenset(
    {b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE", b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE"}
)
# what a RESP2 connection with subscriptions may send; the server refuses anything else
SUBSCRIBED_RESP2 = _PUSHED | {b"PING", b"QUIT", b"RESET"}


class ReplyMode:
    __slots__ = ("_off", "_skip", "quiet")

    def __init__(self) -> None:
        self._off = False
        self._skip = False  # the next command's reply is dropped
        self.quiet = False  # off or skipping: some command will go unanswered

    def silent(self, args: list[bytes], queued: bool, refused: Callable[[bytes], bool]) -> bool:
        """Take the next command (``args[0]`` upper-cased): whether the server sends it
        no reply. While replies are on, only ``CLIENT`` and ``RESET`` can change that, so
        the others cost one check; ``refused(name)``: the server refuses it unrun
        (RESP2's subscribed context), asked only then."""
        if not self.quiet and args[0] not in (b"CLIENT", b"RESET"):
            return False
        return not self.answers(args, queued, refused(args[0]))

    def answers(self, args: list[bytes], queued: bool = False, refused: bool = False) -> bool:
        """Take the next command (``args[0]`` upper-cased); whether the server sends its
        reply. ``queued``: a command inside ``MULTI``, answered ``QUEUED`` (or not), not
        run; ``refused``: one the server refuses without running it (RESP2's subscribed
        context)."""
        name = args[0]
        skip_next = False
        if refused or queued:
            sent = not (self._off or self._skip)
        elif name in _PUSHED:
            sent = True
        elif name == b"CLIENT" and len(args) == 3 and args[1].upper() == b"REPLY":
            mode = args[2].upper()
            if mode == b"ON":
                self._off = self._skip = False
            elif mode == b"OFF":
                self._off = True
            elif mode == b"SKIP":
                skip_next = not self._off
            sent = mode not in (b"OFF", b"SKIP") and not (self._off or self._skip)
        elif name == b"RESET":
            sent = not self._skip
            self._off = False
        else:
            sent = not (self._off or self._skip)
        self._skip = skip_next
        self.quiet = self._off or skip_next
        return sent

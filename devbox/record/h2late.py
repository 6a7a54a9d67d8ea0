"""The upstream's "stop sending" resets, held back on a verbatim HTTP/2 relay.

An HTTP/2 server that answers a request before its body came (a 413 on the head, a
``return 201``) ends its response and then resets the stream with NO_ERROR: "stop
sending" (RFC 9113 8.1). curl 7.88 fails such a stream ("partial file", or exit 92)
when the reset reaches it in the same read as the response's end while it is still
uploading, though it had the whole response. From the server directly the reset rarely
comes so close behind; through a relay, which passes on what it read in one write, it
always does. So the relay follows the upstream's frame boundaries (9-byte headers, no
payload parsed) and takes each NO_ERROR ``RST_STREAM`` out of what it passes on, to
send it ``STOP_GRACE_S`` later: a client whose body was on its way ends its stream
cleanly meanwhile, one that sends nothing more hears the reset then. Frames of
different streams may be reordered (RFC 9113 5.1); a reset carries no header block,
so no HPACK state moves with it. Sans-IO.
"""

from __future__ import annotations

STOP_GRACE_S = 1.0
_RST_STREAM = 0x3
_FRAME_HEAD = 9


class LateResets:
    """One direction's frame boundaries (from the connection's start: a server sends no
    preface string, its first bytes are a SETTINGS frame)."""

    __slots__ = ("_head", "_skip")

    def __init__(self) -> None:
        self._skip = 0  # bytes of the current frame's payload still to come
        self._head = b""  # a frame header cut between two reads

    def split(self, data: bytes) -> tuple[bytes, bytes]:
        """(what to pass on now, the NO_ERROR resets to pass on later)."""
        n = len(data)
        if self._skip >= n:  # inside a large payload: the common case of a download
            self._skip -= n
            return data, b""
        pos = self._skip
        self._skip = 0
        late: list[tuple[int, int]] = []
        if self._head:
            # the rest of a cut header: a reset cut so is passed on as it is
            need = _FRAME_HEAD - len(self._head)
            head = self._head + data[:need]
            if len(head) < _FRAME_HEAD:
                self._head = head
                return data, b""
            self._head = b""
            pos = need + int.from_bytes(head[:3], "big")
        while pos < n:
            if n - pos < _FRAME_HEAD:
                self._head = data[pos:]
                break
            length = int.from_bytes(data[pos : pos + 3], "big")
            end = pos + _FRAME_HEAD + length
            if (
                data[pos + 3] == _RST_STREAM
                and length == 4
                and end <= n
                and data[end - 4 : end] == b"\x00\x00\x00\x00"
            ):
                late.append((pos, end))
            pos = end
        if pos > n:
            self._skip = pos - n
        if not late:
            return data, b""
        now, kept, start = [], [], 0
        for a, b in late:
            now.append(data[start:a])
            kept.append(data[a:b])
            start = b
        now.append(data[start:])
        return b"".join(now), b"".join(kept)

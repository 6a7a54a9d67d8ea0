"""What the proxy's loop follows of a verbatim HTTP/2 relay: frame heads, nothing more.

The loop relays an intercepted HTTP/2 connection's bytes untouched (``devbox.record.tee``)
and leaves reading them to the recording worker. Two things it must know itself, from
the 9-byte frame heads alone (no payload parsed, no HPACK):

**Which streams still owe an answer** (``OpenStreams``): a stream opens with the
client's HEADERS and ends with the upstream's END_STREAM or a reset from either side.
Stopping a recording waits for those, as it waits for the HTTP/1.1 exchanges in flight.

**The upstream's "stop sending" resets** (``LateResets``). An HTTP/2 server that answers
a request before its body came (a 413 on the head, a ``return 201``) ends its response
and then resets the stream with NO_ERROR (RFC 9113 8.1). curl 7.88 fails such a stream
("partial file", or exit 92) when the reset reaches it in the same read as the
response's end while it is still uploading, though it had the whole response. From the
server directly the reset rarely comes so close behind; through a relay, which passes
on what it read in one write, it always does. So each NO_ERROR ``RST_STREAM`` is taken
out of what is passed on and sent ``STOP_GRACE_S`` later: a client whose body was on its
way ends its stream cleanly meanwhile, one that sends nothing more hears the reset then.
Frames of different streams may be reordered (RFC 9113 5.1); a reset carries no header
block, so no HPACK state moves with it. A frame head cut between two reads is held back
until it is whole (at most 8 bytes, whose frame is still arriving), so no reset slips by.
Sans-IO.
"""

from __future__ import annotations

from devbox.wire.grpc.http2 import DATA, END_STREAM, FRAME_HEAD, HEADERS, PREFACE, RST_STREAM

STOP_GRACE_S = 1.0
_HEAD = FRAME_HEAD.size
_NO_ERROR = b"\x00\x00\x00\x00"

# a frame whose head this read holds whole: (start, type, flags, stream, end); ``end``
# may lie beyond the read (the payload still coming)
Frame = tuple[int, int, int, int, int]


class FrameHeads:
    """One direction's frame boundaries across reads."""

    __slots__ = ("_skip", "_tail")

    def __init__(self, *, from_client: bool) -> None:
        self._skip = len(PREFACE) if from_client else 0  # bytes before the next frame head
        self._tail = b""  # a frame head cut at the end of the last read

    def walk(self, data: bytes) -> tuple[bytes, list[Frame]]:
        """(the bytes to pass on now, the frames whose heads they hold). A head cut at
        the end is kept for the next read and not passed on yet."""
        if self._tail:
            data, self._tail = self._tail + data, b""
        n = len(data)
        if self._skip >= n:  # inside a large payload: the common case of a download
            self._skip -= n
            return data, []
        pos, self._skip = self._skip, 0
        frames: list[Frame] = []
        head = FRAME_HEAD.unpack_from
        while pos < n:
            if n - pos < _HEAD:
                self._tail = data[pos:]
                return data[:pos], frames
            high, low, ftype, flags, sid = head(data, pos)
            end = pos + _HEAD + (high << 16 | low)
            frames.append((pos, ftype, flags, sid & 0x7FFFFFFF, end))
            pos = end
        self._skip = pos - n
        return data, frames


class OpenStreams:
    """Streams the client opened whose answer has not ended."""

    __slots__ = ("highest", "ids")

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.highest = 0  # a client's new streams come in increasing order (RFC 9113 5.1.1)

    def client(self, frames: list[Frame]) -> None:
        for _, ftype, _, sid, _ in frames:
            if ftype == HEADERS and sid > self.highest:  # (else trailers)
                self.highest = sid
                self.ids.add(sid)
            elif ftype == RST_STREAM:
                self.ids.discard(sid)

    def upstream(self, frames: list[Frame]) -> None:
        for _, ftype, flags, sid, _ in frames:
            if ftype == RST_STREAM or (ftype in (DATA, HEADERS) and flags & END_STREAM):
                self.ids.discard(sid)


def late_resets(data: bytes, frames: list[Frame]) -> tuple[bytes, bytes]:
    """(what to pass on now, the whole NO_ERROR resets among ``frames`` to pass on
    later)."""
    late = [
        (a, b)
        for a, ftype, _, _, b in frames
        if ftype == RST_STREAM and b - a == _HEAD + 4 and data[b - 4 : b] == _NO_ERROR
    ]
    if not late:
        return data, b""
    now, kept, start = [], [], 0
    for a, b in late:
        now.append(data[start:a])
        kept.append(data[a:b])
        start = b
    now.append(data[start:])
    return b"".join(now), b"".join(kept)

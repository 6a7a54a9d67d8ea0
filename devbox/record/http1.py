"""HTTP/1.1 framing for the recording proxy: the wire layer's reader (``devbox.wire.http1``).

Kept as a module so the recorder's imports stay stable; the framing is written once.
"""

from __future__ import annotations

from devbox.wire.http1 import (
    CHUNKED,
    CLOSE,
    LENGTH,
    MAX_CHUNK_LINE,
    MAX_HEAD,
    NONE,
    TUNNEL,
    Data,
    End,
    Event,
    Head,
    MessageReader,
    ProtocolError,
    iter_events,
    parse_head,
)

__all__ = [
    "CHUNKED",
    "CLOSE",
    "LENGTH",
    "MAX_CHUNK_LINE",
    "MAX_HEAD",
    "NONE",
    "TUNNEL",
    "Data",
    "End",
    "Event",
    "Head",
    "MessageReader",
    "ProtocolError",
    "iter_events",
    "parse_head",
]

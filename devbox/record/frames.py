"""The proxy-to-worker pipe's framing: a little-endian u32 length, then ``marshal`` data.

Kept apart from ``worker`` so importing the package never imports the worker's module
(``python -m devbox.record.worker`` runs it as ``__main__``)."""

from __future__ import annotations

import marshal
import struct
from typing import Any

FRAME = struct.Struct("<I")


def encode_frame(msg: tuple[Any, ...]) -> bytes:
    payload = marshal.dumps(msg)
    return FRAME.pack(len(payload)) + payload

"""The parts of a multipart/form-data body, each text part passed through a function and
the body put back together byte for byte around what changed. Split out of
``devbox.core.redact``, which decides what each part gets.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# (field name, is a file, the part's content type lower-cased, text) -> new text
PartFn = Callable[[str, bool, str, str], str]

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')
_NAME = re.compile(rb'name="([^"]*)"')
_PART_TYPE = re.compile(rb"(?i)content-type:\s*([^\r\n;]+)")


def map_multipart(body: bytes, content_type: str, fn: PartFn) -> bytes | None:
    """``body`` with each UTF-8 part replaced by ``fn``'s text (None: no boundary)."""
    m = _BOUNDARY.search(content_type)
    if not m:
        return None
    delim = b"--" + m.group(1).encode("latin-1")
    parts = body.split(delim)
    changed = False
    for i in range(1, len(parts)):
        head, sep, content = parts[i].partition(b"\r\n\r\n")
        if not sep:
            continue
        tail = b"\r\n" if content.endswith(b"\r\n") else b""
        value = content[: len(content) - len(tail)]
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            continue  # binary: nothing for the text rules
        nm = _NAME.search(head)
        name = nm.group(1).decode("utf-8", "replace") if nm else ""
        ptype = _PART_TYPE.search(head)
        ctype = ptype.group(1).decode("latin-1").lower() if ptype else ""
        new = fn(name, b"filename=" in head, ctype, text)
        if new != text:
            parts[i] = head + sep + new.encode("utf-8") + tail
            changed = True
    return delim.join(parts) if changed else body

"""Recording files of the wire kinds (redis, postgres, ...): the same JSON-stream layout as
HTTP recordings (a header object, then one pretty-printed object per stored exchange,
``}`` at column 0), with ``kind`` in the header. Pure: bytes in, objects out."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import orjson

from devbox.core.recording import FORMAT_VERSION, HEADER_KEY, decode_objects
from devbox.errors import RecordingError


@dataclass(frozen=True, slots=True)
class ObjectsFile:
    kind: str
    source: str
    header: dict[str, Any]
    objects: tuple[tuple[int, dict[str, Any]], ...]  # (line, object)
    torn_tail: bool = False


def header_text(kind: str, source: str, created_at: str, **extra: Any) -> bytes:
    head = {HEADER_KEY: True, "format": FORMAT_VERSION, "kind": kind, "source": source}
    head["created_at"] = created_at
    head.update(extra)
    return orjson.dumps(head, option=orjson.OPT_INDENT_2) + b"\n"


def object_text(obj: dict[str, Any]) -> bytes:
    """One appendable chunk: a single ``write()`` keeps a killed writer's file readable."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"


def kind_of(data: bytes) -> str:
    """The kind a recording file holds, read from its header (``http`` when absent)."""
    head_end = data.find(b"\n}")
    try:
        head = orjson.loads(data[: head_end + 2] if head_end != -1 else data)
    except orjson.JSONDecodeError:
        return "http"
    kind = head.get("kind", "http") if isinstance(head, dict) else "http"
    return kind if isinstance(kind, str) else "http"


def _fast_objects(data: bytes) -> list[tuple[int, Any]] | None:
    """devbox's own layout (every object ends with ``}`` alone at column 0): one
    ``orjson.loads`` per object, linear in the file's size. None: anything else (a torn
    tail, hand-edited JSON), for the general decoder to judge."""
    out: list[tuple[int, Any]] = []
    line, start, n = 1, 0, len(data)
    gc_was = gc.isenabled()
    gc.disable()  # the parsed objects all survive: collecting them young is wasted work
    try:
        while start < n:
            while start < n and data[start] in b" \t\r\n":
                line += data[start] == 0x0A
                start += 1
            if start >= n:
                break
            end = data.find(b"\n}", start)
            if end == -1:
                return None
            end += 2
            try:
                out.append((line, orjson.loads(data[start:end])))
            except orjson.JSONDecodeError:
                return None
            line += data.count(b"\n", start, end)
            start = end
    finally:
        if gc_was:
            gc.enable()
    return out


def decode(data: bytes, filename: str) -> ObjectsFile:
    fast = _fast_objects(data)
    objects, torn = (fast, False) if fast is not None else decode_objects(data, filename)
    if not objects:
        raise RecordingError("empty recording: no header object", file=filename, line=1)
    line, head = objects[0]
    if not isinstance(head, dict) or not head.get(HEADER_KEY):
        raise RecordingError(
            f"first object must be the header with {HEADER_KEY!r}",
            file=filename,
            line=line,
            field=HEADER_KEY,
        )
    kind, source = head.get("kind"), head.get("source", "")
    if not isinstance(kind, str) or not isinstance(source, str):
        raise RecordingError("header needs a string 'kind'", file=filename, line=line, field="kind")
    body: list[tuple[int, dict[str, Any]]] = []
    for ln, obj in objects[1:]:
        if not isinstance(obj, dict):
            raise RecordingError("expected an object", file=filename, line=ln)
        body.append((ln, obj))
    return ObjectsFile(kind, source, head, tuple(body), torn)

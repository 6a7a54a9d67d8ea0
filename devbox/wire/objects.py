"""Recording files of the wire kinds (redis, postgres, ...): the same JSON-stream layout as
HTTP recordings (a header object, then one pretty-printed object per stored exchange,
``}`` at column 0), with ``kind`` in the header. Pure: bytes in, objects out."""

from __future__ import annotations

import gc
import re
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
    try:
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"
    except TypeError:
        # a string holding bytes that are not UTF-8 (a LATIN1 client's SQL, decoded with
        # ``surrogateescape``): JSON has no room for them, so they are written escaped
        # (``decode`` restores them); only then, as the walk costs more than the dump
        return orjson.dumps(_escaped(obj), option=orjson.OPT_INDENT_2) + b"\n"


# A string that is not valid UTF-8 is stored as {BYTES: text}: its UTF-8 parts as they
# are, every other byte as ``\xNN`` and a backslash as ``\\``, so it reads like the SQL
# it was and loads back to the very same bytes. A dict with such a key is stored as
# {ITEMS: [[key, value], ...]}, as a JSON key cannot be an object.
BYTES = "$bytes"
ITEMS = "$items"
_UNESCAPE = re.compile(r"\\(\\|x([0-9a-fA-F]{2}))")


def _escape(s: str) -> Any:
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        raw = s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no decoder of devbox makes: kept as such
        raw = s.encode("utf-8", "surrogatepass")
    return {BYTES: raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")}


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        items = [(_escape(k) if isinstance(k, str) else k, _escaped(v)) for k, v in value.items()]
        if not any(isinstance(k, dict) for k, _ in items):
            return dict(items)
        return {ITEMS: [[k, v] for k, v in items]}
    return value


def _byte(match: re.Match[str]) -> str:
    if match[1] == "\\":
        return "\\"
    n = int(match[2], 16)
    return chr(0xDC00 + n) if n >= 0x80 else chr(n)  # surrogateescape's spelling of a byte


def _unescaped(value: Any) -> Any:
    if isinstance(value, list):
        return [_unescaped(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            if isinstance(value.get(BYTES), str):
                return _UNESCAPE.sub(_byte, value[BYTES])
            pairs = value.get(ITEMS)
            if isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 for p in pairs):
                items = [(_unescaped(k), _unescaped(v)) for k, v in pairs]
                if all(isinstance(k, str) for k, _ in items):
                    return dict(items)
        return {k: _unescaped(v) for k, v in value.items()}
    return value


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
    if b'"' + BYTES.encode() + b'"' in data or b'"' + ITEMS.encode() + b'"' in data:
        objects = [(ln, _unescaped(obj)) for ln, obj in objects]  # see ``object_text``
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

"""The on-disk recording format, as pure text <-> value conversion.

Theory of operation
-------------------
A recording file is a *JSON stream*: a header object followed by one
pretty-printed object per exchange, each closed by a ``}`` alone at column 0.
``jq . FILE`` reads it, a reviewer reads it in a pull request, and a writer can
append an exchange with a single ``write()``: a process killed mid-append leaves
at most one torn object at the end, which the reader drops and reports.

Bodies are stored as ``{"json": ...}`` when they are JSON that re-encodes to
the same bytes, ``{"text": ...}`` when UTF-8, else ``{"base64": ...}``
(``devbox.core.recorded_body``). The header's ``format`` field versions the
layout; ``MIGRATIONS`` upgrades older versions on read.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import orjson

from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.core.nesting import closes_object, too_deep_json
from devbox.core.recorded_body import decode_body, encode_body
from devbox.errors import RecordingError

FORMAT_VERSION = 1
HEADER_KEY = "devbox_recording"
# the general reader (Python's json) recurses per level; orjson's fast path reads 1,024
_JSON_DEPTH = 400

# version N -> function that upgrades one exchange dict from N to N+1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    source: str
    direction: Direction
    format: int = FORMAT_VERSION
    created_at: str = ""
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Decoded:
    header: RecordingHeader
    exchanges: tuple[Exchange, ...]
    # a torn final object (the writer was killed mid-append): dropped, reported
    torn_tail: bool = False


# ---------------------------------------------------------------- exchanges


def _iso(ts: float) -> str:
    # the date and time up to the second are formatted once per second of traffic, the
    # microseconds rounded as datetime.fromtimestamp rounds them (half to even, from the
    # same product); a fraction that rounds up to the next second takes the long way
    sec = math.floor(ts)
    cached, prefix = _ISO_SECOND  # one read: another thread may replace both meanwhile
    if sec == cached:
        us = round((ts - sec) * 1e6)
        if us < 1_000_000:
            return f"{prefix}.{us:06d}+00:00"
    dt = datetime.fromtimestamp(ts, UTC)
    text = dt.isoformat(timespec="microseconds")
    if dt.second == sec % 60:
        _ISO_SECOND[:] = [sec, text[:-13]]
    return text


# (whole second, "YYYY-MM-DDTHH:MM:SS") of the last timestamp formatted
_ISO_SECOND: list[Any] = [None, ""]


def _from_iso(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def exchange_to_dict(ex: Exchange) -> dict[str, Any]:
    return _exchange_dict(ex, _header_lists)


def _header_lists(headers: tuple[tuple[str, str], ...]) -> list[Any]:
    return [list(h) for h in headers]


def _exchange_dict(
    ex: Exchange, headers_of: Callable[[tuple[tuple[str, str], ...]], list[Any]]
) -> dict[str, Any]:
    req = ex.request
    d: dict[str, Any] = {
        "id": ex.id,
        "direction": ex.direction.value,
        "source": ex.source,
    }
    if ex.parent:
        d["parent"] = ex.parent
    d["started_at"] = _iso(ex.timing.started_at)
    d["duration_ms"] = round(ex.timing.duration_ms, 3)
    if ex.timing.wait_ms is not None:
        d["wait_ms"] = round(ex.timing.wait_ms, 3)
    r: dict[str, Any] = {
        "method": req.method,
        "url": req.url,
        "headers": headers_of(req.headers),
    }
    if req.http_version != "HTTP/1.1":
        r["http_version"] = req.http_version
    body = encode_body(req.body)
    if body is not None:
        r["body"] = body
    if ex.request_truncated:
        r["truncated"] = True
    d["request"] = r
    if ex.response is not None:
        resp = ex.response
        rd: dict[str, Any] = {"status": resp.status}
        if resp.reason:
            rd["reason"] = resp.reason
        rd["headers"] = headers_of(resp.headers)
        if resp.http_version != "HTTP/1.1":
            rd["http_version"] = resp.http_version
        rbody = encode_body(resp.body)
        if rbody is not None:
            rd["body"] = rbody
        if resp.trailers:
            rd["trailers"] = headers_of(resp.trailers)
        if ex.response_truncated:
            rd["truncated"] = True
        d["response"] = rd
    if ex.error:
        d["error"] = ex.error
    if ex.origin:
        d["origin"] = ex.origin
    return d


def _headers(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if type(raw) is list:
        try:
            out = tuple([(n, v) for n, v in raw])
        except (TypeError, ValueError):
            pass
        else:
            # the common case, checked in one pass: every pair is two strings
            if all(type(n) is str and type(v) is str for n, v in out):
                return out
    if not isinstance(raw, list):
        raise RecordingError("headers must be a list of [name, value] pairs", field=where)
    fixed = []
    for i, pair in enumerate(raw):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise RecordingError("expected a [name, value] pair", field=f"{where}[{i}]")
        fixed.append((str(pair[0]), str(pair[1])))
    return tuple(fixed)


_DIRECTIONS = {d.value: d for d in Direction}
_SplitUrl = tuple[str, tuple[tuple[str, str], ...], str, str, str | None]
_URL_MEMO: dict[str, _SplitUrl] = {}


def _split_url(url: str) -> _SplitUrl:
    """(path, query pairs, scheme, host, raw query); memoised, since recordings repeat URLs
    a lot. The raw query is kept so the target is written back exactly as recorded."""
    hit = _URL_MEMO.get(url)
    if hit is not None:
        return hit
    parts = urlsplit(url)
    q = parts.query
    if not q:
        query: tuple[tuple[str, str], ...] = ()
    elif "%" in q or "+" in q:
        query = tuple(parse_qsl(q, keep_blank_values=True))
    else:
        # nothing to unquote: a plain split gives what parse_qsl would, much faster
        query = tuple((n, v) for n, _, v in (p.partition("=") for p in q.split("&") if p))
    value = (parts.path or "/", query, parts.scheme or "http", parts.netloc, q or None)
    if len(_URL_MEMO) >= 100_000:
        _URL_MEMO.clear()
    _URL_MEMO[url] = value
    return value


def exchange_from_dict(d: dict[str, Any], where: str = "exchange") -> Exchange:
    try:
        r = d["request"]
        url = r["url"]
        if not isinstance(url, str):
            raise RecordingError("url must be a string", field=f"{where}.request.url")
        path, query, scheme, host, raw_query = _split_url(url)
        request = Request(
            method=str(r["method"]).upper(),
            path=path,
            query=query,
            headers=_headers(r.get("headers", []), f"{where}.request.headers"),
            body=decode_body(r.get("body"), f"{where}.request.body"),
            scheme=scheme,
            host=host,
            http_version=str(r.get("http_version", "HTTP/1.1")),
            raw_query=raw_query,
        )
        response = None
        rd = d.get("response")
        if rd is not None:
            response = Response(
                status=int(rd["status"]),
                headers=_headers(rd.get("headers", []), f"{where}.response.headers"),
                body=decode_body(rd.get("body"), f"{where}.response.body"),
                reason=str(rd.get("reason", "")),
                http_version=str(rd.get("http_version", "HTTP/1.1")),
                trailers=_headers(rd.get("trailers", []), f"{where}.response.trailers"),
            )
        started = d.get("started_at")
        wait = d.get("wait_ms")
        parent = d.get("parent")
        error = d.get("error")
        return Exchange(
            id=str(d["id"]),
            direction=_DIRECTIONS.get(d.get("direction", "outbound")) or Direction(d["direction"]),
            source=str(d.get("source", "")),
            request=request,
            response=response,
            timing=Timing(
                started_at=_from_iso(started) if isinstance(started, str) else float(started or 0),
                duration_ms=float(d.get("duration_ms", 0.0)),
                wait_ms=None if wait is None else float(wait),
            ),
            parent=None if parent is None else str(parent),
            error=None if error is None else str(error),
            request_truncated=bool(r.get("truncated", False)),
            response_truncated=bool(rd.get("truncated", False)) if rd else False,
            origin=str(d.get("origin", "")),
        )
    except RecordingError:
        raise
    except KeyError as exc:
        raise RecordingError(f"missing required key {exc}", field=where) from None
    except (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError) as exc:
        raise RecordingError(f"malformed exchange: {exc}", field=where) from None


def header_to_text(h: RecordingHeader) -> bytes:
    d = {
        HEADER_KEY: True,
        "format": h.format,
        "source": h.source,
        "direction": h.direction.value,
        "created_at": h.created_at,
    }
    if h.origin:
        d["origin"] = h.origin
    return orjson.dumps(d, option=orjson.OPT_INDENT_2) + b"\n"


def _pair_lines(headers: tuple[tuple[str, str], ...]) -> list[Any]:
    """Header pairs pre-serialized, so the indented output keeps each ``[name, value]`` on
    one line instead of four: a reviewer reads a header per line."""
    memo = _PAIR_MEMO
    out = []
    for pair in headers:
        frag = memo.get(pair)
        if frag is None:
            k, v = pair
            frag = orjson.Fragment(b"[" + orjson.dumps(k) + b", " + orjson.dumps(v) + b"]")
            if len(memo) >= 4096:
                memo.clear()
            memo[pair] = frag
        out.append(frag)
    return out


# traffic repeats the same header lines (Content-Type, Host, Server...): each is encoded once
_PAIR_MEMO: dict[tuple[str, str], Any] = {}


def exchange_to_text(ex: Exchange) -> bytes:
    """One exchange as an appendable chunk: pretty JSON with one header per line, ``}`` at
    column 0, newline."""
    return orjson.dumps(_exchange_dict(ex, _pair_lines), option=orjson.OPT_INDENT_2) + b"\n"


def encode(header: RecordingHeader, exchanges: Iterable[Exchange]) -> bytes:
    return header_to_text(header) + b"".join(exchange_to_text(e) for e in exchanges)


# ---------------------------------------------------------------- reading


def _chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, object text) for each top-level object.

    Fast path: objects written by devbox end with ``}`` alone on a line. Anything
    else (hand-written compact JSON, other indentation) goes through the slow,
    general decoder.
    """
    line = 1
    start = 0
    n = len(data)
    while start < n:
        # skip whitespace between objects
        while start < n and data[start] in b" \t\r\n":
            if data[start] == 0x0A:
                line += 1
            start += 1
        if start >= n:
            return
        end = data.find(b"\n}", start)
        if end == -1:
            yield line, data[start:]
            return
        end += 2
        chunk = data[start:end]
        yield line, chunk
        line += chunk.count(b"\n")
        start = end


def _general_objects(text: str) -> Iterator[tuple[int, Any]]:
    dec = json.JSONDecoder()
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return
        line = text.count("\n", 0, i) + 1
        try:
            value, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise _Torn(line, f"{exc.msg} (column {exc.colno})", exc.lineno) from None
        except (ValueError, RecursionError) as exc:  # e.g. an integer of over 4,300 digits
            raise RecordingError(f"unreadable value: {exc}", line=line) from None
        yield line, value


class _Torn(Exception):
    def __init__(self, line: int, msg: str, error_line: int) -> None:
        self.line = line  # where the bad object starts
        self.msg = msg
        self.error_line = error_line  # where the JSON goes wrong


def decode(data: bytes, filename: str = "<recording>") -> Decoded:
    """Parse a recording; raise RecordingError (with file and line) on corruption.

    Only the *last* object may be torn (a killed writer); a bad object earlier in
    the file is corruption and is reported, never silently skipped.
    """
    with _gc_paused():
        try:
            return _decode_fast(data, filename)
        except _NotOurLayout:
            objects, torn = _decode_general(data, filename)
            return _build(objects, torn, filename)


class _NotOurLayout(Exception):
    """The file is valid JSON laid out differently (or broken): the general decoder decides."""


def _decode_fast(data: bytes, filename: str) -> Decoded:
    """devbox's own layout, one object per chunk, each turned into an Exchange at once so
    the parsed dicts die young instead of piling up."""
    loads = orjson.loads
    chunks = _chunks(data)
    first = next(chunks, None)
    if first is None:
        raise RecordingError("empty recording: no header object", file=filename, line=1)
    try:
        head = loads(first[1])
    except orjson.JSONDecodeError:
        raise _NotOurLayout from None
    header, version = _header_from(head, first[0], filename)
    exchanges: list[Exchange] = []
    pending: tuple[int, bytes] | None = None
    torn = False
    for item in chunks:
        if pending is not None:
            exchanges.append(_exchange_at(pending, len(exchanges), header, version, filename))
        pending = item
    if pending is not None:
        try:
            exchanges.append(_exchange_at(pending, len(exchanges), header, version, filename))
        except _NotOurLayout:
            if not is_torn_object(pending[1]):
                raise
            # a writer killed mid-append: drop the partial object, report it
            torn = True
    return Decoded(header=header, exchanges=tuple(exchanges), torn_tail=torn)


def _exchange_at(
    item: tuple[int, bytes], idx: int, header: RecordingHeader, version: int, filename: str
) -> Exchange:
    line, chunk = item
    try:
        obj = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        raise _NotOurLayout from None
    return _exchange_from(obj, idx, line, header, version, filename)


def is_torn_object(chunk: bytes) -> bool:
    """An unterminated object as RecordingWriter writes them: opens with ``{`` on its own
    line, has no closing ``}`` at column 0, and no second object starts inside it."""
    return (
        chunk.startswith(b"{\n")
        and b"\n{" not in chunk
        and not chunk.rstrip().endswith(b"\n}")  # complete but invalid: corruption
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Decoding allocates millions of small containers that all stay alive; the cyclic
    collector would rescan them again and again (measured: 2-4x the decode time at 100k
    exchanges, docs/benchmarks.md). Nothing here creates reference cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _decode_general(data: bytes, filename: str) -> tuple[list[tuple[int, Any]], bool]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RecordingError(f"not UTF-8 text: {exc}", file=filename, line=line) from None
    deep = too_deep_json(text, _JSON_DEPTH)
    if deep is not None:  # Python's json recurses per level: refuse before it overflows
        msg = f"a value nested more than {_JSON_DEPTH} deep"
        raise RecordingError(msg, file=filename, line=deep)
    objects: list[tuple[int, Any]] = []
    try:
        for line, value in _general_objects(text):
            objects.append((line, value))
    except RecordingError as exc:
        raise RecordingError(exc.message, file=filename, line=exc.line) from None
    except _Torn as torn:
        rest = text[_offset_of_line(text, torn.line) :]
        if "\n{" in rest or not objects or closes_object(rest):
            # there is more after the bad object, or the bad object is whole: that is
            # corruption, not a torn write
            raise RecordingError(
                f"invalid JSON: {torn.msg}", file=filename, line=torn.error_line
            ) from None
        return objects, True
    return objects, False


def decode_objects(data: bytes, filename: str) -> tuple[list[tuple[int, Any]], bool]:
    """Every top-level JSON object of a recording file of any kind, with the line it starts
    on, and whether a torn final object (a killed writer) was dropped."""
    return _decode_general(data, filename)


def _offset_of_line(text: str, line: int) -> int:
    off = 0
    for _ in range(line - 1):
        off = text.index("\n", off) + 1
    return off


def _header_from(head: Any, line: int, filename: str) -> tuple[RecordingHeader, int]:
    if not isinstance(head, dict) or not head.get(HEADER_KEY):
        raise RecordingError(
            f"first object must be the header with {HEADER_KEY!r}",
            file=filename,
            line=line,
            field=HEADER_KEY,
        )
    version = head.get("format")
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise RecordingError(
            f"unsupported format version {version!r} (this devbox reads 1..{FORMAT_VERSION})",
            file=filename,
            line=line,
            field="format",
            hint="upgrade devbox to read recordings written by a newer version",
        )
    try:
        header = RecordingHeader(
            source=str(head.get("source", "")),
            direction=Direction(head.get("direction", "outbound")),
            format=FORMAT_VERSION,
            created_at=str(head.get("created_at", "")),
            origin=str(head.get("origin", "")),
        )
    except ValueError as exc:
        raise RecordingError(str(exc), file=filename, line=line, field="direction") from None
    return header, version


def stored_objects(data: bytes, filename: str) -> list[tuple[int, dict[str, Any]]]:
    """(line, exchange object) of a recording, in this format version with the header's
    source and direction filled in: the ``http`` kind's stored objects."""
    objects, _torn = _decode_general(data, filename)
    if not objects:
        raise RecordingError("empty recording: no header object", file=filename, line=1)
    header, version = _header_from(objects[0][1], objects[0][0], filename)
    return [(ln, _current(obj, ln, header, version, filename)) for ln, obj in objects[1:]]


def _current(obj: Any, ln: int, h: RecordingHeader, version: int, file: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RecordingError("expected an exchange object", file=file, line=ln)
    for v in range(version, FORMAT_VERSION):
        obj = MIGRATIONS[v](obj)
    obj.setdefault("source", h.source)
    obj.setdefault("direction", h.direction.value)
    return cast("dict[str, Any]", obj)


def _exchange_from(
    obj: Any, idx: int, line: int, header: RecordingHeader, version: int, filename: str
) -> Exchange:
    obj = _current(obj, line, header, version, filename)
    try:
        return exchange_from_dict(obj, where=f"exchange[{idx}]")
    except RecordingError as exc:
        raise RecordingError(exc.message, file=filename, line=line, field=exc.field) from None


def _build(objects: list[tuple[int, Any]], torn: bool, filename: str) -> Decoded:
    if not objects:
        raise RecordingError("empty recording: no header object", file=filename, line=1)
    line, head = objects[0]
    header, version = _header_from(head, line, filename)
    exchanges = [
        _exchange_from(obj, idx, ln, header, version, filename)
        for idx, (ln, obj) in enumerate(objects[1:])
    ]
    return Decoded(header=header, exchanges=tuple(exchanges), torn_tail=torn)

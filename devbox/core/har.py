"""HAR 1.2 -> exchanges, as pure value conversion (export: ``har_export``).

Import never refuses a whole file for one odd entry, because real files come from
browsers and proxies that each bend the spec: optional fields missing, ``-1`` sizes,
HTTP/2 pseudo-headers, base64 bodies, bodies stored still compressed, ``content.size``
of the compressed body, bodies in a non-UTF-8 charset, ``postData`` with only ``params``
or none at all for a binary upload, failed requests with ``status: 0``/``-1`` and
``_error``/``_failureText``. Each entry imports (possibly with a warning saying what was
guessed) or is skipped with a warning naming the entry and the reason; ``strict`` turns
every warning into an error. Only a file that is not a HAR log at all is one error.

Bodies end up as the bytes the peer sent, decoded of any Content-Encoding (the model's
rule): ``content.text`` is re-encoded in the charset the response declares
(:mod:`devbox.core.charset`), so a latin-1 page round-trips byte for byte. The request
target is kept exactly as the URL spelt it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from devbox.core.charset import encode_text, mime_charset, text_charset
from devbox.core.codings import decodable, decode_lenient
from devbox.core.har_export import HAR_VERSION, exchange_to_entry, exchanges_to_har
from devbox.core.model import (
    Direction,
    Exchange,
    Headers,
    Request,
    Response,
    Timing,
    header_get,
    parse_query,
)
from devbox.errors import RecordingError

_HTTP_VERSIONS = {
    "": "HTTP/1.1",
    "http/1.0": "HTTP/1.0",
    "http/1.1": "HTTP/1.1",
    "h2": "HTTP/2",
    "h2c": "HTTP/2",
    "http/2": "HTTP/2",
    "http/2.0": "HTTP/2",
    "h3": "HTTP/3",
    "http/3": "HTTP/3",
    "http/3.0": "HTTP/3",
    "unknown": "HTTP/1.1",
}


def normalize_http_version(v: Any) -> str:
    if not isinstance(v, str):
        return "HTTP/1.1"
    low = v.strip().lower()
    if low in _HTTP_VERSIONS:
        return _HTTP_VERSIONS[low]
    if low.startswith("h3"):
        return "HTTP/3"
    return v.strip().upper() if low.startswith("http/") else "HTTP/1.1"


# ---------------------------------------------------------------- import


@dataclass(frozen=True, slots=True)
class HarWarning:
    """Something about one entry that was guessed, dropped, or made it skipped."""

    entry: str  # "log.entries[22] GET http://host/path"
    field: str  # "response.status"
    reason: str
    skipped: bool = False

    def one_line(self, filename: str) -> str:
        verb = "skipped" if self.skipped else "imported"
        return f"{filename}: {self.entry}: {verb}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class HarImport:
    exchanges: tuple[Exchange, ...]
    warnings: tuple[HarWarning, ...]

    @property
    def skipped(self) -> int:
        return sum(1 for w in self.warnings if w.skipped)

    def nothing_usable(self, filename: str) -> RecordingError:
        """The one error for a file none of whose entries could be used."""
        first = next((w for w in self.warnings if w.skipped), None)
        if first is None:
            return RecordingError("the HAR file holds no requests", file=filename)
        more = f" (and {self.skipped - 1} more skipped)" if self.skipped > 1 else ""
        base = first.entry.split()[0]
        request = first.entry[len(base) :].strip()  # "GET http://..." when the entry has one
        return RecordingError(
            f"no entry could be imported: {request + ': ' if request else ''}{first.reason}{more}",
            file=filename,
            field=base if first.field == "entry" else f"{base}.{first.field}",
        )


class _Skip(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class _Entry:
    """One entry's context: its name for messages, and what was guessed about it."""

    def __init__(self, filename: str, index: int, strict: bool, producer: str = "") -> None:
        self.filename = filename
        # mitmproxy decodes a body that declares no charset as latin-1 (JSON as UTF-8), the
        # browsers as UTF-8: re-encoding must undo what this producer did
        self.latin1_default = producer.lower().startswith("mitmproxy")
        self.base = f"log.entries[{index}]"
        self.label = self.base
        self.strict = strict
        self.notes: list[HarWarning] = []

    def skip(self, field: str, reason: str) -> _Skip:
        return _Skip(field, reason)

    def warn(self, field: str, reason: str) -> None:
        if self.strict:
            raise RecordingError(
                f"{reason} ({self.label})", file=self.filename, field=f"{self.base}.{field}"
            )
        self.notes.append(HarWarning(self.label, field, reason))


def parse_har(data: bytes, filename: str = "<har>") -> dict[str, Any]:
    """HAR file bytes -> the document; invalid JSON is an error naming the line."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        pos = getattr(exc, "pos", None)
        line = data[:pos].count(b"\n") + 1 if isinstance(pos, int) else None
        raise RecordingError(f"invalid JSON: {exc.msg}", file=filename, line=line) from None
    if not isinstance(doc, dict):
        raise RecordingError("not a HAR file: expected a JSON object", file=filename, line=1)
    return doc


def import_har(
    har: Any, *, source: str, filename: str = "<har>", strict: bool = False
) -> HarImport:
    """Every usable entry of a HAR log as an Exchange, in file order (duplicates kept: they
    are the nth call of the same request), and a warning for each entry that needed one."""
    log = har.get("log") if isinstance(har, Mapping) else None
    if not isinstance(log, Mapping):
        raise RecordingError(
            'not a HAR file: no top-level "log" object', file=filename, field="log"
        )
    entries = log.get("entries")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise RecordingError("expected a list of entries", file=filename, field="log.entries")
    creator = log.get("creator")
    origin = "har"
    if isinstance(creator, Mapping) and isinstance(creator.get("name"), str):
        origin = f"har:{creator['name']}"
    direction = Direction.INBOUND if source == "inbound" else Direction.OUTBOUND
    stem = filename.rsplit("/", 1)[-1]
    out: list[Exchange] = []
    warnings: list[HarWarning] = []
    for i, e in enumerate(entries):
        ctx = _Entry(filename, i, strict, origin.removeprefix("har:"))
        try:
            out.append(
                _entry(e, i, source=source, direction=direction, origin=origin, stem=stem, ctx=ctx)
            )
        except _Skip as skip:
            if strict:
                raise RecordingError(
                    f"{skip.reason} ({ctx.label})",
                    file=filename,
                    field=f"{ctx.base}.{skip.field}" if skip.field else ctx.base,
                ) from None
            ctx.notes.append(HarWarning(ctx.label, skip.field or "entry", skip.reason, True))
        warnings.extend(ctx.notes)
    return HarImport(tuple(out), tuple(warnings))


def har_to_exchanges(
    har: Any, *, source: str, filename: str = "<har>", strict: bool = False
) -> list[Exchange]:
    """The exchanges of :func:`import_har` (entries that could not be used are left out)."""
    return list(import_har(har, source=source, filename=filename, strict=strict).exchanges)


def _split(url: str) -> tuple[str, str, str, str]:
    """(scheme, authority, path, raw query) of a URL, or ValueError."""
    parts = urlsplit(url)
    _ = parts.port  # raises ValueError for a port that is not a number
    return parts.scheme, parts.netloc, parts.path, parts.query


def _entry(
    e: Any, index: int, *, source: str, direction: Direction, origin: str, ctx: _Entry, stem: str
) -> Exchange:
    if not isinstance(e, Mapping):
        raise ctx.skip("", "expected an entry object")
    req_raw = e.get("request")
    if not isinstance(req_raw, Mapping):
        raise ctx.skip("request", "missing request object")
    method = req_raw.get("method")
    url = req_raw.get("url")
    if not isinstance(method, str) or not method.strip() or any(c in method for c in " \r\n"):
        raise ctx.skip("request.method", f"missing or invalid method {method!r}")
    if not isinstance(url, str) or not url:
        raise ctx.skip("request.url", "missing url")
    ctx.label = f"{ctx.base} {method} {url[:120]}"
    try:
        scheme, netloc, path, raw_query = _split(url)
    except ValueError as exc:
        raise ctx.skip("request.url", f"not a URL ({exc})") from None
    if not scheme and not netloc and not url.startswith("/"):
        raise ctx.skip("request.url", f"not a URL: {url[:120]!r}")
    headers, authority = _headers(req_raw.get("headers"), ctx, "request.headers")
    headers = _with_cookies(headers, req_raw.get("cookies"))
    host = netloc or authority or ""
    req_body, req_cut = _post_data(req_raw, headers, ctx)
    request = Request(
        method=method.upper(),
        path=path or "/",
        query=parse_query(raw_query),
        headers=headers,
        body=req_body,
        scheme=scheme or "http",
        host=host,
        http_version=normalize_http_version(req_raw.get("httpVersion")),
        raw_query=raw_query if raw_query else None,
    )

    response: Response | None = None
    error: str | None = None
    truncated = False
    resp_raw = e.get("response")
    if isinstance(resp_raw, Mapping):
        status = resp_raw.get("status", 0)
        if isinstance(status, str) and status.strip().lstrip("-").isdigit():
            status = int(status)
        if isinstance(status, float) and status.is_integer():
            status = int(status)
        if isinstance(status, bool) or not isinstance(status, int) or status > 999:
            raise ctx.skip("response.status", f"expected an HTTP status, got {status!r}")
        if 0 < status < 100:
            raise ctx.skip("response.status", f"not an HTTP status: {status}")
        # a failed request: Chrome/Firefox/Charles write 0, Playwright -1 with _failureText
        har_error = (
            resp_raw.get("_error")
            or resp_raw.get("_errorMessage")
            or resp_raw.get("_failureText")
            or e.get("_failureText")
        )
        if status <= 0:
            error = str(har_error) if har_error else f"no response (status {status})"
        else:
            rheaders, _ = _headers(resp_raw.get("headers"), ctx, "response.headers")
            body, truncated = _content(resp_raw.get("content"), rheaders, ctx, status)
            reason = resp_raw.get("statusText")
            # devbox's own export keeps trailers (gRPC's status is there); HAR has none
            trailers, _ = _headers(resp_raw.get("_trailers"), ctx, "response._trailers")
            response = Response(
                status=status,
                headers=rheaders,
                body=body,
                reason=reason if isinstance(reason, str) else "",
                http_version=normalize_http_version(resp_raw.get("httpVersion")),
                trailers=trailers,
            )
            if har_error:
                error = str(har_error)
    else:
        error = "no response recorded"

    timing = _timing(e, ctx)
    priv = e.get("_devbox")
    if not isinstance(priv, Mapping):
        priv = {}
    if "wait_ms" in priv and priv["wait_ms"] is None:
        timing = Timing(started_at=timing.started_at, duration_ms=timing.duration_ms)
    ident = priv.get("id")
    if not isinstance(ident, str) or not ident:
        seed = f"{source}\0{stem}\0{index}\0{e.get('startedDateTime', '')}\0{method}\0{url}"
        ident = "har-" + hashlib.sha1(seed.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    parent = priv.get("parent")
    ex_error = priv.get("error", error)
    return Exchange(
        id=ident,
        direction=direction,
        source=source,
        request=request,
        response=response,
        timing=timing,
        parent=parent if isinstance(parent, str) else None,
        error=ex_error if isinstance(ex_error, str) else error,
        request_truncated=bool(priv.get("request_truncated", req_cut)),
        response_truncated=bool(priv.get("response_truncated", truncated)),
        origin=str(priv.get("origin") or origin),
    )


def _headers(raw: Any, ctx: _Entry, where: str) -> tuple[Headers, str | None]:
    """Header pairs, without HTTP/2 pseudo-headers (their :authority becomes the host)."""
    if raw is None:
        return (), None
    if not isinstance(raw, list):
        ctx.warn(where, "expected a list of {name, value} objects; headers dropped")
        return (), None
    out: list[tuple[str, str]] = []
    authority = None
    for i, h in enumerate(raw):
        if not isinstance(h, Mapping) or not isinstance(h.get("name"), str):
            ctx.warn(f"{where}[{i}]", "expected {name, value}; header dropped")
            continue
        name = h["name"]
        value = h.get("value", "")
        value = value if isinstance(value, str) else str(value)
        if not name or any(c in name[1:] for c in ":\r\n\t "):
            ctx.warn(f"{where}[{i}]", f"invalid header name {name[:40]!r}; header dropped")
            continue
        if "\r" in value or "\n" in value:
            ctx.warn(f"{where}[{i}]", f"line break in the value of {name}; header dropped")
            continue
        if name.startswith(":"):
            if name == ":authority":
                authority = value
            continue
        out.append((name, value))
    return tuple(out), authority


def _with_cookies(headers: Headers, cookies: Any) -> Headers:
    """Some exporters list request cookies only in ``cookies``: they were on the wire."""
    if not isinstance(cookies, list) or not cookies:
        return headers
    if any(k.lower() == "cookie" for k, _ in headers):
        return headers
    pairs = [
        f"{c['name']}={c.get('value', '')}"
        for c in cookies
        if isinstance(c, Mapping) and isinstance(c.get("name"), str)
    ]
    return (*headers, ("Cookie", "; ".join(pairs))) if pairs else headers


def _header(headers: Headers, name: str) -> str:
    return header_get(headers, name) or ""


def _size(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else -1


def _post_data(req_raw: Mapping[str, Any], headers: Headers, ctx: _Entry) -> tuple[bytes, bool]:
    """(request body, whether the producer did not keep it)."""
    raw = req_raw.get("postData")
    if not isinstance(raw, Mapping):
        size = _size(req_raw.get("bodySize"))
        if size > 0:
            # Chrome and Playwright leave out binary uploads: the request had a body
            ctx.warn("request.postData", f"body of {size} bytes not in the HAR; imported empty")
            return b"", True
        return b"", False
    mime = raw.get("mimeType") if isinstance(raw.get("mimeType"), str) else ""
    mime = mime or _header(headers, "content-type")
    text = raw.get("text")
    size = _size(req_raw.get("bodySize"))
    if text == "" and not raw.get("params") and size > 0:
        # Playwright writes an empty text for a binary upload it did not keep
        ctx.warn("request.postData", f"body of {size} bytes not in the HAR; imported empty")
        return b"", True
    if isinstance(text, str) and (text or not raw.get("params")):
        if str(raw.get("encoding", "")).lower() == "base64":
            return _b64(text, ctx, "request.postData.text"), False
        charset = mime_charset(_header(headers, "content-type")) or mime_charset(mime)
        return encode_text(text, charset or _fallback(ctx, mime)), False
    params = raw.get("params")
    if not isinstance(params, list) or not params:
        return b"", False
    good = [p for p in params if isinstance(p, Mapping) and isinstance(p.get("name"), str)]
    if mime.lower().startswith("multipart/form-data"):
        return _multipart(good, mime), False
    return urlencode([(p["name"], str(p.get("value", ""))) for p in good]).encode("utf-8"), False


def _multipart(params: list[Mapping[str, Any]], mime: str) -> bytes:
    boundary = "devbox-har-boundary"
    for param in mime.split(";")[1:]:
        k, _, v = param.partition("=")
        if k.strip().lower() == "boundary":
            boundary = v.strip().strip('"')
    out = bytearray()
    for p in params:
        out += f"--{boundary}\r\n".encode("utf-8", "replace")
        disp = f'form-data; name="{p["name"]}"'
        if isinstance(p.get("fileName"), str):
            disp += f'; filename="{p["fileName"]}"'
        out += f"Content-Disposition: {disp}\r\n".encode("utf-8", "replace")
        if isinstance(p.get("contentType"), str):
            out += f"Content-Type: {p['contentType']}\r\n".encode("utf-8", "replace")
        out += b"\r\n" + encode_text(str(p.get("value", "")), "utf-8") + b"\r\n"
    out += f"--{boundary}--\r\n".encode("utf-8", "replace")
    return bytes(out)


def _b64(text: str, ctx: _Entry, where: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ctx.skip(where, "encoding is base64 but the text is not valid base64") from None


def _content(raw: Any, headers: Headers, ctx: _Entry, status: int) -> tuple[bytes, bool]:
    """(decoded body, whether the body is missing or incomplete)."""
    if not isinstance(raw, Mapping):
        return b"", False
    text = raw.get("text")
    size = _size(raw.get("size"))
    if not isinstance(text, str):
        # the exporter did not keep the body (Chrome for some resource types, Playwright
        # "omit"/"attach" modes); size is the decoded size or, for some, the compressed one
        # (Playwright: size -1 for a body it never saw, e.g. a fetch the page did not read)
        return b"", size > 0 or (size < 0 and 200 <= status < 300 and status != 204)
    mime = raw.get("mimeType") if isinstance(raw.get("mimeType"), str) else ""
    content_type = _header(headers, "content-type")
    content_encoding = _header(headers, "content-encoding")
    if str(raw.get("encoding", "")).lower() == "base64":
        body = _b64(text, ctx, "response.content.text")
        # HAR says content.text is decoded; some tools store the compressed bytes anyway
        return decode_lenient(body, content_encoding), False
    if content_encoding and not decodable(content_encoding):
        ctx.warn(
            "response.headers",
            f"content coding {content_encoding!r} is not one devbox "
            "can apply again; the body is served as stored",
        )
    charset = text_charset(content_type, text, mime, _fallback(ctx, content_type or mime or ""))
    return encode_text(text, charset), False


def _fallback(ctx: _Entry, content_type: str) -> str:
    if ctx.latin1_default and "json" not in content_type.lower():
        return "latin-1"
    return "utf-8"


def _timing(e: Mapping[str, Any], ctx: _Entry) -> Timing:
    started = e.get("startedDateTime")
    ts = 0.0
    if isinstance(started, str) and started:
        try:
            dt = datetime.fromisoformat(started.strip())
            # the spec requires an offset; a naive time from a sloppy exporter is taken as UTC
            ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError, OSError):
            ctx.warn("startedDateTime", f"not an ISO 8601 date: {started[:60]!r}; time 0 used")
    duration = max(_num(e.get("time")), 0.0)
    wait = None
    timings = e.get("timings")
    if isinstance(timings, Mapping):
        w = _num(timings.get("wait"))
        if w >= 0:
            wait = w
        if duration == 0.0:
            # "time" missing: the phases add up to it (-1 means "does not apply")
            # (ssl is part of connect; Chrome's _blocked_queueing etc. are parts of blocked)
            phases = ("blocked", "dns", "connect", "send", "wait", "receive")
            duration = sum(max(_num(timings.get(k)), 0.0) for k in phases)
    return Timing(started_at=ts, duration_ms=duration, wait_ms=wait)


def _num(v: Any) -> float:
    """A HAR number, or -1 (the spec's "not available") for anything else."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        f = float(v)
        return f if f == f and abs(f) != float("inf") else -1.0
    return -1.0


__all__ = [
    "HAR_VERSION",
    "HarImport",
    "HarWarning",
    "exchange_to_entry",
    "exchanges_to_har",
    "har_to_exchanges",
    "import_har",
    "normalize_http_version",
    "parse_har",
]

"""HAR 1.2 <-> exchanges, as pure value conversion.

Import is lenient, because real files come from browsers and proxies that each bend the
spec: optional fields missing, ``-1`` sizes, HTTP/2 pseudo-headers, base64 bodies,
bodies stored still compressed, bodies in a non-UTF-8 charset, ``postData`` with only
``params``, failed requests with ``status: 0`` and ``_error``. What the spec requires
and cannot be guessed (a request, its method and URL) is an error naming the entry.

Bodies end up as the bytes the peer sent, decoded of any Content-Encoding (the model's
rule): ``content.text`` is re-encoded in the charset the Content-Type declares, so a
latin-1 page round-trips byte for byte.

Export writes standard HAR 1.2 plus one private field per entry, ``_devbox`` (id, source,
direction, parent, origin, truncation), so devbox -> HAR -> devbox keeps everything.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from devbox import __version__
from devbox.core.model import Direction, Exchange, Headers, Request, Response, Timing, parse_query
from devbox.errors import RecordingError

HAR_VERSION = "1.2"
# a decompressed body larger than this is left compressed: a HAR is not a zip bomb vector
MAX_INFLATE = 256 * 1024 * 1024

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


class _Entry:
    """Error context for one entry: every message names ``log.entries[i].field``."""

    def __init__(self, filename: str, index: int) -> None:
        self.filename = filename
        self.base = f"log.entries[{index}]"

    def error(self, field: str, message: str) -> RecordingError:
        return RecordingError(message, file=self.filename, field=f"{self.base}.{field}")


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


def har_to_exchanges(
    har: Mapping[str, Any], *, source: str, filename: str = "<har>"
) -> list[Exchange]:
    """Every entry of a HAR log as an Exchange, in file order (duplicates kept: they are
    the nth call of the same request)."""
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
    return [
        _entry(e, i, source=source, direction=direction, origin=origin, stem=stem,
               ctx=_Entry(filename, i))
        for i, e in enumerate(entries)
    ]


def _entry(
    e: Any, index: int, *, source: str, direction: Direction, origin: str, ctx: _Entry, stem: str
) -> Exchange:
    if not isinstance(e, Mapping):
        raise RecordingError("expected an entry object", file=ctx.filename, field=ctx.base)
    req_raw = e.get("request")
    if not isinstance(req_raw, Mapping):
        raise ctx.error("request", "missing request object")
    method = req_raw.get("method")
    url = req_raw.get("url")
    if not isinstance(method, str) or not method:
        raise ctx.error("request.method", "missing method")
    if not isinstance(url, str) or not url:
        raise ctx.error("request.url", "missing url")
    headers, authority = _headers(req_raw.get("headers"), ctx, "request.headers")
    headers = _with_cookies(headers, req_raw.get("cookies"))
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc and not url.startswith("/"):
        raise ctx.error("request.url", f"not a URL: {url!r}")
    host = parts.netloc or authority or ""
    req_body = _post_data(req_raw.get("postData"), headers, ctx)
    request = Request(
        method=method.upper(),
        path=parts.path or "/",
        query=parse_query(parts.query),
        headers=headers,
        body=req_body,
        scheme=parts.scheme or "http",
        host=host,
        http_version=normalize_http_version(req_raw.get("httpVersion")),
    )

    response: Response | None = None
    error: str | None = None
    truncated = False
    resp_raw = e.get("response")
    if isinstance(resp_raw, Mapping):
        status = resp_raw.get("status", 0)
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if isinstance(status, bool) or not isinstance(status, int) or status < 0 or status > 999:
            raise ctx.error("response.status", f"expected an HTTP status, got {status!r}")
        har_error = resp_raw.get("_error") or resp_raw.get("_errorMessage")
        if status == 0 or har_error:
            error = str(har_error) if har_error else "no response (status 0)"
        if status != 0:
            rheaders, _ = _headers(resp_raw.get("headers"), ctx, "response.headers")
            body, truncated = _content(resp_raw.get("content"), rheaders, ctx)
            reason = resp_raw.get("statusText")
            response = Response(
                status=status,
                headers=rheaders,
                body=body,
                reason=reason if isinstance(reason, str) else "",
                http_version=normalize_http_version(resp_raw.get("httpVersion")),
            )
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
        request_truncated=bool(priv.get("request_truncated", False)),
        response_truncated=bool(priv.get("response_truncated", truncated)),
        origin=str(priv.get("origin") or origin),
    )


def _headers(raw: Any, ctx: _Entry, where: str) -> tuple[Headers, str | None]:
    """Header pairs, without HTTP/2 pseudo-headers (their :authority becomes the host)."""
    if raw is None:
        return (), None
    if not isinstance(raw, list):
        raise ctx.error(where, "expected a list of {name, value} objects")
    out: list[tuple[str, str]] = []
    authority = None
    for i, h in enumerate(raw):
        if not isinstance(h, Mapping) or not isinstance(h.get("name"), str):
            raise ctx.error(f"{where}[{i}]", "expected {name, value}")
        name = h["name"]
        value = h.get("value", "")
        value = value if isinstance(value, str) else str(value)
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


def _charset(mime: str) -> str:
    for param in mime.split(";")[1:]:
        k, _, v = param.partition("=")
        if k.strip().lower() == "charset":
            name = v.strip().strip('"').lower()
            try:
                return codecs.lookup(name).name
            except LookupError:
                return "utf-8"
    return "utf-8"


def _encode_text(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        pass
    try:
        # lone surrogates \udc80-\udcff: a tool wrote undecodable bytes this way
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _header(headers: Headers, name: str) -> str:
    low = name.lower()
    for k, v in headers:
        if k.lower() == low:
            return v
    return ""


def _post_data(raw: Any, headers: Headers, ctx: _Entry) -> bytes:
    if not isinstance(raw, Mapping):
        return b""
    mime = raw.get("mimeType") if isinstance(raw.get("mimeType"), str) else ""
    mime = mime or _header(headers, "content-type")
    text = raw.get("text")
    if isinstance(text, str) and (text or not raw.get("params")):
        if str(raw.get("encoding", "")).lower() == "base64":
            return _b64(text, ctx, "request.postData.text")
        return _encode_text(text, _charset(mime))
    params = raw.get("params")
    if not isinstance(params, list) or not params:
        return b""
    good = [p for p in params if isinstance(p, Mapping) and isinstance(p.get("name"), str)]
    if mime.lower().startswith("multipart/form-data"):
        return _multipart(good, mime)
    return urlencode([(p["name"], str(p.get("value", ""))) for p in good]).encode("ascii")


def _multipart(params: list[Mapping[str, Any]], mime: str) -> bytes:
    boundary = "devbox-har-boundary"
    for param in mime.split(";")[1:]:
        k, _, v = param.partition("=")
        if k.strip().lower() == "boundary":
            boundary = v.strip().strip('"')
    out = bytearray()
    for p in params:
        out += f"--{boundary}\r\n".encode()
        disp = f'form-data; name="{p["name"]}"'
        if isinstance(p.get("fileName"), str):
            disp += f'; filename="{p["fileName"]}"'
        out += f"Content-Disposition: {disp}\r\n".encode()
        if isinstance(p.get("contentType"), str):
            out += f"Content-Type: {p['contentType']}\r\n".encode()
        out += b"\r\n" + _encode_text(str(p.get("value", "")), "utf-8") + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def _b64(text: str, ctx: _Entry, where: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ctx.error(where, "encoding is base64 but the text is not valid base64") from None


def _content(raw: Any, headers: Headers, ctx: _Entry) -> tuple[bytes, bool]:
    """(decoded body, whether the body is missing or incomplete)."""
    if not isinstance(raw, Mapping):
        return b"", False
    text = raw.get("text")
    size = raw.get("size")
    if not isinstance(text, str):
        # the exporter did not keep the body (Chrome for some resource types)
        return b"", isinstance(size, int) and size > 0
    mime = raw.get("mimeType") if isinstance(raw.get("mimeType"), str) else ""
    mime = mime or _header(headers, "content-type")
    if str(raw.get("encoding", "")).lower() == "base64":
        body = _b64(text, ctx, "response.content.text")
        return _inflate(body, _header(headers, "content-encoding")), False
    return _encode_text(text, _charset(mime)), False


def _inflate(body: bytes, content_encoding: str) -> bytes:
    """HAR says content.text is decoded; some tools store the compressed bytes anyway."""
    enc = content_encoding.lower()
    try:
        if "gzip" in enc and body[:2] == b"\x1f\x8b":
            d = zlib.decompressobj(wbits=31)
            out = d.decompress(body, MAX_INFLATE)
            return body if d.unconsumed_tail else out
        if "deflate" in enc:
            for wbits in (15, -15):
                try:
                    d = zlib.decompressobj(wbits=wbits)
                    out = d.decompress(body, MAX_INFLATE)
                    return body if d.unconsumed_tail else out
                except zlib.error:
                    continue
    except zlib.error:
        pass
    return body


def _timing(e: Mapping[str, Any], ctx: _Entry) -> Timing:
    started = e.get("startedDateTime")
    ts = 0.0
    if isinstance(started, str) and started:
        try:
            dt = datetime.fromisoformat(started.strip())
        except ValueError:
            raise ctx.error("startedDateTime", f"not an ISO 8601 date: {started!r}") from None
        # the spec requires an offset; a naive time from a sloppy exporter is taken as UTC
        ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
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
        return float(v)
    return -1.0


# ---------------------------------------------------------------- export


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _har_headers(headers: Headers) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in headers]


def _text_or_b64(body: bytes, mime: str) -> dict[str, str]:
    charset = _charset(mime) if "charset=" in mime.lower() else "utf-8"
    try:
        return {"text": body.decode(charset)}
    except (UnicodeDecodeError, LookupError):
        return {"text": base64.b64encode(body).decode("ascii"), "encoding": "base64"}


def _cookies(value: str, set_cookie: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if set_cookie:
        first, *attrs = value.split(";")
        name, _, val = first.strip().partition("=")
        c: dict[str, Any] = {"name": name, "value": val}
        for a in attrs:
            k, _, v = a.strip().partition("=")
            key = k.lower()
            if key == "path":
                c["path"] = v
            elif key == "domain":
                c["domain"] = v
            elif key == "expires":
                c["expires"] = v
            elif key == "httponly":
                c["httpOnly"] = True
            elif key == "secure":
                c["secure"] = True
        return [c]
    for pair in value.split(";"):
        name, sep, val = pair.strip().partition("=")
        if sep:
            out.append({"name": name, "value": val})
    return out


def exchange_to_entry(ex: Exchange) -> dict[str, Any]:
    req = ex.request
    req_mime = _header(req.headers, "content-type")
    request: dict[str, Any] = {
        "method": req.method,
        "url": req.url,
        "httpVersion": req.http_version,
        "cookies": [
            c for k, v in req.headers if k.lower() == "cookie" for c in _cookies(v, False)
        ],
        "headers": _har_headers(req.headers),
        "queryString": [{"name": k, "value": v} for k, v in req.query],
        "headersSize": -1,
        "bodySize": len(req.body),
    }
    if req.body:
        post: dict[str, Any] = {"mimeType": req_mime, **_text_or_b64(req.body, req_mime)}
        if req_mime.lower().startswith("application/x-www-form-urlencoded") and "text" in post:
            post["params"] = [
                {"name": k, "value": v}
                for k, v in parse_qsl(post["text"], keep_blank_values=True)
            ]
        request["postData"] = post
    response: dict[str, Any]
    if ex.response is not None:
        resp = ex.response
        mime = _header(resp.headers, "content-type")
        content: dict[str, Any] = {"size": len(resp.body), "mimeType": mime}
        if resp.body:
            content.update(_text_or_b64(resp.body, mime))
        response = {
            "status": resp.status,
            "statusText": resp.reason,
            "httpVersion": resp.http_version,
            "cookies": [
                c for k, v in resp.headers if k.lower() == "set-cookie" for c in _cookies(v, True)
            ],
            "headers": _har_headers(resp.headers),
            "content": content,
            "redirectURL": _header(resp.headers, "location"),
            "headersSize": -1,
            "bodySize": len(resp.body),
        }
    else:
        response = {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        }
    if ex.error:
        response["_error"] = ex.error
    duration = max(ex.timing.duration_ms, 0.0)
    wait = ex.timing.wait_ms if ex.timing.wait_ms is not None else duration
    wait = min(max(wait, 0.0), duration) if duration else max(wait, 0.0)
    timings = {
        "blocked": -1,
        "dns": -1,
        "connect": -1,
        "ssl": -1,
        "send": 0,
        "wait": round(wait, 3),
        "receive": round(max(duration - wait, 0.0), 3),
    }
    priv: dict[str, Any] = {"id": ex.id, "source": ex.source, "direction": ex.direction.value}
    if ex.parent:
        priv["parent"] = ex.parent
    if ex.origin:
        priv["origin"] = ex.origin
    if ex.error:
        priv["error"] = ex.error
    if ex.request_truncated:
        priv["request_truncated"] = True
    if ex.response_truncated:
        priv["response_truncated"] = True
    if ex.timing.wait_ms is None:
        # HAR has no "unknown" wait once exported (-1 is not allowed there): remember it
        priv["wait_ms"] = None
    return {
        "startedDateTime": _iso(ex.timing.started_at),
        "time": round(duration, 3),
        "request": request,
        "response": response,
        "cache": {},
        "timings": timings,
        "_devbox": priv,
    }


def exchanges_to_har(exchanges: Iterable[Exchange]) -> dict[str, Any]:
    """A HAR 1.2 document (a dict ready for JSON) holding these exchanges in order."""
    return {
        "log": {
            "version": HAR_VERSION,
            "creator": {"name": "devbox", "version": __version__},
            "pages": [],
            "entries": [exchange_to_entry(e) for e in exchanges],
        }
    }


__all__ = [
    "exchange_to_entry",
    "exchanges_to_har",
    "har_to_exchanges",
    "normalize_http_version",
    "parse_har",
]

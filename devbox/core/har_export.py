"""devbox exchanges -> HAR 1.2: standard fields plus one private field per entry.

``_devbox`` (id, source, direction, parent, origin, truncation) keeps what HAR cannot say,
and ``response._trailers`` a response's trailers ({name, value} as headers), so devbox ->
HAR -> devbox keeps everything. The URL is written with the request target
exactly as recorded, and text bodies in the charset the response declares.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from devbox import __version__
from devbox.core.charset import decode_text, encode_text, text_charset
from devbox.core.model import Exchange, Headers, header_get

HAR_VERSION = "1.2"


def _header(headers: Headers, name: str) -> str:
    return header_get(headers, name) or ""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _har_headers(headers: Headers) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in headers]


def _text_or_b64(body: bytes, mime: str) -> dict[str, str]:
    text = decode_text(body, mime)
    # text only when an import gives these bytes back (a binary body that happens to start
    # like a byte order mark stays base64)
    if text is not None and encode_text(text, text_charset(mime, text, mime)) == body:
        return {"text": text}
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
        "cookies": [c for k, v in req.headers if k.lower() == "cookie" for c in _cookies(v, False)],
        "headers": _har_headers(req.headers),
        "queryString": [{"name": k, "value": v} for k, v in req.query],
        "headersSize": -1,
        "bodySize": len(req.body),
    }
    if req.body:
        post: dict[str, Any] = {"mimeType": req_mime, **_text_or_b64(req.body, req_mime)}
        if req_mime.lower().startswith("application/x-www-form-urlencoded") and "text" in post:
            post["params"] = [
                {"name": k, "value": v} for k, v in parse_qsl(post["text"], keep_blank_values=True)
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
        if resp.trailers:
            # HAR has no trailers (nor do browsers' or mitmproxy's exports): without them a
            # gRPC answer loses its grpc-status, which its client needs to end the call
            response["_trailers"] = _har_headers(resp.trailers)
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


__all__ = ["HAR_VERSION", "exchange_to_entry", "exchanges_to_har"]

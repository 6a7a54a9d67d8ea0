"""Bodies in a recording: as JSON a reviewer can read (``{"json": ...}``, with the
``style`` that gives back the bytes a server wrote), as text, or as base64, and back to
the exact bytes (``docs/recordings.md``, "Bodies")."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson

from devbox.errors import RecordingError


def encode_body(body: bytes) -> dict[str, Any] | None:
    """How ``body`` is written in a recording. Read the result, never change it: small
    bodies repeat (a polled answer), and each is encoded once (``_ENCODED``)."""
    if not body:
        return None
    small = len(body) <= _ENCODED_BODY
    if small and (seen := _ENCODED.get(body)) is not None:
        return seen
    spec = _encode(body)
    if small:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[body] = spec
    return spec


_ENCODED: dict[bytes, dict[str, Any]] = {}
_ENCODED_BODY = 8 * 1024
_ENCODED_MAX = 1024


def _encode(body: bytes) -> dict[str, Any]:
    head = body.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            if orjson.dumps(value) == body:
                return {"json": value}
            if _python_json(value) == body:
                return {"json": value, "style": "spaced"}
            if _python_json(value, ascii_only=True) == body:
                return {"json": value, "style": "spaced-ascii"}
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


# the separators of Python's json.dumps default, which many small services emit; one
# encoder each, built once (json.dumps builds a new one per call when options are given)
_SPACED = json.JSONEncoder(ensure_ascii=False)
_SPACED_ASCII = json.JSONEncoder(ensure_ascii=True)


def _python_json(value: Any, *, ascii_only: bool = False) -> bytes:
    return (_SPACED_ASCII if ascii_only else _SPACED).encode(value).encode("utf-8")


def decode_body(spec: Any, where: str) -> bytes:
    if spec is None:
        return b""
    if not isinstance(spec, dict):
        raise RecordingError("body must be an object with json, text or base64", field=where)
    if "json" in spec:
        style = spec.get("style")
        if style is None:
            return bytes(orjson.dumps(spec["json"]))
        if style == "spaced":
            return _python_json(spec["json"])
        if style == "spaced-ascii":
            return _python_json(spec["json"], ascii_only=True)
        raise RecordingError(f"unknown JSON body style {style!r}", field=where)
    if "text" in spec:
        return str(spec["text"]).encode("utf-8")
    if "base64" in spec:
        try:
            return base64.b64decode(spec["base64"], validate=True)
        except ValueError as exc:
            raise RecordingError(f"invalid base64 body: {exc}", field=where) from None
    raise RecordingError("body must have one of json, text, base64", field=where)

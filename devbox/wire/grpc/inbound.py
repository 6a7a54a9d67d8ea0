"""A service that itself serves gRPC, replayed: its recorded inbound calls (the store's
objects, documented in ``store``) as the replay's ``Exchange`` values, and a live answer
in the same ``Response`` shape, so both sides of a comparison are decoded alike.

A call becomes a request ``POST /service/Method`` with the call's metadata as headers
and its request messages as a JSON list for body, and a response whose ``status`` is
the grpc-status code and ``reason`` its name (``OK``, ``NOT_FOUND``), whose headers are
the response metadata, the trailers and ``grpc-message``, and whose body is the JSON
list of response messages. Recorded messages are re-encoded and decoded again with the
descriptors replay has, exactly as a live answer is decoded: a recording made without
``protos`` compares with a service replayed with them, field names on both sides.

Pure, but for reading the recording files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from devbox.core.model import Direction, Exchange, Headers, Request, Response, Timing
from devbox.errors import ConfigError
from devbox.wire import files
from devbox.wire.contract import RemoteProtocolError
from devbox.wire.grpc import codec, protobuf
from devbox.wire.grpc.schema import Schema
from devbox.wire.grpc.store import StoreError, call_path, coders, request_encoding

SOURCE = "inbound"


def answer(status: int, text: str, messages: list[Any], meta: Mapping[str, Any]) -> Response:
    """The one shape of a gRPC answer, recorded or live (``meta``: response metadata
    and trailers, merged)."""
    headers = codec.metadata_headers(dict(meta))
    if text:
        headers.append(("grpc-message", text))
    return Response(
        status=status,
        headers=tuple(headers),
        body=orjson.dumps(messages),
        reason=codec.status_name(status),
        http_version="HTTP/2",
    )


def _normalized(
    messages: Any, key: str, path: str, schema: Schema | None, encoding: str | None = None
) -> list[Any]:
    """Stored messages in the form a live one decodes to now (named with descriptors; a
    request an older recording kept compressed, inflated: it is sent so, and
    ``grpc-encoding`` is the transport's, never among the metadata replay sends)."""
    if not isinstance(messages, list):
        raise StoreError("expected a list of messages", key)
    found = coders(schema, path, key == "response")
    request = key == "request"
    return [
        codec.stored_json(m, f"{key}[{i}]", found, encoding, request=request)
        for i, m in enumerate(messages)
    ]


def stored_exchange(obj: Mapping[str, Any], ident: str, schema: Schema | None = None) -> Exchange:
    """One recorded call as an exchange; a call that never ended (reset, cut off) has no
    response, so replay skips it as it skips an HTTP exchange without one."""
    path = call_path(obj)
    request = Request(
        method="POST",
        path=path,
        headers=tuple(codec.metadata_headers(obj.get("metadata"))),
        body=orjson.dumps(
            _normalized(obj.get("request", []), "request", path, schema, request_encoding(obj))
        ),
        http_version="HTTP/2",
    )
    at, latency = obj.get("at_ms", 0), obj.get("latency_ms", 0)
    timing = Timing(
        started_at=float(at) / 1000.0 if isinstance(at, int | float) else 0.0,
        duration_ms=float(latency) if isinstance(latency, int | float) else 0.0,
    )
    response = None
    error = None
    if obj.get("incomplete") or "reset" in obj or "status" not in obj:
        error = "the call never ended" if "reset" not in obj else f"reset ({obj['reset']})"
    else:
        status, text = obj.get("status"), obj.get("grpc_message", "")
        if isinstance(status, bool) or not isinstance(status, int):
            raise StoreError("expected a gRPC status code (0 is OK)", "status")
        if not isinstance(text, str):
            raise StoreError("expected text", "grpc_message")
        meta = {**_dict(obj.get("response_metadata")), **_dict(obj.get("trailers"))}
        messages = _normalized(obj.get("response", []), "response", path, schema)
        response = answer(status, text, messages, meta)
    return Exchange(
        ident, Direction.INBOUND, SOURCE, request, response, timing, error=error, origin="record"
    )


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def load_calls(source: Path, schema: Schema | None = None) -> list[Exchange]:
    """Every recorded inbound call in ``source`` (a directory of recordings, or one
    file), in recorded order; a stored object that cannot be replayed is an error naming
    its file, line and field."""
    out: list[Exchange] = []
    if source.is_dir():
        stored = files.read_stored(source, "grpc")
    else:
        found = files.read_file(source)
        if found.kind != "grpc":
            raise ConfigError(
                f"holds {found.kind} recordings, not the gRPC calls of a service with "
                'protocol = "grpc"',
                file=str(source),
                line=1,
                field="kind",
            )
        stored = [(str(source), line, obj) for line, obj in found.objects]
    for file, line, obj in stored:
        stamp = Path(file).name.removeprefix("recording-").split(".")[0]
        ident = f"{stamp}/{obj.get('connection', 0)}.{obj.get('seq', line)}"
        try:
            out.append(stored_exchange(obj, ident, schema))
        except (StoreError, protobuf.ProtobufError) as exc:
            raise ConfigError(str(exc), file=file, line=line, field=exc.field) from None
    return out


def request_frames(req: Request, schema: Schema | None = None) -> bytes:
    """The framed request messages of a call made by ``stored_exchange``."""
    encode, _ = coders(schema, req.path, False)
    messages = orjson.loads(req.body) if req.body else []
    return b"".join(codec.message_bytes(m, f"request[{i}]", encode) for i, m in enumerate(messages))


def live_answer(
    http_status: int,
    headers: Headers,
    body: bytes,
    trailers: Headers,
    path: str,
    schema: Schema | None = None,
) -> Response:
    """What the service answered, decoded as the recorder decodes a call."""
    if not trailers:  # trailers-only: one header block is both
        headers, trailers = (), headers
    if not any(k == "grpc-status" for k, _ in trailers):
        raise RemoteProtocolError(
            f"not a gRPC answer: HTTP {http_status} without grpc-status (does the service "
            "serve gRPC on this port?)"
        )
    status, text = codec.status_of(list(trailers))
    found, rest = codec.split_messages(body)
    if rest:
        raise RemoteProtocolError(f"the answer ends inside a message ({len(rest)} bytes)")
    _, decode = coders(schema, path, True)
    messages = [codec.message_json(c, p, decode) for c, p in found]
    meta = {**codec.metadata(list(headers)), **codec.trailer_metadata(list(trailers))}
    return answer(status, text, messages, meta)

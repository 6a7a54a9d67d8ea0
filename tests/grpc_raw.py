"""A real grpcio server with raw-bytes handlers (no .proto to compile) for the adversarial
gRPC tests: every call shape, metadata echoed back (``-bin`` included), trailers, rich
errors (``grpc-status-details-bin``), gzip, large messages, slow and endless streams.
It runs in the test's own process on a thread pool and is stopped by ``stop(0)``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc

from devbox.wire.grpc.protobuf import encode_varint

SERVICE = "adv.Raw"
# a google.rpc.Status: code 3, message "bad", details [Any{type_url "t/x", value 00 ff}]
DETAILS = b"\x08\x03\x12\x03bad\x1a\x09\x0a\x03t/x\x12\x02\x00\xff"
MB = 1 << 20


def big(n: int) -> bytes:
    """A message of ``n`` bytes of payload: field 1 (bytes) holding non-UTF-8 data."""
    body = (bytes((i * 131 + 7) % 256 for i in range(256)) * (n // 256 + 1))[:n]
    return b"\x0a" + encode_varint(n) + body


def _echo_meta(context: Any) -> None:
    back = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-")]
    context.send_initial_metadata(back)


def _unary(request: bytes, context: Any, method: str) -> bytes:
    if method == "Echo":
        _echo_meta(context)
        context.set_trailing_metadata((("x-trailer", "t1"), ("x-trailer-bin", b"\x00\x01\xfe\xff")))
        return request
    if method == "Fail":
        context.set_trailing_metadata((("grpc-status-details-bin", DETAILS), ("x-why", "no")))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad ünïcode 100% \n done")
    if method == "Big":
        return big(int(request.decode() or "0"))
    if method == "Gzip":
        context.set_compression(grpc.Compression.Gzip)
        return request
    if method == "Slow":
        time.sleep(1.0)
        return request
    context.abort(grpc.StatusCode.UNIMPLEMENTED, f"no {method}")
    return b""


def _stream(request: bytes, context: Any, method: str) -> Iterator[bytes]:
    """``COUNT[:GAP_S[:SIZE]]`` messages: ``m0``, ``m1``... or ``big(SIZE)`` each."""
    count, gap, size = [*request.decode().split(":"), "", ""][:3]
    for i in range(min(int(count or "0"), 1000)):
        if gap:
            time.sleep(float(gap))
        if not context.is_active():
            return
        yield big(int(size)) if size else f"m{i}".encode()


def _collect(requests: Iterator[bytes], context: Any, method: str) -> bytes:
    return b"|".join(requests)


def _chat(requests: Iterator[bytes], context: Any, method: str) -> Iterator[bytes]:
    _echo_meta(context)
    for r in requests:
        yield r + b"!"
    context.set_trailing_metadata((("x-chat-end", "yes"),))


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def service(self, details: Any) -> Any:
        service, _, method = str(details.method).lstrip("/").partition("/")
        if service != SERVICE:
            return None
        if method in ("Stream", "Forever"):
            return grpc.unary_stream_rpc_method_handler(lambda r, c: _stream(r, c, method))
        if method == "Collect":
            return grpc.stream_unary_rpc_method_handler(lambda r, c: _collect(r, c, method))
        if method == "Chat":
            return grpc.stream_stream_rpc_method_handler(lambda r, c: _chat(r, c, method))
        return grpc.unary_unary_rpc_method_handler(lambda r, c: _unary(r, c, method))


@contextmanager
def serving(
    handler: grpc.GenericRpcHandler, options: list[tuple[str, Any]] | None = None, **kw: Any
) -> Iterator[int]:
    """``handler`` served on a free port of 127.0.0.1 (grpc's own limits unless
    ``options`` set others); yields the port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options or [], **kw)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0).wait(10)


@contextmanager
def raw_server(**options: Any) -> Iterator[int]:
    """The server on a free port of 127.0.0.1; yields the port."""
    opts = [
        ("grpc.max_receive_message_length", 16 * MB),
        ("grpc.max_send_message_length", 16 * MB),
    ]
    with serving(_Handler(), opts, **options) as port:
        yield port


def channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(
        f"127.0.0.1:{port}",
        options=[
            ("grpc.max_receive_message_length", 16 * MB),
            ("grpc.max_send_message_length", 16 * MB),
        ],
    )

"""A server that answers a call before the client has finished sending it: a message
over the server's receive limit (RESOURCE_EXHAUSTED as soon as its length prefix
arrives), a client stream refused on its first message. The relay records such a call
with ``request_open``; the mock used to skip it, so the client got NOT_FOUND from the
mock where the server had given it the status. Real grpcio servers and clients."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_raw import serving
from grpc_support import start_mock, start_relay
from loop_support import Loop

from devbox.wire.contract import Miss

MB = 1 << 20
LIMIT = 4 * MB  # grpc's default receive limit


def _gate(requests: Iterator[bytes], context: Any) -> bytes:
    first = next(requests, b"")
    if first == b"no":
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "refused at the first message")
    return first + b"".join(requests)


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def service(self, details: Any) -> Any:
        if details.method == "/early.Gate/Echo":
            return grpc.unary_unary_rpc_method_handler(lambda r, c: r)
        if details.method == "/early.Gate/Collect":
            return grpc.stream_unary_rpc_method_handler(_gate)
        return None


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def _calls(port: int, wait: float) -> dict[str, Any]:
    """``wait``: how long the client stream holds its second message back for the
    answer to come first (the server answers at once; the mock, at the half-close)."""
    out: dict[str, Any] = {}
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * MB)]
    ) as ch:
        echo = ch.unary_unary("/early.Gate/Echo")
        for name, size in (("small", 10), ("over", LIMIT + MB)):
            try:
                out[name] = len(echo(b"\x0a" * size, timeout=30))
            except grpc.RpcError as exc:
                assert isinstance(exc, grpc.Call)
                out[name] = (exc.code(), exc.details())
        answered = threading.Event()

        def messages() -> Iterator[bytes]:
            yield b"no"
            answered.wait(wait)
            yield b"more"

        call = ch.stream_unary("/early.Gate/Collect").future(messages(), timeout=30)
        call.add_done_callback(lambda _f: answered.set())
        try:
            out["refused"] = call.result()
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            out["refused"] = (exc.code(), exc.details())
    return out


def test_a_call_the_server_answered_before_the_request_ended(loop: Loop) -> None:
    with serving(_Handler()) as port:
        real = _calls(port, 10)
        relay = loop.run(start_relay(port))
        try:
            assert _calls(relay.port, 10) == real
            deadline = time.monotonic() + 10
            while len(relay.stored) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            loop.close_server(relay.server)
    assert real["small"] == 10
    assert real["over"][0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert real["refused"] == (grpc.StatusCode.PERMISSION_DENIED, "refused at the first message")
    stored = json.loads(json.dumps(relay.stored))
    mock = loop.run(start_mock(stored))
    try:
        # the mock answers a client stream at its half-close: no holding back there
        mocked = _calls(mock.port, 0)
    finally:
        loop.close_server(mock.server)
    assert mocked == real
    assert not any(isinstance(o, Miss) for o in mock.outputs)
    over = next(o for o in stored if o.get("status") == 8)
    assert over["request_open"] is True and over["request_unfinished"] == LIMIT + MB

"""A gRPC call answered by a gateway, not a gRPC server: nginx's ``grpc_pass`` to an
upstream that is down answers HTTP 502 with an HTML page and no ``grpc-status``; grpcio
makes UNAVAILABLE of the HTTP status. Recorded through devbox's relay, the mock gives the
client the same (it had answered UNIMPLEMENTED: the call was stored as incomplete)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import free_port
from grpc_raw import SERVICE, channel
from grpc_support import start_mock, start_relay
from loop_support import Loop
from nginx_support import nginx


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def _call(port: int) -> Any:
    with channel(port) as ch:
        try:
            return ch.unary_unary(f"/{SERVICE}/Echo")(b"\x0a\x02hi", timeout=10)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            return exc.code(), exc.details()


def test_a_gateway_error_replays_as_the_client_saw_it(tmp_path: Path, loop: Loop) -> None:
    down = free_port()  # nothing listens there
    gateway = f"location /{SERVICE}/ {{ grpc_pass grpc://127.0.0.1:{down}; }}"
    with nginx(tmp_path / "nginx", h2c_opts=gateway) as n:
        direct = _call(n.h2c_port)
        relay = loop.run(start_relay(n.h2c_port))
        try:
            relayed = _call(relay.port)
        finally:
            loop.close_server(relay.server)
    assert direct == (grpc.StatusCode.UNAVAILABLE, "Received http2 header with status: 502")
    assert relayed == direct
    (stored,) = json.loads(json.dumps(relay.stored))
    assert stored["http_status"] == 502 and stored["no_grpc_status"] is True
    assert "status" not in stored and "incomplete" not in stored
    mock = loop.run(start_mock([stored]))
    try:
        assert _call(mock.port) == direct
    finally:
        loop.close_server(mock.server)

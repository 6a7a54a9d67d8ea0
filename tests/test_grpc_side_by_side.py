"""Calls on one gRPC connection run side by side on the mock as on the server: a
server stream replayed with its recorded gaps holds up no other call on the channel.
Recorded from a real grpcio server (``grpc_raw.py``) through devbox's relay, served by
the mock, called by grpcio on one channel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_raw import SERVICE, channel, raw_server
from grpc_support import start_mock, start_relay
from loop_support import Loop

from devbox.wire.contract import Miss


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def _stream(ch: grpc.Channel) -> Any:
    return ch.unary_stream(f"/{SERVICE}/Stream")


def _side_by_side(ch: grpc.Channel) -> list[str]:
    """A slow stream (four messages 0.3 s apart) and, once its first message came, a
    quick one on the same channel: what arrived, in order."""
    events: list[str] = []
    first = threading.Event()

    def slow() -> None:
        for m in _stream(ch)(b"4:0.3", timeout=30):
            events.append(f"slow {m.decode()}")
            first.set()
        events.append("slow done")

    t = threading.Thread(target=slow)
    t.start()
    assert first.wait(10)
    events.extend(f"quick {m.decode()}" for m in _stream(ch)(b"1", timeout=30))
    events.append("quick done")
    t.join(30)
    return events


def test_a_paced_stream_holds_up_no_other_call(loop: Loop) -> None:
    with raw_server() as port:
        with channel(port) as ch:
            real = _side_by_side(ch)
        relay = loop.run(start_relay(port))
        try:
            with channel(relay.port) as ch:
                _side_by_side(ch)
            stored = relay.stored
        finally:
            loop.close_server(relay.server)
    mock = loop.run(start_mock(stored))
    try:
        with channel(mock.port) as ch:
            mocked = _side_by_side(ch)
    finally:
        loop.close_server(mock.server)
    # the quick call is answered while the slow one still waits for its second message
    expected = ["slow m0", "quick m0", "quick done", "slow m1", "slow m2", "slow m3", "slow done"]
    assert real == expected
    assert mocked == expected
    assert not [o for o in mock.outputs if isinstance(o, Miss)]

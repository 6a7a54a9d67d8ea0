"""The gRPC kind with real components: a grpcio server (tests/grpc_server.py, compiled
from tests/data/grpc/routeguide.proto with grpcio-tools at test time) recorded through
the relay by grpcio's Python client and by node's @grpc/grpc-js, then served by the mock
to the same clients: unary, server streaming, client streaming, bidirectional, errors
with status and message, trailers, misses, nth-call sequences, redaction."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_support import (
    PROTO_DIR,
    compile_protos,
    grpc_server,
    load_modules,
    start_mock,
    start_relay,
    wait_stored,
)
from loop_support import Loop

from devbox.wire.contract import Hit, Miss, MockOptions
from devbox.wire.files import value_redactor
from devbox.wire.grpc.kind import GRPC

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / ".devbox-node" / "node_modules"


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_protos(tmp_path_factory.mktemp("grpc-gen"))


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def _calls(pb: Any, pbg: Any, target: str) -> dict[str, Any]:
    """Every call shape once (and the unary one twice), results as comparable values."""
    out: dict[str, Any] = {}
    with grpc.insecure_channel(target) as ch:
        guide, greeter = pbg.RouteGuideStub(ch), pbg.GreeterStub(ch)
        reply, call = greeter.SayHello.with_call(
            pb.HelloRequest(name="Ada"), metadata=[("x-tenant", "acme")]
        )
        out["hello"] = reply.message
        out["hello_meta"] = dict(call.initial_metadata()).get("x-served-by")
        p = pb.Point(latitude=407838351, longitude=-746143763)
        feature, call = guide.GetFeature.with_call(p)
        out["feature"] = feature.name
        out["feature_trailer"] = dict(call.trailing_metadata()).get("x-feature-db")
        out["feature_again"] = guide.GetFeature(p).name
        rect = pb.Rectangle(
            lo=pb.Point(latitude=400000000, longitude=-750000000),
            hi=pb.Point(latitude=420000000, longitude=-730000000),
        )
        out["list"] = [f.name for f in guide.ListFeatures(rect)]
        try:
            guide.GetFeature(pb.Point())
        except grpc.RpcError as exc:
            out["error"] = (exc.code(), exc.details())
        route = [p, pb.Point(latitude=1, longitude=2)]
        summary = guide.RecordRoute(iter(route))
        out["summary"] = (summary.point_count, summary.feature_count, summary.distance)
        notes = [pb.RouteNote(location=pb.Point(latitude=1, longitude=1), message=m) for m in "abc"]
        out["chat"] = [n.message for n in guide.RouteChat(iter(notes))]
    return out


def test_python_client_record_then_mock(gen: Path, loop: Loop) -> None:
    pb, pbg = load_modules(gen)
    with grpc_server(gen) as server:
        real = _calls(pb, pbg, f"127.0.0.1:{server.port}")
        relay = loop.run(start_relay(server.port))
        through_relay = _calls(pb, pbg, f"127.0.0.1:{relay.port}")
        wait_stored(relay.stored, 7)
        loop.close_server(relay.server)
    assert through_relay == real
    assert real["list"] and real["chat"] == ["a", "a", "b"] and real["summary"] == (2, 1, 14)
    assert real["error"] == (grpc.StatusCode.INVALID_ARGUMENT, "no feature at 0,0: über-nowhere")

    stored = relay.stored
    by_method = {(o["method"], o["seq"]): o for o in stored}
    hello = next(o for o in stored if o["method"] == "SayHello")
    assert hello["service"] == "routeguide.Greeter"
    assert hello["metadata"] == {"x-tenant": "acme"}
    assert hello["request"] == [{"1": "Ada"}]
    assert hello["response"] == [{"1": "Hello, Ada!"}]
    assert hello["response_metadata"] == {"x-served-by": "greeter-1"}
    assert (hello["status"], hello["status_name"]) == (0, "OK")
    listing = next(o for o in stored if o["method"] == "ListFeatures")
    assert listing["request"] == [
        {"1": {"1": 400000000, "2": -750000000}, "2": {"1": 420000000, "2": -730000000}}
    ]
    assert [m["1"] for m in listing["response"]] == real["list"]
    assert len(listing["response_at_ms"]) == 4
    error = next(o for o in stored if o.get("status") == 3)
    assert error["grpc_message"] == "no feature at 0,0: über-nowhere"
    assert len(by_method) == 7

    # the server is gone: the mock alone answers exactly as it did
    mock = loop.run(start_mock(stored))
    try:
        assert _calls(pb, pbg, f"127.0.0.1:{mock.port}") == real
        assert sum(isinstance(o, Hit) for o in mock.outputs) == 7
        assert not any(isinstance(o, Miss) for o in mock.outputs)
        with grpc.insecure_channel(f"127.0.0.1:{mock.port}") as ch:
            guide = pbg.RouteGuideStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                guide.GetFeature(pb.Point(latitude=5, longitude=-746143763))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert "$[0].1 recorded 407838351, now 5" in err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                pbg.RouteGuideStub(ch).GetFeature.future(pb.Point()).result()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            unknown = ch.unary_unary("/routeguide.Other/Nope")
            with pytest.raises(grpc.RpcError) as err:
                unknown(b"")
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "recorded methods: /routeguide.Greeter/SayHello" in err.value.details()
        misses = [o for o in mock.outputs if isinstance(o, Miss)]
        assert [m.request.split(" ")[0] for m in misses] == [
            "/routeguide.RouteGuide/GetFeature",
            "/routeguide.Other/Nope",
        ]
    finally:
        loop.close_server(mock.server)


def test_streams_keep_their_recorded_spacing(gen: Path, loop: Loop) -> None:
    pb, pbg = load_modules(gen)
    with grpc_server(gen) as server:
        relay = loop.run(start_relay(server.port))
        rect = pb.Rectangle(
            lo=pb.Point(latitude=400000000, longitude=-750000000),
            hi=pb.Point(latitude=420000000, longitude=-730000000),
        )
        with grpc.insecure_channel(f"127.0.0.1:{relay.port}") as ch:
            list(pbg.RouteGuideStub(ch).ListFeatures(rect))
        wait_stored(relay.stored, 1)
        loop.close_server(relay.server)
    at = relay.stored[0]["response_at_ms"]
    mock = loop.run(start_mock(relay.stored))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{mock.port}") as ch:
            arrived = [
                (time.monotonic(), f.name) for f in pbg.RouteGuideStub(ch).ListFeatures(rect)
            ]
        assert len(arrived) == 4
        # the server slept 10 ms before each message: the mock's messages come as far
        # apart as recorded (the loop wakes the stream for each), not in one write
        assert at[-1] - at[0] >= 25
        assert (arrived[-1][0] - arrived[0][0]) * 1000 >= 0.8 * (at[-1] - at[0])
    finally:
        loop.close_server(mock.server)


def test_nth_call_sequence_and_redaction(gen: Path, loop: Loop) -> None:
    pb, pbg = load_modules(gen)
    redact = value_redactor(None)
    with grpc_server(gen) as server:
        relay = loop.run(start_relay(server.port))
        with grpc.insecure_channel(f"127.0.0.1:{relay.port}") as ch:
            greeter = pbg.GreeterStub(ch)
            key = "sk_live_" + "a1b2c3d4e5f6g7h8i9j0k1l2"
            for name in ("Ada", "Ada"):
                greeter.SayHello(
                    pb.HelloRequest(name=name, api_key=key),
                    metadata=[("authorization", "Bearer abc.def.ghi")],
                )
        wait_stored(relay.stored, 2)
        loop.close_server(relay.server)
    stored = [GRPC.redact(o, redact) for o in relay.stored]
    text = json.dumps(stored)
    assert key not in text and "abc.def.ghi" not in text
    assert stored[0]["metadata"]["authorization"].startswith("<redacted:")
    # recorded twice with different answers: make them differ, the mock follows in order
    stored[1]["response"] = [{"1": "Hello again, Ada!"}]
    mock = loop.run(start_mock(stored, MockOptions(name="greeter", redact_value=redact)))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{mock.port}") as ch:
            greeter = pbg.GreeterStub(ch)
            got = [
                greeter.SayHello(pb.HelloRequest(name="Ada", api_key=key)).message for _ in range(3)
            ]
        assert got == ["Hello, Ada!", "Hello again, Ada!", "Hello again, Ada!"]
    finally:
        loop.close_server(mock.server)


def test_node_grpc_js_client_record_then_mock(gen: Path, loop: Loop, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is missing: scripts/setup installs nodejs"
    assert (NODE_MODULES / "@grpc" / "grpc-js").is_dir(), "scripts/setup installs @grpc/grpc-js"
    script = tmp_path / "client.js"
    shutil.copy(PROTO_DIR / "client.js", script)
    shutil.copy(PROTO_DIR / "routeguide.proto", tmp_path / "routeguide.proto")
    env = {"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/bin:/bin"}

    def run(port: int) -> dict[str, Any]:
        done = subprocess.run(
            [node, str(script), f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return dict(json.loads(done.stdout))

    with grpc_server(gen) as server:
        real = run(server.port)
        relay = loop.run(start_relay(server.port))
        recorded = run(relay.port)
        wait_stored(relay.stored, 5)
        loop.close_server(relay.server)
    assert recorded == real
    assert real["hello"] == {"message": "Hello, node!"}
    assert real["error"] == {"code": 3, "details": "no feature at 0,0: über-nowhere"}
    assert len(real["list"]) == 4 and [n["message"] for n in real["chat"]] == ["a"]
    mock = loop.run(start_mock(relay.stored))
    try:
        assert run(mock.port) == real
    finally:
        loop.close_server(mock.server)

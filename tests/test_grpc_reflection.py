"""Server reflection through devbox: grpcurl, Postman, Evans and grpc-ui discover a
service by asking its server (``grpc.reflection.v1alpha.ServerReflection``, one
bidirectional stream of questions and answers) before they call it. Real parts: a grpcio
server with grpcio-reflection's service, the routeguide descriptors compiled by
grpcio-tools, and grpcio-reflection's own client (``ProtoReflectionDescriptorDatabase``
behind a ``DescriptorPool``), through devbox's gRPC recording relay and then against
the mock made from that recording."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor_pool import DescriptorPool  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_support import compile_protos, load_modules, start_mock, through_relay
from loop_support import Loop

from devbox.wire.contract import Miss


@contextmanager
def reflection_server(tmp_path: Path) -> Iterator[int]:
    """A grpcio server in this process offering reflection of RouteGuide (compiled by
    grpcio-tools) and of itself; yields its port."""
    pb, _ = load_modules(compile_protos(tmp_path / "gen"))
    server = grpc.server(futures.ThreadPoolExecutor(4))
    names = (pb.DESCRIPTOR.services_by_name["RouteGuide"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port: int = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0).wait(5)


def _discover(port: int) -> dict[str, Any]:
    """What a reflection client learns: the services, RouteGuide's methods with their
    types, and Point's and Feature's fields."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(db.get_services())
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName("routeguide.RouteGuide")
        methods = {
            m.name: (m.input_type.full_name, m.output_type.full_name, m.server_streaming)
            for m in svc.methods
        }
        fields = {
            name: [(f.name, f.number, f.type) for f in pool.FindMessageTypeByName(name).fields]
            for name in ("routeguide.Point", "routeguide.Feature")
        }
    return {"services": services, "methods": methods, "fields": fields}


def test_a_reflection_client_discovers_the_service_through_the_relay_and_from_the_mock(
    tmp_path: Path, loop: Loop
) -> None:
    with reflection_server(tmp_path) as port:
        direct = _discover(port)
        relayed, relay = through_relay(loop, port, _discover, 1)
    assert direct["services"] == [
        "grpc.reflection.v1alpha.ServerReflection",
        "routeguide.RouteGuide",
    ]
    assert direct["methods"]["RouteChat"] == ("routeguide.RouteNote", "routeguide.RouteNote", True)
    assert relayed == direct

    calls = [o for o in relay.stored if o.get("method") == "ServerReflectionInfo"]
    # grpcio-reflection's client reads its one answer and drops the stream: the server's
    # OK comes first, or the client's CANCEL does (recorded as such, the answer kept)
    assert len(calls) == 2 and all(len(o["response"]) == 1 for o in calls)
    assert all(o.get("status") == 0 or (o["reset"], o["reset_by"]) == (8, "client") for o in calls)
    mock = loop.run(start_mock(relay.stored))
    try:
        mocked = _discover(mock.port)
    finally:
        loop.close_server(mock.server)
    assert mocked == direct
    assert [o for o in mock.outputs if isinstance(o, Miss)] == []


def _ask(port: int, pb2: Any, grpc_mod: Any, half_close: bool) -> bytes:
    """One reflection question; the client reads the answer and cancels. Without
    ``half_close`` the stream stays open until then, as grpcio-reflection's client leaves
    it when its cancel wins the race with its half-close."""
    stop = threading.Event()

    def questions() -> Iterator[Any]:
        yield pb2.ServerReflectionRequest(list_services="")
        if not half_close:
            stop.wait(10)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = grpc_mod.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(questions(), timeout=10)
        first = next(answers)
        answers.cancel()
        stop.set()
    data: bytes = first.SerializeToString()
    return data


def test_a_call_cancelled_after_its_answer_with_the_request_still_open_is_served(
    tmp_path: Path, loop: Loop
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with reflection_server(tmp_path) as port:
        ask = functools.partial(_ask, pb2=reflection_pb2, grpc_mod=reflection_pb2_grpc)
        recorded, relay = through_relay(loop, port, functools.partial(ask, half_close=False), 1)
    [call] = relay.stored
    assert call["request_open"] and (call["reset"], call["reset_by"]) == (8, "client")
    assert len(call["response"]) == 1
    mock = loop.run(start_mock(relay.stored))
    try:
        # the mock answers a client stream once it is half-closed (docs/grpc.md, Limits)
        mocked = ask(mock.port, half_close=True)
    finally:
        loop.close_server(mock.server)
    assert mocked == recorded


def _converse(
    port: int, pb2: Any, grpc_mod: Any, questions: list[Any], wait: bool = True
) -> list[bytes]:
    """grpcurl's way: one reflection stream, each question sent once the answer to the
    one before it came (``wait=False``: all at once, then the half-close); the answers
    as bytes (or the status the call ended with)."""
    answered: queue.Queue[bool] = queue.Queue()

    def asking() -> Iterator[Any]:
        for q in questions:
            yield q
            if wait:
                answered.get(timeout=10)

    got: list[bytes] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = grpc_mod.ServerReflectionStub(channel)
        try:
            for answer in stub.ServerReflectionInfo(asking(), timeout=10):
                got.append(answer.SerializeToString())
                answered.put(True)
        except grpc.RpcError as exc:
            got.append(f"{exc.code().name}: {exc.details()}".encode())
    return got


def test_a_conversation_on_one_stream_is_answered_message_by_message(
    tmp_path: Path, loop: Loop
) -> None:
    """Each question waits for the answer before it: a mock that answered at the
    half-close alone left the client waiting for ever (its deadline ended the call)."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    ask = reflection_pb2.ServerReflectionRequest
    questions = [
        ask(list_services=""),
        ask(file_containing_symbol="routeguide.RouteGuide"),
        ask(file_containing_symbol="routeguide.Point"),
    ]
    talk = functools.partial(_converse, pb2=reflection_pb2, grpc_mod=reflection_pb2_grpc)
    with reflection_server(tmp_path) as port:
        direct = talk(port, questions=questions)
        relayed, relay = through_relay(loop, port, functools.partial(talk, questions=questions), 1)
    assert len(direct) == 3 and relayed == direct
    [call] = relay.stored
    assert len(call["request_at_ms"]) == 3 and call["response_at_ms"][0] < call["request_at_ms"][1]

    mock = loop.run(start_mock(relay.stored))
    try:
        mocked = talk(mock.port, questions=questions)
        # a second question the recording does not hold: the first answer, then a miss
        other = [questions[0], ask(file_containing_symbol="routeguide.Nothing")]
        strayed = talk(mock.port, questions=other)
        # begun unlike any conversation: nothing is answered before the half-close, not
        # even the later message a recorded conversation begins with
        late = [ask(file_containing_symbol="routeguide.Nothing"), questions[0]]
        late_answers = talk(mock.port, questions=late, wait=False)
    finally:
        loop.close_server(mock.server)
    assert mocked == direct
    assert strayed[0] == direct[0]
    assert strayed[1].startswith(b"NOT_FOUND: devbox: the conversation left the recorded one")
    assert len(late_answers) == 1 and late_answers[0].startswith(b"NOT_FOUND: devbox: no recorded")
    nothing = '{"4":"routeguide.Nothing"}'
    assert [o.request for o in mock.outputs if isinstance(o, Miss)] == [
        f"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo {nothing}",
        f'/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo {nothing} {{"7":""}}',
    ]


def test_branches_and_a_single_question_on_a_path_with_conversations(
    tmp_path: Path, loop: Loop
) -> None:
    """Found by an adversarial run: a client asking [q0, q2] when [q0, q1, q2] and
    [q0, q2] were both recorded followed the first one it began like and got NOT_FOUND;
    a one-question stream got the conversation's start, then NOT_FOUND. The mock now
    moves to the recorded branch that went as this one has, answers included, and ends
    a request that is another recorded call whole with that call's answer."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    ask = reflection_pb2.ServerReflectionRequest
    q0, q1, q2 = (
        ask(list_services=""),
        ask(file_containing_symbol="routeguide.RouteGuide"),
        ask(file_containing_symbol="routeguide.Point"),
    )
    scripts = {"long": [q0, q1, q2], "branch": [q0, q2], "single": [q0]}
    talk = functools.partial(_converse, pb2=reflection_pb2, grpc_mod=reflection_pb2_grpc)

    def all_of(port: int) -> dict[str, list[bytes]]:
        return {name: talk(port, questions=qs) for name, qs in scripts.items()}

    with reflection_server(tmp_path) as port:
        direct = all_of(port)
        relayed, relay = through_relay(loop, port, all_of, 3)
    assert relayed == direct
    assert ["request_at_ms" in o for o in relay.stored] == [True, True, False]
    mock = loop.run(start_mock(relay.stored))
    try:
        # the shorter ones first: each begins as the long conversation does
        mocked = {name: talk(mock.port, questions=scripts[name]) for name in reversed(scripts)}
    finally:
        loop.close_server(mock.server)
    assert mocked == direct
    assert [o for o in mock.outputs if isinstance(o, Miss)] == []

"""The gRPC mock's conversations, driven by the ``h2`` package as a client in this
process (it raises on any protocol error the mock would make: DATA after the trailers,
HEADERS twice). Recordings here are devbox's own format, written as the recorder writes
a conversation (``request_at_ms``: the server answered before the client's last message).
Cases an adversarial run found: a reset of the mock's counters (the edit loop resets
before each replay) in the middle of a conversation raised ``KeyError`` at the next
branch switch; identical conversations were followed round and round instead of in turn
and then the last again."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events

from devbox.wire.contract import Miss, MockOptions, Reply
from devbox.wire.grpc import codec, protobuf
from devbox.wire.grpc.kind import GRPC
from devbox.wire.grpc.store import GrpcIndex


def _talk(questions: str, answers: str) -> dict[str, Any]:
    """A conversation: each answer came before the next question."""
    n = len(questions)
    return {
        "service": "t.S",
        "method": "Talk",
        "request": [{"1": q} for q in questions],
        "request_at_ms": [10.0 * i for i in range(n)],
        "response": [{"1": a} for a in answers],
        "response_at_ms": [10.0 * i + 5 for i in range(len(answers))],
        "status": 0,
        "latency_ms": 10.0 * n,
    }


class _Client:
    def __init__(self, stored: list[dict[str, Any]]) -> None:
        index = GRPC.load([("rec.json", i + 2, o) for i, o in enumerate(stored)])
        assert isinstance(index, GrpcIndex)
        self.index = index
        self.mock = GRPC.mock_connection(index, MockOptions(name="t"))
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config)
        self.h2.initiate_connection()
        self.answers: dict[int, list[str]] = {}
        self.status: dict[int, str] = {}
        self._pump()

    def _pump(self) -> None:
        for out in self.mock.data_received(self.h2.data_to_send()):
            if isinstance(out, Reply | Miss) and out.data:
                for ev in self.h2.receive_data(out.data):
                    if isinstance(ev, h2.events.DataReceived):
                        self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        frames, _rest = codec.split_messages(ev.data)
                        got = self.answers.setdefault(ev.stream_id, [])
                        got += [protobuf.to_json(p)["1"] for _c, p in frames]
                    elif isinstance(ev, h2.events.TrailersReceived):
                        fields: Any = dict(ev.headers)  # str: the header_encoding
                        self.status[ev.stream_id] = fields["grpc-status"]

    def open(self) -> int:
        sid: int = self.h2.get_next_available_stream_id()
        head = [(":method", "POST"), (":scheme", "http"), (":path", "/t.S/Talk")]
        self.h2.send_headers(
            sid, [*head, (":authority", "x"), ("content-type", "application/grpc")]
        )
        return sid

    def say(self, sid: int, question: str, end: bool = False) -> list[str]:
        self.h2.send_data(sid, codec.frame(protobuf.from_json({"1": question})), end_stream=end)
        self._pump()
        return self.answers.get(sid, [])

    def end(self, sid: int) -> tuple[list[str], str | None]:
        self.h2.end_stream(sid)
        self._pump()
        return self.answers.get(sid, []), self.status.get(sid)

    def converse(self, questions: str) -> tuple[str, str | None]:
        sid = self.open()
        for q in questions:
            self.say(sid, q)
        answers, status = self.end(sid)
        return "".join(answers), status


def test_a_reset_in_the_middle_of_a_conversation_then_a_branch_switch() -> None:
    client = _Client([_talk("ab", "AB"), _talk("ac", "AC")])
    sid = client.open()
    assert client.say(sid, "a") == ["A"]
    client.index.reset()  # what the edit loop does before each replay
    assert client.say(sid, "c") == ["A", "C"]
    assert client.end(sid) == (["A", "C"], "0")
    assert client.converse("ab") == ("AB", "0")


def test_identical_conversations_in_turn_then_the_last_again() -> None:
    client = _Client([_talk("ab", "AB"), _talk("ab", "CD"), _talk("ab", "EF")])
    assert [client.converse("ab")[0] for _ in range(5)] == ["AB", "CD", "EF", "EF", "EF"]
    client.index.reset()
    assert client.converse("ab")[0] == "AB"


def test_three_branches_after_a_shared_start() -> None:
    stored = [_talk("abc", "ABC"), _talk("abd", "ABD"), _talk("ae", "AE")]
    for questions, answers in (("abd", "ABD"), ("ae", "AE"), ("abc", "ABC")):
        assert _Client(stored).converse(questions) == (answers, "0")
    # a client that leaves them all: the answers so far, then NOT_FOUND
    assert _Client(stored).converse("ax") == ("A", str(codec.NOT_FOUND))

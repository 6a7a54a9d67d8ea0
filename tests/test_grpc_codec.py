"""The gRPC kind in-process, with bytes: schemaless protobuf decoding that encodes back
byte-identical (short hypothesis runs over arbitrary bytes, generated messages and real
protobuf messages), gRPC message framing, the passive HTTP/2 reader under arbitrary
splits, and the mock connection driven by h2's own client."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import orjson
import pytest
from grpc_support import compile_protos, load_modules
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.wire.contract import Hit, Miss, MockOptions, Reply
from devbox.wire.grpc import codec, protobuf
from devbox.wire.grpc.http2 import DataEvent, FrameReader, HeadersEvent
from devbox.wire.grpc.kind import GRPC
from devbox.wire.grpc.protobuf import encode_varint

# ---------------------------------------------------------------- protobuf


def _through_json(value: Any) -> Any:
    """What a recording file gives back (orjson, as the writer uses)."""
    return orjson.loads(orjson.dumps(value))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_round_trip(data: bytes) -> None:
    assert protobuf.from_json(_through_json(protobuf.to_json(data))) == data


def _field(number: int, wt: int, value: Any) -> bytes:
    tag = encode_varint(number << 3 | wt)
    payload: bytes
    if wt == 0:
        payload = encode_varint(value)
    elif wt == 1:
        payload = value.to_bytes(8, "little")
    elif wt == 5:
        payload = value.to_bytes(4, "little")
    else:
        payload = encode_varint(len(value)) + value
    return tag + payload


_scalar = st.one_of(
    st.tuples(st.just(0), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(1), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(5), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(2), st.text(max_size=12).map(lambda s: s.encode())),
    st.tuples(st.just(2), st.binary(max_size=12)),
)


@st.composite
def messages(draw: Any, depth: int = 0) -> bytes:
    out = b""
    numbers = sorted(draw(st.sets(st.integers(1, 2**29 - 1), max_size=4 - depth)))
    for number in numbers:
        for _ in range(draw(st.integers(1, 2))):
            if depth < 2 and draw(st.booleans()):
                out += _field(number, 2, draw(messages(depth + 1)))
            else:
                wt, value = draw(_scalar)
                out += _field(number, wt, value)
    return out


@settings(max_examples=200, deadline=None)
@given(messages())
def test_generated_messages_decode_and_round_trip(data: bytes) -> None:
    decoded = protobuf.to_json(data)
    assert "base64" not in decoded or data[:1] == b""  # well-formed: shown field by field
    assert protobuf.from_json(_through_json(decoded)) == data


def test_readable_forms() -> None:
    data = (
        _field(1, 2, b"Ada")
        + _field(2, 0, 42)
        + _field(3, 2, _field(1, 0, 7))
        + _field(4, 0, 1)
        + _field(4, 0, 2)
        + _field(5, 1, 9)
        + _field(6, 2, b"\x00\xff")
        + _field(7, 0, 2**64 - 5)
    )
    assert protobuf.to_json(data) == {
        "1": "Ada",
        "2": 42,
        "3": {"1": 7},
        "4": [1, 2],
        "5": {"fixed64": 9},
        "6": {"base64": "AP8="},
        "7": -5,
    }


def test_what_no_object_can_show_is_kept_whole() -> None:
    interleaved = _field(1, 0, 1) + _field(2, 0, 2) + _field(1, 0, 3)
    overlong = b"\x08\x81\x00"  # field 1 = 1, written in two bytes
    for data in (interleaved, overlong, b"\x0b\x0c"):  # the last: a group
        stored = protobuf.to_json(data)
        assert set(stored) == {"base64"}
        assert protobuf.from_json(stored) == data


def test_bad_stored_message_names_the_field() -> None:
    with pytest.raises(protobuf.ProtobufError) as err:
        protobuf.from_json({"1": {"2": 1.5}})
    assert err.value.field == "$.1.2"
    # a key of digits that are not ASCII ones ("²".isdigit() is true, int("²") fails)
    with pytest.raises(protobuf.ProtobufError) as err:
        protobuf.from_json({"1": {"\u00b2": 1}})
    assert err.value.field == "$.1.\u00b2"


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_modules(compile_protos(tmp_path_factory.mktemp("gen")))[0]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=30), st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1))
def test_real_protobuf_messages_round_trip(pb: Any, name: str, lat: int, lon: int) -> None:
    msg = pb.Feature(name=name, location=pb.Point(latitude=lat, longitude=lon))
    data = msg.SerializeToString()
    stored = _through_json(protobuf.to_json(data))
    assert protobuf.from_json(stored) == data
    assert pb.Feature.FromString(protobuf.from_json(stored)) == msg


# ---------------------------------------------------------------- framing


def test_message_framing_split_anywhere() -> None:
    payloads = [b"", b"\x08\x01", b"x" * 300]
    wire = b"".join(codec.frame(p) for p in payloads) + codec.frame(b"zz", compressed=True)
    for cut in range(len(wire) + 1):
        first, rest = codec.split_messages(wire[:cut])
        more, left = codec.split_messages(rest + wire[cut:])
        assert left == b""
        assert first + more == [(False, p) for p in payloads] + [(True, b"zz")]
    stored = codec.message_json(True, b"zz")
    assert stored == {"compressed": True, "base64": base64.b64encode(b"zz").decode()}
    assert codec.message_bytes(stored, "$") == codec.frame(b"zz", compressed=True)


def test_grpc_message_percent_encoding() -> None:
    text = "no feature at 0,0: über 100%\n"
    assert codec.decode_grpc_message(codec.encode_grpc_message(text)) == text
    assert codec.encode_grpc_message("plain text") == "plain text"


# ---------------------------------------------------------------- HTTP/2


def _client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return conn


def _call(conn: h2.connection.H2Connection, path: str, body: bytes, extra: int = 0) -> int:
    sid = conn.get_next_available_stream_id()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] + [(f"x-pad-{i}", "v" * 200) for i in range(extra)]
    conn.send_headers(sid, headers)
    conn.send_data(sid, body, end_stream=True)
    return sid


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=30))
def test_frame_reader_under_arbitrary_splits(cuts: list[int]) -> None:
    client = _client()
    body = codec.frame(b"\x0a\x03Ada")
    _call(client, "/routeguide.Greeter/SayHello", body)
    _call(client, "/routeguide.Greeter/SayHello", body, extra=100)  # CONTINUATION frames
    wire = client.data_to_send()
    reader = FrameReader(from_client=True)
    events: list[Any] = []
    pos = 0
    for cut in cuts:
        events += reader.feed(wire[pos : pos + cut])
        pos += cut
    events += reader.feed(wire[pos:])
    heads = [e for e in events if isinstance(e, HeadersEvent)]
    datas = [e for e in events if isinstance(e, DataEvent)]
    assert [dict(h.headers)[":path"] for h in heads] == ["/routeguide.Greeter/SayHello"] * 2
    assert len(heads[1].headers) == 106
    assert [d.data for d in datas] == [body, body] and all(d.end_stream for d in datas)


def _stored_call(**extra: Any) -> dict[str, Any]:
    obj = {
        "seq": 1,
        "service": "routeguide.Greeter",
        "method": "SayHello",
        "request": [{"1": "Ada"}],
        "response": [{"1": "Hello, Ada!"}],
        "response_at_ms": [1.0],
        "latency_ms": 1.0,
        "status": 0,
    }
    obj.update(extra)
    return obj


def _answers(stored: list[dict[str, Any]], bodies: list[tuple[str, bytes]]) -> Any:
    index = GRPC.load([("r.json", i + 2, o) for i, o in enumerate(stored)])
    mock = GRPC.mock_connection(index, MockOptions(name="greeter"))
    client = _client()
    outputs = mock.data_received(client.data_to_send())
    for path, body in bodies:
        _call(client, path, body)
    outputs += mock.data_received(client.data_to_send())
    events: list[Any] = []
    for out in outputs:
        if isinstance(out, Reply | Miss):
            events += client.receive_data(out.data)
    return outputs, events


def test_mock_connection_answers_nth_call_and_misses() -> None:
    second = _stored_call(seq=2, response=[{"1": "Hello again, Ada!"}])
    hello = codec.frame(protobuf.from_json({"1": "Ada"}))
    outputs, events = _answers(
        [_stored_call(), second],
        [
            ("/routeguide.Greeter/SayHello", hello),
            ("/routeguide.Greeter/SayHello", hello),
            ("/routeguide.Greeter/SayHello", hello),  # then the last one again
            ("/routeguide.Greeter/SayHello", codec.frame(protobuf.from_json({"1": "Bob"}))),
            ("/routeguide.Greeter/Nope", hello),
        ],
    )
    data = [e.data for e in events if isinstance(e, h2.events.DataReceived)]
    assert [protobuf.to_json(d[5:]) for d in data] == [
        {"1": "Hello, Ada!"},
        {"1": "Hello again, Ada!"},
        {"1": "Hello again, Ada!"},
    ]
    trailers = [dict(e.headers) for e in events if isinstance(e, h2.events.TrailersReceived)]
    assert [t[b"grpc-status"] for t in trailers] == [b"0", b"0", b"0"]
    # the misses: trailers-only responses (one HEADERS block that ends the stream)
    ends = [
        dict(e.headers)
        for e in events
        if isinstance(e, h2.events.ResponseReceived) and e.stream_ended is not None
    ]
    assert [h[b"grpc-status"] for h in ends] == [b"5", b"12"]
    assert b"recorded%20%22Ada%22" not in ends[0][b"grpc-message"]  # spaces stay readable
    assert b'$[0].1 recorded "Ada", now "Bob"' in ends[0][b"grpc-message"]
    misses = [o for o in outputs if isinstance(o, Miss)]
    assert [m.request for m in misses] == [
        '/routeguide.Greeter/SayHello {"1":"Bob"}',
        '/routeguide.Greeter/Nope {"1":"Ada"}',
    ]
    assert "recorded methods: /routeguide.Greeter/SayHello" in misses[1].explanation
    assert sum(isinstance(o, Hit) for o in outputs) == 3


def test_ignore_rules_by_field_path() -> None:
    stored = [_stored_call(request=[{"1": "Ada", "2": "req-1"}])]
    index = GRPC.load([("r.json", 2, o) for o in stored])
    options = MockOptions(name="greeter", match={"ignore_body": ("$.2",)})
    mock = GRPC.mock_connection(index, options)
    client = _client()
    mock.data_received(client.data_to_send())
    _call(
        client,
        "/routeguide.Greeter/SayHello",
        codec.frame(protobuf.from_json({"1": "Ada", "2": "req-9"})),
    )
    outputs = mock.data_received(client.data_to_send())
    assert [type(o).__name__ for o in outputs][:1] == ["Hit"]


def test_a_bad_stored_call_names_file_line_and_field(tmp_path: Path) -> None:
    from devbox.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        GRPC.load([("r.json", 7, _stored_call(response=[{"1": {"fixed64": "x"}}]))])
    assert (err.value.file, err.value.line, err.value.field) == ("r.json", 7, "response[0].1")


def test_not_http2_is_refused_by_the_mock_and_relayed_by_the_recorder() -> None:
    index = GRPC.load([])
    mock = GRPC.mock_connection(index, MockOptions(name="greeter"))
    outputs = mock.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(outputs) == 1 and isinstance(outputs[0], Reply) and outputs[0].close
    rec = GRPC.recorder_connection()
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert rec.from_client(data).to_upstream == data  # passed on untouched
    assert rec.from_upstream(b"HTTP/1.1 200 OK\r\n\r\n").to_client == b"HTTP/1.1 200 OK\r\n\r\n"
    assert rec.close() == []


def test_recorder_stores_a_call_from_both_directions_in_any_split() -> None:
    client = _client()
    sid = _call(client, "/routeguide.Greeter/SayHello", codec.frame(b"\x0a\x03Ada"))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    up = client.data_to_send()
    server.receive_data(up)
    server.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    server.send_data(sid, codec.frame(b"\x0a\x0bHello, Ada!"))
    server.send_headers(sid, [("grpc-status", "0"), ("x-db", "v1")], end_stream=True)
    down = server.data_to_send()
    rec = GRPC.recorder_connection()
    for i in range(0, len(up), 7):
        rec.from_client(up[i : i + 7])
    for i in range(0, len(down), 5):
        rec.from_upstream(down[i : i + 5])
    (call,) = rec.take_stored()
    assert (call["service"], call["method"]) == ("routeguide.Greeter", "SayHello")
    assert call["request"] == [{"1": "Ada"}] and call["response"] == [{"1": "Hello, Ada!"}]
    assert (call["status"], call["trailers"]) == (0, {"x-db": "v1"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_at_ms", [0, 10**400]),  # an integer no float holds: was OverflowError
        ("request_at_ms", ["soon"]),
        ("response_at_ms", [10**400]),
        ("latency_ms", 10**400),
    ],
)
def test_times_too_large_or_not_numbers_name_their_field(field: str, value: Any) -> None:
    from devbox.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        GRPC.load([("r.json", 3, _stored_call(**{field: value}))])
    assert (err.value.file, err.value.line, err.value.field) == ("r.json", 3, field)

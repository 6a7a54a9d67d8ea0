"""The on-disk recording format: round trips, body encodings, torn tails, corruption, migration."""

from __future__ import annotations

import gc
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.core import recording
from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.core.recorded_body import decode_body, encode_body
from devbox.core.recording import (
    FORMAT_VERSION,
    RecordingHeader,
    decode,
    encode,
    exchange_to_text,
    header_to_text,
)
from devbox.errors import RecordingError

HEADER = RecordingHeader(source="payments", direction=Direction.OUTBOUND, created_at="2024-03-01")


def ex(i: int = 1, **kw: Any) -> Exchange:
    base: dict[str, Any] = {
        "id": f"ex-{i}",
        "direction": Direction.OUTBOUND,
        "source": "payments",
        "request": Request(
            "POST",
            "/charges",
            (("expand", "customer"), ("q", "a b&c")),
            (("Host", "payments:8081"), ("Content-Type", "application/json")),
            b'{"amount":1999,"currency":"eur"}',
            host="payments:8081",
        ),
        "response": Response(
            201,
            (("Content-Type", "application/json"), ("X-Request-Id", f"r{i}")),
            b'{"id": "ch_1", "status": "succeeded"}',
            reason="Created",
        ),
        "timing": Timing(started_at=1709284502.123456, duration_ms=12.5, wait_ms=11.25),
        "parent": "in-1",
        "origin": "devbox record",
    }
    base.update(kw)
    return Exchange(**base)


VARIETY = [
    ex(1),
    ex(2, response=None, error="connection refused", parent=None),
    ex(
        3,
        request=Request("GET", "/items/KB-101", (), (), b"", host="inventory"),
        response=Response(200, (), "caf\u00e9 \u2603".encode()),
    ),
    ex(4, response=Response(200, (("Content-Type", "image/png"),), b"\x89PNG\r\n\x1a\n\x00\xff")),
    ex(5, response=Response(200, (), b'{"a": [1, 2], "b": "\\u00e9"}')),  # json.dumps default
    ex(6, response=Response(204, (), b""), request_truncated=True, response_truncated=True),
    ex(
        7,
        request=Request("GET", "/", (), (), b"", host="h", http_version="HTTP/2"),
        response=Response(200, (), b"[1,2,3]", http_version="HTTP/2"),
    ),
    ex(8, direction=Direction.INBOUND, source="inbound", timing=Timing(0.0, 0.0, None)),
    ex(9, response=Response(200, (), b"{not json")),
    ex(10, response=Response(200, (), b'{"x":1.5e300,"y":[{}],"z":null}')),
]


def roundtrip(exchanges: list[Exchange], header: RecordingHeader = HEADER) -> list[Exchange]:
    return list(decode(encode(header, exchanges)).exchanges)


def test_round_trip_keeps_every_field() -> None:
    assert roundtrip(VARIETY) == VARIETY


def test_body_encodings_are_readable() -> None:
    assert encode_body(b"") is None
    assert encode_body(b'{"a":1}') == {"json": {"a": 1}}
    spaced = {"json": {"a": 1, "b": [1, 2]}, "style": "spaced"}
    assert encode_body(b'{"a": 1, "b": [1, 2]}') == spaced
    assert encode_body(b'{"e": "\\u00e9"}') == {"json": {"e": "\u00e9"}, "style": "spaced-ascii"}
    # JSON whose bytes no encoder reproduces stays text: bytes are never altered
    assert encode_body(b'{ "a" : 1 }') == {"text": '{ "a" : 1 }'}
    assert encode_body("h\u00e9".encode()) == {"text": "h\u00e9"}
    assert encode_body(b"\xff\xfe") == {"base64": "//4="}
    for body in (b'{"a":1}', b'{"a": 1, "b": [1, 2]}', b'{"e": "\\u00e9"}', b"\xff", b"x"):
        spec = encode_body(body)
        assert decode_body(spec, "b") == body


def test_bad_bodies_are_errors() -> None:
    with pytest.raises(RecordingError, match="one of json, text, base64"):
        decode_body({"yaml": "x"}, "w")
    with pytest.raises(RecordingError, match="invalid base64"):
        decode_body({"base64": "!!"}, "w")
    with pytest.raises(RecordingError, match="unknown JSON body style"):
        decode_body({"json": 1, "style": "tabs"}, "w")
    with pytest.raises(RecordingError, match="must be an object"):
        decode_body("text", "w")


def test_layout_is_a_reviewable_json_stream() -> None:
    text = encode(HEADER, VARIETY[:2]).decode()
    # jq-compatible: a stream of whole JSON objects
    dec = json.JSONDecoder()
    objs, i = [], 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text):
            obj, i = dec.raw_decode(text, i)
            objs.append(obj)
    assert objs[0]["devbox_recording"] is True and objs[0]["format"] == FORMAT_VERSION
    assert [o["id"] for o in objs[1:]] == ["ex-1", "ex-2"]
    # each exchange closes with "}" at column 0; one header per line
    assert text.count("\n}\n") == 3
    assert '      ["Host", "payments:8081"],\n' in text
    assert '"url": "http://payments:8081/charges?expand=customer&q=a+b%26c"' in text


def test_headers_with_quotes_survive_the_one_line_layout() -> None:
    tricky = ex(
        1,
        request=Request(
            "GET", "/", (), (("X-Q", 'say "hi" \\ [ok], "x"'), ("E", "")), b"", host="h"
        ),
    )
    text = exchange_to_text(tricky)
    assert b'["X-Q", "say \\"hi\\" \\\\ [ok], \\"x\\""]' in text
    assert roundtrip([tricky]) == [tricky]


exchanges_strategy = st.builds(
    lambda i, method, path, query, headers, body, status, rbody, dur: ex(
        i,
        request=Request(method, path, tuple(query), tuple(headers), body, host="h:1"),
        response=Response(status, tuple(headers), rbody),
        timing=Timing(1700000000.0 + i, dur, None),
    ),
    st.integers(0, 10**6),
    st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    st.from_regex(r"\A/[a-z0-9/_%-]{0,20}\Z"),
    st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=3),
    st.lists(st.tuples(st.from_regex(r"\A[A-Za-z-]{1,10}\Z"), st.text(max_size=20)), max_size=4),
    st.binary(max_size=64) | st.just(b'{"k": [1, {"n": null}]}'),
    st.integers(100, 599),
    st.binary(max_size=64) | st.text(max_size=30).map(str.encode),
    st.floats(0, 1e5).map(lambda f: round(f, 3)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(exchanges_strategy, max_size=4))
def test_round_trip_property(exchanges: list[Exchange]) -> None:
    assert roundtrip(exchanges) == exchanges


def test_truncated_at_every_offset_loads_every_complete_exchange() -> None:
    exchanges = [VARIETY[0], VARIETY[2], VARIETY[3]]
    head = header_to_text(HEADER)
    data = encode(HEADER, exchanges)
    ends, pos = [], len(head)
    for e in exchanges:
        pos += len(exchange_to_text(e))
        ends.append(pos - 1)  # the closing "}" (the newline after it is optional)
    for cut in range(len(head), len(data) + 1):
        d = decode(data[:cut], "rec.json")
        complete = sum(1 for end in ends if end <= cut)
        assert list(d.exchanges) == exchanges[:complete], cut
        last_end = max([len(head) - 1, *(end for end in ends if end <= cut)])
        partial = data[last_end + 1 : cut].strip() != b""
        assert d.torn_tail == partial, cut


def test_corruption_in_the_middle_is_an_error_with_a_line() -> None:
    data = encode(HEADER, VARIETY[:3]).decode()
    lines = data.splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if '"id": "ex-2"' in line)
    lines[target] = lines[target].replace('"id": "ex-2",', '"id": "ex-2",,')
    with pytest.raises(RecordingError) as info:
        decode("".join(lines).encode(), "rec.json")
    assert info.value.file == "rec.json"
    assert info.value.line is not None and abs(info.value.line - (target + 1)) <= 1
    assert "invalid JSON" in info.value.message


def test_a_complete_but_broken_last_object_is_not_a_torn_tail() -> None:
    data = encode(HEADER, VARIETY[:2]).decode()
    broken = data.replace('"error": "connection refused"', '"error": "connection refused",')
    with pytest.raises(RecordingError, match="invalid JSON"):
        decode(broken.encode(), "rec.json")


def test_semantic_errors_name_line_and_field() -> None:
    text = encode(HEADER, VARIETY[:2]).decode()
    first = header_to_text(HEADER).count(b"\n") + 1  # the "{" line of the first exchange
    bad = text.replace('"status": 201', '"status": "lots"')
    with pytest.raises(RecordingError) as info:
        decode(bad.encode(), "r.json")
    assert info.value.line == first and info.value.field == "exchange[0]"
    assert "malformed exchange" in info.value.message
    missing = text.replace('"method": "POST",', "", 2)
    with pytest.raises(RecordingError) as info:
        decode(missing.encode(), "r.json")
    assert info.value.field == "exchange[0]"
    assert "missing required key 'method'" in info.value.message
    nourl = text.replace(
        '"url": "http://payments:8081/charges?expand=customer&q=a+b%26c"', '"url": 5'
    )
    with pytest.raises(RecordingError) as info:
        decode(nourl.encode(), "r.json")
    assert info.value.field == "exchange[0].request.url"
    second = text.replace(
        '"url": "http://payments:8081/charges?expand=customer&q=a+b%26c"', '"url": 5', 2
    ).replace('"url": 5', '"url": "http://x/"', 1)
    with pytest.raises(RecordingError) as info:
        decode(second.encode(), "r.json")
    assert info.value.field == "exchange[1].request.url"
    assert info.value.line == text[: text.index('"id": "ex-2"')].count("\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty recording"),
        (b"  \n", "empty recording"),
        (b'{"id": "x"}\n', "first object must be the header"),
        (b'{"devbox_recording": true, "format": 99}\n', "unsupported format version 99"),
        (b'{"devbox_recording": true, "format": 1, "direction": "sideways"}\n', "sideways"),
        (b'{"devbox_recording": true, "format": 1}\n[1, 2]\n', "expected an exchange object"),
        (b"\xff\xfe{", "not UTF-8"),
    ],
)
def test_header_and_shape_errors(data: bytes, message: str) -> None:
    with pytest.raises(RecordingError, match=message) as info:
        decode(data, "r.json")
    assert info.value.file == "r.json"


def test_future_format_says_to_upgrade() -> None:
    with pytest.raises(RecordingError) as info:
        decode(b'{"devbox_recording": true, "format": 2}', "r.json")
    assert info.value.hint is not None and "upgrade devbox" in info.value.hint
    assert info.value.field == "format" and info.value.line == 1


def test_other_layouts_are_read_too() -> None:
    # hand-written: compact, one object per line, source/direction from the header
    lines = [
        '{"devbox_recording":true,"format":1,"source":"inv","direction":"outbound"}',
        '{"id":"a","request":{"method":"get","url":"http://inv/items/1"},'
        '"response":{"status":200,"body":{"json":{"sku":"1"}}}}',
        '{"id":"b","request":{"method":"GET","url":"http://inv/items/2"}}',
    ]
    d = decode("\n".join(lines).encode(), "hand.json")
    assert [e.id for e in d.exchanges] == ["a", "b"]
    a = d.exchanges[0]
    assert a.source == "inv" and a.direction is Direction.OUTBOUND
    assert a.request.method == "GET" and a.response is not None
    assert a.response.body == b'{"sku":"1"}'
    assert d.exchanges[1].response is None
    # a torn last line in that layout is tolerated too
    torn = decode(("\n".join(lines) + '\n{"id":"c","requ').encode(), "hand.json")
    assert len(torn.exchanges) == 2 and torn.torn_tail
    # but a torn line followed by more objects is corruption
    with pytest.raises(RecordingError) as info:
        decode(("\n".join([*lines[:2], '{"id":"c",', lines[2]])).encode(), "hand.json")
    assert info.value.line == 4  # where the JSON goes wrong: no key after "c",


def test_migrations_upgrade_old_files(monkeypatch: pytest.MonkeyPatch) -> None:
    old = encode(HEADER, [VARIETY[0]])

    def v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
        d = dict(d)
        d["origin"] = "migrated from v1"
        return d

    monkeypatch.setattr(recording, "FORMAT_VERSION", 2)
    monkeypatch.setitem(recording.MIGRATIONS, 1, v1_to_v2)
    d = decode(old, "old.json")
    assert d.header.format == 2
    assert d.exchanges[0].origin == "migrated from v1"


def test_decode_leaves_the_garbage_collector_as_it_was() -> None:
    data = encode(HEADER, VARIETY)
    assert gc.isenabled()
    decode(data)
    assert gc.isenabled()
    gc.disable()
    try:
        decode(data)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RecordingError):
        decode(data.replace(b'"status": 201', b'"status": "x"'))
    assert gc.isenabled()


def test_query_parsing_matches_the_stdlib() -> None:
    for url in (
        "http://h/p?a=1&b=&c&d=x=y",
        "http://h/p?q=a+b&r=%2F%26",
        "http://h/p?&&a=1&",
        "http://h/p",
    ):
        from urllib.parse import parse_qsl, urlsplit

        d = orjson.loads(exchange_to_text(ex(1)))
        d["request"]["url"] = url
        got = recording.exchange_from_dict(d).request
        assert got.query == tuple(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_request_target_is_kept_as_recorded() -> None:
    """':' and '%20' in a query stay as recorded through a recording file (no re-encoding),
    while a redacted query value is written re-encoded."""
    import dataclasses

    from devbox.core.model import Request
    from devbox.core.recording import exchange_from_dict

    d = {
        "id": "x",
        "request": {"method": "GET", "url": "http://h/p%20q?a=b:c&d=%20e&f=g+h", "headers": []},
        "response": {"status": 200, "headers": []},
    }
    ex = exchange_from_dict(d)
    assert ex.request.target == "/p%20q?a=b:c&d=%20e&f=g+h"
    assert ex.request.url == "http://h/p%20q?a=b:c&d=%20e&f=g+h"
    changed = dataclasses.replace(ex.request, query=(("a", "REDACTED"),))
    assert changed.target == "/p%20q?a=REDACTED"
    assert Request("GET", "/x", (("k", "v w"),)).target == "/x?k=v+w"


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=4e9, allow_nan=False),
        # fractions a hair under the next second, which round up into it
        st.integers(0, 4_000_000_000).map(lambda s: s + 0.9999995),
        st.integers(0, 4_000_000_000).map(lambda s: s + 0.99999949),
    ),
    st.floats(min_value=-2.0, max_value=2.0, allow_nan=False),
)
def test_timestamps_read_as_datetime_writes_them(ts: float, step: float) -> None:
    """started_at is formatted from a per-second cache without datetime; every value,
    and its neighbour in the same or the next second, reads exactly as
    datetime.isoformat writes it (the rounding of the microseconds included)."""
    from datetime import UTC, datetime

    for t in (ts, max(0.0, ts + step)):
        want = datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")
        assert recording._iso(t) == want

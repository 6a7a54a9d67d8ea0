"""The recorder's HTTP/1.1 framing (no I/O) and body capture, including every split point."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.record.capture import BodyCapture, split_target
from devbox.record.correlate import Correlator
from devbox.record.http1 import (
    CHUNKED,
    CLOSE,
    LENGTH,
    NONE,
    Data,
    End,
    Event,
    Head,
    MessageReader,
    ProtocolError,
    iter_events,
)

REQUESTS = (
    b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
    b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    b"PUT /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-A: 1\r\n\r\n"
    b"DELETE /d HTTP/1.0\r\n\r\n"
)
REQ_HEADS = [("GET", "/a?x=1"), ("POST", "/b"), ("PUT", "/c"), ("DELETE", "/d")]
REQ_BODIES = [b"", b"hello", b"hello world", b""]

RESPONSES = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc"
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"  # answer to HEAD: no body
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
)
RESP_METHODS = ["POST", "HEAD", "GET", "GET", "GET"]
RESP_STATUSES = [100, 201, 200, 304, 200, 200]
RESP_BODIES = [b"abc", b"", b"", b"xyz", b"until the end"]


def _feed(
    data: bytes, cuts: list[int], *, is_request: bool, methods: Sequence[str] = ()
) -> list[Event]:
    r = MessageReader(is_request=is_request)
    for m in methods:
        r.expect(m)
    events: list[Event] = []
    prev = 0
    for c in [*sorted(set(cuts)), len(data)]:
        r.receive(data[prev:c])
        prev = c
        events += iter_events(r)
    r.eof()
    events += iter_events(r)
    return events


def _messages(events: list[Event]) -> tuple[list[Head], list[bytes]]:
    heads = [e for e in events if isinstance(e, Head)]
    bodies, cur = [], b""
    for e in events:
        if isinstance(e, Data):
            cur += e.decoded
        elif isinstance(e, End):
            bodies.append(cur)
            cur = b""
    return heads, bodies


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(REQUESTS)), max_size=12))
def test_requests_frame_identically_whatever_the_read_boundaries(cuts: list[int]) -> None:
    events = _feed(REQUESTS, cuts, is_request=True)
    heads, bodies = _messages(events)
    assert [(h.method, h.target) for h in heads] == REQ_HEADS
    assert bodies == REQ_BODIES
    # relaying every event's raw bytes reproduces the stream exactly
    assert b"".join(e.raw for e in events) == REQUESTS
    assert [h.framing for h in heads] == [NONE, LENGTH, CHUNKED, NONE]
    assert heads[3].keep_alive is False and heads[0].keep_alive is True


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(RESPONSES)), max_size=12))
def test_responses_frame_by_method_status_and_headers(cuts: list[int]) -> None:
    events = _feed(RESPONSES, cuts, is_request=False, methods=RESP_METHODS)
    heads, bodies = _messages(events)
    assert [h.status for h in heads] == RESP_STATUSES
    assert heads[0].interim
    assert bodies == RESP_BODIES
    assert heads[-1].framing == CLOSE
    assert b"".join(e.raw for e in events) == RESPONSES


def test_upgrade_request_waits_then_tunnels() -> None:
    r = MessageReader(is_request=True)
    r.receive(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nRAW")
    evs = iter_events(r)
    assert [type(e) for e in evs] == [Head, End]
    assert r.waiting_upgrade  # the bytes after it are not parsed as HTTP
    r.start_tunnel()
    (d,) = iter_events(r)
    assert isinstance(d, Data) and d.raw == b"RAW"


def test_refused_upgrade_resumes_http() -> None:
    r = MessageReader(is_request=True)
    r.receive(
        b"GET /ws HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nGET /next HTTP/1.1\r\n\r\n"
    )
    assert len(iter_events(r)) == 2
    r.resume()
    head, end = iter_events(r)
    assert isinstance(head, Head) and head.target == "/next" and isinstance(end, End)


def test_connect_answer_opens_a_tunnel() -> None:
    r = MessageReader(is_request=False)
    r.expect("CONNECT")
    r.receive(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01")
    head, end, data = iter_events(r)
    assert isinstance(head, Head) and head.status == 200 and isinstance(end, End)
    assert isinstance(data, Data) and data.raw == b"\x16\x03\x01"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 90000, 431),
        (b"GET /" + b"a" * 90000, 414),
        (b"GET / HTTP/1.1\r\nContent-Length: 07\r\nContent-Length: 7\r\n\r\n", 400),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),
        (b"GET / HTTP/1.1\r\nX-Long: a\r\n  b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
    ],
)
def test_malformed_requests_raise_with_a_status(raw: bytes, status: int) -> None:
    r = MessageReader(is_request=True)
    r.receive(raw)
    with pytest.raises(ProtocolError) as info:
        iter_events(r)
    assert info.value.status == status


def test_responses_tolerate_obsolete_line_folding_and_bare_lf() -> None:
    # requests are read strictly (RFC 9112, as the mock's llhttp does); an upstream's
    # quirks are recorded, not refused
    r = MessageReader(is_request=False)
    r.receive(b"HTTP/1.1 204 No Content\nX-Long: a\n  b\nHost: h\n\n")
    (head, _end) = iter_events(r)
    assert isinstance(head, Head)
    assert head.header("x-long") == "a b" and head.header("HOST") == "h"


def test_body_capture_caps_and_decodes_gzip_incrementally() -> None:
    payload = b"0123456789" * 10000  # 100 KB, compresses to ~ 300 bytes
    z = gzip.compress(payload)
    cap = BodyCapture(1000, "gzip")
    for i in range(0, len(z), 7):
        cap.add(z[i : i + 7])
    assert cap.body() == payload[:1000] and cap.truncated
    full = BodyCapture(10**6, "gzip")
    full.add(z)
    assert full.body() == payload and not full.truncated and full.wire_bytes == len(z)
    d = BodyCapture(10**6, "deflate")
    d.add(zlib.compress(b"deflated"))
    assert d.body() == b"deflated"


def test_body_capture_keeps_undecodable_bodies_as_received() -> None:
    other = BodyCapture(100, "compress")  # a coding devbox does not decode
    other.add(b"\x1f\x9dopaque")
    assert other.body() == b"\x1f\x9dopaque" and other.undecoded
    # br and zstd are decoded now; bytes that are not br are kept as they came
    br = BodyCapture(100, "br")
    br.add(b"\xffnot brotli")
    assert br.body() == b"\xffnot brotli" and br.undecoded
    bad = BodyCapture(100, "gzip")
    bad.add(b"not gzip at all")
    assert bad.body() == b"not gzip at all" and bad.undecoded
    exact = BodyCapture(4)
    exact.add(b"abcd")
    assert exact.body() == b"abcd" and not exact.truncated


def test_split_target_handles_origin_and_absolute_form() -> None:
    assert split_target("/a/b?x=1&y=2") == ("/a/b", "x=1&y=2")
    assert split_target("http://h:1/p?q=1") == ("/p", "q=1")
    assert split_target("http://h:1") == ("/", "")


def test_correlator_prefers_the_header_and_never_guesses() -> None:
    c = Correlator("X-Request-Id")
    c.begin("in-1", [("X-Request-Id", "a")])
    assert c.parent_for([]) == "in-1"  # the only one in flight
    c.begin("in-2", [("x-request-id", "b")])
    assert c.parent_for([("X-REQUEST-ID", "b")]) == "in-2"
    assert c.parent_for([]) is None and c.ambiguous == 1
    c.end("in-2")
    assert c.parent_for([("X-Request-Id", "b")]) == "in-1"  # b is over: single in flight
    c.end("in-1")
    assert c.parent_for([]) is None and c.in_flight == 0

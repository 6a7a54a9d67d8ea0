"""The recording worker's HTTP/2 reading of a verbatim relay, and the relay's held-back
resets, against what the ``h2`` package (the protocol's reference in Python) writes.

``devbox.record.h2streams`` reads the two directions of an intercepted HTTP/2
connection, as the proxy copies them down the worker pipe, into exchanges. Here real
``h2`` connections, a client and a server, hold generated conversations (bodies both
ways, trailers, 103 Early Hints, HPACK tables that grow and are reused, resets, a
GOAWAY); their bytes are fed to ``Streams`` in the order they crossed, whole and cut at
drawn points. Every exchange must come out once, with what the peers sent, whatever
the cuts. ``devbox.record.h2late`` must take exactly the NO_ERROR resets out of what it
passes on, wherever a read ends.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.record.h2late import FrameHeads, OpenStreams, late_resets
from devbox.record.streams import Streams

Side = tuple[int, bytes]  # (0: client to upstream, 1: upstream to client; the bytes)


@st.composite
def conversation(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        method = draw(st.sampled_from(["GET", "POST", "PUT"]))
        out.append(
            {
                "method": method,
                "path": f"/items/{draw(st.integers(0, 3))}?q={i}",
                "headers": [("x-tag", draw(st.sampled_from(["a", "b", "é"])))],
                "body": draw(st.binary(max_size=300)) if method != "GET" else b"",
                "status": draw(st.sampled_from([200, 201, 404, 500])),
                "resp_headers": [("content-type", "application/json")],
                "resp_body": draw(st.binary(max_size=300)),
                "hints": draw(st.booleans()),
                "trailers": draw(st.booleans()),
                "fate": draw(st.sampled_from(["answer", "answer", "answer", "cancel"])),
            }
        )
    return out


def talk(conv: list[dict[str, Any]]) -> list[Side]:
    """The bytes each side wrote, in the order they crossed."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    )
    wire: list[Side] = []

    def cross() -> None:
        while True:
            c, s = client.data_to_send(), server.data_to_send()
            if not c and not s:
                return
            if c:
                wire.append((0, c))
                server.receive_data(c)
            if s:
                wire.append((1, s))
                client.receive_data(s)

    client.initiate_connection()
    server.initiate_connection()
    cross()
    for m in conv:
        sid = client.get_next_available_stream_id()
        head = [
            (":method", m["method"]),
            (":scheme", "https"),
            (":authority", "api.example"),
            (":path", m["path"]),
            *m["headers"],
        ]
        client.send_headers(sid, head, end_stream=not m["body"])
        if m["body"]:
            client.send_data(sid, m["body"], end_stream=True)
        cross()
        if m["fate"] == "cancel":
            client.reset_stream(sid, 8)
            cross()
            continue
        if m["hints"]:
            server.send_headers(sid, [(":status", "103"), ("link", "</a.css>")])
        server.send_headers(sid, [(":status", str(m["status"])), *m["resp_headers"]])
        server.send_data(sid, m["resp_body"], end_stream=not m["trailers"])
        if m["trailers"]:
            server.send_headers(sid, [("x-checksum", "1")], end_stream=True)
        cross()
    server.close_connection(last_stream_id=client.highest_outbound_stream_id or 0)
    cross()
    return wire


def read(wire: list[Side], cuts: list[int] | None) -> list[Any]:
    streams = Streams("s", 1 << 20, None)
    out = list(streams.take(("o", 1, "api", "outbound", "https", "api.example", 1000.0, 0.0, "h2")))
    for i, (side, data) in enumerate(wire):
        pieces = [data]
        if cuts and len(data) > 1:
            at = 1 + cuts[i % len(cuts)] % (len(data) - 1)
            pieces = [data[:at], data[at:]]
        for piece in pieces:
            out += streams.take(("d", 1, side, float(i), piece, None))
    out += streams.take(("c", 1, float(len(wire)), "client", None))
    return out


@settings(max_examples=150, deadline=None)
@given(conversation(), st.lists(st.integers(0, 10**6), max_size=8))
def test_each_stream_is_read_back_as_sent(conv: list[dict[str, Any]], cuts: list[int]) -> None:
    whole = read(talk(conv), None)
    cut = read(talk(conv), cuts)
    assert [c[7:] for c in whole] == [c[7:] for c in cut]
    assert len(whole) == len(conv)
    for m, c in zip(conv, whole, strict=True):
        (method, path, version, headers, body, req_cut, resp, resp_body, resp_cut) = c[7:16]
        assert (method, path, version, body, req_cut) == (
            m["method"],
            m["path"],
            "HTTP/2",
            m["body"],
            False,
        )
        # the upstream's authority as Host, then the client's headers as sent
        assert headers[0] == ("host", "api.example")
        assert headers[1:] == [(k, v.encode().decode("latin-1")) for k, v in m["headers"]]
        if m["fate"] == "cancel":
            assert resp is None and "client reset the stream" in c[19]
            continue
        status, reason, resp_version, resp_headers, trailers = resp
        assert (status, reason, resp_version) == (m["status"], "", "HTTP/2")
        assert resp_headers[0] == ("content-type", "application/json")
        assert (resp_body, resp_cut, c[19]) == (m["resp_body"], False, None)
        assert trailers == ([("x-checksum", "1")] if m["trailers"] else [])


@st.composite
def frames(draw: st.DrawFn) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["data", "rst0", "rst8", "settings", "big"]))
        sid = draw(st.integers(1, 9)).to_bytes(4, "big")
        if kind == "data":
            # payloads that look like a reset's header must not be taken for one
            payload = draw(st.sampled_from([b"", b"\x00\x00\x04\x03\x00", b"abc" * 7]))
            out.append(len(payload).to_bytes(3, "big") + b"\x00\x00" + sid + payload)
        elif kind == "big":
            payload = b"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x00" * 10
            out.append(len(payload).to_bytes(3, "big") + b"\x00\x01" + sid + payload)
        elif kind == "settings":
            out.append(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00\x64")
        else:
            code = b"\x00\x00\x00\x00" if kind == "rst0" else b"\x00\x00\x00\x08"
            out.append(b"\x00\x00\x04\x03\x00" + sid + code)
    return out


@settings(max_examples=500, deadline=None)
@given(frames(), st.lists(st.integers(0, 10**6), max_size=6))
def test_late_resets_are_exactly_the_whole_no_error_resets(
    fs: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(fs)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = list(zip([0, *points], [*points, len(stream)], strict=True))
    heads, streams = FrameHeads(from_client=False), OpenStreams()
    now: list[bytes] = []
    late: list[bytes] = []
    for a, b in bounds:
        passed, found = heads.walk(stream[a:b])
        streams.upstream(found)
        n, lt = late_resets(passed, found)
        now.append(n)
        late.append(lt)
    # a head cut between reads waits for its rest: a NO_ERROR reset is held back when
    # its 4 bytes came in the read that completed its head
    expect_now: list[bytes] = []
    expect_late: list[bytes] = []
    pos = 0
    for f in fs:
        end = pos + len(f)
        held = f[3] == 3 and f[-4:] == b"\x00\x00\x00\x00"
        head_read_end = next(b for _a, b in bounds if b >= pos + 9)
        (expect_late if held and end <= head_read_end else expect_now).append(f)
        pos = end
    assert b"".join(now) == b"".join(expect_now)
    assert b"".join(late) == b"".join(expect_late)


def test_open_streams_follow_the_client_and_the_answers() -> None:
    """What a stop waits for: streams the client opened whose answer has not ended."""
    client, server, wire = _pair()
    heads = (FrameHeads(from_client=True), FrameHeads(from_client=False))
    streams = OpenStreams()

    def seen() -> set[int]:
        for side, data in wire:
            found = heads[side].walk(data)[1]
            (streams.upstream if side else streams.client)(found)
        wire.clear()
        return set(streams.ids)

    a, b = _ask(client, "/a", wire), _ask(client, "/b", wire)
    for data in (wire[-2][1], wire[-1][1]):
        server.receive_data(data)
    assert seen() == {a, b}
    server.send_headers(a, [(":status", "103")])  # informational: still owed
    server.send_headers(a, [(":status", "200")])
    wire.append((1, server.data_to_send()))
    assert seen() == {a, b}
    server.send_data(a, b"ok", end_stream=True)
    server.reset_stream(b, 8)
    wire.append((1, server.data_to_send()))
    assert seen() == set()


def _pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection, list[Side]]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, validate_outbound_headers=False)
    )
    client.initiate_connection()
    server.initiate_connection()
    wire: list[Side] = []
    for side, a, b in ((0, client, server), (1, server, client), (0, client, server)):
        data = a.data_to_send()
        wire.append((side, data))
        b.receive_data(data)
    return client, server, wire


def _ask(client: h2.connection.H2Connection, path: str, wire: list[Side]) -> int:
    sid: int = client.get_next_available_stream_id()
    head = [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", path)]
    client.send_headers(sid, head, end_stream=True)
    wire.append((0, client.data_to_send()))
    return sid


def _streams_of(wire: list[Side]) -> tuple[list[Any], Streams]:
    streams = Streams("s", 1 << 20, None)
    out = list(streams.take(("o", 1, "api", "outbound", "https", "a", 1000.0, 0.0, "h2")))
    for i, (side, data) in enumerate(wire):
        out += streams.take(("d", 1, side, float(i), data, None))
    out += streams.take(("c", 1, float(len(wire)), "client", None))
    return out, streams


def test_a_push_promise_keeps_the_table_in_step() -> None:
    """A PUSH_PROMISE's header block is HPACK like any: skipping it broke every later
    block of the connection (node's ``pushStream``, h2's ``push_stream``)."""
    client, server, wire = _pair()
    sid = _ask(client, "/page", wire)
    server.receive_data(wire[-1][1])
    pushed = server.get_next_available_stream_id()
    promise = [(":method", "GET"), (":scheme", "https"), (":authority", "a")]
    server.push_stream(sid, pushed, [*promise, (":path", "/style.css"), ("x-new", "entry")])
    for s, path in ((pushed, "/style.css"), (sid, "/page")):
        server.send_headers(s, [(":status", "200"), ("x-path", path), ("x-new", "entry")])
        server.send_data(s, path.encode(), end_stream=True)
    wire.append((1, server.data_to_send()))
    for path in ("/b", "/c"):
        s = _ask(client, path, wire)
        server.receive_data(wire[-1][1])
        server.send_headers(s, [(":status", "200"), ("x-path", path), ("x-new", "entry")])
        server.send_data(s, path.encode(), end_stream=True)
        wire.append((1, server.data_to_send()))
    out, streams = _streams_of(wire)
    assert [(c[8], c[13][0], c[14], c[19]) for c in out] == [
        (p, 200, p.encode(), None) for p in ("/page", "/b", "/c")
    ]  # the pushed stream is the client's to use, not an exchange it asked for
    assert streams.unread == []


def test_a_smaller_table_applies_once_acknowledged() -> None:
    """The client lowers SETTINGS_HEADER_TABLE_SIZE while an answer encoded with the old
    table is on its way (RFC 7541 4.2: the encoder may use it until it acknowledges)."""
    client, server, wire = _pair()
    for path in ("/one", "/two"):
        s = _ask(client, path, wire)
        server.receive_data(wire[-1][1])
        big = [(":status", "200"), ("x-big", "v" * 3000), ("x-path", path)]
        if path == "/two":
            client.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
            wire.append((0, client.data_to_send()))  # crosses the answer below
        server.send_headers(s, big)
        server.send_data(s, b"ok", end_stream=True)
        wire.append((1, server.data_to_send()))
    server.receive_data(wire[-2][1])
    wire.append((1, server.data_to_send()))  # the acknowledgement
    s = _ask(client, "/three", wire)
    server.receive_data(wire[-1][1])
    server.send_headers(s, [(":status", "200"), ("x-big", "v" * 3000)], end_stream=True)
    wire.append((1, server.data_to_send()))
    out, streams = _streams_of(wire)
    assert [(c[8], c[13][0], c[19]) for c in out] == [
        ("/one", 200, None),
        ("/two", 200, None),
        ("/three", 200, None),
    ]
    assert streams.unread == []


def test_a_header_bomb_stops_the_reading_not_the_worker() -> None:
    """A 4 KB table entry referenced 4,000 times is 16 MB decoded from 4 KB on the wire:
    the connection stops being read (relayed on), nothing that size is kept."""
    client, _server, wire = _pair()
    _ask(client, "/seed", wire)
    enc = hpack.Encoder()
    head = [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/b")]
    seed = enc.encode([*head, ("x-big", "v" * 4000)])  # the entry goes into both tables
    frames = b""
    for sid, block in ((3, seed), *((5 + 2 * i, b"\xbe" * 4000) for i in range(5))):
        frames += len(block).to_bytes(3, "big") + b"\x01\x05" + sid.to_bytes(4, "big") + block
    wire.append((0, frames))
    out, streams = _streams_of(wire)
    assert len(streams.unread) == 1 and "header list larger" in streams.unread[0]
    assert all(sum(len(k) + len(v) for k, v in c[10]) < 1 << 20 for c in out)


def test_a_status_that_is_not_ascii_digits() -> None:
    """``'²'.isdigit()`` is true and ``int('²')`` fails: the connection's reading was lost."""
    client, server, wire = _pair()
    for path, status in (("/weird", b"\xb2"), ("/after", b"200")):
        s = _ask(client, path, wire)
        server.receive_data(wire[-1][1])
        server.send_headers(s, [(b":status", status)])
        server.send_data(s, b"x", end_stream=True)
        wire.append((1, server.data_to_send()))
    out, streams = _streams_of(wire)
    assert [(c[8], c[13][0]) for c in out] == [("/weird", 0), ("/after", 200)]
    assert streams.unread == []


def test_trailers_of_a_dropped_stream_open_no_exchange() -> None:
    """The upstream refuses a stream (not processed: the client retries it) while the
    client's trailers are on their way: they made a second, empty ``GET /``."""
    client, server, wire = _pair()
    sid = client.get_next_available_stream_id()
    head = [(":method", "POST"), (":scheme", "https"), (":authority", "a"), (":path", "/up")]
    client.send_headers(sid, head)
    client.send_data(sid, b"part")
    wire.append((0, client.data_to_send()))
    server.receive_data(wire[-1][1])
    server.reset_stream(sid, 7)  # REFUSED_STREAM
    wire.append((1, server.data_to_send()))
    # the client's trailers crossed the reset (written as the h2 package would have)
    block = hpack.Encoder().encode([("x-checksum", "1")])
    frame = len(block).to_bytes(3, "big") + b"\x01\x05" + sid.to_bytes(4, "big") + block
    wire.append((0, frame))
    out, streams = _streams_of(wire)
    assert out == [] and streams.unread == []

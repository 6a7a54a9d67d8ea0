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
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.record.h2late import LateResets
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
    split = LateResets()
    now: list[bytes] = []
    late: list[bytes] = []
    for a, b in bounds:
        n, lt = split.split(stream[a:b])
        now.append(n)
        late.append(lt)
    # a NO_ERROR reset held back is one that a single read held whole
    expect_now: list[bytes] = []
    expect_late: list[bytes] = []
    pos = 0
    for f in fs:
        end = pos + len(f)
        held = f[3] == 3 and f[-4:] == b"\x00\x00\x00\x00"
        whole = any(a <= pos and end <= b for a, b in bounds)
        (expect_late if held and whole else expect_now).append(f)
        pos = end
    assert b"".join(now) == b"".join(expect_now)
    assert b"".join(late) == b"".join(expect_late)

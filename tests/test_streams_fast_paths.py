"""The recording worker's shortcuts read relayed HTTP/1.1 exactly as its reader does.

``devbox.record.streams`` takes a chunk holding one whole message from its memory of
bytes met before (``Seen``) or, for a message framed by its length, straight through
``whole_request`` / ``whole_response``; anything else goes through the ``MessageReader``.
Hypothesis builds keep-alive conversations (HEAD, 204, 304, 1xx, chunked and gzip both
ways, upgrade offers declined, stray CRLFs, a broken head now and then) and
feeds them three ways: one chunk per message (the shortcuts), the same again on the same
worker (everything remembered), and cut into pieces (the reader alone). The captures
must be the same.
"""

from __future__ import annotations

import gzip
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.record.streams import Streams

Message = tuple[bytes, bytes]  # (request bytes, response bytes)


@st.composite
def exchange(draw: st.DrawFn) -> Message:
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "DELETE", "OPTIONS"]))
    path = "/" + draw(st.text("abc123/-_", max_size=12))
    req_body = draw(st.binary(max_size=40)) if method == "POST" else b""
    req = f"{method} {path} HTTP/1.1\r\nHost: api.example\r\n".encode()
    # the request's framing and what the reader must judge: a length, chunked, gzip,
    # an empty length, an upgrade offer (declined below), stray CRLFs, a broken header
    form = draw(st.sampled_from(["plain", "plain", "chunked", "gzip", "zero", "offer", "crlf"]))
    if form == "chunked" and method == "POST":
        req += b"Transfer-Encoding: chunked\r\n\r\n"
        if req_body:
            req += f"{len(req_body):x}\r\n".encode() + req_body + b"\r\n"
        req += b"0\r\n\r\n"
    elif form == "gzip" and method == "POST":
        packed = gzip.compress(req_body, mtime=0)
        req += f"Content-Encoding: gzip\r\nContent-Length: {len(packed)}\r\n\r\n".encode()
        req += packed
    else:
        if form == "zero" and not req_body:
            req += b"Content-Length: 0\r\n"
        elif req_body or method == "POST":
            req += f"Content-Length: {len(req_body)}\r\n".encode()
        if form == "offer":
            req += b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        req += b"\r\n" + req_body
        if form == "crlf":
            req = b"\r\n" + req
    if draw(st.integers(0, 40)) == 0:
        req = req.replace(b"Host: ", b"Host ", 1)  # unreadable: the rest goes unread
    status = draw(st.sampled_from([200, 200, 201, 204, 304, 404]))
    body = draw(st.binary(max_size=60))
    shape = draw(st.sampled_from(["length", "chunked", "gzip", "none"]))
    head = f"HTTP/1.1 {status} X\r\nServer: t\r\n"
    if draw(st.booleans()):
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    else:
        interim = b""
    if method == "HEAD" or status in (204, 304):
        # no body whatever the headers say
        resp = (head + f"Content-Length: {len(body)}\r\n\r\n").encode()
    elif shape == "chunked":
        resp = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
        if body:
            resp += f"{len(body):x}\r\n".encode() + body + b"\r\n"
        resp += b"0\r\n\r\n"
    elif shape == "gzip":
        packed = gzip.compress(body, mtime=0)
        resp = (
            head + f"Content-Encoding: gzip\r\nContent-Length: {len(packed)}\r\n\r\n"
        ).encode() + packed
    elif shape == "none":
        resp = (head + "Content-Length: 0\r\n\r\n").encode()
    else:
        resp = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return req, interim + resp


def _read(streams: Streams, cid: int, messages: list[Message], cuts: list[int] | None) -> list[Any]:
    """Captures of one connection: each message in one chunk, or (``cuts``) each cut in
    two at a drawn point (never whole, so never taken by a shortcut)."""
    out: list[Any] = []
    streams.take(("o", cid, "api", "outbound", "https", "api.example", 1000.0, 0.0))
    for i, (req, resp) in enumerate(messages):
        for side, data in ((0, req), (1, resp)):
            t = i + side * 0.5
            if cuts is None or len(data) < 2:
                pieces = [data]
            else:
                at = 1 + cuts[(2 * i + side) % len(cuts)] % (len(data) - 1)
                pieces = [data[:at], data[at:]]
            for piece in pieces:
                frame = ("d", cid, side, t, piece, None)
                out += streams.take(frame)
    out += streams.take(("c", cid, len(messages) + 1.0, "client", None))
    return [c[4:] for c in out]  # the id (its connection number) aside


@settings(max_examples=300, deadline=None)
@given(st.lists(exchange(), min_size=1, max_size=6), st.lists(st.integers(0, 10**6), min_size=1))
def test_shortcuts_read_as_the_reader_does(messages: list[Message], cuts: list[int]) -> None:
    streams = Streams("s", 1 << 20, None)
    whole = _read(streams, 1, messages, None)
    again = _read(streams, 2, messages, None)  # everything met before: from memory
    pieces = _read(Streams("s", 1 << 20, None), 3, messages, cuts)
    assert whole == pieces
    assert again == pieces


def test_a_capped_body_is_cut_alike() -> None:
    """A body over the worker's cap is kept cut and marked so on every path."""
    body = b"x" * 300
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n" + body
    messages = [(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", resp)]
    one = _read(Streams("s", 100, None), 1, messages, None)
    cut = _read(Streams("s", 100, None), 1, messages, [7])
    assert one == cut
    (c,) = one
    assert c[10] == b"x" * 100 and c[11] is True  # response body, truncated

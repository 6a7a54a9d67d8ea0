"""Both of the mock's HTTP/1.1 parsers give the same answer for the same bytes.

The mock reads requests with httptools (llhttp) on its fast path and with the wire
layer's reader (``devbox.wire.http1`` behind ``devbox.mock.pyparser``) otherwise.
Each generated request stream (well-formed, or broken in one of the ways RFC 9112
names: versions, method case, Content-Length forms, chunk sizes, line endings, sizes
around every limit, UTF-8 in the target) is fed to a real ``MockServer`` connection
in-process, once per parser, delivered whole or cut at random points; every byte the
server writes back, and whether it closes, must be equal.

The suite runs a bounded number of examples. The long run (documented in
docs/benchmarks.md) is the same test with more examples:

    DEVBOX_FUZZ_EXAMPLES=100000 .venv/bin/pytest tests/test_http1_differential.py \
        -q -k alike --timeout 0

A parse error's wording is each parser's own (llhttp: "Expected CRLF after version");
its status, its place among the answers and the close are compared.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mock_helpers import exchange

from devbox.core.profile import Dependency
from devbox.mock import Limits, MockSpec
from devbox.mock.conn import _Conn
from devbox.mock.server import MockServer

EXAMPLES = int(os.environ.get("DEVBOX_FUZZ_EXAMPLES", "300"))
LIMITS = Limits(max_request_line=2048, max_header_bytes=4096, max_headers=20, max_body=4096)
EXCHANGES = (
    exchange(1, "GET", "/ok"),
    exchange(2, "POST", "/up", body=b"hello"),
    exchange(3, "GET", "/caf%C3%A9"),
)


class Transport(asyncio.Transport):
    """Collects what the server writes; the connection object is driven by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        if not self.closed:
            self.out += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _server(parser: str) -> MockServer:
    spec = MockSpec(dependency=Dependency(name="dep"), exchanges=EXCHANGES)
    srv = MockServer(spec, limits=LIMITS, parser=parser)
    srv.load()
    return srv


SERVERS = {p: _server(p) for p in ("httptools", "python")}


def answer(parser: str, pieces: list[bytes]) -> tuple[bytes, bool]:
    srv = SERVERS[parser]
    srv.reset()
    conn = _Conn(srv)
    t = Transport()
    conn.connection_made(t)
    for p in pieces:
        if t.closed:
            break
        conn.data_received(p)
    conn.connection_lost(None)
    return _PARSE_ERROR.sub(rb"<parse error \1>", bytes(t.out)), t.closed


_PARSE_ERROR = re.compile(
    rb'Content-Length: \d+\r\nConnection: close\r\n\r\n\{"error":"(?:malformed|unsupported) '
    rb'request: .*?","status":(\d+)\}'
)


# ---------------------------------------------------------------- generated requests

METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"get", b"Get", b"FOO", b"PRI", b"G@T"]
VERSIONS = [
    *[b"HTTP/1.1"] * 6,
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/0.9",
    b"HTTP/1.2",
    b"HTTP/3.0",
    b"http/1.1",
    b"HTTP/1.10",
    b"HTTP/1.1 ",
]
_path_chars = st.sampled_from([*"abz09/-._~%?=&+", "%C3%A9", "é", "{", '"', "\\", "#"])


@st.composite
def targets(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return b"/" + b"a" * draw(st.integers(2030, 2060))  # around max_request_line
    if kind == 1:
        return draw(st.sampled_from([b"*", b"http://h/ok", b"ok", b"/ok\x7f", b"/ok\t"]))
    if kind <= 4:
        return draw(st.sampled_from([b"/ok", b"/up", b"/caf%C3%A9", b"/ok?a=1"]))
    return ("/" + "".join(draw(st.lists(_path_chars, max_size=12)))).encode()


HEADERS = [
    b"Host: x",
    b"X-A: v",
    b"X-Trail: v \t",
    b"Content-Type: application/json",
    b"Accept-Encoding: gzip",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Expect: 100-continue",
    b"Bad Header",
    b"X-Bad: a\x01b",
    b"X-Obs: \xff",
    b" folded",
    b"Host : x",
    b"Upgrade: websocket\r\nConnection: Upgrade",
]


@st.composite
def header_block(draw: st.DrawFn) -> list[bytes]:
    kind = draw(st.integers(0, 12))
    if kind == 0:
        return [b"X-N%d: v" % i for i in range(draw(st.integers(18, 23)))]  # max_headers 20
    if kind == 1:
        return [b"X-Big: " + b"v" * draw(st.integers(3990, 4200))]  # max_header_bytes
    return draw(st.lists(st.sampled_from(HEADERS), max_size=3))


CHUNK_SIZES = [b"5", b"05", b"0005", b"5;a=b", b'5;a="x y"', b"5 ", b"-5", b"g", b"+5", b""]
LAST_CHUNKS = [b"0", b"000", b"0" * 5000, b"0;e", b"00 "]


@st.composite
def body_part(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """(framing header lines, body bytes)."""
    kind = draw(st.integers(0, 8))
    body = draw(st.sampled_from([b"hello", b"hellx", b"x" * 4100, b""]))
    if kind <= 2:
        return [], b""
    if kind == 3:
        return [b"Content-Length: %d" % len(body)], body
    if kind == 4:
        cl = draw(st.sampled_from([b"5", b"05", b"+5", b"5, 5", b"", b"99999999999999999999"]))
        dup = draw(st.sampled_from([[], [b"Content-Length: 5"], [b"Content-Length: 05"]]))
        return [b"Content-Length: " + cl, *dup], b"hello"
    if kind == 5:
        te = draw(st.sampled_from([b"chunked", b"gzip", b"gzip, chunked", b"chunked, gzip"]))
        return [b"Transfer-Encoding: " + te, b"Content-Length: 5"], b"5\r\nhello\r\n0\r\n\r\n"
    size = draw(st.sampled_from(CHUNK_SIZES))
    last = draw(st.sampled_from(LAST_CHUNKS))
    trailer = draw(st.sampled_from([b"", b"X-T: 1\r\n", b"Bad\r\n"]))
    te = draw(st.sampled_from([b"chunked", b"chunked", b"Chunked", b"gzip, chunked"]))
    data = size + b"\r\nhello\r\n" + last + b"\r\n" + trailer + b"\r\n"
    return [b"Transfer-Encoding: " + te], data


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        eol = b"\n" if draw(st.integers(0, 15)) == 0 else b"\r\n"
        method = draw(st.sampled_from(METHODS))
        sep = b"  " if draw(st.integers(0, 10)) == 0 else b" "
        line = method + sep + draw(targets()) + b" " + draw(st.sampled_from(VERSIONS))
        framing, body = draw(body_part())
        headers = draw(header_block()) + framing
        # stray CRLFs before a request are skipped (RFC 9112 section 2.2), cut or whole
        stray = b"\r\n" * draw(st.sampled_from([0, 0, 0, 0, 1, 2]))
        out += stray + line + eol + b"".join(h + eol for h in headers) + eol + body
    return out


def pieces_of(raw: bytes, cuts: list[int]) -> list[bytes]:
    # anywhere, inside a method too (tests/test_mock_split_method.py cuts at every byte)
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=streams(), cuts=st.lists(st.integers(0, 1 << 16), max_size=3))
def test_both_parsers_answer_every_request_alike(raw: bytes, cuts: list[int]) -> None:
    pieces = pieces_of(raw, cuts)
    ours, theirs = answer("python", pieces), answer("httptools", pieces)
    assert ours == theirs, repr((_short(b"|".join(pieces)), _short(ours[0]), _short(theirs[0])))


def _short(data: bytes) -> bytes:
    """Long runs of one byte written as ``<N x b>``, so a failure reads in one screen."""
    return re.sub(rb"(.)\1{15,}", lambda m: b"<%d x %s>" % (len(m.group(0)), m.group(1)), data)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /ok HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /ok HTTP/0.9\r\n\r\n", b"505"),
        (b"get /ok HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n" + b"X: " + b"v" * 5000 + b"\r\n\r\n", b"414"),
        (b"GET /ok HTTP/1.1\r\nX: " + b"v" * 5000 + b"\r\n\r\n", b"431"),
        (b"POST /up HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\nhello", b"400"),
        (
            b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            + b"0" * 5000
            + b"\r\n\r\n",
            b"200",
        ),
        (b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", b"400"),
        (b"POST /up HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", b"413"),
    ],
)
@pytest.mark.parametrize("parser", ["httptools", "python"])
def test_named_cases(parser: str, raw: bytes, status: bytes) -> None:
    out, _closed = answer(parser, [raw])
    assert out.startswith(b"HTTP/1.1 " + status), out[:120]

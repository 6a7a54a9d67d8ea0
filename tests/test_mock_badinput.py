"""Bad input and load: malformed requests, size limits, slow clients, 1,000 connections,
and Hypothesis feeding both HTTP parsers and the live server."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mock_helpers import call, exchange, read_all, read_responses, running, send_raw, status_of

from devbox.mock import Limits
from devbox.mock.pyparser import PyParserError, PyParserUpgrade, PyRequestParser
from devbox.wire.tls import H2_PREFACE

PARSERS = ["httptools", "python"]
OK = exchange(1, "GET", "/ok")


def still_serving(port: int) -> None:
    assert call(port, "GET", "/ok")[:3:2] == (200, b'{"n": 1}')


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"get /ok HTTP/1.1\r\n\r\n",  # methods are case-sensitive: not the recorded GET
        b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",  # UTF-8 in a target must be percent-encoded
        b"POST /ok HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 07\r\n\r\n1234567",
        b"POST /ok HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"POST /ok HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\ng\r\n",
        b"GET /ok HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: x\r\n folded: value\r\n\r\n",
        b"POST /ok HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /ok HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /ok HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /ok HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_requests_get_400_and_the_server_keeps_serving(parser: str, raw: bytes) -> None:
    with running([OK], parser=parser) as (fleet, port):
        answer = send_raw(port, raw, half_close=True)
        assert status_of(answer) == 400, answer[:200]
        assert b"Connection: close" in answer and b"malformed request" in answer
        still_serving(port)
        assert fleet.servers["dep"].rejected == 1


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    "version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/9.9", b"HTTP/1.2", b"HTTP/3.0"]
)
def test_other_http_versions_get_505_never_the_recorded_answer(parser: str, version: bytes) -> None:
    with running([OK], parser=parser) as (_fleet, port):
        answer = send_raw(port, b"GET /ok " + version + b"\r\nHost: x\r\n\r\n", half_close=True)
        assert status_of(answer) == 505, answer[:200]
        assert b"Connection: close" in answer
        still_serving(port)


@pytest.mark.parametrize("parser", PARSERS)
def test_a_last_chunk_of_many_zeros_ends_the_body(parser: str) -> None:
    rec = exchange(2, "POST", "/up", body=b"hello")
    with running([OK, rec], parser=parser) as (_, port):
        raw = (
            b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"0005\r\nhello\r\n"
            + b"0" * 5000
            + b"\r\n\r\n"
        )
        answer = send_raw(port, raw, half_close=True)
        assert status_of(answer) == 200, answer[:200]


@pytest.mark.parametrize("parser", PARSERS)
def test_size_limits(parser: str) -> None:
    limits = Limits(max_request_line=1024, max_header_bytes=4096, max_headers=20, max_body=1000)
    with running(
        [OK, exchange(2, "POST", "/up", body=b"x" * 900)], parser=parser, limits=limits
    ) as (_, port):
        assert status_of(send_raw(port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n")) == 414
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
        assert status_of(send_raw(port, b"GET /ok HTTP/1.1\r\n" + many + b"\r\n")) == 431
        big = b"X-Big: " + b"v" * 5000 + b"\r\n"
        assert status_of(send_raw(port, b"GET /ok HTTP/1.1\r\n" + big + b"\r\n")) == 431
        # the same header trickled in small pieces is refused as soon as it is too large
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ok HTTP/1.1\r\nX-Big: ")
            answer = b""
            for _ in range(200):
                try:
                    s.sendall(b"v" * 200)
                except OSError:
                    break
                time.sleep(0.002)
            answer = read_all(s, 2)
        assert status_of(answer) == 431
        too_big = b"POST /up HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"
        assert status_of(send_raw(port, too_big)) == 413  # refused before the body is sent
        chunk = b"100\r\n" + b"y" * 256 + b"\r\n"
        chunked = b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 5
        chunked += b"0\r\n\r\n"
        assert status_of(send_raw(port, chunked)) == 413
        ok = send_raw(
            port,
            b"POST /up HTTP/1.1\r\nContent-Length: 900\r\nConnection: close\r\n\r\n" + b"x" * 900,
        )
        assert status_of(ok) == 200
        still_serving(port)


@pytest.mark.parametrize("parser", PARSERS)
def test_slow_and_idle_clients_time_out(parser: str) -> None:
    limits = Limits(header_timeout_s=0.4, request_timeout_s=0.8, idle_timeout_s=0.6)
    exs = [OK, exchange(2, "POST", "/b", body=b"abc")]
    with running(exs, limits=limits, parser=parser) as (fleet, port):
        t0 = time.monotonic()
        # sends half a request line and stalls: 408 after the header timeout
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ok HTT")
            answer = read_all(s, 4)
        assert status_of(answer) == 408 and time.monotonic() - t0 < 4
        # a slowloris: one byte of header every 0.1 s never completes a request
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ok HTTP/1.1\r\n")
            t0 = time.monotonic()
            try:
                for _ in range(60):
                    s.sendall(b"X")
                    time.sleep(0.1)
            except OSError:
                pass  # the server closed it: good
            assert status_of(read_all(s, 4)) == 408 and time.monotonic() - t0 < 5
        # headers done, body never finishes: 408 after the request timeout
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\na")
            assert status_of(read_all(s, 4)) == 408
        # connects and says nothing: closed
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert read_all(s, 4) == b""
        # keep-alive connection left idle after a request: closed, no response bytes
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_responses(s, 1) == [(200, b'{"n": 1}')]
            assert read_all(s, 4) == b""
        assert fleet.servers["dep"].timeouts >= 3
        still_serving(port)


def test_a_thousand_concurrent_connections() -> None:
    """1,000 clients connected at the same time (a barrier holds them all open), then each
    sends keep-alive requests; every answer is the right one, no errors."""
    exs = [exchange(i, "GET", f"/c/{i}") for i in range(50)]
    clients = 1000

    async def load(port: int, open_on_server: Any) -> tuple[list[Any], int]:
        connected = 0
        all_in = asyncio.Event()
        peak = 0

        async def client(i: int) -> list[bytes]:
            nonlocal connected, peak
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            connected += 1
            if connected == clients:
                # wait until the server itself holds every connection, then release all
                for _ in range(200):
                    peak = open_on_server()
                    if peak >= clients:
                        break
                    await asyncio.sleep(0.05)
                all_in.set()
            await all_in.wait()
            out = []
            try:
                for j in range(3):
                    n = (i + j) % 50
                    writer.write(b"GET /c/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    out.append(head.split(b" ", 2)[1] + b" " + await reader.readexactly(length))
            finally:
                writer.close()
            return out

        async with asyncio.timeout(90):
            results = await asyncio.gather(
                *(client(i) for i in range(clients)), return_exceptions=True
            )
        return results, peak

    with running(exs) as (fleet, port):
        server = fleet.servers["dep"]
        results, peak = asyncio.run(load(port, lambda: len(server.connections)))
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        assert peak == clients
        for i, r in enumerate(results):
            assert r == [b'200 {"n": %d}' % ((i + j) % 50) for j in range(3)]
        assert server.hits == 3 * clients
        assert call(port, "GET", "/c/7")[0] == 200


# ---------------------------------------------------------------- Hypothesis: the parsers


class Collect:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = b""
        self.parser: Any = None

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", [], b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.messages.append((self.parser.get_method(), self._url, self._headers, self._body))


def parse_with(kind: str, pieces: list[bytes]) -> list[Any]:
    c = Collect()
    c.parser = httptools.HttpRequestParser(c) if kind == "httptools" else PyRequestParser(c)
    for p in pieces:
        c.parser.feed_data(p)
    return c.messages


_token = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
_value = st.text("abcdefghijklmnopqrstuvwxyz0123456789 ;=/.,", max_size=20).map(str.strip)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, list[tuple[bytes, bytes, bytes]]]:
    out = b""
    expected = []
    for _ in range(draw(st.integers(1, 4))):
        method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]))
        path = b"/" + draw(st.text("abc123/%-._~", max_size=15)).encode()
        query = draw(st.text("ab=&1", max_size=8)).encode()
        target = path + (b"?" + query if query else b"")
        headers = [
            (draw(_token).encode(), draw(_value).encode()) for _ in range(draw(st.integers(0, 5)))
        ]
        headers = [
            (n, v)
            for n, v in headers
            if n.lower()
            not in (b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect")
        ]
        body = draw(st.binary(max_size=40)) if method in (b"POST", b"PUT") else b""
        chunked = bool(body) and draw(st.booleans())
        head = b"%s %s HTTP/1.1\r\n" % (method, target)
        head += b"".join(b"%s: %s\r\n" % h for h in headers)
        if chunked:
            head += b"Transfer-Encoding: chunked\r\n\r\n"
            head += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        else:
            if body:
                head += b"Content-Length: %d\r\n" % len(body)
            head += b"\r\n" + body
        out += head
        expected.append((method, target, body))
    return out, expected


@settings(max_examples=200, deadline=None)
@given(data=requests(), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_property_both_parsers_agree_however_the_bytes_are_split(
    data: tuple[bytes, list[tuple[bytes, bytes, bytes]]], cuts: list[int]
) -> None:
    raw, expected = data
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    ours = parse_with("python", pieces)
    theirs = parse_with("httptools", [raw])
    assert [(m, u, b) for m, u, _, b in ours] == expected
    assert [(m, u, b) for m, u, _, b in theirs] == expected
    assert [h for *_, h, _ in ours] == [h for *_, h, _ in theirs]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_property_random_bytes_only_ever_raise_parser_errors(raw: bytes) -> None:
    for kind in PARSERS:
        try:
            parse_with(kind, [raw])
        except (
            PyParserError,
            PyParserUpgrade,
            httptools.HttpParserError,
            httptools.HttpParserUpgrade,
        ):
            pass


_garbage = st.one_of(
    st.binary(min_size=1, max_size=200),
    st.builds(
        lambda m, t, h: m + b" " + t + b" HTTP/1.1\r\n" + h + b"\r\n\r\n",
        st.sampled_from([b"GET", b"P0ST", b"", b"get", b"\x00"]),
        st.binary(max_size=30),
        st.binary(max_size=60),
    ),
)


@pytest.mark.parametrize("parser", PARSERS)
def test_property_the_live_server_survives_garbage(parser: str) -> None:
    with running([OK], parser=parser, limits=Limits(header_timeout_s=1.0)) as (_, port):

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(_garbage)
        def feed(raw: bytes) -> None:
            answer = send_raw(port, raw, timeout=3, half_close=True)
            # an answer, if any, is a well-formed HTTP/1.1 response (or, to the whole h2c
            # preface, HTTP/2's SETTINGS: that connection speaks h2)
            if answer and not raw.startswith(H2_PREFACE):
                assert answer.startswith(b"HTTP/1.1 "), answer[:80]
                assert status_of(answer) in (200, 400, 404, 408, 414, 431, 502, 505)
            still_serving(port)

        feed()


@pytest.mark.parametrize("parser", PARSERS)
def test_a_client_that_stops_reading_is_paused_then_resumed(parser: str) -> None:
    """Large answers to pipelined requests the client does not read yet: the server stops
    reading (backpressure) and, once the client reads, serves every request."""
    big = b"z" * 256 * 1024
    with running([exchange(1, "GET", "/big", resp_body=big)], parser=parser) as (fleet, port):
        server = fleet.servers["dep"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 60)
            time.sleep(0.5)  # 15 MB of answers back up: the server stops reading
            assert server.backpressure >= 1
            first = server.hits
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
            time.sleep(0.3)
            assert server.hits == first  # not read while the client is not reading
            got = read_responses(s, first + 20, timeout=30)
        assert [len(b) for _, b in got] == [len(big)] * (first + 20)
        assert server.hits == first + 20


@pytest.mark.parametrize("parser", PARSERS)
def test_answers_owed_before_a_bad_request_are_still_written(parser: str) -> None:
    """A delayed answer, then a malformed request on the same connection: the delayed
    answer arrives first, then the 400, then the connection closes."""
    exs = [exchange(1, "GET", "/slow", wait_ms=200)]
    with running(exs, parser=parser, timing="recorded") as (_, port):
        raw = send_raw(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nBAD REQUEST LINE\r\n\r\n")
    first, _, rest = raw.partition(b'{"n": 1}')
    assert status_of(first) == 200 and status_of(rest) == 400

"""Replay's HTTP client and the mock's passthrough read responses with the wire layer's
HTTP/1.1 reader: every framing, over real sockets, against a server that writes exactly
the bytes given."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable

import pytest

from devbox.core.model import Request, Response
from devbox.replay.http import Client, HttpError, parse_target, prepare

# path -> (raw response bytes, close after writing, write one byte at a time)
Script = dict[str, tuple[bytes, bool, bool]]


class RawServer:
    """Answers each request with scripted bytes; counts the connections it accepted."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line = head.split(b"\r\n", 1)[0].decode()
                method, path, _ = line.split(" ")
                self.requests.append(f"{method} {path}")
                for h in head.split(b"\r\n")[1:]:
                    if h.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(h.split(b":")[1]))
                raw, close, trickle = self.script[path]
                if trickle:
                    for i in range(len(raw)):
                        writer.write(raw[i : i + 1])
                        await writer.drain()
                else:
                    writer.write(raw)
                    await writer.drain()
                if close:
                    return
        finally:
            writer.close()


def run(script: Script, body: Callable[[RawServer, Client], Awaitable[None]]) -> RawServer:
    async def main() -> RawServer:
        async with RawServer(script) as server:
            client = Client(parse_target(server.url), timeout=10)
            try:
                await asyncio.wait_for(body(server, client), 30)
            finally:
                client.close()
        return server

    return asyncio.run(main())


async def get(client: Client, path: str, method: str = "GET") -> Response:
    req = Request(method=method, path=path)
    resp, _ms = await client.send(prepare(req, client.target))
    return resp


OK_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Checksum: abc\r\n\r\n"
)


def test_content_length_and_chunked_reuse_one_connection() -> None:
    script: Script = {
        "/len": (OK_LENGTH, False, False),
        "/chunked": (CHUNKED, False, False),
        "/trickle": (CHUNKED, False, True),  # every byte its own read
    }

    async def body(server: RawServer, client: Client) -> None:
        a = await get(client, "/len")
        assert (a.status, a.body, a.reason) == (200, b"hello", "OK")
        assert ("Content-Type", "text/plain") in a.headers
        b = await get(client, "/chunked")
        assert b.body == b"wikipedia"
        c = await get(client, "/trickle")
        assert c.body == b"wikipedia"
        d = await get(client, "/len")
        assert d.body == b"hello"

    server = run(script, body)
    assert server.connections == 1
    assert len(server.requests) == 4


def test_close_delimited_body_is_read_to_the_end_then_a_new_connection() -> None:
    script: Script = {
        "/close": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end", True, False),
        "/http10": (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", True, False),
        "/len": (OK_LENGTH, False, False),
    }

    async def body(server: RawServer, client: Client) -> None:
        assert (await get(client, "/close")).body == b"to the end"
        assert (await get(client, "/http10")).body == b"ok"  # HTTP/1.0: not kept alive
        assert (await get(client, "/len")).body == b"hello"

    assert run(script, body).connections == 3


def test_interim_1xx_responses_are_skipped() -> None:
    interim = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    )
    script: Script = {
        "/1xx": (interim + OK_LENGTH, False, False),
        "/len": (OK_LENGTH, False, False),
    }

    async def body(server: RawServer, client: Client) -> None:
        r = await get(client, "/1xx")
        assert (r.status, r.body) == (200, b"hello")
        assert not any(k == "Link" for k, _ in r.headers)  # the interim head's, not kept
        assert (await get(client, "/len")).body == b"hello"

    assert run(script, body).connections == 1


def test_head_204_and_304_have_no_body_whatever_their_headers_say() -> None:
    script: Script = {
        # a HEAD answer announces the length of the body a GET would get
        "/head": (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", False, False),
        "/204": (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", False, False),
        "/304": (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", False, False),
        "/len": (OK_LENGTH, False, False),
    }

    async def body(server: RawServer, client: Client) -> None:
        h = await get(client, "/head", "HEAD")
        assert (h.status, h.body) == (200, b"")
        assert ("Content-Length", "1000") in h.headers
        assert (await get(client, "/204")).body == b""
        assert (await get(client, "/304")).status == 304
        # the bodiless answers left the connection in step: this one reads right
        assert (await get(client, "/len")).body == b"hello"

    server = run(script, body)
    assert server.connections == 1
    assert server.requests == ["HEAD /head", "GET /204", "GET /304", "GET /len"]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"SMTP ready\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed"),
    ],
)
def test_a_broken_response_is_an_http_error(raw: bytes, why: str) -> None:
    script: Script = {"/bad": (raw, True, False)}

    async def body(server: RawServer, client: Client) -> None:
        with pytest.raises(HttpError, match=why):
            await get(client, "/bad")

    run(script, body)


RESPONSES = [
    OK_LENGTH,
    CHUNKED,
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",  # a HEAD answer, or partial
    b"HTTP/1.1 100 Continue\r\n\r\n" + OK_LENGTH,
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    OK_LENGTH + b"HTTP/1.1 200 OK\r\n",  # more than one response
    b"HTTP/1.1 200 OK\r\n\r\nuntil close",
]


@pytest.mark.parametrize("raw", RESPONSES)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_whole_response_shortcut_reads_as_the_reader_does(raw: bytes, method: str) -> None:
    """``whole_response`` (replay's fast path) answers only when the reader, given the
    same bytes, reads one complete final response from exactly those bytes; then both
    read the same head and body."""
    from devbox.wire.http1 import (
        Data,
        End,
        Event,
        Head,
        MessageReader,
        ProtocolError,
        iter_events,
        whole_response,
    )

    reader = MessageReader(is_request=False)
    reader.expect(method)
    reader.receive(raw)
    events: list[Event] = []
    try:
        events = iter_events(reader)
    except ProtocolError:  # a body the method says is not there, read as the next head
        pass
    finals = [e for e in events if isinstance(e, Head) and not e.interim]
    complete = (
        len(finals) == 1
        and isinstance(events[-1], End)
        and reader.buffered == 0
        and not any(isinstance(e, Head) and e.interim for e in events)
    )
    whole = whole_response(raw, method)
    if whole is None:
        # declined: the reader finds it incomplete, interim, read-to-close or followed
        # by more; or, for a complete response, chunked framing the shortcut leaves alone
        assert not complete or finals[0].framing not in ("length", "none")
        return
    assert complete
    head, body = whole
    assert (head.status, head.headers, head.version) == (
        finals[0].status,
        finals[0].headers,
        finals[0].version,
    )
    assert body == b"".join(e.decoded for e in events if isinstance(e, Data))


def forward_each(script: Script, calls: list[tuple[str, str]]) -> list[Response | str]:
    """The mock's passthrough (``devbox.mock.upstream.forward``) of each (method, path)
    to the scripted server; a response, or the UpstreamError's text."""
    from devbox.mock.upstream import UpstreamError, forward
    from devbox.wire.upstream import Upstream

    out: list[Response | str] = []

    async def body(server: RawServer, client: Client) -> None:
        up = Upstream.parse(server.url)
        for method, path in calls:
            try:
                out.append(await forward(up, method, path, (), b"", timeout_s=10))
            except UpstreamError as exc:
                out.append(str(exc))

    run(script, body)
    return out


def test_passthrough_reads_every_framing_through_the_wire_reader() -> None:
    gzipped = gzip.compress(b"hello", mtime=0)
    script: Script = {
        "/len": (OK_LENGTH, True, False),
        "/chunked": (CHUNKED, True, True),
        "/close": (b"HTTP/1.1 200 OK\r\n\r\nto the end", True, False),
        "/1xx": (b"HTTP/1.1 100 Continue\r\n\r\n" + OK_LENGTH, True, False),
        "/head": (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", True, False),
        "/204": (b"HTTP/1.1 204 No Content\r\n\r\n", True, False),
        "/gzip": (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
            % len(gzipped)
            + gzipped,
            True,
            False,
        ),
        "/short": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True, False),
        "/garbage": (b"SMTP ready\r\n\r\n", True, False),
    }
    calls = [("GET", p) for p in script if p != "/head"] + [("HEAD", "/head")]
    got = dict(zip([p for _, p in calls], forward_each(script, calls), strict=True))

    def resp(path: str) -> Response:
        r = got[path]
        assert isinstance(r, Response), r
        return r

    assert (resp("/len").status, resp("/len").body) == (200, b"hello")
    assert resp("/chunked").body == b"wikipedia"  # de-chunked, byte by byte
    assert resp("/close").body == b"to the end"
    assert (resp("/1xx").status, resp("/1xx").body) == (200, b"hello")
    assert (resp("/head").status, resp("/head").body) == (200, b"")
    assert (resp("/204").status, resp("/204").body) == (204, b"")
    assert resp("/gzip").body == gzipped  # content-encoded as the upstream sent it
    assert "closed before the response ended" in str(got["/short"])
    assert "invalid response" in str(got["/garbage"])

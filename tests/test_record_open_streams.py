"""A response still streaming when recording stops (a server-sent event stream that
never ends) is recorded with what came of it, marked cut short, over HTTP/1.1 and
HTTP/2 inside an intercepted ``CONNECT``: stopping must not lose what the client was
already shown. Upstream: node's own HTTPS server (``allowHTTP1``: both protocols), on
TLS with a CA of the tests' own; client: httpx through ``devbox record
--forward-proxy``; then the recording is served by ``devbox mock``'s server."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc_support
import httpx
import pytest
from grpc_support import make_test_ca
from mock_helpers import call, running
from node_support import node_server
from record_helpers import exchanges, forward_recorder

NODE_SERVER = r"""
const http2 = require('http2');
const fs = require('fs');
const [key, cert] = process.argv.slice(1);
const server = http2.createSecureServer(
  {key: fs.readFileSync(key), cert: fs.readFileSync(cert), allowHTTP1: true},
  (req, res) => {
    if (req.url === '/events') {
      // one event, then the stream stays open, as a live feed's does
      res.writeHead(200, {'content-type': 'text/event-stream'});
      res.write('data: one\n\n');
      return;
    }
    res.writeHead(200, {'content-type': 'text/plain'});
    res.end('hello');
  });
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@pytest.fixture
def node_feed(tmp_path: Path) -> Iterator[tuple[str, grpc_support.TestCa]]:
    ca = make_test_ca(tmp_path / "ca")
    with node_server(NODE_SERVER, ca) as url:
        yield url, ca


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
def test_a_stream_open_when_recording_stops_keeps_what_came(
    tmp_path: Path, devbox_ca: Path, node_feed: tuple[str, grpc_support.TestCa], http2: bool
) -> None:
    url, test_ca = node_feed
    rec = forward_recorder(tmp_path, url, test_ca.ca, "feed")
    proxy = rec.listener("forward").url

    async def run() -> tuple[str, bytes]:
        ctx = ssl.create_default_context(cafile=str(devbox_ca))
        async with httpx.AsyncClient(http2=http2, verify=ctx, proxy=proxy, timeout=20) as c:
            async with c.stream("GET", f"{url}/events") as r:
                first = await asyncio.wait_for(anext(r.aiter_raw()), 10)
                # recording stops while the stream is open (drain_s: it will not end)
                await asyncio.to_thread(rec.stop, drain_s=0.5)
                return r.http_version, first

    try:
        version, first = asyncio.run(run())
    finally:
        rec.stop()
    assert version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert first == b"data: one\n\n"
    (saved,) = exchanges(rec.profile.mocks_dir, "feed")
    assert saved.request.path == "/events"
    assert saved.response is not None and saved.response.status == 200
    assert saved.response.body == b"data: one\n\n"
    assert saved.response_truncated  # what came, not the whole of it
    assert saved.error is not None and "recording stopped" in saved.error
    # the mock serves the events the client was shown
    with running(recordings=rec.profile.mocks_dir / "feed", upstream=url) as (_fleet, port):
        status, headers, body = call(port, "GET", "/events")
    assert (status, headers["content-type"], body) == (200, "text/event-stream", b"data: one\n\n")

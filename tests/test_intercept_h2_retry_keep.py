"""What the HTTP/2 relay keeps of requests for a retry is bounded per connection, not only
per stream (``devbox.record.h2relay.RETRY_KEEP_CONNECTION``): a refused stream is sent
again only while the relay still holds all of its request, and 1 MiB a stream across a
client's streams made one connection hold up to 128 MiB. Upstream: node's ``http2``
server, which takes every upload whole and answers none before ``/go``; client: curl
through the intercepting proxy, its parallel uploads streams of one HTTP/2 connection."""

from __future__ import annotations

import concurrent.futures
import ssl
import subprocess
import time
from pathlib import Path
from typing import cast

import grpc_support
import httpx
from grpc_support import make_test_ca
from node_support import node_server
from record_helpers import exchanges, forward_recorder

from devbox.record.h2relay import RETRY_KEEP, RETRY_KEEP_CONNECTION, H2Relay
from devbox.record.recorder import Recorder

NODE_SERVER = r"""
const http2 = require('http2');
const fs = require('fs');
const [key, cert] = process.argv.slice(1);
let held = [];
let whole = 0;
const server = http2.createSecureServer({key: fs.readFileSync(key), cert: fs.readFileSync(cert)});
server.on('stream', (stream, headers) => {
  const path = headers[':path'];
  if (path === '/up') {
    let n = 0;
    stream.on('data', (c) => { n += c.length; });
    stream.on('end', () => {
      whole += 1;
      held.push(() => { stream.respond({':status': 200}); stream.end(String(n)); });
    });
  } else if (path === '/count') {
    stream.respond({':status': 200});
    stream.end(String(whole));
  } else {
    const h = held;
    held = [];
    stream.respond({':status': 200});
    stream.end(String(h.length));
    h.forEach((f) => f());
  }
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""

UPLOADS = 16  # of a full per-stream allowance each: twice what a connection may keep
SIZE = RETRY_KEEP


def kept_now(rec: Recorder) -> int:
    """Request bytes the relays hold for retries, read on the recorder's own loop."""

    def count() -> int:
        # core.conns holds relays too (typed as the HTTP/1.1 connections they stand in for)
        relays = [c for c in cast("set[object]", rec.core.conns) if isinstance(c, H2Relay)]
        return sum(len(st.kept) for r in relays for st in r.by_client.values() if st.kept)

    loop = rec._loop
    assert loop is not None
    done: concurrent.futures.Future[int] = concurrent.futures.Future()
    loop.call_soon_threadsafe(lambda: done.set_result(count()))
    return done.result(10)


def test_a_connection_keeps_at_most_its_allowance_for_retries(
    tmp_path: Path, devbox_ca: Path
) -> None:
    test_ca: grpc_support.TestCa = make_test_ca(tmp_path / "ca")
    body = tmp_path / "body"
    body.write_bytes(b"x" * SIZE)
    with node_server(NODE_SERVER, test_ca) as url:
        rec = forward_recorder(tmp_path, url, test_ca.ca)
        proxy = rec.listener("forward").url
        # curl multiplexes its parallel uploads as streams of one connection (httpx's
        # HTTP/2 uploads stall when several share one, with or without a proxy)
        curl = subprocess.Popen(
            [
                "curl",
                "-sS",
                "--http2",
                "--parallel",
                "--parallel-max",
                str(UPLOADS),
                "--cacert",
                str(devbox_ca),
                "-x",
                proxy,
                "--max-time",
                "60",
                "--data-binary",  # (sent to each URL)
                f"@{body}",
                *[f"{url}/up"] * UPLOADS,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            ctx = ssl.create_default_context(cafile=str(devbox_ca))
            with httpx.Client(http2=True, verify=ctx, proxy=proxy, timeout=30) as side:
                # every upload reached the server whole, none is answered yet: all that
                # the relay kept of them it still keeps
                for _ in range(600):
                    if side.get(f"{url}/count").text == str(UPLOADS) or curl.poll() is not None:
                        break
                    time.sleep(0.05)
                kept = kept_now(rec)
                assert side.get(f"{url}/go").text == str(UPLOADS)
            out, err = curl.communicate(timeout=60)
        finally:
            if curl.poll() is None:
                curl.kill()
                curl.communicate()
            rec.stop()
    # every upload went up whole and was answered: the bound costs no request anything
    assert curl.returncode == 0, err
    assert out == str(SIZE).encode() * UPLOADS
    assert 0 < kept <= RETRY_KEEP_CONNECTION
    ups = [e for e in exchanges(rec.profile.mocks_dir, "shop") if e.request.path == "/up"]
    assert len(ups) == UPLOADS
    assert all(e.error is None and e.response is not None for e in ups)
    assert {e.request.http_version for e in ups} == {"HTTP/2"}

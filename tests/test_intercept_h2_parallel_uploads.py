"""Parallel uploads multiplexed on one HTTP/2 connection through the intercepting proxy:
each goes up whole, none is answered until all are in, every answer comes back and each
upload is recorded once, with its whole body. The relay passes the connection on
verbatim (``devbox.record.tee``), so the upstream's own flow control and stream limits
govern the uploads, and the relay holds none of them. Upstream: node's ``http2``
server, which takes every upload whole and answers none before ``/go``; client: curl
through the intercepting proxy, its parallel uploads streams of one HTTP/2 connection."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import grpc_support
import httpx
from grpc_support import make_test_ca
from node_support import node_server
from record_helpers import exchanges, forward_recorder

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

UPLOADS = 16
SIZE = 1 << 20  # each: 16 MiB on one connection, the recording's cap per body


def test_parallel_uploads_on_one_connection_go_up_whole(tmp_path: Path, devbox_ca: Path) -> None:
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
                # every upload reaches the server whole before any is answered
                for _ in range(600):
                    if side.get(f"{url}/count").text == str(UPLOADS) or curl.poll() is not None:
                        break
                    time.sleep(0.05)
                assert side.get(f"{url}/go").text == str(UPLOADS)
            out, err = curl.communicate(timeout=60)
        finally:
            if curl.poll() is None:
                curl.kill()
                curl.communicate()
            rec.stop()
    # every upload went up whole and was answered
    assert curl.returncode == 0, err
    assert out == str(SIZE).encode() * UPLOADS
    ups = [e for e in exchanges(rec.profile.mocks_dir, "shop") if e.request.path == "/up"]
    assert len(ups) == UPLOADS
    assert all(e.error is None and e.response is not None for e in ups)
    assert all(len(e.request.body) == SIZE and not e.request_truncated for e in ups)
    assert {e.request.http_version for e in ups} == {"HTTP/2"}

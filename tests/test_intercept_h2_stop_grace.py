"""Early answers to uploads through ``devbox record``'s forward proxy, where the HTTP/2
relay holds the upstream's NO_ERROR reset for its stop-sending grace (e46851e). Real
parts: curl --http2 against nginx, node's ``http2`` client against node's ``http2``
server (answers on the head, then resets NO_ERROR, ``/stop-goaway`` also closing its
session), each directly and through the proxy.

Each client gets through the proxy what it gets directly, and each upload is recorded
once. Before e46851e curl failed (exit 18) when nginx refused an upload and said GOAWAY;
before ec9cdee an upstream's GOAWAY during the grace made the relay close the client's
connection, and node's client saw CANCEL where it sees a clean end directly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from grpc_support import make_test_ca
from nginx_support import nginx
from node_support import node_server
from record_helpers import exchanges, forward_recorder
from test_intercept_h2_adversarial import NODE_SERVER, curl, node_client

from devbox.core.model import Exchange

NODE_STOP = r"""
const http2 = require('http2'); const fs = require('fs');
const [key, cert] = process.argv.slice(1);
const server = http2.createSecureServer({key: fs.readFileSync(key), cert: fs.readFileSync(cert)});
server.on('stream', (stream, headers) => {
  stream.on('error', () => {});
  const path = headers[':path'];
  stream.respond({':status': 201});
  if (path.startsWith('/stop-goaway')) {
    stream.end('early', () => { stream.close(http2.constants.NGHTTP2_NO_ERROR);
                                 stream.session.close(); });
  } else {
    stream.end('early', () => stream.close(http2.constants.NGHTTP2_NO_ERROR));
  }
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""

Curled = tuple[int, str, str]


def _curl_upload(
    tmp: Path, devbox_ca: Path, size: int, server_opts: str = ""
) -> tuple[Curled, Curled, list[Exchange]]:
    """curl POSTs ``size`` random bytes to nginx's /charges (201 on the head alone),
    directly and through the proxy: (direct, proxied, what was recorded)."""
    data = tmp / "body.bin"
    data.write_bytes(os.urandom(size))
    upload = ("--data-binary", f"@{data}")
    with nginx(tmp / "nginx", server_opts=server_opts) as up:
        url = f"{up.url}/charges"
        direct = curl("--cacert", str(up.ca_file), *upload, url)
        rec = forward_recorder(tmp, up.url, up.ca_file)
        try:
            proxy = rec.listener("forward").url
            proxied = curl("--cacert", str(devbox_ca), "-x", proxy, *upload, url)
        finally:
            rec.stop()
    return direct, proxied, exchanges(rec.profile.mocks_dir, "shop")


def _node_upload(
    tmp: Path, devbox_ca: Path, path: str, size: int
) -> tuple[dict[str, Any], dict[str, Any], list[Exchange]]:
    """node's client POSTs ``size`` bytes to ``path`` of NODE_STOP, directly and through
    the proxy: (direct, proxied, what was recorded)."""
    ca = make_test_ca(tmp / "ca")
    with node_server(NODE_STOP, ca) as url:
        direct = node_client(url, ca.ca, None, path=path, method="POST", bodySize=size)
        rec = forward_recorder(tmp, url, ca.ca)
        try:
            proxy = rec.listener("forward").url
            proxied = node_client(url, devbox_ca, proxy, path=path, method="POST", bodySize=size)
        finally:
            rec.stop()
    return direct, proxied, exchanges(rec.profile.mocks_dir, "shop")


def _recorded(saved: list[Exchange]) -> list[tuple[int, bool, str | None]]:
    return [(len(e.request.body), e.request_truncated, e.error) for e in saved]


@pytest.mark.parametrize("size", [0, 13])
def test_curl_upload_to_nginx_early_answer(tmp_path: Path, devbox_ca: Path, size: int) -> None:
    direct, proxied, saved = _curl_upload(tmp_path, devbox_ca, size)
    assert proxied[:2] == direct[:2], (direct, proxied, _recorded(saved))
    assert len(saved) == 1, _recorded(saved)


@pytest.mark.parametrize("path", ["/stop", "/stop-goaway"])
@pytest.mark.parametrize("size", [13, 8_000_000])
def test_node_upload_to_node_early_answer_and_reset(
    tmp_path: Path, devbox_ca: Path, size: int, path: str
) -> None:
    direct, proxied, saved = _node_upload(tmp_path, devbox_ca, path, size)
    got = (proxied["first"].get("status"), proxied["first"].get("error"))
    assert got == (direct["first"].get("status"), direct["first"].get("error")), (
        direct,
        proxied,
        _recorded(saved),
    )
    assert len(saved) == 1, _recorded(saved)


@pytest.mark.parametrize("size", [8_000_000])
def test_upstream_goaway_during_grace_keeps_a_clean_stream(
    tmp_path: Path, devbox_ca: Path, size: int
) -> None:
    """node answers early, resets NO_ERROR and closes its session (GOAWAY). Directly
    node's client sees its stream end cleanly (rstCode 0); through the proxy the relay
    closed the client's connection while the stopped stream was in its grace (not
    counted by ``_close_client``), and the client saw CANCEL (8)."""
    direct, proxied, _saved = _node_upload(tmp_path, devbox_ca, "/stop-goaway", size)
    assert direct["first"]["rst"] == 0
    assert proxied["first"] == direct["first"]


def test_curl_upload_to_nginx_that_says_goaway(tmp_path: Path, devbox_ca: Path) -> None:
    # 3 MB is over nginx's client_max_body_size (413 on the head); keepalive_requests 1
    # makes it say GOAWAY after that one answer
    direct, proxied, saved = _curl_upload(
        tmp_path, devbox_ca, 3_000_000, server_opts="keepalive_requests 1;"
    )
    assert proxied[:2] == direct[:2], (direct, proxied, _recorded(saved))
    assert len(saved) == 1, _recorded(saved)


@pytest.mark.parametrize("path", ["/ack", "/ack?slow"])
def test_node_ack_large_upload(tmp_path: Path, devbox_ca: Path, path: str) -> None:
    """An upstream that answers at once but reads the whole body all the same gets all
    of it (the grace drops only what the upstream refused), the client's stream ends
    cleanly, and the next request on the connection sees the whole size counted."""
    size = 6_000_000 if path == "/ack" else 600_000  # ?slow: 10 ms a piece
    ca = make_test_ca(tmp_path / "ca")
    with node_server(NODE_SERVER, ca) as url:
        rec = forward_recorder(tmp_path, url, ca.ca)
        try:
            proxied = node_client(
                url,
                devbox_ca,
                rec.listener("forward").url,
                path=path,
                method="POST",
                bodySize=size,
                then="/count?n=1",
            )
        finally:
            rec.stop()
    saved = exchanges(rec.profile.mocks_dir, "shop")
    recorded = [(e.request.path, len(e.request.body), e.request_truncated) for e in saved]
    assert proxied["then"]["text"] == f"[{size}]", (proxied, recorded)
    assert proxied["first"]["rst"] == 0, proxied
    assert len(saved) == 2, recorded

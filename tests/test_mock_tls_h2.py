"""A mock's one port answers plain HTTP/1.1, HTTPS (HTTP/1.1 and h2 by ALPN) and h2c with
prior knowledge, from the same recordings, to real clients: curl, httpx (http2=True),
urllib and node's fetch."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port, wait_port
from mock_helpers import ADMIN, exchange, running

from devbox.wire.ca import ensure_ca
from devbox.wire.tls import H2_PREFACE

BIG = bytes(range(256)) * 4096  # 1 MiB: more than HTTP/2's default window (64 KiB)


@pytest.fixture(scope="module")
def mock() -> Iterator[int]:
    exchanges = [
        exchange(1, "GET", "/items/1", resp_body=b'{"sku": 1}'),
        exchange(
            2,
            "POST",
            "/charges",
            body=b'{"amount": 5}',
            req_headers=(("Content-Type", "application/json"),),
            status=201,
            resp_body=b'{"id": "ch_1"}',
        ),
        exchange(
            3,
            "GET",
            "/big",
            resp_headers=(("Content-Type", "application/octet-stream"),),
            resp_body=BIG,
        ),
        exchange(4, "GET", "/reset", error="connection reset"),
    ]
    with running(exchanges) as (_fleet, port):
        yield port


@pytest.fixture(scope="module")
def cafile() -> Path:
    return ensure_ca()[1].cert


def curl(*args: str) -> tuple[str, str]:
    """(protocol version, body) of one curl call."""
    curl_bin = shutil.which("curl")
    assert curl_bin, "curl is missing"
    r = subprocess.run(
        [curl_bin, "-sS", "--max-time", "20", "-w", "\n%{http_version} %{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    body, _, tail = r.stdout.rpartition("\n")
    return tail, body


@pytest.mark.parametrize(
    ("flag", "scheme", "version"),
    [
        ("--http1.1", "http", "1.1"),
        ("--http1.1", "https", "1.1"),
        ("--http2", "https", "2"),
        ("--http2-prior-knowledge", "http", "2"),
    ],
)
def test_curl_every_protocol_same_answer(
    mock: int, cafile: Path, flag: str, scheme: str, version: str
) -> None:
    url = f"{scheme}://127.0.0.1:{mock}"
    tail, body = curl("--cacert", str(cafile), flag, f"{url}/items/1")
    assert tail == f"{version} 200" and json.loads(body) == {"sku": 1}
    tail, body = curl(
        "--cacert",
        str(cafile),
        flag,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        '{"amount": 5}',
        f"{url}/charges",
    )
    assert tail == f"{version} 201" and json.loads(body) == {"id": "ch_1"}
    # a miss explains itself whatever the protocol
    tail, body = curl("--cacert", str(cafile), flag, f"{url}/nothing")
    assert tail == f"{version} 502"
    assert "no recording matches" in json.loads(body)["error"]


def test_curl_h2_large_body_and_sni_names(mock: int, cafile: Path, tmp_path: Path) -> None:
    out = tmp_path / "big"
    tail, _ = curl(
        "--cacert", str(cafile), "--http2", "-o", str(out), f"https://127.0.0.1:{mock}/big"
    )
    assert tail == "2 200" and out.read_bytes() == BIG
    # any name the client asks for gets a leaf for that name (SNI)
    tail, body = curl(
        "--cacert",
        str(cafile),
        "--http2",
        "--resolve",
        f"payments.internal:{mock}:127.0.0.1",
        f"https://payments.internal:{mock}/items/1",
    )
    assert tail == "2 200" and json.loads(body) == {"sku": 1}


def test_httpx_http2_multiplexed(mock: int, cafile: Path) -> None:
    async def go() -> None:
        ctx = ssl.create_default_context(cafile=str(cafile))
        async with httpx.AsyncClient(http2=True, verify=ctx, timeout=20) as client:
            base = f"https://127.0.0.1:{mock}"
            rs = await asyncio.gather(*(client.get(f"{base}/items/1") for _ in range(40)))
            assert {r.http_version for r in rs} == {"HTTP/2"}
            assert all(r.json() == {"sku": 1} for r in rs)
            r = await client.post(
                f"{base}/charges",
                content=b'{"amount": 5}',
                headers={"Content-Type": "application/json"},
            )
            assert (r.status_code, r.json()) == (201, {"id": "ch_1"})
            big = await client.get(f"{base}/big")
            assert big.content == BIG
            # the admin API answers over h2 too (reads are open to loopback)
            stats = await client.get(f"{base}/__devbox/stats", headers=ADMIN)
            assert stats.status_code == 200 and stats.json()["hits"] >= 42
            # a recorded network error resets the stream, not the connection
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"{base}/reset")
            again = await client.get(f"{base}/items/1")
            assert again.status_code == 200

    asyncio.run(go())


def test_httpx_h2c_prior_knowledge(mock: int) -> None:
    with httpx.Client(http1=False, http2=True, timeout=20) as client:
        r = client.get(f"http://127.0.0.1:{mock}/items/1")
        assert r.http_version == "HTTP/2" and r.json() == {"sku": 1}


def test_urllib_https(mock: int, cafile: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(f"https://localhost:{mock}/items/1", context=ctx) as r:
        assert json.loads(r.read()) == {"sku": 1}


def test_node_fetch_with_extra_ca(mock: int, cafile: Path) -> None:
    node = shutil.which("node")
    assert node, "node is missing: scripts/setup installs nodejs"
    script = (
        f"fetch('https://127.0.0.1:{mock}/items/1').then(r => r.text())"
        ".then(t => { console.log(t); }, e => { console.error(String(e.cause || e)); "
        "process.exit(3); })"
    )
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(cafile)}
    r = subprocess.run([node, "-e", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"sku": 1}
    # without the CA node refuses the certificate: the CA is what makes it trusted
    env.pop("NODE_EXTRA_CA_CERTS")
    r = subprocess.run([node, "-e", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "certificate" in r.stderr.lower()


def test_bad_h2_and_bad_tls_leave_the_port_serving(mock: int, cafile: Path) -> None:
    # DATA on stream 0 (after an empty SETTINGS) breaks HTTP/2: GOAWAY, connection closed
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    data_on_0 = b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd"
    with socket.create_connection(("127.0.0.1", mock), timeout=10) as s:
        s.sendall(H2_PREFACE + settings + data_on_0)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        assert b"\x07" in got  # a GOAWAY frame (type 7) was among what came back
    # a "ClientHello" that is not one: the handshake fails, the connection closes
    with socket.create_connection(("127.0.0.1", mock), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        s.settimeout(10)
        while s.recv(4096):
            pass
    tail, _ = curl("--cacert", str(cafile), "--http2", f"https://127.0.0.1:{mock}/items/1")
    assert tail == "2 200"


def test_cli_har_mock_answers_https_and_h2(cafile: Path) -> None:
    port = free_port()
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devbox.cli.main",
            "mock",
            "--har",
            str(ROOT / "tests" / "data" / "chrome.har"),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(port, 30)
        target = f"https://127.0.0.1:{port}/v1/orders/42"
        for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
            tail, body = curl("--cacert", str(cafile), flag, target)
            assert tail == f"{version} 200" and json.loads(body)["id"] == 42
        tail, body = curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/v1/orders/42")
        assert tail == "2 200"
        tail, body = curl(f"http://127.0.0.1:{port}/v1/orders/42")
        assert tail == "1.1 200"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_h2c_preface_in_pieces(mock: int) -> None:
    import time

    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    with socket.create_connection(("127.0.0.1", mock), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(H2_PREFACE[:5])
        time.sleep(0.2)  # the mock has read "PRI *" alone by now
        s.sendall(H2_PREFACE[5:] + settings)
        head = s.recv(9)
        # the server's own SETTINGS frame: type 4 on stream 0
        assert len(head) == 9 and head[3] == 4 and head[5:9] == b"\x00\x00\x00\x00"


def test_https_pipelined_requests_all_answered_in_order(mock: int, cafile: Path) -> None:
    """Requests that arrive in one TLS read are answered in order (their answers leave in
    one write at the end of the read: devbox.wire.tls.TlsBridge._read)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    reqs = (
        b"GET /items/1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"POST /charges HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b'Content-Length: 13\r\n\r\n{"amount": 5}'
        b"GET /items/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", mock), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(reqs)
            got = b""
            while chunk := tls.recv(65536):
                got += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", got)  # a body has no CRLF before the next
    assert statuses == [b"200", b"201", b"200"]
    assert got.index(b'{"sku": 1}') < got.index(b'{"id": "ch_1"}') < got.rindex(b'{"sku": 1}')

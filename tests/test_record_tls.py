"""Recording HTTPS: the forward proxy intercepts CONNECT to a dependency (a real nginx with
TLS and http2) and records what flows inside, HTTP/1.1 and HTTP/2 alike; a client that
refuses devbox's certificate is tunnelled from then on; a reverse proxy takes TLS from
the service. Clients: curl, httpx (http2=True), urllib."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mock_helpers import running
from nginx_support import BIG_SIZE, CHARGE, ITEM, Nginx, nginx
from record_helpers import exchanges, wait_for, write_profile

from devbox.core.profile import load_profile
from devbox.record import Recorder, RecordOptions


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as n:
        yield n


def curl(*args: str) -> tuple[int, str, str]:
    """(exit code, "<http_version> <status>", body)."""
    exe = shutil.which("curl")
    assert exe
    r = subprocess.run(
        [exe, "-sS", "--max-time", "20", "-w", "\n%{http_version} %{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body, _, tail = r.stdout.rpartition("\n")
    return r.returncode, tail, body


def _recorder(tmp: Path, upstream: Nginx, **opts: object) -> Recorder:
    path = write_profile(tmp, {"shop": upstream.url, "other": "http://127.0.0.1:9"})
    rec = Recorder(load_profile(path), RecordOptions(ca_bundle=upstream.ca_file, **opts))  # type: ignore[arg-type]
    rec.start()
    return rec


def test_forward_proxy_records_https_inside_connect(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    logs: list[str] = []
    path = write_profile(tmp_path, {"shop": upstream.url})
    rec = Recorder(
        load_profile(path),
        RecordOptions(ca_bundle=upstream.ca_file, forward_proxy_port=0),
        on_log=logs.append,
    )
    rec.start()
    proxy = rec.listener("forward").url
    try:
        env = rec.service_env()
        assert env["HTTPS_PROXY"] == proxy
        # curl over HTTP/2 and HTTP/1.1 inside the tunnel
        for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
            code, tail, body = curl(
                "--proxy", proxy, "--cacert", str(devbox_ca), flag, f"{upstream.url}/items/1"
            )
            assert code == 0 and tail == f"{version} 200" and body.encode() == ITEM
        code, tail, body = curl(
            "--proxy",
            proxy,
            "--cacert",
            str(devbox_ca),
            "--http2",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            '{"amount": 5}',
            f"{upstream.url}/charges",
        )
        assert (code, tail, body.encode()) == (0, "2 201", CHARGE)
        # httpx with http2=True: several requests multiplexed on one intercepted connection
        ctx = ssl.create_default_context(cafile=str(devbox_ca))
        with httpx.Client(http2=True, verify=ctx, proxy=proxy, timeout=20) as client:
            rs = [client.get(f"{upstream.url}/items/1") for _ in range(3)]
            big = client.get(f"{upstream.url}/static/big.bin")
        assert {r.http_version for r in rs} == {"HTTP/2"}
        assert all(r.content == ITEM for r in rs)
        assert big.content == upstream.big and len(big.content) == BIG_SIZE
        # urllib (HTTP/1.1, CONNECT through ProxyHandler); a context of its own (httpx
        # set ALPN h2 on the one it was given)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"https": proxy}),
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(devbox_ca))),
        )
        with opener.open(f"{upstream.url}/items/1", timeout=20) as r:
            assert r.read() == ITEM
    finally:
        summary = rec.stop()
    # three curls, one httpx connection, one urllib connection
    assert summary.intercepted == {f"localhost:{upstream.tls_port}": 5}
    assert summary.tunnels == {} and summary.refused == {}
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 8  # 3 curl, 4 httpx, 1 urllib
    versions = sorted({e.request.http_version for e in saved})
    assert versions == ["HTTP/1.1", "HTTP/2"]
    for e in saved:
        assert e.request.scheme == "https" and e.request.host == f"localhost:{upstream.tls_port}"
        assert e.response is not None
    post = next(e for e in saved if e.request.method == "POST")
    assert json.loads(post.request.body) == {"amount": 5}
    assert post.response is not None and post.response.status == 201
    assert post.response.body == CHARGE
    big_ex = next(e for e in saved if e.request.path == "/static/big.bin")
    assert big_ex.response is not None and big_ex.response.body == upstream.big

    # what was recorded over HTTP/2 serves from a mock over HTTP/2 (and HTTP/1.1)
    with running(recordings=rec.profile.mocks_dir / "shop", name="shop") as (_f, port):
        for flag in ("--http2", "--http1.1"):
            code, tail, body = curl(
                "--cacert", str(devbox_ca), flag, f"https://localhost:{port}/items/1"
            )
            assert code == 0 and tail.endswith(" 200") and body.encode() == ITEM


def test_client_refusing_our_certificate_is_tunnelled_afterwards(
    tmp_path: Path, upstream: Nginx
) -> None:
    logs: list[str] = []
    path = write_profile(tmp_path, {"shop": upstream.url})
    rec = Recorder(
        load_profile(path),
        RecordOptions(ca_bundle=upstream.ca_file, forward_proxy_port=0),
        on_log=logs.append,
    )
    rec.start()
    proxy = rec.listener("forward").url
    try:
        # a client that trusts only the upstream's own CA (as a pinned client does)
        pinned = ("--proxy", proxy, "--cacert", str(upstream.ca_file), f"{upstream.url}/items/1")
        code, _tail, _body = curl(*pinned)
        assert code != 0  # it refused devbox's leaf with an alert
        wait_for(lambda: rec.core.stats.refused)  # the proxy has read the alert
        code, tail, body = curl(*pinned)
        assert code == 0 and tail.endswith(" 200") and body.encode() == ITEM  # tunnelled
    finally:
        summary = rec.stop()
    hostport = f"localhost:{upstream.tls_port}"
    assert (
        hostport in summary.refused and "refused devbox's certificate" in summary.refused[hostport]
    )
    assert summary.tunnels == {hostport: 1}
    assert any(hostport in m and "tunnelled unrecorded" in m for m in logs)
    assert exchanges(rec.profile.mocks_dir, "shop") == []


@pytest.mark.parametrize(
    "after_connect",
    [b"", b"GET /items/1 HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello-garbage"],
    ids=["hangs-up", "plain-http", "garbage"],
)
def test_a_client_that_never_saw_our_certificate_does_not_end_interception(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path, after_connect: bytes
) -> None:
    # one broken or hostile client after CONNECT used to count as "refused devbox's
    # certificate" and switch interception off for the host: every later client was
    # tunnelled unrecorded (and one trusting only devbox's CA failed verification)
    rec = _recorder(tmp_path, upstream, forward_proxy_port=0)
    listener = rec.listener("forward")
    hostport = f"localhost:{upstream.tls_port}"
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
            s.sendall(f"CONNECT {hostport} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            if after_connect:
                s.sendall(after_connect)
                with contextlib.suppress(OSError):
                    s.recv(4096)  # the proxy's alert or its hang-up
        code, tail, body = curl("--proxy", listener.url, "--cacert", str(devbox_ca),
                                f"{upstream.url}/items/1")  # fmt: skip
        assert code == 0 and tail.endswith(" 200") and body.encode() == ITEM
    finally:
        summary = rec.stop()
    assert summary.refused == {}
    assert summary.intercepted == {hostport: 2}
    assert [e.request.path for e in exchanges(rec.profile.mocks_dir, "shop")] == ["/items/1"]


def test_reverse_proxy_accepts_tls_from_the_service(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    rec = _recorder(tmp_path, upstream)
    try:
        li = rec.listener("shop")
        assert li.tls and li.url == f"https://127.0.0.1:{li.port}"
        assert rec.service_env()["SHOP_URL"] == li.url
        code, tail, body = curl("--cacert", str(devbox_ca), f"{li.url}/items/1")
        assert (code, tail, body.encode()) == (0, "1.1 200", ITEM)
        # plain HTTP on the same port still works (a service configured with http://)
        code, tail, body = curl(f"http://127.0.0.1:{li.port}/items/1")
        assert (code, tail, body.encode()) == (0, "1.1 200", ITEM)
        # the plain dependency's listener stays http://
        assert rec.listener("other").url.startswith("http://")
    finally:
        rec.stop()
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 2
    assert all(e.request.url == f"{upstream.url}/items/1" for e in saved)


def test_no_intercept_tunnels_connect(tmp_path: Path, upstream: Nginx) -> None:
    path = write_profile(tmp_path, {"shop": upstream.url})
    rec = Recorder(
        load_profile(path),
        RecordOptions(ca_bundle=upstream.ca_file, forward_proxy_port=0, intercept=False),
    )
    rec.start()
    try:
        code, tail, _ = curl(
            "--proxy",
            rec.listener("forward").url,
            "--cacert",
            str(upstream.ca_file),
            f"{upstream.url}/items/1",
        )
        assert code == 0 and tail.endswith(" 200")
    finally:
        summary = rec.stop()
    assert summary.tunnels == {f"localhost:{upstream.tls_port}": 1} and not summary.intercepted


def test_a_recorded_head_is_replayed_with_the_headers_the_server_sent(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    # nginx answers HEAD of a gzipped resource with Content-Encoding and no Content-Length
    # (its GET would be chunked); the mock used to make up "Content-Length: 0" and drop
    # the encoding
    def head(*args: str) -> dict[str, str]:
        code, _tail, out = curl("-I", "-H", "Accept-Encoding: gzip", *args)
        assert code == 0, out
        lines = [line.split(":", 1) for line in out.splitlines()[1:] if ":" in line]
        return {k.strip().lower(): v.strip() for k, v in lines}

    url = f"{upstream.url}/gz/text.txt"
    direct = head("--http1.1", "--cacert", str(upstream.ca_file), url)
    assert direct["content-encoding"] == "gzip" and "content-length" not in direct
    rec = _recorder(tmp_path, upstream, forward_proxy_port=0)
    try:
        head("--http1.1", "--proxy", rec.listener("forward").url, "--cacert", str(devbox_ca), url)
    finally:
        rec.stop()
    with running(recordings=rec.profile.mocks_dir / "shop", name="shop") as (_f, port):
        for flag in ("--http1.1", "--http2"):
            got = head(flag, "--cacert", str(devbox_ca), f"https://localhost:{port}/gz/text.txt")
            assert got["content-encoding"] == "gzip" and "content-length" not in got, flag
            assert got["content-type"] == direct["content-type"]

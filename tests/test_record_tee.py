"""Intercepted HTTP/1.1 connections are relayed verbatim and read back by the recording
worker (devbox.record.tee, devbox.record.streams): what a client and a real upstream
(nginx with TLS and http2, or a plain HTTP/1.1 TLS server of the test's own) send each
other is recorded as it crossed, and every way a connection can end is recorded as
what happened."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nginx_support import CHARGE, ITEM, Nginx, nginx
from record_helpers import exchanges, wait_for
from tee_support import Scripted, read_head, read_response, recording, scripted, tunnel

from devbox.record.proxy_core import Captured


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as n:
        yield n


def test_pipelined_requests_are_recorded_as_the_client_sent_them(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    """nginx offers h2, the client HTTP/1.1 only: the proxy opens an HTTP/1.1 connection
    of its own and relays; three requests in one write come back as three exchanges."""
    with recording(tmp_path, upstream.url, upstream.ca_file) as (rec, proxy):
        s = tunnel(proxy, upstream.tls_port, devbox_ca)
        host = f"localhost:{upstream.tls_port}"
        s.sendall(
            f"GET /items/1?page=2 HTTP/1.1\r\nHost: {host}\r\nX-Trace: t-1\r\n\r\n"
            f"HEAD /items/1 HTTP/1.1\r\nHost: {host}\r\n\r\n"
            f"POST /charges HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\n"
            '{"amo\r\n8\r\nunt": 5}\r\n0\r\n\r\n'.encode()
        )
        buf = bytearray()
        got = [read_response(s, buf), read_response(s, buf, body=False), read_response(s, buf)]
        s.close()
        assert [h.split(b"\r\n")[0] for h, _ in got] == [
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 201 Created",
        ]
        assert got[0][1] == ITEM and got[2][1] == CHARGE
        wait_for(lambda: rec.captured().get("shop") == 3)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert [(e.request.method, e.request.path) for e in saved] == [
        ("GET", "/items/1"),
        ("HEAD", "/items/1"),
        ("POST", "/charges"),
    ]
    get, head, post = saved
    assert get.request.query == (("page", "2"),)
    assert ("X-Trace", "t-1") in get.request.headers
    assert get.request.scheme == "https" and get.request.host == f"localhost:{upstream.tls_port}"
    assert get.response is not None and get.response.body == ITEM
    assert head.response is not None and head.response.status == 200 and head.response.body == b""
    # the chunked body is stored decoded, the headers as the client sent them
    assert json.loads(post.request.body) == {"amount": 5}
    assert ("Transfer-Encoding", "chunked") in post.request.headers
    assert post.response is not None and post.response.status == 201
    assert post.response.body == CHARGE
    assert all(e.error is None for e in saved)
    assert all(e.timing.duration_ms >= 0 and e.timing.started_at > 1e9 for e in saved)


def test_repeated_messages_are_each_recorded_whole(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    """The worker remembers a chunk that held one whole message and takes the same bytes
    from there the next time: each repeat is still an exchange of its own, with its body,
    and the same answer bytes to a HEAD are framed as a HEAD's."""
    host = f"localhost:{upstream.tls_port}"
    get = f"GET /items/1 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    post = (
        f"POST /charges HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        'Content-Length: 13\r\n\r\n{"amount": 7}'
    ).encode()
    head = f"HEAD /items/1 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with recording(tmp_path, upstream.url, upstream.ca_file) as (rec, proxy):
        s = tunnel(proxy, upstream.tls_port, devbox_ca)
        buf = bytearray()
        for req in (get, get, get, post, post, head, get, head):
            s.sendall(req)
            _, body = read_response(s, buf, body=req is not head)
            assert body == (b"" if req is head else CHARGE if req is post else ITEM)
        s.close()
        wait_for(lambda: rec.captured().get("shop") == 8)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert [e.request.method for e in saved] == [
        "GET", "GET", "GET", "POST", "POST", "HEAD", "GET", "HEAD",
    ]  # fmt: skip
    assert len({e.id for e in saved}) == 8
    for e in saved:
        assert e.response is not None and e.error is None
        want = {"GET": ITEM, "POST": CHARGE, "HEAD": b""}[e.request.method]
        assert e.response.body == want, e.request.method
        if e.request.method == "POST":
            assert json.loads(e.request.body) == {"amount": 7}
    starts = [e.timing.started_at for e in saved]
    assert starts == sorted(starts) and len(set(starts)) == 8


def test_a_real_client_on_one_connection_and_the_live_view(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    """httpx over HTTP/1.1 keeps one intercepted connection for many requests; a gzip
    answer is stored decoded; the live view hears of each exchange the worker read."""
    heard: list[Captured] = []
    with recording(tmp_path, upstream.url, upstream.ca_file, on_captured=heard.append) as (
        rec,
        proxy,
    ):
        ctx = ssl.create_default_context(cafile=str(devbox_ca))
        with httpx.Client(verify=ctx, proxy=f"http://127.0.0.1:{proxy}", timeout=20) as c:
            for i in range(20):
                r = c.get(f"{upstream.url}/items/1", params={"i": str(i)})
                assert r.content == ITEM and r.http_version == "HTTP/1.1"
            gz = c.get(f"{upstream.url}/gz/text.txt", headers={"Accept-Encoding": "gzip"})
            assert gz.headers["content-encoding"] == "gzip"
            assert gz.text == "hello world, " * 500
        wait_for(lambda: len(heard) == 21)
        assert rec.captured() == {"shop": 21}
    assert {(c.source, c.method, c.status) for c in heard} == {("shop", "GET", 200)}
    assert {c.path for c in heard} == {"/items/1", "/gz/text.txt"}
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 21
    assert [dict(e.request.query)["i"] for e in saved[:20]] == [str(i) for i in range(20)]
    # one connection: every id names the same one
    assert len({e.id.rsplit("-", 1)[0] for e in saved}) == 1
    text = saved[20].response
    assert text is not None and text.body == ("hello world, " * 500).encode()


def test_what_the_upstream_refuses_it_answers_itself(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    """Bytes that are not HTTP go up as they came: the client gets nginx's own 400."""
    with recording(tmp_path, upstream.url, upstream.ca_file) as (rec, proxy):
        s = tunnel(proxy, upstream.tls_port, devbox_ca)
        s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        head, body = read_response(s, bytearray())
        s.close()
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Server: nginx" in head and b"nginx" in body
    # nothing that parses, nothing recorded
    assert all(x.exchanges == 0 for x in rec.stop().sources)


def test_bytes_the_worker_cannot_read_are_relayed_and_reported(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    """nginx takes a request head with bare LF line endings; the worker's reader (strict,
    as llhttp) does not: the answer still reaches the client, and the summary says that
    connection went unrecorded from there."""
    with recording(tmp_path, upstream.url, upstream.ca_file) as (rec, proxy):
        s = tunnel(proxy, upstream.tls_port, devbox_ca)
        host = f"localhost:{upstream.tls_port}"
        buf = bytearray()
        s.sendall(f"GET /items/1 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert read_response(s, buf)[1] == ITEM
        s.sendall(f"GET /items/1 HTTP/1.1\nHost: {host}\n\n".encode())
        head, body = read_response(s, buf)
        assert head.startswith(b"HTTP/1.1 200") and body == ITEM
        s.close()
        wait_for(lambda: rec.captured().get("shop") == 1)
    summary = rec.stop()
    assert summary.unread == 1
    assert summary.unread_first[0].startswith(f"shop (localhost:{upstream.tls_port}): ")
    assert summary.to_json()["unread_connections"] == 1
    assert len(exchanges(rec.profile.mocks_dir, "shop")) == 1


# ---------------------------------------------------------------- an HTTP/1.1-only upstream


def by_path(s: ssl.SSLSocket) -> None:
    """Answers by path: ``/ok``, ``/cut`` (a head promising 100 bytes, 10 of them, then a
    close), ``/stream`` (a chunked answer's first chunk, then nothing) and ``/silent``
    (nothing); the last two wait for the connection's end."""
    buf = bytearray()
    while (head := read_head(s, buf)) is not None:
        path = head.split(b" ")[1]
        if path == b"/ok":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            continue
        if path == b"/cut":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        elif path == b"/stream":
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            s.recv(1)  # until the proxy or the test ends the connection
        else:
            s.recv(1)
        return


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Scripted]:
    with scripted(tmp_path, by_path) as s:
        yield s


def test_every_way_a_connection_ends_is_recorded(
    tmp_path: Path, own: Scripted, devbox_ca: Path
) -> None:
    url = f"https://localhost:{own.port}"
    with recording(tmp_path, url, own.ca.ca, response_timeout_s=1.0) as (rec, proxy):
        # an upstream that closes mid-response: the client has what came, then the end
        s = tunnel(proxy, own.port, devbox_ca)
        s.sendall(f"GET /ok HTTP/1.1\r\nHost: localhost:{own.port}\r\n\r\n".encode())
        assert read_response(s, bytearray())[1] == b"ok"
        s.sendall(f"GET /cut HTTP/1.1\r\nHost: localhost:{own.port}\r\n\r\n".encode())
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        assert got.endswith(b"\r\n\r\n0123456789")
        s.close()
        # a silent upstream: after the response timeout the connection ends
        s = tunnel(proxy, own.port, devbox_ca)
        s.sendall(f"GET /silent HTTP/1.1\r\nHost: localhost:{own.port}\r\n\r\n".encode())
        t0 = time.monotonic()
        with contextlib.suppress(OSError):
            assert s.recv(4096) == b""
        assert time.monotonic() - t0 < 15
        s.close()
        # a client that hangs up while it waits
        s = tunnel(proxy, own.port, devbox_ca)
        s.sendall(f"GET /silent?hang=up HTTP/1.1\r\nHost: localhost:{own.port}\r\n\r\n".encode())
        time.sleep(0.2)
        s.close()
        wait_for(lambda: rec.captured().get("shop") == 4)
        # a response under way when recording stops: kept as it came, cut short
        s = tunnel(proxy, own.port, devbox_ca)
        s.sendall(f"GET /stream HTTP/1.1\r\nHost: localhost:{own.port}\r\n\r\n".encode())
        assert b"first" in s.recv(4096)
        summary = rec.stop(drain_s=0.5)
        s.close()
    saved = exchanges(rec.profile.mocks_dir, "shop")
    by_target = {(e.request.path, e.request.query): e for e in saved}
    shop = next(x for x in summary.sources if x.source == "shop")
    assert len(saved) == 5 and shop.exchanges == 5 and shop.errors == 4
    ok = by_target["/ok", ()]
    assert ok.error is None and ok.response is not None and ok.response.body == b"ok"
    cut = by_target["/cut", ()]
    assert cut.error == "upstream closed the connection mid-response"
    assert cut.response is not None and cut.response.body == b"0123456789"
    silent = by_target["/silent", ()]
    assert silent.error == "timeout: no response after 1s" and silent.response is None
    hung = by_target["/silent", (("hang", "up"),)]
    assert hung.error == "client closed the connection before the response completed"
    stream = by_target["/stream", ()]
    assert stream.error == "recording stopped before the response ended"
    assert stream.response is not None and stream.response.body == b"first"
    assert stream.response_truncated

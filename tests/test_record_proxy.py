"""The recording proxy end to end over real sockets: a real upstream (HTTP and HTTPS with a
test CA), the recorder between, a real client; what is on disk is what crossed the wire."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from record_helpers import (
    BIG,
    Upstream,
    all_bytes,
    exchanges,
    make_ca,
    start_upstream,
    write_profile,
)

from devbox.core.model import Direction
from devbox.core.profile import load_profile
from devbox.record import Recorder, RecordOptions

SECRET = "sk_live_51HqZpQ2eZvKYlo2C0123456789abcdef"
CARD = "4242424242424242"

Make = Callable[..., Recorder]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    started: list[Recorder] = []

    def _make(
        deps: dict[str, str], *, extra: str = "", service_port: int = 1, **opts: Any
    ) -> Recorder:
        path = write_profile(tmp_path, deps, extra=extra, service_port=service_port)
        rec = Recorder(load_profile(path), RecordOptions(**opts))
        rec.start()
        started.append(rec)
        return rec

    yield _make
    for r in started:
        r.stop()


def _conn(rec: Recorder, source: str) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", rec.listener(source).port, timeout=10)


def test_http_exchanges_on_disk_match_the_wire_and_are_redacted(
    make: Make, upstream: Upstream, tmp_path: Path
) -> None:
    rec = make({"payments": upstream.url})
    c = _conn(rec, "payments")
    body = json.dumps({"amount": 12.5, "card": CARD}).encode()
    c.request(
        "POST",
        "/echo?mode=full",
        body=body,
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
    )
    r1 = c.getresponse()
    got1 = r1.read()
    # same keep-alive connection
    c.request("GET", "/n/7")
    r2 = c.getresponse()
    got2 = r2.read()
    c.close()
    assert r1.status == 200 and r2.status == 200
    # the upstream got the request intact (the proxy relays; it redacts only what it stores)
    assert upstream.seen[0].body == body
    assert dict(upstream.seen[0].headers)["Authorization"] == f"Bearer {SECRET}"
    assert dict(upstream.seen[0].headers)["Host"] == f"127.0.0.1:{upstream.port}"
    summary = rec.stop()
    assert summary.committed and summary.exchanges == 2
    assert summary.redactions.get("authorization") == 1
    saved = exchanges(rec.profile.mocks_dir, "payments")
    assert [e.request.target for e in saved] == ["/echo?mode=full", "/n/7"]
    first, second = saved
    assert first.direction is Direction.OUTBOUND and first.source == "payments"
    assert first.request.method == "POST"
    assert first.request.host == f"127.0.0.1:{upstream.port}"
    assert first.request.header(
        "authorization",
    ).startswith("Bearer sk_live_<redacted:")  # type: ignore[union-attr]
    assert json.loads(first.request.body)["amount"] == 12.5
    assert json.loads(first.request.body)["card"].startswith("<redacted:")
    assert first.response is not None and second.response is not None
    assert first.response.status == 200
    # the response body is what the client received, once redacted
    assert json.loads(first.response.body)["path"] == "/echo?mode=full"
    assert second.response.body == got2 == upstream.sent["/n/7"]
    assert got1 == upstream.sent["/echo?mode=full"]
    assert [k for k, _ in second.response.headers] == [k for k, _ in r2.getheaders()]
    assert first.timing.duration_ms > 0 and first.timing.wait_ms is not None
    # never a secret in clear, anywhere under mocks/ (partial or final files alike)
    everything = all_bytes(rec.profile.mocks_dir)
    assert SECRET.encode() not in everything and CARD.encode() not in everything


def test_gzip_chunked_response_relayed_byte_for_byte_and_stored_decoded(
    make: Make, upstream: Upstream
) -> None:
    rec = make({"inventory": upstream.url})
    with socket.create_connection(("127.0.0.1", rec.listener("inventory").port)) as s:
        s.sendall(b"GET /gzip-chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Encoding: gzip" in head
    # de-chunk what the client got: it is the upstream's gzip bytes, untouched
    body, rest = b"", payload
    while True:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            assert rest == b"X-Checksum: done\r\n\r\n"
            break
        body, rest = body + rest[:size], rest[size + 2 :]
    assert body == upstream.sent["/gzip-chunked"]
    rec.stop()
    (ex,) = exchanges(rec.profile.mocks_dir, "inventory")
    assert ex.response is not None
    assert ex.response.header("content-encoding") == "gzip"
    assert ex.response.header("transfer-encoding") == "chunked"
    assert ex.response.body == gzip.decompress(body)
    assert json.loads(ex.response.body)["items"][-1] == 499


def test_chunked_request_body_is_relayed_and_stored_decoded(make: Make, upstream: Upstream) -> None:
    rec = make({"inventory": upstream.url})
    with socket.create_connection(("127.0.0.1", rec.listener("inventory").port)) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n"
        )
        s.sendall(b"6;ext=1\r\n world\r\n0\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200")
    assert upstream.seen[-1].body == b"hello world"
    rec.stop()
    (ex,) = exchanges(rec.profile.mocks_dir, "inventory")
    assert ex.request.body == b"hello world"
    assert ex.request.header("transfer-encoding") == "chunked"


def test_bodies_above_the_cap_are_stored_cut_but_relayed_whole(
    make: Make, upstream: Upstream
) -> None:
    rec = make({"files": upstream.url}, max_body_kb=64)
    big_request = b"a" * (200 * 1024)
    c = _conn(rec, "files")
    c.request("PUT", "/n/1", body=big_request)
    c.getresponse().read()
    c.request("GET", "/big")
    r = c.getresponse()
    got = r.read()
    c.close()
    assert got == BIG  # whole, 300 KiB
    assert upstream.seen[0].body == big_request
    rec.stop()
    put, get = exchanges(rec.profile.mocks_dir, "files")
    assert put.request_truncated and len(put.request.body) == 64 * 1024
    assert not put.response_truncated
    assert get.response_truncated and get.response is not None
    assert get.response.body == BIG[: 64 * 1024]
    assert get.response.header("content-length") == str(len(BIG))


def test_refused_upstream_is_a_502_recorded_as_an_error(make: Make) -> None:
    dead = free_port()
    rec = make({"payments": f"http://127.0.0.1:{dead}"})
    c = _conn(rec, "payments")
    c.request("GET", "/charges/1")
    r = c.getresponse()
    assert r.status == 502
    assert json.loads(r.read())["error"] == "connection refused"
    rec.stop()
    (ex,) = exchanges(rec.profile.mocks_dir, "payments")
    assert ex.response is None and ex.error == "connection refused"
    assert ex.request.path == "/charges/1"


def test_silent_upstream_times_out_with_504(make: Make) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        rec = make({"slow": f"http://127.0.0.1:{srv.getsockname()[1]}"}, response_timeout_s=0.3)
        c = _conn(rec, "slow")
        c.request("GET", "/never")
        r = c.getresponse()
        assert r.status == 504
        r.read()
        rec.stop()
    finally:
        srv.close()
    (ex,) = exchanges(rec.profile.mocks_dir, "slow")
    assert ex.response is None and ex.error is not None and ex.error.startswith("timeout")


def test_upstream_closing_mid_response_cuts_the_client_and_is_recorded(
    make: Make, upstream: Upstream
) -> None:
    rec = make({"flaky": upstream.url})
    c = _conn(rec, "flaky")
    c.request("GET", "/cut")
    r = c.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    rec.stop()
    (ex,) = exchanges(rec.profile.mocks_dir, "flaky")
    assert ex.error == "upstream closed the connection mid-response"
    assert ex.response is not None and ex.response.body == b"x" * 10


def test_https_upstream_with_ca_bundle_verifies_and_sends_sni(make: Make, tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    up = start_upstream(ca.server_context())
    try:
        rec = make({"bank": up.url}, ca_bundle=ca.ca)
        c = _conn(rec, "bank")
        c.request("POST", "/echo", body=b'{"x": 1}', headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["body"] == '{"x": 1}'
        rec.stop()
    finally:
        up.close()
    assert up.sni == ["localhost"]
    (ex,) = exchanges(rec.profile.mocks_dir, "bank")
    assert ex.request.scheme == "https" and ex.request.host == f"localhost:{up.port}"
    assert ex.request.url == f"https://localhost:{up.port}/echo"
    assert dict(up.seen[0].headers)["Host"] == f"localhost:{up.port}"


def test_https_upstream_with_an_unknown_ca_is_a_tls_error(make: Make, tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    up = start_upstream(ca.server_context())
    try:
        rec = make({"bank": up.url})
        c = _conn(rec, "bank")
        c.request("GET", "/n/1")
        r = c.getresponse()
        assert r.status == 502
        assert "certificate verify failed" in json.loads(r.read())["error"]
        rec.stop()
    finally:
        up.close()
    (ex,) = exchanges(rec.profile.mocks_dir, "bank")
    assert ex.response is None and ex.error is not None and ex.error.startswith("tls:")
    assert up.seen == []


def test_pipelined_requests_head_and_204_keep_their_framing(make: Make, upstream: Upstream) -> None:
    rec = make({"inv": upstream.url})
    with socket.create_connection(("127.0.0.1", rec.listener("inv").port)) as s:
        s.settimeout(10)
        s.sendall(
            b"HEAD /n/1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /n/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.count(b"HTTP/1.1 200") == 2 and raw.count(b"HTTP/1.1 204") == 1
    assert raw.endswith(b'{"n": 2}')
    rec.stop()
    saved = exchanges(rec.profile.mocks_dir, "inv")
    assert [(e.request.method, e.request.path) for e in saved] == [
        ("HEAD", "/n/1"),
        ("GET", "/nocontent"),
        ("GET", "/n/2"),
    ]
    assert saved[0].response is not None and saved[0].response.body == b""
    assert saved[0].response.header("content-length") == "8"


def _service(dep_url: Callable[[], str]) -> ThreadingHTTPServer:
    """A tiny service: each inbound request calls the dependency, copying X-Request-Id."""

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            req = urllib.request.Request(dep_url() + "/slow")
            rid = self.headers.get("X-Request-Id")
            if rid:
                req.add_header("X-Request-Id", rid)
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
            body = json.dumps({"rid": rid, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.mark.parametrize("with_header", [True, False])
def test_outbound_calls_link_to_their_inbound_request(
    make: Make, upstream: Upstream, with_header: bool
) -> None:
    rec_box: list[Recorder] = []
    svc = _service(lambda: rec_box[0].listener("dep").url)
    try:
        extra = '[record]\ncorrelation_header = "X-Request-Id"\n' if with_header else ""
        rec = make({"dep": upstream.url}, extra=extra, service_port=svc.server_address[1])
        rec_box.append(rec)
        # one at a time: exactly one inbound request in flight links without any header
        for i in range(3):
            urllib.request.urlopen(f"{rec.inbound_url}/seq/{i}", timeout=10).read()

        def call(i: int) -> None:
            req = urllib.request.Request(
                f"{rec.inbound_url}/par/{i}", headers={"X-Request-Id": f"rid-{i}"}
            )
            urllib.request.urlopen(req, timeout=10).read()

        # concurrent: several inbound requests in flight at once (the dependency takes 0.2s)
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(call, range(6)))
        summary = rec.stop()
    finally:
        svc.shutdown()
        svc.server_close()
    inbound = {e.id: e for e in exchanges(rec.profile.mocks_dir, "inbound")}
    outbound = exchanges(rec.profile.mocks_dir, "dep")
    assert len(inbound) == 9 and len(outbound) == 9
    for e in outbound:
        rid = e.request.header("x-request-id")
        if rid is None:  # sequential phase
            assert e.parent is not None and inbound[e.parent].request.path.startswith("/seq/")
        elif with_header:
            assert e.parent is not None
            assert inbound[e.parent].request.header("x-request-id") == rid
    if with_header:
        assert summary.unlinked == 0
    else:
        # never a guess: calls made while several inbound requests were in flight stay unlinked
        par = [e for e in outbound if e.request.header("x-request-id")]
        wrong = [
            e
            for e in par
            if e.parent is not None
            and inbound[e.parent].request.header("x-request-id") != e.request.header("x-request-id")
        ]
        assert wrong == []
        assert summary.unlinked >= 1


def test_forward_proxy_records_dependencies_and_relays_the_rest(
    make: Make, upstream: Upstream, tmp_path: Path
) -> None:
    other = start_upstream()
    ca = make_ca(tmp_path)
    tls_up = start_upstream(ca.server_context())
    try:
        rec = make({"inventory": upstream.url}, forward_proxy_port=0)
        proxy = rec.listener("forward").url
        env = rec.service_env()
        assert env["HTTP_PROXY"] == proxy and env["NO_PROXY"] == ""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
        assert opener.open(f"{upstream.url}/n/5", timeout=10).read() == b'{"n": 5}'
        assert opener.open(f"http://127.0.0.1:{other.port}/n/6", timeout=10).read() == b'{"n": 6}'
        # CONNECT: relayed as an opaque tunnel; TLS is end to end between client and upstream
        c = http.client.HTTPSConnection(
            "127.0.0.1",
            rec.listener("forward").port,
            timeout=10,
            context=__import__("ssl").create_default_context(cafile=str(ca.ca)),
        )
        c.set_tunnel("localhost", tls_up.port)
        c.request("GET", "/n/7")
        assert c.getresponse().read() == b'{"n": 7}'
        c.close()
        summary = rec.stop()
    finally:
        other.close()
        tls_up.close()
    (ex,) = exchanges(rec.profile.mocks_dir, "inventory")
    assert ex.request.path == "/n/5" and ex.response is not None
    assert ex.request.header("proxy-connection") is None
    assert summary.unrecorded == {f"127.0.0.1:{other.port}": 1}
    assert summary.tunnels == {f"localhost:{tls_up.port}": 1}
    assert upstream.seen[0].path == "/n/5"  # origin-form on the way up


def test_upgrade_switches_to_a_raw_tunnel(make: Make) -> None:
    """A 101 answer turns the connection into a byte tunnel (websockets)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def echo_server() -> None:
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
            )
            while chunk := conn.recv(4096):
                conn.sendall(chunk.upper())

    t = threading.Thread(target=echo_server, daemon=True)
    t.start()
    rec = make({"ws": f"http://127.0.0.1:{srv.getsockname()[1]}"})
    with socket.create_connection(("127.0.0.1", rec.listener("ws").port)) as s:
        s.settimeout(10)
        s.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        s.sendall(b"hello tunnel")
        got = b""
        while len(got) < 12:
            got += s.recv(4096)
        assert got == b"HELLO TUNNEL"
    srv.close()
    rec.stop()
    (ex,) = exchanges(rec.profile.mocks_dir, "ws")
    assert ex.response is not None and ex.response.status == 101


def test_a_taken_port_is_a_clear_error_and_nothing_keeps_running(
    upstream: Upstream, tmp_path: Path
) -> None:
    from devbox.errors import EngineError

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        path = write_profile(tmp_path, {"payments": upstream.url}, ports={"payments": port})
        rec = Recorder(load_profile(path))
        with pytest.raises(EngineError, match=f"port {port} for the recording proxy for payments"):
            rec.start()
        assert not any(t.name == "devbox-record" for t in threading.enumerate())
    finally:
        blocker.close()


def test_a_dead_worker_stops_recording_not_relaying(make: Make, upstream: Upstream) -> None:
    import os
    import signal

    rec = make({"payments": upstream.url})
    c = _conn(rec, "payments")
    for i in range(3):
        c.request("GET", f"/n/{i}")
        assert c.getresponse().read() == f'{{"n": {i}}}'.encode()
    assert rec.link.proc is not None
    from record_helpers import wait_for

    from devbox.store import load_dir

    # what the worker was handed is written by it: wait for that, then kill it
    wait_for(lambda: len(load_dir(rec.profile.mocks_dir / "payments", include_partial=True)) == 3)
    os.kill(rec.link.proc.pid, signal.SIGKILL)
    rec.link.proc.wait(10)
    for i in range(3, 5):
        c.request("GET", f"/n/{i}")
        r = c.getresponse()
        assert r.status == 200 and r.read() == f'{{"n": {i}}}'.encode()
    summary = rec.stop()
    assert summary.failed and not summary.committed
    assert summary.lost == 2
    (partial,) = (rec.profile.mocks_dir / "payments").glob("*.json.partial")
    from devbox.store import load_file

    assert [e.request.path for e in load_file(partial).decoded.exchanges] == [
        "/n/0",
        "/n/1",
        "/n/2",
    ]


def test_forward_proxy_switches_origin_on_one_connection(make: Make, upstream: Upstream) -> None:
    other = start_upstream()
    try:
        rec = make({"inventory": upstream.url, "payments": other.url}, forward_proxy_port=0)
        with socket.create_connection(("127.0.0.1", rec.listener("forward").port)) as s:
            s.settimeout(10)
            # pipelined: the second request names another origin, so it must wait for the
            # first answer before the upstream connection is switched
            s.sendall(
                f"GET {upstream.url}/n/1 HTTP/1.1\r\nHost: 127.0.0.1:{upstream.port}\r\n"
                "Proxy-Connection: keep-alive\r\n\r\n"
                f"GET {other.url}/n/2 HTTP/1.1\r\nHost: 127.0.0.1:{other.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        assert raw.count(b"HTTP/1.1 200") == 2
        assert raw.index(b'{"n": 1}') < raw.index(b'{"n": 2}')
        rec.stop()
    finally:
        other.close()
    (inv,) = exchanges(rec.profile.mocks_dir, "inventory")
    (pay,) = exchanges(rec.profile.mocks_dir, "payments")
    assert inv.request.path == "/n/1" and pay.request.path == "/n/2"
    assert inv.request.header("proxy-connection") is None


def _closing_upstream() -> tuple[socket.socket, threading.Thread]:
    """Answers the first request of each connection, then closes it when a second arrives
    without answering: an upstream whose keep-alive timeout races the next request."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if not data:
                    continue
                path = data.split(b" ")[1]
                body = b'{"path": "' + path + b'"}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                conn.recv(4096)  # the next request on this connection: never answered

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_a_stale_keep_alive_upstream_connection_is_retried_once_for_idempotent_requests(
    make: Make,
) -> None:
    srv, _t = _closing_upstream()
    try:
        rec = make({"svc": f"http://127.0.0.1:{srv.getsockname()[1]}"})
        c = _conn(rec, "svc")
        c.request("GET", "/a")
        assert c.getresponse().read() == b'{"path": "/a"}'
        c.request("GET", "/b")  # goes up the reused connection, which the upstream drops
        r = c.getresponse()
        assert r.status == 200 and r.read() == b'{"path": "/b"}'
        c.request("POST", "/c", body=b"{}")  # not idempotent: never sent twice
        r = c.getresponse()
        assert r.status == 502
        r.read()
        rec.stop()
    finally:
        srv.close()
    a, b, post = exchanges(rec.profile.mocks_dir, "svc")
    assert a.ok and b.ok and b.response is not None and b.response.body == b'{"path": "/b"}'
    # closing with the POST unread makes the upstream's kernel send a reset, or not
    assert post.error in ("upstream closed the connection before responding", "connection reset")
    assert post.response is None


def test_expect_100_continue_is_relayed(make: Make, upstream: Upstream) -> None:
    rec = make({"inv": upstream.url})
    with socket.create_connection(("127.0.0.1", rec.listener("inv").port)) as s:
        s.settimeout(10)
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100")
        s.sendall(b"hello")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert b"HTTP/1.1 200" in raw and b'"body": "hello"' in raw
    rec.stop()
    (ex,) = exchanges(rec.profile.mocks_dir, "inv")
    assert ex.request.body == b"hello" and ex.response is not None
    assert ex.response.status == 200


def test_a_large_body_sent_while_the_upstream_connection_opens_flows_through(
    make: Make, upstream: Upstream
) -> None:
    """The client's first bytes arrive before the upstream connection exists: reading
    pauses past 256 KiB and must resume once it opens."""
    rec = make({"files": upstream.url}, max_body_kb=16)
    body = b"z" * (3 * 1024 * 1024)
    c = _conn(rec, "files")
    c.request("PUT", "/n/9", body=body)
    r = c.getresponse()
    assert r.status == 200 and r.read() == b'{"n": 9}'
    c.close()
    rec.stop()
    assert upstream.seen[0].body == body
    (ex,) = exchanges(rec.profile.mocks_dir, "files")
    assert ex.request_truncated and len(ex.request.body) == 16 * 1024


def test_the_live_view_hears_each_exchange_once_it_is_captured(
    tmp_path: Path, upstream: Upstream
) -> None:
    """``on_captured`` (the dashboard's and ``devbox record``'s live lines and tallies):
    source, method, path without its query, status or the failure, duration."""
    from devbox.record.proxy_core import Captured

    heard: list[Captured] = []
    path = write_profile(tmp_path, {"dep": upstream.url})
    rec = Recorder(load_profile(path), RecordOptions(), on_captured=heard.append)
    rec.start()
    try:
        for target in ("/n/1?token=abc", "/missing", "/cut"):
            conn = _conn(rec, "dep")
            try:
                conn.request("GET", target)
                conn.getresponse().read()
            except (http.client.HTTPException, OSError):
                pass  # /cut: the upstream hangs up mid-body
            finally:
                conn.close()
    finally:
        rec.stop()
    lines = [(c.source, c.method, c.path, c.status, c.error) for c in heard]
    assert lines[:2] == [("dep", "GET", "/n/1", 200, None), ("dep", "GET", "/missing", 404, None)]
    source, method, where, status, error = lines[2]
    assert (source, method, where, status) == ("dep", "GET", "/cut", 200)
    assert error is not None and "mid-response" in error
    assert all(c.duration_ms > 0 for c in heard)

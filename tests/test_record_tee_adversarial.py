"""The verbatim HTTP/1.1 relay of intercepted connections (devbox.record.tee) and the
worker's reading of it (devbox.record.streams), against real clients and servers doing
the unusual: upgrades, declined upgrades, slow uploads, streamed events, responses read
to the close, 1xx, large and compressed bodies, half-closes, a kill -9 and linking to
an inbound request. What the client gets must be what the server sent, and what is
recorded what crossed."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port, wait_port
from nginx_support import ITEM, Nginx, nginx
from record_helpers import alive, children, exchanges, wait_for, write_profile
from tee_support import (
    Serve,
    header,
    read_exact,
    read_head,
    read_response,
    recording,
    request,
    scripted,
    tunnel,
)

from devbox.core.profile import load_profile
from devbox.record import Recorder, RecordOptions
from devbox.store import load_file

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as n:
        yield n


# ---------------------------------------------------------------- upgrades


def answer_ok_to_everything(s: ssl.SSLSocket) -> None:
    """Byte-identical answers, an Upgrade header ignored (a server without WebSockets)."""
    buf = bytearray()
    while read_head(s, buf) is not None:
        s.sendall(OK)


def test_a_declined_upgrade_answered_like_before_lets_the_next_requests_be_read(
    tmp_path: Path, devbox_ca: Path
) -> None:
    """A request offering an upgrade holds the requests behind it until its answer says
    whether HTTP goes on. An answer whose bytes the worker remembered (the same as the
    previous one) must release them too, as an answer read afresh does."""
    with scripted(tmp_path, answer_ok_to_everything) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca) as (rec, proxy):
            s = tunnel(proxy, srv.port, devbox_ca)
            buf = bytearray()
            upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\n"
            for req in (
                request("/first", srv.port),
                request("/upgrade", srv.port, upgrade),
                request("/third", srv.port),
                request("/fourth", srv.port),
            ):
                s.sendall(req)
                assert read_response(s, buf)[1] == b"ok"
            s.close()
            wait_for(lambda: rec.captured().get("shop", 0) >= 4)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert [e.request.path for e in saved] == ["/first", "/upgrade", "/third", "/fourth"]
    assert all(e.response is not None and e.response.body == b"ok" for e in saved)


def ws_frame(payload: bytes, *, mask: bool) -> bytes:
    """One unfragmented text frame (payload < 126 bytes)."""
    assert len(payload) < 126
    if not mask:
        return bytes([0x81, len(payload)]) + payload
    key = os.urandom(4)
    return (
        bytes([0x81, 0x80 | len(payload)])
        + key
        + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    )


def read_frame(s: ssl.SSLSocket, buf: bytearray) -> bytes:
    b0, b1 = read_exact(s, buf, 2)
    assert b0 == 0x81, b0
    n = b1 & 0x7F
    key = read_exact(s, buf, 4) if b1 & 0x80 else b"\0\0\0\0"
    data = read_exact(s, buf, n)
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def ws_echo_late(s: ssl.SSLSocket) -> None:
    """A WebSocket server that takes the client's messages and speaks only when told to
    (a subscription: the client publishes, the server pushes later)."""
    buf = bytearray()
    head = read_head(s, buf)
    assert head is not None
    key = header(head, "sec-websocket-key")
    assert key is not None
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    s.sendall(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    got = [read_frame(s, buf) for _ in range(3)]
    # quiet for longer than the response timeout, then the answer
    time.sleep(2.5)
    s.sendall(ws_frame(b"late: " + b",".join(got), mask=False))
    assert read_frame(s, buf) == b"bye"


def test_a_websocket_is_relayed_both_ways_however_long_the_server_is_quiet(
    tmp_path: Path, devbox_ca: Path
) -> None:
    """After a 101 the connection is no longer requests and responses: a client's
    message owes no answer, so the response timeout must not end it. The handshake is
    recorded, the frames are not read as HTTP."""
    with scripted(tmp_path, ws_echo_late) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca, response_timeout_s=1.0) as (rec, proxy):
            s = tunnel(proxy, srv.port, devbox_ca)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(
                request(
                    "/ws",
                    srv.port,
                    "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
                )
            )
            buf = bytearray()
            head = read_head(s, buf)
            assert head is not None and head.startswith(b"HTTP/1.1 101 ")
            # frames that look like HTTP to a reader that would parse them
            for msg in (b"GET / HTTP/1.1", b"a", b"HTTP/1.1 200 OK"):
                s.sendall(ws_frame(msg, mask=True))
            assert read_frame(s, buf) == b"late: GET / HTTP/1.1,a,HTTP/1.1 200 OK"
            s.sendall(ws_frame(b"bye", mask=True))
            s.close()
            wait_for(lambda: rec.captured().get("shop", 0) >= 1)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 1
    (ws,) = saved
    assert ws.request.path == "/ws" and ws.error is None
    assert ws.response is not None and ws.response.status == 101


# ---------------------------------------------------------------- slow and streamed bodies


def echo_length(s: ssl.SSLSocket) -> None:
    """Answers each request, once its whole body came, with the body's length."""
    buf = bytearray()
    while (head := read_head(s, buf)) is not None:
        n = int(header(head, "content-length") or 0)
        body = read_exact(s, buf, n)
        answer = str(len(body)).encode()
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))


def test_a_slow_upload_is_not_a_silent_upstream(tmp_path: Path, devbox_ca: Path) -> None:
    """The upstream answers once the whole body came: a client still sending is not
    waiting for an answer, however long the upload takes (the parsing path times the
    answer from the end of the request)."""
    # each pause is well under the timeout (a loaded machine stretches a pause, never
    # by 1.4 s), the whole upload well over it
    with scripted(tmp_path, echo_length) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca, response_timeout_s=2.0) as (rec, proxy):
            s = tunnel(proxy, srv.port, devbox_ca)
            s.sendall(
                f"POST /upload HTTP/1.1\r\nHost: localhost:{srv.port}\r\n"
                "Content-Length: 40\r\n\r\n".encode()
            )
            for _ in range(4):
                time.sleep(0.6)
                s.sendall(b"0123456789")
            head, body = read_response(s, bytearray())
            s.close()
            assert head.startswith(b"HTTP/1.1 200") and body == b"40"
            wait_for(lambda: rec.captured().get("shop", 0) >= 1)
    (e,) = exchanges(rec.profile.mocks_dir, "shop")
    assert e.error is None and e.request.body == b"0123456789" * 4
    assert e.response is not None and e.response.body == b"40"


def events_in_lockstep(got: list[threading.Event]) -> Serve:
    """Server-sent events, chunked, each sent only once the client had the one before."""

    def serve(s: ssl.SSLSocket) -> None:
        assert read_head(s, bytearray()) is not None
        s.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for i, seen in enumerate(got):
            event = b"data: event %d\n\n" % i
            s.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            assert seen.wait(15), f"the client never got event {i}"
        s.sendall(b"0\r\n\r\n")

    return serve


def test_server_sent_events_reach_the_client_one_by_one(tmp_path: Path, devbox_ca: Path) -> None:
    """The relay holds nothing back: each event reaches the client while the server waits
    for it to (no buffering until the response ends), and the recording keeps them all."""
    got = [threading.Event() for _ in range(5)]
    with scripted(tmp_path, events_in_lockstep(got)) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca) as (rec, proxy):
            ctx = ssl.create_default_context(cafile=str(devbox_ca))
            with (
                httpx.Client(verify=ctx, proxy=f"http://127.0.0.1:{proxy}", timeout=20) as c,
                c.stream("GET", f"{srv.url}/events") as r,
            ):
                text = ""
                for part in r.iter_text():
                    text += part
                    for i, seen in enumerate(got):
                        if f"data: event {i}\n\n" in text:
                            seen.set()
            wait_for(lambda: rec.captured().get("shop", 0) >= 1)
    want = "".join(f"data: event {i}\n\n" for i in range(5))
    assert text == want
    (e,) = exchanges(rec.profile.mocks_dir, "shop")
    assert e.error is None and e.response is not None
    assert e.response.body == want.encode()


# ---------------------------------------------------------------- framing by the answer


def odd_framings(s: ssl.SSLSocket) -> None:
    """204, 304, HEAD after GET, then an HTTP/1.0 answer read to the close."""
    buf = bytearray()
    while (head := read_head(s, buf)) is not None:
        method, path = head.split(b" ")[:2]
        if path == b"/nothing":
            s.sendall(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
        elif path == b"/cached":
            s.sendall(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 99\r\n\r\n')
        elif path == b"/doc":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            if method != b"HEAD":
                s.sendall(b"hello")
        else:
            s.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil")
            s.sendall(b" the close")
            return


def test_answers_framed_by_status_method_and_close(tmp_path: Path, devbox_ca: Path) -> None:
    with scripted(tmp_path, odd_framings) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca) as (rec, proxy):
            s = tunnel(proxy, srv.port, devbox_ca)
            buf = bytearray()
            for path, method in (
                ("/nothing", "GET"),
                ("/cached", "GET"),
                ("/doc", "GET"),
                ("/doc", "HEAD"),
                ("/doc", "GET"),
            ):
                s.sendall(
                    f"{method} {path} HTTP/1.1\r\nHost: localhost:{srv.port}\r\n\r\n".encode()
                )
                has_body = path == "/doc" and method == "GET"
                _, body = read_response(s, buf, body=has_body)
                assert body == (b"hello" if has_body else b"")
            s.sendall(request("/legacy", srv.port))
            rest = bytearray(buf)
            while chunk := s.recv(4096):
                rest += chunk
            s.close()
            assert rest.endswith(b"\r\n\r\nuntil the close")
            wait_for(lambda: rec.captured().get("shop", 0) >= 6)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    got = [
        (e.request.method, e.request.path, e.response.status, e.response.body)
        for e in saved
        if e.response
    ]
    assert got == [
        ("GET", "/nothing", 204, b""),
        ("GET", "/cached", 304, b""),
        ("GET", "/doc", 200, b"hello"),
        ("HEAD", "/doc", 200, b""),
        ("GET", "/doc", 200, b"hello"),
        ("GET", "/legacy", 200, b"until the close"),
    ]
    assert all(e.error is None for e in saved)


def continue_then_answer(s: ssl.SSLSocket) -> None:
    """100 Continue to a request that expects it, then the body's length and digest."""
    buf = bytearray()
    while (head := read_head(s, buf)) is not None:
        if (header(head, "expect") or "").lower() == "100-continue":
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        n = int(header(head, "content-length") or 0)
        body = read_exact(s, buf, n)
        answer = json.dumps({"n": len(body), "sha": hashlib.sha256(body).hexdigest()}).encode()
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))


def test_curl_expect_100_continue_and_a_large_upload(tmp_path: Path, devbox_ca: Path) -> None:
    """curl waits for the 100 before it sends a 3 MiB body: the interim answer is relayed,
    not recorded as the answer; the body is relayed whole and stored capped."""
    body = os.urandom(3 << 20)
    (tmp_path / "body.bin").write_bytes(body)
    with scripted(tmp_path, continue_then_answer) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca, max_body_kb=64) as (rec, proxy):
            out = subprocess.run(
                [
                    "curl", "-sS", "--http1.1", "--max-time", "30",
                    "-x", f"http://127.0.0.1:{proxy}", "--cacert", str(devbox_ca),
                    "-H", "Expect: 100-continue", "-H", "Content-Type: application/octet-stream",
                    "--data-binary", f"@{tmp_path / 'body.bin'}",
                    f"{srv.url}/upload",
                ],
                capture_output=True,
                timeout=60,
                check=True,
            )  # fmt: skip
            answer = json.loads(out.stdout)
            assert answer == {"n": len(body), "sha": hashlib.sha256(body).hexdigest()}
            wait_for(lambda: rec.captured().get("shop", 0) >= 1)
    (e,) = exchanges(rec.profile.mocks_dir, "shop")
    assert e.error is None and e.response is not None and e.response.status == 200
    assert e.request.body == body[: 64 * 1024] and e.request_truncated
    assert json.loads(e.response.body) == answer and not e.response_truncated


def test_large_and_compressed_downloads_are_relayed_whole_and_stored_capped(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    huge = os.urandom(5 << 20)
    www = upstream.ca_file.parent / "www"
    (www / "static" / "huge.bin").write_bytes(huge)
    long_text = "".join(f"line {i} of a long text\n" for i in range(40_000))
    (www / "gz" / "long.txt").write_text(long_text)
    with recording(tmp_path, upstream.url, upstream.ca_file, max_body_kb=64) as (rec, proxy):
        ctx = ssl.create_default_context(cafile=str(devbox_ca))
        with httpx.Client(verify=ctx, proxy=f"http://127.0.0.1:{proxy}", timeout=30) as c:
            r = c.get(f"{upstream.url}/static/huge.bin")
            assert r.content == huge
            g = c.get(f"{upstream.url}/gz/long.txt", headers={"Accept-Encoding": "gzip"})
            assert g.headers["content-encoding"] == "gzip" and g.text == long_text
            small = c.get(f"{upstream.url}/gz/text.txt", headers={"Accept-Encoding": "gzip"})
            assert small.headers["content-encoding"] == "gzip"
            assert c.get(f"{upstream.url}/items/1").content == ITEM
        wait_for(lambda: rec.captured().get("shop", 0) >= 4)
    big, gz, small_gz, item = exchanges(rec.profile.mocks_dir, "shop")
    assert big.response is not None and big.response.body == huge[: 64 * 1024]
    assert big.response_truncated
    assert gz.response is not None and gz.response_truncated
    assert gz.response.body == long_text.encode()[: 64 * 1024]
    assert small_gz.response is not None and not small_gz.response_truncated
    assert small_gz.response.body == ("hello world, " * 500).encode()
    assert item.response is not None and item.response.body == ITEM
    assert all(e.error is None for e in (big, gz, small_gz, item))


# ---------------------------------------------------------------- awkward boundaries


def messages_inside_messages(sent_head: threading.Event) -> Serve:
    """First answer: ``OK`` alone. Second: a head promising ``len(OK)`` bytes, and, once
    the client had the head, a body that is exactly ``OK``'s bytes."""

    def serve(s: ssl.SSLSocket) -> None:
        buf = bytearray()
        while (head := read_head(s, buf)) is not None:
            n = int(header(head, "content-length") or 0)
            read_exact(s, buf, n)
            path = head.split(b" ")[1]
            if path == b"/nested":
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK))
                assert sent_head.wait(15)
                s.sendall(OK)
            else:
                s.sendall(OK)

    return serve


def test_remembered_bytes_inside_an_unfinished_message_are_its_body(
    tmp_path: Path, devbox_ca: Path
) -> None:
    """Bytes that once were a whole message and arrive again in the middle of another
    (its body) are that message's body, both ways; a head split inside a header line
    and pipelined requests split mid-body are read as the client sent them."""
    sent_head = threading.Event()
    with scripted(tmp_path, messages_inside_messages(sent_head)) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca) as (rec, proxy):
            s = tunnel(proxy, srv.port, devbox_ca)
            buf = bytearray()
            plain = request("/plain", srv.port)
            s.sendall(plain)
            assert read_response(s, buf)[1] == b"ok"
            # a request whose body is, byte for byte, the request just sent
            s.sendall(
                f"POST /nested HTTP/1.1\r\nHost: localhost:{srv.port}\r\n"
                f"Content-Length: {len(plain)}\r\n\r\n".encode()
            )
            time.sleep(0.1)
            s.sendall(plain)
            head = read_head(s, buf)
            assert head is not None
            sent_head.set()
            assert read_exact(s, buf, len(OK)) == OK
            # pipelined, cut in the middle of a header line and of a body
            two = (
                f"POST /a HTTP/1.1\r\nHost: localhost:{srv.port}\r\nContent-Length: 6\r\n"
                f"X-Long: {'x' * 300}\r\n\r\nabcdef" + request("/b", srv.port).decode()
            ).encode()
            for piece in (
                two[:30],
                two[30:200],
                two[200 : -len(plain) - 3],
                two[-len(plain) - 3 :],
            ):
                s.sendall(piece)
                time.sleep(0.05)
            assert read_response(s, buf)[1] == b"ok"
            assert read_response(s, buf)[1] == b"ok"
            s.sendall(plain)
            assert read_response(s, buf)[1] == b"ok"
            s.close()
            wait_for(lambda: rec.captured().get("shop", 0) >= 5)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert [e.request.path for e in saved] == ["/plain", "/nested", "/a", "/b", "/plain"]
    nested = saved[1]
    assert nested.request.body == plain
    assert nested.response is not None and nested.response.body == OK
    assert saved[2].request.body == b"abcdef"
    assert saved[2].request.header("x-long") == "x" * 300
    assert all(e.error is None for e in saved)
    assert all(e.response is not None for e in saved)


# ---------------------------------------------------------------- ends


class TlsClient:
    """A client over a memory BIO, so it can send TLS's close_notify or a bare TCP FIN
    after its request and go on reading the answer (ssl.SSLSocket cannot)."""

    def __init__(self, proxy: int, port: int, cafile: Path) -> None:
        raw = socket.create_connection(("127.0.0.1", proxy), timeout=20)
        raw.sendall(f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        ctx = ssl.create_default_context(cafile=str(cafile))
        ctx.set_alpn_protocols(["http/1.1"])
        self.raw = raw
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        self._flush()

    def _flush(self) -> None:
        if data := self.out.read():
            self.raw.sendall(data)

    def _pump(self) -> bool:
        self._flush()
        data = self.raw.recv(65536)
        if not data:
            self.inc.write_eof()
            return False
        self.inc.write(data)
        return True

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def half_close(self, *, notify: bool) -> None:
        if notify:
            with contextlib.suppress(ssl.SSLWantReadError):
                self.tls.unwrap()
            self._flush()
        self.raw.shutdown(socket.SHUT_WR)

    def read_until(self, done: Callable[[bytes], bool]) -> bytes:
        got = b""
        while not done(got):
            try:
                chunk = self.tls.read(65536)
                if not chunk:
                    return got  # the peer's close_notify after our own
                got += chunk
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return got
            if not self._pump():
                with contextlib.suppress(ssl.SSLError):
                    got += self.tls.read(65536)
                return got
        return got

    def close(self) -> None:
        self.raw.close()


@pytest.mark.parametrize("notify", [True, False], ids=["close-notify", "fin"])
def test_a_client_that_half_closes_after_its_request_gets_the_answer(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path, notify: bool
) -> None:
    with recording(tmp_path, upstream.url, upstream.ca_file) as (rec, proxy):
        c = TlsClient(proxy, upstream.tls_port, devbox_ca)
        try:
            c.send(request("/items/1", upstream.tls_port) + request("/charges", upstream.tls_port))
            c.half_close(notify=notify)
            got = c.read_until(lambda b: b.count(b"HTTP/1.1 ") == 2 and b.endswith(b'ch_1"}'))
            # then the end, not at nginx's keep-alive timeout (75 s; the socket's 20)
            rest = c.read_until(lambda b: False)
        finally:
            c.close()
        assert ITEM in got and b'{"id": "ch_1"}' in got and rest == b""
        wait_for(lambda: rec.captured().get("shop", 0) >= 2)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert [(e.request.path, e.response.status if e.response else None) for e in saved] == [
        ("/items/1", 200),
        ("/charges", 201),
    ]
    assert all(e.error is None for e in saved)


def answer_and_close(s: ssl.SSLSocket) -> None:
    buf = bytearray()
    assert read_head(s, buf) is not None
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlast")


def test_an_upstream_that_closes_after_its_answer(tmp_path: Path, devbox_ca: Path) -> None:
    """``Connection: close`` and the close right after: the client gets the answer and
    then the end; the exchange is recorded whole, without an error."""
    with scripted(tmp_path, answer_and_close) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca) as (rec, proxy):
            s = tunnel(proxy, srv.port, devbox_ca)
            s.sendall(request("/bye", srv.port))
            got = b""
            with contextlib.suppress(ssl.SSLEOFError):
                while chunk := s.recv(4096):
                    got += chunk
            s.close()
            assert got.endswith(b"Connection: close\r\n\r\nlast")
            wait_for(lambda: rec.captured().get("shop", 0) >= 1)
    (e,) = exchanges(rec.profile.mocks_dir, "shop")
    assert e.error is None and e.response is not None and e.response.body == b"last"


def test_kill_9_after_an_answer_through_the_tunnel_keeps_it(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    """The copy of an answer's bytes goes down the worker's pipe before the client has
    them: a kill -9 of ``devbox record`` right after leaves every answered exchange in
    the partial recording."""
    path = write_profile(tmp_path, {"shop": upstream.url})
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "devbox", "record", str(path), "--no-service",
            "--forward-proxy", str(port), "--ca-bundle", str(upstream.ca_file),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    worker: set[int] = set()
    try:
        wait_port(port, timeout=20)
        s = tunnel(port, upstream.tls_port, devbox_ca)
        buf = bytearray()
        for i in range(5):
            s.sendall(request(f"/items/1?i={i}", upstream.tls_port))
            assert read_response(s, buf)[1] == ITEM
        worker = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        s.close()
        wait_for(lambda: not any(alive(p) for p in worker), timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and worker
    profile = load_profile(path)
    (partial,) = profile.recordings_dir("shop").glob("*.json.partial")
    saved = load_file(partial).decoded.exchanges
    assert [dict(e.request.query)["i"] for e in saved] == [str(i) for i in range(5)]
    assert all(e.response is not None and e.response.body == ITEM for e in saved)


# ---------------------------------------------------------------- linking


def _service(proxy: Callable[[], int], dep: str, ca: Path) -> ThreadingHTTPServer:
    """A service whose every request calls its HTTPS dependency through the forward proxy."""

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            ctx = ssl.create_default_context(cafile=str(ca))
            with httpx.Client(verify=ctx, proxy=f"http://127.0.0.1:{proxy()}", timeout=10) as c:
                got = c.get(f"{dep}/items/1", params={"for": self.path})
            body = got.content
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_an_intercepted_call_names_the_inbound_request_it_served(
    tmp_path: Path, upstream: Nginx, devbox_ca: Path
) -> None:
    box: list[Recorder] = []
    svc = _service(lambda: box[0].listener("forward").port, upstream.url, devbox_ca)
    try:
        path = write_profile(tmp_path, {"shop": upstream.url}, service_port=svc.server_address[1])
        rec = Recorder(
            load_profile(path),
            RecordOptions(ca_bundle=upstream.ca_file, forward_proxy_port=0),
        )
        box.append(rec)
        rec.start()
        try:
            for i in range(3):
                r = httpx.get(f"{rec.inbound_url}/in/{i}", timeout=20)
                assert r.content == ITEM
        finally:
            rec.stop()
    finally:
        svc.shutdown()
        svc.server_close()
    inbound = {e.id: e for e in exchanges(rec.profile.mocks_dir, "inbound")}
    outbound = exchanges(rec.profile.mocks_dir, "shop")
    assert len(inbound) == 3 and len(outbound) == 3
    for e in outbound:
        assert e.parent is not None, e.id
        assert inbound[e.parent].request.path == dict(e.request.query)["for"]


class _Chunks:
    """The worker's stdin: what the proxy wrote before it died, one read at a time."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def read1(self, _n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class _GoneProxy:
    """The worker's stdout once the proxy died: every write is a broken pipe."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, data: bytes) -> int:
        if self.lines:
            raise BrokenPipeError(32, "Broken pipe")
        self.lines.append(data)  # "ready", before the kill
        return len(data)

    def flush(self) -> None:
        pass


HOST = "localhost:9"


def _worker_config(path: Path) -> dict[str, object]:
    return {
        "profile": str(path),
        "append": False,
        "fsync": False,
        "stamp": "20260101T000000Z-test",
        "sources": {"shop": "outbound"},
        "max_body": 1 << 20,
        "correlation": None,
    }


def _opened() -> bytes:
    from devbox.record.frames import encode_frame

    return encode_frame(("o", 1, "shop", "outbound", "https", HOST, time.time(), 0.5))


def test_the_worker_drains_the_pipe_when_the_proxy_cannot_hear_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a kill -9 of the proxy the worker reads what is left in the pipe: a live
    view report it cannot deliver (its stdout's reader is dead too) must not end it
    before the exchanges still in the pipe are written."""
    from devbox.record import worker
    from devbox.record.frames import encode_frame

    monkeypatch.setattr(worker, "REPORT_S", 0.0)  # a report due after every read
    monkeypatch.setattr(worker, "NAP_S", 0.0)
    path = write_profile(tmp_path, {"shop": "https://localhost:9"})
    host = HOST

    def exchange(i: int) -> bytes:
        req = f"GET /n/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        frames = [("d", 1, 0, 1.0 + i, req, None), ("d", 1, 1, 1.5 + i, OK, None)]
        return encode_frame(("batch", frames))

    inp = _Chunks([_opened() + exchange(0), exchange(1), exchange(2)])
    assert worker.run(_worker_config(path), inp, _GoneProxy()) == 0  # type: ignore[arg-type]
    (partial,) = load_profile(path).recordings_dir("shop").glob("*.json.partial")
    saved = load_file(partial).decoded.exchanges
    assert [e.request.path for e in saved] == ["/n/0", "/n/1", "/n/2"]


def answer_before_the_body(s: ssl.SSLSocket) -> None:
    """Answers as soon as a head came (as nginx's ``return`` does), then reads the body."""
    buf = bytearray()
    while (head := read_head(s, buf)) is not None:
        s.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated")
        read_exact(s, buf, int(header(head, "content-length") or 0))


def test_a_body_still_coming_after_an_early_answer_is_recorded_whole(
    tmp_path: Path, devbox_ca: Path
) -> None:
    """An upstream may answer before the request's body came (a refusal, a server that
    discards it); the client sends the body all the same and the upstream reads it.
    The exchange is the whole request and the answer, not the body cut where the
    answer happened to arrive."""
    with scripted(tmp_path, answer_before_the_body) as srv:
        with recording(tmp_path, srv.url, srv.ca.ca) as (rec, proxy):
            s = tunnel(proxy, srv.port, devbox_ca)
            buf = bytearray()
            for i in range(2):
                s.sendall(
                    f"POST /early/{i} HTTP/1.1\r\nHost: localhost:{srv.port}\r\n"
                    "Content-Length: 8\r\n\r\n1234".encode()
                )
                assert read_response(s, buf)[1] == b"created"
                s.sendall(b"5678")
            s.sendall(request("/after", srv.port) + b"")
            assert read_response(s, buf)[1] == b"created"
            s.close()
            wait_for(lambda: rec.captured().get("shop", 0) >= 3)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert [(e.request.path, e.request.body) for e in saved] == [
        ("/early/0", b"12345678"),
        ("/early/1", b"12345678"),
        ("/after", b""),
    ]
    assert all(e.response is not None and e.response.body == b"created" for e in saved)
    assert all(e.error is None and not e.request_truncated for e in saved)


def test_an_early_answer_is_kept_when_the_proxy_dies_before_the_body_ends(
    tmp_path: Path,
) -> None:
    """The client had the whole answer while it still sent its body, then the proxy died
    (no frame says the connection ended): the exchange is written, its body cut short."""
    from devbox.record import worker
    from devbox.record.frames import encode_frame

    path = write_profile(tmp_path, {"shop": "https://localhost:9"})
    head = f"POST /early HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 8\r\n\r\n1234"
    frames = [("d", 1, 0, 1.0, head.encode(), None), ("d", 1, 1, 1.5, OK, None)]
    inp = _Chunks([_opened() + encode_frame(("batch", frames))])
    out = _GoneProxy()
    assert worker.run(_worker_config(path), inp, out) == 0  # type: ignore[arg-type]
    (partial,) = load_profile(path).recordings_dir("shop").glob("*.json.partial")
    (e,) = load_file(partial).decoded.exchanges
    assert e.request.path == "/early" and e.request.body == b"1234" and e.request_truncated
    assert e.response is not None and e.response.body == b"ok" and e.error is None

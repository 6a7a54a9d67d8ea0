"""An upstream that answers a request before its body has come (it answers at the head,
then reads the rest): through a reverse proxy (the parsing path) the exchange is recorded
once the body has come, with all of it, and with what came when the client gives up."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from record_helpers import exchanges, wait_for, write_profile

from devbox.core.profile import load_profile
from devbox.record import Recorder, RecordOptions

SIZE = 200_000


class EarlyServer:
    """Answers 202 as soon as a head came, then reads (and counts) the body."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.bodies: list[int] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        with c:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                c.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 8\r\n\r\naccepted")
                while len(buf) < length:
                    chunk = c.recv(65536)
                    if not chunk:
                        self.bodies.append(len(buf))
                        return
                    buf += chunk
                self.bodies.append(length)
                buf = buf[length:]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def early() -> Iterator[EarlyServer]:
    s = EarlyServer()
    try:
        yield s
    finally:
        s.close()


def test_an_early_answer_is_recorded_with_the_whole_body(
    tmp_path: Path, early: EarlyServer
) -> None:
    path = write_profile(tmp_path, {"shop": f"http://127.0.0.1:{early.port}"})
    rec = Recorder(load_profile(path), RecordOptions())
    rec.start()
    body = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", rec.listener("shop").port, timeout=20)
        for _ in range(2):
            # the head alone first, then the body once the answer is in: the answer ends
            # before the request does, every time
            conn.putrequest("POST", "/upload")
            conn.putheader("Content-Length", str(SIZE))
            conn.endheaders()
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (202, b"accepted")
            conn.send(body)
        wait_for(lambda: early.bodies == [SIZE, SIZE])
        # the last body is taken in: the next exchange shows the connection is in step
        conn.request("POST", "/upload", body=b"{}")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (202, b"accepted")
        conn.close()
        wait_for(lambda: rec.captured().get("shop") == 3)
    finally:
        rec.stop()
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert [len(e.request.body) for e in saved] == [SIZE, SIZE, 2]
    assert saved[0].request.body == body and not saved[0].request_truncated
    assert all(e.response is not None and e.response.status == 202 for e in saved)


def test_an_early_answer_whose_client_gives_up_is_kept_cut_short(
    tmp_path: Path, early: EarlyServer
) -> None:
    path = write_profile(tmp_path, {"shop": f"http://127.0.0.1:{early.port}"})
    rec = Recorder(load_profile(path), RecordOptions())
    rec.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", rec.listener("shop").port, timeout=20)
        conn.putrequest("POST", "/upload")
        conn.putheader("Content-Length", str(SIZE))
        conn.endheaders()
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (202, b"accepted")
        conn.send(b"partial")
        conn.close()
        wait_for(lambda: rec.captured().get("shop") == 1)
    finally:
        rec.stop()
    (e,) = exchanges(rec.profile.mocks_dir, "shop")
    # what came of the body, the answer the client had, and why the body stopped
    assert e.request.body == b"partial"
    assert e.error is not None and "client closed its side inside a request" in e.error
    assert e.response is not None and e.response.status == 202

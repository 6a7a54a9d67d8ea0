"""What the tests of the relayed HTTP/1.1 path share (test_record_tee*.py): a Recorder
with a forward proxy, a client's CONNECT + TLS through it, reading answers off a socket,
and a TLS server of the test's own that hands each connection to a script."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from grpc_support import make_test_ca
from record_helpers import write_profile

from devbox.core.profile import load_profile
from devbox.record import Recorder, RecordOptions
from devbox.record.proxy_core import Captured


@contextlib.contextmanager
def recording(
    tmp: Path,
    url: str,
    ca: Path,
    *,
    on_captured: Callable[[Captured], None] | None = None,
    **opts: object,
) -> Iterator[tuple[Recorder, int]]:
    path = write_profile(tmp, {"shop": url})
    rec = Recorder(
        load_profile(path),
        RecordOptions(ca_bundle=ca, forward_proxy_port=0, **opts),  # type: ignore[arg-type]
        on_captured=on_captured,
    )
    rec.start()
    try:
        yield rec, rec.listener("forward").port
    finally:
        rec.stop()


def tunnel(proxy: int, port: int, cafile: Path, alpn: str = "http/1.1") -> ssl.SSLSocket:
    """A client's connection through the forward proxy: CONNECT, then TLS (``alpn``)."""
    raw = socket.create_connection(("127.0.0.1", proxy), timeout=20)
    raw.sendall(f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = raw.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols([alpn])
    return ctx.wrap_socket(raw, server_hostname="localhost")


def read_response(s: ssl.SSLSocket, buf: bytearray, *, body: bool = True) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length response from ``buf`` and the socket."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, bytes(buf)
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if not body:
        return head, b""
    while len(buf) < length:
        chunk = s.recv(65536)
        assert chunk
        buf += chunk
    out = bytes(buf[:length])
    del buf[:length]
    return head, out


def read_head(s: ssl.SSLSocket, buf: bytearray) -> bytes | None:
    """One head from ``buf`` and the socket (None: the peer closed first)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    return head


def read_exact(s: ssl.SSLSocket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        chunk = s.recv(65536)
        assert chunk, f"closed after {len(buf)} of {n} bytes"
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def header(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.encode():
            return v.strip().decode("latin-1")
    return None


Serve = Callable[[ssl.SSLSocket], None]


class Scripted:
    """A TLS server of the test's own (HTTP/1.1 only) on 127.0.0.1: each connection is
    handed to ``serve``, which speaks whatever the test needs."""

    def __init__(self, tmp: Path, serve: Serve) -> None:
        self.ca = make_test_ca(tmp)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(self.ca.cert, self.ca.key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.serve = serve
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"https://localhost:{self.port}"
        self.conns: list[socket.socket] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        raw.settimeout(20)
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as s:
                self.serve(s)
        except OSError:
            pass
        except BaseException as exc:  # an assertion in the script: the test reports it
            self.errors.append(exc)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


@contextlib.contextmanager
def scripted(tmp: Path, serve: Serve) -> Iterator[Scripted]:
    s = Scripted(tmp / "ca", serve)
    try:
        yield s
    finally:
        s.close()
    assert s.errors == []


def request(path: str, port: int, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{extra}\r\n".encode()

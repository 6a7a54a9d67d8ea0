"""Helpers for the devbox record tests: a scriptable upstream, a test CA, profiles on disk."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devbox.core.model import Exchange
from devbox.core.profile import load_profile
from devbox.record import Recorder, RecordOptions
from devbox.store import load_dir

BIG = bytes(range(256)) * 1200  # 300 KiB, not valid UTF-8


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Upstream:
    """A real HTTP(S) server on 127.0.0.1 that answers by path and remembers what it got."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    sent: dict[str, bytes] = field(default_factory=dict)  # path -> raw body bytes it sent
    server: ThreadingHTTPServer | None = None
    scheme: str = "http"

    @property
    def url(self) -> str:
        host = "localhost" if self.scheme == "https" else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _handler(up: Upstream) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            hs = {"Content-Type": "application/json", "Content-Length": str(len(body))}
            hs.update(headers or {})
            for k, v in hs.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            up.sent[self.path] = body

        def handle_one(self) -> None:
            body = self._body()
            up.seen.append(Seen(self.command, self.path, list(self.headers.items()), body))
            path = self.path.split("?")[0]
            if path == "/echo":
                payload = {
                    "method": self.command,
                    "path": self.path,
                    "body": body.decode("utf-8", "replace"),
                    "x-request-id": self.headers.get("X-Request-Id"),
                }
                return self._send(200, json.dumps(payload).encode())
            if path == "/gzip-chunked":
                raw = gzip.compress(json.dumps({"items": list(range(500))}).encode())
                up.sent[self.path] = raw
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(raw), 100):
                    part = raw[i : i + 100]
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\nX-Checksum: done\r\n\r\n")
                return None
            if path == "/big":
                return self._send(200, BIG, {"Content-Type": "application/octet-stream"})
            if path == "/cut":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if path == "/nocontent":
                self.send_response(204)
                self.end_headers()
                return None
            if path.startswith("/n/"):
                return self._send(200, json.dumps({"n": int(path[3:])}).encode())
            if path == "/slow":
                time.sleep(0.2)
                return self._send(200, b'{"slow": true}')
            return self._send(404, b'{"error": "not found"}')

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_one

    return H


def start_upstream(tls: ssl.SSLContext | None = None) -> Upstream:
    up = Upstream(scheme="https" if tls else "http")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(up))
    server.daemon_threads = True
    if tls is not None:

        def sni(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, ctx: ssl.SSLContext) -> None:
            up.sni.append(name)

        tls.sni_callback = sni
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    up.server = server
    up.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return up


@dataclass
class TestCA:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def make_ca(d: Path) -> TestCA:
    """A throw-away CA and a server certificate for localhost / 127.0.0.1 (openssl CLI)."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make a test CA"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=devbox record test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return TestCA(d / "ca.pem", d / "srv.pem", d / "srv.key")


def write_profile(
    root: Path,
    deps: dict[str, str],
    *,
    service_port: int = 1,
    ports: dict[str, int] | None = None,
    extra: str = "",
    service: str = 'command = ["true"]',
    name: str = "rec",
) -> Path:
    """profiles/<name>.toml under ``root``: one dependency per (name, upstream URL)."""
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    lines = [f'name = "{name}"', "[service]", 'name = "svc"', f"port = {service_port}", service]
    for dep, url in deps.items():
        lines += [
            "[[dependency]]",
            f'name = "{dep}"',
            f'upstream = "{url}"',
            f'env = "{dep.upper()}_URL"',
        ]
        if ports and dep in ports:
            lines.append(f"port = {ports[dep]}")
    path = root / "profiles" / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def exchanges(mocks: Path, source: str, *, partial: bool = False) -> list[Exchange]:
    return load_dir(mocks / source, include_partial=partial)


def all_bytes(d: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file())


def wait_for(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise TimeoutError("condition not met in time")


def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers (for timeouts)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def forward_recorder(tmp: Path, url: str, ca_bundle: Path, name: str = "shop") -> Recorder:
    """``devbox record --forward-proxy 0`` for one dependency at ``url``, started (its
    proxy: ``rec.listener("forward").url``); ``ca_bundle`` verifies the upstream."""
    path = write_profile(tmp, {name: url})
    rec = Recorder(load_profile(path), RecordOptions(ca_bundle=ca_bundle, forward_proxy_port=0))
    rec.start()
    return rec


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (devbox record's recording worker)."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.add(int(d.name))
    return out


def alive(pid: int) -> bool:
    """``pid`` runs (not gone, not a zombie)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False

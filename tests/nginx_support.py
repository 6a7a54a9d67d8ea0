"""A real nginx (Debian's, installed by scripts/setup) as an HTTPS + HTTP/2 upstream:
started with a temporary config on free ports, stopped by its PID. Its certificate is
signed by a CA of its own (not devbox's), as a real upstream's would be. Also used by
bench/tls/bench_tls.py."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devbox.wire import certs

ITEM = b'{"sku": 1}'
CHARGE = b'{"id": "ch_1"}'
BIG_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Nginx:
    tls_port: int  # HTTPS, ALPN h2 and http/1.1
    plain_port: int  # HTTP/1.1
    h2c_port: int  # HTTP/2 with prior knowledge
    ca_file: Path  # the CA that signed nginx's certificate (for --ca-bundle / --cacert)
    pid: int
    big: bytes

    @property
    def url(self) -> str:
        return f"https://localhost:{self.tls_port}"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nginx did not listen on {port}")


def _config(
    d: Path,
    n_tls: int,
    n_plain: int,
    n_h2c: int,
    workers: int,
    server_opts: str = "",
    h2c_opts: str = "",
) -> str:
    locations = f"""
        location = /items/1 {{ default_type application/json; return 200 '{ITEM.decode()}'; }}
        location = /charges {{ default_type application/json; return 201 '{CHARGE.decode()}'; }}
        location /static/ {{ root {d}/www; }}
        location /gz/ {{ root {d}/www; gzip on; gzip_types text/plain; gzip_min_length 1; }}
"""
    user = "user root;" if os.geteuid() == 0 else ""
    temp = " ".join(
        f"{kind}_temp_path {d}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi")
    )
    return f"""
daemon off;
{user}
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    {temp} scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    server {{
        listen 127.0.0.1:{n_tls} ssl http2;
        listen 127.0.0.1:{n_plain};
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        {server_opts}
        {locations}
    }}
    server {{
        listen 127.0.0.1:{n_h2c} http2;
        {h2c_opts}
        {locations}
    }}
}}
"""


@contextmanager
def nginx(
    d: Path, *, workers: int = 1, server_opts: str = "", h2c_opts: str = ""
) -> Iterator[Nginx]:
    """``server_opts``: directives for the TLS server (limits, extra locations);
    ``h2c_opts``: for the h2c one (a ``grpc_pass`` gateway)."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(exe), "nginx is missing: scripts/setup installs it"
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca = certs.new_authority(now, common_name="nginx test upstream CA")
    leaf = certs.LeafKey.generate()
    cert = certs.leaf_certificate(ca, leaf, certs.LOCAL_HOSTS, now)
    (d / "cert.pem").write_bytes(certs.chain_pem(cert, ca))
    (d / "key.pem").write_bytes(leaf.pem)
    (d / "ca.pem").write_bytes(ca.cert_pem)
    (d / "www" / "static").mkdir(parents=True, exist_ok=True)
    big = bytes(range(256)) * (BIG_SIZE // 256)
    (d / "www" / "static" / "big.bin").write_bytes(big)
    # gzipped on the fly when asked: a GET is chunked, so a HEAD has no Content-Length
    (d / "www" / "gz").mkdir(parents=True, exist_ok=True)
    (d / "www" / "gz" / "text.txt").write_text("hello world, " * 500)
    tls_port, plain_port, h2c_port = _free_ports(3)
    conf = d / "nginx.conf"
    conf.write_text(_config(d, tls_port, plain_port, h2c_port, workers, server_opts, h2c_opts))
    log = d / "error.log"
    proc = subprocess.Popen(
        [exe, "-p", str(d), "-e", str(log), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for port in (tls_port, plain_port, h2c_port):
            _wait(port, proc, log)
        yield Nginx(tls_port, plain_port, h2c_port, d / "ca.pem", proc.pid, big)
    finally:
        # the master's PID: SIGQUIT is nginx's graceful stop, SIGKILL if it lingers
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()

"""HTTP/2 flow through the intercepting forward proxy (``devbox.record.tee``, read by
``devbox.record.h2streams``): the
upstream's connection preface that arrives during the client's handshake, its
MAX_CONCURRENT_STREAMS, its RST_STREAM codes and its GOAWAY. Upstreams: a real nginx
(TLS + http2) and, for what nginx does not do (SETTINGS late, REFUSED_STREAM), a small
h2 server written with the ``h2`` package. Clients: curl --http2 and httpx http2=True."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import httpx
import pytest
from nginx_support import ITEM, nginx
from record_helpers import exchanges, forward_recorder

from devbox.wire import certs


def curl(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); a hang ends at --max-time."""
    exe = shutil.which("curl")
    assert exe
    r = subprocess.run(
        [exe, "-sS", "--max-time", "15", *args], capture_output=True, text=True, timeout=30
    )
    return r.returncode, r.stdout, r.stderr


# ------------------------------------------------------------ nginx


def test_request_bodies_beyond_the_initial_window(tmp_path: Path, devbox_ca: Path) -> None:
    """nginx's SETTINGS and connection WINDOW_UPDATE come while the client's handshake
    runs: the relay must see them, or bodies past 64 KiB wait for a window for ever."""
    d = tmp_path / "nginx"
    opts = (
        f"location /up/ {{ root {d}/www; dav_methods PUT; create_full_put_path on; "
        "client_max_body_size 8m; client_body_buffer_size 1m; }"
    )
    body = bytes(range(256)) * 800  # 200 KiB
    src = tmp_path / "body.bin"
    src.write_bytes(body)
    with nginx(d, server_opts=opts) as up:
        rec = forward_recorder(tmp_path, up.url, up.ca_file)
        proxy = rec.listener("forward").url
        try:
            for name in ("a.bin", "b.bin"):  # the second adds up past the connection window
                code, out, err = curl(
                    "-x", proxy, "--cacert", str(devbox_ca), "--http2", "-T", str(src),
                    "-w", "%{http_version} %{http_code}", "-o", "/dev/null",
                    f"{up.url}/up/{name}",
                )  # fmt: skip
                assert (code, out) == (0, "2 201"), err
                assert (d / "www" / "up" / name).read_bytes() == body
        finally:
            rec.stop()
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 2 and all(e.error is None for e in saved)
    assert all(e.request.body == body for e in saved)


def _many(url: str, ca: Path, proxy: str, n: int, path: str = "/items/1") -> list[int | str]:
    async def run() -> list[int | str]:
        ctx = ssl.create_default_context(cafile=str(ca))
        async with httpx.AsyncClient(http2=True, verify=ctx, proxy=proxy, timeout=15) as c:
            # one request first: until its tunnel has said h2 (ALPN), httpx opens a tunnel
            # per request, and streams on one connection are what reach the limit
            first = await c.get(f"{url}/items/1?i=first")
            assert first.http_version == "HTTP/2"
            rs = await asyncio.gather(
                *(c.get(f"{url}{path}?i={i}") for i in range(n)), return_exceptions=True
            )
        return [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in rs]

    return asyncio.run(run())


def test_streams_beyond_the_upstream_limit_wait(tmp_path: Path, devbox_ca: Path) -> None:
    # each answer takes nginx ~0.1 s (256 KiB at limit_rate 2m): the streams stay open,
    # so more than the 2 nginx allows are wanted at once (``return 200`` ends each one
    # before nginx reads the next request)
    opts = "http2_max_concurrent_streams 2; limit_rate 2m;"
    with nginx(tmp_path / "nginx", server_opts=opts) as up:
        rec = forward_recorder(tmp_path, up.url, up.ca_file)
        try:
            proxy = rec.listener("forward").url
            statuses = _many(up.url, devbox_ca, proxy, 12, "/static/big.bin")
        finally:
            rec.stop()
    assert statuses == [200] * 12
    assert rec.core.stats.intercepted == {f"localhost:{up.tls_port}": 1}  # one connection
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 13 and all(e.error is None for e in saved)
    assert sum(e.response is not None and e.response.body == up.big for e in saved) == 12


def test_upstream_goaway_streams_it_covers_finish(tmp_path: Path, devbox_ca: Path) -> None:
    """nginx says GOAWAY after 3 requests on a connection (keepalive_requests): the one it
    still answers comes through, the client goes on on a new connection."""
    with nginx(tmp_path / "nginx", server_opts="keepalive_requests 3;") as up:
        rec = forward_recorder(tmp_path, up.url, up.ca_file)
        urls = [f"{up.url}/items/1?i={i}" for i in range(7)]
        try:
            code, out, err = curl(
                "-x", rec.listener("forward").url, "--cacert", str(devbox_ca), "--http2",
                "-w", " %{http_code}\n", *urls,
            )  # fmt: skip
        finally:
            rec.stop()
    assert code == 0, err
    assert out == f"{ITEM.decode()} 200\n" * 7
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 7
    assert [e.error for e in saved] == [None] * 7
    assert all(e.response is not None and e.response.body == ITEM for e in saved)


# ------------------------------------------------------------ an h2 upstream of our own


class H2Upstream:
    """TLS + h2 on 127.0.0.1. Its SETTINGS (MAX_CONCURRENT_STREAMS 2) go out only after
    the first requests came (so they reach a relay that already opened streams); streams
    beyond 2 in a read are refused (REFUSED_STREAM); ``/refuse-once`` is refused once,
    ``/cancel`` always reset with CANCEL; the rest answered 200 with their path."""

    LIMIT = 2

    def __init__(self, d: Path) -> None:
        now = dt.datetime.now(dt.UTC)
        ca = certs.new_authority(now, common_name="h2 test upstream CA")
        leaf = certs.LeafKey.generate()
        d.mkdir(parents=True, exist_ok=True)
        (d / "cert.pem").write_bytes(
            certs.chain_pem(certs.leaf_certificate(ca, leaf, certs.LOCAL_HOSTS, now), ca)
        )
        (d / "key.pem").write_bytes(leaf.pem)
        self.ca = d / "ca.pem"
        self.ca.write_bytes(ca.cert_pem)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
        self.ctx.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.refused_once = False
        self.max_open = 0
        self.threads: list[threading.Thread] = []
        self.stop = threading.Event()
        self.threads.append(threading.Thread(target=self._accept, daemon=True))
        self.threads[0].start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(20)
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.LIMIT})
        held = conn.data_to_send()  # our SETTINGS wait for the first requests
        try:
            while not self.stop.is_set():
                data = s.recv(65536)
                if not data:
                    return
                answer: list[tuple[int, str]] = []
                events = conn.receive_data(data)
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        path = dict(ev.headers or ()).get(b":path", b"").decode()
                        sid = ev.stream_id or 0
                        if path == "/cancel":
                            conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                        elif len(answer) >= self.LIMIT or (
                            path == "/refuse-once" and not self.refused_once
                        ):
                            self.refused_once = self.refused_once or path == "/refuse-once"
                            conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
                        else:
                            answer.append((sid, path))
                self.max_open = max(self.max_open, len(answer))
                for sid, path in answer:
                    conn.send_headers(sid, [(":status", "200")])
                    conn.send_data(sid, path.encode(), end_stream=True)
                if held and any(isinstance(e, h2.events.RequestReceived) for e in events):
                    s.sendall(held)
                    held = b""
                if not held:
                    s.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            return
        finally:
            s.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def h2_upstream(tmp_path: Path) -> Iterator[H2Upstream]:
    up = H2Upstream(tmp_path / "h2up")
    try:
        yield up
    finally:
        up.close()


def test_late_stream_limit_and_refused_streams_go_up_again(
    tmp_path: Path, h2_upstream: H2Upstream, devbox_ca: Path
) -> None:
    up = h2_upstream
    rec = forward_recorder(tmp_path, up.url, up.ca)
    proxy = rec.listener("forward").url
    try:
        statuses = _many(up.url, devbox_ca, proxy, 6)
        code, out, err = curl(
            "-x", proxy, "--cacert", str(devbox_ca), "--http2", f"{up.url}/refuse-once"
        )
    finally:
        rec.stop()
    assert statuses == [200] * 6
    assert up.max_open <= H2Upstream.LIMIT
    assert (code, out) == (0, "/refuse-once"), err
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 8 and all(e.error is None for e in saved)  # _many's first, 6, curl


def test_upstream_reset_code_reaches_the_client(
    tmp_path: Path, h2_upstream: H2Upstream, devbox_ca: Path
) -> None:
    up = h2_upstream
    rec = forward_recorder(tmp_path, up.url, up.ca)
    try:
        code, _out, err = curl(
            "-x", rec.listener("forward").url, "--cacert", str(devbox_ca), "--http2",
            f"{up.url}/cancel",
        )  # fmt: skip
    finally:
        rec.stop()
    assert code != 0
    assert "CANCEL" in err and "INTERNAL_ERROR" not in err, err

"""HTTP/2 through the intercepting forward proxy (``devbox.record.tee``, read by
``devbox.record.h2streams``) where it is
easy to get wrong: what a client gets through the proxy must be what it gets from the
server directly. Upstreams: node's own ``http2`` server and a real nginx (TLS + http2);
clients: node's ``http2`` client (through ``CONNECT``, as a service with HTTPS_PROXY
would) and curl --http2 ``-x``.

- an upstream's GOAWAY or close must not cut off the end of a response the client has not
  read yet (it was closed as soon as the upstream's last stream ended);
- a request whose answer came before its end (RFC 9113 8.1) still goes up whole (the rest
  was dropped, and the upstream's stream stayed open for ever), even when the client
  hangs up right after its end (what the relay held of it was dropped);
- informational responses (103 Early Hints) reach the client (they were dropped);
- header blocks over 64 KiB are relayed (h2's default limit ended the whole connection).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc_support
import pytest
from grpc_support import make_test_ca
from nginx_support import nginx
from node_support import node, node_server
from record_helpers import exchanges, forward_recorder

NODE_SERVER = r"""
const http2 = require('http2');
const fs = require('fs');
const [key, cert] = process.argv.slice(1);
let counts = [];
let waiting = [];
const server = http2.createSecureServer({
  key: fs.readFileSync(key), cert: fs.readFileSync(cert),
  maxSendHeaderBlockLength: 1 << 20, maxHeaderListPairs: 10000,
  settings: {maxHeaderListSize: 1 << 20},
});
server.on('stream', (stream, headers) => {
  stream.on('error', () => {});
  const path = headers[':path'];
  if (path.startsWith('/ack')) {
    // answers at once, then reads the whole body all the same (?slow: a piece every 10
    // ms): its size goes to /count
    const slow = path.endsWith('?slow');
    stream.respond({':status': 202});
    stream.end('accepted');
    let n = 0;
    stream.on('data', (d) => {
      n += d.length;
      if (slow) { stream.pause(); setTimeout(() => stream.resume(), 10); }
    });
    stream.on('end', () => { counts.push(n); waiting.forEach((f) => f()); });
  } else if (path.startsWith('/count')) {
    // what the /ack calls read, once there are ?n= of them (or after 5 s)
    const n = Number(new URL(path, 'https://x').searchParams.get('n') || 1);
    const answer = () => {
      if (stream.headersSent) return;
      stream.respond({':status': 200});
      stream.end(JSON.stringify(counts));
    };
    if (counts.length >= n) answer();
    else { waiting.push(() => { if (counts.length >= n) answer(); }); setTimeout(answer, 5000); }
  } else if (path === '/hints') {
    stream.additionalHeaders({':status': 103, 'link': '</style.css>; rel=preload'});
    setTimeout(() => { stream.respond({':status': 200}); stream.end('after hints'); }, 50);
  } else if (path === '/big-headers') {
    const h = {':status': 200};
    for (let i = 0; i < 80; i++) h['x-h' + i] = 'v'.repeat(1000);
    stream.respond(h);
    stream.end('ok');
  } else if (path === '/header-bytes') {
    let n = 0;
    for (const k in headers) if (k.startsWith('x-req-')) n += headers[k].length;
    stream.respond({':status': 200});
    stream.end(String(n));
  } else {
    stream.respond({':status': 200});
    stream.end('hello');
  }
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""

# one request on a node http2 session, directly or through a CONNECT proxy; prints what it
# got as JSON. spec: path, method, headers, bodySize (a body of that many bytes), then
# (optional) a second GET on the same session once the first stream closed, or exit (the
# session closes as soon as the stream closed, the process this many ms later)
NODE_CLIENT = r"""
const http2 = require('http2'), http = require('http'), tls = require('tls');
const fs = require('fs'), crypto = require('crypto');
const [target, ca, proxy, specJson] = process.argv.slice(1);
const spec = JSON.parse(specJson);
const url = new URL(target);
const opts = {ca: fs.readFileSync(ca), ALPNProtocols: ['h2'], servername: url.hostname,
              maxSendHeaderBlockLength: 1 << 20};
setTimeout(() => { console.log(JSON.stringify({timeout: true})); process.exit(2); }, 30000).unref();
function connect(cb) {
  if (proxy === '-') return cb(http2.connect(target, opts));
  const p = new URL(proxy);
  const req = http.request({host: p.hostname, port: p.port, method: 'CONNECT',
                            path: `${url.hostname}:${url.port}`});
  req.on('connect', (res, sock) => {
    const t = tls.connect({...opts, socket: sock});
    cb(http2.connect(target, {...opts, createConnection: () => t}));
  });
  req.end();
}
function one(s, path, method, headers, bodySize, done) {
  const out = {n: 0};
  const h = crypto.createHash('sha256');
  const r = s.request({...headers, ':path': path, ':method': method}, {endStream: !bodySize});
  r.on('response', (hd) => { out.status = hd[':status']; });
  r.on('data', (d) => {
    out.n += d.length;
    h.update(d);
    out.text = d.toString('latin1').slice(0, 100);
  });
  r.on('error', (e) => { out.error = String(e); });
  r.on('close', () => { out.rst = r.rstCode; out.sha = h.digest('hex'); done(out); });
  let sent = 0;
  const part = Buffer.alloc(65536, 7);
  const pump = () => {
    while (sent < bodySize) {
      const k = Math.min(part.length, bodySize - sent);
      sent += k;
      if (sent >= bodySize) { r.end(part.subarray(0, k)); return; }
      if (!r.write(part.subarray(0, k))) { r.once('drain', pump); return; }
    }
  };
  pump();
}
connect((s) => {
  s.on('error', () => {});
  one(s, spec.path, spec.method || 'GET', spec.headers || {}, spec.bodySize || 0, (first) => {
    if (spec.exit) {
      console.log(JSON.stringify({first}));
      s.close();
      setTimeout(() => process.exit(0), spec.exit);
      return;
    }
    if (!spec.then) { console.log(JSON.stringify({first})); s.close(); return; }
    one(s, spec.then, 'GET', {}, 0, (then) => {
      console.log(JSON.stringify({first, then}));
      s.close();
    });
  });
});
"""


@pytest.fixture
def test_ca(tmp_path: Path) -> grpc_support.TestCa:
    return make_test_ca(tmp_path / "ca")


@pytest.fixture
def node_h2(test_ca: grpc_support.TestCa) -> Iterator[str]:
    with node_server(NODE_SERVER, test_ca) as url:
        yield url


def node_client(target: str, ca: Path, proxy: str | None, **spec: Any) -> dict[str, Any]:
    r = subprocess.run(
        [node(), "-e", NODE_CLIENT, target, str(ca), proxy or "-", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # not splitlines(): a body's bytes in "text" may hold U+0085, a line break to it
    lines = r.stdout.strip().split("\n")
    assert lines, f"node client: {r.stderr[-2000:]}"
    try:
        out: dict[str, Any] = json.loads(lines[-1])
    except ValueError:
        raise AssertionError(f"node client: {r.stdout[-2000:]!r} {r.stderr[-2000:]!r}") from None
    return out


def curl(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); a hang ends at --max-time."""
    exe = shutil.which("curl")
    assert exe
    r = subprocess.run(
        [exe, "-sS", "--http2", "--max-time", "15", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return r.returncode, r.stdout, r.stderr


def test_the_end_of_a_response_survives_the_upstream_goaway(
    tmp_path: Path, devbox_ca: Path
) -> None:
    """nginx says GOAWAY with its first answer (keepalive_requests 1) and closes once it is
    sent. The relay had up to its per-stream allowance of it still waiting for the
    client's window: closing the client's connection then cut it off (node: CANCEL)."""
    size = 3_000_000
    body = bytes(i % 251 for i in range(size))
    with nginx(tmp_path / "nginx", server_opts="keepalive_requests 1;") as up:
        (tmp_path / "nginx" / "www" / "static" / "f.bin").write_bytes(body)
        rec = forward_recorder(tmp_path, up.url, up.ca_file)
        try:
            proxied = node_client(
                up.url, devbox_ca, rec.listener("forward").url, path="/static/f.bin"
            )["first"]
        finally:
            rec.stop()
    # all of it, the stream ended cleanly: what node's client gets from nginx directly
    got = (proxied["status"], proxied["n"], proxied["sha"], proxied["rst"])
    assert got == (200, size, hashlib.sha256(body).hexdigest(), 0)
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 1 and saved[0].error is None and saved[0].response is not None
    assert saved[0].response.status == 200


def test_a_request_answered_early_still_goes_up_whole(
    tmp_path: Path, devbox_ca: Path, test_ca: grpc_support.TestCa, node_h2: str
) -> None:
    """The server answers 202 at once and reads the 1 MB body after: the relay recorded
    the exchange and dropped the rest of the body, so the server never had all of it
    (nor the request's end: its stream stayed open on the upstream connection)."""
    size = 1_000_000
    direct = node_client(
        node_h2, test_ca.ca, None, path="/ack", method="POST", bodySize=size, then="/count?n=1"
    )
    assert direct["first"]["status"] == 202 and direct["then"]["text"] == f"[{size}]"
    rec = forward_recorder(tmp_path, node_h2, test_ca.ca)
    try:
        proxied = node_client(
            node_h2,
            devbox_ca,
            rec.listener("forward").url,
            path="/ack",
            method="POST",
            bodySize=size,
            then="/count?n=2",
        )
    finally:
        rec.stop()
    assert proxied["first"] == direct["first"]
    # the direct call's count, then the relayed one's
    assert proxied["then"]["text"] == f"[{size},{size}]"
    saved = {e.request.path: e for e in exchanges(rec.profile.mocks_dir, "shop")}
    ack = saved["/ack"]
    assert ack.error is None and ack.response is not None and ack.response.status == 202
    assert ack.response.body == b"accepted"
    # recorded once the body had come, all of it (at the answer's end: what had come)
    assert len(ack.request.body) == size and not ack.request_truncated


def test_a_request_the_client_ended_goes_up_after_it_hangs_up(
    tmp_path: Path, devbox_ca: Path, test_ca: grpc_support.TestCa, node_h2: str
) -> None:
    """The client has its answer (202) and its request's end went out: it exits. What
    the relay had taken of the body but not yet passed on (the upstream's window had not
    let it) was dropped with the connection; from the client's own socket the kernel
    would still have delivered it."""
    size = 3_000_000
    rec = forward_recorder(tmp_path, node_h2, test_ca.ca)
    try:
        proxy = rec.listener("forward").url
        out = node_client(
            node_h2, devbox_ca, proxy, path="/ack?slow", method="POST", bodySize=size, exit=50
        )
        assert out["first"]["status"] == 202
        counted = node_client(node_h2, test_ca.ca, None, path="/count?n=1")["first"]
    finally:
        rec.stop()
    assert counted["text"] == f"[{size}]"


def test_informational_responses_reach_the_client(
    tmp_path: Path, devbox_ca: Path, test_ca: grpc_support.TestCa, node_h2: str
) -> None:
    """103 Early Hints (node's ``additionalHeaders``) before the 200: curl -i shows both
    directly; through the relay the 103 was dropped."""
    rec = forward_recorder(tmp_path, node_h2, test_ca.ca)
    try:
        code, direct, err = curl("-i", "--cacert", str(test_ca.ca), f"{node_h2}/hints")
        assert code == 0, err
        code, proxied, err = curl(
            "-i", "-x", rec.listener("forward").url, "--cacert", str(devbox_ca),
            f"{node_h2}/hints",
        )  # fmt: skip
        assert code == 0, err
    finally:
        rec.stop()

    def shape(out: str) -> list[str]:
        return [ln.strip() for ln in out.splitlines() if ln.startswith(("HTTP/2", "link:"))]

    assert shape(direct) == ["HTTP/2 103", "link: </style.css>; rel=preload", "HTTP/2 200"]
    assert shape(proxied) == shape(direct)
    assert proxied.endswith("after hints")
    saved = exchanges(rec.profile.mocks_dir, "shop")
    assert len(saved) == 1 and saved[0].response is not None
    assert saved[0].response.status == 200 and saved[0].response.body == b"after hints"


def test_header_blocks_over_64k_are_relayed(
    tmp_path: Path, devbox_ca: Path, test_ca: grpc_support.TestCa, node_h2: str
) -> None:
    """80 KB of response headers (curl), then 80 KB of request headers (node's client):
    HEADERS and CONTINUATION frames. h2 kept its 64 KiB default, and a larger block ended
    the whole connection, every stream on it with it."""
    many = {f"x-req-{i}": "r" * 1000 for i in range(80)}
    rec = forward_recorder(tmp_path, node_h2, test_ca.ca)
    proxy = rec.listener("forward").url
    try:
        code, out, err = curl(
            "-D", "-", "-x", proxy, "--cacert", str(devbox_ca), f"{node_h2}/big-headers"
        )
        assert code == 0, err
        assert out.count("v" * 1000) == 80 and out.endswith("ok")
        direct = node_client(node_h2, test_ca.ca, None, path="/header-bytes", headers=many)
        assert direct["first"]["text"] == "80000"
        proxied = node_client(node_h2, devbox_ca, proxy, path="/header-bytes", headers=many)
        assert proxied == direct
    finally:
        rec.stop()
    saved = {e.request.path: e for e in exchanges(rec.profile.mocks_dir, "shop")}
    big = saved["/big-headers"]
    assert big.error is None and big.response is not None
    assert sum(k.startswith("x-h") for k, _ in big.response.headers) == 80
    assert sum(k.startswith("x-req-") for k, _ in saved["/header-bytes"].request.headers) == 80


def test_a_client_that_breaks_the_protocol_is_told_why(tmp_path: Path, devbox_ca: Path) -> None:
    """DATA on stream 0 is a connection error (RFC 9113 6.1): the client gets a GOAWAY
    with PROTOCOL_ERROR before the close, as from nginx, not a bare reset."""
    import socket
    import ssl

    import h2.config
    import h2.connection
    import h2.errors
    import h2.events

    def broken(port: int, via: str | None, ca: Path) -> set[Any]:
        """How the connection ended: GOAWAYs (their codes) and resets."""
        raw = socket.create_connection(("127.0.0.1", int(via.rsplit(":", 1)[1]) if via else port))
        raw.settimeout(10)
        if via:
            raw.sendall(
                f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode()
            )
            assert b" 200 " in raw.recv(4096).split(b"\r\n")[0]
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["h2"])
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        # a DATA frame on stream 0, end-stream flag set, no payload
        tls.sendall(b"\x00\x00\x00\x00\x01\x00\x00\x00\x00")
        events: list[Any] = []
        try:
            while data := tls.recv(65536):
                events += conn.receive_data(data)
        except (ConnectionError, ssl.SSLError):
            events.append("reset")
        finally:
            tls.close()
        return {
            (type(e).__name__, e.error_code) if isinstance(e, h2.events.ConnectionTerminated) else e
            for e in events
            if isinstance(e, h2.events.ConnectionTerminated) or e == "reset"
        }

    with nginx(tmp_path / "nginx") as up:
        direct = broken(up.tls_port, None, up.ca_file)
        rec = forward_recorder(tmp_path, up.url, up.ca_file)
        try:
            proxied = broken(up.tls_port, rec.listener("forward").url, devbox_ca)
        finally:
            rec.stop()
    goaway = ("ConnectionTerminated", h2.errors.ErrorCodes.PROTOCOL_ERROR)
    assert direct == {goaway}  # (nginx sends it twice)
    assert proxied == {goaway}

"""HTTP/2 through the intercepting forward proxy is relayed as it comes, not as whole
messages (``devbox.record.tee``): a server-sent event stream reaches its client
event by event, and a bidirectional gRPC call gets each answer before it sends its next
message. Upstreams: node's own ``http2`` server and the grpcio route guide server, both
on TLS with a CA of the tests' own; clients: httpx ``http2=True`` and grpcio through
``grpc.http_proxy``. Each would hang (and fail on its timeout) if the relay waited for
the end of a message."""

from __future__ import annotations

import asyncio
import json
import queue
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc_support
import httpx
import pytest
from conftest import free_port, wait_port
from grpc_support import compile_protos, grpc_server, load_modules, make_test_ca
from mock_helpers import running
from node_support import node_server
from record_helpers import exchanges, forward_recorder

NODE_SERVER = r"""
const http2 = require('http2');
const fs = require('fs');
const [key, cert] = process.argv.slice(1);
let held = [];
const server = http2.createSecureServer({key: fs.readFileSync(key), cert: fs.readFileSync(cert)});
server.on('stream', (stream, headers) => {
  const path = headers[':path'];
  if (path === '/events') {
    // the first event now, the second only once /go was asked for
    stream.respond({':status': 200, 'content-type': 'text/event-stream'});
    stream.write('data: one\n\n');
    held.push(() => stream.end('data: two\n\n'));
  } else if (path === '/go') {
    const h = held;
    held = [];
    stream.respond({':status': 200, 'content-type': 'text/plain'});
    stream.end(String(h.length));
    h.forEach((f) => f());
  } else {
    stream.respond({':status': 200, 'content-type': 'text/plain'});
    stream.end('hello');
  }
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@pytest.fixture
def test_ca(tmp_path: Path) -> grpc_support.TestCa:
    return make_test_ca(tmp_path / "ca")


@pytest.fixture
def node_h2(test_ca: grpc_support.TestCa) -> Iterator[str]:
    with node_server(NODE_SERVER, test_ca) as url:
        yield url


def test_an_event_stream_arrives_event_by_event(
    tmp_path: Path, devbox_ca: Path, test_ca: grpc_support.TestCa, node_h2: str
) -> None:
    rec = forward_recorder(tmp_path, node_h2, test_ca.ca)
    proxy = rec.listener("forward").url

    async def run() -> tuple[str, bytes, str, bytes]:
        ctx = ssl.create_default_context(cafile=str(devbox_ca))
        async with (
            httpx.AsyncClient(http2=True, verify=ctx, proxy=proxy, timeout=20) as c,
            # /go on a connection of its own: httpx waits for ever for a second stream's
            # answer on a connection whose first stream it is not reading, directly too
            httpx.AsyncClient(http2=True, verify=ctx, proxy=proxy, timeout=20) as side,
        ):
            async with c.stream("GET", f"{node_h2}/events") as r:
                chunks = r.aiter_raw()
                # the server sends its second event only after /go: a relay that waits
                # for the end of the response never passes the first one on
                first = await asyncio.wait_for(anext(chunks), 10)
                go = await side.get(f"{node_h2}/go")
                rest = b"".join([c async for c in chunks])
                return r.http_version, first, go.text, rest

    try:
        version, first, go, rest = asyncio.run(run())
    finally:
        rec.stop()
    assert version == "HTTP/2"
    assert first == b"data: one\n\n"
    assert go == "1"
    assert rest == b"data: two\n\n"
    saved = {e.request.path: e for e in exchanges(rec.profile.mocks_dir, "shop")}
    events = saved["/events"]
    assert events.error is None and events.response is not None
    assert events.response.body == b"data: one\n\ndata: two\n\n"
    assert ("content-type", "text/event-stream") in events.response.headers
    # the recording says how long the first byte took, not the whole stream
    assert events.timing.wait_ms is not None and events.timing.wait_ms < events.timing.duration_ms


def test_a_bidirectional_grpc_call_gets_each_answer_before_it_sends_on(
    tmp_path: Path, devbox_ca: Path, test_ca: grpc_support.TestCa
) -> None:
    import grpc

    gen = compile_protos(tmp_path / "gen")
    pb, pb_grpc = load_modules(gen)
    with grpc_server(gen, test_ca) as server:
        upstream = f"https://localhost:{server.port}"
        rec = forward_recorder(tmp_path, upstream, test_ca.ca)
        proxy = rec.listener("forward").url
        answered = threading.Event()
        got: queue.Queue[str] = queue.Queue()

        def notes() -> Iterator[Any]:
            here = pb.Point(latitude=1, longitude=2)
            # route chat answers a note with the earlier notes at its place: "b" brings
            # "a" back; "c" is sent only once that answer came
            yield pb.RouteNote(location=here, message="a")
            yield pb.RouteNote(location=here, message="b")
            if answered.wait(10):
                yield pb.RouteNote(location=here, message="c")

        creds = grpc.ssl_channel_credentials(root_certificates=devbox_ca.read_bytes())
        opts = [("grpc.http_proxy", proxy), ("grpc.enable_http_proxy", 1)]
        try:
            with grpc.secure_channel(f"localhost:{server.port}", creds, options=opts) as ch:
                stub = pb_grpc.RouteGuideStub(ch)
                for note in stub.RouteChat(notes(), timeout=30):
                    got.put(note.message)
                    answered.set()
        finally:
            rec.stop()
    assert [got.get_nowait() for _ in range(got.qsize())] == ["a", "a", "b"]
    assert rec.core.stats.intercepted == {f"localhost:{server.port}": 1}
    saved = exchanges(rec.profile.mocks_dir, "shop")
    chat = [e for e in saved if e.request.path.endswith("/RouteChat")]
    assert len(chat) == 1 and chat[0].error is None and chat[0].response is not None
    assert chat[0].response.status == 200
    # three notes went up, three came back (each a length-prefixed gRPC message)
    assert len(messages(chat[0].request.body)) == 3
    assert [pb.RouteNote.FromString(m).message for m in messages(chat[0].response.body)] == [
        "a",
        "a",
        "b",
    ]


def messages(body: bytes) -> list[bytes]:
    out, i = [], 0
    while i + 5 <= len(body):
        n = int.from_bytes(body[i + 1 : i + 5], "big")
        out.append(body[i + 5 : i + 5 + n])
        i += 5 + n
    assert i == len(body), "a gRPC body is whole messages"
    return out


def test_grpc_through_the_proxy_keeps_its_trailers_and_an_http_mock_replays_them(
    tmp_path: Path, devbox_ca: Path, test_ca: grpc_support.TestCa
) -> None:
    """gRPC's status is in the trailers: recorded through ``HTTPS_PROXY``, an exchange
    without them replays to grpcio as a broken call. The recording keeps them, and the
    HTTP mock (HTTPS + h2) sends them back."""
    import grpc

    gen = compile_protos(tmp_path / "gen")
    pb, pb_grpc = load_modules(gen)
    creds = grpc.ssl_channel_credentials(root_certificates=devbox_ca.read_bytes())
    here = pb.Point(latitude=407838351, longitude=-746143763)
    nowhere = pb.Point(latitude=0, longitude=0)

    def calls(ch: grpc.Channel) -> list[Any]:
        stub = pb_grpc.RouteGuideStub(ch)
        feature, call = stub.GetFeature.with_call(here, timeout=10)
        out: list[Any] = [feature.name, dict(call.trailing_metadata())["x-feature-db"]]
        try:
            stub.GetFeature(nowhere, timeout=10)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            out += [exc.code(), exc.details()]
        return out

    with grpc_server(gen, test_ca) as server:
        upstream = f"https://localhost:{server.port}"
        rec = forward_recorder(tmp_path, upstream, test_ca.ca)
        opts = [("grpc.http_proxy", rec.listener("forward").url), ("grpc.enable_http_proxy", 1)]
        try:
            with grpc.secure_channel(f"localhost:{server.port}", creds, options=opts) as ch:
                real = calls(ch)
        finally:
            rec.stop()
    assert real[:2] == ["Patriots Path, Mendham, NJ 07945, USA", "v1"]
    assert real[2:] == [grpc.StatusCode.INVALID_ARGUMENT, "no feature at 0,0: über-nowhere"]
    ok, failed = (e.response for e in exchanges(rec.profile.mocks_dir, "shop"))
    assert ok is not None and failed is not None
    assert ok.trailers[0] == ("grpc-status", "0")
    assert ("x-feature-db", "v1") in ok.trailers
    # an error is "trailers only": one HEADERS frame that ends the stream, no body
    assert ("grpc-status", "3") in failed.headers and failed.trailers == ()
    name = [("grpc.ssl_target_name_override", "localhost")]
    with running(recordings=rec.profile.mocks_dir / "shop", upstream=upstream) as (_f, port):
        with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=name) as ch:
            assert calls(ch) == real
    # through a HAR file and back (HAR has no trailers: devbox keeps them in _trailers),
    # with the commands a user runs
    har = tmp_path / "shop.har"
    cli = [sys.executable, "-m", "devbox.cli.main"]
    exported = subprocess.run(
        [*cli, "export", str(rec.profile.mocks_dir / "shop"), "--har", str(har)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    entries = json.loads(har.read_text())["log"]["entries"]
    assert {"name": "grpc-status", "value": "0"} in entries[0]["response"]["_trailers"]
    port = free_port()
    mock = subprocess.Popen(
        [*cli, "mock", "--har", str(har), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(port, 30)
        with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=name) as ch:
            assert calls(ch) == real
    finally:
        mock.terminate()
        mock.communicate(timeout=30)

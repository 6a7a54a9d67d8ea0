"""node's ``@grpc/grpc-js`` as a gRPC peer of devbox beyond route guide's calls: as a
client of the raw-bytes grpcio server (``grpc_raw.py``) and as a server for grpcio's
client, each recorded through the relay and then answered by the mock, and what the
client got from each compared: client streaming with compression, ``-bin`` metadata
both ways, rich errors (``grpc-status-details-bin``) with the metadata grpc-js hands
over with them, deadlines (``grpc-timeout``), an error after a streamed message, a
receive limit on the client."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import stop_process
from grpc_raw import raw_server
from grpc_support import start_mock, start_relay, wait_stored
from loop_support import Loop
from node_support import node

from devbox.wire.contract import Miss

ROOT = Path(__file__).resolve().parent.parent
NODE_ENV = {"NODE_PATH": str(ROOT / ".devbox-node" / "node_modules"), "PATH": "/usr/bin:/bin"}

# node as the client of /adv.Raw (argv[1]: HOST:PORT); prints one JSON object: per
# call its answer (hex), or its code and details, the initial metadata (the "metadata"
# event, absent when none came) and the metadata grpc-js gives with the status and with
# an error (``-bin`` values as hex)
NODE_CLIENT = """
const grpc = require("@grpc/grpc-js");
const target = process.argv[1];
const id = (b) => b;
const mk = (opts) => new grpc.Client(target, grpc.credentials.createInsecure(), opts || {});
const meta = (md) => {
  if (!md) return null;
  const out = {};
  for (const [k, v] of Object.entries(md.getMap())) {
    if (k !== "date") out[k] = Buffer.isBuffer(v) ? "hex:" + v.toString("hex") : v;
  }
  return out;
};
const unary = (client, method, req, md, ms) => new Promise((resolve) => {
  const res = {};
  const call = client.makeUnaryRequest(method, id, id, req, md || new grpc.Metadata(),
    { deadline: Date.now() + (ms || 10000) }, (err, r) => {
      if (err) Object.assign(res, { code: err.code, errmeta: meta(err.metadata) });
      else res.reply = r.toString("hex");
    });
  call.on("metadata", (m) => { res.initial = meta(m); });
  call.on("status", (s) => { res.status = [s.code, s.details, meta(s.metadata)]; resolve(res); });
});
(async () => {
  const out = {};
  const gz = mk({ "grpc.default_compression_algorithm": 2 });
  out.collect = await new Promise((resolve) => {
    const call = gz.makeClientStreamRequest("/adv.Raw/Collect", id, id, new grpc.Metadata(),
      { deadline: Date.now() + 10000 },
      (err, r) => resolve(err ? { code: err.code, details: err.details } : r.toString()));
    for (const c of "ab") call.write(Buffer.from(c.repeat(300)));
    call.end();
  });
  const plain = mk();
  const md = new grpc.Metadata();
  md.add("x-k-bin", Buffer.from([0, 255, 16]));
  md.add("x-k-bin", Buffer.from([1, 2]));
  md.add("x-a", "1");
  out.echoBin = await unary(plain, "/adv.Raw/Echo", Buffer.from("0a026869", "hex"), md);
  out.fail = await unary(plain, "/adv.Raw/Fail", Buffer.from("x"));
  // the details text is the client's own ("Deadline exceeded after 0.301s,..."): code only
  const slow = await unary(plain, "/adv.Raw/Slow", Buffer.from("s"), null, 300);
  out.deadline = [slow.code, slow.initial || null];
  out.streamDeadline = await new Promise((resolve) => {
    const got = [];
    const call = plain.makeServerStreamRequest("/adv.Raw/Forever", id, id,
      Buffer.from("100:0.2"), new grpc.Metadata(), { deadline: Date.now() + 500 });
    call.on("data", (d) => got.push(d.toString()));
    call.on("error", (e) => resolve([got.slice(0, 1), e.code]));
    call.on("end", () => resolve([got.slice(0, 1), 0]));
  });
  const small = mk({ "grpc.max_receive_message_length": 1000 });
  out.maxReceive = await unary(small, "/adv.Raw/Big", Buffer.from("5000"));
  console.log(JSON.stringify(out));
  process.exit(0);
})();
"""

# node as a server of raw bytes (/adv.Node/...) on 127.0.0.1; prints its port
NODE_SERVER = """
const grpc = require("@grpc/grpc-js");
const id = (b) => b;
const method = (name, requestStream, responseStream) => ({
  path: "/adv.Node/" + name, requestStream, responseStream,
  requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id,
});
const echoed = (call) => {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(call.metadata.getMap())) if (k.startsWith("x-")) md.set(k, v);
  return md;
};
const trailers = () => {
  const t = new grpc.Metadata();
  t.set("x-trailer", "t1");
  t.set("x-trailer-bin", Buffer.from([0, 1, 254, 255]));
  return t;
};
const server = new grpc.Server();
server.addService({
  Echo: method("Echo", false, false), Fail: method("Fail", false, false),
  FailLate: method("FailLate", false, true), Stream: method("Stream", false, true),
  Collect: method("Collect", true, false), Chat: method("Chat", true, true),
}, {
  Echo: (call, cb) => { call.sendMetadata(echoed(call)); cb(null, call.request, trailers()); },
  Fail: (call, cb) => {
    const md = new grpc.Metadata();
    md.set("grpc-status-details-bin", Buffer.from("080312036261641a090a03742f78120200ff", "hex"));
    md.set("x-why", "no");
    cb({ code: 3, details: "bad ünïcode 100% \\n done", metadata: md });
  },
  FailLate: (call) => {
    call.write(Buffer.from("m0"));
    call.emit("error", { code: 9, details: "late" });
  },
  Stream: (call) => { for (let i = 0; i < 3; i++) call.write(Buffer.from("m" + i)); call.end(); },
  Collect: (call, cb) => {
    const got = [];
    call.on("data", (d) => got.push(d));
    call.on("end", () => cb(null, Buffer.concat(got)));
  },
  Chat: (call) => {
    call.sendMetadata(echoed(call));
    call.on("data", (d) => call.write(Buffer.concat([d, Buffer.from("!")])));
    call.on("end", () => call.end(trailers()));
  },
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(port);
});
"""


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def _node_client(port: int) -> dict[str, Any]:
    done = subprocess.run(
        [node(), "-e", NODE_CLIENT, f"127.0.0.1:{port}"],
        env=NODE_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout))


def test_grpc_js_client_gets_from_the_mock_what_it_got_from_the_server(loop: Loop) -> None:
    """The error answer was one HEADERS block (trailers-only): grpc-js then emits no
    initial metadata and gives the block's metadata, ``content-type`` included, with
    the error. The mock used to answer headers, then trailers: an initial metadata event
    the server never sent, and other metadata with the error."""
    with raw_server() as port:
        real = _node_client(port)
        relay = loop.run(start_relay(port))
        try:
            relayed = _node_client(relay.port)
            wait_stored(relay.stored, 7)
        finally:
            loop.close_server(relay.server)
    assert relayed == real
    assert real["collect"] == "a" * 300 + "|" + "b" * 300
    assert real["echoBin"]["initial"]["x-k-bin"] == "hex:00ff10"  # the first value
    assert "initial" not in real["fail"]
    assert real["fail"]["errmeta"]["grpc-status-details-bin"].startswith("hex:0803")
    assert real["deadline"] == [4, None] and real["streamDeadline"] == [["m0"], 4]
    assert real["maxReceive"]["code"] == 8
    stored = json.loads(json.dumps(relay.stored))
    mock = loop.run(start_mock(stored))
    try:
        mocked = _node_client(mock.port)
    finally:
        loop.close_server(mock.server)
    assert mocked == real
    assert not any(isinstance(o, Miss) for o in mock.outputs)


def _grpcio_calls(port: int, compression: grpc.Compression) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}", compression=compression) as ch:

        def call(name: str, make: Any) -> None:
            try:
                out[name] = make(ch)
            except grpc.RpcError as exc:
                assert isinstance(exc, grpc.Call)
                out[name] = (
                    exc.code(),
                    exc.details(),
                    sorted(exc.initial_metadata() or ()),
                    sorted(exc.trailing_metadata() or ()),
                )

        def echo(ch: grpc.Channel) -> Any:
            meta = [("x-a", "1"), ("x-b-bin", b"\x00\xff")]
            reply, c = ch.unary_unary("/adv.Node/Echo").with_call(
                b"\x0a\x02hi" * 100, metadata=meta, timeout=10
            )
            return reply, sorted(c.initial_metadata()), sorted(c.trailing_metadata())

        def late(ch: grpc.Channel) -> Any:
            got: list[bytes] = []
            stream = ch.unary_stream("/adv.Node/FailLate")(b"x", timeout=10)
            try:
                got.extend(stream)
            except grpc.RpcError:
                return got, stream.code(), stream.details()
            return got

        def chat(ch: grpc.Channel) -> Any:
            c = ch.stream_stream("/adv.Node/Chat")(iter([b"p", b"q"]), metadata=[("x-c", "c")])
            return list(c), sorted(c.initial_metadata()), sorted(c.trailing_metadata())

        call("echo", echo)
        call("fail", lambda ch: ch.unary_unary("/adv.Node/Fail")(b"x", timeout=10))
        call("late", late)
        call("stream", lambda ch: list(ch.unary_stream("/adv.Node/Stream")(b"x", timeout=10)))
        collect = ch.stream_unary("/adv.Node/Collect")
        call("collect", lambda ch: collect(iter([b"a" * 300, b"b" * 300]), timeout=10))
        call("chat", chat)
    return out


def _undated(value: Any) -> Any:
    """``value`` without grpc-js's ``date`` metadata: two live calls to the server a
    second apart differ in it (what the mock replays is compared with it kept)."""
    if isinstance(value, list):
        return [
            _undated(v)
            for v in value
            if not (isinstance(v, tuple) and len(v) == 2 and v[0] == "date")
        ]
    if isinstance(value, tuple):
        return tuple(_undated(v) for v in value)
    if isinstance(value, dict):
        return {k: _undated(v) for k, v in value.items()}
    return value


def test_grpc_js_server_recorded_and_mocked_for_grpcio(loop: Loop) -> None:
    """A grpc-js server (base64 ``-bin`` metadata, its own trailers-only errors, an
    error after a message) recorded for grpcio's client with and without compression."""
    proc = subprocess.Popen(
        [node(), "-e", NODE_SERVER], env=NODE_ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        real, relayed, stored = {}, {}, []
        for compression in (grpc.Compression.NoCompression, grpc.Compression.Gzip):
            real[compression] = _grpcio_calls(port, compression)
            relay = loop.run(start_relay(port))
            try:
                relayed[compression] = _grpcio_calls(relay.port, compression)
                assert _undated(relayed[compression]) == _undated(real[compression])
                wait_stored(relay.stored, 6)
            finally:
                loop.close_server(relay.server)
            stored.extend(json.loads(json.dumps(relay.stored)))
    finally:
        stop_process(proc)
    echo = real[grpc.Compression.NoCompression]["echo"]
    assert ("x-b-bin", b"\x00\xff") in echo[1] and ("x-trailer-bin", b"\x00\x01\xfe\xff") in echo[2]
    assert real[grpc.Compression.NoCompression]["late"] == (
        [b"m0"],
        grpc.StatusCode.FAILED_PRECONDITION,
        "late",
    )
    mock = loop.run(start_mock(stored))
    try:
        # each recorded once per compression: the n-th identical call gets the n-th answer
        mocked = {c: _grpcio_calls(mock.port, c) for c in real}
    finally:
        loop.close_server(mock.server)
    # what was recorded, the date the server stamped included
    assert mocked == relayed
    assert any(m[0] == "date" for m in relayed[grpc.Compression.NoCompression]["echo"][1])

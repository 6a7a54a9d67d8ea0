"""Compressed gRPC requests (``grpc-encoding: gzip`` / ``deflate``, the compressed flag
of a message's prefix) with real clients: grpcio (channel and call compression) and
node's ``@grpc/grpc-js`` (``grpc.default_compression_algorithm``) against the raw-bytes
grpcio server of ``grpc_raw.py``, recorded through devbox's relay, then served by the
mock. The same request compressed another way (another library, another algorithm, or
not at all) is the same call: the mock must answer it as the server did, the recording
must hold the message a reviewer can read, and redaction and ``devbox replay`` must see
that message too."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_raw import SERVICE, raw_server
from grpc_support import start_mock, start_relay, wait_stored
from loop_support import Loop
from node_support import node

from devbox.replay.grpc import GrpcCalls
from devbox.replay.http import parse_target
from devbox.wire.contract import Hit, Miss, MockOptions, RemoteProtocolError
from devbox.wire.files import value_redactor
from devbox.wire.grpc import codec, inbound
from devbox.wire.grpc.kind import GRPC
from devbox.wire.grpc.protobuf import encode_varint

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / ".devbox-node" / "node_modules"
GZIP, DEFLATE, NONE = (
    grpc.Compression.Gzip,
    grpc.Compression.Deflate,
    grpc.Compression.NoCompression,
)

# node: echo each argv message (hex) through /adv.Raw/Echo on argv[2] with the
# compression algorithm argv[3] (0 identity, 1 deflate, 2 gzip); prints the answers (hex)
NODE_ECHO = """
const grpc = require("@grpc/grpc-js");
const [target, algorithm, ...messages] = process.argv.slice(1);
const client = new grpc.Client(target, grpc.credentials.createInsecure(), {
  "grpc.default_compression_algorithm": Number(algorithm),
});
const echo = (hex) => new Promise((resolve) => {
  client.makeUnaryRequest("/adv.Raw/Echo", (b) => b, (b) => b, Buffer.from(hex, "hex"),
    { deadline: Date.now() + 10000 },
    (err, res) => resolve(err ? { code: err.code, details: err.details } : res.toString("hex")));
});
(async () => {
  const out = [];
  for (const m of messages) out.push(await echo(m));
  console.log(JSON.stringify(out));
  client.close();
})();
"""


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def _message(text: str) -> bytes:
    """Field 1 holding ``text``, long enough that every library compresses it."""
    body = (text * 200).encode()
    return b"\x0a" + encode_varint(len(body)) + body


def _echo(port: int, message: bytes, compression: grpc.Compression) -> Any:
    """What grpcio got for ``message`` sent with ``compression`` (the channel's)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", compression=compression) as ch:
        try:
            return ch.unary_unary(f"/{SERVICE}/Echo")(message, timeout=10)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            return ("error", exc.code(), exc.details())


def _node_echo(port: int, algorithm: int, messages: list[bytes]) -> list[Any]:
    done = subprocess.run(
        [
            node(),
            "-e",
            NODE_ECHO,
            f"127.0.0.1:{port}",
            str(algorithm),
            *(m.hex() for m in messages),
        ],
        env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = json.loads(done.stdout)
    return [bytes.fromhex(x) if isinstance(x, str) else x for x in out]


def _record(loop: Loop, port: int, calls: list[tuple[bytes, grpc.Compression]]) -> list[Any]:
    relay = loop.run(start_relay(port))
    try:
        for message, compression in calls:
            assert _echo(relay.port, message, compression) == message
        wait_stored(relay.stored, len(calls))
    finally:
        loop.close_server(relay.server)
    assert len(relay.stored) == len(calls)
    # through the files' JSON, as devbox record writes them and the mock reads them
    return list(json.loads(json.dumps(relay.stored)))


def test_a_request_matches_however_it_is_compressed(loop: Loop) -> None:
    """Recorded gzip, asked identity or deflate (and the reverse): the server echoed
    the message each time, the mock used to answer NOT_FOUND (it matched on the gzip
    bytes); the recording held ``{"compressed": true, "base64": <gzip>}``."""
    zipped, plain = _message("zipped "), _message("plain ")
    with raw_server() as port:
        stored = _record(loop, port, [(zipped, GZIP), (plain, NONE)])
        real = {(m, c): _echo(port, m, c) for m in (zipped, plain) for c in (GZIP, DEFLATE, NONE)}
    assert set(real.values()) == {zipped, plain}
    mock = loop.run(start_mock(stored))
    try:
        mocked = {key: _echo(mock.port, *key) for key in real}
    finally:
        loop.close_server(mock.server)
    assert mocked == real
    assert not any(isinstance(o, Miss) for o in mock.outputs)
    assert stored[0]["request"] == [{"1": "zipped " * 200}]  # readable, not gzip bytes
    assert stored[0]["request_encoding"] == "gzip"
    assert stored[1]["request"] == [{"1": "plain " * 200}]


def test_node_and_grpcio_compress_alike_for_the_mock(loop: Loop) -> None:
    """grpc-js with gzip recorded, grpcio (identity, gzip) and grpc-js (deflate) asking;
    and grpcio's gzip recording asked by grpc-js with gzip: a gzip stream is not the
    same bytes from node's zlib and grpc-core's."""
    from_node, from_python = _message("node "), _message("python ")
    with raw_server() as port:
        relay = loop.run(start_relay(port))
        try:
            assert _node_echo(relay.port, 2, [from_node]) == [from_node]
            assert _echo(relay.port, from_python, GZIP) == from_python
            wait_stored(relay.stored, 2)
        finally:
            loop.close_server(relay.server)
        real = (
            _echo(port, from_node, NONE),
            _echo(port, from_node, GZIP),
            _node_echo(port, 1, [from_node, from_python]),
            _node_echo(port, 2, [from_python]),
        )
    stored = json.loads(json.dumps(relay.stored))
    assert real == (from_node, from_node, [from_node, from_python], [from_python])
    mock = loop.run(start_mock(stored))
    try:
        mocked = (
            _echo(mock.port, from_node, NONE),
            _echo(mock.port, from_node, GZIP),
            _node_echo(mock.port, 1, [from_node, from_python]),
            _node_echo(mock.port, 2, [from_python]),
        )
    finally:
        loop.close_server(mock.server)
    assert mocked == real
    assert sum(isinstance(o, Hit) for o in mock.outputs) == 5
    assert [o["request"] for o in stored] == [[{"1": "node " * 200}], [{"1": "python " * 200}]]


def test_a_compressed_request_is_redacted(loop: Loop) -> None:
    """A secret in a gzip-compressed request: the recording used to keep the gzip bytes
    (base64), which redaction does not read, so the key was in the file for anyone to
    gunzip. Now it is redacted as in any request, and the mock still matches."""
    key = "sk_live_" + "a1b2c3d4e5f6g7h8i9j0k1l2"
    name = "Ada " * 100  # grpc-core sends a message that does not shrink uncompressed
    secret = b"\x0a" + encode_varint(len(key)) + key.encode() + b"\x12\x90\x03" + name.encode()
    redact = value_redactor(None)
    with raw_server() as port:
        stored = _record(loop, port, [(secret, GZIP)])
    redacted = [GRPC.redact(o, redact) for o in stored]
    text = json.dumps(redacted)
    assert key not in text
    assert "<redacted:" in redacted[0]["request"][0]["1"]
    assert redacted[0]["request"][0]["2"] == name
    mock = loop.run(start_mock(redacted, MockOptions(name="raw", redact_value=redact)))
    try:
        answers = {_echo(mock.port, secret, c) for c in (GZIP, NONE)}
    finally:
        loop.close_server(mock.server)
    # the server's answer echoed the key: the mock's is the redacted recording's
    (answer,) = answers
    assert isinstance(answer, bytes) and answer.endswith(name.encode())
    assert key.encode() not in answer
    assert not any(isinstance(o, Miss) for o in mock.outputs)


def test_a_compressed_answer_is_redacted(loop: Loop) -> None:
    """The server gzips its answer (``context.set_compression``), which echoes a key. The
    recording keeps an answer as the server sent it, compressed, and redaction read none
    of it: the key was on disk for anyone to gunzip. Now the message inside is redacted
    and compressed again; an answer with nothing to redact keeps the server's bytes."""
    key = "sk_live_" + "a1b2c3d4e5f6g7h8i9j0k1l2"
    name = "Ada " * 100
    secret = b"\x0a" + encode_varint(len(key)) + key.encode() + b"\x12\x90\x03" + name.encode()
    clean = _message("nothing to hide ")
    redact = value_redactor(None)
    with raw_server() as port:
        relay = loop.run(start_relay(port))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{relay.port}") as ch:
                gzip_call = ch.unary_unary(f"/{SERVICE}/Gzip")
                assert [gzip_call(m, timeout=10) for m in (secret, clean)] == [secret, clean]
            wait_stored(relay.stored, 2)
        finally:
            loop.close_server(relay.server)
    stored = json.loads(json.dumps(relay.stored))
    assert [o["response_encoding"] for o in stored] == ["gzip", "gzip"]
    # as the server sent them: compressed, so the key is not in the file's text at all
    assert all(o["response"][0]["compressed"] is True for o in stored)
    redacted = [GRPC.redact(o, redact) for o in stored]
    inside = gzip.decompress(base64.b64decode(redacted[0]["response"][0]["base64"]))
    assert key.encode() not in inside and b"<redacted:" in inside and inside.endswith(name.encode())
    assert redacted[1]["response"] == stored[1]["response"]  # the server's very bytes
    mock = loop.run(start_mock(redacted, MockOptions(name="raw", redact_value=redact)))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{mock.port}") as ch:
            gzip_call = ch.unary_unary(f"/{SERVICE}/Gzip")
            answers = [gzip_call(m, timeout=10) for m in (secret, clean)]
    finally:
        loop.close_server(mock.server)
    # grpcio inflates the recompressed answer: the redacted message, the rest unchanged
    assert answers[0] == inside and answers[1] == clean
    assert not any(isinstance(o, Miss) for o in mock.outputs)


def test_a_recording_of_gzip_bytes_still_matches(loop: Loop) -> None:
    """A recording made before (the request stored as its gzip bytes) is keyed by the
    message it holds: a request sent without compression matches it."""
    message = _message("old ")
    with raw_server() as port:
        relay = loop.run(start_relay(port))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{relay.port}") as ch:
                call = ch.unary_unary(f"/{SERVICE}/Echo")
                assert call(message, timeout=10, compression=GZIP) == message
            wait_stored(relay.stored, 1)
        finally:
            loop.close_server(relay.server)
    (obj,) = json.loads(json.dumps(relay.stored))
    obj["request"] = [
        {"compressed": True, "base64": base64.b64encode(gzip.compress(message)).decode()}
    ]
    obj.pop("request_encoding", None)
    mock = loop.run(start_mock([obj]))
    try:
        assert _echo(mock.port, message, NONE) == message
        assert _echo(mock.port, message, DEFLATE) == message
    finally:
        loop.close_server(mock.server)


def test_devbox_replay_sends_a_compressed_call_the_service_reads(loop: Loop) -> None:
    """``devbox replay`` sends a recorded call's messages with the recorded metadata;
    ``grpc-encoding`` is the transport's, not stored, so a request recorded as gzip bytes
    went out with the compressed flag and no encoding: the service answered INTERNAL
    where the client had got its echo."""
    message = _message("replayed ")
    with raw_server() as port:
        (obj,) = _record(loop, port, [(message, GZIP)])
        exchange = inbound.stored_exchange(obj, "1")
        calls = GrpcCalls()
        client = calls.client(parse_target(f"http://127.0.0.1:{port}"), 10)

        async def replay() -> Any:
            try:
                return await client.send(calls.prepare(exchange.request))
            finally:
                client.close()

        answer, _latency = asyncio.run(replay())
    assert exchange.response is not None
    assert (answer.status, answer.reason) == (0, "OK")
    assert (
        json.loads(answer.body) == json.loads(exchange.response.body) == [{"1": "replayed " * 200}]
    )


def test_a_request_inflating_beyond_the_limit(loop: Loop) -> None:
    """65 MiB of zeros, gzip-compressed by grpcio to a few KiB: the server refuses it
    (RESOURCE_EXHAUSTED, its limit is 16 MiB here); the mock, whose limit is 64 MiB, does
    the same rather than inflate without bound (it used to answer NOT_FOUND)."""
    bomb = b"\x0a" + encode_varint(65 << 20) + bytes(65 << 20)
    with raw_server() as port:
        stored = _record(loop, port, [(_message("small "), GZIP)])
        real = _echo(port, bomb, GZIP)
    mock = loop.run(start_mock(stored))
    try:
        mocked = _echo(mock.port, bomb, GZIP)
    finally:
        loop.close_server(mock.server)
    assert real[:2] == mocked[:2] == ("error", grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_what_the_codec_inflates() -> None:
    """Every algorithm gRPC libraries send, and what it must not take: truncated or
    trailing bytes, an encoding it does not know (kept compressed), a bomb."""
    message = _message("codec ")
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_deflate = raw.compress(message) + raw.flush()
    for encoding, data in (
        ("gzip", gzip.compress(message, mtime=1234)),
        ("GZIP", gzip.compress(message, compresslevel=1)),
        ("deflate", zlib.compress(message)),
        ("deflate", raw_deflate),
        (None, gzip.compress(message)),
        (None, zlib.compress(message)),
    ):
        assert codec.decompress(data, encoding) == message, encoding
    zipped = gzip.compress(message)
    assert codec.decompress(zipped[:-3], "gzip") is None
    assert codec.decompress(zipped + b"x", "gzip") is None
    assert codec.decompress(zipped, "snappy") is None
    assert codec.request_json(True, zipped, "snappy") == {
        "compressed": True,
        "base64": base64.b64encode(zipped).decode(),
    }
    assert codec.request_json(True, zipped, "gzip") == {"1": "codec " * 200}
    with pytest.raises(RemoteProtocolError) as err:
        codec.decompress(gzip.compress(bytes(codec.MAX_MESSAGE + 1)), "gzip")
    assert err.value.code == codec.RESOURCE_EXHAUSTED

"""Secrets inside gRPC messages recorded through ``HTTPS_PROXY`` (the HTTP/2 relay):
an ``application/grpc`` body is length-prefixed protobuf, binary, so the text rules
passed it over whole, and a key a call carried (or an answer echoed) went to disk as it
came; compressed, it could not even be seen there. Real parts: the grpcio greeter
(``grpc_server.py``, its answers gzipped or not), a grpcio client through devbox's
forward proxy, then the HTTP mock (HTTPS + h2) answering that client from the redacted
recording."""

from __future__ import annotations

import gzip
from pathlib import Path

import grpc
import grpc_support
import pytest
from grpc_support import compile_protos, grpc_server, load_modules, make_test_ca
from hypothesis import given, settings
from hypothesis import strategies as st
from mock_helpers import running
from record_helpers import all_bytes, exchanges, forward_recorder

from devbox.core.model import Response
from devbox.core.redact import Redactor

KEY = "sk_live_" + "a1b2c3d4e5f6g7h8i9j0k1l2"
# grpc-core sends a message uncompressed when gzip would not shrink it: these would
ADA = " Ada" * 100


@pytest.fixture
def test_ca(tmp_path: Path) -> grpc_support.TestCa:
    return make_test_ca(tmp_path / "ca")


def messages(body: bytes) -> list[tuple[int, bytes]]:
    """(compressed flag, message inflated) of each length-prefixed message."""
    out, i = [], 0
    while i + 5 <= len(body):
        n = int.from_bytes(body[i + 1 : i + 5], "big")
        payload = body[i + 5 : i + 5 + n]
        out.append((body[i], gzip.decompress(payload) if body[i] else payload))
        i += 5 + n
    assert i == len(body), "a gRPC body is whole messages"
    return out


@pytest.mark.parametrize("compression", ["", "gzip"])
def test_a_key_in_grpc_messages_is_redacted_and_the_mock_still_answers(
    tmp_path: Path, devbox_ca: Path, test_ca: grpc_support.TestCa, compression: str
) -> None:
    gen = compile_protos(tmp_path / "gen")
    pb, pb_grpc = load_modules(gen)
    creds = grpc.ssl_channel_credentials(root_certificates=devbox_ca.read_bytes())
    zipped = grpc.Compression.Gzip if compression else grpc.Compression.NoCompression
    with grpc_server(gen, test_ca, compression=compression) as server:
        upstream = f"https://localhost:{server.port}"
        rec = forward_recorder(tmp_path, upstream, test_ca.ca)
        opts = [("grpc.http_proxy", rec.listener("forward").url), ("grpc.enable_http_proxy", 1)]
        try:
            target = f"localhost:{server.port}"
            with grpc.secure_channel(target, creds, options=opts, compression=zipped) as ch:
                greeter = pb_grpc.GreeterStub(ch)
                real = [
                    greeter.SayHello(pb.HelloRequest(name=n), timeout=10).message
                    for n in (KEY + ADA, ADA)
                ]
        finally:
            rec.stop()
    assert real == [f"Hello, {KEY}{ADA}!", f"Hello, {ADA}!"]
    hello, plain = exchanges(rec.profile.mocks_dir, "shop")
    assert hello.response is not None and plain.response is not None
    # the key, in the request's message and in the answer's, is a placeholder now
    for body in (hello.request.body, hello.response.body):
        ((flag, message),) = messages(body)
        assert flag == (1 if compression else 0)  # compressed again when it came so
        assert KEY.encode() not in message and b"<redacted:" in message
    assert KEY.encode() not in all_bytes(rec.profile.mocks_dir)
    # a call with nothing to redact keeps the message the server sent
    reply = pb.HelloReply(message=f"Hello, {ADA}!").SerializeToString()
    assert messages(plain.response.body) == [(1 if compression else 0, reply)]
    name = [("grpc.ssl_target_name_override", "localhost")]
    # the profile's redaction, as `devbox up` gives it: live requests are redacted alike
    shop = rec.profile.mocks_dir / "shop"
    with running(recordings=shop, upstream=upstream, redact=rec.profile.redact) as (_f, port):
        with grpc.secure_channel(
            f"127.0.0.1:{port}", creds, options=name, compression=zipped
        ) as ch:
            greeter = pb_grpc.GreeterStub(ch)
            mocked = [
                greeter.SayHello(pb.HelloRequest(name=n), timeout=10).message
                for n in (KEY + ADA, ADA)
            ]
    assert mocked[1] == f"Hello, {ADA}!"
    # the recorded answer: the key's placeholder (which keeps its well-known prefix)
    assert mocked[0].startswith("Hello, sk_live_<redacted:") and KEY not in mocked[0]
    assert mocked[0].endswith(f"{ADA}!")


def _framed(messages: list[tuple[bool, bytes]]) -> bytes:
    out = b""
    for compressed, payload in messages:
        data = gzip.compress(payload, mtime=0) if compressed else payload
        out += bytes([compressed]) + len(data).to_bytes(4, "big") + data
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.tuples(st.booleans(), st.binary(max_size=120)), max_size=4).map(_framed),
    ),
    st.sampled_from(["gzip", "deflate", "snappy", None]),
    st.binary(max_size=40),
)
def test_any_grpc_body_redacts_without_error_and_twice_changes_nothing(
    body: bytes, encoding: str | None, secret_at: bytes
) -> None:
    """Whatever a server sends as ``application/grpc`` (framed or not, compressed or not,
    a key spliced in anywhere): redaction returns bytes, never raises, and redacting its
    result again changes nothing."""
    body = body[: len(body) // 2] + secret_at + KEY.encode() + body[len(body) // 2 :]
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/grpc"),)
    if encoding:
        headers += (("grpc-encoding", encoding),)
    r = Redactor()
    once = r.response(Response(status=200, headers=headers, body=body))
    assert isinstance(once.body, bytes)
    assert r.response(once).body == once.body

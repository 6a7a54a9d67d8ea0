"""gRPC over TLS (``upstream = "https://…"``): a real grpcio server on TLS only, with a
certificate from a private test CA (made with ``cryptography``), recorded through
``devbox record`` (the relay verifies the server with ``--ca-bundle`` and presents a leaf
of devbox's CA to the client), then served by the mock over TLS with ALPN h2. The client
is grpcio with ``ssl_channel_credentials`` (and @grpc/grpc-js with ``createSsl()``):
devbox's CA given explicitly, or no roots at all and the
``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` devbox sets for the service. Every call shape; the
messages are compared as raw bytes (no deserializer), so byte-identical."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from conftest import free_port
from grpc_support import PROTO_DIR, compile_protos, grpc_server, load_modules, make_test_ca
from loop_support import Loop

from devbox.core.profile import load_profile
from devbox.engine.wiring import trust_env
from devbox.mock import MockFleet
from devbox.record.proxy_core import make_ssl_context
from devbox.wire import tcp
from devbox.wire.ca import cert_store, ensure_ca
from devbox.wire.grpc.kind import GRPC

NODE_MODULES = Path(__file__).resolve().parent.parent / ".devbox-node" / "node_modules"

PROFILE = """\
name = "shop"

[service]
command = ["python3", "-c", "pass"]
port = {service_port}

[[dependency]]
name = "routes"
kind = "grpc"
upstream = "{upstream}"
env = "ROUTES_ADDR"
"""

# every call shape through raw method handles (bytes in, bytes out); argv: generated
# modules, the URL ({routes} or the mock's), the roots file or "-" for grpcio's default
CLIENT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc, routeguide_pb2 as pb
target = sys.argv[2].split("://", 1)[-1]
roots = None if sys.argv[3] == "-" else open(sys.argv[3], "rb").read()
out = {}
with grpc.secure_channel(target, grpc.ssl_channel_credentials(roots)) as ch:
    def raw(kind, name):
        return getattr(ch, kind)(name)
    hello = raw("unary_unary", "/routeguide.Greeter/SayHello")
    reply, call = hello.with_call(pb.HelloRequest(name="Ada").SerializeToString())
    out["unary"] = reply.hex()
    out["initial"] = dict(call.initial_metadata()).get("x-served-by")
    feature = raw("unary_unary", "/routeguide.RouteGuide/GetFeature")
    p = pb.Point(latitude=407838351, longitude=-746143763)
    reply, call = feature.with_call(p.SerializeToString())
    out["feature"] = reply.hex()
    out["trailer"] = dict(call.trailing_metadata()).get("x-feature-db")
    try:
        feature(pb.Point().SerializeToString())
    except grpc.RpcError as exc:
        out["error"] = [exc.code().name, exc.details()]
    rect = pb.Rectangle(lo=pb.Point(latitude=400000000, longitude=-750000000),
                        hi=pb.Point(latitude=420000000, longitude=-730000000))
    listing = raw("unary_stream", "/routeguide.RouteGuide/ListFeatures")
    out["server_stream"] = [m.hex() for m in listing(rect.SerializeToString())]
    route = raw("stream_unary", "/routeguide.RouteGuide/RecordRoute")
    points = [p, pb.Point(latitude=1, longitude=2)]
    out["client_stream"] = route(iter([x.SerializeToString() for x in points])).hex()
    chat = raw("stream_stream", "/routeguide.RouteGuide/RouteChat")
    notes = [pb.RouteNote(location=pb.Point(latitude=1, longitude=1), message=m) for m in "abc"]
    out["bidi"] = [m.hex() for m in chat(iter([n.SerializeToString() for n in notes]))]
print(json.dumps(out, sort_keys=True))
"""


def _run(argv: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_record_over_tls_then_mock_over_tls(tmp_path: Path) -> None:
    gen = compile_protos(tmp_path / "gen")
    test_ca = make_test_ca(tmp_path / "pki")
    _ca, devbox_ca, _new = ensure_ca()
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    (tmp_path / "profiles").mkdir()
    profile_path = tmp_path / "profiles" / "shop.toml"
    with grpc_server(gen, tls=test_ca) as server:
        assert server.url.startswith("https://")
        profile_path.write_text(PROFILE.format(service_port=free_port(), upstream=server.url))
        real = _run([sys.executable, str(client), str(gen), server.url, str(test_ca.ca)])
        record = subprocess.run(
            [
                sys.executable,
                "-m",
                "devbox",
                "record",
                "shop",
                "--no-service",
                "--ca-bundle",
                str(test_ca.ca),
                "--",
                sys.executable,
                str(client),
                str(gen),
                "{routes}",
                str(devbox_ca.cert),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert record.returncode == 0, record.stdout + record.stderr
    through_relay = json.loads(record.stdout.splitlines()[0])
    assert through_relay == real
    assert real["error"] == ["INVALID_ARGUMENT", "no feature at 0,0: über-nowhere"]
    assert real["initial"] == "greeter-1" and real["trailer"] == "v1"
    assert len(real["server_stream"]) == 4 and len(real["bidi"]) == 3  # type: ignore[arg-type]

    (file,) = (tmp_path / "mocks/shop/routes").glob("recording-*.json")
    text = file.read_text()
    for method in ("SayHello", "GetFeature", "ListFeatures", "RecordRoute", "RouteChat"):
        assert f'"method": "{method}"' in text

    profile = load_profile(profile_path)
    fleet = MockFleet(profile)
    fleet.start()
    try:
        url = fleet.urls()["ROUTES_ADDR"]
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", url), url
        # the server is gone: the mock answers over TLS, devbox's CA named explicitly ...
        mocked = _run([sys.executable, str(client), str(gen), url, str(devbox_ca.cert)])
        assert mocked == real
        # ... or through the variables devbox gives the service (grpcio's default roots)
        trust = trust_env(profile)
        assert trust["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] == str(devbox_ca.bundle)
        env = {**os.environ, **trust}
        assert _run([sys.executable, str(client), str(gen), url, "-"], env) == real
        # without devbox's CA the client refuses the mock's certificate
        refused = subprocess.run(
            [sys.executable, str(client), str(gen), url, str(test_ca.ca)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode != 0 and "UNAVAILABLE" in refused.stderr
        # h2c on the same port still works (the first byte tells them apart)
        pb, pbg = load_modules(gen)
        with grpc.insecure_channel(url.split("://")[1]) as ch:
            reply = pbg.GreeterStub(ch).SayHello(pb.HelloRequest(name="Ada"))
            assert reply.SerializeToString().hex() == real["unary"]
    finally:
        fleet.stop()
    stats = fleet.stats()[0]
    assert (stats.hits, stats.misses) == (13, 0)  # six calls, twice, and one in h2c


def test_relay_port_takes_tls_and_h2c(tmp_path: Path) -> None:
    """The recording relay of an https upstream (in-process, as ``WireRecorder`` builds
    it) takes TLS from a client and h2c on the same port; both are recorded."""
    gen = compile_protos(tmp_path / "gen")
    test_ca = make_test_ca(tmp_path / "pki")
    _ca, devbox_ca, _new = ensure_ca()
    pb, pbg = load_modules(gen)
    stored: list[dict[str, Any]] = []
    upstream_tls = make_ssl_context(str(test_ca.ca), alpn=("h2",))

    async def start(port: int) -> asyncio.Server:
        def relay() -> tcp.RelayConnection:
            return tcp.RelayConnection(
                GRPC.recorder_connection(),
                ("127.0.0.1", port),
                stored.extend,
                upstream_tls=upstream_tls,
            )

        tls = cert_store().sni_context(alpn=("h2",))
        return await tcp.start_relay_server(relay, "127.0.0.1", 0, tls=tls)

    loop = Loop()
    try:
        with grpc_server(gen, tls=test_ca) as server:
            relay = loop.run(start(server.port))
            target = f"127.0.0.1:{relay.sockets[0].getsockname()[1]}"
            creds = grpc.ssl_channel_credentials(devbox_ca.cert.read_bytes())
            names = []
            for ch in (grpc.secure_channel(target, creds), grpc.insecure_channel(target)):
                with ch:
                    names.append(pbg.GreeterStub(ch).SayHello(pb.HelloRequest(name="Ada")).message)
            loop.loop.call_soon_threadsafe(relay.close)
        assert names == ["Hello, Ada!", "Hello, Ada!"]
        deadline = time.monotonic() + 10
        while len(stored) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [o["response"] for o in stored] == [[{"1": "Hello, Ada!"}]] * 2
    finally:
        loop.close()


def test_relay_says_when_the_upstream_certificate_is_not_trusted(tmp_path: Path) -> None:
    """Without ``--ca-bundle`` the private CA is not trusted: the client's call fails
    and devbox says why, once, with the fix."""
    gen = compile_protos(tmp_path / "gen")
    test_ca = make_test_ca(tmp_path / "pki")
    _ca, devbox_ca, _new = ensure_ca()
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    (tmp_path / "profiles").mkdir()
    with grpc_server(gen, tls=test_ca) as server:
        (tmp_path / "profiles" / "shop.toml").write_text(
            PROFILE.format(service_port=free_port(), upstream=server.url)
        )
        record = subprocess.run(
            [
                *(sys.executable, "-m", "devbox", "record", "shop", "--no-service", "--"),
                *(sys.executable, str(client), str(gen), "{routes}", str(devbox_ca.cert)),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
    out = record.stdout + record.stderr
    assert record.returncode != 0, out
    assert "routes: TLS to the upstream" in out and "certificate verify failed" in out
    assert "--ca-bundle" in out
    assert out.count("routes: TLS to the upstream") == 1


def test_node_grpc_js_over_tls_record_then_mock(tmp_path: Path) -> None:
    """@grpc/grpc-js with ``createSsl()`` and no roots of its own: it trusts the relay and
    the mock through the variables devbox sets (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH is the
    one it reads: NODE_EXTRA_CA_CERTS alone was not enough with node 20); the real
    server through the test CA."""
    node = shutil.which("node")
    assert node, "node is missing: scripts/setup installs nodejs"
    assert (NODE_MODULES / "@grpc" / "grpc-js").is_dir(), "scripts/setup installs @grpc/grpc-js"
    gen = compile_protos(tmp_path / "gen")
    test_ca = make_test_ca(tmp_path / "pki")
    script = tmp_path / "client.js"
    shutil.copy(PROTO_DIR / "client.js", script)
    shutil.copy(PROTO_DIR / "routeguide.proto", tmp_path / "routeguide.proto")
    (tmp_path / "profiles").mkdir()
    profile_path = tmp_path / "profiles" / "shop.toml"
    base = {**os.environ, "NODE_PATH": str(NODE_MODULES)}

    def run(url: str, env: dict[str, str]) -> dict[str, object]:
        return _run([node, str(script), url, "tls"], env)

    with grpc_server(gen, tls=test_ca) as server:
        profile_path.write_text(PROFILE.format(service_port=free_port(), upstream=server.url))
        trust = trust_env(load_profile(profile_path))
        real = run(server.url, {**base, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(test_ca.ca)})
        record = subprocess.run(
            [
                *(sys.executable, "-m", "devbox", "record", "shop", "--no-service"),
                *("--ca-bundle", str(test_ca.ca), "--", node, str(script), "{routes}", "tls"),
            ],
            cwd=tmp_path,
            env={**base, **trust},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert record.returncode == 0, record.stdout + record.stderr
    assert json.loads(record.stdout.splitlines()[0]) == real
    assert real["hello"] == {"message": "Hello, node!"}
    assert real["error"] == {"code": 3, "details": "no feature at 0,0: über-nowhere"}
    fleet = MockFleet(load_profile(profile_path))
    fleet.start()
    try:
        url = fleet.urls()["ROUTES_ADDR"]
        assert url.startswith("https://")
        assert run(url, {**base, **trust}) == real
    finally:
        fleet.stop()

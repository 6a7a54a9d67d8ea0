"""gRPC through devbox itself: the profile (``kind = "grpc"``), ``devbox record`` (the
relay, ``{NAME}``, redaction), ``devbox traffic``, and the mock fleet (service URL, hits,
misses as events and in the miss log, sequences reset). Real grpcio server and client,
real files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from conftest import free_port, run_devbox
from grpc_support import compile_protos, grpc_server, load_modules

from devbox.core.events import Event, MockMiss
from devbox.core.profile import load_profile, parse_profile
from devbox.errors import ConfigError
from devbox.mock import MockFleet

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

[dependency.match]
ignore_body = ["$.2"]
"""

# a client that takes host:port, as grpcio does: the scheme of {routes} is stripped
CLIENT = """
import sys
sys.path.insert(0, sys.argv[1])
import grpc, routeguide_pb2 as pb, routeguide_pb2_grpc as pbg
target = sys.argv[2].split("://", 1)[-1]
with grpc.insecure_channel(target) as ch:
    g = pbg.GreeterStub(ch)
    r = pbg.RouteGuideStub(ch)
    print(g.SayHello(pb.HelloRequest(name="Ada", api_key=sys.argv[3]),
                     metadata=[("authorization", "Bearer t0k3n.abc.def")]).message)
    print(r.GetFeature(pb.Point(latitude=407838351, longitude=-746143763)).name)
    rect = pb.Rectangle(lo=pb.Point(latitude=400000000, longitude=-750000000),
                        hi=pb.Point(latitude=420000000, longitude=-730000000))
    print(len(list(r.ListFeatures(rect))))
"""
KEY = "sk_live_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"


def _project(tmp_path: Path, upstream: str) -> Path:
    (tmp_path / "profiles").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "profiles" / "shop.toml"
    path.write_text(PROFILE.format(service_port=free_port(), upstream=upstream))
    return path


_devbox = run_devbox


def test_profile_accepts_grpc_and_checks_its_upstream(tmp_path: Path) -> None:
    path = _project(tmp_path, "http://127.0.0.1:50051")
    dep = load_profile(path).dependency("routes")
    assert (dep.kind, dep.env, dep.match.ignore_body) == ("grpc", "ROUTES_ADDR", ("$.2",))
    bad = path.read_text().replace("http://127.0.0.1:50051", "redis://127.0.0.1:50051")
    with pytest.raises(ConfigError) as err:
        parse_profile(bad, path)
    assert err.value.field == "dependency[0].upstream"
    assert "http://" in err.value.message
    redis_protos = path.read_text().replace(
        'kind = "grpc"\nupstream = "http://127.0.0.1:50051"',
        'kind = "redis"\nupstream = "redis://127.0.0.1:6379"\nprotos = "protos"',
    )
    with pytest.raises(ConfigError) as err:
        parse_profile(redis_protos.replace('ignore_body = ["$.2"]', ""), path)
    assert err.value.field == "dependency[0].protos"
    ok = _devbox(tmp_path, "validate", "shop")
    assert ok.returncode == 0, ok.stderr


def test_record_then_mock_through_devbox(tmp_path: Path) -> None:
    gen = compile_protos(tmp_path / "gen")
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    argv = [sys.executable, str(client), str(gen), "{routes}", KEY]
    with grpc_server(gen) as server:
        _project(tmp_path, server.url)
        done = _devbox(tmp_path, "record", "shop", "--no-service", "--", *argv)
        assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[:3] == [
        "Hello, Ada!",
        "Patriots Path, Mendham, NJ 07945, USA",
        "4",
    ]
    files = list((tmp_path / "mocks/shop/routes").glob("recording-*.json"))
    assert len(files) == 1, list((tmp_path / "mocks/shop/routes").iterdir())
    text = files[0].read_text()
    assert '"kind": "grpc"' in text and '"method": "ListFeatures"' in text
    assert KEY not in text and "t0k3n.abc.def" not in text and "<redacted:" in text

    ls = _devbox(tmp_path, "traffic", "ls", "shop", "--json")
    assert ls.returncode == 0, ls.stderr
    routes = next(r for r in json.loads(ls.stdout) if r["source"] == "routes")
    assert routes["exchanges"] == 3, routes
    table = _devbox(tmp_path, "traffic", "show", "shop/routes")
    assert table.returncode == 0, table.stderr
    assert "routeguide.Greeter/SayHello" in table.stdout and "OK" in table.stdout

    events: list[Event] = []
    lock = threading.Lock()

    def on_event(ev: Event) -> None:
        with lock:
            events.append(ev)

    fleet = MockFleet(load_profile(tmp_path / "profiles/shop.toml"), on_event=on_event)
    fleet.start()
    try:
        url = fleet.urls()["ROUTES_ADDR"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        argv[3] = url
        again = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        # the real server is gone: the mock answered the same
        assert again.stdout.splitlines() == done.stdout.splitlines()[:3]
        pb, pbg = load_modules(gen)
        with grpc.insecure_channel(url.split("://")[1]) as ch:
            greeter = pbg.GreeterStub(ch)
            # field 2 (the key) is ignored by the profile's match rules: any key matches
            other = greeter.SayHello(pb.HelloRequest(name="Ada", api_key="another"))
            assert other.message == "Hello, Ada!"
            with pytest.raises(grpc.RpcError) as err:
                greeter.SayHello(pb.HelloRequest(name="Bob"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        misses = fleet.misses("routes")
        assert [m.target for m in misses] == ['/routeguide.Greeter/SayHello {"1":"Bob"}']
        assert 'recorded "Ada", now "Bob"' in misses[0].explanation
        stats = fleet.stats()[0]
        assert stats.hits == 4 and stats.misses == 1 and stats.dependency == "routes"
        entries = fleet.journal("routes")["entries"]
        assert {e["method"] for e in entries} == {"GRPC"}
        assert [e["matched"] is None for e in entries].count(True) == 1
    finally:
        fleet.stop()
    with lock:
        seen = list(events)
    assert any(isinstance(e, MockMiss) and e.dependency == "routes" for e in seen)


def test_descriptors_name_the_fields(tmp_path: Path) -> None:
    """``protos`` names a folder of .proto files: recorded messages carry field names (and
    encode back to the very bytes), the mock serves them and explains misses by name; a
    recording made without descriptors still matches once they are given."""
    from grpc_support import PROTO_DIR

    gen = compile_protos(tmp_path / "gen")
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    argv = [sys.executable, str(client), str(gen), "{routes}", KEY]
    with grpc_server(gen) as server:
        path = _project(tmp_path, server.url)
        plain = path.read_text()
        path.write_text(
            plain.replace(
                'env = "ROUTES_ADDR"', f'env = "ROUTES_ADDR"\nprotos = "{PROTO_DIR}"'
            ).replace('ignore_body = ["$.2"]', 'ignore_body = ["$.api_key"]')
        )
        done = _devbox(tmp_path, "record", "shop", "--no-service", "--", *argv)
        assert done.returncode == 0, done.stdout + done.stderr
    (file,) = (tmp_path / "mocks/shop/routes").glob("recording-*.json")
    text = file.read_text()
    assert '"name": "Patriots Path, Mendham, NJ 07945, USA"' in text
    assert '"latitude": 407838351' in text and KEY not in text

    fleet = MockFleet(load_profile(path))
    fleet.start()
    try:
        url = fleet.urls()["ROUTES_ADDR"]
        pb, pbg = load_modules(gen)
        with grpc.insecure_channel(url.split("://")[1]) as ch:
            guide = pbg.RouteGuideStub(ch)
            p = pb.Point(latitude=407838351, longitude=-746143763)
            assert guide.GetFeature(p).name == "Patriots Path, Mendham, NJ 07945, USA"
            reply = pbg.GreeterStub(ch).SayHello(pb.HelloRequest(name="Ada", api_key="other"))
            assert reply.message == "Hello, Ada!"
            with pytest.raises(grpc.RpcError) as err:
                guide.GetFeature(pb.Point(latitude=5, longitude=-746143763))
            assert "$[0].latitude recorded 407838351, now 5" in err.value.details()
    finally:
        fleet.stop()

    # the same calls recorded without descriptors (field numbers) match with them too
    path.write_text(
        plain.replace('env = "ROUTES_ADDR"', f'env = "ROUTES_ADDR"\nprotos = "{PROTO_DIR}"')
    )
    numbered = [
        {
            "seq": 1,
            "service": "routeguide.RouteGuide",
            "method": "GetFeature",
            "request": [{"1": 1, "2": -2}],
            "response": [{"1": "numbered", "2": {"1": 1, "2": -2}}],
            "status": 0,
        }
    ]
    from devbox.wire.files import ObjectWriter

    writer = ObjectWriter(file.with_name("recording-numbered.json"), "grpc", "routes")
    writer.append(numbered[0])
    writer.close()
    fleet = MockFleet(load_profile(path))
    fleet.start()
    try:
        url = fleet.urls()["ROUTES_ADDR"]
        with grpc.insecure_channel(url.split("://")[1]) as ch:
            got = pbg.RouteGuideStub(ch).GetFeature(pb.Point(latitude=1, longitude=-2))
            assert got.name == "numbered" and got.location.longitude == -2
    finally:
        fleet.stop()

"""A service that itself serves gRPC (``[service] protocol = "grpc"``): ``devbox record``
puts the gRPC relay in front of it and stores the calls a real grpcio client makes,
``devbox replay`` sends them again and diffs the answers by field path. The service is
the real route-guide server of ``grpc_server.py``; "after an edit" is the same server
with its changed database (``ROUTEGUIDE_DB=v2``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, run_devbox
from grpc_support import HERE, PROTO_DIR, compile_protos, grpc_server

from devbox.core.profile import load_profile, parse_profile
from devbox.engine.steps import load_recordings
from devbox.errors import ConfigError
from devbox.replay import ReplayOptions, run_replay

PROFILE = """\
name = "guide"

[service]
command = ["{python}", "{server}", "{gen}", "{port}"]
port = {port}
runtime = "process"
protocol = "grpc"
{protos}
[service.ready]
tcp = true
"""

# every call shape, and an error status; the key and the token must be redacted
CLIENT = """
import sys
sys.path.insert(0, sys.argv[1])
import grpc, routeguide_pb2 as pb, routeguide_pb2_grpc as pbg
target = sys.argv[2].split("://", 1)[-1]
with grpc.insecure_channel(target) as ch:
    g, r = pbg.GreeterStub(ch), pbg.RouteGuideStub(ch)
    print(g.SayHello(pb.HelloRequest(name="Ada", api_key=sys.argv[3]),
                     metadata=[("authorization", "Bearer t0k3n.abc.def")]).message)
    print(r.GetFeature(pb.Point(latitude=407838351, longitude=-746143763)).name)
    try:
        r.GetFeature(pb.Point(latitude=0, longitude=0))
    except grpc.RpcError as exc:
        print(exc.code().name)
    rect = pb.Rectangle(lo=pb.Point(latitude=400000000, longitude=-750000000),
                        hi=pb.Point(latitude=420000000, longitude=-730000000))
    print(len(list(r.ListFeatures(rect))))
    points = [pb.Point(latitude=407838351, longitude=-746143763), pb.Point(latitude=1, longitude=2)]
    print(r.RecordRoute(iter(points)).point_count)
    notes = [pb.RouteNote(location=pb.Point(latitude=1, longitude=1), message=m) for m in "ab"]
    print(len(list(r.RouteChat(iter(notes)))))
"""
KEY = "sk_live_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"


def _devbox(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # one difference per line
    return run_devbox(cwd, *args, timeout=timeout, env={**os.environ, "COLUMNS": "250"})


def _project(tmp_path: Path, *, protos: bool) -> tuple[Path, int]:
    gen = compile_protos(tmp_path / "gen")
    port = free_port()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "guide.toml").write_text(
        PROFILE.format(
            python=sys.executable,
            server=HERE / "grpc_server.py",
            gen=gen,
            port=port,
            protos=f'protos = "{PROTO_DIR}"\n' if protos else "",
        )
    )
    (tmp_path / "client.py").write_text(CLIENT)
    return gen, port


def _record(tmp_path: Path, gen: Path) -> str:
    client = [sys.executable, str(tmp_path / "client.py"), str(gen), "{inbound}", KEY]
    done = _devbox(tmp_path, "record", "guide", "--", *client)
    assert done.returncode == 0, done.stdout + done.stderr
    files = list((tmp_path / "mocks/guide/inbound").glob("recording-*.json"))
    assert len(files) == 1, list((tmp_path / "mocks/guide").rglob("*"))
    return files[0].read_text()


def test_record_and_replay_inbound_grpc_with_field_path_diffs(tmp_path: Path) -> None:
    gen, port = _project(tmp_path, protos=True)
    stored = _record(tmp_path, gen)
    # the service's calls, in the dependency recordings' format, named by the protos
    assert '"kind": "grpc"' in stored and '"source": "inbound"' in stored
    assert '"name": "Patriots Path, Mendham, NJ 07945, USA"' in stored
    for method in ("SayHello", "GetFeature", "ListFeatures", "RecordRoute", "RouteChat"):
        assert f'"method": "{method}"' in stored
    assert '"status_name": "INVALID_ARGUMENT"' in stored
    assert KEY not in stored and "t0k3n.abc.def" not in stored and "<redacted:" in stored
    # the summary shows placeholders as they are (rich once made ":secret:" an emoji)
    listed = _devbox(tmp_path, "traffic", "ls", "guide")
    assert listed.returncode == 0, listed.stderr
    assert "<redacted:secret:" in listed.stdout and "Greeter/SayHello" in listed.stdout

    with grpc_server(gen, port=port):
        same = _devbox(tmp_path, "replay", "guide", "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    report = json.loads(same.stdout)
    assert (report["counts"]["total"], report["counts"]["passed"]) == (6, 6), report["counts"]

    junit = tmp_path / "replay.xml"
    with grpc_server(gen, port=port, db="v2"):
        changed = _devbox(tmp_path, "replay", "guide", "--report", "junit", "--out", str(junit))
        ignored = _devbox(tmp_path, "replay", "guide", "--json", "--ignore", "$[*].name")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    out = changed.stdout
    assert "POST /routeguide.RouteGuide/GetFeature" in out
    assert "status: INVALID_ARGUMENT → NOT_FOUND" in out
    assert "header:grpc-message: no feature at 0,0: über-nowhere → nothing at 0,0" in out
    renamed = (
        '$[0].name: "Patriots Path, Mendham, NJ 07945, USA" → "Patriots Path, Mendham, NJ 07945"'
    )
    assert out.count(renamed) == 2, out  # GetFeature, and the first of ListFeatures' stream
    assert "Traceback" not in changed.stderr
    xml = junit.read_text()
    assert xml.count("<failure") == 3 and "status: INVALID_ARGUMENT → NOT_FOUND" in xml

    # ignore rules by field path apply to the messages: only the status change is left
    assert ignored.returncode == 1, ignored.stdout + ignored.stderr
    failing = [r for r in json.loads(ignored.stdout)["results"] if r["verdict"] != "pass"]
    assert [r["target"] for r in failing] == ["/routeguide.RouteGuide/GetFeature"]
    wheres = [d["where"] for d in failing[0]["differences"]]
    assert wheres == ["status", "header:grpc-message"], failing


def test_schemaless_inbound_recording_replays(tmp_path: Path) -> None:
    gen, port = _project(tmp_path, protos=False)
    stored = _record(tmp_path, gen)
    assert '"1": "Patriots Path, Mendham, NJ 07945, USA"' in stored  # field numbers
    # the edit loop's loading (devbox.engine.steps) and the runner it drives, in process
    profile = load_profile(tmp_path / "profiles" / "guide.toml")
    inbound, _outbound, _lanes, calls = load_recordings(profile)
    assert calls is not None and calls.schema is None and len(inbound) == 6
    target = f"http://127.0.0.1:{port}"
    with grpc_server(gen, port=port, db="v2"):
        changed = _devbox(tmp_path, "replay", "guide", "--json")
        report = asyncio.run(
            run_replay(inbound, target, profile.replay, options=ReplayOptions(grpc=calls))
        )
    assert changed.returncode == 1, changed.stdout + changed.stderr
    failing = [r for r in json.loads(changed.stdout)["results"] if r["verdict"] == "fail"]
    wheres = {d["where"] for r in failing for d in r["differences"]}
    assert wheres == {"status", "header:grpc-message", "$[0].1"}, failing
    assert (report.passed, report.failed, report.errors) == (3, 3, 0)


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    quiet = ("-p", "no:cacheprovider", "-p", "no:textual-snapshot", "-q")
    return subprocess.run(
        [sys.executable, "-m", "pytest", *quiet, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )


def test_pytest_devbox_replay_runs_recorded_grpc_calls_as_items(tmp_path: Path) -> None:
    """``pytest --devbox-replay`` on a gRPC service: each recorded call is a test item,
    a changed answer fails with its field paths, a bad recording is one line (it was an
    INTERNALERROR: the items were loaded as HTTP exchanges)."""
    gen, port = _project(tmp_path, protos=True)
    _record(tmp_path, gen)
    target = ("--devbox-replay", "guide", "--devbox-target", f"http://127.0.0.1:{port}")
    with grpc_server(gen, port=port):
        same = _pytest(tmp_path, *target)
    assert same.returncode == 0 and "6 passed" in same.stdout, same.stdout + same.stderr
    with grpc_server(gen, port=port, db="v2"):
        changed = _pytest(tmp_path, *target, "-k", "GetFeature")
    assert changed.returncode == 1 and "2 failed, 4 deselected" in changed.stdout, changed.stdout
    assert "status: INVALID_ARGUMENT → NOT_FOUND" in changed.stdout
    assert '$[0].name: "Patriots Path, Mendham, NJ 07945, USA" → ' in changed.stdout

    stored = next((tmp_path / "mocks/guide/inbound").glob("recording-*.json"))
    stored.write_text(stored.read_text().replace('"method": "SayHello"', '"method": 7', 1))
    broken = _pytest(tmp_path, *target)
    assert broken.returncode == 4, broken.stdout + broken.stderr  # pytest's usage error
    assert f"devbox: {stored}:" in broken.stderr and "method: expected the method name" in (
        broken.stderr
    )
    assert "INTERNALERROR" not in broken.stdout + broken.stderr


def test_replay_against_a_service_that_is_down_is_a_clean_error(tmp_path: Path) -> None:
    gen, port = _project(tmp_path, protos=True)
    _record(tmp_path, gen)
    done = _devbox(tmp_path, "replay", "guide")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    refused = f"error: cannot connect to 127.0.0.1:{port}: Connection refused"
    assert done.stdout.count(refused) == 6, done.stdout  # each call, one line, no traceback


@pytest.mark.parametrize(
    ("line", "field", "says"),
    [
        ('protocol = "soap"', "service.protocol", "expected one of http, grpc"),
        ('protocol = "http"\nprotos = "protos"', "service.protos", 'protocol = "grpc"'),
    ],
)
def test_profile_validates_the_service_protocol(
    tmp_path: Path, line: str, field: str, says: str
) -> None:
    path = tmp_path / "profiles" / "guide.toml"
    text = f'name = "guide"\n\n[service]\ncommand = ["x"]\nport = 50051\n{line}\n'
    with pytest.raises(ConfigError) as err:
        parse_profile(text, path)
    assert err.value.field == field and says in err.value.message
    assert err.value.line == text.count("\n")  # the offending line, the last one
    ok = parse_profile(text.replace(line, 'protocol = "grpc"\nprotos = "protos"'), path)
    assert (ok.service.protocol, ok.service.protos) == ("grpc", "protos")

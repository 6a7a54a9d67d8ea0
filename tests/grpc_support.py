"""Helpers for the gRPC tests: routeguide.proto compiled with grpcio-tools at test time,
the real grpcio server of ``grpc_server.py`` in its own process (free port, stopped by
PID), and an in-process recording relay and mock on one background loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from conftest import free_port, stop_process
from loop_support import Loop

from devbox.wire import tcp
from devbox.wire.contract import MockOptions, Output
from devbox.wire.grpc.kind import GRPC

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE / "data" / "grpc"


def compile_protos(out: Path, proto: str = "routeguide.proto", *, stubs: bool = True) -> Path:
    """``python -m grpc_tools.protoc`` on ``proto`` (in tests/data/grpc; with ``stubs``
    its services too) into ``out``; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    grpc_out = [f"--grpc_python_out={out}"] if stubs else []
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            *grpc_out,
            str(PROTO_DIR / proto),
        ],
        check=True,
    )
    return out


def load_modules(gen: Path) -> tuple[ModuleType, ModuleType]:
    if str(gen) not in sys.path:
        sys.path.insert(0, str(gen))
    import routeguide_pb2
    import routeguide_pb2_grpc

    return routeguide_pb2, routeguide_pb2_grpc


@dataclass(frozen=True)
class TestCa:
    """A private CA of the tests' own (not devbox's) and a server leaf it signed for
    127.0.0.1 and localhost, as PEM files."""

    ca: Path
    cert: Path
    key: Path


def make_test_ca(out: Path) -> TestCa:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "grpc test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    files = TestCa(out / "test-ca.pem", out / "server.pem", out / "server-key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.cert.write_bytes(leaf.public_bytes(pem) + ca_cert.public_bytes(pem))
    files.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@dataclass
class GrpcServer:
    port: int
    proc: subprocess.Popen[str]
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


@contextmanager
def grpc_server(
    gen: Path,
    tls: TestCa | None = None,
    *,
    port: int | None = None,
    db: str = "v1",
    compression: str = "",
) -> Iterator[GrpcServer]:
    """The real server; with ``tls``, on TLS only with the test CA's leaf; ``db="v2"``:
    its changed database; ``compression="gzip"``: its answers gzipped (``grpc_server.py``)."""
    port = port or free_port()
    extra = [str(tls.cert), str(tls.key)] if tls is not None else []
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "grpc_server.py"), str(gen), str(port), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "ROUTEGUIDE_DB": db, "ROUTEGUIDE_COMPRESSION": compression},
    )
    server = GrpcServer(port, proc, tls is not None)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"the grpc server did not start: {line!r}"
        yield server
    finally:
        server.stop()


@dataclass
class Relay:
    port: int
    stored: list[dict[str, Any]]
    server: asyncio.Server


async def start_relay(upstream_port: int) -> Relay:
    stored: list[dict[str, Any]] = []
    numbers = iter(range(1, 1 << 30))

    def relay() -> tcp.RelayConnection:  # devbox record's relay, as WireRecorder makes it
        n = next(numbers)
        return tcp.RelayConnection(
            GRPC.recorder_connection(),
            ("127.0.0.1", upstream_port),
            lambda objs: stored.extend({"connection": n, **o} for o in objs),
        )

    server = await tcp.start_relay_server(relay, "127.0.0.1", 0)
    return Relay(int(server.sockets[0].getsockname()[1]), stored, server)


@dataclass
class Mock:
    port: int
    outputs: list[Output]
    server: asyncio.Server


async def start_mock(stored: list[dict[str, Any]], options: MockOptions | None = None) -> Mock:
    index = GRPC.load([("rec.json", i + 2, o) for i, o in enumerate(stored)])
    opts = options or MockOptions(name="routes")
    outputs: list[Output] = []
    server = await tcp.start_mock_server(
        lambda: GRPC.mock_connection(index, opts),
        on_output=lambda conn, out: outputs.append(out),
    )
    return Mock(int(server.sockets[0].getsockname()[1]), outputs, server)


def through_relay(
    loop: Loop, upstream: int, run: Callable[[int], T], calls: int
) -> tuple[T, Relay]:
    """``run(port)`` through a recording relay in front of ``upstream``, once the relay
    stored ``calls`` calls: (what ``run`` returned, the relay)."""
    relay = loop.run(start_relay(upstream))
    try:
        got = run(relay.port)
        wait_stored(relay.stored, calls)
    finally:
        loop.close_server(relay.server)
    return got, relay


def wait_stored(stored: list[Any], n: int) -> None:
    """Until the relay stored ``n`` calls (it stores a call once its stream ends), or 10 s."""
    deadline = time.monotonic() + 10
    while len(stored) < n and time.monotonic() < deadline:
        time.sleep(0.01)

"""devbox's local CA: created once (0600) in XDG_DATA_HOME, leaves per SNI that real TLS
clients verify, and the `devbox ca` command."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devbox.wire import ca as ca_mod
from devbox.wire.ca import CaError, CertStore, ensure_ca

DEVBOX = [sys.executable, "-m", "devbox.cli.main"]


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    return tmp_path


def test_created_once_with_private_key(xdg: Path) -> None:
    ca, files, new = ensure_ca()
    assert new and files.dir == xdg / "devbox" / "ca"
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.dir.stat().st_mode) == 0o700
    again, _f, new2 = ensure_ca()
    assert not new2 and again.fingerprint() == ca.fingerprint()
    # the bundle is the system's CAs followed by devbox's
    bundle = files.bundle.read_bytes()
    assert bundle.endswith(files.cert.read_bytes())
    assert bundle.count(b"BEGIN CERTIFICATE") > 1


def test_concurrent_creators_agree(xdg: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(xdg)}
    procs = [
        subprocess.Popen([*DEVBOX, "ca", "path"], env=env, stdout=subprocess.PIPE) for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    _ca, _f, new = ensure_ca()
    assert not new  # one of them created it; everyone loads that one


def test_unreadable_ca_is_one_line(xdg: Path) -> None:
    _ca, files, _ = ensure_ca()
    files.key.write_text("not a key\n")
    with pytest.raises(CaError):
        ensure_ca()
    env = {**os.environ, "XDG_DATA_HOME": str(xdg)}
    r = subprocess.run([*DEVBOX, "ca"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "CA files are unreadable" in r.stderr


def test_cli_path_and_hints(xdg: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(xdg)}
    path = subprocess.run(
        [*DEVBOX, "ca", "path"], env=env, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    assert path == str(xdg / "devbox" / "ca" / "ca.pem")
    hints = subprocess.run(
        [*DEVBOX, "ca", "trust-hints"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    for word in (
        "update-ca-certificates",
        "update-ca-trust",
        "security add-trusted-cert",
        "NODE_EXTRA_CA_CERTS",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "keytool",
    ):
        assert word in hints


def _peer_names(port: int, cafile: Path, server_hostname: str) -> list[tuple[str, str]]:
    async def go() -> list[tuple[str, str]]:
        ctx = ssl.create_default_context(cafile=str(cafile))
        _r, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=server_hostname
        )
        cert = w.get_extra_info("peercert")
        w.close()
        return list(cert["subjectAltName"])

    return asyncio.run(go())


def test_leaves_per_sni_verify_with_real_tls(xdg: Path) -> None:
    ca, files, _ = ensure_ca()
    store = CertStore(ca)
    ctx = store.sni_context()
    import threading

    ready = threading.Event()
    box: dict[str, int] = {}
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                w.close()

            srv = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctx)
            box["port"] = srv.sockets[0].getsockname()[1]
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            srv.close()

        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(10)
    port = box["port"]
    try:
        assert ("IP Address", "127.0.0.1") in _peer_names(port, files.cert, "127.0.0.1")
        assert ("DNS", "localhost") in _peer_names(port, files.cert, "localhost")
        names = _peer_names(port, files.cert, "api.example.test")
        assert ("DNS", "api.example.test") in names
        # cached: the same name again builds nothing new
        before = store.generated
        _peer_names(port, files.cert, "api.example.test")
        assert store.generated == before
        # a client that does not trust devbox's CA refuses the leaf
        with pytest.raises(ssl.SSLCertVerificationError):
            system = ca_mod.system_bundle()
            assert system is not None
            _peer_names(port, system, "localhost")
    finally:
        stop.set()
        t.join(5)


def test_ca_dir_default_is_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME")
    assert ca_mod.ca_dir() == Path.home() / ".local" / "share" / "devbox" / "ca"

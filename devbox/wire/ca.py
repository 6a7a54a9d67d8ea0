"""devbox's local CA on disk, and the TLS server contexts built from it.

The CA lives in the user's data directory (``$XDG_DATA_HOME/devbox/ca``, by default
``~/.local/share/devbox/ca``): ``ca.pem`` (the certificate, what clients trust),
``ca-key.pem`` (0600) and ``bundle.pem`` (the system's CAs followed by devbox's, for
the ``SSL_CERT_FILE``-style variables that replace rather than add). It is created once,
under a lock, by the first devbox that needs it; every later one loads it.

``CertStore`` gives TLS server contexts that present a leaf for whatever host the
client names (SNI), built on first use and cached (``devbox.wire.certs`` builds them in
memory; ``ssl`` loads certificates only from files, so each leaf's chain is written
once to a private temporary directory removed at exit).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import ssl
import tempfile
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devbox.errors import DevboxError
from devbox.wire import certs

CERT_FILE = "ca.pem"
KEY_FILE = "ca-key.pem"
BUNDLE_FILE = "bundle.pem"
ALPN = ("h2", "http/1.1")
_MAX_LEAVES = 4096
# where Debian, Fedora/RHEL, Alpine/openSUSE keep the system's trusted CAs in one file
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


class CaError(DevboxError):
    """The CA files cannot be read or written."""


def ca_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".local" / "share"
    return root / "devbox" / "ca"


@dataclass(frozen=True, slots=True)
class CaFiles:
    dir: Path

    @property
    def cert(self) -> Path:
        return self.dir / CERT_FILE

    @property
    def key(self) -> Path:
        return self.dir / KEY_FILE

    @property
    def bundle(self) -> Path:
        return self.dir / BUNDLE_FILE


def files() -> CaFiles:
    return CaFiles(ca_dir())


def ensure_ca(*, create: bool = True) -> tuple[certs.Authority, CaFiles, bool]:
    """The CA (created if missing and ``create``), its files, and whether it is new."""
    f = files()
    try:
        existing = _load(f)
        if existing is not None:
            _ensure_bundle(f, existing)
            return existing, f, False
        if not create:
            raise CaError(
                f"no devbox CA in {f.dir}",
                hint="run `devbox ca` to create it",
            )
        f.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(f.dir / ".lock", "a+") as lock:
            # two devbox processes starting at once: one creates, the other loads
            fcntl.flock(lock, fcntl.LOCK_EX)
            existing = _load(f)
            if existing is not None:
                _ensure_bundle(f, existing)
                return existing, f, False
            ca = certs.new_authority(dt.datetime.now(dt.UTC))
            _write(f.key, ca.key_pem, 0o600)
            _write(f.cert, ca.cert_pem, 0o644)
            _ensure_bundle(f, ca, force=True)
            return ca, f, True
    except OSError as exc:
        raise CaError(
            f"cannot use the devbox CA in {f.dir}: {exc.strerror or exc}",
            hint="set XDG_DATA_HOME to a writable directory",
        ) from exc


def _load(f: CaFiles) -> certs.Authority | None:
    try:
        key_pem = f.key.read_bytes()
        cert_pem = f.cert.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return certs.load_authority(cert_pem, key_pem)
    except ValueError as exc:
        raise CaError(
            f"{f.dir}: the CA files are unreadable: {exc}",
            hint=f"remove {f.dir} to create a new CA (clients must trust it again)",
        ) from exc


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def system_bundle() -> Path | None:
    cafile = ssl.get_default_verify_paths().cafile
    for p in (cafile, *_SYSTEM_BUNDLES):
        if p and os.path.isfile(p):
            return Path(p)
    return None


def _ensure_bundle(f: CaFiles, ca: certs.Authority, *, force: bool = False) -> None:
    system = system_bundle()
    try:
        fresh = (
            not force
            and f.bundle.stat().st_mtime >= f.cert.stat().st_mtime
            and (system is None or f.bundle.stat().st_mtime >= system.stat().st_mtime)
        )
    except FileNotFoundError:
        fresh = False
    if fresh:
        return
    parts = [system.read_bytes().rstrip(b"\n") + b"\n"] if system is not None else []
    parts.append(b"# devbox local CA\n" + ca.cert_pem)
    _write(f.bundle, b"".join(parts), 0o644)


# ---------------------------------------------------------------- the service's trust

# what replaces the system's CA list (the bundle) and what adds to it (the CA alone);
# GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: grpcio's and @grpc/grpc-js's roots when a channel's
# credentials name none
BUNDLE_VARS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
)
CA_VARS = ("NODE_EXTRA_CA_CERTS",)
CONTAINER_DIR = "/etc/devbox/ca"


def trust_variables(f: CaFiles) -> dict[str, str]:
    out = {k: str(f.bundle) for k in BUNDLE_VARS}
    out.update({k: str(f.cert) for k in CA_VARS})
    return out


def container_trust(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment for a container, the CA files it names mounted read-only (Docker
    ``binds``) under ``/etc/devbox/ca`` and the variables pointing there. Never the
    key: only the certificate and the bundle are mounted."""
    f = files()
    mounts = {
        str(f.bundle): f"{CONTAINER_DIR}/{BUNDLE_FILE}",
        str(f.cert): f"{CONTAINER_DIR}/{CERT_FILE}",
    }
    out = dict(env)
    binds: list[str] = []
    for k, v in env.items():
        target = mounts.get(v)
        if target is None or k not in (*BUNDLE_VARS, *CA_VARS):
            continue
        out[k] = target
        bind = f"{v}:{target}:ro"
        if bind not in binds:
            binds.append(bind)
    return out, binds


# ---------------------------------------------------------------- server contexts


class CertStore:
    """Server contexts presenting leaves signed by the CA, one per host, cached.

    Thread-safe: the mock fleet's loop and the recorder's loop may share one."""

    def __init__(self, ca: certs.Authority) -> None:
        self.ca = ca
        self.leaf = certs.LeafKey.generate()
        self._dir = Path(tempfile.mkdtemp(prefix="devbox-tls-"))
        self._key = self._dir / "leaf-key.pem"
        _write(self._key, self.leaf.pem, 0o600)
        self._lock = threading.Lock()
        self._contexts: dict[tuple[tuple[str, ...], tuple[str, ...]], ssl.SSLContext] = {}
        self._n = 0
        self.generated = 0
        weakref.finalize(self, shutil.rmtree, str(self._dir), True)

    def context_for(self, hosts: Iterable[str], alpn: tuple[str, ...] = ALPN) -> ssl.SSLContext:
        """A context whose certificate names ``hosts``; cached per (hosts, ALPN)."""
        names = tuple(h for h in hosts if h)
        cache_key = (names, alpn)
        ctx = self._contexts.get(cache_key)
        if ctx is not None:
            return ctx
        with self._lock:
            ctx = self._contexts.get(cache_key)
            if ctx is not None:
                return ctx
            cert = certs.leaf_certificate(
                self.ca, self.leaf, names or certs.LOCAL_HOSTS, dt.datetime.now(dt.UTC)
            )
            self._n += 1
            path = self._dir / f"leaf-{self._n}.pem"
            _write(path, certs.chain_pem(cert, self.ca), 0o600)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(path, self._key)
            path.unlink()
            if alpn:
                ctx.set_alpn_protocols(list(alpn))
            if len(self._contexts) >= _MAX_LEAVES:
                self._contexts.clear()
            self._contexts[cache_key] = ctx
            self.generated += 1
            return ctx

    def sni_context(
        self, default_hosts: tuple[str, ...] = certs.LOCAL_HOSTS, alpn: tuple[str, ...] = ALPN
    ) -> ssl.SSLContext:
        """A context for a listener: the leaf for the name the client sends (SNI), or
        for ``default_hosts`` when it sends none (a client that dials an address)."""
        local = set(default_hosts)

        def pick(sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, _c: object) -> None:
            if name and name not in local:
                sslobj.context = self.context_for((name, *default_hosts), alpn)

        # the cached base context is shared: give this listener its own for the callback
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with self._lock:
            self._n += 1
            path = self._dir / f"default-{self._n}.pem"
        cert = certs.leaf_certificate(self.ca, self.leaf, default_hosts, dt.datetime.now(dt.UTC))
        _write(path, certs.chain_pem(cert, self.ca), 0o600)
        ctx.load_cert_chain(path, self._key)
        path.unlink()
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        ctx.sni_callback = pick
        return ctx


_STORE: CertStore | None = None
_STORE_LOCK = threading.Lock()


def cert_store() -> CertStore:
    """The process's store over the user's CA (created on first use)."""
    global _STORE
    with _STORE_LOCK:
        ca, _f, _new = ensure_ca()
        if _STORE is None or _STORE.ca.cert != ca.cert:
            _STORE = CertStore(ca)
        return _STORE


def trust_hints(cert: Path, bundle: Path) -> str:
    """How to make each platform and client trust the CA (``devbox ca trust-hints``)."""
    return f"""\
devbox's CA certificate: {cert}
A bundle (the system's CAs + devbox's): {bundle}

System stores (every program that uses them):
  Debian/Ubuntu:  sudo cp {cert} /usr/local/share/ca-certificates/devbox.crt \\
                    && sudo update-ca-certificates
  Fedora/RHEL:    sudo cp {cert} /etc/pki/ca-trust/source/anchors/devbox.pem \\
                    && sudo update-ca-trust
  macOS:          sudo security add-trusted-cert -d -r trustRoot \\
                    -k /Library/Keychains/System.keychain {cert}

Per process (devbox up and devbox record set these for the service themselves):
  Python (ssl, httpx): export SSL_CERT_FILE={bundle}
  Python requests:     export REQUESTS_CA_BUNDLE={bundle}
  Node.js:             export NODE_EXTRA_CA_CERTS={cert}
  gRPC (grpcio, grpc-js): export GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={bundle}
  curl:                export CURL_CA_BUNDLE={bundle}   (or curl --cacert {cert})
  Go (crypto/x509):    export SSL_CERT_FILE={bundle}
  Java:                keytool -importcert -noprompt -alias devbox -file {cert} \\
                         -keystore devbox.jks -storepass changeit
                       then -Djavax.net.ssl.trustStore=devbox.jks \\
                            -Djavax.net.ssl.trustStorePassword=changeit
                       (JAVA_TOOL_OPTIONS carries these to every JVM)
"""

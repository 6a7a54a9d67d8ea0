"""The ``grpc`` kind: what ``devbox.wire.registry`` hands out for it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devbox.wire.contract import Index, MockConnection, MockOptions, RecorderConnection
from devbox.wire.grpc import schema as schemas
from devbox.wire.grpc import store
from devbox.wire.grpc.mock import GrpcMockConnection
from devbox.wire.grpc.recorder import GrpcRecorder


@dataclass(frozen=True, slots=True)
class GrpcKind:
    name: str = "grpc"
    # h2c (prior knowledge; ``grpc://`` is accepted as its synonym) and TLS (ALPN h2)
    schemes: tuple[str, ...] = ("http", "grpc", "https")
    # an upstream of these schemes is spoken to in TLS, and so are the mock and the relay
    tls_schemes: tuple[str, ...] = ("https",)
    default_port: int = 50051
    # the service's descriptors (the dependency's ``protos``): messages with field names
    schema: schemas.Schema | None = None

    def for_dependency(self, dependency: Any, root: Path) -> GrpcKind:
        """This kind for one dependency: with its descriptors when it names them."""
        protos = getattr(dependency, "protos", None)
        if not protos:
            return self
        path = Path(protos) if Path(protos).is_absolute() else root / protos
        return GrpcKind(schema=schemas.load(path))

    def load(self, stored: Sequence[tuple[str, int, Mapping[str, Any]]]) -> Index:
        return store.build_index(stored, self.schema)

    def mock_connection(self, index: Index, options: MockOptions) -> MockConnection:
        assert isinstance(index, store.GrpcIndex)
        ignore = options.match.get("ignore_body", ())
        if ignore and not index.ignore:
            index = index.with_ignore(ignore)
        return GrpcMockConnection(index, options)

    def recorder_connection(self) -> RecorderConnection:
        return GrpcRecorder(schema=self.schema)

    def redact(
        self, stored: dict[str, Any], redact_value: Callable[[str, str], str]
    ) -> dict[str, Any]:
        return store.redact_object(stored, redact_value)

    def service_url(self, upstream: str, host: str, port: int, *, tls: bool = True) -> str:
        """``http://HOST:PORT`` (the mock and the relay speak h2c), ``https://HOST:PORT``
        for an ``https`` upstream (they speak TLS, with a leaf of devbox's CA): clients
        that take ``host:port`` strip the scheme."""
        parts = urlsplit(upstream or f"http://{host}:{port}")
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        scheme = parts.scheme if parts.scheme in ("grpc", "https") else "http"
        return urlunsplit((scheme, hostport, parts.path, parts.query, parts.fragment))


GRPC = GrpcKind()

"""The ``postgres`` kind: what the registry hands the fleet and the recorder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devbox.wire.contract import (
    Capabilities,
    Index,
    MockConnection,
    MockOptions,
    RecorderConnection,
)
from devbox.wire.postgres import redaction, store
from devbox.wire.postgres.mock import PostgresMockConnection
from devbox.wire.postgres.recorder import PostgresRecorderConnection

# its mock can serve from several processes: connections share only nth-call counters
_CAPABILITIES = Capabilities(workers=True)


@dataclass(frozen=True, slots=True)
class PostgresKind:
    name: str = "postgres"
    schemes: tuple[str, ...] = ("postgresql", "postgres")
    default_port: int = 5432
    capabilities: Capabilities = _CAPABILITIES

    def load(self, stored: Sequence[tuple[str, int, Mapping[str, Any]]]) -> Index:
        return store.build(stored)

    def mock_connection(self, index: Index, options: MockOptions) -> MockConnection:
        assert isinstance(index, store.Index)
        return PostgresMockConnection(index, options)

    def recorder_connection(self) -> RecorderConnection:
        return PostgresRecorderConnection()

    def redact(
        self, stored: dict[str, Any], redact_value: Callable[[str, str], str]
    ) -> dict[str, Any]:
        return redaction.redact_object(stored, redact_value)

    def service_url(self, upstream: str, host: str, port: int, *, tls: bool = True) -> str:
        """Same scheme, user, password, database and query (``sslmode``...); the mock's
        or the proxy's address."""
        parts = urlsplit(upstream)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"{host}:{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


POSTGRES = PostgresKind()

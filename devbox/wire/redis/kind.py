"""The ``redis`` dependency kind: what ``devbox.wire.registry`` hands out for it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devbox.wire.contract import Index, MockConnection, MockOptions, RecorderConnection
from devbox.wire.redis.index import RedisIndex, build_index
from devbox.wire.redis.mock import RedisMockConnection
from devbox.wire.redis.recorder import RedisRecorder
from devbox.wire.redis.store import redact_object


class RedisKind:
    name = "redis"
    schemes = ("redis", "rediss")
    default_port = 6379

    def load(self, stored: Sequence[tuple[str, int, Mapping[str, Any]]]) -> RedisIndex:
        return build_index(stored)

    def mock_connection(self, index: Index, options: MockOptions) -> MockConnection:
        assert isinstance(index, RedisIndex)
        return RedisMockConnection(index, options)

    def recorder_connection(self) -> RecorderConnection:
        return RedisRecorder()

    def redact(
        self, stored: dict[str, Any], redact_value: Callable[[str, str], str]
    ) -> dict[str, Any]:
        return redact_object(stored, redact_value)

    def service_url(self, upstream: str, host: str, port: int, *, tls: bool = True) -> str:
        """``redis://user:pw@cache:6379/2`` -> ``redis://user:pw@127.0.0.1:PORT/2``: the
        mock accepts any credentials, the database number stays the service's choice.
        The mock and the recording relay speak plain TCP, so ``rediss`` becomes ``redis``."""
        parts = urlsplit(upstream or f"redis://{host}:{port}/0")
        userinfo = parts.netloc.rpartition("@")[0]
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        netloc = f"{userinfo}@{hostport}" if userinfo else hostport
        return urlunsplit(("redis", netloc, parts.path, parts.query, parts.fragment))


KIND = RedisKind()

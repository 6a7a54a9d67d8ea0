"""Redis (RESP2 and RESP3) as a dependency kind: ``resp`` is the sans-IO codec, ``store``
the readable JSON of a recording, ``index`` the match table, ``mock`` and ``recorder``
the per-connection objects the generic loops in ``devbox.wire.tcp`` drive."""

from devbox.wire.redis.kind import KIND, RedisKind

__all__ = ["KIND", "RedisKind"]

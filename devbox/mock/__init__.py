"""Replay-backed mocks: every HTTP dependency answered from recorded traffic.

``MockFleet`` serves all dependencies of a profile from one background thread;
``MockServer`` is one dependency's server; matching itself is pure and lives in
``devbox.core.matching``.

The names below are imported on first use: ``devbox.mock.http_kind`` (the ``http``
kind, which the registry imports when the profile, the wiring or a recorder asks about
HTTP) must not pull in the servers, asyncio and httptools with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devbox.mock.fleet import MockFleet, env_name, specs_for
    from devbox.mock.server import (
        ADMIN_PREFIX,
        MISS_STATUS,
        MODES,
        Limits,
        MissRecord,
        MockServer,
        MockSpec,
    )

_WHERE = {
    "MockFleet": "devbox.mock.fleet",
    "env_name": "devbox.mock.fleet",
    "specs_for": "devbox.mock.fleet",
    "ADMIN_PREFIX": "devbox.mock.server",
    "MISS_STATUS": "devbox.mock.server",
    "MODES": "devbox.mock.server",
    "Limits": "devbox.mock.server",
    "MissRecord": "devbox.mock.server",
    "MockServer": "devbox.mock.server",
    "MockSpec": "devbox.mock.server",
}

__all__ = [
    "ADMIN_PREFIX",
    "MISS_STATUS",
    "MODES",
    "Limits",
    "MissRecord",
    "MockFleet",
    "MockServer",
    "MockSpec",
    "env_name",
    "specs_for",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'devbox.mock' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""Replay-backed mocks: every HTTP dependency answered from recorded traffic.

``MockFleet`` serves all dependencies of a profile from one background thread;
``MockServer`` is one dependency's server; matching itself is pure and lives in
``devbox.core.matching``.
"""

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

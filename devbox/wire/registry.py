"""Which kinds exist. The profile validates ``kind`` against this table, the engine and
the fleet ask it for the kind object; nothing else switches on a kind's name."""

from __future__ import annotations

import importlib

from devbox.errors import UsageError
from devbox.wire.contract import Kind

# name -> "module:attribute" of its Kind object, imported on first use so that loading
# a profile does not import every protocol
_KINDS: dict[str, str] = {}


def register(name: str, target: str) -> None:
    _KINDS[name] = target


def names() -> tuple[str, ...]:
    return tuple(sorted(_KINDS))


def get(name: str) -> Kind:
    target = _KINDS.get(name)
    if target is None:
        raise UsageError(
            f"unknown dependency kind {name!r}", hint=f"known kinds: {', '.join(names())}"
        )
    module, _, attr = target.partition(":")
    kind: Kind = getattr(importlib.import_module(module), attr)
    return kind


register("postgres", "devbox.wire.postgres.kind:POSTGRES")

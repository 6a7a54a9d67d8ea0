"""Which kinds exist. The profile validates ``kind`` against this table, the engine, the
fleet, the recorders and the CLI ask it for the kind object and its ``Capabilities``;
nothing else switches on a kind's name."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from devbox.errors import UsageError
from devbox.wire.contract import Capabilities, Kind

# name -> "module:attribute" of its Kind object, imported on first use so that loading
# a profile does not import every protocol
_KINDS: dict[str, str] = {}


def register(name: str, target: str) -> None:
    _KINDS[name] = target


# the kinds that ship with devbox. ``http``'s object lives in ``devbox.mock`` (its mock
# connection is the mock's answer step, which the wire layer may not import); its fast
# paths stay ``MockServer`` and the recording proxy (``Capabilities.http_edges``).
register("http", "devbox.mock.http_kind:HTTP")
register("redis", "devbox.wire.redis:KIND")
register("postgres", "devbox.wire.postgres.kind:POSTGRES")
register("grpc", "devbox.wire.grpc.kind:GRPC")


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


def for_dependency(dependency: Any, root: Path, name: str | None = None) -> Kind:
    """The kind object for one dependency: a kind may specialise itself with what the
    dependency names (gRPC: its descriptors, ``protos``) through ``for_dependency``.
    ``name``: the kind of what has none of its own (the service, by its protocol)."""
    kind = get(name or dependency.kind)
    special = getattr(kind, "for_dependency", None)
    if callable(special):
        specialised: Kind = special(dependency, root)
        return specialised
    return kind


_DEFAULTS = Capabilities()


def capabilities(kind: Kind | str) -> Capabilities:
    """What ``kind`` (an object, or a registered name) answers beyond the five pieces;
    the defaults for a kind that declares none."""
    obj = get(kind) if isinstance(kind, str) else kind
    caps: Capabilities = getattr(obj, "capabilities", _DEFAULTS)
    return caps


def default_scheme(name: str) -> str:
    """The scheme a dependency of kind ``name`` without ``upstream`` is wired with."""
    return get(name).schemes[0]


def speaks_tls(kind: Kind, upstream: str | None) -> bool:
    """Whether ``upstream`` is one the kind speaks TLS to (gRPC's ``https://``): its mock
    and its recording relay then take TLS from the service too."""
    scheme = (upstream or "").partition("://")[0].lower()
    return bool(scheme) and scheme in getattr(kind, "tls_schemes", ())


def upstream_problem(name: str, upstream: str) -> tuple[str, str] | None:
    """(message, hint) when ``upstream`` is not a URL of kind ``name``, else None."""
    kind = get(name)
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/\s]+)", upstream)
    if m is not None and m.group(1).lower() in kind.schemes:
        return None
    schemes = " or ".join(s + "://" for s in kind.schemes)
    # "an http://", "a redis://": the article as the scheme is read aloud
    article = "an" if kind.schemes[0][0] in "aehio" else "a"
    return (
        f"expected {article} {schemes} URL, got {upstream!r}",
        f"for example {kind.schemes[0]}://127.0.0.1:{kind.default_port}",
    )

"""Which variable carries each dependency's address, and what its value is: one rule.

``devbox record``, ``devbox up``, ``devbox run`` and ``devbox replay --check-outbound``
all ask :func:`wire` and nothing else, so the service sees the same environment
whether its dependencies are recording proxies or mocks, and ``devbox explain`` /
``devbox validate`` can show that environment before anything starts.

The rule (docs/profiles.md, "How the service learns its dependencies' addresses"):

1. The variable is the dependency's ``env``, else ``NAME_URL`` (the dependency's name
   upper-cased, ``-`` as ``_``): ``payments`` -> ``PAYMENTS_URL``.
2. A variable set in ``[service] env`` (or by ``devbox run -e``) is never overridden:
   the user's value wins and the wire says so.
3. The value is the dependency's ``upstream`` with host and port swapped for where
   devbox listens (the mock, or the recording proxy); scheme, user, path and query are
   kept, so ``http://analytics:5001/visit`` becomes ``http://127.0.0.1:PORT/visit``,
   exactly what the service would be given in compose. An ``https`` upstream stays
   ``https``: mocks and recording proxies also speak TLS, with a leaf of devbox's CA the
   service is told to trust (``devbox.engine.wiring.trust_env``). The dependency's kind
   (``devbox.wire.registry``) builds the URL itself (``Kind.service_url``), so a
   ``redis://`` or ``postgresql://`` upstream keeps its scheme and database.
4. ``PORT`` is the service's port unless ``[service] env`` sets it.

Pure: values in, values out (the registry lookup imports a kind's module on first use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from devbox.core.profile import Dependency, Profile


class UrlBuilder(Protocol):
    """(upstream, host, port) -> the URL the service is given (``Kind.service_url``)."""

    def __call__(self, upstream: str, host: str, port: int, *, tls: bool = True) -> str: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where devbox listens for one dependency (its mock, or its recording proxy)."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Wire:
    """One dependency's variable: ``value`` None when devbox does not set it (``why``)."""

    dependency: str
    variable: str
    value: str | None
    why: str


@dataclass(frozen=True, slots=True)
class Wiring:
    """``env``: the dependency variables devbox adds to ``[service] env``; ``port``: the
    ``PORT`` it adds too, unless ``[service] env`` sets it (rule 4; the runtime adds it,
    as the port it actually runs the service on)."""

    env: Mapping[str, str]
    wires: tuple[Wire, ...]
    service_env: Mapping[str, str]
    port: str | None = None

    def full(self) -> dict[str, str]:
        """The service's whole environment as devbox gives it (before the OS's own)."""
        out = {**self.service_env, **self.env}
        if self.port is not None:
            out.setdefault("PORT", self.port)
        return out

    def wire(self, dependency: str) -> Wire | None:
        for w in self.wires:
            if w.dependency == dependency:
                return w
        return None


def variable_for(dep: Dependency) -> str:
    """Rule 1: ``env``, else ``NAME_URL``."""
    return dep.env or dep.name.upper().replace("-", "_") + "_URL"


def swap_host_port(url: str, host: str, port: int, *, scheme: str | None = None) -> str:
    """``url`` with its host and port replaced (user, path, query and fragment kept)."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    netloc = (user + "@" if user else "") + f"{shown}:{port}"
    return urlunsplit((scheme or parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def needs_tls(profile: Profile) -> bool:
    """Whether the service calls a dependency over ``https`` (an ``http`` or ``grpc`` one:
    it must then trust devbox's CA)."""
    return any((d.upstream or "").startswith("https://") for d in profile.dependencies)


def registered_builder(kind: str) -> UrlBuilder | None:
    """The kind's own ``service_url`` when it is registered, else None."""
    from devbox.wire import registry

    if kind not in registry.names():
        return None
    return registry.get(kind).service_url


def default_scheme(kind: str) -> str:
    """The scheme of a dependency without ``upstream``: its kind's first (the kind's name
    for one devbox does not know)."""
    from devbox.wire import registry

    return registry.default_scheme(kind) if kind in registry.names() else kind


def service_url(
    dep: Dependency,
    endpoint: Endpoint,
    builder_for: Callable[[str], UrlBuilder | None] = registered_builder,
    *,
    tls: bool = True,
) -> str:
    """Rule 3 for one dependency."""
    upstream = dep.upstream or f"{default_scheme(dep.kind)}://{endpoint.host}"
    builder = builder_for(dep.kind)
    if builder is not None:
        return builder(upstream, endpoint.host, endpoint.port, tls=tls)
    return swap_host_port(upstream, endpoint.host, endpoint.port)


def wire(
    profile: Profile,
    endpoints: Mapping[str, Endpoint],
    *,
    extra_env: Mapping[str, str] | None = None,
    service_port: int | None = None,
    missing: str = "no mock or proxy runs for it",
    builder_for: Callable[[str], UrlBuilder | None] = registered_builder,
    tls: bool = True,
) -> Wiring:
    """The rule applied to every dependency of ``profile``.

    ``endpoints``: dependency name -> where devbox listens for it (dependencies absent
    from it are reported with ``missing``); ``extra_env``: variables the user set on the
    command line, which count as ``[service] env``."""
    user = {**profile.service.env, **(extra_env or {})}
    env: dict[str, str] = {}
    wires: list[Wire] = []
    for dep in profile.dependencies:
        var = variable_for(dep)
        if var in user:
            wires.append(Wire(dep.name, var, None, "kept: [service] env sets it"))
            continue
        endpoint = endpoints.get(dep.name)
        if endpoint is None:
            wires.append(Wire(dep.name, var, None, missing))
            continue
        value = service_url(dep, endpoint, builder_for, tls=tls)
        env[var] = value
        wires.append(Wire(dep.name, var, value, f"{dep.name} at {endpoint.host}:{endpoint.port}"))
    port = None
    if "PORT" not in user:
        port = str(service_port if service_port is not None else profile.service.port)
    return Wiring(env=env, wires=tuple(wires), service_env=user, port=port)


def fixed_endpoints(profile: Profile, host: str = "127.0.0.1") -> dict[str, Endpoint]:
    """Dependencies whose mock has a fixed ``port`` in the profile (``devbox run``,
    ``devbox explain``, ``replay --check-outbound``: no mock is started by devbox)."""
    return {d.name: Endpoint(host, d.port) for d in profile.dependencies if d.port is not None}


FREE_PORT = "<free port>"


def preview(profile: Profile, host: str = "127.0.0.1") -> dict[str, str]:
    """The environment ``devbox up`` gives the service, for ``explain``/``validate``: a
    mock without a fixed ``port`` shows ``<free port>`` (chosen when it starts)."""
    endpoints = {d.name: Endpoint(host, d.port or 0) for d in profile.dependencies}
    full = wire(profile, endpoints).full()
    marker = f"{host}:0"
    return {k: v.replace(marker, f"{host}:{FREE_PORT}", 1) for k, v in full.items()}

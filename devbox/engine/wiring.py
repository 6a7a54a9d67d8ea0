"""The service's dependency variables for a running mock fleet or recorder, by the one
rule in ``devbox.core.wiring`` (so ``up`` and ``record`` cannot disagree)."""

from __future__ import annotations

from collections.abc import Mapping

from devbox.core.profile import Profile
from devbox.core.wiring import Endpoint, Wiring, needs_tls, wire


def listen_host(host: str) -> str:
    """The address a client uses for a listener bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host.strip("[]")


def wiring_for(
    profile: Profile, host: str, ports: Mapping[str, int], what: str, *, tls: bool = True
) -> Wiring:
    """``ports``: dependency name -> the port devbox listens on for it (``what``: "mock",
    "recording proxy"); ``tls`` off: https upstreams are wired as http."""
    h = listen_host(host)
    return wire(
        profile,
        {name: Endpoint(h, port) for name, port in ports.items()},
        missing=f"no {what} runs for it",
        tls=tls,
    )


def service_env(profile: Profile, host: str, ports: Mapping[str, int], what: str) -> dict[str, str]:
    """The dependency variables, and the CA trust variables when an upstream is https."""
    return {**trust_env(profile), **wiring_for(profile, host, ports, what).env}


def trust_env(profile: Profile, *, forward: bool = False) -> dict[str, str]:
    """The variables that make the service trust devbox's CA, when it needs to (an
    ``https`` dependency, or recording through the intercepting forward proxy): the
    bundle (the system's CAs + devbox's) for OpenSSL, Python, requests and curl, the CA
    alone for Node (which adds it to its own). ``[service] env`` wins, as always. The
    Docker runtime mounts the files and rewrites the paths (``devbox.wire.ca``)."""
    if not (forward or needs_tls(profile)):
        return {}
    from devbox.wire.ca import ensure_ca, trust_variables

    _ca, files, _new = ensure_ca()
    user = profile.service.env
    return {k: v for k, v in trust_variables(files).items() if k not in user}

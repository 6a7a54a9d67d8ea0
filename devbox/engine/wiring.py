"""The service's dependency variables for a running mock fleet or recorder, by the one
rule in ``devbox.core.wiring`` (so ``up`` and ``record`` cannot disagree)."""

from __future__ import annotations

from collections.abc import Mapping

from devbox.core.profile import Profile
from devbox.core.wiring import Endpoint, Wiring, wire


def listen_host(host: str) -> str:
    """The address a client uses for a listener bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host.strip("[]")


def wiring_for(profile: Profile, host: str, ports: Mapping[str, int], what: str) -> Wiring:
    """``ports``: dependency name -> the port devbox listens on for it (``what``: "mock",
    "recording proxy")."""
    h = listen_host(host)
    return wire(
        profile,
        {name: Endpoint(h, port) for name, port in ports.items()},
        missing=f"no {what} runs for it",
    )


def service_env(profile: Profile, host: str, ports: Mapping[str, int], what: str) -> dict[str, str]:
    return dict(wiring_for(profile, host, ports, what).env)

"""What a replay sends: the recorded inbound traffic of a profile, and how to send it.

One place decides it for every caller (``devbox replay``, the edit loop, the pytest
plugin): a service with ``[service] protocol = "grpc"`` has its calls read as gRPC calls
(``devbox.replay.grpc``), any other its HTTP exchanges.
"""

from __future__ import annotations

from pathlib import Path

from devbox.core.model import Exchange
from devbox.core.profile import Profile
from devbox.replay.grpc import GrpcCalls, inbound_calls
from devbox.store import load_dir, load_path


def recorded_inbound(
    profile: Profile, source: Path | None = None
) -> tuple[list[Exchange], GrpcCalls | None]:
    """The exchanges to replay (the profile's inbound folder, or ``source``: a recording
    file or directory) and, for a gRPC service, how to send them (None: HTTP)."""
    if profile.service.protocol == "grpc":
        return inbound_calls(profile, source)
    if source is None:
        return load_dir(profile.inbound_dir), None  # no folder yet: nothing recorded
    return load_path(source), None

"""Which runtime runs the service, and why (the reason is shown to the user)."""

from __future__ import annotations

from devbox.core.profile import Profile
from devbox.errors import DockerUnavailable, UsageError
from devbox.runtime.base import EventSink, Runtime
from devbox.runtime.engine import engine_address, why_no_engine
from devbox.runtime.sessions import new_session_id

CHOICES = ("auto", "docker", "process")


def select_runtime(
    profile: Profile,
    prefer: str = "auto",
    *,
    on_event: EventSink | None = None,
    session: str | None = None,
    port: int | None = None,
) -> tuple[Runtime, str]:
    """(runtime, why it was chosen). ``prefer`` (a flag) beats the profile's
    ``service.runtime``; "auto" takes Docker when an engine answers and the service
    can be built or has an image, else the process runtime (service.command)."""
    from devbox.runtime.docker_runtime import DockerRuntime
    from devbox.runtime.process_runtime import ProcessRuntime

    if prefer not in CHOICES:
        raise UsageError(f"unknown runtime {prefer!r}", hint="use one of: " + ", ".join(CHOICES))
    session = session or new_session_id()
    svc = profile.service
    if prefer != "auto":
        wanted, source = prefer, "asked for"
    else:
        wanted, source = svc.runtime, "profile asks for"
    can_docker = svc.build is not None or bool(svc.image)

    if wanted == "process":
        rt: Runtime = ProcessRuntime(profile, on_event=on_event, session=session, port=port)
        return rt, f"{source} process"
    if wanted == "docker":
        why = why_no_engine()
        if why is not None:
            raise DockerUnavailable(
                f"{source} docker, but no Docker engine answered at {engine_address()}: {why}",
                hint="start dockerd (as root: bash scripts/setup), or use --runtime process",
            )
        return DockerRuntime(
            profile, on_event=on_event, session=session, port=port
        ), f"{source} docker; docker engine answered"
    # auto
    if not can_docker:
        return ProcessRuntime(
            profile, on_event=on_event, session=session, port=port
        ), "the service has no build or image: running its command"
    why = why_no_engine()
    if why is None:
        return DockerRuntime(
            profile, on_event=on_event, session=session, port=port
        ), "docker engine answered"
    if not svc.command:
        raise DockerUnavailable(
            f"no Docker engine answered at {engine_address()}: {why}",
            hint="start dockerd, or add command = [...] to [service] to run it as a local process",
        )
    return ProcessRuntime(
        profile, on_event=on_event, session=session, port=port
    ), f"no Docker engine answered at {engine_address()}: {why}"

"""Talking to the Docker engine: one place that creates clients and translates errors.

The Docker SDK is imported here, lazily, so that ``import devbox.runtime`` stays
cheap for commands that never touch Docker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from devbox.errors import DockerUnavailable, EngineError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def why_no_engine(timeout: float = 3.0) -> str | None:
    """None when a Docker engine answers a ping, else why not (one line)."""
    addr = engine_address()
    if addr.startswith("unix://"):
        path = addr[len("unix://") :]
        if not os.path.exists(path):
            return f"{path} does not exist (is dockerd running?)"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"no permission to use {path} (add yourself to the docker group, or run as root)"
    try:
        client(timeout=timeout).ping()
    except DockerUnavailable as exc:
        return exc.message
    except Exception as exc:
        return _short(exc)
    return None


def client(timeout: float | None = 60.0) -> Any:
    """A docker.DockerClient; ``.api`` is the low-level APIClient."""
    try:
        import docker
    except ImportError:  # pragma: no cover - a dependency of devbox
        raise DockerUnavailable(
            "the docker Python package is not installed", hint="pip install docker"
        ) from None
    try:
        return docker.from_env(timeout=timeout) if timeout is not None else docker.from_env()
    except Exception as exc:
        raise DockerUnavailable(
            f"no Docker engine answered at {engine_address()}: {_short(exc)}",
            hint="start dockerd (as root: bash scripts/setup), or use --runtime process",
        ) from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # requests' connection errors nest the useful part deep inside
    for marker in (
        "Connection refused",
        "No such file or directory",
        "Permission denied",
        "timed out",
        "Name or service not known",
    ):
        if marker in text:
            return marker.lower()
    return text[:200]


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn SDK and transport exceptions into devbox errors that say what was being done."""
    import docker.errors

    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise EngineError(f"{what}: image not found: {exc.explanation or exc}") from None
    except docker.errors.NotFound as exc:
        raise EngineError(f"{what}: {exc.explanation or exc}") from None
    except docker.errors.APIError as exc:
        raise EngineError(f"{what}: {exc.explanation or exc}") from None
    except OSError as exc:  # requests' errors are OSErrors too
        raise DockerUnavailable(
            f"{what}: the Docker engine at {engine_address()} stopped answering ({_short(exc)})",
            hint="is dockerd still running?",
        ) from None
    except docker.errors.DockerException as exc:
        raise EngineError(f"{what}: {_short(exc)}") from None

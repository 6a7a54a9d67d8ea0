"""The profile's ``[replay] reset`` hook: a command that puts the service back in its
recorded state (restore a database, restart a server), run before a replay and before
each ``--learn-noise`` pass. An argv list, never a shell; its output is kept for the error
message only."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from devbox.errors import EngineError


def run_reset_hook(argv: Sequence[str], cwd: Path, timeout_s: float = 120.0) -> float:
    """Run ``argv`` in ``cwd`` and return how long it took; EngineError when it cannot be
    started, fails or outlives ``timeout_s`` (the tail of its output in the message)."""
    t0 = time.monotonic()
    try:
        done = subprocess.run(  # noqa: S603 - the profile's argv, no shell
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise EngineError(
            f"[replay] reset: command not found: {argv[0]}",
            hint='reset takes the command\'s argv, e.g. reset = ["./scripts/reset-db"]',
        ) from None
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"[replay] reset: {argv[0]} still running after {timeout_s:g} s"
        ) from None
    except OSError as exc:
        raise EngineError(f"[replay] reset: cannot run {argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        tail = done.stdout.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise EngineError(
            f"[replay] reset: {argv[0]} exited with {done.returncode}"
            + (": " + " | ".join(tail) if tail else "")
        )
    return time.monotonic() - t0

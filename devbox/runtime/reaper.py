"""A container dies with the devbox process that owns it.

The Docker engine keeps a container running whatever happens to the process that
asked for it: after ``kill -9`` of ``devbox up`` the service kept running and held
its port until ``devbox down`` or the next ``up``. So when the Docker runtime starts
a container it also starts a small detached watchdog, ``python -m
devbox.runtime.reaper``, in a session of its own (a terminal's Ctrl-C or hang-up
does not reach it). The watchdog:

* waits on the owner with a pidfd (``os.pidfd_open``: woken the moment the owner
  exits, and immune to PID reuse because the descriptor names one process), after
  checking the owner is still the process with the recorded start time; where
  pidfds are missing it polls ``/proc`` with the same identity check;
* every ``CHECK_S`` looks at the container: once it is gone (``devbox down``, a
  normal stop) it has nothing left to guard and exits;
* when the owner dies first it removes the container (force, with its anonymous
  volumes) and exits.

A normal stop removes the container and ends the watchdog (by its PID); "quit, keep
running" ends the watchdog first, because a kept sandbox must outlive devbox. No
privileges: the watchdog talks to the same Docker socket devbox does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devbox.runtime.ownership import Owner, process_start, same_process

CHECK_S = 2.0  # how often the watchdog looks whether its container still exists
POLL_S = 0.2  # owner checks without a pidfd


@dataclass(slots=True)
class Reaper:
    """The owner's handle on its watchdog process."""

    container_id: str
    proc: subprocess.Popen[bytes] | None

    @classmethod
    def spawn(cls, container_id: str, log_path: Path | None = None) -> Reaper:
        """Start the watchdog for ``container_id``, owned by this process."""
        me = Owner.me()
        argv = [
            sys.executable, "-m", "devbox.runtime.reaper",
            "--container", container_id,
            "--owner-pid", str(me.pid),
            "--owner-start", "" if me.start is None else str(me.start),
        ]  # fmt: skip
        out = subprocess.DEVNULL
        log = None
        if log_path is not None:
            with contextlib.suppress(OSError):
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(log_path, "ab")
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv from devbox itself, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log or out,
                stderr=log or out,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            if log is not None:
                log.close()
        return cls(container_id, proc)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def disarm(self) -> None:
        """End the watchdog (the owner removes the container itself, or keeps it)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=5)


# ---------------------------------------------------------------- the watchdog itself


def _owner_gone(pid: int, start: int | None, until: float) -> bool:
    """Wait until ``until`` (monotonic) for the owner to exit; True when it has."""
    if not same_process(pid, start):
        return True
    fd = _pidfd(pid)
    if fd is not None:
        try:
            if not same_process(pid, start):  # reused between the check and the open
                return True
            left = max(0.0, until - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            return bool(ready) or not same_process(pid, start)
        finally:
            os.close(fd)
    while time.monotonic() < until:
        time.sleep(POLL_S)
        if not same_process(pid, start):
            return True
    return False


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def watch(container_id: str, pid: int, start: int | None) -> str:
    """Guard one container until it is gone or its owner is; says what happened."""
    import docker.errors

    from devbox.runtime.engine import client

    api = client(timeout=30).api
    while True:
        if _owner_gone(pid, start, time.monotonic() + CHECK_S):
            try:
                api.remove_container(container_id, v=True, force=True)
            except docker.errors.NotFound:
                return "owner gone; the container was already gone"
            return f"owner {pid} gone: removed container {container_id[:12]}"
        try:
            api.inspect_container(container_id)
        except docker.errors.NotFound:
            return "the container is gone: nothing left to guard"
        except docker.errors.APIError:
            continue  # the engine is busy; look again next time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devbox.runtime.reaper")
    ap.add_argument("--container", required=True)
    ap.add_argument("--owner-pid", type=int, required=True)
    ap.add_argument("--owner-start", default="")
    args = ap.parse_args(argv)
    start = int(args.owner_start) if args.owner_start.isdigit() else None
    if start is None:
        start = process_start(args.owner_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the owner (SIGTERM) ends it early
    try:
        what = watch(args.container, args.owner_pid, start)
    except Exception as exc:
        print(f"devbox reaper: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"devbox reaper: {what}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

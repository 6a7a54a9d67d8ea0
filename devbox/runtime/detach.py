"""Hand a piece of the sandbox to a detached process that outlives devbox.

``devbox up`` + "quit, keep running" leaves the service's container running; its
mocks ran inside devbox, so they are handed to a detached ``devbox mock`` on the
same ports. The child is written into the session file like every process devbox
starts, so ``devbox down`` (or the next ``up``, which reaps dead sessions) ends it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from devbox.errors import EngineError
from devbox.runtime.ownership import Owner, process_start
from devbox.runtime.readiness import probe_tcp
from devbox.runtime.sessions import Child, SessionFile, session_path


def spawn_detached(
    root: Path, profile: str, session: str, argv: Sequence[str], log_path: Path
) -> Child:
    """Start ``argv`` in its own session (no controlling terminal), output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv list from devbox itself, no shell
            list(argv),
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    child = Child(pid=proc.pid, start=process_start(proc.pid), command=tuple(argv))
    path = session_path(root, session)
    state = SessionFile.load(path) or SessionFile(
        path=path, session=session, profile=profile, owner=Owner.me()
    )
    state.children.append(child)
    state.save()
    return child


def wait_listening(ports: Sequence[int], child: Child, timeout_s: float = 15.0) -> None:
    """Until every port accepts connections; EngineError (with why) if the child died."""
    deadline = time.monotonic() + timeout_s
    pending = list(ports)
    while pending:
        if not child.alive():
            raise EngineError(f"the detached process {child.pid} exited before listening")
        pending = [p for p in pending if not probe_tcp("127.0.0.1", p, timeout=0.2)]
        if pending and time.monotonic() > deadline:
            raise EngineError(f"the detached process {child.pid} does not listen on {pending}")
        if pending:
            time.sleep(0.02)

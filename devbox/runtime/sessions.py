"""Session state files: ``<root>/.devbox/sessions/<session>.json``.

The process runtime writes one per session with the process groups of the
children it started (PID + start time, so a reused PID is never killed). A
session whose owner died leaves its file behind; ``devbox down`` and
``reap_orphans`` read it to finish the job. Writes are atomic (temp + rename).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.runtime.ownership import Owner, process_start, process_state, same_process

SESSIONS_DIR = ".devbox/sessions"


def new_session_id() -> str:
    return time.strftime("%m%d%H%M%S") + "-" + secrets.token_hex(3)


@dataclass(frozen=True, slots=True)
class Child:
    pid: int  # also the process group id: children start in their own session
    start: int | None
    command: tuple[str, ...]

    def alive(self) -> bool:
        return same_process(self.pid, self.start)


@dataclass(slots=True)
class SessionFile:
    path: Path
    session: str
    profile: str
    owner: Owner
    children: list[Child] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "profile": self.profile,
            "owner": {
                "pid": self.owner.pid,
                "start": self.owner.start,
                "boot": self.owner.boot,
                "host": self.owner.host,
            },
            "children": [
                {"pid": c.pid, "start": c.start, "command": list(c.command)} for c in self.children
            ],
        }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> SessionFile | None:
        try:
            raw = json.loads(path.read_text())
            o = raw["owner"]
            return cls(
                path=path,
                session=str(raw["session"]),
                profile=str(raw["profile"]),
                owner=Owner(
                    pid=int(o["pid"]),
                    start=o.get("start"),
                    boot=str(o.get("boot", "")),
                    host=str(o.get("host", "")),
                ),
                children=[
                    Child(
                        pid=int(c["pid"]), start=c.get("start"), command=tuple(c.get("command", ()))
                    )
                    for c in raw.get("children", [])
                ],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def sessions_dir(root: Path) -> Path:
    return root / SESSIONS_DIR


def session_path(root: Path, session: str) -> Path:
    return sessions_dir(root) / f"{session}.json"


def iter_sessions(root: Path, profile: str | None = None) -> Iterator[SessionFile]:
    d = sessions_dir(root)
    if not d.is_dir():
        return
    for p in sorted(d.glob("*.json")):
        s = SessionFile.load(p)
        if s is None:
            # unreadable or torn: nothing we could act on safely
            p.unlink(missing_ok=True)
            continue
        if profile is None or s.profile == profile:
            yield s


def group_members(pgid: int, min_start: int | None = None) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid`` started no earlier than min_start."""
    out: list[int] = []
    if pgid <= 1:
        return out
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            raw = (pid_dir / "stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        if len(rest) < 20 or rest[2] != str(pgid) or rest[0] == "Z":
            continue
        if min_start is not None and int(rest[19]) < min_start:
            continue
        out.append(int(pid_dir.name))
    return out


def kill_group(child: Child, grace_s: float = 3.0) -> list[int]:
    """End what is left of the child's process group: SIGTERM, SIGKILL after ``grace_s``.

    Returns the PIDs that were signalled. When the leader's PID now belongs to another
    process (its start time differs) nothing is ours. When the leader is gone but members
    of its group remain (grandchildren of a crashed service), they are ours: Linux does not
    hand out a PID while a process group still uses it as its id.
    """
    if (
        process_start(child.pid) is not None
        and not child.alive()
        and process_state(child.pid) != "Z"
    ):
        return []
    try:
        os.killpg(child.pid, 0)
    except ProcessLookupError:
        return []  # an empty group (the usual case): no /proc scan needed
    except PermissionError:
        return []
    members = group_members(child.pid, child.start)
    if not members:
        return []
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return []
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_members(child.pid, child.start):
            return members
        time.sleep(0.02)
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return members

"""Who owns what devbox started: labels on containers, identities of processes.

A PID alone does not identify a process: PIDs are reused, and they restart at 1
after a reboot. An owner is therefore (boot id, pid, start time): the start time
comes from /proc/PID/stat (clock ticks since boot), the boot id from the kernel.
Reaping never kills a process or removes a container whose owner is provably
alive; anything it cannot judge (another host's engine) it leaves alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devbox.core.profile import Service

LABEL_PREFIX = "devbox."
L_PROJECT = "devbox.project"
L_PROFILE = "devbox.profile"
L_SERVICE = "devbox.service"
L_SESSION = "devbox.session"
L_OWNER_PID = "devbox.owner_pid"
L_OWNER_START = "devbox.owner_start"
L_OWNER_BOOT = "devbox.owner_boot"
L_OWNER_HOST = "devbox.owner_host"
L_CONFIG_HASH = "devbox.config_hash"
L_ROOT = "devbox.root"
L_KIND = "devbox.kind"  # "service" | "base"


def project_hash(root: Path) -> str:
    """Stable id of a project: the hash of its resolved root path."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """Start time of PID in clock ticks since boot, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(rest[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


def process_state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class Owner:
    pid: int
    start: int | None
    boot: str
    host: str

    @classmethod
    def me(cls) -> Owner:
        pid = os.getpid()
        return cls(pid=pid, start=process_start(pid), boot=boot_id(), host=socket.gethostname())

    def alive(self) -> bool | None:
        """True/False when it can be judged here; None for another host's owner."""
        if self.host and self.host != socket.gethostname():
            return None
        if self.boot and self.boot != boot_id():
            return False
        return same_process(self.pid, self.start)


def same_process(pid: int, start: int | None) -> bool:
    """Is PID still the process that had this start time (not dead, not a zombie, not reused)?"""
    if pid <= 0:
        return False
    now = process_start(pid)
    if now is None:
        return False
    if process_state(pid) == "Z":
        return False
    return start is None or now == start


def owner_from_labels(labels: Mapping[str, str]) -> Owner | None:
    try:
        pid = int(labels.get(L_OWNER_PID, ""))
    except ValueError:
        return None
    start_raw = labels.get(L_OWNER_START, "")
    return Owner(
        pid=pid,
        start=int(start_raw) if start_raw.isdigit() else None,
        boot=labels.get(L_OWNER_BOOT, ""),
        host=labels.get(L_OWNER_HOST, ""),
    )


def container_labels(
    *, root: Path, profile: str, service: str, session: str, config_hash: str, owner: Owner
) -> dict[str, str]:
    return {
        L_KIND: "service",
        L_PROJECT: project_hash(root),
        L_ROOT: str(root.resolve()),
        L_PROFILE: profile,
        L_SERVICE: service,
        L_SESSION: session,
        L_OWNER_PID: str(owner.pid),
        L_OWNER_START: "" if owner.start is None else str(owner.start),
        L_OWNER_BOOT: owner.boot,
        L_OWNER_HOST: owner.host,
        L_CONFIG_HASH: config_hash,
    }


def config_hash(service: Service, image_id: str, env: Mapping[str, str], network: str) -> str:
    """What the container was made from: a change of any of these recreates it."""
    data: dict[str, Any] = asdict(service)
    data.pop("watch", None)  # watch rules change what devbox does, not the container
    data.pop("ready", None)
    blob = json.dumps(
        {"service": data, "image": image_id, "env": dict(sorted(env.items())), "network": network},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

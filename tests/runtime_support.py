"""Helpers for the runtime tests: a private copy of the demo project, HTTP GETs, event capture."""

from __future__ import annotations

import json
import re
import shutil
import threading
import urllib.request
from pathlib import Path
from typing import Any

from devbox.core.events import Event
from devbox.core.profile import Profile, load_profile

ROOT = Path(__file__).resolve().parent.parent


def make_project(
    tmp: Path,
    *,
    name: str = "rtdemo",
    port: int,
    service_extra: str = "",
    replace: dict[str, str] | None = None,
) -> Path:
    """A copy of the demo (orders service + profile) in ``tmp``, with its own name and port,
    so tests can edit app.py and `devbox down` stays scoped to this project."""
    shutil.copytree(
        ROOT / "examples/demo/orders",
        tmp / "examples/demo/orders",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    text = (ROOT / "profiles/demo.toml").read_text()
    text = re.sub(r'^name = "demo"', f'name = "{name}"', text, count=1, flags=re.M)
    text = re.sub(r"^port = 7080", f"port = {port}", text, count=1, flags=re.M)
    if service_extra:
        text = text.replace("[service.watch]", service_extra + "\n\n[service.watch]", 1)
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    (tmp / "profiles").mkdir(parents=True, exist_ok=True)
    path = tmp / "profiles" / f"{name}.toml"
    path.write_text(text)
    return path


def project_profile(tmp: Path, **kw: Any) -> Profile:
    return load_profile(make_project(tmp, **kw))


def get_json(port: int, path: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def upstream_env(ports: dict[str, int]) -> dict[str, str]:
    return {
        "PAYMENTS_URL": f"http://127.0.0.1:{ports['payments']}",
        "INVENTORY_URL": f"http://127.0.0.1:{ports['inventory']}",
    }


class Events:
    """Collects events from any thread."""

    def __init__(self) -> None:
        self.items: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        with self._lock:
            self.items.append(ev)

    def of(self, kind: type) -> list[Any]:
        with self._lock:
            return [e for e in self.items if isinstance(e, kind)]


def edit_tax(app: Path, rate: str) -> None:
    text = app.read_text()
    new = re.sub(r"^TAX_RATE = .*$", f"TAX_RATE = {rate}", text, count=1, flags=re.M)
    assert new != text or f"TAX_RATE = {rate}" in text
    app.write_text(new)


def reapers(container_id: str | None = None) -> list[int]:
    """PIDs of the watchdogs (devbox/runtime/reaper.py) guarding this container (or any)."""
    import os

    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "cmdline"), "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"devbox.runtime.reaper" in cmd and (
            container_id is None or container_id.encode() in cmd
        ):
            out.append(int(entry.name))
    return out


def kill_reapers(container_ids: list[str]) -> None:
    """A watchdog that is gone too (a whole-machine kill): what tests of reaping need."""
    import os
    import signal

    for cid in container_ids:
        for pid in reapers(cid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

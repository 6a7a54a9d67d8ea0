"""The per-project admin token: state-changing admin endpoints of every mock (mode,
reset, reload...) require it in ``X-Devbox-Token``, so a web page that reaches a mock's
port cannot change its state. devbox's own CLI, engine and dashboard read it from
``<root>/.devbox/admin-token`` (0600, created on first use); reads may stay open to
loopback."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

HEADER = "X-Devbox-Token"
TOKEN_FILE = ".devbox/admin-token"
# given by whoever runs the mocks where no project directory is writable (the mock image
# under Kubernetes runs on a read-only root file system)
ENV = "DEVBOX_ADMIN_TOKEN"
_PROCESS_TOKEN = secrets.token_urlsafe(32)


def token_path(root: Path) -> Path:
    return root / TOKEN_FILE


def ensure_token(root: Path) -> str:
    """The project's token, created (0600, atomically) when there is none yet.

    ``DEVBOX_ADMIN_TOKEN`` wins when set. Where the file cannot be written (a read-only
    file system), the token is this process's own: nobody else can change the mocks'
    state, which is the safe side."""
    given = os.environ.get(ENV, "").strip()
    if given:
        return given
    try:
        return _file_token(root)
    except OSError:
        return _PROCESS_TOKEN


def _file_token(root: Path) -> str:
    path = token_path(root)
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    try:
        # another devbox may have created it meanwhile: first writer wins
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def read_token(root: Path) -> str | None:
    given = os.environ.get(ENV, "").strip()
    if given:
        return given
    try:
        return token_path(root).read_text().strip() or None
    except OSError:
        return None

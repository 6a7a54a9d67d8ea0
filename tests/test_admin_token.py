"""The per-project admin token: one file (0600), shared by every devbox of the project."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from devbox.wire.admin_token import ENV, ensure_token, read_token, token_path


def test_created_once_0600_and_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert read_token(tmp_path) is None
    first = ensure_token(tmp_path)
    assert len(first) >= 32 and ensure_token(tmp_path) == first == read_token(tmp_path)
    assert stat.S_IMODE(token_path(tmp_path).stat().st_mode) == 0o600


def test_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "given-token")
    assert ensure_token(tmp_path) == "given-token" == read_token(tmp_path)
    assert not token_path(tmp_path).exists()


def test_a_read_only_project_gets_a_process_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the mock image runs on a read-only root file system: the mock must still start
    monkeypatch.delenv(ENV, raising=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores the mode bits: use a path under a file
        ro = tmp_path / "file"
        ro.write_text("")
    token = ensure_token(ro)
    assert token and token == ensure_token(ro)
    assert read_token(ro) is None

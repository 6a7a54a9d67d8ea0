"""scripts/link-devbox (run by scripts/setup): `devbox` on PATH, never taking over a link
that another checkout made."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import ROOT


def _run(link_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts/link-devbox")],
        env={**os.environ, "DEVBOX_LINK_DIR": str(link_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_link_or_export_line_and_a_foreign_link_is_left_alone(tmp_path: Path) -> None:
    bin_ = ROOT / ".venv/bin/devbox"
    r = _run(tmp_path)
    assert r.returncode == 0, r.stderr
    if os.geteuid() == 0:
        assert os.readlink(tmp_path / "devbox") == str(bin_)
        # the link works: a fresh shell with only that directory on PATH finds devbox
        out = subprocess.run(
            ["devbox", "--version"],
            env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and out.stdout.startswith("devbox ")
        assert _run(tmp_path).stderr == ""  # idempotent and quiet
    else:
        assert f'export PATH="{ROOT}/.venv/bin:$PATH"' in r.stderr
    other = tmp_path / "other"
    other.write_text("")
    (tmp_path / "devbox").unlink(missing_ok=True)
    (tmp_path / "devbox").symlink_to(other)
    r = _run(tmp_path)
    assert os.readlink(tmp_path / "devbox") == str(other)
    assert "left alone" in r.stderr and "export PATH=" in r.stderr

"""The README's Quickstart, followed literally by a newcomer, in a fresh copy of the tree.

The commands are parsed out of README.md (never copied here), so editing the README
changes what this test runs. The first one (``bash scripts/demo``) runs in a copy of
the working tree without any virtual environment: scripts/setup creates a fresh
.venv there and pip-installs devbox (a minute or so, with the machine's PIP_*
settings), then ``devbox up demo`` runs headless, since stdout is a pipe here. The
test adds ``--once`` (scripts/demo forwards its arguments) so the demo reaches its
first replay, reports and exits; a green replay is the pass.

The repository's own .venv is never used or touched: the copy excludes it, and the
environment drops VIRTUAL_ENV and every PATH entry inside the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, free_port

pytestmark = pytest.mark.slow

TIMEOUT_S = 900  # pip install from an index, a Docker build, one replay


def quickstart_commands(readme: str) -> list[str]:
    """The commands of the first shell block under the Quickstart heading, comments cut."""
    m = re.search(
        r"^#+\s*Quickstart\s*$(.*?)^```(?:sh|bash|shell|console)?\s*$\n(.*?)^```",
        readme,
        re.M | re.S | re.I,
    )
    assert m, "README.md has no Quickstart heading followed by a shell block"
    commands = []
    for line in m.group(2).splitlines():
        line = line.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        # a trailing comment: the first " #" outside quotes
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        commands.append(shlex.join(list(lexer)))
    return commands


def test_readme_quickstart_has_two_commands() -> None:
    commands = quickstart_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) == 2, commands
    assert all(c.startswith("bash scripts/") for c in commands), commands
    for c in commands:
        assert (ROOT / shlex.split(c)[1]).is_file(), f"{c}: no such script"


def _copy_tree(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files: the tree as a fresh checkout of it
    (with the work in progress of this tree) would have it; no .venv, no caches."""
    git = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    if git.returncode != 0:  # not a git checkout (an unpacked archive): copy, minus the venv
        shutil.copytree(
            ROOT,
            dest,
            symlinks=True,
            ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", ".*_cache", "*.egg-info"),
        )
        return
    listed = git.stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if not src.is_file() or rel.startswith(".venv/"):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "NO_COLOR", "FORCE_COLOR")
    }
    root = str(ROOT.resolve())
    env["PATH"] = os.pathsep.join(
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if p and not os.path.realpath(p).startswith(root)
    )
    env["COLUMNS"] = "120"
    return env


def test_first_quickstart_command_reaches_a_green_replay(tmp_path: Path) -> None:
    first = quickstart_commands((ROOT / "README.md").read_text(encoding="utf-8"))[0]
    argv = shlex.split(first)
    assert argv[:2] == ["bash", "scripts/demo"], f"the test knows how to run scripts/demo: {first}"
    own_venv = ROOT / ".venv" / ".installed"
    before = own_venv.stat().st_mtime_ns if own_venv.exists() else None

    copy = tmp_path / "devbox"
    _copy_tree(copy)
    assert not (copy / ".venv").exists()
    # The demo profile uses fixed ports; the copy gets free ones so that a demo the
    # developer is running (or a parallel test) cannot collide with this one.
    profile = copy / "profiles" / "demo.toml"
    text = profile.read_text()
    for old in ("7080", "7101", "7102"):
        text = re.sub(rf"\bport = {old}\b", f"port = {free_port()}", text)
    profile.write_text(text)

    proc = subprocess.run(
        [*argv, "--once"],
        cwd=copy,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )
    out = proc.stdout
    tail = "\n".join(out.splitlines()[-40:])
    assert proc.returncode == 0, tail
    assert (copy / ".venv" / "bin" / "devbox").exists(), "scripts/setup made no .venv in the copy"
    m = re.search(r"all (\d+) requests matched the recording", out)
    assert m and int(m.group(1)) > 0, tail
    assert "iteration 0: PASS" in out, tail
    after = own_venv.stat().st_mtime_ns if own_venv.exists() else None
    assert after == before, "the repository's own .venv was touched"

"""docs/cli.md is generated from the argparse parser; this fails when it drifts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

from devbox.cli.introspect import devbox_tree
from devbox.cli.reference import CLI_PAGE, REGENERATE, cli_markdown


def test_committed_page_is_the_generated_page() -> None:
    committed = CLI_PAGE.read_text(encoding="utf-8") if CLI_PAGE.exists() else ""
    assert committed == cli_markdown(), (
        f"docs/cli.md differs from what the CLI generates: run `{REGENERATE}` and commit it"
    )


def test_page_covers_every_command_and_option() -> None:
    page = cli_markdown()
    for cmd in devbox_tree().walk():
        if cmd.path:
            assert f"\n## devbox {' '.join(cmd.path)}\n" in page
        for opt in cmd.options:
            if opt.flags[0] != "-h":
                assert f"| `{opt.flags[0]}" in page, (cmd.name, opt.flags)


def test_check_exits_1_on_a_stale_page(tmp_path: Path) -> None:
    page = tmp_path / "cli.md"
    page.write_text(cli_markdown().replace("print debugging detail", "old words"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "devbox.cli.reference", "--out", str(page)]
    r = subprocess.run([*cmd, "--check"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"is out of date: run `{REGENERATE}`" in r.stderr
    assert "-| `-v, --verbose` | old words |" in r.stdout
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 0
    r = subprocess.run([*cmd, "--check"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout

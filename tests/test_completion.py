"""``devbox completion``: the scripts really complete, in the real shells, in a project
with profiles. bash is driven the way bash drives it (COMP_WORDS/COMP_CWORD, then
_devbox); fish through its own ``complete -C``; zsh parses, and its driver runs with
the completion-system builtins replaced by printers (they exist only inside zle)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from devbox.cli.main import build_parser

DEVBOX = [sys.executable, "-m", "devbox"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}


def _script(shell: str, project: Path) -> Path:
    r = subprocess.run(
        [*DEVBOX, "completion", shell],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    path = project / f"devbox.{shell}"
    path.write_text(r.stdout)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "profiles").mkdir()
    for name in ("demo", "orders", "payments-dev"):
        (tmp_path / "profiles" / f"{name}.toml").write_text("")
    (tmp_path / "profiles" / "notes.txt").write_text("")
    (tmp_path / "report.json").write_text("")
    return tmp_path


def _bash(project: Path, script: Path, *words: str) -> list[str]:
    words_sh = " ".join(shlex.quote(w) for w in words)
    code = (
        f"source {shlex.quote(str(script))}; COMP_WORDS=({words_sh}); "
        f"COMP_CWORD={len(words) - 1}; _devbox; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    r = subprocess.run(
        ["bash", "-c", code], cwd=project, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    return sorted(line for line in r.stdout.splitlines() if line)


def test_bash_completes_commands_options_choices_and_profiles(project: Path) -> None:
    script = _script("bash", project)
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    group = build_parser()._subparsers
    assert group is not None
    top = group._group_actions[0].choices
    assert top is not None
    assert _bash(project, script, "devbox", "") == sorted(top)
    assert {"init", "completion", "up", "record"} <= set(top)
    assert _bash(project, script, "devbox", "up", "") == ["demo", "orders", "payments-dev"]
    assert _bash(project, script, "devbox", "up", "or") == ["orders"]
    # global options before the command are skipped
    assert _bash(project, script, "devbox", "-v", "record", "p") == ["payments-dev"]
    assert _bash(project, script, "devbox", "up", "--run") == ["--runtime"]
    assert _bash(project, script, "devbox", "up", "--runtime", "") == ["auto", "docker", "process"]
    # bash splits --runtime=do at "=" (COMP_WORDBREAKS)
    assert _bash(project, script, "devbox", "up", "--runtime", "=", "do") == ["docker"]
    # after an option's value, the positional is the profile again
    assert _bash(project, script, "devbox", "up", "--runtime", "docker", "d") == ["demo"]
    assert _bash(project, script, "devbox", "traffic", "") == ["ls", "show"]
    assert "demo" in _bash(project, script, "devbox", "traffic", "ls", "")
    assert _bash(project, script, "devbox", "completion", "") == ["bash", "fish", "zsh"]
    assert _bash(project, script, "devbox", "up", "profiles/d") == ["profiles/demo.toml"]
    assert _bash(project, script, "devbox", "up", "--out", "rep") == ["report.json"]
    assert _bash(project, script, "devbox", "init", "") == ["profiles"]  # directories only
    # after -- in record: a program
    assert "bash" in _bash(project, script, "devbox", "record", "demo", "--", "bas")


def test_bash_completion_knows_every_option_of_every_command(project: Path) -> None:
    from devbox.cli.introspect import devbox_tree

    script = _script("bash", project)
    for cmd in devbox_tree().walk():
        if not cmd.path or cmd.subcommands:
            continue
        got = set(_bash(project, script, "devbox", *cmd.path, "-"))
        assert got == {f for o in cmd.options for f in o.flags}, cmd.name


def test_fish(project: Path) -> None:
    assert shutil.which("fish"), "fish is missing: scripts/setup installs it"
    script = _script("fish", project)
    assert subprocess.run(["fish", "-n", str(script)], timeout=30).returncode == 0

    def complete(line: str) -> list[str]:
        r = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C {shlex.quote(line)}"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        return sorted(x.split("\t")[0] for x in r.stdout.splitlines())

    assert {"up", "init", "completion", "traffic"} <= set(complete("devbox "))
    assert complete("devbox up ") == ["demo", "orders", "payments-dev"]
    assert complete("devbox up --runtime ") == ["auto", "docker", "process"]
    assert complete("devbox traffic ") == ["ls", "show"]
    assert "--runtime" in complete("devbox -q up --r")


def test_zsh(project: Path) -> None:
    assert shutil.which("zsh"), "zsh is missing: scripts/setup installs it"
    script = _script("zsh", project)
    assert subprocess.run(["zsh", "-n", str(script)], timeout=30).returncode == 0
    harness = project / "harness.zsh"
    harness.write_text(
        "compdef() { :; }\n"
        'compadd() { if [[ $1 == -a ]]; then print -rl -- "${(P@)2}"\n'
        '  else print -rl -- "$@"; fi }\n'
        '_describe() { print -rl -- "${(P@)4}"; }\n'
        "_files() { print -r -- '<files>'; }\n"
        "_command_names() { print -r -- '<commands>'; }\n"
        f"source {script}\n"
        'words=("$@"); CURRENT=$#\n'
        "_devbox\n"
    )

    def complete(*words: str) -> list[str]:
        r = subprocess.run(
            ["zsh", "-f", str(harness), *words],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    assert complete("devbox", "up", "") == ["demo", "orders", "payments-dev"]
    assert complete("devbox", "up", "--runtime", "") == ["auto", "docker", "process"]
    traffic = complete("devbox", "traffic", "")
    assert [t.split(":")[0] for t in traffic] == ["ls", "show"]
    assert all(":" in t and t.split(":", 1)[1] for t in traffic)  # with descriptions
    assert "--runtime:where the service runs" in " ".join(complete("devbox", "up", "--"))
    assert complete("devbox", "record", "demo", "--", "") == ["<commands>"]
    assert complete("devbox", "explain", "demo", "") == ["<files>"]

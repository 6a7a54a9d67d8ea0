"""Terminal hygiene of the real CLI: colour and styles on a terminal, none with NO_COLOR
(https://no-color.org) and none when the output is a pipe; --quiet keeps results and
errors. Commands run under a real pseudo-terminal where a terminal matters."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

DEVBOX = [sys.executable, "-m", "devbox"]
BASE_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS", "CLICOLOR_FORCE")
}
BASE_ENV.update({"PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "120"})

COMMANDS = [
    ("validate", "demo"),  # a result
    ("traffic", "ls", "demo"),  # a table
    ("validate", "no-such-profile"),  # an error with a hint
]


def on_terminal(args: tuple[str, ...], env: dict[str, str], cwd: Path = ROOT) -> tuple[int, bytes]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; all it wrote, and its status."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*DEVBOX, *args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(10), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_terminal_gets_styles_no_color_gets_none(args: tuple[str, ...]) -> None:
    code, styled = on_terminal(args, BASE_ENV)
    assert b"\x1b[" in styled, styled  # the check below could fail
    code_nc, plain = on_terminal(args, {**BASE_ENV, "NO_COLOR": "1"})
    assert code_nc == code
    assert b"\x1b" not in plain, plain
    assert plain.strip()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_pipes_get_no_escapes(args: tuple[str, ...]) -> None:
    r = subprocess.run([*DEVBOX, *args], cwd=ROOT, env=BASE_ENV, capture_output=True, timeout=60)
    assert b"\x1b" not in r.stdout + r.stderr
    assert (r.stdout + r.stderr).strip()
    if args[-1] == "no-such-profile":
        assert r.returncode == 2
        assert r.stderr.startswith(b"error: no profile named 'no-such-profile'")
        assert b"hint: known profiles:" in r.stderr


def test_empty_no_color_means_unset() -> None:
    _, out = on_terminal(("validate", "demo"), {**BASE_ENV, "NO_COLOR": ""})
    assert b"\x1b[" in out


def test_quiet_keeps_results_and_errors(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\nEXPOSE 5000\n")
    r = subprocess.run(
        [*DEVBOX, "-q", "init", "--yes", "--name", "svc"],
        cwd=tmp_path,
        env=BASE_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    assert r.stdout == "profiles/svc.toml\n"
    assert r.stderr == ""
    r = subprocess.run(
        [*DEVBOX, "-q", "validate", "nope"],
        cwd=tmp_path,
        env=BASE_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: no profile named 'nope'")


def test_errors_and_hints_print_brackets_literally(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "[replay]" and "[service]" are profile sections, not style tags: none may vanish
    from devbox.cli import output
    from devbox.errors import ConfigError

    monkeypatch.setattr(output, "_err_console", None)
    monkeypatch.delenv("DEVBOX_NO_HINTS", raising=False)
    output.render_error(
        ConfigError("port 8080 is taken, or change [service] port", file="p.toml", line=3,
                    hint="add the field to [replay] ignore")
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "or change [service] port" in err
    assert "add the field to [replay] ignore" in err

"""``devbox completion bash|zsh|fish``: print a completion script made from the parser itself."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EPILOG = """\
install:
  bash  echo 'source <(devbox completion bash)' >> ~/.bashrc
  zsh   devbox completion zsh > "${fpath[1]}/_devbox"   (then restart zsh)
  fish  devbox completion fish > ~/.config/fish/completions/devbox.fish

Completes commands, their options, option values with fixed choices, and profile
names from ./profiles/*.toml.
"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a completion script for your shell, generated from devbox's own "
        "command-line parser, so it always knows every command and option.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete for")
    p.set_defaults(func=run_completion)


def run_completion(args: argparse.Namespace) -> int:
    from devbox.cli.completion import script

    sys.stdout.write(script(args.shell))
    sys.stdout.flush()
    return 0

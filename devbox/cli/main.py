"""``devbox`` entry point: builds the parser from the command modules and renders errors."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from devbox import __version__
from devbox.cli import output
from devbox.errors import DevboxError

# Each module has ``register(subparsers)``. Keep their top level cheap: heavy
# imports (textual, docker) happen inside the command's function.
COMMAND_MODULES = (
    "devbox.cli.cmd_mock",
    "devbox.cli.cmd_profile",
    "devbox.cli.cmd_traffic",
    "devbox.cli.cmd_import",
    "devbox.cli.cmd_replay",
    "devbox.cli.cmd_runtime",
    "devbox.cli.cmd_explain",
    "devbox.cli.cmd_record",
    "devbox.cli.cmd_up",
    "devbox.cli.cmd_init",
    "devbox.cli.cmd_completion",
    "devbox.cli.cmd_scan",
)


class _Sub(Protocol):
    def add_parser(self, name: str, **kw: object) -> argparse.ArgumentParser: ...


Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devbox",
        description=(
            "A laptop replica of the system around your service: your code in a container, "
            "every dependency a mock replaying recorded traffic, and a live edit loop."
        ),
    )
    parser.add_argument("--version", action="version", version=f"devbox {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="print debugging detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    # `devbox up demo -q` as well as `devbox -q up demo`: the subcommand's copy only
    # overrides the global one when given (SUPPRESS leaves the attribute alone)
    for subparser in sub.choices.values():
        for flags, help_text in (
            (("-v", "--verbose"), "print debugging detail"),
            (("-q", "--quiet"), "print only results and errors"),
        ):
            try:
                subparser.add_argument(
                    *flags, action="store_true", default=argparse.SUPPRESS, help=help_text
                )
            except argparse.ArgumentError:
                pass  # the command uses the letter for something else
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    output.QUIET = bool(args.quiet)
    output.VERBOSE = bool(args.verbose)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except DevboxError as exc:
        output.render_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        output.err_console().print("interrupted")
        return 130
    except BrokenPipeError:
        # `devbox traffic show | head`: the reader left, that is not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

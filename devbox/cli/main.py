"""``devbox`` entry point: builds the parser from the command modules and renders errors."""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, Protocol

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
    "devbox.cli.cmd_ca",
)


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for mistyped commands, choices and options (subcommand
    parsers are of this class too: ``add_subparsers`` uses the parent's class)."""

    def error(self, message: str) -> NoReturn:
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2))
            close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]!r}?"
        super().error(message)

    def option_strings(self) -> list[str]:
        return [s for a in self._actions for s in a.option_strings]


def _deepest(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub)command parser the arguments name: `up demo --onse` -> `up`'s."""
    current = parser
    for token in argv:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and token in subs[0].choices:
            current = subs[0].choices[token]
    return current


def unknown_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str], extras: list[str]
) -> NoReturn:
    """Report unknown arguments under the usage of the command they were given to, with
    the nearest option when one is close."""
    target = _deepest(parser, argv)
    message = f"unrecognized arguments: {' '.join(extras)}"
    options = target.option_strings() if isinstance(target, Parser) else []
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]}?"
                break
    target.error(message)


class _Sub(Protocol):
    def add_parser(self, name: str, **kw: object) -> argparse.ArgumentParser: ...


Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        unknown_arguments(parser, argv, extras)
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

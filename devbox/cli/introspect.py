"""The CLI described from its own argparse parser: commands, options, positionals.

Shell completion (``devbox completion``) and the CLI reference (``docs/cli.md``)
are generated from this tree, so neither can drift from the code. argparse keeps
what we need in a few private attributes (``_actions``, ``_choices_actions``);
they have been stable across Python 3 releases and typeshed types them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# what the shell offers for a positional or an option's value
PROFILE = "profile"  # names from ./profiles/*.toml
PROFILE_OR_FILE = "profile+file"
FILE = "file"
DIR = "dir"
COMMAND = "command"  # a program, then its arguments (after --)
NONE = "none"  # free text: nothing to offer


@dataclass(frozen=True, slots=True)
class Option:
    flags: tuple[str, ...]
    takes_value: bool
    choices: tuple[str, ...]
    metavar: str | None
    help: str
    complete: str  # PROFILE, FILE, ... or "choices" when ``choices`` is set
    action: argparse.Action


@dataclass(frozen=True, slots=True)
class Positional:
    name: str
    nargs: Any
    choices: tuple[str, ...]
    help: str
    complete: str
    action: argparse.Action

    @property
    def variadic(self) -> bool:
        return self.nargs in ("*", "+", argparse.REMAINDER)


@dataclass(frozen=True, slots=True)
class Command:
    path: tuple[str, ...]
    parser: argparse.ArgumentParser
    help: str
    options: tuple[Option, ...]
    positionals: tuple[Positional, ...]
    subcommands: tuple[Command, ...]

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def walk(self) -> Iterator[Command]:
        yield self
        for sub in self.subcommands:
            yield from sub.walk()


def expand_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as ``--help`` shows it (``%(default)s`` filled in, ``%%`` -> ``%``)."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    formatter = argparse.HelpFormatter(prog=parser.prog)
    return " ".join(formatter._expand_help(action).split())


def _positional_kind(action: argparse.Action) -> str:
    hint = getattr(action, "devbox_complete", None)
    if isinstance(hint, str):
        return hint
    if action.choices:
        return "choices"
    if action.nargs == argparse.REMAINDER:
        return COMMAND
    if str(action.metavar or "").upper() == "DIR":
        return DIR
    text = (action.help or "").lower()
    if action.dest == "profile":
        return PROFILE  # a path still completes once the word has a /
    if "profile name" in text:
        return PROFILE_OR_FILE
    return FILE


def _option_kind(action: argparse.Action) -> str:
    hint = getattr(action, "devbox_complete", None)
    if isinstance(hint, str):
        return hint
    if action.choices:
        return "choices"
    meta = str(action.metavar or "").upper()
    dest = action.dest.lower()
    if meta == "DIR" or dest.endswith("dir"):
        return DIR
    if (
        "FILE" in meta
        or "PATH" in meta
        or dest in ("out", "output", "file", "path")
        or (
            action.type is not None and getattr(action.type, "__name__", "") in ("Path", "FileType")
        )
    ):
        return FILE
    return NONE


def command_tree(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (), help_text: str = ""
) -> Command:
    options: list[Option] = []
    positionals: list[Positional] = []
    subcommands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue  # an alias
                seen.add(id(sub))
                subcommands.append(command_tree(sub, (*path, name), helps.get(name, "")))
            continue
        if action.help == argparse.SUPPRESS:
            continue
        choices = tuple(str(c) for c in action.choices) if action.choices else ()
        if action.option_strings:
            options.append(
                Option(
                    flags=tuple(action.option_strings),
                    takes_value=action.nargs != 0,
                    choices=choices,
                    metavar=str(action.metavar) if action.metavar else None,
                    help=expand_help(parser, action),
                    complete=_option_kind(action),
                    action=action,
                )
            )
        else:
            positionals.append(
                Positional(
                    name=str(action.metavar or action.dest),
                    nargs=action.nargs,
                    choices=choices,
                    help=expand_help(parser, action),
                    complete=_positional_kind(action),
                    action=action,
                )
            )
    return Command(
        path=path,
        parser=parser,
        help=help_text,
        options=tuple(options),
        positionals=tuple(positionals),
        subcommands=tuple(subcommands),
    )


def devbox_tree() -> Command:
    from devbox.cli.main import build_parser

    return command_tree(build_parser())

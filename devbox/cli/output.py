"""Terminal output shared by every command: one rich Console, JSON printing, errors."""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape as rich_escape

from devbox.errors import DevboxError

_console: Console | None = None
_err_console: Console | None = None
QUIET = False
VERBOSE = False


def no_color() -> bool:
    """NO_COLOR (https://no-color.org): set and not empty."""
    return bool(os.environ.get("NO_COLOR"))


def _styles() -> dict[str, Any]:
    # rich drops colours for NO_COLOR but keeps bold/dim/underline, which are escape
    # sequences too: a user who asks for no colour wants plain text. A pipe or a file
    # gets no escapes at all (rich sees no terminal).
    # emoji=False: recorded text is printed as it is; rich would turn the ":secret:" of a
    # redaction placeholder ("<redacted:secret:…>") into an emoji
    out: dict[str, Any] = {"emoji": False}
    if no_color():
        out["color_system"] = None
    return out


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(highlight=False, soft_wrap=False, **_styles())
    return _console


def err_console() -> Console:
    global _err_console
    if _err_console is None:
        # soft_wrap: an error stays one line (file:line: field: message) at any width
        _err_console = Console(stderr=True, highlight=False, soft_wrap=True, **_styles())
    return _err_console


def escape(text: object) -> str:
    """User or profile text inside a line that uses markup: "[replay] ignore" stays
    literal instead of being taken for a style tag (and swallowed)."""
    return rich_escape(str(text))


def info(message: str) -> None:
    """A progress or status line (stderr); silenced by --quiet."""
    if not QUIET:
        err_console().print(message)


def debug(message: str) -> None:
    if VERBOSE:
        err_console().print(f"[dim]{message}[/dim]")


def print_json(value: Any) -> None:
    sys.stdout.buffer.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    )
    sys.stdout.flush()


def render_error(exc: DevboxError) -> None:
    """The one place a DevboxError becomes text on a terminal."""
    con = err_console()
    logs: tuple[str, ...] = getattr(exc, "logs", ())
    if logs:
        # hints say "its last output is shown above": show it, -v or not
        con.print("[dim]last output:[/dim]")
        for line in logs[-20:]:
            con.print(f"  {line}", markup=False, highlight=False)
    con.print(f"[bold red]error:[/bold red] {escape(exc.one_line())}", highlight=False)
    if exc.hint and not os.environ.get("DEVBOX_NO_HINTS"):
        con.print(f"[yellow]hint:[/yellow] {escape(exc.hint)}")

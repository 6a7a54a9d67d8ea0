"""Reference pages generated from the code, so they cannot drift from it.

``python -m devbox.cli.reference``            write docs/cli.md from the argparse parser
``python -m devbox.cli.reference --check``    exit 1 when docs/cli.md is not what it would write
``python -m devbox.cli.reference --errors``   list every error message devbox can print
                                              (file:line, class, message pattern)
``python -m devbox.cli.reference --errors --check``
                                              exit 1 when one has no entry in
                                              docs/troubleshooting.md

Error messages are found with ``ast``: every call of a ``DevboxError`` subclass
(``raise NotFoundError(f"no profile named {name!r}")``, also when the error is built
in one place and raised in another) and the profile parser's ``ctx.error(field,
message)`` / ``self.error(field, message)``. A literal message is kept as it is;
each f-string placeholder becomes ``*``. Messages computed entirely at run time
cannot be listed and are counted as such. A troubleshooting entry is a heading
holding the pattern in backticks; it matches a message when their first ``PREFIX``
characters agree (wildcards on either side match anything), so rewording the tail of
a message does not break the page, while a new message or a new beginning does.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devbox.cli.introspect import Command, Option, Positional, devbox_tree

PACKAGE = Path(__file__).resolve().parent.parent
ROOT = PACKAGE.parent
CLI_PAGE = ROOT / "docs" / "cli.md"
TROUBLE_PAGE = ROOT / "docs" / "troubleshooting.md"
REGENERATE = "python -m devbox.cli.reference"
PREFIX = 32
_WIDTH = 100


# ---------------------------------------------------------------- docs/cli.md


def _usage(cmd: Command) -> str:
    formatter = argparse.HelpFormatter(prog=cmd.parser.prog, width=_WIDTH)
    formatter.add_usage(
        cmd.parser.usage, cmd.parser._actions, cmd.parser._mutually_exclusive_groups
    )
    return formatter.format_help().strip()


def _invocation(cmd: Command, action: argparse.Action) -> str:
    formatter = argparse.HelpFormatter(prog=cmd.parser.prog, width=_WIDTH)
    return formatter._format_action_invocation(action)


def _md(text: str) -> str:
    """Plain text safe in markdown prose: no stray tags or emphasis."""
    return text.replace("<", "&lt;").replace("*", "\\*")


def _cell(text: str) -> str:
    return _md(text).replace("|", "\\|").replace("\n", " ")


def _anchor(cmd: Command) -> str:
    return "devbox-" + "-".join(cmd.path) if cmd.path else "devbox"


def _title(cmd: Command) -> str:
    return " ".join(("devbox", *cmd.path))


def _rows(cmd: Command, items: tuple[Positional, ...] | tuple[Option, ...]) -> list[str]:
    rows = []
    for item in items:
        if isinstance(item, Option) and item.flags[0] in ("-h", "--help"):
            continue
        name = _invocation(cmd, item.action).replace("|", "\\|")
        rows.append(f"| `{name}` | {_cell(item.help)} |")
    return rows


def cli_markdown(tree: Command | None = None) -> str:
    tree = tree or devbox_tree()
    out = [
        "# CLI reference",
        "",
        f"<!-- Generated from the CLI itself by `{REGENERATE}`; do not edit by hand. -->",
        "",
        _md(tree.parser.description or ""),
        "",
        "```text",
        _usage(tree),
        "```",
        "",
        "Global options go before the command (`devbox -q up demo`):",
        "",
        "| option | what it does |",
        "| --- | --- |",
        *_rows(tree, tree.options),
        "",
        "Exit codes: 0 success; 1 a failure devbox or the replay reports; 2 a usage or "
        "configuration error (the message names the file, line and field); 130 interrupted. "
        "Errors print one line, `error: ...`, often followed by `hint: ...`; "
        "[troubleshooting.md](troubleshooting.md) lists every one with its fix. "
        "`NO_COLOR=1` turns off colours and styles; output to a pipe has none.",
        "",
        "## Commands",
        "",
    ]
    for cmd in tree.walk():
        if cmd.path:
            indent = "  " * (len(cmd.path) - 1)
            out.append(f"{indent}- [`{_title(cmd)}`](#{_anchor(cmd)}): {_md(cmd.help)}")
    for cmd in tree.walk():
        if not cmd.path:
            continue
        out += ["", f"## {_title(cmd)}", ""]
        if cmd.parser.description:
            out += [_md(cmd.parser.description.strip()), ""]
        out += ["```text", _usage(cmd), "```"]
        if cmd.subcommands:
            out += [
                "",
                "Subcommands: "
                + ", ".join(f"[`{s.path[-1]}`](#{_anchor(s)})" for s in cmd.subcommands)
                + ".",
            ]
        positionals = _rows(cmd, cmd.positionals)
        if positionals and not cmd.subcommands:
            out += ["", "| argument | what it is |", "| --- | --- |", *positionals]
        options = _rows(cmd, cmd.options)
        if options:
            out += ["", "| option | what it does |", "| --- | --- |", *options]
        if cmd.parser.epilog:
            out += ["", "```text", cmd.parser.epilog.strip("\n"), "```"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- error messages


@dataclass(frozen=True, slots=True)
class ErrorSite:
    file: str  # relative to the repository root
    line: int
    kind: str  # the error class (ConfigError for the profile parser's ctx.error)
    pattern: str  # the message, each placeholder a *

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _error_classes(modules: list[tuple[Path, ast.Module]]) -> set[str]:
    """DevboxError and every class deriving from it anywhere in the package (by name)."""
    known = {"DevboxError"}
    bases: dict[str, set[str]] = {}
    for _, tree in modules:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(_name(b) for b in node.bases if _name(b))
    grew = True
    while grew:
        grew = False
        for cls, parents in bases.items():
            if cls not in known and parents & known:
                known.add(cls)
                grew = True
    # protocol errors are answered on the wire (a 400, a 502), not shown to a user
    wire = {"ProtocolError"}
    grew = True
    while grew:
        grew = False
        for cls, parents in bases.items():
            if cls not in wire and parents & wire:
                wire.add(cls)
                grew = True
    return known - wire


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def message_pattern(node: ast.expr | None) -> str | None:
    """The message with every run-time part as ``*``; None when nothing of it is literal."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                parts.append(v.value)
            else:
                parts.append("*")
        return re.sub(r"\*+", "*", "".join(parts))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = message_pattern(node.left), message_pattern(node.right)
        if left is None and right is None:
            return None
        return re.sub(r"\*+", "*", (left or "*") + (right or "*"))
    if isinstance(node, ast.IfExp):
        return message_pattern(node.body)
    return None


def _message_arg(call: ast.Call, index: int) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "message":
            return kw.value
    return call.args[index] if len(call.args) > index else None


def error_sites() -> tuple[list[ErrorSite], list[str]]:
    """(every error message with a literal part, places whose message is all run-time)."""
    modules = list(_sources())
    classes = _error_classes(modules)
    sites: list[ErrorSite] = []
    dynamic: list[str] = []
    for path, tree in modules:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "devbox/errors.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = _name(node.func)
            if func in classes:
                kind, arg = func, _message_arg(node, 0)
            elif (
                isinstance(node.func, ast.Attribute)
                and func == "error"
                and _name(node.func.value) in ("ctx", "self")
                and rel.startswith("devbox/core/profile")
            ):
                kind, arg = "ConfigError", _message_arg(node, 1)
            else:
                continue
            pattern = message_pattern(arg)
            if pattern is None:
                if arg is not None and not (isinstance(arg, ast.Name) and arg.id == "message"):
                    dynamic.append(f"{rel}:{node.lineno}")
                continue
            sites.append(ErrorSite(rel, node.lineno, kind, pattern))
    return sites, dynamic


def _head_fits(head: str, text: str) -> bool:
    """Whether ``text`` starts with ``head``, each ``*`` of head matching any run."""
    return re.match(re.escape(head).replace(r"\*", ".*?"), text, re.DOTALL) is not None


def _specific(head: str) -> bool:
    """Enough literal text to identify a message (``*: *`` identifies nothing)."""
    return len(head.replace("*", "").strip()) >= 10


def entry_matches(pattern: str, entry: str, n: int = PREFIX) -> bool:
    """A message pattern and a page entry are the same, or agree on their first n
    characters (either way round, wildcards matching any text)."""
    if pattern == entry:
        return True
    ph, eh = pattern[:n], entry[:n]
    return (_specific(ph) and _head_fits(ph, entry)) or (_specific(eh) and _head_fits(eh, pattern))


_ENTRY = re.compile(r"^#{2,4}\s+`(.+)`\s*$")


def troubleshooting_entries(text: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if (m := _ENTRY.match(line))]


def missing_entries(sites: list[ErrorSite], page: str) -> list[ErrorSite]:
    entries = troubleshooting_entries(page)
    out: list[ErrorSite] = []
    seen: set[str] = set()
    for s in sites:
        if s.pattern in seen:
            continue
        seen.add(s.pattern)
        if not any(entry_matches(s.pattern, e) for e in entries):
            out.append(s)
    return out


def unique_patterns(sites: list[ErrorSite]) -> dict[str, list[ErrorSite]]:
    by: dict[str, list[ErrorSite]] = {}
    for s in sites:
        by.setdefault(s.pattern, []).append(s)
    return by


# ---------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m devbox.cli.reference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="compare instead of writing; exit 1 when the page is out of date",
    )
    ap.add_argument(
        "--errors",
        action="store_true",
        help="list error messages (with --check: those missing from docs/troubleshooting.md)",
    )
    ap.add_argument("--out", type=Path, help="where to write the CLI page (default docs/cli.md)")
    args = ap.parse_args(argv)
    if args.errors:
        return _errors(check=args.check)
    page = cli_markdown()
    target: Path = args.out or CLI_PAGE
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current == page:
            print(f"{_shown(target)} is up to date")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), page.splitlines(), "committed", "generated", lineterm="", n=1
        )
        sys.stdout.write("\n".join(list(diff)[:60]) + "\n")
        print(f"{_shown(target)} is out of date: run `{REGENERATE}`", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    print(f"wrote {_shown(target)}")
    return 0


def _errors(*, check: bool) -> int:
    sites, dynamic = error_sites()
    if check:
        page = TROUBLE_PAGE.read_text(encoding="utf-8") if TROUBLE_PAGE.exists() else ""
        missing = missing_entries(sites, page)
        for s in missing:
            print(f"{s.where}: {s.kind}: `{s.pattern}` has no entry in {_shown(TROUBLE_PAGE)}")
        return 1 if missing else 0
    for pattern, where in sorted(unique_patterns(sites).items(), key=lambda kv: kv[1][0].where):
        places = ", ".join(s.where for s in where)
        print(f"{places}\t{where[0].kind}\t{pattern}")
    if dynamic:
        print(
            f"# {len(dynamic)} messages are computed at run time: {', '.join(dynamic)}",
            file=sys.stderr,
        )
    return 0


def _shown(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


if __name__ == "__main__":
    raise SystemExit(main())

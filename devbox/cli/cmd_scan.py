"""``devbox scan [PATH]``: look for secrets in recordings (or any folder) with the rules
redaction uses; ``--fix`` redacts them in place."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.cli import output
from devbox.errors import NotFoundError

if TYPE_CHECKING:
    from devbox.core.redact import Redactor

EPILOG = """\
examples:
  devbox scan                       every recording under mocks/
  devbox scan mocks/demo --fix      redact what is found, in place (atomic per file)
  devbox scan . --json              any folder; one JSON object per finding

Exit status: 0 nothing found, 1 something found (also with --fix, so a pre-commit hook
stops the commit and the fixed files can be reviewed and added), 2 bad usage.
Recordings are checked exchange by exchange with the same rules `devbox record` and
`devbox import` apply (the default rules plus the profile's [redact] with --profile); other
files line by line with the value rules (JavaScript, CSS, HTML and Markdown files with the
format rules only, as bodies of those types are).
"""

_SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", ".trash"})
_CODE_SUFFIXES = (".js", ".mjs", ".cjs", ".css", ".html", ".htm", ".md", ".ts", ".map")
_MAX_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Finding:
    path: Path
    line: int  # 0: somewhere in the file (found in a decoded body)
    rule: str
    preview: str


def register(sub: Any) -> None:
    p = sub.add_parser(
        "scan",
        help="find secrets in recordings or any folder; --fix redacts them in place",
        description="Scan PATH (default: mocks/) for secrets with the redaction rules: "
        "file, line, rule and a masked preview of each. Exit 1 when something is found.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path", nargs="?", default="mocks", metavar="PATH", help="a file or folder (default: mocks)"
    )
    p.add_argument(
        "--fix", action="store_true", help="redact what is found, rewriting each file atomically"
    )
    p.add_argument(
        "--profile", metavar="PROFILE", help="apply this profile's [redact] rules as well"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per finding")
    p.set_defaults(func=run_scan)


def mask(secret: str) -> str:
    """Enough to recognise a finding, never enough to use it."""
    s = secret.strip().replace("\n", " ")
    if len(s) <= 8:
        return "*" * len(s)
    return f"{s[:4]}…{'*' * 4} ({len(s)} chars)"


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    out = []
    for p in sorted(root.rglob("*")):
        if any(part in _SKIP_DIRS for part in p.relative_to(root).parts[:-1]):
            continue
        if p.is_file() and not p.is_symlink() and p.stat().st_size <= _MAX_BYTES:
            out.append(p)
    return out


def _line_of(raw: str, secret: str) -> int:
    for form in (secret, json.dumps(secret)[1:-1]):
        at = raw.find(form)
        if at >= 0:
            return raw.count("\n", 0, at) + 1
    return 0


def scan_file(path: Path, redactor: Redactor, fix: bool) -> list[Finding]:
    from devbox.core.recording import HEADER_KEY, decode, encode
    from devbox.errors import RecordingError
    from devbox.store import atomic_write_bytes

    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        return []
    raw = data.decode("utf-8", "replace")
    hits: list[tuple[str, str]] = []
    redactor.on_hit = lambda rule, kind, secret: hits.append((kind, secret))
    try:
        if raw.lstrip().startswith("{") and HEADER_KEY in raw[:200]:
            try:
                decoded = decode(data, str(path))
            except RecordingError:
                decoded = None
            if decoded is not None:
                new = redactor.exchanges(decoded.exchanges)
                if hits and fix:
                    atomic_write_bytes(path, encode(decoded.header, new))
                return [Finding(path, _line_of(raw, s), k, mask(s)) for k, s in hits]
        code = path.suffix.lower() in _CODE_SUFFIXES
        red = redactor.code(raw) if code else redactor.text(raw)
    finally:
        redactor.on_hit = None
    if hits and fix and red != raw:
        atomic_write_bytes(path, red.encode("utf-8"))
    return [Finding(path, _line_of(raw, s), k, mask(s)) for k, s in hits]


def run_scan(args: argparse.Namespace) -> int:
    from devbox.core.redact import Redactor

    rules = None
    if args.profile:
        from devbox.core.profile import load_profile

        rules = load_profile(args.profile).redact
    redactor = Redactor(rules)
    root = Path(args.path)
    if not root.exists():
        raise NotFoundError(f"{root}: no such file or folder")
    findings: list[Finding] = []
    files = _files(root)
    for f in files:
        findings.extend(scan_file(f, redactor, args.fix))
    from rich.markup import escape

    con = output.console()
    for fd in findings:
        where = f"{fd.path}:{fd.line}" if fd.line else f"{fd.path}"
        if args.json:
            sys.stdout.write(
                json.dumps(
                    {
                        "file": str(fd.path),
                        "line": fd.line or None,
                        "rule": fd.rule,
                        "preview": fd.preview,
                    }
                )
                + "\n"
            )
        else:
            con.print(
                f"{escape(where)}: [bold]{fd.rule}[/bold] {escape(fd.preview)}",
                markup=True,
                soft_wrap=True,
                highlight=False,
            )
    if not args.json:
        n_files = len({fd.path for fd in findings})
        verb = "redacted" if args.fix else "found"
        output.info(f"{len(findings)} secret(s) {verb} in {n_files} of {len(files)} file(s)")
    return 1 if findings else 0

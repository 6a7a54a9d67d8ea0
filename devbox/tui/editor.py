"""Which command opens a file at a line in the user's editor ($VISUAL, $EDITOR, vi)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

# editors that take "+LINE FILE"
_PLUS_LINE = {
    "vi",
    "vim",
    "nvim",
    "view",
    "nano",
    "emacs",
    "emacsclient",
    "micro",
    "kak",
    "joe",
    "mg",
    "ne",
    "jed",
    "pico",
}
# editors that take "FILE:LINE"
_COLON_LINE = {"subl", "hx", "helix", "zed"}
# editors that take "-g FILE:LINE"
_GOTO_LINE = {"code", "codium", "code-insiders", "cursor"}


def editor_command(path: Path, line: int | None, env: Mapping[str, str]) -> list[str]:
    raw = env.get("VISUAL") or env.get("EDITOR") or "vi"
    argv = shlex.split(raw) or ["vi"]
    name = Path(argv[0]).name
    if line:
        if name in _PLUS_LINE:
            return [*argv, f"+{line}", str(path)]
        if name in _COLON_LINE:
            return [*argv, f"{path}:{line}"]
        if name in _GOTO_LINE:
            return [*argv, "-g", f"{path}:{line}"]
    return [*argv, str(path)]

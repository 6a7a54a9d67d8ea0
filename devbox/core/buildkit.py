"""Dockerfile syntax that only BuildKit builds.

devbox builds images through the engine's API with the classic builder (the Docker SDK
speaks no BuildKit session). The classic builder refuses, checked on Docker 20.10:

* heredocs (``RUN <<EOF`` ... ``EOF``, ``COPY <<EOF /f``): the whole Dockerfile fails to
  parse ("unknown instruction"), whichever stage is the target;
* ``RUN --mount`` / ``--network`` / ``--security``, ``COPY``/``ADD`` ``--link``,
  ``--chmod``, ``--parents``, ``--exclude``, ``ADD --checksum`` / ``--keep-git-dir``.

``buildkit_only(text)`` lists each use, with its line, so ``devbox init`` can choose the
process runtime for such a project and the Docker runtime can refuse it before building,
naming the line, instead of failing on the engine's terse parse error.

Pure: text in, findings out.
"""

from __future__ import annotations

import re

_FLAGS = {
    "RUN": ("--mount", "--network", "--security"),
    "COPY": ("--link", "--chmod", "--parents", "--exclude"),
    "ADD": ("--link", "--chmod", "--parents", "--exclude", "--checksum", "--keep-git-dir"),
}
# <<EOF, <<-EOF, <<"EOF", << 'EOF'; not the here-string <<<
_HEREDOC = re.compile(r"(?<!<)<<-?\s*([\"']?)[A-Za-z_][A-Za-z0-9_]*\1(?![A-Za-z0-9_<])")
_ESCAPE = re.compile(r"^#\s*escape\s*=\s*([\\`])\s*$", re.IGNORECASE)


def buildkit_only(text: str) -> tuple[str, ...]:
    """``("line 7: RUN --mount", "line 17: a heredoc (RUN <<EOF)")``: every use of
    syntax the classic builder refuses, in order; () when there is none."""
    lines = text.splitlines()
    escape = _escape(lines)
    found: list[str] = []
    heredoc_end: str | None = None
    start, buf = 0, ""
    for n, raw in enumerate(lines, start=1):
        s = raw.strip()
        if heredoc_end is not None:  # inside a heredoc's body: not instructions
            if s == heredoc_end:
                heredoc_end = None
            continue
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and (not s or s.startswith("#")):
            continue  # blank and comment lines inside a continuation, as Docker does
        if not buf:
            start = n
        if s.endswith(escape):
            buf += s[: -len(escape)] + " "
            continue
        line, buf = buf + s, ""
        word, _, rest = line.partition(" ")
        instr = word.upper()
        if instr not in _FLAGS:
            continue
        found += _flags(instr, rest, start)
        m = _HEREDOC.search(rest)
        if m:
            found.append(f"line {start}: a heredoc ({instr} {m.group(0).replace(' ', '')})")
            heredoc_end = re.sub(r"^<<-?\s*[\"']?|[\"']$", "", m.group(0))
    return tuple(found)


def _escape(lines: list[str]) -> str:
    """The escape character: the ``# escape=`` directive before the first instruction."""
    escape = "\\"
    for raw in lines:
        m = _ESCAPE.match(raw.strip())
        if m:
            escape = m.group(1)
        if raw.strip() and not raw.strip().startswith("#"):
            break
    return escape


def _flags(instr: str, rest: str, line: int) -> list[str]:
    found = []
    for token in rest.split():
        if not token.startswith("--"):
            break
        flag = token.split("=", 1)[0].lower()
        if flag in _FLAGS[instr]:
            found.append(f"line {line}: {instr} {flag}")
    return found

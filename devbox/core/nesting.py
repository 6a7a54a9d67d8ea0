"""How deep a TOML or JSON text nests, found without parsing it.

Python's ``tomllib`` and ``json`` recurse once per nested array, inline table or
object: a value nested a few hundred deep raises ``RecursionError`` (and a deeper
one costs a stack's worth of frames first). Loaders call ``too_deep`` before parsing,
so such a file becomes one clean error naming its line. The scan is linear, skips
strings and comments, and is deliberately loose about everything else: it only has
to find brackets that are values.
"""

from __future__ import annotations

# deeper than any profile or recording devbox writes; far below the recursion limit
MAX_DEPTH = 64


def too_deep_toml(text: str, limit: int = MAX_DEPTH) -> int | None:
    """The line on which a TOML value first nests deeper than ``limit``, or None."""
    return _scan(text, limit, toml=True)


def too_deep_json(text: str, limit: int = MAX_DEPTH) -> int | None:
    """The line on which JSON first nests deeper than ``limit``, or None."""
    return _scan(text, limit, toml=False)


def _scan(text: str, limit: int, *, toml: bool) -> int | None:
    depth = 0
    line = 1
    i, n = 0, len(text)
    quote = ""  # the open string's delimiter: ", ', \"\"\" or '''
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        if quote:
            if ch == "\\" and quote in ('"', '"""'):
                if i + 1 < n and text[i + 1] == "\n":
                    line += 1
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
            if ch == "\n" and len(quote) == 1:
                quote = ""  # a one-line string does not span lines: let the parser say so
            i += 1
            continue
        if ch == '"' or (toml and ch == "'"):
            quote = text[i : i + 3] if text.startswith(ch * 3, i) and toml else ch
            i += len(quote)
            continue
        if toml and ch == "#":
            end = text.find("\n", i)
            i = n if end == -1 else end
            continue
        if ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def closes_object(text: str) -> bool:
    """Whether the object starting ``text`` has its closing brace (strings respected)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return True
    return False

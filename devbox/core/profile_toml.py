"""Reading a profile's TOML with positions: field paths to line numbers, typed getters.

TOML parsers do not report positions, so ``LineIndex`` scans the text once for
table headers and keys; that is enough to point at the offending line, and ``Ctx``
turns every validation failure into a ``ConfigError`` naming file, line and field.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from devbox.errors import ConfigError

ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LineIndex:
    """Maps dotted field paths (``dependency[1].match.ignore_query``) to line numbers."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+(?:\s*\.\s*[A-Za-z0-9_\-\"']+)*)\s*=")
    _INLINE_KEY = re.compile(r"([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        prefix = ""
        for n, raw in enumerate(text.splitlines(), start=1):
            m = self._HEADER.match(raw)
            if m:
                name = m.group(2).replace('"', "").replace("'", "").replace(" ", "")
                if m.group(1) == "[[":
                    i = counters.get(name, 0)
                    counters[name] = i + 1
                    prefix = f"{name}[{i}]"
                else:
                    # [dependency.match] after [[dependency]] belongs to the last element
                    head, _, rest = name.partition(".")
                    if head in counters and rest:
                        prefix = f"{head}[{counters[head] - 1}].{rest}"
                    else:
                        prefix = name
                self.lines.setdefault(prefix, n)
                continue
            m = self._KEY.match(raw)
            if m:
                key = m.group(1).replace('"', "").replace("'", "").replace(" ", "")
                full = f"{prefix}.{key}" if prefix else key
                self.lines.setdefault(full, n)
                rest = raw[m.end() :]
                if rest.lstrip().startswith("{"):
                    for km in self._INLINE_KEY.finditer(rest):
                        self.lines.setdefault(f"{full}.{km.group(1)}", n)

    def line(self, dotted: str) -> int | None:
        probe = dotted
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", probe)
            if parent == probe:
                # a top-level name the file does not contain (a missing [service])
                return None
            probe = parent
        return None


# ---------------------------------------------------------------- validation helpers


class Ctx:
    def __init__(self, file: str, index: LineIndex) -> None:
        self.file = file
        self.index = index

    def error(self, fieldpath: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, file=self.file, line=self.index.line(fieldpath), field=fieldpath, hint=hint
        )

    def table(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, f"expected a table, got {tname(value)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(allowed)
                raise self.error(f"{where}.{key}" if where else key, f"unknown key {key!r}", hint)
        return value

    def str_(self, t: dict[str, Any], key: str, where: str, default: str | None = None) -> Any:
        v = t.get(key, default)
        if v is not None and not isinstance(v, str):
            raise self.error(join(where, key), f"expected a string, got {tname(v)}")
        return v

    def choice(
        self, t: dict[str, Any], key: str, where: str, choices: tuple[str, ...], default: str
    ) -> str:
        v = self.str_(t, key, where, default)
        if v not in choices:
            raise self.error(join(where, key), f"expected one of {', '.join(choices)}, got {v!r}")
        return str(v)

    def int_(
        self, t: dict[str, Any], key: str, where: str, default: int | None, lo: int, hi: int
    ) -> Any:
        v = t.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(join(where, key), f"expected an integer, got {tname(v)}")
        if not lo <= v <= hi:
            raise self.error(join(where, key), f"expected {lo}..{hi}, got {v}")
        return v

    def num(
        self, t: dict[str, Any], key: str, where: str, default: float, lo: float, hi: float
    ) -> float:
        v = t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.error(join(where, key), f"expected a number, got {tname(v)}")
        if not lo <= v <= hi:
            raise self.error(join(where, key), f"expected {lo:g}..{hi:g}, got {v}")
        return float(v)

    def bool_(self, t: dict[str, Any], key: str, where: str, default: bool) -> bool:
        v = t.get(key, default)
        if not isinstance(v, bool):
            raise self.error(join(where, key), f"expected true or false, got {tname(v)}")
        return v

    def strs(self, t: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
        v = t.get(key, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error(join(where, key), "expected a list of strings")
        return tuple(v)

    def env(self, t: dict[str, Any], key: str, where: str) -> dict[str, str]:
        v = t.get(key, {})
        if not isinstance(v, dict):
            raise self.error(join(where, key), f"expected a table of NAME = value, got {tname(v)}")
        out = {}
        for k, val in v.items():
            if not ENV_RE.match(k):
                raise self.error(join(where, f"{key}.{k}"), f"not a valid variable name: {k!r}")
            if isinstance(val, bool) or not isinstance(val, str | int | float):
                raise self.error(join(where, f"{key}.{k}"), "expected a string or number")
            out[k] = str(val)
        return out


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def tname(v: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(v), type(v).__name__)

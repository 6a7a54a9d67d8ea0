"""Adding learned ignore rules to a profile without disturbing what the user wrote.

tomlkit edits the document in place: comments, blank lines, key order and the
style of the existing ``ignore`` array survive. The new text is validated with
the real profile parser before it replaces the file (atomically), so a write can
never leave a profile that ``devbox`` refuses to load.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Array, Table

from devbox.core.profile import parse_profile
from devbox.errors import ConfigError
from devbox.store import atomic_write_bytes


def add_ignore_rules(
    text: str, rules: Sequence[str], *, comment: str | None = None
) -> tuple[str, list[str]]:
    """Return the new profile text and the rules actually added (new ones only)."""
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
    replay = doc.get("replay")
    if replay is None:
        replay = tomlkit.table()
        doc["replay"] = replay
    if not isinstance(replay, Table | dict):
        raise ConfigError("[replay] is not a table", field="replay")
    ignore = replay.get("ignore")
    if ignore is None:
        ignore = tomlkit.array()
        ignore.multiline(True)
        replay["ignore"] = ignore
    elif isinstance(ignore, str):
        arr = tomlkit.array()
        arr.append(ignore)
        replay["ignore"] = arr
        ignore = arr
    if not isinstance(ignore, Array | list):
        raise ConfigError("expected a list of strings", field="replay.ignore")
    present = {str(x) for x in ignore}
    added = []
    for rule in rules:
        if rule in present:
            continue
        ignore.append(rule)
        present.add(rule)
        added.append(rule)
    if added and comment and isinstance(ignore, Array) and len(ignore) == len(added):
        ignore.comment(comment)
    return tomlkit.dumps(doc), added


def write_ignore_rules(
    profile_path: Path, rules: Sequence[str], *, comment: str | None = None
) -> list[str]:
    """Add ``rules`` to ``[replay] ignore`` of the profile file; returns those added."""
    try:
        text = profile_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(profile_path)) from None
    new_text, added = add_ignore_rules(text, rules, comment=comment)
    if not added:
        return []
    # the parser is the judge: never write a profile devbox would refuse
    parse_profile(new_text, profile_path)
    atomic_write_bytes(profile_path, new_text.encode("utf-8"))
    return added

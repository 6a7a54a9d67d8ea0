"""What a view needs from the engine: the ``EngineDriver`` protocol.

The Textual dashboard (``devbox.tui``) is written against this protocol only, so
it can be driven by the real engine, by a replay of a recorded session, or by a
scripted fake in tests. The engine implements it; nothing here imports a UI.

Threading contract
------------------
* ``subscribe`` callbacks may be called from any thread, at any rate; they never
  block (the dashboard appends to a queue and renders in batches).
* Every other method may block (Docker calls, builds, a whole replay): the
  dashboard always calls them from a worker thread, never from its event loop,
  and may call them concurrently with ``start()`` still running. The engine
  serialises what must be serialised.
* ``stop()`` is idempotent and, called while ``start()`` runs, makes it return
  (or raise) promptly: quitting during a long build must not hang.
* Failures the user can act on are raised as ``devbox.errors.DevboxError``
  (shown with their hint; the dashboard keeps running). Trouble the engine
  survives on its own (a crash, a failed rebuild, a profile made invalid by an
  edit) arrives as a ``Problem`` event instead.

The second half of this module holds the two file edits behind ``mark_noise`` and
``accept_response``, written once so that the engine and the test fakes share them:
a rule lands in the profile with its comments and layout kept, and a recorded
response is replaced atomically, the rest of the recording untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from devbox.core.events import Event
from devbox.core.model import Response
from devbox.core.profile import Profile, parse_profile
from devbox.core.recording import RecordingHeader, encode
from devbox.errors import ConfigError, NotFoundError, UsageError

MOCK_MODES = ("replay", "passthrough", "record")


class EngineDriver(Protocol):
    """The engine as the dashboard (and any other interactive view) drives it."""

    @property
    def profile(self) -> Profile:
        """The profile as currently loaded (after any reload)."""
        ...

    @property
    def watching(self) -> bool:
        """Whether file changes currently trigger the edit loop."""
        ...

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Deliver every later event to ``callback`` (from any thread)."""
        ...

    def start(self) -> None:
        """Blocking: mocks up, build, start, wait ready, first replay, then watch.

        Returns once the first iteration is done; the loop keeps running in the
        engine's own threads until ``stop()``."""
        ...

    def stop(self) -> None:
        """Tear down everything this session started. Idempotent."""
        ...

    def detach(self) -> str:
        """Quit keeping the sandbox running: devbox exits, the service and its mocks
        stay (``devbox down`` removes them). Returns a line saying what was kept;
        raises DevboxError (after tearing down) when it cannot be kept."""
        ...

    def replay_now(self) -> None:
        """Run a replay iteration now (action "replay")."""
        ...

    def rebuild(self) -> None:
        """Rebuild the image / restart the process, then replay (action "rebuild")."""
        ...

    def restart(self) -> None:
        """Restart the service without rebuilding, then replay (action "sync+restart")."""
        ...

    def set_watching(self, on: bool) -> None:
        """Pause (False) or resume (True) reacting to file changes."""
        ...

    def set_mock_mode(self, dependency: str, mode: str) -> None:
        """Switch one dependency's mock: "replay" | "passthrough" | "record".

        Raises NotFoundError for an unknown dependency, UsageError for a bad mode."""
        ...

    def mark_noise(self, rule: str) -> None:
        """Add ``rule`` ("$.a.b", "$.items[*].id" or "header:name") to the profile's
        ``[replay] ignore`` (comments and layout kept: ``add_ignore_rule``), then
        reload the profile so the next diff applies it."""
        ...

    def accept_response(self, exchange_id: str, response: Response) -> None:
        """Make ``response`` (redacted by the engine first) the recorded response of
        the inbound exchange ``exchange_id`` on disk (``replace_recorded_response``)."""
        ...

    def recording_path(self, exchange_id: str) -> Path | None:
        """The recording file that holds inbound exchange ``exchange_id``, if any."""
        ...


# ---------------------------------------------------------------- shared file edits

_RULE_RE = re.compile(r"^(\$(\.[A-Za-z0-9_\-]+|\[\d+\]|\[\*\]|\.\*)*|header:[A-Za-z0-9_\-]+)$")


def check_ignore_rule(rule: str) -> str:
    """The rule, normalised (header names lower-cased); UsageError if malformed."""
    rule = rule.strip()
    if rule.lower().startswith("header:"):
        rule = "header:" + rule[len("header:") :].strip().lower()
    if not _RULE_RE.match(rule) or rule == "$":
        raise UsageError(
            f"not a noise rule: {rule!r}",
            hint='write a JSON path such as "$.created_at", "$.items[*].id", or "header:date"',
        )
    return rule


def add_ignore_rule(profile_path: Path, rule: str) -> bool:
    """Append ``rule`` to ``[replay] ignore`` in the profile file, keeping every
    comment and the layout. False when it was already there.

    The new text is validated as a whole profile before it replaces the file
    (atomically), so a failed edit never leaves a broken profile behind."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    from devbox.store import atomic_write_bytes

    rule = check_ignore_rule(rule)
    text = profile_path.read_text(encoding="utf-8")
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(profile_path)) from None
    replay = doc.get("replay")
    if replay is None:
        replay = tomlkit.table()
        doc.add("replay", replay)
    if not isinstance(replay, dict):
        raise ConfigError("expected a table", file=str(profile_path), field="replay")
    ignore = replay.get("ignore")
    if ignore is None:
        ignore = tomlkit.array()
        replay["ignore"] = ignore
    elif isinstance(ignore, str):
        # a single string is allowed by the loader; widen it to a list
        single = ignore
        ignore = tomlkit.array()
        ignore.append(single)
        replay["ignore"] = ignore
    if not isinstance(ignore, list):
        raise ConfigError(
            "expected a list of strings", file=str(profile_path), field="replay.ignore"
        )
    if rule in [str(x) for x in ignore]:
        return False
    ignore.append(rule)
    new_text = tomlkit.dumps(doc)
    parse_profile(new_text, profile_path)  # raises ConfigError naming the line
    atomic_write_bytes(profile_path, new_text.encode("utf-8"))
    return True


def find_exchange(
    directory: Path, exchange_id: str, *, include_partial: bool = False
) -> tuple[Path, int] | None:
    """(recording file, line of its ``"id"``) for an exchange under ``directory``.

    A text scan, not a parse: it answers at once even for large recordings."""
    from devbox.store import recording_files

    needle = re.compile(r'^\s*"id":\s*' + re.escape(_json_str(exchange_id)) + r"\s*,?\s*$")
    for path in recording_files(directory, include_partial=include_partial):
        try:
            with path.open(encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, start=1):
                    if needle.match(line):
                        return path, n
        except OSError:
            continue
    return None


def _json_str(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


def replace_recorded_response(path: Path, exchange_id: str, response: Response) -> None:
    """Rewrite the recording at ``path`` with ``exchange_id``'s response replaced.

    Every other exchange and the header (source, direction, origin, created_at)
    are kept; the file is replaced atomically. The caller redacts ``response``."""
    from dataclasses import replace

    from devbox.store import atomic_write_bytes, load_file

    loaded = load_file(path)
    exchanges = list(loaded.decoded.exchanges)
    for i, ex in enumerate(exchanges):
        if ex.id == exchange_id:
            exchanges[i] = replace(ex, response=response, error=None, response_truncated=False)
            break
    else:
        raise NotFoundError(f"{path}: no exchange with id {exchange_id!r}")
    old = loaded.decoded.header
    header = RecordingHeader(
        source=old.source, direction=old.direction, created_at=old.created_at, origin=old.origin
    )
    atomic_write_bytes(path, encode(header, exchanges))

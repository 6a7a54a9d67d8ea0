"""Values a client makes up afresh on every run, told apart so a command that carries one
still finds its recording.

redis-py's ``Lock`` takes a lock with ``SET name <uuid1 hex> NX PX ms`` and frees it with
``EVALSHA <sha> 1 name <that token>``; a session store writes ``session:<uuid4 hex>``.
The token is new on each run, so the exact match key never equals the recording's and
every such command missed: the service's lock failed, its sessions were refused. When
the exact key misses, the mock looks again with each generated value replaced by one
marker (``shape``): a UUID, a run of 16 or more hexadecimal digits, an opaque random
token (``looks_random``), or the placeholder redaction made of one (its hash differs
with the secret). Everything else must still be equal: the command, its other
arguments, the rest of a key around the token (``session:`` stays). A script's SHA1
(``EVALSHA``'s first argument) names the script and stays exact. Pure.
"""

from __future__ import annotations

import re
from typing import Any

from devbox.core.secret_formats import looks_random

MARK = b"\x00generated\x00"
_RUNS = re.compile(
    rb"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"  # a UUID with its dashes
    rb"|[0-9a-fA-F]{16,}"  # a UUID's hex, a random id, a snowflake id
    rb"|<redacted:[a-z0-9_-]+:[0-9a-f]{6,}>"  # a placeholder: its hash is the secret's
)
# commands whose first argument names a script (by SHA1) or a function: never generated
_NAMED_FIRST = frozenset({b"EVALSHA", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"})


def shape(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """``key`` (database, command, arguments; for EXEC, its queued commands) with each
    generated value replaced by ``MARK``; the same object when it holds none."""
    db, name, *args = key
    if name == b"EXEC" and args and isinstance(args[0], tuple):
        queued = tuple(_command(cmd) for cmd in args[0])
        return key if queued == args[0] else (db, name, queued)
    out = _command((name, *args))
    return key if out == (name, *args) else (db, *out)


def _command(cmd: tuple[bytes, ...]) -> tuple[bytes, ...]:
    name = cmd[0].upper()
    first = 2 if name in _NAMED_FIRST else 1
    return (*cmd[:first], *(_arg(a) for a in cmd[first:]))


def _arg(value: bytes) -> bytes:
    if 20 <= len(value) <= 512 and value.isascii() and looks_random(value.decode("ascii")):
        return MARK
    return _RUNS.sub(MARK, value) if len(value) >= 16 else value

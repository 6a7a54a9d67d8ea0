"""Values a client makes up afresh on every run, told apart so a call that carries one
still finds its recording (the HTTP, Redis and Postgres mocks).

redis-py's ``Lock`` takes a lock with ``SET name <uuid1 hex> NX PX ms`` and frees it with
``EVALSHA <sha> 1 name <that token>``; a session store writes ``session:<uuid4 hex>``; an
ORM inserts a row whose key is a ``uuid4`` made by the client; a payment call carries a
fresh ``idempotency_key``. The value is new on each
run, so the exact match key never equals the recording's and every such call missed:
the service's lock failed, its sessions and inserts were refused. When the exact key
misses, a mock looks again with each generated value replaced by one marker: a UUID, a
run of 16 or more hexadecimal digits, an opaque random token (``looks_random``), or the
placeholder redaction made of such a token (its hash differs with the token). Everything
else must still be equal: the command or SQL, the other arguments, the rest of a value
around the token (``session:`` stays). A Redis script's SHA1 (``EVALSHA``'s first argument)
names the script and stays exact. Pure.
"""

from __future__ import annotations

import re

from devbox.core.secret_formats import looks_random

MARK = b"\x00generated\x00"
TEXT_MARK = MARK.decode("ascii")
_RUNS = re.compile(
    rb"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"  # a UUID with its dashes
    rb"|[0-9a-fA-F]{16,}"  # a UUID's hex, a random id, a snowflake id
    # the placeholder of an opaque random token (its hash is the token's). Not that of
    # an e-mail or a card: those are data, and another one is another customer
    rb"|<redacted:token:[0-9a-f]{6,}>"
)


def mark(value: bytes) -> bytes:
    """One value with its generated parts replaced by ``MARK`` (all of it when it is an
    opaque random token); the same object when it holds none."""
    if 20 <= len(value) <= 512 and value.isascii() and looks_random(value.decode("ascii")):
        return MARK
    return _RUNS.sub(MARK, value) if len(value) >= 16 else value


def text(value: str) -> str:
    """One text value with its generated parts marked (``mark`` for text)."""
    if len(value) < 16 or not value.isascii():
        return value
    return mark(value.encode("ascii")).decode("ascii")


def values(items: tuple[str, ...]) -> tuple[str, ...]:
    """Several values (a query's parameters), the same object when none is generated."""
    out = tuple(text(v) for v in items)
    return items if out == items else out


def both_generated(recorded: str | None, got: str | None) -> bool:
    """Whether two values differ only in generated parts (a fresh ``uuid4`` each)."""
    if recorded is None or got is None:
        return False
    shape = text(recorded)
    return shape is not recorded and shape != recorded and shape == text(got)

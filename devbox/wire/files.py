"""Recording files of the wire kinds on disk, shared by the mock fleet (reading), the
recording relays (writing) and ``devbox traffic`` (reading): one directory per
dependency, JSON-stream files (``devbox.wire.objects``) whose header names the kind.

Writing is append-only with one ``write()`` per stored object, so a killed recorder
leaves a file that loads with every object whose append returned; every object is
redacted (``value_redactor``, the one place wire kinds get their redaction from)
before its bytes exist anywhere but in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.errors import NotFoundError, RecordingError
from devbox.store import recording_files
from devbox.wire import objects
from devbox.wire.contract import CODE_FIELD, CREDENTIAL_FIELD, MockOptions

if TYPE_CHECKING:
    from devbox.core.profile import RedactRules

Stored = tuple[str, int, Mapping[str, Any]]


def file_kind(path: Path) -> str:
    """The kind a recording file holds (``http`` when its header names none)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return "http"
    return objects.kind_of(head)


def read_file(path: Path) -> objects.ObjectsFile:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such recording file") from None
    except OSError as exc:
        raise RecordingError(f"cannot read: {exc.strerror}", file=str(path)) from None
    return objects.decode(data, str(path))


def read_stored(directory: Path, kind: str, *, include_partial: bool = False) -> list[Stored]:
    """Every stored object of the recordings in ``directory``, as (file, line, object),
    files in name order. A file of another kind is an error naming it."""
    out: list[Stored] = []
    for path in recording_files(directory, include_partial=include_partial):
        f = read_file(path)
        if f.kind != kind:
            raise RecordingError(
                f"holds {f.kind} recordings, but this dependency is of kind {kind}",
                file=str(path),
                line=1,
                field="kind",
                hint="move the file to the right dependency's directory",
            )
        out.extend((str(path), line, obj) for line, obj in f.objects)
    return out


def redactor_of(options: MockOptions) -> Callable[[str, str], str]:
    """The redaction a mock applies to live values to look them up again: the profile's
    (``MockOptions.redact_value``), else the default rules, as ``devbox record`` writes
    without a profile. A mock given none redacted nothing: a JWT a service signs afresh,
    redacted in the recording, then never bound to the live one."""
    return options.redact_value or default_redactor()


@lru_cache(maxsize=1)
def default_redactor() -> Callable[[str, str], str]:
    """``value_redactor`` of the default rules, made once (a Redactor caches)."""
    return value_redactor(None)


def value_redactor(rules: RedactRules | None) -> Callable[[str, str], str]:
    """``redact_value(field_name, value) -> value`` for the kinds' ``redact`` (credentials by
    field name, then the text rules: tokens, e-mails, cards, the profile's patterns; a
    random token under a session's name)."""
    from devbox.core import serialized
    from devbox.core.generated import is_password_hash, runs
    from devbox.core.redact import PLACEHOLDER_RE, Redactor
    from devbox.core.redact_names import secret_named, session_named
    from devbox.core.secret_formats import random_enough

    def is_generated(value: str) -> bool:  # a session id made as a uuid, or PHP's
        raw = value.encode("utf-8", "surrogatepass")
        return runs(raw) == [raw]

    redactor = Redactor(rules)
    # ``[redact] disable = ["secret-field"]`` turns the by-name rule off here as for HTTP
    # (it was applied whatever the profile said)
    name_rule = "secret-field" in redactor.enabled

    def redact_value(name: str, value: str) -> str:
        if not value or PLACEHOLDER_RE.fullmatch(value):
            return value
        if name == CREDENTIAL_FIELD:
            return redactor.placeholder("secret", value)
        if redactor.keeps(name):
            return value
        if name == CODE_FIELD:
            return redactor.code(value)
        if name_rule and secret_named(name, value):
            return redactor.placeholder("secret", value)
        if serialized.may_be_text(value):
            # PHP's serialize() or session, Ruby's Marshal: each string by its key, and
            # each length prefix made right (text rules alone left them stale)
            raw = serialized.mapped(value.encode("utf-8", "surrogatepass"), leaf, name)
            try:
                if raw is not None:
                    return raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                pass  # a Marshal length past 127 is no UTF-8: the text rules, as before
        red = redactor.text(value)
        if red == value and name_rule and is_password_hash(value):
            # a secret by what it is, as by its name: with the by-name rule off (stop 37's
            # way to keep test users' hashes) it is kept too
            return redactor.placeholder("secret", value)
        if red == value and session_named(name) and (random_enough(value) or is_generated(value)):
            # a session id under a neutral name (``sid``, a ``sess:<id>`` key's part) went
            # to disk whole; any random value is not taken so here: a wire value is
            # stored data far more often than an HTTP one (ids, flags, payloads)
            return redactor.placeholder("token", value)
        return red

    leaf = serialized.text_leaf(redact_value)
    return redact_value


class ObjectWriter:
    """Append-only writer of one recording file of a wire kind."""

    def __init__(
        self, path: Path, kind: str, source: str, *, fsync: bool = False, **header: Any
    ) -> None:
        self.path = path
        self.count = 0
        self.bytes_written = 0
        self._fsync = fsync
        path.parent.mkdir(parents=True, exist_ok=True)
        exists = path.exists() and path.stat().st_size > 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if not exists:
            created = datetime.now(UTC).isoformat(timespec="seconds")
            self._write(objects.header_text(kind, source, created, **header))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.bytes_written += len(data)
        if self._fsync:
            os.fsync(self._fd)

    def append(self, obj: dict[str, Any]) -> None:
        self._write(objects.object_text(obj))
        self.count += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

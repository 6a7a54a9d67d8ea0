"""The one error hierarchy of devbox.

Every failure a user can cause or fix is a ``DevboxError``: it carries a one-line
message and an optional hint. The CLI and the TUI render them in one place each
(``devbox.cli.render`` / the TUI's notification), never as a traceback.
"""

from __future__ import annotations


class DevboxError(Exception):
    """Base of every error devbox reports to a user."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return self.message


class UsageError(DevboxError):
    """The user asked for something malformed (bad flag value, bad expression)."""

    exit_code = 2


class ConfigError(UsageError):
    """A file the user wrote or gave us is invalid; names file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.file = file
        self.line = line
        self.field = field

    def one_line(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        parts = [p for p in (where, self.field) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class RecordingError(ConfigError):
    """A recording file on disk cannot be read (bad JSON, unknown format version)."""


class NotFoundError(UsageError):
    """A named profile, recording or file does not exist."""


class EngineError(DevboxError):
    """Something outside devbox (Docker, a port, a process) failed."""


class DockerUnavailable(EngineError):
    """No Docker engine answers."""


class ServiceNotReady(EngineError):
    """The service crashed or did not become ready in time."""

    def __init__(self, message: str, hint: str | None = None, logs: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint)
        self.logs = logs

"""The Docker engine's build output, read once for every image devbox builds.

``APIClient.build(..., decode=True)`` yields JSON chunks: ``stream`` (or ``status``)
text that may end mid-line, ``aux`` carrying the built image's ID, and
``error``/``errorDetail`` when a step fails. ``BuildStream`` folds them into whole
output lines (handed to ``on_line`` as they complete), the errors and the image ID.
Pure: the caller owns the API call; the service's image and the mock image both
read their streams here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


class BuildStream:
    """Lines, errors and the image ID of one build's decoded stream."""

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.on_line = on_line
        self.errors: list[str] = []
        self.image_id: str | None = None
        self._pending = ""

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.errors.append(str(detail.get("message") or chunk.get("error")).strip())
            return
        aux = chunk.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            self.image_id = str(aux["ID"])
        text = chunk.get("stream") or chunk.get("status")
        if not text:
            return
        # a chunk may end in the middle of a line: hold the rest for the next one
        *lines, self._pending = (self._pending + str(text)).split("\n")
        for line in lines:
            self._line(line)

    def read(self, chunks: Iterable[Mapping[str, Any]]) -> BuildStream:
        """Feed every chunk, then the last unterminated line."""
        for chunk in chunks:
            self.feed(chunk)
        self.close()
        return self

    def close(self) -> None:
        pending, self._pending = self._pending, ""
        self._line(pending)

    @property
    def error(self) -> str | None:
        """The last error the engine reported (the one that failed the build)."""
        return self.errors[-1] if self.errors else None

    def _line(self, line: str) -> None:
        line = line.rstrip()
        if line and self.on_line is not None:
            self.on_line(line)

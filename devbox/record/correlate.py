"""Which inbound request was the service serving when it called a dependency?

Two ways to know, in order of trust:

1. A correlation header the profile names (``[record] correlation_header``):
   the inbound request carried it and the service copied it onto its outbound
   call. Works under any concurrency.
2. Exactly one inbound request is in flight: the outbound call must be for it.

Otherwise the parent is unknown (None): recording it wrongly would make replay
compare an outbound call against the wrong inbound request, which is worse
than not linking it at all. ``ambiguous`` counts those calls for the summary.
"""

from __future__ import annotations

from collections.abc import Iterable


class Correlator:
    """In-flight inbound exchanges. Used from the proxy's single event-loop thread."""

    __slots__ = ("_by_value", "_in_flight", "ambiguous", "header", "linked")

    def __init__(self, header: str | None = None) -> None:
        self.header = header.lower() if header else None
        self._in_flight: dict[str, str | None] = {}  # id -> correlation value
        self._by_value: dict[str, str] = {}
        self.ambiguous = 0
        self.linked = 0

    def _value(self, headers: Iterable[tuple[str, str]]) -> str | None:
        if self.header is None:
            return None
        for k, v in headers:
            if k.lower() == self.header:
                return v
        return None

    def begin(self, exchange_id: str, headers: Iterable[tuple[str, str]]) -> None:
        value = self._value(headers)
        self._in_flight[exchange_id] = value
        if value is not None:
            self._by_value[value] = exchange_id

    def end(self, exchange_id: str) -> None:
        value = self._in_flight.pop(exchange_id, None)
        if value is not None and self._by_value.get(value) == exchange_id:
            del self._by_value[value]

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def parent_for(self, headers: Iterable[tuple[str, str]]) -> str | None:
        value = self._value(headers)
        if value is not None:
            parent = self._by_value.get(value)
            if parent is not None:
                self.linked += 1
                return parent
        if len(self._in_flight) == 1:
            self.linked += 1
            return next(iter(self._in_flight))
        if self._in_flight:
            self.ambiguous += 1
        return None

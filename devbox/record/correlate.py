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

InFlight = tuple[tuple[str, str | None], ...]  # (inbound exchange id, correlation value)


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

    def snapshot(self) -> InFlight | None:
        """The inbound exchanges in flight now, for ``parent_among`` in the recording
        worker (None, the common case, when there are none)."""
        return tuple(self._in_flight.items()) if self._in_flight else None


def parent_among(
    in_flight: InFlight, header: str | None, headers: Iterable[tuple[str, str]]
) -> tuple[str | None, bool]:
    """``Correlator.parent_for`` over a snapshot: (the parent, whether it was ambiguous).
    ``header`` is the lowercased correlation header."""
    if header is not None:
        value = next((v for k, v in headers if k.lower() == header), None)
        if value is not None:
            # the latest inbound exchange carrying the value, as ``_by_value`` keeps it
            for xid, v in reversed(in_flight):
                if v == value:
                    return xid, False
    if len(in_flight) == 1:
        return in_flight[0][0], False
    return None, bool(in_flight)

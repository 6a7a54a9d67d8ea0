"""Groups of recorded exchanges with one signature, and the buckets of one route.

A group answers in recorded order and then repeats its last answer; with HTTP variants
(``devbox.core.http_semantics``) each variant keeps its own sequence. When the recording
links calls to the inbound request being served (``parent``, or the profile's
correlation header on the recorded call), a live call carrying that link is answered
from its own linked sequence, whatever order concurrent calls arrive in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from devbox.core.http_semantics import Variant, live_variants
from devbox.core.match_keys import Key

if TYPE_CHECKING:
    from devbox.core.match_explain import _Parts


class _Group:
    """Recorded exchanges with one signature; answers in recorded order."""

    __slots__ = (
        "_first_links",
        "bucket",
        "calls",
        "first",
        "key",
        "lcalls",
        "links",
        "parts",
        "positions",
        "variants",
        "vcalls",
    )

    def __init__(self, key: Key, first: int) -> None:
        self.key = key
        self.first = first
        self.positions = [first]
        self.calls = 0
        self.bucket: tuple[str, str] = (key[0], key[1])
        self.parts: _Parts | None = None  # for explanations; built on first need
        # positions per HTTP variant (304 per validator, 206 per Range, None: full
        # responses); None while every response of the group is a full one (the hot path)
        self.variants: dict[Variant, list[int]] | None = None
        self.vcalls: dict[Variant, int] = {}
        # link value (the parent inbound exchange's id, or the correlation header's value
        # on the recorded call) -> positions; None until a second exchange joins the group
        # (a group of one answers the same whichever request asks)
        self.links: dict[str, list[int]] | None = None
        self.lcalls: dict[str, int] = {}
        self._first_links: tuple[str, ...] = ()

    def add_links(self, pos: int, values: tuple[str, ...]) -> None:
        """Remember which inbound request the exchange at ``pos`` was made for."""
        if pos == self.first:
            self._first_links = values
            return
        if self.links is None:
            self.links = {}
            for v in self._first_links:
                self.links.setdefault(v, []).append(self.first)
        for v in values:
            self.links.setdefault(v, []).append(pos)

    def take_linked(self, value: str | None) -> tuple[int, int]:
        """Like ``take`` for a call made while serving the inbound request ``value`` names:
        that request's own recorded calls in order; ``take`` when the recording has none."""
        links = self.links
        if links is None or value is None:
            return self.take()
        ps = links.get(value)
        if not ps:
            return self.take()
        n = self.lcalls.get(value, 0)
        self.lcalls[value] = n + 1
        self.calls += 1
        return (ps[n] if n < len(ps) else ps[-1]), n + 1

    def add(self, pos: int, variant: Variant) -> None:
        self.positions.append(pos)
        if variant is None and self.variants is None:
            return
        if self.variants is None:
            self.variants = {None: self.positions[:-1]}
        self.variants.setdefault(variant, []).append(pos)

    def take(self) -> tuple[int, int]:
        """(position, call number), advancing the sequence."""
        n = self.calls
        self.calls = n + 1
        pos = self.positions[n] if n < len(self.positions) else self.positions[-1]
        return pos, n + 1

    def take_for(self, headers: Mapping[str, str]) -> tuple[int, int]:
        """Like ``take``, for a request with these (lower-case) headers: its own variant,
        else a full response; (-1, 0) when only other variants were recorded."""
        variants = self.variants
        if variants is None:
            return self.take()
        for v in live_variants(headers):
            ps = variants.get(v)
            if ps:
                n = self.vcalls.get(v, 0)
                self.vcalls[v] = n + 1
                self.calls += 1
                return (ps[n] if n < len(ps) else ps[-1]), n + 1
        return -1, 0


class _Bucket:
    """Groups of one (method, path), plus a lazily built inverted index of field values."""

    __slots__ = ("groups", "postings")

    def __init__(self) -> None:
        self.groups: list[_Group] = []
        self.postings: dict[tuple[str, str, str], list[int]] | None = None


__all__ = ["_Bucket", "_Group"]

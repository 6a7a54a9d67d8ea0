"""HTTP semantics that decide *which* recorded answer fits a request, beyond its signature.

Two requests with the same signature can still need different answers:

* a recorded ``304 Not Modified`` answers only a request carrying the validator it was
  recorded with (``If-None-Match``/``If-Modified-Since``); a plain request needs the full
  response, and a ``206 Partial Content`` answers only the same ``Range``. So the recorded
  exchanges of one signature are split into *variants*: plain (``None``) and one per
  validator or range. A live request tries its own variants first, then plain (a server
  may always answer a conditional or ranged request in full), never someone else's.
* when a recording holds more than one origin (a browser HAR: the site, a CDN, an API),
  the origin is part of the signature: ``Host`` selects it. A request whose Host is none
  of them (a client calling the mock's own address) is matched against the origin with
  the most recorded requests, and a miss says which origins there are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from devbox.core.model import Exchange

Variant = tuple[str, str] | None
# request headers that select a variant: the mock must capture them when a recording has one
VARIANT_HEADERS = ("if-none-match", "if-modified-since", "range")


def _etags(value: str) -> str:
    # W/"x", "y" -> the set, canonical: weak comparison (RFC 9110 13.1.2) for If-None-Match
    tags = sorted({t.strip().removeprefix("W/") for t in value.split(",") if t.strip()})
    return ",".join(tags)


def recorded_variant(ex: Exchange) -> Variant:
    """The variant a recorded exchange answers; None for a full (plain) response."""
    resp = ex.response
    if resp is None or resp.status not in (304, 206):
        return None
    req = ex.request
    if resp.status == 304:
        inm = req.header("if-none-match")
        if inm:
            return ("if-none-match", _etags(inm))
        ims = req.header("if-modified-since")
        return ("if-modified-since", (ims or "").strip())
    return ("range", "".join((req.header("range") or "").split()))


def live_variants(headers: Mapping[str, str]) -> list[Variant]:
    """The variants a live request (headers keyed lower-case) may take, best first."""
    out: list[Variant] = []
    inm = headers.get("if-none-match")
    if inm:
        out.append(("if-none-match", _etags(inm)))
    ims = headers.get("if-modified-since")
    if ims and not inm:  # If-None-Match wins when both are sent (RFC 9110 13.2.2)
        out.append(("if-modified-since", ims.strip()))
    rng = headers.get("range")
    if rng:
        out.append(("range", "".join(rng.split())))
    out.append(None)
    return out


def describe_variant(v: Variant) -> str:
    if v is None:
        return "a full response"
    name, value = v
    if name == "range":
        return f"206 Partial Content for Range: {value or '(none)'}"
    label = "If-None-Match" if name == "if-none-match" else "If-Modified-Since"
    return f"304 Not Modified for {label}: {value or '(none)'}"


def explain_variant_miss(what: str, have: Iterable[Variant], wanted: list[Variant]) -> str:
    """Why a request with a recorded signature got nothing: only other variants exist."""
    recorded = "; ".join(sorted(describe_variant(v) for v in have))
    sent = [v for v in wanted if v is not None]
    asked = (
        "this request carries " + ", ".join(describe_variant(v).split(" for ")[1] for v in sent)
        if sent
        else "this request is plain (no validator, no Range)"
    )
    return (
        f"{what}: no recording matches: only {recorded} was recorded and {asked}, so it "
        "needs the full response; record a plain request of this URL"
    )


def origin(host: str | None) -> str:
    """host[:port] as compared: lower case, no userinfo, no default port."""
    h = (host or "").rpartition("@")[2].strip().lower()
    if h.endswith((":80", ":443")):
        h = h.rpartition(":")[0]
    return h


def request_origin(ex: Exchange) -> str:
    return origin(ex.request.host or ex.request.header("host"))


def origins_of(exchanges: Iterable[Exchange]) -> Counter[str]:
    return Counter(request_origin(e) for e in exchanges)


def split_absolute(target: str) -> tuple[str | None, str]:
    """(authority, origin-form target) of an absolute-form target (a client using the mock
    as an HTTP proxy); (None, target) for the usual origin form."""
    if not target.startswith(("http://", "https://")):
        return None, target
    rest = target.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    tail = rest[cut:]
    return rest[:cut], tail if tail.startswith("/") else "/" + tail


__all__ = [
    "VARIANT_HEADERS",
    "Variant",
    "describe_variant",
    "explain_variant_miss",
    "live_variants",
    "origin",
    "origins_of",
    "recorded_variant",
    "request_origin",
    "split_absolute",
]

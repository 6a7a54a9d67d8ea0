"""The recording worker's fast paths give exactly what the general paths give.

The Redactor skips the per-string text rules for a JSON body whose raw bytes hold nothing
they look for, remembers header pairs it left unchanged, and the recording format
remembers encoded header lines and the formatted second of a timestamp. Each is checked
here against the path it short-cuts (a never-matching profile pattern forces the Redactor's
general path without changing any result).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.core.model import Direction, Exchange, Request, Response, Timing
from devbox.core.profile import RedactRules
from devbox.core.recording import RecordingHeader, decode, encode, exchange_to_text
from devbox.core.recording import _iso as iso
from devbox.core.redact import Redactor

KEY = b"test-key"
NEVER = RedactRules(patterns=("(?!x)x",))  # matches nothing: forces the general path

# Annotated: the decorated strategy signature gives mypy no literal context for the tuple.
_NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_names = st.sampled_from(
    ["id", "status", "token", "api_key", "password", "note", "user", "clientSecret", "amount"]
)
_text = st.one_of(
    st.text(st.characters(blacklist_categories=_NO_SURROGATES), max_size=30),
    st.sampled_from(
        [
            "a@b.co",
            "x=1",
            "Bearer abcdefghijkl",
            "eyJhbGciOi.eyJzdWIiOi.sig",
            "AKIAABCDEFGHIJKLMNOP",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "1764147000123",
            "ts 2026-11-26 08:59:35.123456",
            "caf\u00e9 \u0664\u0661\u0661\u0661",
        ]
    ),
)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), _text)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_names, inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=_json, spaced=st.booleans(), ascii_only=st.booleans())
def test_json_body_fast_path_matches_the_general_path(
    value: object, spaced: bool, ascii_only: bool
) -> None:
    if spaced:
        body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    else:
        body = orjson.dumps(value)
    headers = (("Content-Type", "application/json"),)
    fast, general = Redactor(key=KEY), Redactor(NEVER, key=KEY)
    resp = Response(200, headers, body)
    assert fast.response(resp) == general.response(resp)
    assert dict(fast.stats) == dict(general.stats)


def test_escaped_characters_still_reach_the_text_rules() -> None:
    # "\u0040" is "@" once decoded: the raw bytes hold no trigger, the string does
    body = b'{"note": "mail me at bob\\u0040example.com"}'
    out = Redactor(key=KEY).response(Response(200, (), body)).body
    assert b"example.com" not in out and b"<redacted:email:" in out


def test_a_remembered_clean_header_does_not_hide_a_secret_one() -> None:
    r = Redactor(key=KEY)
    headers = (("Content-Type", "application/json"), ("X-Api-Key", "k-123456"))
    first = r.request(Request("GET", "/", (), headers))
    second = r.request(Request("GET", "/", (), headers))
    assert first == second
    assert first.headers[0] == headers[0]
    assert "k-123456" not in first.headers[1][1]
    # every redaction is counted, the second time too
    assert r.stats["token-header"] == 2
    unchanged = Request("GET", "/", (), (("Accept", "*/*"),))
    assert r.request(unchanged) is unchanged
    assert r.request(unchanged) is unchanged


def test_header_memory_is_per_redactor() -> None:
    headers = (("X-Trace", "abc"),)
    assert Redactor(key=KEY).request(Request("GET", "/", (), headers)).headers == headers
    custom = Redactor(RedactRules(headers=("x-trace",)), key=KEY)
    assert "abc" not in custom.request(Request("GET", "/", (), headers)).headers[0][1]


def test_timestamps_format_as_datetime_does() -> None:
    base = 1764147000.0
    stamps = [base + i / 7 for i in range(40)] + [
        base + 0.9999996,  # rounds up into the next second
        base + 0.9999994,
        base + 59.9999997,
        base + 86399.9999996,
        0.0,
        base,
    ]
    for ts in stamps + sorted(stamps):
        assert iso(ts) == datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def test_remembered_header_lines_round_trip() -> None:
    req = Request("GET", "/x", (), (("Host", "h"), ("Accept", 'a"b')), b"", host="h")
    exs = [
        Exchange(
            f"e{i}",
            Direction.OUTBOUND,
            "s",
            req,
            Response(200, (("Content-Type", "text/plain"), ("N", str(i))), b"hi"),
            Timing(1764147000.5 + i, 1.0),
        )
        for i in range(3)
    ]
    assert exchange_to_text(exs[0]) == exchange_to_text(exs[0])
    header = RecordingHeader(source="s", direction=Direction.OUTBOUND)
    assert decode(encode(header, exs)).exchanges == tuple(exs)

"""devbox.core.diff: every difference class, once, with a path; ignore and unordered rules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.core.diff import (
    DiffRules,
    diff_bodies,
    diff_json,
    diff_responses,
    format_path,
    generalize,
    parse_pattern,
)
from devbox.core.model import Response
from devbox.core.profile import ReplaySettings
from devbox.errors import UsageError


def lines(a: object, b: object, rules: DiffRules | None = None) -> list[str]:
    return [d.describe() for d in diff_json(a, b, rules)]


def test_changed_value_has_a_path() -> None:
    a = {"items": [{"price": 1}, {"price": 2}, {"price": 3}, {"price": 12.5}]}
    b = {"items": [{"price": 1}, {"price": 2}, {"price": 3}, {"price": 13.0}]}
    assert lines(a, b) == ["$.items[3].price: 12.5 → 13.0"]


def test_added_removed_and_type_changed() -> None:
    assert lines({"y": "a"}, {"x": 1}) == ['removed $.y: "a"', "added $.x: 1"]
    assert lines({"n": 12}, {"n": "12"}) == ['$.n: type changed number 12 → string "12"']
    assert lines({"b": True}, {"b": 1}) == ["$.b: type changed boolean true → number 1"]
    assert lines({"v": None}, {"v": {}}) == ["$.v: type changed null null → object {}"]


def test_equal_numbers_of_different_spelling_are_equal() -> None:
    assert lines({"a": 1}, {"a": 1.0}) == []
    assert diff_bodies(b'{"a": 1}', b'{"a":1.0}') == []


def test_reordered_array_is_one_difference() -> None:
    a = {"items": [{"sku": "A"}, {"sku": "B"}, {"sku": "C"}]}
    b = {"items": [{"sku": "C"}, {"sku": "A"}, {"sku": "B"}]}
    diffs = diff_json(a, b)
    assert [d.change for d in diffs] == ["order"]
    assert diffs[0].describe() == "$.items: same elements in a different order"


def test_unordered_path_compares_as_multiset() -> None:
    rules = DiffRules(unordered=("$.items",))
    a = {"items": [1, 2, 3]}
    assert lines(a, {"items": [3, 1, 2]}, rules) == []
    assert lines(a, {"items": [3, 1, 4]}, rules) == ["$.items[1]: 2 → 4"]
    assert lines(a, {"items": [3, 2, 1, 9]}, rules) == ["added $.items[3]: 9"]


def test_inserted_element_is_one_added_line_not_a_cascade() -> None:
    a = {"items": [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]}
    b = {"items": [{"id": 1}, {"id": 9}, {"id": 2}, {"id": 3}, {"id": 4}]}
    assert lines(a, b) == ['added $.items[1]: {"id":9}']
    assert lines(b, a) == ['removed $.items[1]: {"id":9}']


def test_ignore_rules_paths_wildcards_and_headers() -> None:
    rules = DiffRules(
        ignore=("$.created_at", "$.items[*].id", "header:date"), headers=("date", "x-v")
    )
    a = {"created_at": "2024-01-01", "items": [{"id": "a", "n": 1}], "extra": 1}
    b = {"created_at": "2025-01-01", "items": [{"id": "b", "n": 1}], "extra": 1}
    assert lines(a, b, rules) == []
    # an ignored key that appears or disappears is ignored too
    assert lines({"created_at": 1}, {}, rules) == []
    ra = Response(200, (("Date", "Mon"), ("X-V", "1")), b"{}")
    rb = Response(200, (("Date", "Tue"), ("X-V", "2")), b"{}")
    assert [d.describe() for d in diff_responses(ra, rb, rules)] == ["header:x-v: 1 → 2"]


def test_ignored_fields_inside_reordered_array_are_still_ignored() -> None:
    rules = DiffRules(ignore=("$.items[*].id",))
    a = {"items": [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}]}
    b = {"items": [{"id": 7, "n": "b"}, {"id": 8, "n": "a"}]}
    assert [d.change for d in diff_json(a, b, rules)] == ["order"]


def test_status_header_and_body_each_reported() -> None:
    rules = DiffRules.from_settings(ReplaySettings(headers=("content-type",)))
    exp = Response(200, (("Content-Type", "application/json"),), b'{"a": 1}')
    act = Response(500, (("Content-Type", "text/html"),), b"<h1>boom</h1>")
    diffs = diff_responses(exp, act, rules)
    assert [d.section for d in diffs] == ["status", "header", "body"]
    assert diffs[0].describe() == "status: 200 → 500"
    assert diffs[1].describe() == "header:content-type: application/json → text/html"
    assert diffs[2].change == "format"


def test_text_body_gives_a_unified_diff() -> None:
    diffs = diff_bodies(b"line one\nline two\nline three\n", b"line one\nline 2\nline three\n")
    assert len(diffs) == 1 and diffs[0].change == "text"
    assert "-line two" in diffs[0].detail and "+line 2" in diffs[0].detail
    assert diffs[0].actual == "2 lines changed"


def test_a_one_line_text_body_shows_both_lines() -> None:
    (d,) = diff_bodies(b"Hello World!", b"Hello from devbox!\n")
    assert (d.change, d.expected, d.actual) == ("text", '"Hello World!"', '"Hello from devbox!"')
    assert d.describe() == 'body (text): "Hello World!" → "Hello from devbox!"'
    assert "-Hello World!" in d.detail and "+Hello from devbox!" in d.detail
    (d,) = diff_bodies(b"ok\n", b"")
    assert (d.expected, d.actual) == ('"ok"', '""')
    (d,) = diff_bodies(b"x" * 81, b"y" * 81)  # too long to quote
    assert (d.expected, d.actual) == ("1 line", "2 lines changed")


def test_binary_body_by_size_and_hash() -> None:
    diffs = diff_bodies(b"\x00\x01\x02" * 10, b"\x00\x01\x03" * 11)
    assert len(diffs) == 1 and diffs[0].change == "binary"
    assert diffs[0].expected is not None and diffs[0].expected.startswith("30 bytes sha256 ")
    assert diffs[0].actual is not None and diffs[0].actual.startswith("33 bytes sha256 ")


def test_truncated_recording_compares_the_kept_prefix() -> None:
    assert diff_bodies(b"abc", b"abcdef", truncated=True) == []
    assert len(diff_bodies(b"abc", b"abXdef", truncated=True)) == 1


def test_identical_bodies_are_never_parsed() -> None:
    # not JSON, not text: equal bytes short-circuit before any parsing
    body = b"\xff\xfe{not json"
    assert diff_responses(Response(200, (), body), Response(200, (), body)) == ()


def test_paths_format_and_parse() -> None:
    assert format_path(("a", 0, "odd key", "b")) == '$.a[0]["odd key"].b'
    assert generalize(("items", 3, "id")) == "$.items[*].id"
    assert len(parse_pattern('$.a[*]["odd key"].*')) == 4
    with pytest.raises(UsageError, match="not a JSON path"):
        parse_pattern("$.a..b")
    with pytest.raises(UsageError):
        DiffRules(ignore=("created_at",))


def test_long_values_are_cut() -> None:
    (d,) = diff_json({"s": "x" * 500}, {"s": "y" * 500})
    assert d.expected is not None and len(d.expected) <= 60


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=2), children, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_a_value_never_differs_from_itself(v: object) -> None:
    assert diff_json(v, json.loads(json.dumps(v))) == []


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_different_values_always_give_a_difference(a: object, b: object) -> None:
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (diff_json(a, b) == []) == same

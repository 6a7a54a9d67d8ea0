"""devbox.core.matching: signatures, n-th call sequences, fuzzy matching, explanations."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devbox.core import matching
from devbox.core.matching import MatchIndex, parse_json_path, parse_query_fast
from devbox.core.model import Direction, Exchange, Request, Response
from devbox.core.profile import MatchRules
from devbox.core.redact import Redactor


def ex(
    n: int,
    method: str = "GET",
    path: str = "/",
    *,
    query: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    status: int = 200,
) -> Exchange:
    return Exchange(
        id=f"ex{n}",
        direction=Direction.OUTBOUND,
        source="payments",
        request=Request(method, path, query, headers, body),
        response=Response(status, (("Content-Type", "application/json"),), b'{"n": %d}' % n),
    )


def req(method: str = "GET", path: str = "/", **kw: object) -> Request:
    return Request(method, path, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- signatures


def test_json_body_key_order_and_whitespace_do_not_matter() -> None:
    idx = MatchIndex([ex(1, "POST", "/charges", body=b'{"a": 1, "b": [1, 2]}')], MatchRules())
    r = idx.match(req("POST", "/charges", body=b'{ "b":[1,2],\n "a":1 }'))
    assert r.exchange is not None and r.exchange.id == "ex1"


def test_json_value_changes_do_matter() -> None:
    idx = MatchIndex([ex(1, "POST", "/charges", body=b'{"a": 1}')], MatchRules())
    assert idx.match(req("POST", "/charges", body=b'{"a": 2}')).exchange is None
    # 1 and 1.0 are different JSON on the wire, and different requests here
    assert idx.match(req("POST", "/charges", body=b'{"a": 1.0}')).exchange is None


def test_query_order_insensitive_but_multiset() -> None:
    idx = MatchIndex([ex(1, path="/q", query=(("a", "1"), ("b", "2"), ("a", "3")))], MatchRules())
    assert idx.match(req(path="/q", query=(("b", "2"), ("a", "1"), ("a", "3")))).hit
    assert not idx.match(req(path="/q", query=(("b", "2"), ("a", "1")))).hit


def test_ignored_query_params_body_paths_and_globs() -> None:
    rules = MatchRules(ignore_query=("ts", "utm_*"), ignore_body=("$.request_id", "$.items[*].at"))
    recorded = ex(
        1,
        "POST",
        "/o",
        query=(("ts", "1"), ("id", "7")),
        body=b'{"request_id": "r1", "items": [{"sku": "A", "at": 1}], "n": 2}',
    )
    idx = MatchIndex([recorded], rules)
    live = req(
        "POST",
        "/o",
        query=(("id", "7"), ("ts", "99"), ("utm_source", "x")),
        body=b'{"n": 2, "items": [{"sku": "A", "at": 555}]}',
    )
    assert idx.match(live).hit
    changed = req("POST", "/o", query=(("id", "7"),), body=b'{"n": 2, "items": [{"sku": "B"}]}')
    assert not idx.match(changed).hit


def test_named_headers_take_part_others_do_not() -> None:
    rules = MatchRules(headers=("x-tenant",))
    idx = MatchIndex([ex(1, path="/t", headers=(("X-Tenant", "acme"), ("X-Trace", "1")))], rules)
    assert idx.match(req(path="/t", headers=(("x-tenant", "acme"), ("X-Trace", "2")))).hit
    r = idx.match(req(path="/t", headers=(("x-tenant", "other"),)))
    assert not r.hit
    assert 'header x-tenant (recorded "acme", got "other")' in r.explanation
    assert 'remove "x-tenant" from match.headers' in r.hint


def test_form_bodies_are_order_insensitive() -> None:
    form = (("Content-Type", "application/x-www-form-urlencoded"),)
    idx = MatchIndex([ex(1, "POST", "/f", body=b"a=1&b=2", headers=form)], MatchRules())
    assert idx.match(req("POST", "/f", body=b"b=2&a=1", headers=form)).hit


def test_binary_bodies_compare_exactly() -> None:
    idx = MatchIndex([ex(1, "PUT", "/blob", body=b"\x00\x01\x02")], MatchRules())
    assert idx.match(req("PUT", "/blob", body=b"\x00\x01\x02")).hit
    r = idx.match(req("PUT", "/blob", body=b"\x00\x01\x03"))
    assert not r.hit and "body (recorded 3 bytes at byte 2" in r.explanation


def test_percent_encoded_path_equals_decoded() -> None:
    idx = MatchIndex([ex(1, path="/items/a%20b")], MatchRules())
    assert idx.match(req(path="/items/a b")).hit


def test_key_raw_equals_key_for() -> None:
    rules = MatchRules(ignore_query=("ts",), headers=("x-tenant",))
    idx = MatchIndex([], rules)
    r = req(
        "POST",
        "/a%2Fb",
        query=(("x", "1 2"), ("ts", "5")),
        headers=(("X-Tenant", "t"), ("Content-Type", "application/json")),
        body=b'{"b":1,"a":2}',
    )
    raw = idx.key_raw(
        "POST",
        "/a%2Fb?x=1+2&ts=5",
        {"x-tenant": "t", "content-type": "application/json"},
        b'{"a":2, "b":1}',
    )
    assert raw == idx.key_for(r)


# ---------------------------------------------------------------- sequences


def test_nth_call_gets_nth_response_then_the_last_repeats() -> None:
    idx = MatchIndex([ex(1, path="/s"), ex(2, path="/other"), ex(3, path="/s")], MatchRules())
    got = [idx.match(req(path="/s")) for _ in range(4)]
    assert [g.exchange.id for g in got if g.exchange] == ["ex1", "ex3", "ex3", "ex3"]
    assert [g.call for g in got] == [1, 2, 3, 4]
    idx.reset()
    assert idx.match(req(path="/s")).exchange.id == "ex1"  # type: ignore[union-attr]


def test_add_extends_a_sequence_and_a_bucket() -> None:
    idx = MatchIndex([ex(1, path="/s")], MatchRules())
    assert idx.add(ex(2, path="/s")) == 1
    assert [idx.match(req(path="/s")).position for _ in range(3)] == [0, 1, 1]


# ---------------------------------------------------------------- misses and fuzzy


def test_miss_explanation_names_the_field_and_the_rule() -> None:
    recorded = [ex(i, path=f"/items/{i}") for i in range(11)]
    recorded.append(ex(11, "POST", "/charges", body=b'{"amount": 12.5, "currency": "EUR"}'))
    idx = MatchIndex(recorded, MatchRules(), name="payments")
    r = idx.match(req("POST", "/charges", body=b'{"currency": "EUR", "amount": 13.0}'))
    assert r.exchange is None
    assert r.explanation == (
        "POST /charges: no recording matches. nearest: #12 POST /charges differs in body "
        '$.amount (recorded 12.5, got 13.0); hint: add "$.amount" to match.ignore_body of '
        "dependency payments"
    )
    (cand,) = r.candidates
    assert cand.exchange.id == "ex11"
    assert [(d.field, d.name, d.recorded, d.got) for d in cand.differences] == [
        ("body", "$.amount", "12.5", "13.0")
    ]


def test_missing_and_extra_fields_query_and_array_generalisation() -> None:
    recorded = ex(
        1,
        "POST",
        "/o",
        query=(("ts", "1"),),
        body=b'{"items": [{"qty": 1}, {"qty": 2}], "coupon": "X"}',
    )
    idx = MatchIndex([recorded], MatchRules(), name="shop")
    r = idx.match(
        req("POST", "/o", query=(("ts", "2"),), body=b'{"items": [{"qty": 5}, {"qty": 6}], "n": 1}')
    )
    assert r.explanation.startswith(
        'POST /o: no recording matches. nearest: #1 POST /o differs in query ?ts (recorded "1", '
        'got "2"), body $.items[0].qty (recorded 1, got 5), $.items[1].qty (recorded 2, got 6), '
        '$.coupon (recorded "X", missing) and 1 more; hint: '
    )
    described = [d.describe() for d in r.candidates[0].differences]
    assert described[-1] == "body $.n (not recorded, got 1)"
    assert 'add "$.items[*].qty", "$.coupon", "$.n" to match.ignore_body' in r.hint
    assert 'add "ts" to match.ignore_query' in r.hint


def test_unrecorded_route_lists_what_was_recorded() -> None:
    idx = MatchIndex([ex(1, path="/items/1"), ex(2, path="/items/2")], MatchRules(), name="inv")
    r = idx.match(req("DELETE", "/nothing"))
    assert "nothing recorded for this route (recorded: GET /items/* x2)" in r.explanation
    assert 'on_miss = "passthrough" for dependency inv' in r.hint


def test_same_path_other_method_and_similar_path_are_candidates() -> None:
    idx = MatchIndex([ex(1, "GET", "/charges"), ex(2, "GET", "/items/KB-101")], MatchRules())
    r = idx.match(req("POST", "/charges"))
    assert "#1 GET /charges differs in method (recorded GET, got POST)" in r.explanation
    r = idx.match(req("GET", "/items/KB-102"))
    assert "path (recorded /items/KB-101, got /items/KB-102)" in r.explanation


def test_empty_index_says_so() -> None:
    r = MatchIndex([], MatchRules(), name="payments").match(req())
    assert "no recordings are loaded for dependency payments" in r.explanation


def test_fuzzy_picks_the_strongest_candidate_only_when_allowed() -> None:
    recorded = [
        ex(1, "POST", "/c", body=b'{"a": 1, "b": 1, "c": 1}'),
        ex(2, "POST", "/c", body=b'{"a": 1, "b": 2, "c": 2}'),
    ]
    live = req("POST", "/c", body=b'{"a": 1, "b": 1, "c": 9}')
    assert not MatchIndex(recorded, MatchRules()).match(live).hit
    r = MatchIndex(recorded, MatchRules(fuzzy=True)).match(live)
    assert r.fuzzy and r.exchange is not None and r.exchange.id == "ex1"
    assert "fuzzy match, strongest candidate #1" in r.explanation
    # fuzzy never crosses routes
    assert not MatchIndex(recorded, MatchRules(fuzzy=True)).match(req("POST", "/d")).hit


def test_explanations_do_not_scan_large_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explaining a miss among 20,000 recordings of one route diffs only a shortlist."""
    recorded = [
        ex(i, "POST", "/orders", body=orjson.dumps({"customer": i, "sku": i % 50, "qty": 1}))
        for i in range(20_000)
    ]
    idx = MatchIndex(recorded, MatchRules(), name="shop")
    # the first miss builds the bucket's postings
    idx.match(req("POST", "/orders", body=b'{"customer": 1, "sku": 1, "qty": 2}'))
    calls = 0
    real = MatchIndex._compare

    def counting(self: MatchIndex, g: object, live: object) -> object:
        nonlocal calls
        calls += 1
        return real(self, g, live)  # type: ignore[arg-type]

    monkeypatch.setattr(MatchIndex, "_compare", counting)
    r = idx.match(req("POST", "/orders", body=b'{"customer": 12345, "sku": 45, "qty": 2}'))
    assert calls <= matching._SHORTLIST
    assert r.candidates[0].exchange.id == "ex12345"
    assert r.candidates[0].describe().endswith("differs in body $.qty (recorded 1, got 2)")


# ---------------------------------------------------------------- redaction


def test_live_request_is_redacted_before_matching() -> None:
    """Recordings hold redacted secrets; the same Redactor makes the live request match."""
    redactor = Redactor()
    raw = ex(
        1,
        "POST",
        "/charges",
        headers=(("Authorization", "Bearer sk_live_0123456789abcdef"),),
        body=b'{"email": "ann@example.com", "amount": 5}',
    )
    stored = redactor.exchange(raw)
    assert "0123456789abcdef" not in str(stored.request.headers)  # the prefix stays
    rules = MatchRules(headers=("authorization",))
    idx = MatchIndex([stored], rules, redactor=Redactor().request)
    live = raw.request
    r = idx.match(live)
    assert r.hit
    other = Request(
        "POST",
        "/charges",
        headers=(("Authorization", "Bearer sk_live_ffffffffffffffff"),),
        body=live.body,
    )
    miss = idx.match(other)
    assert not miss.hit
    # the explanation shows placeholders, never the secret itself
    assert "ffffffffffffffff" not in miss.explanation and "<redacted:" in miss.explanation


# ---------------------------------------------------------------- properties

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=st.dictionaries(st.text(max_size=6), _json, max_size=5), seed=st.randoms())
def test_property_json_reordered_and_respaced_matches(
    value: dict[str, object], seed: object
) -> None:
    body = orjson.dumps(value)
    idx = MatchIndex([ex(1, "POST", "/p", body=body)], MatchRules())
    items = list(value.items())
    seed.shuffle(items)  # type: ignore[attr-defined]
    respaced = json.dumps(dict(items), indent=2).encode()
    assert idx.match(req("POST", "/p", body=respaced)).hit


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab=&%+2F x;", max_size=30))
def test_property_fast_query_parser_equals_parse_qsl(qs: str) -> None:
    assert parse_query_fast(qs) == tuple(parse_qsl(qs, keep_blank_values=True))


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.text("abc", min_size=1, max_size=3), st.text("xy1 ", max_size=3)), max_size=5
    ),
    seed=st.randoms(),
)
def test_property_query_permutations_match(pairs: list[tuple[str, str]], seed: object) -> None:
    idx = MatchIndex([ex(1, path="/q", query=tuple(pairs))], MatchRules())
    shuffled = list(pairs)
    seed.shuffle(shuffled)  # type: ignore[attr-defined]
    target = "/q?" + urlencode(shuffled) if shuffled else "/q"
    assert idx.lookup(idx.key_raw("GET", target, {}, b"")) == 0


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=st.text(alphabet="/ab%1", max_size=10),
    body=st.binary(max_size=40) | _json.map(orjson.dumps),
    query=st.lists(st.tuples(st.text("ab", max_size=2), st.text("1 ", max_size=2)), max_size=3),
)
def test_property_matcher_never_crashes_and_explains(
    method: str, path: str, body: bytes, query: list[tuple[str, str]]
) -> None:
    recorded = [
        ex(1, "POST", "/a", body=b'{"x": [1, {"y": null}]}'),
        ex(2, "GET", "/a", query=(("a", "1"),)),
        ex(3, "PUT", "/b", body=b"\x00binary"),
    ]
    idx = MatchIndex(recorded, MatchRules(fuzzy=False, ignore_body=("$.x[*].y",)), name="d")
    r = idx.match(Request(method, path or "/", tuple(query), (), body))
    if not r.hit:
        assert r.explanation.startswith(f"{method} ")
        assert "no recording matches" in r.explanation


def test_json_path_parser_rejects_garbage() -> None:
    assert parse_json_path("$.a[2][*].b.*") == (
        ("key", "a"),
        ("idx", 2),
        ("all", None),
        ("key", "b"),
        ("all", None),
    )
    with pytest.raises(ValueError):
        parse_json_path("a.b")
    with pytest.raises(ValueError):
        parse_json_path("$..a")


# ---------------------------------------------------------------- links


def test_a_linked_call_gets_its_own_inbound_requests_answer_in_any_order() -> None:
    import dataclasses

    calls = [
        dataclasses.replace(ex(1, path="/rate"), parent="in-1"),
        dataclasses.replace(ex(2, path="/rate"), parent="in-2"),
        # linked by a correlation header the service copied (no parent known)
        ex(3, path="/rate", headers=(("X-Request-Id", "r-3"),)),
        dataclasses.replace(ex(4, path="/rate"), parent="in-1"),
    ]
    idx = MatchIndex(calls, MatchRules(), link_header="X-Request-Id")
    assert "x-request-id" in idx.wanted_headers
    hit = idx.lookup_raw
    assert hit("GET", "/rate", {"x-request-id": "r-3"}, b"") == 2
    assert hit("GET", "/rate", {"x-request-id": "in-2"}, b"") == 1
    assert hit("GET", "/rate", {"x-request-id": "in-1"}, b"") == 0
    assert hit("GET", "/rate", {"x-request-id": "in-1"}, b"") == 3  # in-1's second call
    # the slow path (Request objects) follows the same links
    r = idx.match(req(path="/rate", headers=(("x-request-id", "in-2"),)))
    assert r.exchange is not None and r.exchange.id == "ex2"
    idx.reset()
    assert hit("GET", "/rate", {"x-request-id": "in-1"}, b"") == 0
    # no link, or one the recording does not know: the group's own sequence
    assert hit("GET", "/rate", {}, b"") == 1
    assert hit("GET", "/rate", {"x-request-id": "other"}, b"") == 2
    # without a link header the calls are one plain sequence, in recorded order
    plain = MatchIndex(calls, MatchRules())
    assert [plain.lookup_raw("GET", "/rate", {"x-request-id": "in-2"}, b"") for _ in range(2)] == [
        0,
        1,
    ]

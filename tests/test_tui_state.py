"""The dashboard's pure parts: folding events, the trend, filters, the diff listing."""

from __future__ import annotations

from devbox.core.events import IterationFinished, Log, ReplayResult
from devbox.core.model import Response
from devbox.core.profile import ReplaySettings
from devbox.tui.diffview import (
    build_diff,
    response_lines,
    rule_candidates,
    rule_from_text,
    status_text,
)
from devbox.tui.state import DashboardState, compile_filter
from devbox.wire.grpc.inbound import answer


def _r(it: int, i: int, verdict: str, trend: str = "") -> ReplayResult:
    return ReplayResult(
        it, i, "GET", f"/r/{i}", 200, verdict, 1.0, exchange_id=f"ex-{i}", trend=trend
    )


def test_the_trend_is_the_replays_and_the_dashboard_only_shows_it() -> None:
    st = DashboardState()
    st.apply_all([_r(0, 0, "pass"), _r(0, 1, "fail"), _r(0, 2, "pass")])
    st.apply(IterationFinished(0, "start", 2, 1, 0))
    assert "first iteration" in st.trend_line()
    st.apply_all([_r(1, 0, "fail", "newly failing")])
    st.apply(IterationFinished(1, "batch", 0, 1, 0, cancelled=True))
    # a request not seen before (ex-3) has no trend: the replay decided, the table shows
    st.apply_all(
        [
            _r(2, 0, "fail", "newly failing"),
            _r(2, 1, "pass", "newly passing"),
            _r(2, 2, "pass"),
            _r(2, 3, "fail"),
        ]
    )
    assert [r.trend for r in st.results] == ["newly failing", "newly passing", "", ""]
    st.apply(IterationFinished(2, "batch", 2, 2, 0))
    assert st.trend_line().endswith("newly failing 1, newly passing 1")
    assert st.verdict_line() == "iteration 2: FAIL 2/4"
    # a straggler of an older iteration changes nothing
    st.apply(_r(1, 5, "fail"))
    assert len(st.results) == 4


def test_logs_are_capped_and_counted() -> None:
    st = DashboardState(log_cap=10)
    st.apply_all(Log("svc", f"line {i}") for i in range(25))
    assert len(st.logs) == 10 and st.log_total == 25
    assert st.logs[0].text == "line 15"


def test_filters() -> None:
    match, err = compile_filter("get /items")
    assert err is None and match("GET /items/1") and not match("POST /orders")
    match, err = compile_filter("!healthz")
    assert match("GET /catalog") and not match("GET /healthz")
    match, err = compile_filter("(")
    assert err is not None and match("a ( b") and not match("ab")


def test_diff_listing_aligns_and_marks() -> None:
    rec = Response(
        200,
        (("content-type", "application/json"),),
        b'{"a": 1, "items": [{"id": 1, "p": 2}], "ts": "x"}',
    )
    act = Response(
        200,
        (("content-type", "application/json"),),
        b'{"a": 1, "items": [{"id": 1, "p": 3}], "ts": "y"}',
    )
    view = build_diff(rec, act, ReplaySettings(ignore=("$.ts",)), method="GET", target="/x")
    assert [d.where for d in view.differences] == ["$.items[0].p"]
    assert [d.where for d in view.noise] == ["$.ts"]
    pairs = [
        (a.text.strip() if a else None, b.text.strip() if b else None, a.mark if a else "")
        for a, b in view.rows
    ]
    assert ('"p": 2', '"p": 3', "diff") in pairs
    assert ('"ts": "x"', '"ts": "y"', "noise") in pairs
    assert ('"a": 1,', '"a": 1,', "") in pairs


def test_rule_candidates() -> None:
    assert rule_candidates("$.items[0].price") == ["$.items[*].price", "$.items[0].price"]
    assert rule_candidates("header:Date") == ["header:date"]
    assert rule_candidates("status") == []
    assert rule_candidates('$["odd key"]') == []  # the profile cannot express it
    assert rule_from_text("$.total: 25.0 → 26.0") == "$.total"
    assert rule_from_text("added $.x: 1") == "$.x"
    assert rule_from_text("status: 200 → 500") is None


def test_safe_emit_returns_what_a_broken_view_raised() -> None:
    from devbox.core.events import safe_emit

    got: list[object] = []
    assert safe_emit(got.append, Log("svc", "x")) is None and len(got) == 1
    assert safe_emit(None, Log("svc", "x")) is None

    def broken(ev: object) -> None:
        raise RuntimeError("view bug")

    err = safe_emit(broken, Log("svc", "x"))
    assert isinstance(err, RuntimeError) and str(err) == "view bug"


def test_iteration_one_without_a_baseline_is_not_called_the_first() -> None:
    st = DashboardState()
    st.apply(IterationFinished(0, "start", 0, 0, 1, cancelled=True))
    st.apply_all([_r(1, 0, "pass")])
    st.apply(IterationFinished(1, "batch", 1, 0, 0))
    line = st.trend_line()
    assert "first iteration" not in line and "no earlier result to compare" in line


def test_the_diff_view_applies_the_rules_of_the_request_route() -> None:
    # issue 12, point 6: "GET /quote $.tax" ignores $.tax on GET /quote only; the view
    # decides it with the verdict's own function when no counted differences came with it
    from devbox.core.diff import DiffRules, ignored_differences, request_differences

    rec = Response(200, (("content-type", "application/json"),), b'{"tax": 1, "total": 2}')
    act = Response(200, (("content-type", "application/json"),), b'{"tax": 5, "total": 6}')
    settings = ReplaySettings(ignore=("GET /quote $.tax", "GET /quote header:x-trace"))
    rules = DiffRules.from_settings(settings)
    for method, target, fails, ignored in (
        ("GET", "/quote?sku=A&qty=2", ["$.total"], ["$.tax"]),
        ("POST", "/quote", ["$.tax", "$.total"], []),
        ("GET", "/orders/7", ["$.tax", "$.total"], []),
    ):
        view = build_diff(rec, act, settings, method=method, target=target)
        counted = request_differences(rec, act, rules, method, target)
        assert [d.where for d in view.differences] == [d.where for d in counted] == fails
        assert [d.where for d in view.noise] == ignored
        assert view.noise == ignored_differences(rec, act, rules, method, target)
        marks = {ln.path: ln.mark for row in view.rows for ln in row if ln is not None}
        assert marks["$.tax"] == ("noise" if ignored else "diff")
    # the header a scoped rule ignores is shown on its route, where it is noise
    traced = Response(200, (("x-trace", "b"),), b"")
    view = build_diff(
        Response(200, (("x-trace", "a"),), b""), traced, settings, method="GET", target="/quote"
    )
    assert [d.where for d in view.noise] == ["header:x-trace"] and view.differences == ()
    # what the engine counted is what fails, outbound calls included
    from devbox.core.diff import Difference

    call = Difference("outbound", "payments POST /charges", "missing")
    counted = (*request_differences(rec, act, rules, "GET", "/quote"), call)
    view = build_diff(rec, act, settings, method="GET", target="/quote", counted=counted)
    assert view.differences == counted and [d.where for d in view.noise] == ["$.tax"]


def test_a_grpc_answer_shows_its_status_by_name_not_as_http() -> None:
    """The side-by-side view of a gRPC call said "HTTP 5": it is gRPC's NOT_FOUND."""
    live = answer(5, "nothing at 0,0", [], {})
    assert status_text(live) == "gRPC NOT_FOUND (5)"
    assert response_lines(live)[0].text == "gRPC NOT_FOUND (5)"
    assert status_text(Response(404, (), b"")) == "HTTP 404"
    assert status_text(answer(0, "", [{"name": "x"}], {})) == "gRPC OK (0)"

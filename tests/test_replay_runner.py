"""run_replay against real local HTTP servers: verdicts, framing, lanes, pacing, load, outbound."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any, TypedDict, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import free_port
from replay_helpers import exchange, serve

from devbox.core.profile import MatchRules, ReplaySettings
from devbox.errors import UsageError
from devbox.replay import ReplayOptions, RequestResult, run_replay
from devbox.replay.pacing import Pacing, lane_key, schedule
from devbox.replay.report import Trend, trend_of

JSON = [("Content-Type", "application/json")]
# what a replay_helpers.serve handler returns: status, headers, body
Reply = tuple[int, list[tuple[str, str]], bytes]
T = TypeVar("T")


class JournalEntry(TypedDict):
    """One call in a mock's journal, as the journal endpoint serves it."""

    seq: int
    method: str
    target: str
    body: str
    matched: None


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def echo_items(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
    n = path.rsplit("/", 1)[-1]
    return 200, JSON, json.dumps({"n": n, "price": 10}).encode()


def test_pass_fail_error_verdicts_and_counts() -> None:
    def handler(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path == "/drop":
            raise ConnectionAbortedError
        return echo_items(method, path, headers, body)

    exs = [
        exchange("GET", "/items/1", body=b'{"n": "1", "price": 10}'),
        exchange("GET", "/items/2", body=b'{"n": "2", "price": 12}'),
        exchange("GET", "/drop", body=b"{}"),
    ]
    seen: list[RequestResult] = []
    with serve(handler) as url:
        report = run(run_replay(exs, url, ReplaySettings(), on_result=seen.append))
    assert (report.total, report.passed, report.failed, report.errors) == (3, 1, 1, 1)
    assert len(seen) == 3
    by = {r.target: r for r in report.results}
    assert by["/items/1"].verdict == "pass" and by["/items/1"].actual is None
    fail = by["/items/2"]
    assert fail.verdict == "fail" and [d.describe() for d in fail.differences] == [
        "$.price: 12 → 10"
    ]
    assert fail.actual is not None and fail.actual.status == 200
    assert by["/drop"].verdict == "error" and "closed" in by["/drop"].error
    assert report.match_pct == pytest.approx(100 / 3)
    assert [r.index for r in report.results] == [0, 1, 2]


def test_chunked_gzip_and_connection_close_are_handled() -> None:
    payload = json.dumps({"items": list(range(300))}).encode()

    def handler(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path == "/chunked":
            z = gzip.compress(payload)
            chunks = [z[i : i + 100] for i in range(0, len(z), 100)]
            raw = (
                b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
                + b"0\r\nX-Trailer: t\r\n\r\n"
            )
            return 200, [("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip"), *JSON], raw
        if path == "/close":
            return 200, [("Connection", "close"), *JSON], payload
        return 204, [], b""

    exs = [exchange("GET", p, 200, payload) for p in ("/chunked", "/close", "/chunked", "/close")]
    exs.append(exchange("GET", "/empty", 204, b""))
    with serve(handler) as url:
        report = run(run_replay(exs, url, ReplaySettings(concurrency=1)))
    assert report.passed == 5, [r.to_dict() for r in report.failures()]


def test_recorded_gzip_request_body_is_sent_encoded() -> None:
    got: list[bytes] = []

    def handler(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        got.append(gzip.decompress(body))
        return 200, JSON, b"{}"

    ex = exchange(
        "POST", "/up", body=b"{}", req_body=b'{"a": 1}', req_headers=(("Content-Encoding", "gzip"),)
    )
    with serve(handler) as url:
        report = run(run_replay([ex], url, ReplaySettings()))
    assert report.passed == 1 and got == [b'{"a": 1}']


def test_lanes_keep_order_per_session_and_run_others_concurrently() -> None:
    lock = threading.Lock()
    in_flight: dict[str, int] = defaultdict(int)
    overlap_in_lane: list[str] = []
    order: dict[str, list[int]] = defaultdict(list)
    max_total = [0, 0]  # current, max

    def handler(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        who = headers.get("Authorization") or headers.get("Cookie") or "anon"
        with lock:
            in_flight[who] += 1
            max_total[0] += 1
            max_total[1] = max(max_total)
            if who != "anon" and in_flight[who] > 1:
                overlap_in_lane.append(who)
            order[who].append(int(path.rsplit("/", 1)[1]))
        time.sleep(0.01)
        with lock:
            in_flight[who] -= 1
            max_total[0] -= 1
        return 200, JSON, b"{}"

    exs = []
    for i in range(30):
        if i % 3 == 0:
            h: tuple[tuple[str, str], ...] = (("Authorization", "Bearer alice"),)
        elif i % 3 == 1:
            h = (("Cookie", "theme=dark; session_id=bob"),)
        else:
            h = ()
        exs.append(exchange("GET", f"/step/{i}", body=b"{}", req_headers=h))
    with serve(handler) as url:
        report = run(run_replay(exs, url, ReplaySettings(concurrency=6)))
    assert report.passed == 30
    assert overlap_in_lane == []
    assert order["Bearer alice"] == list(range(0, 30, 3))
    assert order["theme=dark; session_id=bob"] == list(range(1, 30, 3))
    assert max_total[1] > 2  # the independent requests really ran concurrently


def test_lane_key() -> None:
    ex = exchange("GET", "/", req_headers=(("Cookie", "theme=dark; SESSIONID=abc"),))
    assert lane_key(ex.request) == "cookie:SESSIONID=abc"
    ex2 = exchange("GET", "/", req_headers=(("Cookie", "theme=light; SESSIONID=abc"),))
    assert lane_key(ex2.request) == lane_key(ex.request)
    assert lane_key(exchange("GET", "/").request) is None


def test_schedules_speed_rate_count_copies() -> None:
    exs = [exchange("GET", f"/{i}", started_at=100.0 + t) for i, t in enumerate((0.0, 1.0, 3.0))]
    assert [j.at for j in schedule(exs, Pacing())] == [None, None, None]
    assert [j.at for j in schedule(exs, Pacing(speed=1))] == [0.0, 1.0, 3.0]
    assert [j.at for j in schedule(exs, Pacing(speed=2))] == [0.0, 0.5, 1.5]
    assert [j.at for j in schedule(exs, Pacing(rate=10))] == pytest.approx([0.0, 0.1, 0.2])
    jobs = list(schedule(exs, Pacing(count=7)))
    assert [j.item for j in jobs] == [0, 1, 2, 0, 1, 2, 0]
    assert [j.copy for j in jobs] == [0, 0, 0, 1, 1, 1, 2]
    # speed with cycling: round 2 starts one average gap after the end of round 1
    assert [j.at for j in schedule(exs, Pacing(speed=1, count=4))] == [0.0, 1.0, 3.0, 4.5]
    jobs = list(schedule(exs, Pacing(copies=2)))
    assert [(j.item, j.copy) for j in jobs] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    with pytest.raises(UsageError):
        Pacing(speed=1, rate=2).validate()


def test_load_run_keeps_only_failures_and_counts_everything() -> None:
    exs = [
        exchange("GET", f"/items/{i}", body=json.dumps({"n": str(i), "price": 10}).encode())
        for i in range(4)
    ]
    exs.append(exchange("GET", "/items/9", body=b'{"n": "9", "price": 11}'))
    with serve(echo_items) as url:
        report = run(run_replay(exs, url, ReplaySettings(), options=ReplayOptions(copies=3)))
        assert (report.total, report.passed, report.failed) == (15, 12, 3)
        assert not report.results_complete and {r.target for r in report.results} == {"/items/9"}
        assert sorted(r.copy for r in report.results) == [0, 1, 2]
        counted = run(
            run_replay(exs, url, ReplaySettings(concurrency=3), options=ReplayOptions(count=23))
        )
        assert counted.total == 23
        timed = run(run_replay(exs, url, ReplaySettings(), options=ReplayOptions(duration_s=0.3)))
        assert timed.total > 5 and timed.duration_s >= 0.3


def test_routes_select_a_subset_and_recorded_errors_are_skipped() -> None:
    exs = [
        exchange("GET", "/orders/1", body=b"{}"),
        exchange("POST", "/orders", body=b"{}"),
        exchange("GET", "/items/1", body=b"{}"),
    ]
    broken = exchange("GET", "/orders/2")
    exs.append(dataclasses.replace(broken, response=None, error="connection refused"))
    hits: list[str] = []

    def handler(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        hits.append(f"{method} {path}")
        return 200, JSON, b"{}"

    with serve(handler) as url:
        report = run(run_replay(exs, url, ReplaySettings(routes=("GET /orders*",))))
        assert hits == ["GET /orders/1"] and report.skipped == 1
        hits.clear()
        run(
            run_replay(
                exs,
                url,
                ReplaySettings(routes=("GET /orders*",)),
                options=ReplayOptions(routes=("/items/*", "POST /orders")),
            )
        )
        assert sorted(hits) == ["GET /items/1", "POST /orders"]


def test_timeout_refused_and_cancel() -> None:
    def slow(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        time.sleep(0.5)
        return 200, JSON, b"{}"

    ex = exchange("GET", "/slow", body=b"{}")
    with serve(slow) as url:
        report = run(run_replay([ex], url, ReplaySettings(), options=ReplayOptions(timeout_s=0.1)))
    assert report.errors == 1 and "timed out" in report.results[0].error
    refused = run(run_replay([ex], f"http://127.0.0.1:{free_port()}", ReplaySettings()))
    assert refused.errors == 1 and "cannot connect" in refused.results[0].error

    async def cancelled() -> int:
        cancel = asyncio.Event()
        cancel.set()
        with serve(echo_items) as url:
            rep = await run_replay([ex] * 10, url, ReplaySettings(), cancel=cancel)
        assert rep.cancelled
        return rep.total

    assert run(cancelled()) == 0


def test_bad_target_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--target"):
        run(run_replay([exchange("GET", "/")], "ftp://x", ReplaySettings()))


def test_trend_between_runs() -> None:
    a = exchange("GET", "/items/1", body=b'{"n": "1", "price": 10}', id="a")
    b = exchange("GET", "/items/2", body=b'{"n": "2", "price": 99}', id="b")
    c = exchange("GET", "/items/3", body=b'{"n": "3", "price": 99}', id="c")
    with serve(echo_items) as url:
        first = run(run_replay([a, b, c], url, ReplaySettings()))
        b2 = exchange("GET", "/items/2", body=b'{"n": "2", "price": 10}', id="b")
        a2 = exchange("GET", "/items/1", body=b'{"n": "1", "price": 11}', id="a")
        second = run(run_replay([a2, b2, c], url, ReplaySettings()))
    t = second.trend(first)
    assert (t.newly_failing, t.newly_passing, t.still_failing) == (("a",), ("b",), ("c",))
    assert t.labels["a"] == "GET /items/1"
    # no baseline, no trend: the first run, and a request the previous run did not have
    assert second.trend(None) == Trend(labels=t.labels)
    assert [trend_of(None, v) for v in ("pass", "fail", "error")] == ["", "", ""]


# ---------------------------------------------------------------- outbound check


class FakeMocks:
    """A service under test that calls 'dependencies', and their journals, in one server."""

    def __init__(self) -> None:
        self.journal: list[JournalEntry] = []
        self.plan: dict[str, list[tuple[str, str, str]]] = {}

    def handler(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(path)
        if parts.path == "/__devbox/journal":
            after = int(parse_qs(parts.query)["after"][0])
            entries = [e for e in self.journal if int(e["seq"]) > after]
            nxt = int(entries[-1]["seq"]) if entries else after
            return 200, JSON, json.dumps({"next": nxt, "entries": entries}).encode()
        # the "service": pretend it called its dependency while serving this request
        for m, target, b in self.plan.get(parts.path, []):
            self.journal.append(
                {
                    "seq": len(self.journal) + 1,
                    "method": m,
                    "target": target,
                    "body": b,
                    "matched": None,
                }
            )
        return 200, JSON, b"{}"


def test_outbound_missing_extra_changed_each_reported() -> None:
    fake = FakeMocks()
    fake.journal.append({"seq": 1, "method": "GET", "target": "/old", "body": "", "matched": None})
    inbound = [
        exchange("GET", p, body=b"{}", id=f"in{n}")
        for n, p in enumerate(("/same", "/changed", "/missing", "/extra"))
    ]
    from devbox.core.model import Direction, Exchange, Request, Response

    def out(
        parent: str,
        method: str,
        path: str,
        body: bytes = b"",
        query: tuple[tuple[str, str], ...] = (),
    ) -> Exchange:
        return Exchange(
            f"o-{parent}-{path}",
            Direction.OUTBOUND,
            "payments",
            Request(method, path, query, (), body),
            Response(200),
            parent=parent,
        )

    recorded = [
        out("in0", "GET", "/charges/1", query=(("ts", "1"),)),
        out("in1", "POST", "/charges", b'{"amount": 10, "customer": "a@x"}'),
        out("in2", "GET", "/charges/2"),
    ]
    fake.plan = {
        "/same": [("GET", "/charges/1?ts=999", "")],  # ts is ignored by the match rules
        "/changed": [("POST", "/charges", '{"amount": 12, "customer": "b@x"}')],
        "/missing": [],
        "/extra": [("DELETE", "/charges/7", "")],
    }
    rules = {"payments": MatchRules(ignore_query=("ts",), ignore_body=("$.customer",))}
    with serve(fake.handler) as url:
        report = run(
            run_replay(
                inbound,
                url,
                ReplaySettings(concurrency=8),
                options=ReplayOptions(outbound_rules=rules),
                outbound=recorded,
                journals={"payments": url},
            )
        )
    assert report.outbound_checked and report.concurrency == 1
    by = {r.target: [d.describe() for d in r.differences] for r in report.results}
    assert by["/same"] == []
    assert by["/changed"] == ["changed call payments POST /charges: $.amount: 10 → 12"]
    assert by["/missing"] == ["missing call payments GET /charges/2"]
    assert by["/extra"] == ["extra call payments DELETE /charges/7"]
    assert (report.passed, report.failed) == (1, 3)


def test_outbound_unreachable_journal_is_a_usage_error() -> None:
    from devbox.core.model import Direction, Exchange, Request, Response

    ex = exchange("GET", "/a", body=b"{}", id="in")
    rec = Exchange(
        "o", Direction.OUTBOUND, "payments", Request("GET", "/x"), Response(200), parent="in"
    )
    with serve(echo_items) as url, pytest.raises(UsageError, match="journal"):
        run(
            run_replay(
                [ex],
                url,
                ReplaySettings(),
                outbound=[rec],
                journals={"payments": f"http://127.0.0.1:{free_port()}"},
            )
        )
